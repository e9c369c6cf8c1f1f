import { ScopeState, WindowState } from '../../domain/consent-rules';
import { ConsentEventFilter, ConsentRepository, StoredConsentEvent, SubjectStateRows } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { Channel, CollectionMethod, ConsentEvent, EventKind, LawfulBasis, OptInKind } from '../../domain/model';
import { managerOf } from '../transaction-runner';
import { insertRows, num, optNum, placeholders, upsertRows } from './sql-dialect';

const EVENT_COLUMNS = `seq, id, tenant_id, subject_id, kind, purpose_id, channel, event_time, record_time, method,
  notice_purpose_id, notice_version, notice_sha256, notice_language, principal, lawful_basis, jurisdiction,
  expire_time, request_id, request_fingerprint, evidence_ciphertext`;

type EventRow = Record<string, unknown>;

/**
 * The append-only event log and the current-state tables. The check path uses raw SQL with
 * explicit columns: entity hydration is the expensive part of an ORM read.
 */
export class TypeormConsentRepository implements ConsentRepository {
  async noticeOf(tx: TxContext, tenantId: string, eventId: string): Promise<ConsentEvent['notice']> {
    const rows: EventRow[] = await managerOf(tx).query(`SELECT ${EVENT_COLUMNS} FROM consent_events WHERE tenant_id = ? AND id = ?`, [tenantId, eventId]);
    return rows.length > 0 ? toEvent(rows[0]).notice : undefined;
  }

  async findByRequestIds(tx: TxContext, tenantId: string, requestIds: string[]): Promise<StoredConsentEvent[]> {
    const ids = [...new Set(requestIds)];
    const found: StoredConsentEvent[] = [];
    for (let start = 0; start < ids.length; start += 500) {
      const chunk = ids.slice(start, start + 500);
      const rows: EventRow[] = await managerOf(tx).query(
        `SELECT ${EVENT_COLUMNS} FROM consent_events WHERE tenant_id = ? AND request_id IN (${placeholders(chunk.length)})`,
        [tenantId, ...chunk],
      );
      found.push(...rows.map(toEvent));
    }
    return found;
  }

  async insertEvents(tx: TxContext, events: StoredConsentEvent[]): Promise<void> {
    // In the order given: the AUTO_INCREMENT seq of a multi-row INSERT follows the row order.
    await insertRows(managerOf(tx), 'consent_events', INSERT_COLUMNS, events.map(eventValues));
  }

  async saveStates(tx: TxContext, tenantId: string, scopes: Array<{ subjectId: string; scope: ScopeState }>, windows: Array<{ subjectId: string; window: WindowState }>): Promise<void> {
    const m = managerOf(tx);
    if (scopes.length > 0) {
      await upsertRows(
        m,
        'consent_state',
        ['tenant_id', 'subject_id', 'purpose_id', 'channel'],
        ['opt_in_event_id', 'opt_in_kind', 'opt_in_time', 'opt_in_expire_time', 'opt_out_event_id', 'opt_out_time'],
        scopes.map(({ subjectId, scope: s }) => [
          tenantId,
          subjectId,
          s.purposeId,
          s.channel,
          s.optIn?.eventId ?? null,
          s.optIn?.kind ?? null,
          s.optIn?.eventTime ?? null,
          s.optIn?.expireTime ?? null,
          s.optOut?.eventId ?? null,
          s.optOut?.eventTime ?? null,
        ]),
      );
    }
    if (windows.length > 0) {
      await upsertRows(
        m,
        'service_windows',
        ['tenant_id', 'subject_id', 'channel'],
        ['event_id', 'last_inbound_time'],
        windows.map(({ subjectId, window: w }) => [tenantId, subjectId, w.channel, w.eventId, w.lastInboundTime]),
      );
    }
  }

  async loadState(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<Map<string, SubjectStateRows>> {
    const result = new Map<string, SubjectStateRows>();
    if (subjectIds.length === 0) return result;
    const manager = managerOf(tx);
    const ids = [...new Set(subjectIds)];
    const entry = (subjectId: string): SubjectStateRows => {
      let rows = result.get(subjectId);
      if (!rows) result.set(subjectId, (rows = { scopes: [], windows: [] }));
      return rows;
    };
    const scopes: EventRow[] = await manager.query(
      `SELECT subject_id, purpose_id, channel, opt_in_event_id, opt_in_kind, opt_in_time, opt_in_expire_time,
              opt_out_event_id, opt_out_time
         FROM consent_state WHERE tenant_id = ? AND subject_id IN (${placeholders(ids.length)})`,
      [tenantId, ...ids],
    );
    for (const row of scopes) {
      const scope: ScopeState = { purposeId: String(row.purpose_id), channel: row.channel as Channel };
      if (row.opt_in_event_id !== null) {
        scope.optIn = {
          eventId: String(row.opt_in_event_id),
          kind: row.opt_in_kind as OptInKind,
          eventTime: num(row.opt_in_time),
          expireTime: optNum(row.opt_in_expire_time),
        };
      }
      if (row.opt_out_event_id !== null) {
        scope.optOut = { eventId: String(row.opt_out_event_id), eventTime: num(row.opt_out_time) };
      }
      entry(String(row.subject_id)).scopes.push(scope);
    }
    const windows: EventRow[] = await manager.query(
      `SELECT subject_id, channel, event_id, last_inbound_time
         FROM service_windows WHERE tenant_id = ? AND subject_id IN (${placeholders(ids.length)})`,
      [tenantId, ...ids],
    );
    for (const row of windows) {
      entry(String(row.subject_id)).windows.push({
        channel: row.channel as Channel,
        eventId: String(row.event_id),
        lastInboundTime: num(row.last_inbound_time),
      });
    }
    return result;
  }

  async eventsRecordedBy(tx: TxContext, tenantId: string, subjectId: string, recordedBy: number): Promise<StoredConsentEvent[]> {
    const rows: EventRow[] = await managerOf(tx).query(
      `SELECT ${EVENT_COLUMNS} FROM consent_events
        WHERE tenant_id = ? AND subject_id = ? AND record_time <= ? ORDER BY seq`,
      [tenantId, subjectId, recordedBy],
    );
    return rows.map(toEvent);
  }

  async countEvents(tx: TxContext, tenantId: string, subjectId: string): Promise<number> {
    const [row] = await managerOf(tx).query('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ? AND subject_id = ?', [tenantId, subjectId]);
    return num(row.n);
  }

  async identifiersOf(tx: TxContext, tenantId: string, subjectId: string): Promise<Array<{ kind: string; blindIndex: string; valueCiphertext: string }>> {
    const rows: EventRow[] = await managerOf(tx).query(
      'SELECT kind, blind_index, value_ciphertext FROM subject_identifiers WHERE tenant_id = ? AND subject_id = ? ORDER BY kind, blind_index',
      [tenantId, subjectId],
    );
    return rows.map((r) => ({ kind: String(r.kind), blindIndex: String(r.blind_index), valueCiphertext: String(r.value_ciphertext) }));
  }

  async list(
    tx: TxContext,
    tenantId: string,
    filter: ConsentEventFilter,
    afterSeq: number,
    limit: number,
  ): Promise<Array<{ seq: number; event: StoredConsentEvent; subjectErased: boolean }>> {
    const where = ['tenant_id = ?', 'seq > ?'];
    const params: unknown[] = [tenantId, afterSeq];
    const add = (clause: string, value: unknown) => {
      where.push(clause);
      params.push(value);
    };
    if (filter.subjectId !== undefined) add('subject_id = ?', filter.subjectId);
    if (filter.purposeId !== undefined) add('purpose_id = ?', filter.purposeId);
    if (filter.channel !== undefined) add('channel = ?', filter.channel);
    if (filter.startTime !== undefined) add('event_time >= ?', filter.startTime);
    if (filter.endTime !== undefined) add('event_time < ?', filter.endTime);
    const conditions = where.map((w) => `e.${w}`);
    if (filter.excludeErased) conditions.push('s.erased_at IS NULL');
    const columns = EVENT_COLUMNS.split(',').map((c) => `e.${c.trim()}`).join(', ');
    // The subject's erasure flag comes with each row, read in the same statement: a process that
    // still caches the key of a subject erased elsewhere sees the flag and does not decrypt.
    const rows: EventRow[] = await managerOf(tx).query(
      `SELECT ${columns}, s.erased_at AS subject_erased_at FROM consent_events e LEFT JOIN subjects s ON s.id = e.subject_id
        WHERE ${conditions.join(' AND ')} ORDER BY e.seq LIMIT ${Math.floor(limit)}`,
      params,
    );
    return rows.map((row) => ({ seq: num(row.seq), event: toEvent(row), subjectErased: row.subject_erased_at !== null }));
  }
}

/** Every column of consent_events but seq, which the database assigns. */
const INSERT_COLUMNS = [
  'id',
  'tenant_id',
  'subject_id',
  'kind',
  'purpose_id',
  'channel',
  'event_time',
  'record_time',
  'method',
  'notice_purpose_id',
  'notice_version',
  'notice_sha256',
  'notice_language',
  'principal',
  'lawful_basis',
  'jurisdiction',
  'expire_time',
  'request_id',
  'request_fingerprint',
  'evidence_ciphertext',
] as const;

function eventValues(e: StoredConsentEvent): unknown[] {
  return [
    e.id,
    e.tenantId,
    e.subjectId,
    e.kind,
    e.purposeId,
    e.channel,
    e.eventTime,
    e.recordTime,
    e.method,
    e.notice?.purposeId ?? null,
    e.notice?.version ?? null,
    e.notice?.textSha256 ?? null,
    e.notice?.language ?? null,
    e.principal,
    e.lawfulBasis,
    e.jurisdiction,
    e.expireTime ?? null,
    e.requestId,
    e.requestFingerprint,
    e.evidenceCiphertext,
  ];
}

function toEvent(row: EventRow): StoredConsentEvent {
  const noticeVersion = optNum(row.notice_version);
  return {
    id: String(row.id),
    tenantId: String(row.tenant_id),
    subjectId: String(row.subject_id),
    kind: row.kind as EventKind,
    purposeId: String(row.purpose_id),
    channel: row.channel as Channel,
    eventTime: num(row.event_time),
    recordTime: num(row.record_time),
    method: row.method as CollectionMethod,
    notice:
      noticeVersion === undefined
        ? undefined
        : {
            purposeId: String(row.notice_purpose_id),
            version: noticeVersion,
            textSha256: String(row.notice_sha256),
            language: String(row.notice_language),
          },
    principal: String(row.principal),
    lawfulBasis: (row.lawful_basis ?? null) as LawfulBasis | null,
    jurisdiction: String(row.jurisdiction),
    expireTime: optNum(row.expire_time),
    requestId: String(row.request_id),
    requestFingerprint: String(row.request_fingerprint),
    evidenceCiphertext: row.evidence_ciphertext === null ? null : String(row.evidence_ciphertext),
  };
}
