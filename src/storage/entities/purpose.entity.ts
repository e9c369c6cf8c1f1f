import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

@Entity({ name: 'purposes' })
export class PurposeEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'varchar', length: 63 })
  id!: string;

  @Column({ name: 'display_name', type: 'varchar', length: 200 })
  displayName!: string;

  @Column({ type: 'varchar', length: 16 })
  category!: string;

  @Column({ type: 'text' })
  description!: string;

  @Column({ name: 'create_request_id', type: 'varchar', length: 128, nullable: true })
  createRequestId!: string | null;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;

  /** Art. 18(2): checks keep following the consent rules while the person is restricted. */
  @Column({ name: 'allowed_while_restricted', type: 'boolean', default: false })
  allowedWhileRestricted!: boolean;
}
