import { Brackets } from 'typeorm';
import { IdentityLinkRecord, IdentityLinkRepository } from '../../domain/identity-links';
import { IdentifierKind } from '../../domain/model';
import { NewestFirstCursor } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { IdentityLinkEntity } from '../entities';
import { managerOf } from '../transaction-runner';

export class TypeormIdentityLinkRepository implements IdentityLinkRepository {
  async insert(tx: TxContext, link: IdentityLinkRecord): Promise<void> {
    await managerOf(tx).insert(IdentityLinkEntity, { ...link });
  }

  async find(tx: TxContext, tenantId: string, id: string): Promise<IdentityLinkRecord | null> {
    return toRecord(await managerOf(tx).findOneBy(IdentityLinkEntity, { tenantId, id }));
  }

  async findByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<IdentityLinkRecord | null> {
    return toRecord(await managerOf(tx).findOneBy(IdentityLinkEntity, { tenantId, requestId }));
  }

  async update(tx: TxContext, tenantId: string, id: string, change: Partial<IdentityLinkRecord>): Promise<void> {
    await managerOf(tx).update(IdentityLinkEntity, { tenantId, id }, change);
  }

  async openLinksOf(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<IdentityLinkRecord[]> {
    const ids = [...new Set(subjectIds)];
    const found = new Map<string, IdentityLinkRecord>();
    // Two statements, each on its own index (an OR over both columns would scan the tenant).
    for (let start = 0; start < ids.length; start += 500) {
      const chunk = ids.slice(start, start + 500);
      for (const column of ['subjectA', 'subjectB']) {
        const rows = await managerOf(tx)
          .createQueryBuilder(IdentityLinkEntity, 'l')
          .where('l.tenantId = :tenantId', { tenantId })
          .andWhere(`l.${column} IN (:...ids)`, { ids: chunk })
          .andWhere('l.unlinkedAt IS NULL')
          .getMany();
        for (const row of rows) found.set(row.id, toRecord(row)!);
      }
    }
    return [...found.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async list(
    tx: TxContext,
    tenantId: string,
    filter: { subjectId?: string; includeUnlinked: boolean },
    after: NewestFirstCursor | null,
    limit: number,
  ): Promise<IdentityLinkRecord[]> {
    const q = managerOf(tx).createQueryBuilder(IdentityLinkEntity, 'l').where('l.tenantId = :tenantId', { tenantId });
    if (filter.subjectId) q.andWhere(new Brackets((b) => b.where('l.subjectA = :subjectId', { subjectId: filter.subjectId }).orWhere('l.subjectB = :subjectId')));
    if (!filter.includeUnlinked) q.andWhere('l.unlinkedAt IS NULL');
    if (after) {
      q.andWhere(
        new Brackets((b) => {
          b.where('l.linkedAt < :cursorTime', { cursorTime: after.createdAt }).orWhere(
            new Brackets((c) => c.where('l.linkedAt = :cursorTime').andWhere('l.id < :cursorId', { cursorId: after.id })),
          );
        }),
      );
    }
    const rows = await q.orderBy('l.linkedAt', 'DESC').addOrderBy('l.id', 'DESC').take(limit).getMany();
    return rows.map((r) => toRecord(r)!);
  }

  async deleteOfSubject(tx: TxContext, tenantId: string, subjectId: string): Promise<number> {
    const m = managerOf(tx);
    const rows: Array<{ n: unknown }> = await m.query('SELECT COUNT(*) AS n FROM identity_links WHERE tenant_id = ? AND (subject_a = ? OR subject_b = ?)', [tenantId, subjectId, subjectId]);
    const count = Number(rows[0]?.n ?? 0);
    if (count > 0) await m.query('DELETE FROM identity_links WHERE tenant_id = ? AND (subject_a = ? OR subject_b = ?)', [tenantId, subjectId, subjectId]);
    return count;
  }
}

function toRecord(row: IdentityLinkEntity | null): IdentityLinkRecord | null {
  if (!row) return null;
  return { ...row, kindA: row.kindA as IdentifierKind, kindB: row.kindB as IdentifierKind };
}
