import { LessThan, MoreThan, In } from 'typeorm';
import { NoticeRecord, PurposeRecord, PurposeRepository } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { PurposeCategory } from '../../domain/model';
import { NoticeEntity, PurposeEntity } from '../entities';
import { managerOf } from '../transaction-runner';

export class TypeormPurposeRepository implements PurposeRepository {
  async insert(tx: TxContext, purpose: PurposeRecord): Promise<void> {
    await managerOf(tx).insert(PurposeEntity, { ...purpose });
  }

  async find(tx: TxContext, tenantId: string, id: string): Promise<PurposeRecord | null> {
    const row = await managerOf(tx).findOneBy(PurposeEntity, { tenantId, id });
    return row ? toPurpose(row) : null;
  }

  async existing(tx: TxContext, tenantId: string, ids: string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await managerOf(tx).find(PurposeEntity, { select: { id: true }, where: { tenantId, id: In([...new Set(ids)]) } });
    return new Set(rows.map((r) => r.id));
  }

  async list(tx: TxContext, tenantId: string, afterId: string | null, limit: number): Promise<PurposeRecord[]> {
    const rows = await managerOf(tx).find(PurposeEntity, {
      where: afterId === null ? { tenantId } : { tenantId, id: MoreThan(afterId) },
      order: { id: 'ASC' },
      take: limit,
    });
    return rows.map(toPurpose);
  }

  async insertNotice(tx: TxContext, notice: NoticeRecord): Promise<void> {
    await managerOf(tx).insert(NoticeEntity, { ...notice });
  }

  async latestNoticeVersion(tx: TxContext, tenantId: string, purposeId: string): Promise<number> {
    const row = await managerOf(tx).findOne(NoticeEntity, {
      select: { version: true },
      where: { tenantId, purposeId },
      order: { version: 'DESC' },
    });
    return row?.version ?? 0;
  }

  async findNotice(tx: TxContext, tenantId: string, purposeId: string, version: number): Promise<NoticeRecord | null> {
    return managerOf(tx).findOneBy(NoticeEntity, { tenantId, purposeId, version });
  }

  async findNoticeByRequest(tx: TxContext, tenantId: string, requestId: string): Promise<NoticeRecord | null> {
    return managerOf(tx).findOneBy(NoticeEntity, { tenantId, requestId });
  }

  async listNotices(
    tx: TxContext,
    tenantId: string,
    purposeId: string,
    beforeVersion: number | null,
    limit: number,
  ): Promise<NoticeRecord[]> {
    return managerOf(tx).find(NoticeEntity, {
      where: beforeVersion === null ? { tenantId, purposeId } : { tenantId, purposeId, version: LessThan(beforeVersion) },
      order: { version: 'DESC' },
      take: limit,
    });
  }
}

function toPurpose(row: PurposeEntity): PurposeRecord {
  return { ...row, category: row.category as PurposeCategory, allowedWhileRestricted: Boolean(row.allowedWhileRestricted) };
}
