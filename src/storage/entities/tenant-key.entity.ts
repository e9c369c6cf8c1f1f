import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A tenant key of one epoch, wrapped by a root key. */
@Entity({ name: 'tenant_keys' })
export class TenantKeyEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'integer' })
  epoch!: number;

  @Column({ name: 'wrapped_key', type: 'text' })
  wrappedKey!: string;

  @Column({ name: 'root_key_id', type: 'varchar', length: 128 })
  rootKeyId!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;
}
