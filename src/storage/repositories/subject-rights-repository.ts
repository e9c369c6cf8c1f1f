import { Brackets, EntityManager } from 'typeorm';
import { LegalHoldRecord, NewestFirstCursor, RestrictionRecord, OPEN_REQUEST_STATES, RequestIdentifierRecord, RequestKind, RequestState, RequestNotice, RequestTransitionRecord, SubjectRequestRecord, SubjectRightsRepository } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { IdentifierKind } from '../../domain/model';
import { LegalHoldEntity, SubjectRequestEntity, SubjectRequestIdentifierEntity, SubjectRequestTransitionEntity, SubjectRestrictionEntity } from '../entities';
import { managerOf } from '../transaction-runner';
import { forUpdate } from './sql-dialect';

export class TypeormSubjectRightsRepository implements SubjectRightsRepository {
  async insertRequest(tx: TxContext, request: SubjectRequestRecord): Promise<void> {
    const { extensionNotice, rejectionNotice, ...row } = request;
    await managerOf(tx).insert(SubjectRequestEntity, { ...row, extensionNotice: noticeJson(extensionNotice), rejectionNotice: noticeJson(rejectionNotice) });
  }

  async findRequest(tx: TxContext, tenantId: string, id: string): Promise<SubjectRequestRecord | null> {
    return toRequest(await managerOf(tx).findOneBy(SubjectRequestEntity, { tenantId, id }));
  }

  async findRequestByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<SubjectRequestRecord | null> {
    return toRequest(await managerOf(tx).findOneBy(SubjectRequestEntity, { tenantId, requestId }));
  }

  async lockRequest(tx: TxContext, tenantId: string, id: string): Promise<SubjectRequestRecord | null> {
    const m = managerOf(tx);
    await m.query(`SELECT id FROM subject_requests WHERE tenant_id = ? AND id = ?${forUpdate(m)}`, [tenantId, id]);
    return this.findRequest(tx, tenantId, id);
  }

  async updateRequest(tx: TxContext, id: string, change: Partial<Omit<SubjectRequestRecord, 'extensionNotice' | 'rejectionNotice'>>): Promise<void> {
    await managerOf(tx).update(SubjectRequestEntity, { id }, change);
  }

  async recordNotice(tx: TxContext, id: string, topic: 'EXTENSION' | 'REJECTION', notice: RequestNotice): Promise<void> {
    await managerOf(tx).update(SubjectRequestEntity, { id }, topic === 'EXTENSION' ? { extensionNotice: JSON.stringify(notice) } : { rejectionNotice: JSON.stringify(notice) });
  }

  async addTransition(tx: TxContext, t: Omit<RequestTransitionRecord, 'seq'>): Promise<void> {
    const m = managerOf(tx);
    const [row] = await m.query('SELECT COALESCE(MAX(seq), 0) AS seq FROM subject_request_transitions WHERE request_id = ?', [t.requestId]);
    await m.insert(SubjectRequestTransitionEntity, { ...t, seq: Number(row.seq) + 1 });
  }

  async transitions(tx: TxContext, requestIds: string[]): Promise<Map<string, RequestTransitionRecord[]>> {
    const result = new Map<string, RequestTransitionRecord[]>();
    if (requestIds.length === 0) return result;
    const rows = await managerOf(tx)
      .createQueryBuilder(SubjectRequestTransitionEntity, 't')
      .where('t.requestId IN (:...ids)', { ids: requestIds })
      .orderBy('t.requestId')
      .addOrderBy('t.seq')
      .getMany();
    for (const row of rows) {
      const list = result.get(row.requestId) ?? [];
      list.push({ ...row, fromState: row.fromState as RequestState | null, toState: row.toState as RequestState });
      result.set(row.requestId, list);
    }
    return result;
  }

  async listRequests(
    tx: TxContext,
    tenantId: string,
    filter: { state?: RequestState; kind?: RequestKind; openDueBefore?: number; lapsedReceivedBefore?: number },
    after: NewestFirstCursor | null,
    limit: number,
  ): Promise<SubjectRequestRecord[]> {
    const q = managerOf(tx).createQueryBuilder(SubjectRequestEntity, 'r').where('r.tenantId = :tenantId', { tenantId });
    if (filter.state) q.andWhere('r.state = :state', { state: filter.state });
    if (filter.kind) q.andWhere('r.kind = :kind', { kind: filter.kind });
    if (filter.openDueBefore !== undefined) {
      q.andWhere('r.state IN (:...open)', { open: [...OPEN_REQUEST_STATES] });
      if (filter.lapsedReceivedBefore === undefined) q.andWhere('r.dueTime < :due', { due: filter.openDueBefore });
      else {
        // Or extended without the person told of it, and past the first deadline (deadlineInForce).
        q.andWhere('(r.dueTime < :due OR (r.extensionReason IS NOT NULL AND r.extensionNotice IS NULL AND r.receiveTime < :lapsed))', { due: filter.openDueBefore, lapsed: filter.lapsedReceivedBefore });
      }
    }
    newestFirst(q, 'r', after);
    const rows = await q.orderBy('r.createdAt', 'DESC').addOrderBy('r.id', 'DESC').take(limit).getMany();
    return rows.map((r) => toRequest(r)!);
  }

  async insertRequestIdentifiers(tx: TxContext, rows: RequestIdentifierRecord[]): Promise<void> {
    if (rows.length > 0) await managerOf(tx).insert(SubjectRequestIdentifierEntity, rows.map((r) => ({ ...r })));
  }

  async requestIdentifiers(tx: TxContext, requestIds: string[]): Promise<Map<string, RequestIdentifierRecord[]>> {
    const result = new Map<string, RequestIdentifierRecord[]>();
    if (requestIds.length === 0) return result;
    const rows = await managerOf(tx)
      .createQueryBuilder(SubjectRequestIdentifierEntity, 'i')
      .where('i.requestId IN (:...ids)', { ids: requestIds })
      .orderBy('i.requestId')
      .addOrderBy('i.position')
      .getMany();
    for (const row of rows) {
      const list = result.get(row.requestId) ?? [];
      list.push({ ...row, identifierKind: row.identifierKind as IdentifierKind });
      result.set(row.requestId, list);
    }
    return result;
  }

  async updateRequestIdentifier(tx: TxContext, requestId: string, position: number, change: Partial<RequestIdentifierRecord>): Promise<void> {
    await managerOf(tx).update(SubjectRequestIdentifierEntity, { requestId, position }, change);
  }

  async sealUnreachedIdentifiers(tx: TxContext, requestId: string, seal: (blindIndex: string) => string): Promise<void> {
    const m = managerOf(tx);
    const rows: Array<{ position: unknown; blind_index: string }> = await m.query('SELECT position, blind_index FROM subject_request_identifiers WHERE request_id = ? AND subject_id IS NULL', [requestId]);
    for (const r of rows) await m.query('UPDATE subject_request_identifiers SET blind_index = ? WHERE request_id = ? AND position = ?', [seal(r.blind_index), requestId, Number(r.position)]);
  }

  async recordErasure(tx: TxContext, requestId: string, subjectId: string, erasure: string): Promise<void> {
    await managerOf(tx).update(SubjectRequestIdentifierEntity, { requestId, subjectId }, { erasure });
  }

  async requestsOfSubject(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRequestRecord[]> {
    const rows = await managerOf(tx)
      .createQueryBuilder(SubjectRequestEntity, 'r')
      .where('r.tenantId = :tenantId', { tenantId })
      .andWhere('r.id IN (SELECT i.request_id FROM subject_request_identifiers i WHERE i.tenant_id = :tenantId AND i.subject_id = :subjectId)', { tenantId, subjectId })
      .orderBy('r.createdAt', 'ASC')
      .addOrderBy('r.id', 'ASC')
      .getMany();
    return rows.map((r) => toRequest(r)!);
  }

  async inProgressErasures(tx: TxContext): Promise<SubjectRequestRecord[]> {
    const rows = await managerOf(tx).findBy(SubjectRequestEntity, { kind: 'ERASURE', state: 'IN_PROGRESS' });
    return rows.map((r) => toRequest(r)!);
  }

  async insertRestriction(tx: TxContext, restriction: RestrictionRecord): Promise<void> {
    await managerOf(tx).insert(SubjectRestrictionEntity, { ...restriction });
  }

  async findRestriction(tx: TxContext, tenantId: string, id: string): Promise<RestrictionRecord | null> {
    return managerOf(tx).findOneBy(SubjectRestrictionEntity, { tenantId, id });
  }

  async restrictionsOfRequest(tx: TxContext, tenantId: string, requestId: string): Promise<RestrictionRecord[]> {
    return managerOf(tx).find(SubjectRestrictionEntity, { where: { tenantId, requestId }, order: { placedAt: 'ASC', id: 'ASC' } });
  }

  async updateRestriction(tx: TxContext, id: string, change: Partial<RestrictionRecord>): Promise<void> {
    await managerOf(tx).update(SubjectRestrictionEntity, { id }, change);
  }

  async listRestrictions(
    tx: TxContext,
    tenantId: string,
    filter: { subjectId?: string; includeLifted: boolean },
    after: NewestFirstCursor | null,
    limit: number,
  ): Promise<RestrictionRecord[]> {
    const q = managerOf(tx).createQueryBuilder(SubjectRestrictionEntity, 'r').where('r.tenantId = :tenantId', { tenantId });
    if (filter.subjectId) q.andWhere('r.subjectId = :subjectId', { subjectId: filter.subjectId });
    if (!filter.includeLifted) q.andWhere('r.liftedAt IS NULL');
    newestFirst(q, 'r', after, 'placedAt');
    return q.orderBy('r.placedAt', 'DESC').addOrderBy('r.id', 'DESC').take(limit).getMany();
  }

  async insertHold(tx: TxContext, hold: LegalHoldRecord): Promise<void> {
    await managerOf(tx).insert(LegalHoldEntity, { ...hold });
  }

  async findHold(tx: TxContext, tenantId: string, id: string): Promise<LegalHoldRecord | null> {
    return managerOf(tx).findOneBy(LegalHoldEntity, { tenantId, id });
  }

  async findHoldByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<LegalHoldRecord | null> {
    return managerOf(tx).findOneBy(LegalHoldEntity, { tenantId, requestId });
  }

  async updateHold(tx: TxContext, id: string, change: Partial<LegalHoldRecord>): Promise<void> {
    await managerOf(tx).update(LegalHoldEntity, { id }, change);
  }

  async listHolds(
    tx: TxContext,
    tenantId: string,
    filter: { subjectId?: string; includeReleased: boolean },
    after: NewestFirstCursor | null,
    limit: number,
  ): Promise<LegalHoldRecord[]> {
    const q = managerOf(tx).createQueryBuilder(LegalHoldEntity, 'h').where('h.tenantId = :tenantId', { tenantId });
    if (filter.subjectId) q.andWhere('h.subjectId = :subjectId', { subjectId: filter.subjectId });
    if (!filter.includeReleased) q.andWhere('h.releasedAt IS NULL');
    newestFirst(q, 'h', after, 'placedAt');
    return q.orderBy('h.placedAt', 'DESC').addOrderBy('h.id', 'DESC').take(limit).getMany();
  }
}

/** Continues a newest-first listing after a cursor: (time, id) strictly below it. */
function newestFirst(
  q: ReturnType<EntityManager['createQueryBuilder']>,
  alias: string,
  after: NewestFirstCursor | null,
  timeColumn = 'createdAt',
): void {
  if (!after) return;
  q.andWhere(
    new Brackets((b) => {
      b.where(`${alias}.${timeColumn} < :cursorTime`, { cursorTime: after.createdAt }).orWhere(
        new Brackets((c) => c.where(`${alias}.${timeColumn} = :cursorTime`).andWhere(`${alias}.id < :cursorId`, { cursorId: after.id })),
      );
    }),
  );
}

function noticeJson(notice: RequestNotice | null | undefined): string | null {
  return notice ? JSON.stringify(notice) : null;
}

function toRequest(row: SubjectRequestEntity | null): SubjectRequestRecord | null {
  if (!row) return null;
  return {
    ...row,
    kind: row.kind as RequestKind,
    state: row.state as RequestState,
    identifierKind: row.identifierKind as IdentifierKind,
    rectifiedKind: row.rectifiedKind as IdentifierKind | null,
    extensionNotice: row.extensionNotice ? (JSON.parse(row.extensionNotice) as RequestNotice) : null,
    rejectionNotice: row.rejectionNotice ? (JSON.parse(row.rejectionNotice) as RequestNotice) : null,
  };
}
