import { encodeConsistencyToken } from './consistency';
import { randomBytes } from 'node:crypto';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { extendedDeadline, requestDeadline } from './deadlines';
import { DomainError, failedPrecondition, FieldViolation, invalidArgument, notFound, Violations } from '../shared/errors';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from './pagination';
import { AuditTrail } from '../audit/audit-types';
import { LegalHoldRecord, NewestFirstCursor, OPEN_REQUEST_STATES, RestrictionRecord, RequestKind, RequestState, RequestTransitionRecord, SubjectRepository, SubjectRequestRecord, SubjectRightsRepository } from './ports';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { Page } from './purpose-service';
import { Principal } from './principal';
import { checkRequestId } from './request-id';
import { SubjectEraser } from './subject-eraser';
import { TenantService } from './tenant-service';
import { sha256Hex } from '../shared/hashing';
import { ObjectionRecorder, PreparedObjection } from './objection';
import { checkRectifiedIdentifier, IdentifierRectification, RectifiedFields } from './identifier-rectification';

export const RECEIVED_VIA = ['EMAIL', 'WEB_FORM', 'LETTER', 'PHONE', 'IN_PERSON', 'CHAT', 'OTHER'] as const;
export const LEGAL_HOLD_GROUNDS = [
  'A_FREEDOM_OF_EXPRESSION',
  'B_LEGAL_OBLIGATION',
  'C_PUBLIC_HEALTH',
  'D_ARCHIVING_RESEARCH',
  'E_LEGAL_CLAIMS',
] as const;
export type LegalHoldGround = (typeof LEGAL_HOLD_GROUNDS)[number];
/** Art. 18(1)(a)-(d). */
export const RESTRICTION_GROUNDS = ['A_ACCURACY_CONTESTED', 'B_UNLAWFUL_PROCESSING', 'C_LEGAL_CLAIMS', 'D_OBJECTION_PENDING'] as const;
export type RestrictionGround = (typeof RESTRICTION_GROUNDS)[number];

/** A request with its history and whether its deadline has passed. */
export interface SubjectRequestView extends SubjectRequestRecord {
  transitions: RequestTransitionRecord[];
  overdue: boolean;
}

const MAX_TEXT = 1000;

/**
 * The DPO's requests (Art. 15, 17, 20) and legal holds (Art. 17(3)). Every change of a request's
 * state is recorded with its principal and time, in the transaction that makes it. Requesters are
 * referenced by blind index and opaque subject id: a request row holds no identifier in clear.
 */
export class SubjectRightsService {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly repo: SubjectRightsRepository,
    private readonly subjects: SubjectRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly eraser: SubjectEraser,
    private readonly clock: Clock,
    private readonly pages: PageLimits,
    private readonly audit: AuditTrail,
    private readonly objections: ObjectionRecorder,
    /** Test hook: called at named points of long operations (see docs/architecture.md). */
    private readonly failpoint: (name: string) => void = () => undefined,
  ) {}

  /**
   * Told about each committed objection before it is answered (the decision cache forgets the
   * person at once; other processes follow the audit log).
   */
  observer?: (tenantId: string, subjectId: string, createdSubject: boolean, logSize: number) => void;

  /** Art. 16: RECTIFICATION requests (identifier-rectification.ts); set by the composition root. */
  rectification?: IdentifierRectification;

  /** A state change of a request: stored with its principal and appended to the audit log, in `tx`. */
  async recordTransition(tx: TxContext, tenantId: string, t: Omit<RequestTransitionRecord, 'seq'>): Promise<void> {
    await this.repo.addTransition(tx, t);
    await this.audit.append(tx, tenantId, { type: `REQUEST_${t.toState}`, time: t.at, principal: t.principal, ref: t.requestId, payloadSha256: sha256Hex(t.note) });
  }

  /**
   * Carries out a verified ERASURE request. The request is first marked IN_PROGRESS (durable: a
   * server that stops after this finishes the erasure at its next start), then the subject is
   * shredded, then the request is COMPLETED with a signed erasure receipt. Idempotent.
   */
  async erase(principal: Principal, tenantId: string, id: string): Promise<{ request: SubjectRequestView; receipt: string; consistencyToken: string }> {
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const started = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const request = await this.repo.lockRequest(tx, tenantId, id);
      if (!request) throw notFound('REQUEST', `tenants/${tenantId}/requests/${id}`);
      const name = { request: `tenants/${tenantId}/requests/${id}` };
      if (request.kind !== 'ERASURE') throw failedPrecondition('NOT_AN_ERASURE', `this is an ${request.kind} request, not an erasure`, name);
      if (request.state === 'COMPLETED') return request;
      if (request.state === 'RECEIVED') throw failedPrecondition('IDENTITY_NOT_VERIFIED', 'verify the identity of the requester first (VerifyIdentity)', name);
      if (request.state === 'REJECTED') throw failedPrecondition('INVALID_TRANSITION', 'the request was rejected', name);
      if (request.subjectId) {
        const holds = await this.repo.listHolds(tx, tenantId, { subjectId: request.subjectId, includeReleased: false }, null, 1);
        if (holds.length > 0) {
          const hold = `tenants/${tenantId}/legalHolds/${holds[0].id}`;
          throw failedPrecondition('LEGAL_HOLD', `the legal hold ${hold} (Art. 17(3)(${holds[0].ground.slice(0, 1).toLowerCase()})) blocks the erasure; release it first`, {
            ground: holds[0].ground,
            hold,
          });
        }
      }
      if (request.state === 'VERIFIED') {
        await this.repo.updateRequest(tx, id, { state: 'IN_PROGRESS', updatedAt: now });
        await this.recordTransition(tx, tenantId, { requestId: id, fromState: 'VERIFIED', toState: 'IN_PROGRESS', principal: principal.id, at: now, note: 'erasure started' });
      }
      return { ...request, state: 'IN_PROGRESS' as const };
    });
    if (started.state !== 'COMPLETED') {
      this.failpoint('erasure.started');
      await this.finishErasure(started, principal.id);
    }
    const request = await this.get(principal, tenantId, id);
    // The log's size now covers the erasure, done by this call or by an earlier one.
    const consistencyToken = encodeConsistencyToken(tenantId, await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
    return { request, receipt: request.result ?? '', consistencyToken };
  }

  /** Finishes erasures a stopped process left IN_PROGRESS (called at start). */
  async resumeErasures(): Promise<number> {
    const pending = await this.tx.read((tx) => this.repo.inProgressErasures(tx));
    for (const request of pending) {
      const transitions = (await this.tx.read((tx) => this.repo.transitions(tx, [request.id]))).get(request.id) ?? [];
      const startedBy = transitions.filter((t) => t.toState === 'IN_PROGRESS').pop()?.principal ?? 'system';
      await this.finishErasure(request, startedBy);
    }
    return pending.length;
  }

  private async finishErasure(request: SubjectRequestRecord, principalId: string): Promise<void> {
    const erasure = request.subjectId ? await this.eraser.erase(request.tenantId, request.subjectId) : null;
    const now = this.clock.now();
    const receipt = await this.keys.sign(
      request.tenantId,
      {
        iss: `tenants/${request.tenantId}`,
        sub: request.subjectId ? `tenants/${request.tenantId}/subjects/${request.subjectId}` : null,
        iat: Math.floor(now / 1000),
        jti: `tenants/${request.tenantId}/requests/${request.id}`,
        request: `tenants/${request.tenantId}/requests/${request.id}`,
        receivedAt: new Date(request.receiveTime).toISOString(),
        erasedAt: new Date(erasure?.erasedAt ?? now).toISOString(),
        // No data was held about an identifier never recorded: nothing to destroy.
        subjectKnown: request.subjectId !== null,
        keyIdsDestroyed: erasure ? [erasure.keyId] : [],
        counts: erasure?.counts ?? { identifiers: 0, eventsRetained: 0 },
        method:
          'crypto-shredding: the subject key was deleted from the key store; the identifier rows and the derived consent state were deleted; ' +
          'each identifier left a keyed-hash tombstone that names no subject',
        retained:
          'reachable by no identifier: the audit log entries and consent event rows of the opaque subject id (kinds, purposes, channels, times; ' +
          'evidence unreadable without the destroyed key), for accountability (Art. 5(2))',
      },
      'erasure-receipt+jwt',
      now,
    );
    await this.tx.write(async (tx) => {
      const current = await this.repo.lockRequest(tx, request.tenantId, request.id);
      if (!current || current.state === 'COMPLETED') return;
      await this.repo.updateRequest(tx, request.id, { state: 'COMPLETED', result: receipt, updatedAt: now });
      await this.recordTransition(tx, request.tenantId, { requestId: request.id, fromState: current.state, toState: 'COMPLETED', principal: principalId, at: now, note: erasure ? 'erased: subject key destroyed' : 'completed: no data held' });
    });
  }

  async create(
    principal: Principal,
    tenantId: string,
    input: { kind: RequestKind | null; identifier: RawIdentifier | undefined; receiveTime?: number; receivedVia: string | null; requestId: string; rectifiedIdentifier?: RawIdentifier },
  ): Promise<SubjectRequestView> {
    return (await this.createRequest(principal, tenantId, input)).request;
  }

  /**
   * Registers a request. An OBJECTION takes effect in the same transaction (ObjectionRecorder)
   * and is COMPLETED at once; its consistency token covers it. A retry (same request_id) returns
   * the request as registered first.
   */
  async createRequest(
    principal: Principal,
    tenantId: string,
    input: { kind: RequestKind | null; identifier: RawIdentifier | undefined; receiveTime?: number; receivedVia: string | null; requestId: string; rectifiedIdentifier?: RawIdentifier },
  ): Promise<{ request: SubjectRequestView; consistencyToken: string }> {
    const now = this.clock.now();
    const violations: FieldViolation[] = [];
    if (!input.kind) violations.push({ field: 'kind', reason: 'REQUIRED', description: 'ACCESS, PORTABILITY, ERASURE, OBJECTION, RESTRICTION or RECTIFICATION' });
    if (!input.receivedVia) violations.push({ field: 'received_via', reason: 'REQUIRED', description: 'how the request was received' });
    const identifier = normaliseIdentifier(input.identifier, 'subject_identifier');
    if (isViolation(identifier)) violations.push(identifier);
    const rectifiedIdentifier = checkRectifiedIdentifier(input.kind, input.rectifiedIdentifier, identifier, violations);
    const receiveTime = input.receiveTime ?? now;
    if (receiveTime > now + 5 * 60_000) violations.push({ field: 'receive_time', reason: 'IN_THE_FUTURE', description: 'must not be in the future' });
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);

    // An objection: the person (or a key for a new one) found first, outside the transaction.
    let objection: PreparedObjection | null = null;
    if (input.kind === 'OBJECTION') {
      objection = await this.tx.read(async (tx) => {
        await this.tenants.require(tx, tenantId, false);
        // A retry needs nothing prepared (and must make no key).
        if (await this.repo.findRequestByRequestId(tx, tenantId, input.requestId)) return null;
        const keyring = await this.keys.tenantKeyring(tenantId);
        return this.objections.prepare(tx, tenantId, identifier, { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) });
      });
      if (objection) objection = await this.objections.withKey(objection, now);
    }
    // A rectification: the correct identifier encrypted under the person's key, outside the transaction.
    let rectified: (RectifiedFields & { subjectId: string | null }) | null = null;
    if (input.kind === 'RECTIFICATION' && rectifiedIdentifier && this.rectification) rectified = await this.rectification.prepare(tenantId, identifier, rectifiedIdentifier);

    const { id, applied } = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const replay = await this.repo.findRequestByRequestId(tx, tenantId, input.requestId);
      if (replay) return { id: replay.id, applied: null };
      const keyring = await this.keys.tenantKeyring(tenantId);
      const index = { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) };
      const requestId = randomBytes(16).toString('hex');
      // The objection first: it may make the person a subject (the request then names them).
      const applied = input.kind === 'OBJECTION' && objection ? await this.objections.apply(tx, objection, { id: requestId, principal: principal.id, now }) : null;
      if (input.kind === 'OBJECTION' && !applied) {
        // Registered concurrently by a retry that was not visible when prepared: prepare again.
        throw new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the request was registered concurrently; retry');
      }
      // The person the identifier names now. An erased person is not reached by it any more
      // (docs/keys.md, "Erasure"): a request by an erased identifier finds nothing of them.
      const subject = applied ? (applied.subjectId ? { subjectId: applied.subjectId } : null) : await this.subjects.findByIdentifier(tx, tenantId, index);
      if (rectified && (subject?.subjectId ?? null) !== rectified.subjectId) {
        // Recorded (or erased) since it was prepared: the value must be encrypted for the person found now.
        throw new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the person changed concurrently; retry');
      }
      const record: SubjectRequestRecord = {
        id: requestId,
        tenantId,
        kind: input.kind!,
        state: applied ? 'COMPLETED' : 'RECEIVED',
        identifierKind: index.kind,
        blindIndex: index.blindIndex,
        subjectId: subject?.subjectId ?? null,
        receivedVia: input.receivedVia!,
        receiveTime,
        dueTime: requestDeadline(receiveTime),
        extensionReason: null,
        verificationMethod: null,
        verifiedBy: null,
        rejectionReason: null,
        result: null,
        requestId: input.requestId,
        createdAt: now,
        updatedAt: now,
      };
      if (rectified) Object.assign(record, { rectifiedKind: rectified.rectifiedKind, rectifiedBlindIndex: rectified.rectifiedBlindIndex, rectifiedCiphertext: rectified.rectifiedCiphertext });
      await this.repo.insertRequest(tx, record);
      await this.recordTransition(tx, tenantId, { requestId: record.id, fromState: null, toState: 'RECEIVED', principal: principal.id, at: now, note: `received via ${record.receivedVia}` });
      if (applied) {
        // Art. 21(3): honoured at once, without identity verification (it only restricts).
        await this.recordTransition(tx, tenantId, { requestId: record.id, fromState: 'RECEIVED', toState: 'COMPLETED', principal: principal.id, at: now, note: applied.note });
        return { id: record.id, applied: { ...applied, logSize: await this.audit.committedSize(tx, tenantId) } };
      }
      return { id: record.id, applied: null };
    });
    if (applied?.subjectId) this.observer?.(tenantId, applied.subjectId, applied.createdSubject, applied.logSize);
    const request = await this.get(principal, tenantId, id);
    let consistencyToken = '';
    if (request.kind === 'OBJECTION') {
      // A retry's token covers the first call's objection too: the log's size now is past it.
      const position = applied?.logSize ?? (await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
      consistencyToken = encodeConsistencyToken(tenantId, position);
    }
    return { request, consistencyToken };
  }

  async get(principal: Principal, tenantId: string, id: string): Promise<SubjectRequestView> {
    authorizeTenant(principal, tenantId);
    return this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const request = await this.repo.findRequest(tx, tenantId, id);
      if (!request) throw notFound('REQUEST', `tenants/${tenantId}/requests/${id}`);
      return (await this.views(tx, [request]))[0];
    });
  }

  async list(
    principal: Principal,
    tenantId: string,
    query: { state?: RequestState; kind?: RequestKind; overdue: boolean; dueBefore?: number; pageSize: number; pageToken: string },
  ): Promise<Page<SubjectRequestView>> {
    const v = new Violations();
    const size = resolvePageSize(query.pageSize, this.pages, v);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    // "overdue" means due before now; both filters together take the earlier bound.
    const bounds = [query.overdue ? now : undefined, query.dueBefore].filter((b): b is number => b !== undefined);
    const openDueBefore = bounds.length > 0 ? Math.min(...bounds) : undefined;
    const scope = { state: query.state, kind: query.kind, overdue: query.overdue, dueBefore: query.dueBefore };
    return this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'subject_requests');
      const after = decodePageToken<string>(query.pageToken, scope, 'string', sealer, v);
      v.throwIfAny();
      const rows = await this.repo.listRequests(tx, tenantId, { state: query.state, kind: query.kind, openDueBefore }, parseCursor(after), size + 1);
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return {
        items: await this.views(tx, page),
        nextPageToken: rows.length > size ? encodePageToken(`${last.createdAt}:${last.id}`, scope, sealer) : '',
      };
    });
  }

  verifyIdentity(principal: Principal, tenantId: string, id: string, method: string, verifiedBy: string): Promise<SubjectRequestView> {
    const v = new Violations();
    v.check(/^[A-Za-z0-9_.:-]{1,64}$/.test(method), 'method', 'INVALID_METHOD', '1-64 characters of A-Z a-z 0-9 _ . : -, e.g. ID_DOCUMENT');
    v.check(verifiedBy.trim().length > 0 && verifiedBy.length <= 128, 'verified_by', 'REQUIRED', 'a staff reference of 1-128 characters');
    v.throwIfAny();
    return this.transition(principal, tenantId, id, ['RECEIVED'], 'VERIFIED', `identity verified by ${method}`, { verificationMethod: method, verifiedBy });
  }

  reject(principal: Principal, tenantId: string, id: string, reason: string): Promise<SubjectRequestView> {
    const v = new Violations();
    v.check(reason.trim().length > 0 && reason.length <= MAX_TEXT, 'reason', 'REQUIRED', `1-${MAX_TEXT} characters`);
    v.throwIfAny();
    return this.transition(principal, tenantId, id, ['RECEIVED', 'VERIFIED'], 'REJECTED', 'rejected', { rejectionReason: reason });
  }

  async extendDeadline(principal: Principal, tenantId: string, id: string, months: number, reason: string): Promise<SubjectRequestView> {
    const v = new Violations();
    v.check(months === 1 || months === 2, 'months', 'OUT_OF_RANGE', 'one or two further months (Art. 12(3))');
    v.check(reason.trim().length > 0 && reason.length <= MAX_TEXT, 'reason', 'REQUIRED', `1-${MAX_TEXT} characters`);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const request = await this.repo.lockRequest(tx, tenantId, id);
      if (!request) throw notFound('REQUEST', `tenants/${tenantId}/requests/${id}`);
      const name = { request: `tenants/${tenantId}/requests/${id}` };
      if (request.extensionReason !== null) throw failedPrecondition('ALREADY_EXTENDED', 'the deadline was already extended once (Art. 12(3) allows one extension)', name);
      if (!OPEN_REQUEST_STATES.includes(request.state)) throw failedPrecondition('REQUEST_CLOSED', `the request is ${request.state}`, name);
      if (now >= request.dueTime) throw failedPrecondition('DEADLINE_PASSED', 'an extension must be decided before the first deadline passes', name);
      await this.repo.updateRequest(tx, id, { dueTime: extendedDeadline(request.receiveTime, months as 1 | 2), extensionReason: reason, updatedAt: now });
      await this.recordTransition(tx, tenantId, { requestId: id, fromState: request.state, toState: request.state, principal: principal.id, at: now, note: `deadline extended by ${months} month(s)` });
    });
    return this.get(principal, tenantId, id);
  }

  async placeHold(
    principal: Principal,
    tenantId: string,
    input: { identifier: RawIdentifier | undefined; ground: LegalHoldGround | null; note: string; requestId: string },
  ): Promise<LegalHoldRecord> {
    const violations: FieldViolation[] = [];
    const identifier = normaliseIdentifier(input.identifier, 'subject_identifier');
    if (isViolation(identifier)) violations.push(identifier);
    if (!input.ground) violations.push({ field: 'ground', reason: 'REQUIRED', description: 'an Art. 17(3) ground (a-e)' });
    if (input.note.length > MAX_TEXT) violations.push({ field: 'note', reason: 'TOO_LONG', description: `at most ${MAX_TEXT} characters` });
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const replay = await this.repo.findHoldByRequestId(tx, tenantId, input.requestId);
      if (replay) return replay;
      const keyring = await this.keys.tenantKeyring(tenantId);
      const subject = await this.subjects.findByIdentifier(tx, tenantId, { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) });
      // The message names no identifier: it is personal data.
      if (!subject) throw new DomainError('NOT_FOUND', 'SUBJECT_NOT_FOUND', 'no subject with this identifier');
      if (subject.erased) throw failedPrecondition('SUBJECT_ERASED', 'the subject was erased already');
      const hold: LegalHoldRecord = {
        id: randomBytes(16).toString('hex'),
        tenantId,
        subjectId: subject.subjectId,
        ground: input.ground!,
        note: input.note,
        placedBy: principal.id,
        placedAt: now,
        releasedBy: null,
        releasedAt: null,
        releaseNote: null,
        requestId: input.requestId,
      };
      await this.repo.insertHold(tx, hold);
      await this.audit.append(tx, tenantId, { type: 'LEGAL_HOLD_PLACED', time: now, principal: principal.id, subject: hold.subjectId, ref: hold.id, payloadSha256: sha256Hex(hold.ground) });
      return hold;
    });
  }

  async releaseHold(principal: Principal, tenantId: string, id: string, note: string): Promise<LegalHoldRecord> {
    const v = new Violations();
    v.check(note.trim().length > 0 && note.length <= MAX_TEXT, 'note', 'REQUIRED', `1-${MAX_TEXT} characters`);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const hold = await this.repo.findHold(tx, tenantId, id);
      if (!hold) throw notFound('LEGAL_HOLD', `tenants/${tenantId}/legalHolds/${id}`);
      if (hold.releasedAt !== null) throw failedPrecondition('HOLD_RELEASED', 'the legal hold was released already');
      const change = { releasedBy: principal.id, releasedAt: now, releaseNote: note };
      await this.repo.updateHold(tx, id, change);
      await this.audit.append(tx, tenantId, { type: 'LEGAL_HOLD_RELEASED', time: now, principal: principal.id, subject: hold.subjectId, ref: hold.id });
      return { ...hold, ...change };
    });
  }

  async listHolds(
    principal: Principal,
    tenantId: string,
    query: { identifier?: RawIdentifier; includeReleased: boolean; pageSize: number; pageToken: string },
  ): Promise<Page<LegalHoldRecord>> {
    const { includeReleased } = query;
    return this.listOfSubject(principal, tenantId, query, { includeReleased }, 'legal_holds', (tx, subjectId, after, limit) =>
      this.repo.listHolds(tx, tenantId, { subjectId, includeReleased }, after, limit),
    );
  }

  /**
   * Carries out a verified RESTRICTION request (Art. 18(1)): under the person's lock, a
   * restriction with its ground, the person's `restricted_since` (every check answers RESTRICTED
   * from this commit on, except purposes allowed under Art. 18(2)), a RESTRICTION_PLACED audit
   * entry naming the person (other processes' decision caches follow it), and the request
   * COMPLETED. Idempotent: a completed request answers with its restriction.
   */
  async restrict(
    principal: Principal,
    tenantId: string,
    id: string,
    ground: RestrictionGround | null,
    note: string,
  ): Promise<{ request: SubjectRequestView; restriction: RestrictionRecord | null; consistencyToken: string }> {
    const v = new Violations();
    v.check(ground !== null, 'ground', 'REQUIRED', 'an Art. 18(1) ground (a-d)');
    v.check(note.length <= MAX_TEXT, 'note', 'TOO_LONG', `at most ${MAX_TEXT} characters`);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const done = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const request = await this.repo.lockRequest(tx, tenantId, id);
      if (!request) throw notFound('REQUEST', `tenants/${tenantId}/requests/${id}`);
      const name = { request: `tenants/${tenantId}/requests/${id}` };
      if (request.kind !== 'RESTRICTION') throw failedPrecondition('NOT_A_RESTRICTION', `this is an ${request.kind} request, not a restriction`, name);
      if (request.state === 'COMPLETED') return { restriction: await this.repo.findRestrictionByRequest(tx, tenantId, id), subjectId: null, logSize: null };
      if (request.state === 'RECEIVED') throw failedPrecondition('IDENTITY_NOT_VERIFIED', 'verify the identity of the requester first (VerifyIdentity)', name);
      if (request.state !== 'VERIFIED') throw failedPrecondition('INVALID_TRANSITION', `a ${request.state} request cannot be carried out`, { ...name, state: request.state });
      // The person the identifier names now (perhaps recorded since the request was received).
      const found = await this.subjects.findByIdentifier(tx, tenantId, { kind: request.identifierKind, blindIndex: request.blindIndex });
      const person = found ? await this.subjects.lock(tx, tenantId, found.subjectId) : null;
      let restriction: RestrictionRecord | null = null;
      if (person && !person.erased) {
        restriction = {
          id: randomBytes(16).toString('hex'),
          tenantId,
          subjectId: person.subjectId,
          ground: ground!,
          requestId: id,
          note,
          placedBy: principal.id,
          placedAt: now,
          notifiedBy: null,
          noticeMethod: null,
          notifiedAt: null,
          liftedBy: null,
          liftedAt: null,
          liftReason: null,
        };
        await this.repo.insertRestriction(tx, restriction);
        if (person.restrictedSince === undefined) await this.subjects.setRestrictedSince(tx, tenantId, person.subjectId, now);
        await this.audit.append(tx, tenantId, { type: 'RESTRICTION_PLACED', time: now, principal: principal.id, subject: person.subjectId, ref: restrictionName(restriction), payloadSha256: sha256Hex(restriction.ground) });
      }
      const change: Partial<SubjectRequestRecord> = { state: 'COMPLETED', updatedAt: now };
      if (person) change.subjectId = person.subjectId;
      await this.repo.updateRequest(tx, id, change);
      const noteText = restriction ? `restricted (Art. 18(1)(${ground!.slice(0, 1).toLowerCase()})): ${restrictionName(restriction)}` : 'completed: no data held';
      await this.recordTransition(tx, tenantId, { requestId: id, fromState: 'VERIFIED', toState: 'COMPLETED', principal: principal.id, at: now, note: noteText });
      return { restriction, subjectId: restriction?.subjectId ?? null, logSize: await this.audit.committedSize(tx, tenantId) };
    });
    if (done.subjectId && done.logSize !== null) this.observer?.(tenantId, done.subjectId, false, done.logSize);
    const request = await this.get(principal, tenantId, id);
    const position = done.logSize ?? (await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
    return { request, restriction: done.restriction, consistencyToken: encodeConsistencyToken(tenantId, position) };
  }

  /** Carries out a verified RECTIFICATION request (Art. 16): identifier-rectification.ts. */
  async rectify(principal: Principal, tenantId: string, id: string): Promise<{ request: SubjectRequestView; consistencyToken: string }> {
    const { consistencyToken } = await this.rectification!.rectify(principal, tenantId, id, (tx, tenant, transition) => this.recordTransition(tx, tenant, transition));
    return { request: await this.get(principal, tenantId, id), consistencyToken };
  }

  /** Art. 18(3): records that the person was informed before the restriction is lifted. */
  async recordRestrictionNotice(principal: Principal, tenantId: string, id: string, method: string, notifiedBy: string): Promise<RestrictionRecord> {
    const v = new Violations();
    v.check(/^[A-Za-z0-9_.:-]{1,64}$/.test(method), 'method', 'INVALID_METHOD', '1-64 characters of A-Z a-z 0-9 _ . : -, e.g. LETTER');
    v.check(notifiedBy.trim().length > 0 && notifiedBy.length <= 128, 'notified_by', 'REQUIRED', 'a staff reference of 1-128 characters');
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const restriction = await this.repo.findRestriction(tx, tenantId, id);
      if (!restriction) throw notFound('RESTRICTION', `tenants/${tenantId}/restrictions/${id}`);
      const name = { restriction: restrictionName(restriction) };
      if (restriction.liftedAt !== null) throw failedPrecondition('RESTRICTION_LIFTED', 'the restriction was lifted already', name);
      if (restriction.notifiedAt !== null) {
        // A retry of the same notice answers the same; a different one would rewrite the record.
        if (restriction.noticeMethod === method && restriction.notifiedBy === notifiedBy) return restriction;
        throw failedPrecondition('ALREADY_NOTIFIED', 'the notice to the person was recorded already', name);
      }
      const change = { notifiedBy, noticeMethod: method, notifiedAt: now };
      await this.repo.updateRestriction(tx, id, change);
      await this.audit.append(tx, tenantId, { type: 'RESTRICTION_NOTICE_RECORDED', time: now, principal: principal.id, subject: restriction.subjectId, ref: restrictionName(restriction), payloadSha256: sha256Hex(method) });
      return { ...restriction, ...change };
    });
  }

  /**
   * Lifts a restriction with its reason, once the notice to the person (Art. 18(3)) is recorded.
   * The person stays restricted while another restriction of theirs is in force.
   */
  async liftRestriction(principal: Principal, tenantId: string, id: string, reason: string): Promise<{ restriction: RestrictionRecord; consistencyToken: string }> {
    const v = new Violations();
    v.check(reason.trim().length > 0 && reason.length <= MAX_TEXT, 'reason', 'REQUIRED', `1-${MAX_TEXT} characters`);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const done = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const found = await this.repo.findRestriction(tx, tenantId, id);
      if (!found) throw notFound('RESTRICTION', `tenants/${tenantId}/restrictions/${id}`);
      const name = { restriction: restrictionName(found) };
      const person = await this.subjects.lock(tx, tenantId, found.subjectId);
      // Read again under the person's lock: a concurrent lifting committed first shows here.
      const restriction = (await this.repo.findRestriction(tx, tenantId, id))!;
      if (restriction.liftedAt !== null) throw failedPrecondition('RESTRICTION_LIFTED', 'the restriction was lifted already', name);
      if (restriction.notifiedAt === null) {
        throw failedPrecondition('NOT_NOTIFIED', 'Art. 18(3): record that the person was informed before the restriction is lifted (RecordRestrictionNotice)', name);
      }
      const change = { liftedBy: principal.id, liftedAt: now, liftReason: reason };
      await this.repo.updateRestriction(tx, id, change);
      if (person && !person.erased) {
        const open = await this.repo.listRestrictions(tx, tenantId, { subjectId: restriction.subjectId, includeLifted: false }, null, 1000);
        const since = open.length > 0 ? Math.min(...open.map((r) => r.placedAt)) : null;
        await this.subjects.setRestrictedSince(tx, tenantId, restriction.subjectId, since);
      }
      await this.audit.append(tx, tenantId, { type: 'RESTRICTION_LIFTED', time: now, principal: principal.id, subject: restriction.subjectId, ref: restrictionName(restriction), payloadSha256: sha256Hex(reason) });
      return { restriction: { ...restriction, ...change }, logSize: await this.audit.committedSize(tx, tenantId) };
    });
    this.observer?.(tenantId, done.restriction.subjectId, false, done.logSize);
    return { restriction: done.restriction, consistencyToken: encodeConsistencyToken(tenantId, done.logSize) };
  }

  async listRestrictions(
    principal: Principal,
    tenantId: string,
    query: { identifier?: RawIdentifier; includeLifted: boolean; pageSize: number; pageToken: string },
  ): Promise<Page<RestrictionRecord>> {
    const { includeLifted } = query;
    return this.listOfSubject(principal, tenantId, query, { includeLifted }, 'restrictions', (tx, subjectId, after, limit) =>
      this.repo.listRestrictions(tx, tenantId, { subjectId, includeLifted }, after, limit),
    );
  }

  /**
   * A page of a tenant's legal holds or restrictions, newest placement first, of one person when
   * an identifier is given (found through its blind index; nobody found is an empty page, never
   * an error that would tell whether the tenant knows the identifier). `filters` are bound into
   * the page token, so a token is refused under other filters.
   */
  private async listOfSubject<R extends { placedAt: number; id: string }>(
    principal: Principal,
    tenantId: string,
    query: { identifier?: RawIdentifier; pageSize: number; pageToken: string },
    filters: Record<string, boolean>,
    tokenKind: string,
    fetch: (tx: TxContext, subjectId: string | undefined, after: ReturnType<typeof parseCursor>, limit: number) => Promise<R[]>,
  ): Promise<Page<R>> {
    const v = new Violations();
    const size = resolvePageSize(query.pageSize, this.pages, v);
    const identifier = query.identifier ? normaliseIdentifier(query.identifier, 'subject_identifier') : undefined;
    if (identifier && isViolation(identifier)) v.add(identifier.field, identifier.reason, identifier.description);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const scope = { identifier: query.identifier ?? null, ...filters };
    return this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const sealer = this.keys.pageTokenSealer(keyring, tokenKind);
      const after = decodePageToken<string>(query.pageToken, scope, 'string', sealer, v);
      v.throwIfAny();
      let subjectId: string | undefined;
      if (identifier && !isViolation(identifier)) {
        const subject = await this.subjects.findByIdentifier(tx, tenantId, { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) });
        if (!subject) return { items: [], nextPageToken: '' };
        subjectId = subject.subjectId;
      }
      const rows = await fetch(tx, subjectId, parseCursor(after), size + 1);
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return { items: page, nextPageToken: rows.length > size ? encodePageToken(`${last.placedAt}:${last.id}`, scope, sealer) : '' };
    });
  }

  private async transition(
    principal: Principal,
    tenantId: string,
    id: string,
    from: RequestState[],
    to: RequestState,
    note: string,
    change: Partial<SubjectRequestRecord>,
  ): Promise<SubjectRequestView> {
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const request = await this.repo.lockRequest(tx, tenantId, id);
      if (!request) throw notFound('REQUEST', `tenants/${tenantId}/requests/${id}`);
      if (!from.includes(request.state)) {
        throw failedPrecondition('INVALID_TRANSITION', `a ${request.state} request cannot become ${to}`, { state: request.state, request: `tenants/${tenantId}/requests/${id}` });
      }
      await this.repo.updateRequest(tx, id, { ...change, state: to, updatedAt: now });
      await this.recordTransition(tx, tenantId, { requestId: id, fromState: request.state, toState: to, principal: principal.id, at: now, note });
    });
    return this.get(principal, tenantId, id);
  }

  private async views(tx: TxContext, requests: SubjectRequestRecord[]): Promise<SubjectRequestView[]> {
    const transitions = await this.repo.transitions(tx, requests.map((r) => r.id));
    const now = this.clock.now();
    return requests.map((r) => ({ ...r, transitions: transitions.get(r.id) ?? [], overdue: OPEN_REQUEST_STATES.includes(r.state) && now >= r.dueTime }));
  }
}

function restrictionName(r: RestrictionRecord): string {
  return `tenants/${r.tenantId}/restrictions/${r.id}`;
}

function parseCursor(token: string | null): NewestFirstCursor | null {
  if (!token) return null;
  const [time, id] = token.split(':');
  return { createdAt: Number(time), id };
}
