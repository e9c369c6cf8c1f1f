import { DataSource, EntityManager } from 'typeorm';
import { EpochNotActiveError, KeyStore, StoredSigningKey, StoredSubjectKey, StoredTenantKey, TenantKeyState } from '../../crypto/key-store';
import { TypeormTransactionRunner, managerOf } from '../transaction-runner';
import { forShare, forUpdate, insertRows, num } from '../repositories/sql-dialect';
import { SigningKeyEntity, SubjectErasureEntity, SubjectKeyEntity, TenantKeyEntity } from './entities';

/** The key store on its own TypeORM data source (its own SQLite file or MySQL database). */
export class TypeormKeyStore implements KeyStore {
  private readonly tx: TypeormTransactionRunner;
  private readonly sqlite: boolean;
  /** Erasures and shreds after which the SQLite write-ahead log could not be emptied at once (another connection was busy). */
  walNotTruncated = 0;

  constructor(dataSource: DataSource) {
    this.tx = new TypeormTransactionRunner(dataSource);
    this.sqlite = dataSource.options.type === 'better-sqlite3';
  }

  /**
   * SQLite: empties the write-ahead log after a key was destroyed. The connection deletes with
   * `secure_delete` (data-source.ts), so the file's pages hold zeros where the key was; but the
   * log still holds the page as it was before, until a later write happens to overwrite that
   * frame, and a copy of the data folder taken meanwhile (a backup) would carry the key. TRUNCATE
   * copies the log into the file and cuts it to zero bytes. Run as a read unit: serialised with
   * this connection's transactions, outside any of them. Best effort: when another connection (a
   * second process, a reader) holds the log, SQLite says busy and the next erasure empties it.
   */
  private async forgetDestroyedKeys(): Promise<void> {
    if (!this.sqlite) return;
    const [row] = (await this.tx.read((t) => managerOf(t).query('PRAGMA wal_checkpoint(TRUNCATE)'))) as Array<{ busy: number }>;
    if (row?.busy) this.walNotTruncated++;
  }

  insertTenantKey(key: StoredTenantKey): Promise<void> {
    return this.tx.write(async (t) => {
      await managerOf(t).insert(TenantKeyEntity, { ...key });
    });
  }

  openTenantKeyEpoch(key: StoredTenantKey): Promise<number[]> {
    return this.tx.write(async (t) => {
      const m = managerOf(t);
      // Locked: a key being stored under the active epoch (requireActive's shared lock) commits first.
      const rows: Array<{ epoch: number | string; state: string }> = await m.query(`SELECT epoch, state FROM tenant_keys WHERE tenant_id = ?${forUpdate(m)}`, [key.tenantId]);
      const retiring = rows.filter((r) => r.state === 'ACTIVE').map((r) => num(r.epoch));
      await m.insert(TenantKeyEntity, { ...key });
      if (retiring.length > 0) {
        await m.query(`UPDATE tenant_keys SET state = 'RETIRING' WHERE tenant_id = ? AND state = 'ACTIVE' AND epoch <> ?`, [key.tenantId, key.epoch]);
      }
      return retiring;
    });
  }

  tenantIds(): Promise<string[]> {
    return this.tx.read(async (t) => {
      const rows: Array<{ tenant_id: string }> = await managerOf(t).query('SELECT DISTINCT tenant_id FROM tenant_keys ORDER BY tenant_id');
      return rows.map((r) => r.tenant_id);
    });
  }

  tenantKeys(tenantId: string): Promise<StoredTenantKey[]> {
    return this.tx.read(async (t) => {
      const rows = await managerOf(t).find(TenantKeyEntity, { where: { tenantId }, order: { epoch: 'ASC' } });
      return rows.map((r) => ({ ...r, state: r.state as TenantKeyState }));
    });
  }

  updateTenantKey(
    tenantId: string,
    epoch: number,
    change: Partial<Pick<StoredTenantKey, 'state' | 'wrappedKey' | 'rootKeyId' | 'destroyedAt'>>,
  ): Promise<void> {
    return this.tx.write(async (t) => {
      await managerOf(t).update(TenantKeyEntity, { tenantId, epoch }, change);
    });
  }

  deleteUnusedTenantKeys(tenantId: string): Promise<void> {
    return this.tx.write(async (t) => {
      await managerOf(t).delete(TenantKeyEntity, { tenantId });
    });
  }

  async destroyTenantKeys(tenantId: string, at: number): Promise<number[]> {
    const destroyed = await this.tx.write(async (t) => {
      const m = managerOf(t);
      // Locked: of concurrent shreds one destroys the epochs and says so; the others find them destroyed.
      const live: Array<{ epoch: number | string; state: string }> = await m.query(`SELECT epoch, state FROM tenant_keys WHERE tenant_id = ?${forUpdate(m)}`, [tenantId]);
      const epochs = live.filter((k) => k.state !== 'DESTROYED').map((k) => Number(k.epoch));
      if (epochs.length > 0) {
        await m.query(`UPDATE tenant_keys SET state = 'DESTROYED', wrapped_key = NULL, destroyed_at = ? WHERE tenant_id = ? AND state <> 'DESTROYED'`, [at, tenantId]);
      }
      return epochs;
    });
    if (destroyed.length > 0) await this.forgetDestroyedKeys();
    return destroyed;
  }

  insertSubjectKey(key: StoredSubjectKey): Promise<void> {
    return this.tx.write(async (t) => {
      await requireActive(managerOf(t), key.tenantId, key.epoch);
      await managerOf(t).insert(SubjectKeyEntity, { ...key });
    });
  }

  insertSubjectKeys(keys: StoredSubjectKey[]): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    return this.tx.write(async (t) => {
      for (const [tenantId, epoch] of new Map(keys.map((k) => [`${k.tenantId}\u0000${k.epoch}`, [k.tenantId, k.epoch] as const])).values()) {
        await requireActive(managerOf(t), tenantId, epoch);
      }
      await insertRows(
        managerOf(t),
        'subject_keys',
        ['tenant_id', 'subject_id', 'epoch', 'wrapped_key', 'encryptions', 'created_at'],
        keys.map((k) => [k.tenantId, k.subjectId, k.epoch, k.wrappedKey, k.encryptions, k.createdAt]),
      );
    });
  }

  subjectKey(tenantId: string, subjectId: string): Promise<StoredSubjectKey | null> {
    return this.tx.read((t) => managerOf(t).findOneBy(SubjectKeyEntity, { tenantId, subjectId }));
  }

  deleteSubjectKey(tenantId: string, subjectId: string): Promise<boolean> {
    return this.tx.write(async (t) => {
      const result = await managerOf(t).delete(SubjectKeyEntity, { tenantId, subjectId });
      return (result.affected ?? 0) > 0;
    });
  }

  reserveEncryptions(tenantId: string, subjectId: string, count: number, limit: number): Promise<boolean> {
    return this.tx.write(async (t) => {
      const result = await managerOf(t)
        .createQueryBuilder()
        .update(SubjectKeyEntity)
        .set({ encryptions: () => `encryptions + ${Math.floor(count)}` })
        .where('tenant_id = :tenantId AND subject_id = :subjectId AND encryptions + :count <= :limit', { tenantId, subjectId, count, limit })
        .execute();
      return (result.affected ?? 0) > 0;
    });
  }

  subjectKeysOfEpoch(tenantId: string, epoch: number, limit: number): Promise<StoredSubjectKey[]> {
    return this.tx.read((t) => managerOf(t).find(SubjectKeyEntity, { where: { tenantId, epoch }, order: { subjectId: 'ASC' }, take: limit }));
  }

  rewrapSubjectKey(tenantId: string, subjectId: string, fromEpoch: number, toEpoch: number, wrappedKey: string): Promise<boolean> {
    return this.tx.write(async (t) => {
      const result = await managerOf(t).update(SubjectKeyEntity, { tenantId, subjectId, epoch: fromEpoch }, { epoch: toEpoch, wrappedKey });
      return (result.affected ?? 0) > 0;
    });
  }

  countSubjectKeys(tenantId: string, epoch?: number): Promise<number> {
    return this.tx.read(async (t) => {
      const rows = await managerOf(t).query(
        `SELECT COUNT(*) AS n FROM subject_keys WHERE tenant_id = ?${epoch === undefined ? '' : ' AND epoch = ?'}`,
        epoch === undefined ? [tenantId] : [tenantId, epoch],
      );
      return num(rows[0].n);
    });
  }

  async eraseSubject(tenantId: string, subjectId: string, at: number): Promise<boolean> {
    const deleted = await this.tx.write(async (t) => {
      const m = managerOf(t);
      if (!(await m.findOneBy(SubjectErasureEntity, { tenantId, subjectId }))) {
        await m.insert(SubjectErasureEntity, { tenantId, subjectId, erasedAt: at });
      }
      const result = await m.delete(SubjectKeyEntity, { tenantId, subjectId });
      return (result.affected ?? 0) > 0;
    });
    if (deleted) await this.forgetDestroyedKeys();
    return deleted;
  }

  subjectErasures(): Promise<Array<{ tenantId: string; subjectId: string; erasedAt: number }>> {
    return this.tx.read((t) => managerOf(t).find(SubjectErasureEntity, { order: { erasedAt: 'ASC' } }));
  }

  insertSigningKey(key: StoredSigningKey): Promise<void> {
    return this.tx.write(async (t) => {
      await requireActive(managerOf(t), key.tenantId, key.epoch);
      await managerOf(t).insert(SigningKeyEntity, { ...key });
    });
  }

  signingKeys(tenantId: string): Promise<StoredSigningKey[]> {
    return this.tx.read(async (t) => {
      const rows = await managerOf(t).find(SigningKeyEntity, { where: { tenantId }, order: { createdAt: 'ASC', kid: 'ASC' } });
      return rows.map((r) => ({ ...r, state: r.state as StoredSigningKey['state'] }));
    });
  }

  retireSigningKeys(tenantId: string, epochs: number[] | 'all'): Promise<void> {
    return this.tx.write(async (t) => {
      const m = managerOf(t);
      if (epochs === 'all') {
        await m.query(`UPDATE tenant_signing_keys SET state = 'DESTROYED', wrapped_private_key = NULL WHERE tenant_id = ?`, [tenantId]);
      } else if (epochs.length > 0) {
        await m.query(
          `UPDATE tenant_signing_keys SET state = 'RETIRED', wrapped_private_key = NULL WHERE tenant_id = ? AND state = 'ACTIVE' AND epoch IN (${epochs.map(() => '?').join(', ')})`,
          [tenantId, ...epochs],
        );
      }
    });
  }

  subjectKeyUsage(tenantId: string): Promise<Map<number, { keys: number; encryptions: number }>> {
    return this.tx.read(async (t) => {
      const rows: Array<{ epoch: unknown; n: unknown; e: unknown }> = await managerOf(t).query(
        'SELECT epoch, COUNT(*) AS n, COALESCE(SUM(encryptions), 0) AS e FROM subject_keys WHERE tenant_id = ? GROUP BY epoch',
        [tenantId],
      );
      return new Map(rows.map((r) => [num(r.epoch), { keys: num(r.n), encryptions: num(r.e) }]));
    });
  }

  purgeSubjectKeys(tenantId: string, limit: number): Promise<number> {
    return this.tx.write(async (t) => {
      const m = managerOf(t);
      const rows = await m.find(SubjectKeyEntity, { select: { subjectId: true }, where: { tenantId }, take: limit });
      if (rows.length === 0) return 0;
      await m.delete(SubjectKeyEntity, rows.map((r) => ({ tenantId, subjectId: r.subjectId })));
      return rows.length;
    });
  }
}

/**
 * Refuses to store a key under an epoch that is not ACTIVE (rotated or destroyed since the caller
 * read it), holding a shared lock on the epoch's row until the transaction ends: a rotation's
 * openTenantKeyEpoch waits for it, so a key stored here is there before the re-wrap looks.
 */
async function requireActive(m: EntityManager, tenantId: string, epoch: number): Promise<void> {
  const rows: Array<{ state: string }> = await m.query(`SELECT state FROM tenant_keys WHERE tenant_id = ? AND epoch = ?${forShare(m)}`, [tenantId, epoch]);
  if (rows[0]?.state !== 'ACTIVE') throw new EpochNotActiveError(tenantId, epoch);
}
