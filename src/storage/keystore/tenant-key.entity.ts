import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from '../entities/columns';

/**
 * A tenant key of one epoch, wrapped by a root key. Destroying an epoch deletes the wrapped key
 * and keeps the row (state DESTROYED, when) as the record that it happened.
 */
@Entity({ name: 'tenant_keys' })
export class TenantKeyEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'integer' })
  epoch!: number;

  /** ACTIVE (wraps new subject keys), RETIRING (rotation in progress) or DESTROYED. */
  @Column({ type: 'varchar', length: 16 })
  state!: string;

  @Column({ name: 'wrapped_key', type: 'text', nullable: true })
  wrappedKey!: string | null;

  @Column({ name: 'root_key_id', type: 'varchar', length: 128 })
  rootKeyId!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;

  @Column({ name: 'destroyed_at', type: 'bigint', nullable: true, transformer: epochMs })
  destroyedAt!: number | null;
}
