import { MoreThan } from 'typeorm';
import { ChangeFeedRepository, ChangeRecord } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { ChangeEntity } from '../entities';
import { managerOf } from '../transaction-runner';

export class TypeormChangeFeedRepository implements ChangeFeedRepository {
  async append(tx: TxContext, change: Omit<ChangeRecord, 'seq'>): Promise<void> {
    await managerOf(tx).insert(ChangeEntity, { ...change });
  }

  async after(tx: TxContext, tenantId: string, afterSeq: number, limit: number): Promise<ChangeRecord[]> {
    const rows = await managerOf(tx).find(ChangeEntity, { where: { tenantId, seq: MoreThan(afterSeq) }, order: { seq: 'ASC' }, take: limit });
    return rows.map((r) => ({ ...r, kind: r.kind as ChangeRecord['kind'] }));
  }
}
