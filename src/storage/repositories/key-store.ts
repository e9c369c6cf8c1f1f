import { DataSource } from 'typeorm';
import { KeyStore, StoredSubjectKey, StoredTenantKey } from '../../crypto/key-store';
import { TxContext } from '../../domain/ports';
import { SubjectKeyEntity, TenantKeyEntity } from '../entities';
import { managerOf } from '../transaction-runner';
import { toDomainError } from '../db-errors';

/** Wrapped keys in the data database, for now; the key-lifecycle work moves them to their own store. */
export class TypeormKeyStore implements KeyStore {
  constructor(private readonly dataSource: DataSource) {}

  async insertTenantKey(tx: TxContext, key: StoredTenantKey): Promise<void> {
    await managerOf(tx).insert(TenantKeyEntity, { ...key });
  }

  async activeTenantKey(tenantId: string): Promise<StoredTenantKey | null> {
    try {
      return await this.dataSource.manager.findOne(TenantKeyEntity, { where: { tenantId }, order: { epoch: 'DESC' } });
    } catch (err) {
      throw toDomainError(err);
    }
  }

  async insertSubjectKey(tx: TxContext, key: StoredSubjectKey): Promise<void> {
    await managerOf(tx).insert(SubjectKeyEntity, { ...key });
  }

  async subjectKey(tenantId: string, subjectId: string, tx?: TxContext): Promise<StoredSubjectKey | null> {
    try {
      const manager = tx ? managerOf(tx) : this.dataSource.manager;
      return await manager.findOneBy(SubjectKeyEntity, { tenantId, subjectId });
    } catch (err) {
      throw toDomainError(err);
    }
  }
}
