import { IdentifierIndex, SubjectRef, SubjectRepository } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { SubjectEntity, SubjectIdentifierEntity, SuppressionEntity } from '../entities';
import { managerOf } from '../transaction-runner';
import { forUpdate, insertRows, num, placeholders } from './sql-dialect';

/** What a free text about an erased person's requests reads afterwards (SubjectRepository.redactFreeTexts). */
export const ERASED_TEXT = '(erased with the person)';

export class TypeormSubjectRepository implements SubjectRepository {
  async findByIdentifier(tx: TxContext, tenantId: string, index: IdentifierIndex): Promise<SubjectRef | null> {
    const rows: Array<{ subject_id: string; erased_at: unknown; objected_at: unknown; restricted_since: unknown; reassigned_at?: unknown; identifiers_changed_at?: unknown }> = await managerOf(tx).query(
      `SELECT i.subject_id, s.erased_at, s.objected_at, s.restricted_since, s.reassigned_at, s.identifiers_changed_at FROM subject_identifiers i JOIN subjects s ON s.id = i.subject_id
        WHERE i.tenant_id = ? AND i.kind = ? AND i.blind_index = ?`,
      [tenantId, index.kind, index.blindIndex],
    );
    return rows.length === 0 ? null : subjectRef(rows[0].subject_id, rows[0]);
  }

  async findByIdentifiers(tx: TxContext, tenantId: string, indexes: IdentifierIndex[]): Promise<Map<string, SubjectRef>> {
    const found = new Map<string, SubjectRef>();
    // One query per identifier kind (a batch rarely mixes them), so that every lookup uses the
    // whole primary key (tenant_id, kind, blind_index) rather than a scan of the tenant.
    for (const [kind, blind] of byKind(indexes)) {
      const rows: Array<{ blind_index: string; subject_id: string; erased_at: unknown; objected_at: unknown; restricted_since: unknown; reassigned_at?: unknown; identifiers_changed_at?: unknown }> = await managerOf(tx).query(
        `SELECT i.blind_index, i.subject_id, s.erased_at, s.objected_at, s.restricted_since, s.reassigned_at, s.identifiers_changed_at FROM subject_identifiers i JOIN subjects s ON s.id = i.subject_id
          WHERE i.tenant_id = ? AND i.kind = ? AND i.blind_index IN (${placeholders(blind.length)})`,
        [tenantId, kind, ...blind],
      );
      for (const row of rows) found.set(`${kind}:${row.blind_index}`, subjectRef(row.subject_id, row));
    }
    return found;
  }

  async insert(tx: TxContext, subject: { id: string; tenantId: string; createdAt: number }): Promise<void> {
    await managerOf(tx).insert(SubjectEntity, { ...subject, erasedAt: null });
  }

  async insertIdentifier(
    tx: TxContext,
    identifier: IdentifierIndex & { tenantId: string; subjectId: string; valueCiphertext: string; createdAt: number },
  ): Promise<void> {
    await managerOf(tx).insert(SubjectIdentifierEntity, { ...identifier });
  }

  async markErased(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<number> {
    const m = managerOf(tx);
    await m.query('UPDATE subjects SET erased_at = ? WHERE tenant_id = ? AND id = ? AND erased_at IS NULL', [at, tenantId, subjectId]);
    // The identifier rows (with their ciphertext) go; their blind indexes stay as tombstones that
    // name no subject, so nothing reachable by the identifier leads to the erased person.
    const identifiers: Array<{ kind: string; blind_index: string }> = await m.query(
      'SELECT kind, blind_index FROM subject_identifiers WHERE tenant_id = ? AND subject_id = ?',
      [tenantId, subjectId],
    );
    for (const id of identifiers) {
      await m.delete(SuppressionEntity, { tenantId, kind: id.kind, blindIndex: id.blind_index });
      await m.insert(SuppressionEntity, { tenantId, kind: id.kind, blindIndex: id.blind_index, erasedAt: at });
    }
    await m.query('DELETE FROM subject_identifiers WHERE tenant_id = ? AND subject_id = ?', [tenantId, subjectId]);
    // Derived state: at most one row per purpose and channel, and per channel.
    await m.query('DELETE FROM consent_state WHERE tenant_id = ? AND subject_id = ?', [tenantId, subjectId]);
    await m.query('DELETE FROM service_windows WHERE tenant_id = ? AND subject_id = ?', [tenantId, subjectId]);
    return identifiers.length;
  }

  async redactFreeTexts(tx: TxContext, tenantId: string, subjectId: string): Promise<void> {
    const m = managerOf(tx);
    const ofPerson = 'tenant_id = ? AND (subject_id = ? OR id IN (SELECT request_id FROM subject_request_identifiers WHERE tenant_id = ? AND subject_id = ?))';
    const params = [tenantId, subjectId, tenantId, subjectId];
    await m.query(`UPDATE subject_requests SET extension_reason = ? WHERE extension_reason IS NOT NULL AND ${ofPerson}`, [ERASED_TEXT, ...params]);
    await m.query(`UPDATE subject_requests SET rejection_reason = ? WHERE rejection_reason IS NOT NULL AND ${ofPerson}`, [ERASED_TEXT, ...params]);
    await m.query('UPDATE subject_restrictions SET lift_reason = ? WHERE lift_reason IS NOT NULL AND tenant_id = ? AND subject_id = ?', [ERASED_TEXT, tenantId, subjectId]);
    await m.query('UPDATE legal_holds SET release_note = ? WHERE release_note IS NOT NULL AND tenant_id = ? AND subject_id = ?', [ERASED_TEXT, tenantId, subjectId]);
    // The notes written when a hold or a restriction was placed, too (found by a probe: they kept
    // what staff wrote about the person). An erasure runs only once no hold is active.
    await m.query('UPDATE legal_holds SET note = ? WHERE tenant_id = ? AND subject_id = ?', [ERASED_TEXT, tenantId, subjectId]);
    await m.query('UPDATE subject_restrictions SET note = ? WHERE tenant_id = ? AND subject_id = ?', [ERASED_TEXT, tenantId, subjectId]);
  }

  async sealIdentifierReferences(tx: TxContext, tenantId: string, subjectId: string, seal: (blindIndex: string) => string): Promise<number> {
    const m = managerOf(tx);
    let sealed = 0;
    // The rows that found the person, and, of the requests naming the person that are closed, the
    // rows that found nobody (the person's other identifiers under which nothing was held):
    // joined to a person recorded later under such an identifier, they would say that this is the
    // erased person. An open request's such rows stay: it resolves them again when it runs (a
    // person recorded since under them is the requester's too), and an erasure request seals its
    // own when it completes (SubjectRightsService).
    const requestRows: Array<{ request_id: string; position: unknown; blind_index: string }> = await m.query(
      `SELECT request_id, position, blind_index FROM subject_request_identifiers WHERE tenant_id = ? AND (subject_id = ? OR (subject_id IS NULL AND request_id IN (
         SELECT request_id FROM subject_request_identifiers WHERE tenant_id = ? AND subject_id = ? UNION SELECT id FROM subject_requests WHERE tenant_id = ? AND subject_id = ?)
         AND request_id IN (SELECT id FROM subject_requests WHERE tenant_id = ? AND state IN ('COMPLETED', 'REJECTED'))))`,
      [tenantId, subjectId, tenantId, subjectId, tenantId, subjectId, tenantId],
    );
    for (const r of requestRows) {
      await m.query('UPDATE subject_request_identifiers SET blind_index = ? WHERE request_id = ? AND position = ?', [seal(r.blind_index), r.request_id, num(r.position)]);
      sealed++;
    }
    const requests: Array<{ id: string; blind_index: string; rectified_blind_index: string | null }> = await m.query(
      'SELECT id, blind_index, rectified_blind_index FROM subject_requests WHERE tenant_id = ? AND subject_id = ?',
      [tenantId, subjectId],
    );
    for (const r of requests) {
      await m.query('UPDATE subject_requests SET blind_index = ?, rectified_blind_index = ? WHERE tenant_id = ? AND id = ?', [
        seal(r.blind_index),
        r.rectified_blind_index === null ? null : seal(r.rectified_blind_index),
        tenantId,
        r.id,
      ]);
      sealed++;
    }
    const reports: Array<{ id: string; blind_index: string }> = await m.query(
      'SELECT id, blind_index FROM identifier_reassignments WHERE tenant_id = ? AND (old_subject_id = ? OR new_subject_id = ?)',
      [tenantId, subjectId, subjectId],
    );
    for (const r of reports) {
      await m.query('UPDATE identifier_reassignments SET blind_index = ? WHERE tenant_id = ? AND id = ?', [seal(r.blind_index), tenantId, r.id]);
      sealed++;
    }
    return sealed;
  }

  async findSuppressed(tx: TxContext, tenantId: string, indexes: IdentifierIndex[]): Promise<Map<string, { erasedAt: number }>> {
    const found = new Map<string, { erasedAt: number }>();
    // One query per kind and 500 indexes (an import asks for a whole batch), each on the whole key.
    for (const [kind, blind] of byKind(indexes)) {
      for (let start = 0; start < blind.length; start += 500) {
        const chunk = blind.slice(start, start + 500);
        const rows: Array<{ blind_index: string; erased_at: unknown }> = await managerOf(tx).query(
          `SELECT blind_index, erased_at FROM suppressions WHERE tenant_id = ? AND kind = ? AND blind_index IN (${placeholders(chunk.length)})`,
          [tenantId, kind, ...chunk],
        );
        for (const row of rows) found.set(`${kind}:${row.blind_index}`, { erasedAt: num(row.erased_at) });
      }
    }
    return found;
  }

  async insertMany(
    tx: TxContext,
    subjects: Array<{ id: string; tenantId: string; createdAt: number }>,
    identifiers: Array<IdentifierIndex & { tenantId: string; subjectId: string; valueCiphertext: string; createdAt: number }>,
  ): Promise<void> {
    const m = managerOf(tx);
    await insertRows(m, 'subjects', ['id', 'tenant_id', 'created_at', 'erased_at'], subjects.map((x) => [x.id, x.tenantId, x.createdAt, null]));
    await insertRows(
      m,
      'subject_identifiers',
      ['tenant_id', 'kind', 'blind_index', 'subject_id', 'value_ciphertext', 'created_at'],
      identifiers.map((i) => [i.tenantId, i.kind, i.blindIndex, i.subjectId, i.valueCiphertext, i.createdAt]),
    );
  }

  async lockMany(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<Map<string, SubjectRef>> {
    const found = new Map<string, SubjectRef>();
    const manager = managerOf(tx);
    if (forUpdate(manager) === '') {
      // SQLite has no row locks (its one writer at a time is the transaction runner's lock): the
      // rows are only read, so one statement for all of them.
      const ids = [...new Set(subjectIds)];
      for (let start = 0; start < ids.length; start += 500) {
        const chunk = ids.slice(start, start + 500);
        const rows: Array<{ id: string; erased_at: unknown; objected_at: unknown; restricted_since: unknown; reassigned_at?: unknown; identifiers_changed_at?: unknown }> = await manager.query(
          `SELECT id, erased_at, objected_at, restricted_since, reassigned_at, identifiers_changed_at FROM subjects WHERE tenant_id = ? AND id IN (${placeholders(chunk.length)})`,
          [tenantId, ...chunk],
        );
        for (const row of rows) found.set(row.id, subjectRef(row.id, row));
      }
      return found;
    }
    // One at a time in id order: every writer locks in the same order, so writers of overlapping
    // sets of people wait for each other instead of deadlocking. (An IN list locks in index
    // order too, but the order is the storage engine's to choose.)
    for (const subjectId of [...new Set(subjectIds)].sort()) {
      const locked = await this.lock(tx, tenantId, subjectId);
      if (locked) found.set(subjectId, locked);
    }
    return found;
  }

  async find(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRef | null> {
    const rows: Array<{ erased_at: unknown; objected_at: unknown; restricted_since: unknown; reassigned_at?: unknown; identifiers_changed_at?: unknown }> = await managerOf(tx).query(
      'SELECT erased_at, objected_at, restricted_since, reassigned_at, identifiers_changed_at FROM subjects WHERE tenant_id = ? AND id = ?',
      [tenantId, subjectId],
    );
    return rows.length === 0 ? null : subjectRef(subjectId, rows[0]);
  }

  async lock(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRef | null> {
    const manager = managerOf(tx);
    const rows: Array<{ erased_at: unknown; objected_at: unknown; restricted_since: unknown; reassigned_at?: unknown; identifiers_changed_at?: unknown }> = await manager.query(
      `SELECT erased_at, objected_at, restricted_since, reassigned_at, identifiers_changed_at FROM subjects WHERE tenant_id = ? AND id = ?${forUpdate(manager)}`,
      [tenantId, subjectId],
    );
    return rows.length === 0 ? null : subjectRef(subjectId, rows[0]);
  }

  async objectedAtBy(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<number | undefined> {
    // The person's entries by the subject index, newest first; the objection's time is its entry's eventTime.
    const rows: Array<{ entry_json: string }> = await managerOf(tx).query(
      `SELECT entry_json FROM audit_entries WHERE tenant_id = ? AND subject_id = ? AND entry_type = 'SUBJECT_OBJECTED' AND entry_time <= ? ORDER BY seq DESC LIMIT 1`,
      [tenantId, subjectId, at],
    );
    if (rows.length === 0) return undefined;
    const eventTime = (JSON.parse(rows[0].entry_json) as { eventTime?: number }).eventTime;
    return typeof eventTime === 'number' ? eventTime : undefined;
  }

  async restrictedAt(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<boolean> {
    const rows: unknown[] = await managerOf(tx).query(
      'SELECT 1 AS r FROM subject_restrictions WHERE tenant_id = ? AND subject_id = ? AND placed_at <= ? AND (lifted_at IS NULL OR lifted_at > ?) LIMIT 1',
      [tenantId, subjectId, at, at],
    );
    return rows.length > 0;
  }

  async setRestrictedSince(tx: TxContext, tenantId: string, subjectId: string, since: number | null): Promise<void> {
    await managerOf(tx).query('UPDATE subjects SET restricted_since = ? WHERE tenant_id = ? AND id = ?', [since, tenantId, subjectId]);
  }

  async setObjection(tx: TxContext, tenantId: string, subjectId: string, objectedAt: number): Promise<void> {
    await managerOf(tx).query('UPDATE subjects SET objected_at = ? WHERE tenant_id = ? AND id = ?', [objectedAt, tenantId, subjectId]);
  }
}

/** A subject row as the domain sees it; `objectedAt` / `restrictedSince` / `reassignedAt` only when set. */
export function subjectRef(subjectId: string, row: { erased_at: unknown; objected_at: unknown; restricted_since: unknown; reassigned_at?: unknown; identifiers_changed_at?: unknown }): SubjectRef {
  const ref: SubjectRef = { subjectId, erased: row.erased_at !== null };
  if (row.objected_at !== null && row.objected_at !== undefined) ref.objectedAt = num(row.objected_at);
  if (row.restricted_since !== null && row.restricted_since !== undefined) ref.restrictedSince = num(row.restricted_since);
  if (row.reassigned_at !== null && row.reassigned_at !== undefined) ref.reassignedAt = num(row.reassigned_at);
  if (row.identifiers_changed_at !== null && row.identifiers_changed_at !== undefined) ref.identifiersChangedAt = num(row.identifiers_changed_at);
  return ref;
}

/** Distinct blind indexes per identifier kind. */
function byKind(indexes: IdentifierIndex[]): Map<string, string[]> {
  const sets = new Map<string, Set<string>>();
  for (const index of indexes) {
    let set = sets.get(index.kind);
    if (!set) sets.set(index.kind, (set = new Set()));
    set.add(index.blindIndex);
  }
  return new Map([...sets].map(([kind, set]) => [kind, [...set]]));
}
