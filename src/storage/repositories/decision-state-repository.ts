import { ScopeState } from '../../domain/consent-rules';
import { AuditChange, DecisionStateRead, DecisionStateRepository, IdentifierIndex } from '../../domain/ports';
import { Channel, IdentifierKind, OptInKind } from '../../domain/model';
import { TxContext } from '../../shared/unit-of-work';
import { managerOf } from '../transaction-runner';
import { num, optNum, placeholders } from './sql-dialect';
import { subjectRef } from './subject-repository';

type Row = Record<string, unknown>;

/** Identifiers per statement (each one a placeholder in four IN lists). */
const MAX_INDEXES = 250;

/**
 * What the check path reads on a cache miss, in one statement: the tenant's committed audit log
 * size (the version of everything read with it), the subjects the identifiers name, the
 * tombstones of erased ones, and the named subjects' consent scopes and service windows. One
 * statement is one consistent snapshot on both databases (InnoDB's consistent read of a statement;
 * SQLite's read of a statement), so the size is exactly the state's version: every write commits
 * its state rows and its audit entries, and moves the size, in one transaction.
 *
 * The parts are UNION ALL branches over the same twelve columns (`r` says which part a row is
 * of), each branch on a whole primary key or its prefix.
 */
export class SqlDecisionStateRepository implements DecisionStateRepository {
  async read(tx: TxContext, tenantId: string, indexes: IdentifierIndex[]): Promise<DecisionStateRead> {
    const result: DecisionStateRead = { version: 0, subjects: new Map(), suppressed: new Set(), state: new Map() };
    const distinct = [...new Map(indexes.map((i) => [`${i.kind}:${i.blindIndex}`, i])).values()];
    if (distinct.length === 0) {
      result.version = await this.size(tx, tenantId);
      return result;
    }
    for (let start = 0; start < distinct.length; start += MAX_INDEXES) {
      const { sql, params } = statementFor(tenantId, distinct.slice(start, start + MAX_INDEXES));
      const rows: Row[] = await managerOf(tx).query(sql, params);
      // Several statements (a batch of more than MAX_INDEXES identifiers): the oldest snapshot is the version.
      let version: number | null = null;
      for (const row of rows) {
        switch (row.r) {
          case 'h':
            version = num(row.n1);
            break;
          case 'i':
            result.subjects.set(`${row.kind}:${row.blind}`, subjectRef(String(row.subject_id), { erased_at: row.n1, objected_at: row.n2, restricted_since: row.n3, reassigned_at: row.n4 }));
            break;
          case 'x':
            result.suppressed.add(`${row.kind}:${row.blind}`);
            break;
          case 'c': {
            const scope: ScopeState = { purposeId: String(row.s1), channel: row.s2 as Channel };
            if (row.s3 !== null) scope.optIn = { eventId: String(row.s3), kind: row.s4 as OptInKind, eventTime: num(row.n1), expireTime: optNum(row.n2) };
            if (row.s5 !== null) scope.optOut = { eventId: String(row.s5), eventTime: num(row.n3) };
            stateOf(result, String(row.subject_id)).scopes.push(scope);
            break;
          }
          case 'w':
            stateOf(result, String(row.subject_id)).windows.push({ channel: row.s2 as Channel, eventId: String(row.s3), lastInboundTime: num(row.n1) });
            break;
        }
      }
      const size = version ?? 0;
      result.version = start === 0 ? size : Math.min(result.version, size);
    }
    return result;
  }

  async heads(tx: TxContext, tenantIds: string[]): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    for (let start = 0; start < tenantIds.length; start += 500) {
      const chunk = tenantIds.slice(start, start + 500);
      const rows: Row[] = await managerOf(tx).query(`SELECT tenant_id, size FROM audit_heads WHERE tenant_id IN (${placeholders(chunk.length)})`, chunk);
      for (const row of rows) sizes.set(String(row.tenant_id), num(row.size));
    }
    return sizes;
  }

  async changes(tx: TxContext, tenantId: string, fromSeq: number, toSeq: number, limit: number): Promise<AuditChange[]> {
    const rows: Row[] = await managerOf(tx).query(
      `SELECT seq, entry_type, subject_id FROM audit_entries WHERE tenant_id = ? AND seq >= ? AND seq < ? ORDER BY seq LIMIT ${Math.floor(limit)}`,
      [tenantId, fromSeq, toSeq],
    );
    return rows.map((row) => ({ seq: num(row.seq), type: row.entry_type === null ? null : String(row.entry_type), subjectId: row.subject_id === null ? null : String(row.subject_id) }));
  }

  private async size(tx: TxContext, tenantId: string): Promise<number> {
    const rows: Row[] = await managerOf(tx).query('SELECT size FROM audit_heads WHERE tenant_id = ?', [tenantId]);
    return rows.length === 0 ? 0 : num(rows[0].size);
  }
}

function stateOf(result: DecisionStateRead, subjectId: string) {
  let rows = result.state.get(subjectId);
  if (!rows) result.state.set(subjectId, (rows = { scopes: [], windows: [] }));
  return rows;
}

const COLUMNS = ['r', 'kind', 'blind', 'subject_id', 'n1', 'n2', 'n3', 'n4', 's1', 's2', 's3', 's4', 's5'] as const;

/** One SELECT branch with the union's columns, the unnamed ones NULL. */
function branch(values: Partial<Record<(typeof COLUMNS)[number], string>>, from: string): string {
  return `SELECT ${COLUMNS.map((c) => `${values[c] ?? 'NULL'} AS ${c}`).join(', ')} FROM ${from}`;
}

function statementFor(tenantId: string, indexes: IdentifierIndex[]): { sql: string; params: unknown[] } {
  const byKind = new Map<IdentifierKind, string[]>();
  for (const i of indexes) {
    const blinds = byKind.get(i.kind);
    if (blinds) blinds.push(i.blindIndex);
    else byKind.set(i.kind, [i.blindIndex]);
  }
  let shape = '';
  const params: unknown[] = [tenantId];
  for (const [kind, blinds] of byKind) {
    shape += `${kind}:${blinds.length};`;
    for (let branchNo = 0; branchNo < BRANCHES_PER_KIND; branchNo++) params.push(tenantId, kind, ...blinds);
  }
  return { sql: sqlFor(shape, byKind), params };
}

/**
 * The statement's text depends only on the kinds asked and how many identifiers of each (its
 * shape); a miss of a unary check always has the same one. Made once per shape: building it
 * was ~5% of a cache miss's time (profile of bench:checks' cold window).
 */
const SQL_BY_SHAPE = new Map<string, string>();
/** Per identifier kind the statement has these branches, each taking (tenant, kind, ...blind indexes). */
const BRANCHES_PER_KIND = 4;
const SHAPES_KEPT = 512;

function sqlFor(shape: string, byKind: Map<IdentifierKind, string[]>): string {
  const known = SQL_BY_SHAPE.get(shape);
  if (known !== undefined) return known;
  const parts: string[] = [branch({ r: "'h'", n1: 'size' }, 'audit_heads WHERE tenant_id = ?')];
  for (const blinds of byKind.values()) {
    // BRANCHES_PER_KIND branches: the person ('i'), tombstones ('x'), scopes ('c'), windows ('w').
    const named = `i.tenant_id = ? AND i.kind = ? AND i.blind_index IN (${placeholders(blinds.length)})`;
    parts.push(branch({ r: "'i'", kind: 'i.kind', blind: 'i.blind_index', subject_id: 'i.subject_id', n1: 's.erased_at', n2: 's.objected_at', n3: 's.restricted_since', n4: 's.reassigned_at' }, `subject_identifiers i JOIN subjects s ON s.id = i.subject_id WHERE ${named}`));
    parts.push(branch({ r: "'x'", kind: 'x.kind', blind: 'x.blind_index' }, `suppressions x WHERE x.tenant_id = ? AND x.kind = ? AND x.blind_index IN (${placeholders(blinds.length)})`));
    parts.push(
      branch(
        {
          r: "'c'",
          subject_id: 'c.subject_id',
          n1: 'c.opt_in_time',
          n2: 'c.opt_in_expire_time',
          n3: 'c.opt_out_time',
          s1: 'c.purpose_id',
          s2: 'c.channel',
          s3: 'c.opt_in_event_id',
          s4: 'c.opt_in_kind',
          s5: 'c.opt_out_event_id',
        },
        `subject_identifiers i JOIN consent_state c ON c.tenant_id = i.tenant_id AND c.subject_id = i.subject_id WHERE ${named}`,
      ),
    );
    parts.push(
      branch(
        { r: "'w'", subject_id: 'w.subject_id', n1: 'w.last_inbound_time', s2: 'w.channel', s3: 'w.event_id' },
        `subject_identifiers i JOIN service_windows w ON w.tenant_id = i.tenant_id AND w.subject_id = i.subject_id WHERE ${named}`,
      ),
    );
  }
  const sql = parts.join(' UNION ALL ');
  if (SQL_BY_SHAPE.size >= SHAPES_KEPT) SQL_BY_SHAPE.clear();
  SQL_BY_SHAPE.set(shape, sql);
  return sql;
}
