import { AuditEntry, AuditEntryFilter, AuditRepository, CheckpointRecord, StoredAuditEntry } from '../../audit/audit-types';
import { TxContext } from '../../shared/unit-of-work';
import { AuditCheckpointEntity, AuditHeadEntity } from '../entities';
import { managerOf } from '../transaction-runner';
import { forUpdate, insertRows, num, placeholders } from './sql-dialect';

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
    await managerOf(tx).query('UPDATE audit_heads SET size = ? WHERE tenant_id = ?', [size, tenantId]);
  }

  async size(tx: TxContext, tenantId: string): Promise<number> {
    const head = await managerOf(tx).findOneBy(AuditHeadEntity, { tenantId });
    return head?.size ?? 0;
  }

  async insertEntries(tx: TxContext, tenantId: string, entries: Array<{ seq: number; entry: AuditEntry; entryJson: string; leafHash: string }>): Promise<void> {
    await insertRows(
      managerOf(tx),
      'audit_entries',
      ['tenant_id', 'seq', 'entry_json', 'leaf_hash', 'entry_type', 'subject_id', 'purpose_id', 'principal', 'entry_time'],
      entries.map(({ seq, entry, entryJson, leafHash }) => [tenantId, seq, entryJson, leafHash, entry.type, entry.subject ?? null, entry.purpose ?? null, entry.principal, entry.time]),
    );
  }

  async insertNodes(tx: TxContext, tenantId: string, nodes: Array<{ level: number; index: number; hash: string }>): Promise<void> {
    await insertRows(managerOf(tx), 'audit_nodes', ['tenant_id', 'level', 'idx', 'hash'], nodes.map((n) => [tenantId, n.level, n.index, n.hash]));
  }

  async subtreeHashes(tx: TxContext, tenantId: string, ranges: Array<{ level: number; from: number; to: number }>): Promise<Map<string, string>> {
    if (ranges.length === 0) return new Map();
    // One primary-key range per branch, joined with UNION ALL: SQLite plans an OR of ranges as a
    // scan of the tenant's whole tree (53 ms at 600,000 nodes, read by every write batch), each
    // branch here as a range of the primary key.
    const range = 'SELECT level, idx, hash FROM audit_nodes WHERE tenant_id = ? AND level = ? AND idx >= ? AND idx < ?';
    const rows: Array<{ level: unknown; idx: unknown; hash: string }> = await managerOf(tx).query(
      ranges.map(() => range).join(' UNION ALL '),
      ranges.flatMap((r) => [tenantId, r.level, r.from, r.to]),
    );
    const hashes = new Map<string, string>();
    for (const r of rows) hashes.set(`${num(r.level)}:${num(r.idx)}`, r.hash);
    return hashes;
  }

  async entries(tx: TxContext, tenantId: string, fromSeq: number, limit: number, filter: AuditEntryFilter = {}): Promise<StoredAuditEntry[]> {
    const { where, params } = whereOf(tenantId, fromSeq, filter);
    const rows: IndexedEntryRow[] = await managerOf(tx).query(
      `SELECT seq, entry_json, leaf_hash, entry_type, subject_id, purpose_id, principal, entry_time FROM audit_entries WHERE ${where} ORDER BY seq LIMIT ${Math.floor(limit)}`,
      params,
    );
    return rows.map((r) => {
      const indexProblem = indexColumnsProblem(r);
      return indexProblem ? { seq: num(r.seq), entryJson: r.entry_json, leafHash: r.leaf_hash, indexProblem } : { seq: num(r.seq), entryJson: r.entry_json, leafHash: r.leaf_hash };
    });
  }

  async count(tx: TxContext, tenantId: string, filter: AuditEntryFilter): Promise<number> {
    const { where, params } = whereOf(tenantId, 0, filter);
    const [row] = await managerOf(tx).query(`SELECT COUNT(*) AS n FROM audit_entries WHERE ${where}`, params);
    return num(row.n);
  }

  async insertCheckpoint(tx: TxContext, checkpoint: CheckpointRecord): Promise<void> {
    const m = managerOf(tx);
    const exists = await m.findOneBy(AuditCheckpointEntity, { tenantId: checkpoint.tenantId, treeSize: checkpoint.treeSize });
    if (exists) return;
    await m.insert(AuditCheckpointEntity, checkpoint);
  }

  async checkpoints(tx: TxContext, tenantId: string, beforeSize: number | null, limit: number): Promise<CheckpointRecord[]> {
    const rows: Array<{ tree_size: unknown; root_hash: string; signed_at: unknown; jws: string }> = await managerOf(tx).query(
      `SELECT tree_size, root_hash, signed_at, jws FROM audit_checkpoints WHERE tenant_id = ?${beforeSize === null ? '' : ' AND tree_size < ?'}
        ORDER BY tree_size DESC LIMIT ${Math.floor(limit)}`,
      beforeSize === null ? [tenantId] : [tenantId, beforeSize],
    );
    return rows.map((r) => ({ tenantId, treeSize: num(r.tree_size), rootHash: r.root_hash, signedAt: num(r.signed_at), jws: r.jws }));
  }

  async tenantsWithoutLatestCheckpoint(tx: TxContext): Promise<string[]> {
    const rows: Array<{ tenant_id: string }> = await managerOf(tx).query(
      `SELECT h.tenant_id FROM audit_heads h JOIN tenants t ON t.id = h.tenant_id
        WHERE t.erased_at IS NULL AND h.size <> COALESCE((SELECT MAX(c.tree_size) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id), 0)
        ORDER BY h.tenant_id`,
    );
    return rows.map((r) => r.tenant_id);
  }
}

/** An entry as read, with the columns it is found by. */
interface IndexedEntryRow {
  seq: unknown;
  entry_json: string;
  leaf_hash: string;
  entry_type: string;
  subject_id: string | null;
  purpose_id: string | null;
  principal: string;
  entry_time: unknown;
}

/**
 * The columns an entry is found by (type, subject, purpose, principal, time) are copies of its
 * hashed JSON, not hashed themselves: changed behind the service, they would hide an entry from a
 * filtered view (a person's restriction from ExplainDecision, an opt-out from their history) while
 * every proof still verifies. Every entry read is compared with its JSON and carries what differs,
 * so the full walk of `consentctl audit verify --entries` finds any such change.
 */
function indexColumnsProblem(r: IndexedEntryRow): string | undefined {
  let entry: { type?: unknown; subject?: unknown; purpose?: unknown; principal?: unknown; time?: unknown };
  try {
    entry = JSON.parse(r.entry_json) as typeof entry;
  } catch {
    return 'its JSON does not parse';
  }
  const differs: string[] = [];
  if (entry.type !== r.entry_type) differs.push('type');
  if ((entry.subject ?? null) !== r.subject_id) differs.push('subject');
  if ((entry.purpose ?? null) !== r.purpose_id) differs.push('purpose');
  if (entry.principal !== r.principal) differs.push('principal');
  if (entry.time !== num(r.entry_time)) differs.push('time');
  return differs.length === 0 ? undefined : `its ${differs.join(', ')} column${differs.length > 1 ? 's differ' : ' differs'} from its hashed JSON`;
}

/** The WHERE clause (and its parameters) of the entries from `fromSeq` on that match `filter`. */
function whereOf(tenantId: string, fromSeq: number, filter: AuditEntryFilter): { where: string; params: unknown[] } {
  const where = ['tenant_id = ?', 'seq >= ?'];
  const params: unknown[] = [tenantId, fromSeq];
  if (filter.types && filter.types.length > 0) {
    where.push(`entry_type IN (${placeholders(filter.types.length)})`);
    params.push(...filter.types);
  }
  if (filter.subjectId !== undefined) where.push('subject_id = ?'), params.push(filter.subjectId);
  if (filter.purposeId !== undefined) where.push('purpose_id = ?'), params.push(filter.purposeId);
  if (filter.principal !== undefined) where.push('principal = ?'), params.push(filter.principal);
  if (filter.startTime !== undefined) where.push('entry_time >= ?'), params.push(filter.startTime);
  if (filter.endTime !== undefined) where.push('entry_time < ?'), params.push(filter.endTime);
  if (filter.beforeSeq !== undefined) where.push('seq < ?'), params.push(filter.beforeSeq);
  return { where: where.join(' AND '), params };
}
