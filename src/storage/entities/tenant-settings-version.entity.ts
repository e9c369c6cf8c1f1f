import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/**
 * Every version of a tenant's settings with the time it took effect, so a check or an explained
 * decision for a past time applies the settings in force then (the service window length above all).
 */
@Entity({ name: 'tenant_settings_versions' })
export class TenantSettingsVersionEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'effective_from', type: 'bigint', transformer: epochMs })
  effectiveFrom!: number;

  /** TenantSettings as JSON (no personal data). */
  @Column({ name: 'settings_json', type: 'text' })
  settingsJson!: string;
}
