import { TenantRecord, TenantRepository, TxContext } from '../../domain/ports';
import { DEFAULT_TENANT_SETTINGS, TenantSettings } from '../../domain/model';
import { TenantEntity } from '../entities';
import { managerOf } from '../transaction-runner';

export class TypeormTenantRepository implements TenantRepository {
  async insert(tx: TxContext, tenant: TenantRecord): Promise<void> {
    await managerOf(tx).insert(TenantEntity, {
      id: tenant.id,
      displayName: tenant.displayName,
      settingsJson: JSON.stringify(tenant.settings),
      createRequestId: tenant.createRequestId,
      createdAt: tenant.createdAt,
      updatedAt: tenant.updatedAt,
    });
  }

  async find(tx: TxContext, id: string): Promise<TenantRecord | null> {
    const row = await managerOf(tx).findOneBy(TenantEntity, { id });
    if (!row) return null;
    return {
      id: row.id,
      displayName: row.displayName,
      // Settings written by older versions lack newer fields: defaults fill them in.
      settings: { ...DEFAULT_TENANT_SETTINGS, ...(JSON.parse(row.settingsJson) as Partial<TenantSettings>) },
      createRequestId: row.createRequestId,
      createdAt: row.createdAt,
      updatedAt: row.updatedAt,
    };
  }

  async updateSettings(tx: TxContext, id: string, settings: TenantSettings, updatedAt: number): Promise<void> {
    await managerOf(tx).update(TenantEntity, { id }, { settingsJson: JSON.stringify(settings), updatedAt });
  }
}
