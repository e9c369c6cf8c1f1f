import { TenantRecord, TenantRepository } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { DEFAULT_TENANT_SETTINGS, TenantSettings } from '../../domain/model';
import { TenantEntity, TenantSettingsVersionEntity } from '../entities';
import { managerOf } from '../transaction-runner';
import { forUpdate, num, optNum, placeholders } from './sql-dialect';

export class TypeormTenantRepository implements TenantRepository {
  async insert(tx: TxContext, tenant: TenantRecord): Promise<void> {
    await managerOf(tx).insert(TenantSettingsVersionEntity, { tenantId: tenant.id, effectiveFrom: tenant.createdAt, settingsJson: JSON.stringify(tenant.settings) });
    await managerOf(tx).insert(TenantEntity, {
      id: tenant.id,
      displayName: tenant.displayName,
      settingsJson: JSON.stringify(tenant.settings),
      createRequestId: tenant.createRequestId,
      createdAt: tenant.createdAt,
      updatedAt: tenant.updatedAt,
      erasedAt: tenant.erasedAt,
      purgedAt: null,
    });
  }

  find(tx: TxContext, id: string): Promise<TenantRecord | null> {
    return this.read(tx, id, '');
  }

  lock(tx: TxContext, id: string): Promise<TenantRecord | null> {
    return this.read(tx, id, forUpdate(managerOf(tx)));
  }

  private async read(tx: TxContext, id: string, lock: string): Promise<TenantRecord | null> {
    // Raw SQL: every write batch reads its tenant, and TypeORM's findOneBy costs several times the query.
    const rows: Array<Record<string, unknown>> = await managerOf(tx).query(
      `SELECT id, display_name, settings_json, create_request_id, created_at, updated_at, erased_at FROM tenants WHERE id = ?${lock}`,
      [id],
    );
    if (rows.length === 0) return null;
    const row = rows[0];
    return {
      id: String(row.id),
      displayName: String(row.display_name),
      settings: parseSettings(String(row.settings_json)),
      createRequestId: row.create_request_id === null ? null : String(row.create_request_id),
      createdAt: num(row.created_at),
      updatedAt: num(row.updated_at),
      erasedAt: optNum(row.erased_at) ?? null,
    };
  }

  async updateSettings(tx: TxContext, id: string, settings: TenantSettings, updatedAt: number): Promise<void> {
    const settingsJson = JSON.stringify(settings);
    const m = managerOf(tx);
    await m.update(TenantEntity, { id }, { settingsJson, updatedAt });
    // Two changes in the same millisecond: the later one is what was in force from then on.
    await m.delete(TenantSettingsVersionEntity, { tenantId: id, effectiveFrom: updatedAt });
    await m.insert(TenantSettingsVersionEntity, { tenantId: id, effectiveFrom: updatedAt, settingsJson });
  }

  async settingsAt(tx: TxContext, id: string, at: number): Promise<TenantSettings | null> {
    const m = managerOf(tx);
    const rows: Array<{ settings_json: string }> = await m.query(
      'SELECT settings_json FROM tenant_settings_versions WHERE tenant_id = ? AND effective_from <= ? ORDER BY effective_from DESC LIMIT 1',
      [id, at],
    );
    return rows.length === 0 ? null : parseSettings(rows[0].settings_json);
  }

  async markErased(tx: TxContext, id: string, at: number): Promise<void> {
    await managerOf(tx).query('UPDATE tenants SET erased_at = ? WHERE id = ? AND erased_at IS NULL', [at, id]);
  }

  async listUnpurged(tx: TxContext): Promise<string[]> {
    const rows: Array<{ id: string }> = await managerOf(tx).query('SELECT id FROM tenants WHERE erased_at IS NOT NULL AND purged_at IS NULL');
    return rows.map((r) => r.id);
  }

  async purgeBatch(tx: TxContext, id: string, limit: number, at: number): Promise<boolean> {
    const m = managerOf(tx);
    const events: Array<{ seq: unknown }> = await m.query(`SELECT seq FROM consent_events WHERE tenant_id = ? LIMIT ${Math.floor(limit)}`, [id]);
    if (events.length > 0) {
      await m.query(`DELETE FROM consent_events WHERE seq IN (${placeholders(events.length)})`, events.map((e) => e.seq));
      return false;
    }
    for (const table of ['consent_state', 'service_windows', 'identity_links', 'signup_confirmations', 'confirmation_deliveries', 'subject_identifiers', 'subjects', 'notices', 'purposes', 'key_rotations', 'tenant_settings_versions']) {
      await m.query(`DELETE FROM ${table} WHERE tenant_id = ?`, [id]);
    }
    await m.query('UPDATE tenants SET purged_at = ? WHERE id = ?', [at, id]);
    return true;
  }
}

/** Settings written by older versions lack newer fields: defaults fill them in. */
function parseSettings(json: string): TenantSettings {
  const stored = JSON.parse(json) as Partial<TenantSettings>;
  return { ...DEFAULT_TENANT_SETTINGS, ...stored, selfService: { ...DEFAULT_TENANT_SETTINGS.selfService, ...stored.selfService } };
}
