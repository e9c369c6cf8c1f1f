import { IdentifierChangeRepository, IdentifierIndex, ReassignmentRecord } from '../../domain/ports';
import { IdentifierKind } from '../../domain/model';
import { TxContext } from '../../shared/unit-of-work';
import { managerOf } from '../transaction-runner';
import { num } from './sql-dialect';

/** Rows of identifier rectification and reassignment (migration 1764000000015). Plain SQL, no entity. */
export class SqlIdentifierChangeRepository implements IdentifierChangeRepository {
  async findReassignment(tx: TxContext, tenantId: string, requestId: string): Promise<ReassignmentRecord | null> {
    const rows: Array<Record<string, unknown>> = await managerOf(tx).query('SELECT * FROM identifier_reassignments WHERE tenant_id = ? AND request_id = ?', [tenantId, requestId]);
    if (rows.length === 0) return null;
    const r = rows[0];
    return {
      id: String(r.id),
      tenantId: String(r.tenant_id),
      requestId: String(r.request_id),
      requestFingerprint: String(r.request_fingerprint),
      kind: String(r.kind) as IdentifierKind,
      blindIndex: String(r.blind_index),
      oldSubjectId: r.old_subject_id === null ? null : String(r.old_subject_id),
      newSubjectId: String(r.new_subject_id),
      reassignTime: num(r.reassign_time),
      source: String(r.source),
      reportedBy: String(r.reported_by),
      createdAt: num(r.created_at),
    };
  }

  async insertReassignment(tx: TxContext, r: ReassignmentRecord): Promise<void> {
    await managerOf(tx).query(
      `INSERT INTO identifier_reassignments (id, tenant_id, request_id, request_fingerprint, kind, blind_index, old_subject_id, new_subject_id, reassign_time, source, reported_by, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [r.id, r.tenantId, r.requestId, r.requestFingerprint, r.kind, r.blindIndex, r.oldSubjectId, r.newSubjectId, r.reassignTime, r.source, r.reportedBy, r.createdAt],
    );
  }

  async insertReassignedSubject(tx: TxContext, s: { id: string; tenantId: string; createdAt: number; reassignedAt: number }): Promise<void> {
    await managerOf(tx).query('INSERT INTO subjects (id, tenant_id, created_at, erased_at, reassigned_at) VALUES (?, ?, ?, NULL, ?)', [s.id, s.tenantId, s.createdAt, s.reassignedAt]);
  }

  async deleteIdentifier(tx: TxContext, tenantId: string, index: IdentifierIndex): Promise<void> {
    await managerOf(tx).query('DELETE FROM subject_identifiers WHERE tenant_id = ? AND kind = ? AND blind_index = ?', [tenantId, index.kind, index.blindIndex]);
  }

  async markIdentifiersChanged(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<void> {
    await managerOf(tx).query('UPDATE subjects SET identifiers_changed_at = ? WHERE tenant_id = ? AND id = ?', [at, tenantId, subjectId]);
  }

  async closeWindows(tx: TxContext, tenantId: string, subjectId: string): Promise<void> {
    await managerOf(tx).query('DELETE FROM service_windows WHERE tenant_id = ? AND subject_id = ?', [tenantId, subjectId]);
  }
}
