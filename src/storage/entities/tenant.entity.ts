import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

@Entity({ name: 'tenants' })
export class TenantEntity {
  @PrimaryColumn({ type: 'varchar', length: 63 })
  id!: string;

  @Column({ name: 'display_name', type: 'varchar', length: 200 })
  displayName!: string;

  /** TenantSettings as JSON (no personal data). */
  @Column({ name: 'settings_json', type: 'text' })
  settingsJson!: string;

  @Column({ name: 'create_request_id', type: 'varchar', length: 128, nullable: true })
  createRequestId!: string | null;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;

  @Column({ name: 'updated_at', type: 'bigint', transformer: epochMs })
  updatedAt!: number;

  /** When the tenant's keys were destroyed (ShredTenant); its data is unreadable from then on. */
  @Column({ name: 'erased_at', type: 'bigint', nullable: true, transformer: epochMs })
  erasedAt!: number | null;

  /** When the background purge removed the erased tenant's rows. */
  @Column({ name: 'purged_at', type: 'bigint', nullable: true, transformer: epochMs })
  purgedAt!: number | null;
}
