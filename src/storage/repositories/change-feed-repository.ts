import { ChangeFeedRepository, ChangeRecord } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { managerOf } from '../transaction-runner';
import { insertRows, num } from './sql-dialect';

export class TypeormChangeFeedRepository implements ChangeFeedRepository {
  async append(tx: TxContext, changes: Array<Omit<ChangeRecord, 'seq'>>): Promise<void> {
    await insertRows(
      managerOf(tx),
      'change_outbox',
      ['tenant_id', 'kind', 'subject_id', 'purpose_id', 'channel', 'event_id', 'at', 'audit_seq'],
      changes.map((c) => [c.tenantId, c.kind, c.subjectId, c.purposeId, c.channel, c.eventId, c.at, c.auditSeq]),
    );
  }

  async between(tx: TxContext, tenantId: string, from: number, below: number, limit: number): Promise<ChangeRecord[]> {
    const rows: Array<Record<string, unknown>> = await managerOf(tx).query(
      `SELECT seq, audit_seq, tenant_id, kind, subject_id, purpose_id, channel, event_id, at FROM change_outbox
        WHERE tenant_id = ? AND audit_seq >= ? AND audit_seq < ? ORDER BY audit_seq LIMIT ${Math.floor(limit)}`,
      [tenantId, from, below],
    );
    return rows.map((r) => ({
      seq: num(r.seq),
      auditSeq: num(r.audit_seq),
      tenantId: String(r.tenant_id),
      kind: r.kind as ChangeRecord['kind'],
      subjectId: String(r.subject_id),
      purposeId: r.purpose_id === null ? null : String(r.purpose_id),
      channel: r.channel === null ? null : String(r.channel),
      eventId: r.event_id === null ? null : String(r.event_id),
      at: num(r.at),
    }));
  }

  async positionOf(tx: TxContext, tenantId: string, seq: number): Promise<number | null> {
    const rows: Array<{ audit_seq: unknown }> = await managerOf(tx).query('SELECT audit_seq FROM change_outbox WHERE tenant_id = ? AND seq = ?', [tenantId, seq]);
    return rows.length === 0 ? null : num(rows[0].audit_seq);
  }
}
