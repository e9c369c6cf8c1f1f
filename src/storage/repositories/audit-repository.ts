import { MoreThanOrEqual } from 'typeorm';
import { AuditRepository, TxContext } from '../../domain/ports';
import { AuditEntryEntity, AuditHeadEntity, AuditNodeEntity } from '../entities';
import { managerOf } from '../transaction-runner';
import { forUpdate, num } from './sql-dialect';

export class TypeormAuditRepository implements AuditRepository {
  async lockHead(tx: TxContext, tenantId: string): Promise<number> {
    const m = managerOf(tx);
    const read = () => m.query(`SELECT size FROM audit_heads WHERE tenant_id = ?${forUpdate(m)}`, [tenantId]) as Promise<Array<{ size: unknown }>>;
    let rows = await read();
    if (rows.length === 0) {
      // First entry of the tenant: a racing first append collides here and is run again.
      await m.insert(AuditHeadEntity, { tenantId, size: 0 });
      rows = await read();
    }
    return num(rows[0].size);
  }

  async setSize(tx: TxContext, tenantId: string, size: number): Promise<void> {
    await managerOf(tx).update(AuditHeadEntity, { tenantId }, { size });
  }

  async size(tx: TxContext, tenantId: string): Promise<number> {
    const head = await managerOf(tx).findOneBy(AuditHeadEntity, { tenantId });
    return head?.size ?? 0;
  }

  async insertEntry(tx: TxContext, tenantId: string, seq: number, entryJson: string, leafHash: string): Promise<void> {
    await managerOf(tx).insert(AuditEntryEntity, { tenantId, seq, entryJson, leafHash });
  }

  async insertNode(tx: TxContext, tenantId: string, level: number, index: number, hash: string): Promise<void> {
    await managerOf(tx).insert(AuditNodeEntity, { tenantId, level, idx: index, hash });
  }

  async node(tx: TxContext, tenantId: string, level: number, index: number): Promise<string | null> {
    const row = await managerOf(tx).findOneBy(AuditNodeEntity, { tenantId, level, idx: index });
    return row?.hash ?? null;
  }

  async entries(tx: TxContext, tenantId: string, fromSeq: number, limit: number): Promise<Array<{ seq: number; entryJson: string; leafHash: string }>> {
    return managerOf(tx).find(AuditEntryEntity, { where: { tenantId, seq: MoreThanOrEqual(fromSeq) }, order: { seq: 'ASC' }, take: limit });
  }
}
