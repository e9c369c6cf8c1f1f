import { receivedBeforeFirstDeadline } from '../../domain/deadlines';
import { TxContext } from '../../shared/unit-of-work';
import { managerOf } from '../transaction-runner';
import { num } from './sql-dialect';

type Row = Record<string, unknown>;

const DAY_MS = 24 * 3_600_000;

/**
 * What the operations metrics read from the database when scraped (src/observability): per
 * tenant, one statement each, over the primary keys and the requests' due-time index.
 */
export class OperationsRepository {
  /** Each tenant's audit log size and the signing time of its latest checkpoint (null: none). */
  async auditLogs(tx: TxContext): Promise<Array<{ tenant: string; size: number; lastCheckpoint: number | null }>> {
    const rows: Row[] = await managerOf(tx).query(
      'SELECT h.tenant_id, h.size, (SELECT MAX(c.signed_at) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id) AS last_checkpoint FROM audit_heads h',
    );
    return rows.map((r) => ({ tenant: String(r.tenant_id), size: num(r.size), lastCheckpoint: r.last_checkpoint === null ? null : num(r.last_checkpoint) }));
  }

  /** Per tenant with any: data-subject requests neither completed nor rejected, those due within 7 days, those overdue. */
  async openSubjectRequests(tx: TxContext, now: number): Promise<Array<{ tenant: string; open: number; dueSoon: number; overdue: number }>> {
    // An extension the person was not told of before the first deadline does not hold: such a
    // request is due by its first deadline (deadlineInForce; a late notice already moved due_time back).
    const lapsed = '(extension_reason IS NOT NULL AND extension_notice IS NULL AND receive_time < ?)';
    const firstDeadlinePassed = receivedBeforeFirstDeadline(now - 1);
    const rows: Row[] = await managerOf(tx).query(
      `SELECT tenant_id, COUNT(*) AS open_count,
              SUM(CASE WHEN due_time >= ? AND due_time < ? AND NOT ${lapsed} THEN 1 ELSE 0 END) AS due_soon,
              SUM(CASE WHEN due_time < ? OR ${lapsed} THEN 1 ELSE 0 END) AS overdue
         FROM subject_requests WHERE state NOT IN ('COMPLETED', 'REJECTED') GROUP BY tenant_id`,
      [now, now + 7 * DAY_MS, firstDeadlinePassed, now, firstDeadlinePassed],
    );
    return rows.map((r) => ({ tenant: String(r.tenant_id), open: num(r.open_count), dueSoon: num(r.due_soon), overdue: num(r.overdue) }));
  }
}
