import { EARLIEST_RECORD_TIME } from './model';
import { encodeConsistencyToken } from './consistency';
import { randomBytes } from 'node:crypto';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { deadlineInForce, extendedDeadline, receivedBeforeFirstDeadline, requestDeadline } from './deadlines';
import { DomainError, failedPrecondition, FieldViolation, invalidArgument, notFound, Violations } from '../shared/errors';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { distinctSubjects, identifierLabel, requestIdentifiers, RequestSubjectResolver, sameAsEarlier, unreachedOutcome } from './request-identifiers';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from './pagination';
import { AuditTrail } from '../audit/audit-types';
import { ChangeFeedRepository, IdentifierIndex, LegalHoldRecord, NewestFirstCursor, OPEN_REQUEST_STATES, RequestIdentifierRecord, RestrictionRecord, restrictionName, RequestKind, RequestState, RequestTransitionRecord, SubjectRepository, SubjectRequestRecord, SubjectRightsRepository } from './ports';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { Page } from './purpose-service';
import { Principal } from './principal';
import { checkRequestId } from './request-id';
import { ErasureRecord, SubjectEraser, SubjectErasure } from './subject-eraser';
import { placeRestriction } from './restriction-placement';
import { TenantService } from './tenant-service';
import { sha256Hex } from '../shared/hashing';
import { AppliedObjection, ObjectionRecorder, PreparedObjection } from './objection';
import { checkRectifiedIdentifier, IdentifierRectification, RectifiedFields } from './identifier-rectification';
import { characterCount } from '../shared/text';

export const RECEIVED_VIA = ['EMAIL', 'WEB_FORM', 'LETTER', 'PHONE', 'IN_PERSON', 'CHAT', 'OTHER', 'SELF_SERVICE'] as const;
/** How a request made on the preference page was received (SelfServiceService.CreateRequestWithLink). */
export const RECEIVED_VIA_SELF_SERVICE = 'SELF_SERVICE';
/** The verification method a preference link stands for (the person holds the tenant-signed link). */
export const SIGNED_LINK = 'SIGNED_LINK';
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

/** A request with its identifiers, its history and whether its deadline has passed. */
export interface SubjectRequestView extends SubjectRequestRecord {
  identifiers: RequestIdentifierRecord[];
  transitions: RequestTransitionRecord[];
  overdue: boolean;
}

/** What CreateRequest carries: `identifier` and `identifiers` together name the person's identifiers. */
export interface NewRequestInput {
  kind: RequestKind | null;
  identifier: RawIdentifier | undefined;
  identifiers?: RawIdentifier[];
  receiveTime?: number;
  receivedVia: string | null;
  requestId: string;
  /** RECTIFICATION only: the person's correct identifier. */
  rectifiedIdentifier?: RawIdentifier;
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
    private readonly resolver: RequestSubjectResolver,
    private readonly changes: ChangeFeedRepository,
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
      const request = await this.lockedRequest(tx, tenantId, id);
      const name = { request: `tenants/${tenantId}/requests/${id}` };
      if (request.kind !== 'ERASURE') throw failedPrecondition('NOT_AN_ERASURE', `this is an ${request.kind} request, not an erasure`, name);
      if (request.state === 'COMPLETED') return request;
      if (request.state === 'RECEIVED') throw failedPrecondition('IDENTITY_NOT_VERIFIED', 'verify the identity of the requester first (VerifyIdentity)', name);
      if (request.state === 'REJECTED') throw failedPrecondition('INVALID_TRANSITION', 'the request was rejected', name);
      // Every person the request reaches now (found since, linked since): a hold on any blocks it.
      const rows = request.state === 'VERIFIED' ? await this.resolver.refresh(tx, request, now) : ((await this.repo.requestIdentifiers(tx, [id])).get(id) ?? []);
      // The persons' locks first (PlaceLegalHold takes them too): a hold placed concurrently is
      // either committed before and seen here, or sees this erasure started and is refused.
      await this.subjects.lockMany(tx, tenantId, distinctSubjects(rows).map((row) => row.subjectId));
      const held: Array<{ hold: LegalHoldRecord; row: RequestIdentifierRecord }> = [];
      for (const row of distinctSubjects(rows)) {
        for (const hold of await this.repo.listHolds(tx, tenantId, { subjectId: row.subjectId, includeReleased: false }, null, 10)) held.push({ hold, row });
      }
      if (held.length > 0) {
        const { hold: first, row } = held[0];
        const hold = `tenants/${tenantId}/legalHolds/${first.id}`;
        const more = held.length > 1 ? ` (and ${held.length - 1} more: ${held.slice(1).map((h) => `tenants/${tenantId}/legalHolds/${h.hold.id}`).join(', ')})` : '';
        throw failedPrecondition(
          'LEGAL_HOLD',
          `the legal hold ${hold} (Art. 17(3)(${first.ground.slice(0, 1).toLowerCase()})) on ${identifierLabel(row)} blocks the erasure${more}; release it first`,
          { ground: first.ground, hold, holds: held.map((h) => `tenants/${tenantId}/legalHolds/${h.hold.id}`).join(','), identifier_position: String(row.position) },
        );
      }
      if (request.state === 'VERIFIED') {
        await this.repo.updateRequest(tx, id, { state: 'IN_PROGRESS', updatedAt: now });
        await this.recordTransition(tx, tenantId, { requestId: id, fromState: 'VERIFIED', toState: 'IN_PROGRESS', principal: principal.id, at: now, note: 'erasure started' });
      }
      return { ...request, state: 'IN_PROGRESS' as const };
    });
    if (started.state !== 'COMPLETED') {
      this.failpoint('erasure.started');
      await this.finishing(started, principal.id);
    }
    const request = await this.get(principal, tenantId, id);
    // The log's size now covers the erasure, done by this call or by an earlier one.
    const consistencyToken = encodeConsistencyToken(tenantId, await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
    return { request, receipt: request.result ?? '', consistencyToken };
  }

  /** Finishes erasures a stopped process left IN_PROGRESS (called at start). */
  async resumeErasures(): Promise<{ finished: number; failed: number; reason?: string }> {
    return this.resumeStalledErasures(null);
  }

  /**
   * Finishes erasures left IN_PROGRESS for at least `stalledMs` (null: all) that this process is
   * not working on: by a process that stopped, or by a call that failed half-way (the database gone for a
   * moment) and was not retried. Until then some of the request's persons may be erased and
   * others not; the service finishes it by itself (the background sweep, app.ts) rather than
   * waiting for a retry or the next start. Another process may finish the same request at the
   * same moment: each person's erasure is idempotent under their lock and the request completes
   * once, with the same receipt content.
   */
  async resumeStalledErasures(stalledMs: number | null): Promise<{ finished: number; failed: number; reason?: string }> {
    const now = this.clock.now();
    // null (at start): every one, whatever the clocks of the processes that started them say.
    const pending = (await this.tx.read((tx) => this.repo.inProgressErasures(tx))).filter((r) => (stalledMs === null || now - r.updatedAt >= stalledMs) && !this.inFlight.has(r.id));
    let finished = 0;
    let failure: unknown;
    for (const request of pending) {
      // Each on its own: one that keeps failing (its tenant shredded since, the key store gone)
      // must not keep the ones after it waiting, nor the service from starting. Failures are
      // counted (with the first one's reason) for the log; the sweep tries them again.
      try {
        const transitions = (await this.tx.read((tx) => this.repo.transitions(tx, [request.id]))).get(request.id) ?? [];
        const startedBy = transitions.filter((t) => t.toState === 'IN_PROGRESS').pop()?.principal ?? 'system';
        await this.finishing(request, startedBy);
        finished++;
      } catch (err) {
        failure ??= err;
      }
    }
    const reason = failure === undefined ? undefined : failure instanceof DomainError ? failure.reason : ((failure as Error)?.name ?? 'Error');
    return { finished, failed: pending.length - finished, reason };
  }

  /** Erasure requests this process is finishing now (the sweep leaves them alone). */
  private readonly inFlight = new Set<string>();

  private async finishing(request: SubjectRequestRecord, principalId: string): Promise<void> {
    this.inFlight.add(request.id);
    try {
      await this.finishErasure(request, principalId);
    } finally {
      this.inFlight.delete(request.id);
    }
  }

  private async finishErasure(request: SubjectRequestRecord, principalId: string): Promise<void> {
    const rows = await this.tx.read(async (tx) => (await this.repo.requestIdentifiers(tx, [request.id])).get(request.id) ?? []);
    // Each person once, in position order; the key store's destruction is idempotent, so a
    // restart after a crash half-way erases the rest and reports the same outcomes.
    const erasures = new Map<string, SubjectErasure>();
    for (const row of distinctSubjects(rows)) {
      const subjectId = row.subjectId;
      const erasure = await this.eraser.erase(request.tenantId, subjectId, {
        principal: principalId,
        record: async (tx, done) => {
          await this.repo.recordErasure(tx, request.id, subjectId, JSON.stringify(done));
          // Still being worked on: another process's sweep does not take it up meanwhile.
          await this.repo.updateRequest(tx, request.id, { updatedAt: done.erasedAt });
        },
      });
      // Erased by an earlier attempt of this very request (interrupted before it completed, or
      // another process finishing it at the same time): the receipt reports what that attempt did,
      // read again now, not "erased earlier" with nothing counted.
      const recorded = erasure.alreadyErased
        ? recordedErasure((await this.tx.read((tx) => this.repo.requestIdentifiers(tx, [request.id]))).get(request.id) ?? rows, subjectId)
        : undefined;
      erasures.set(subjectId, recorded ? { ...erasure, alreadyErased: false, erasedAt: recorded.erasedAt, counts: recorded.counts } : erasure);
      this.failpoint('erasure.subject-erased');
    }
    const outcomes = rows.map((row) => {
      const earlier = sameAsEarlier(rows, row);
      if (row.subjectId === null) return { row, outcome: unreachedOutcome(row) };
      if (earlier) return { row, outcome: earlier };
      const e = erasures.get(row.subjectId)!;
      return { row, outcome: e.alreadyErased ? 'erased: subject key destroyed (erased earlier)' : 'erased: subject key destroyed' };
    });
    const now = this.clock.now();
    const done = [...erasures.values()];
    const first = done[0];
    const subjectsPart = outcomes.map(({ row, outcome }) => ({
      position: row.position,
      identifierKind: row.identifierKind,
      subject: row.subjectId ? `tenants/${request.tenantId}/subjects/${row.subjectId}` : null,
      viaLink: row.viaLink,
      outcome,
      keyIdDestroyed: row.subjectId && !sameAsEarlier(rows, row) ? erasures.get(row.subjectId)!.keyId : null,
      counts: row.subjectId && !sameAsEarlier(rows, row) ? erasures.get(row.subjectId)!.counts : null,
    }));
    const receipt = await this.keys.sign(
      request.tenantId,
      {
        iss: `tenants/${request.tenantId}`,
        sub: request.subjectId ? `tenants/${request.tenantId}/subjects/${request.subjectId}` : null,
        iat: Math.floor(now / 1000),
        jti: `tenants/${request.tenantId}/requests/${request.id}`,
        request: `tenants/${request.tenantId}/requests/${request.id}`,
        receivedAt: new Date(request.receiveTime).toISOString(),
        erasedAt: new Date(first?.erasedAt ?? now).toISOString(),
        // No data was held about an identifier never recorded: nothing to destroy.
        subjectKnown: done.length > 0,
        keyIdsDestroyed: done.map((e) => e.keyId),
        counts: {
          identifiers: done.reduce((n, e) => n + e.counts.identifiers, 0),
          eventsRetained: done.reduce((n, e) => n + e.counts.eventsRetained, 0),
          links: done.reduce((n, e) => n + e.counts.links, 0),
          signUps: done.reduce((n, e) => n + e.counts.signUps, 0),
        },
        // One entry per identifier of the request (by position and kind, never by value).
        subjects: subjectsPart,
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
    const keyring = done.length > 0 ? await this.keys.tenantKeyring(request.tenantId) : null;
    await this.tx.write(async (tx) => {
      const current = await this.repo.lockRequest(tx, request.tenantId, request.id);
      if (!current || current.state === 'COMPLETED') return;
      for (const { row, outcome } of outcomes) await this.repo.updateRequestIdentifier(tx, request.id, row.position, { outcome });
      // Its identifiers under which nothing was held no longer pair with the erased person's request.
      if (keyring) await this.repo.sealUnreachedIdentifiers(tx, request.id, (blindIndex) => this.keys.erasedReference(keyring, blindIndex));
      await this.repo.updateRequest(tx, request.id, { state: 'COMPLETED', result: receipt, updatedAt: now });
      const note = done.length === 0 ? 'completed: no data held' : done.length === 1 ? 'erased: subject key destroyed' : `erased: ${done.length} subject keys destroyed`;
      await this.recordTransition(tx, request.tenantId, { requestId: request.id, fromState: current.state, toState: 'COMPLETED', principal: principalId, at: now, note });
    });
  }

  async create(principal: Principal, tenantId: string, input: NewRequestInput): Promise<SubjectRequestView> {
    return (await this.createRequest(principal, tenantId, input)).request;
  }

  /**
   * Registers a request for one or more identifiers of a person: a row per identifier (blind
   * index only) with the subject it finds, and a row per subject linked to them. An OBJECTION
   * takes effect in the same transaction for every one of them (ObjectionRecorder) and is
   * COMPLETED at once; its consistency token covers it. A retry (same request_id, same kind and
   * identifiers) returns the request as registered first; another body is REQUEST_ID_REUSED.
   */
  async createRequest(principal: Principal, tenantId: string, input: NewRequestInput): Promise<{ request: SubjectRequestView; consistencyToken: string }> {
    const now = this.clock.now();
    const violations: FieldViolation[] = [];
    if (!input.kind) violations.push({ field: 'kind', reason: 'REQUIRED', description: 'ACCESS, PORTABILITY, ERASURE, OBJECTION, RESTRICTION or RECTIFICATION' });
    if (!input.receivedVia) violations.push({ field: 'received_via', reason: 'REQUIRED', description: 'how the request was received' });
    const identifiers = requestIdentifiers(input.identifier, input.identifiers ?? [], violations);
    // A rectification corrects one identifier: exactly one is named, and its correct value given.
    if (input.kind === 'RECTIFICATION' && identifiers.length > 1) {
      violations.push({ field: 'subject_identifiers', reason: 'ONE_IDENTIFIER', description: 'a rectification names exactly one identifier: the one to correct' });
    }
    const identifier = identifiers[0] ?? { field: 'subject_identifier', reason: 'REQUIRED', description: 'the identifier to correct' };
    const rectifiedIdentifier = checkRectifiedIdentifier(input.kind, input.rectifiedIdentifier, identifier, violations);
    const givenReceiveTime = input.receiveTime ?? now;
    if (givenReceiveTime > now + 5 * 60_000) violations.push({ field: 'receive_time', reason: 'IN_THE_FUTURE', description: 'must not be in the future' });
    // As for consent events: nothing this service records is older (a year 0-99 would also get
    // its deadline in the wrong century: Date.UTC maps those years to 19xx).
    if (givenReceiveTime < EARLIEST_RECORD_TIME) violations.push({ field: 'receive_time', reason: 'OUT_OF_RANGE', description: 'must not be before 2000-01-01' });
    // A time up to 5 minutes ahead (a caller's clock skew) counts as now: a request cannot have
    // been received later than it is registered, and a deadline counted from a time ahead could
    // fall a day late (one received just before midnight UTC).
    const receiveTime = Math.min(givenReceiveTime, now);
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const keyring = await this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      return this.keys.tenantKeyring(tenantId);
    });
    const indexes = identifiers.map((i) => ({ kind: i.kind, blindIndex: this.keys.blindIndex(keyring, i) }));
    // A request whose person was erased since keeps its blind indexes sealed (erasedReference).
    const sameIndex = (stored: string, given: string) => stored === given || stored === this.keys.erasedReference(keyring, given);
    const sameBody = async (tx: TxContext, replay: SubjectRequestRecord) => {
      const named = ((await this.repo.requestIdentifiers(tx, [replay.id])).get(replay.id) ?? []).filter((r) => r.viaLink === null);
      const rectifiedIndex = rectifiedIdentifier ? this.keys.blindIndex(keyring, rectifiedIdentifier) : null;
      const same =
        replay.kind === input.kind &&
        named.length === indexes.length &&
        named.every((r, i) => r.identifierKind === indexes[i].kind && sameIndex(r.blindIndex, indexes[i].blindIndex)) &&
        ((replay.rectifiedBlindIndex ?? null) === rectifiedIndex || (rectifiedIndex !== null && sameIndex(replay.rectifiedBlindIndex ?? '', rectifiedIndex)));
      if (!same) throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: input.requestId });
    };

    // An objection: each person (or a key for a new one) found first, outside the transaction.
    let prepared: PreparedObjection[] | null = null;
    if (input.kind === 'OBJECTION') {
      prepared = await this.tx.read(async (tx) => {
        // A retry needs nothing prepared (and must make no key).
        const replay = await this.repo.findRequestByRequestId(tx, tenantId, input.requestId);
        if (replay) return sameBody(tx, replay).then(() => null);
        return Promise.all(identifiers.map((identifier, i) => this.objections.prepare(tx, tenantId, identifier, indexes[i])));
      });
      if (prepared) prepared = await Promise.all(prepared.map((p) => this.objections.withKey(p, now)));
    }
    // A rectification: the correct identifier encrypted under the person's key, outside the transaction.
    let rectified: (RectifiedFields & { subjectId: string | null }) | null = null;
    if (input.kind === 'RECTIFICATION' && rectifiedIdentifier && this.rectification) rectified = await this.rectification.prepare(tenantId, identifier, rectifiedIdentifier);

    const { id, applied } = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const replay = await this.repo.findRequestByRequestId(tx, tenantId, input.requestId);
      if (replay) {
        await sameBody(tx, replay);
        return { id: replay.id, applied: null };
      }
      const requestId = randomBytes(16).toString('hex');
      if (input.kind === 'OBJECTION' && !prepared) {
        // Registered concurrently by a retry that was not visible when prepared: prepare again.
        throw new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the request was registered concurrently; retry');
      }
      // The objection first: it may make a person a subject (the request then names them).
      const objected = new Map<number, AppliedObjection>();
      if (prepared) {
        for (const [i, p] of prepared.entries()) {
          const earlier = p.subjectId ? [...objected.entries()].find(([, a]) => a.subjectId === p.subjectId) : undefined;
          const applied = earlier
            ? { ...earlier[1], createdSubject: false, note: `same person as identifier ${earlier[0]}` }
            : await this.objections.apply(tx, p, { id: requestId, principal: principal.id, now, position: i + 1 });
          objected.set(i + 1, applied);
        }
      }
      let rows: RequestIdentifierRecord[] = [];
      for (const [i, index] of indexes.entries()) {
        // The person the identifier names now. An erased person is not reached by it any more
        // (docs/keys.md, "Erasure"): a request by an erased identifier finds nothing of them.
        const applied = objected.get(i + 1);
        const subject = applied ? (applied.subjectId ? { subjectId: applied.subjectId, erased: false } : null) : await this.subjects.findByIdentifier(tx, tenantId, index);
        rows.push({
          requestId,
          tenantId,
          position: i + 1,
          identifierKind: index.kind,
          blindIndex: index.blindIndex,
          subjectId: subject && !subject.erased ? subject.subjectId : null,
          viaLink: null,
          verificationMethod: null,
          verifiedBy: null,
          verifiedAt: null,
          outcome: applied ? applied.note : null,
        });
      }
      // Persons linked to any of them: reached by the request too (rows inserted below).
      // (A rectification corrects the one identifier it names: it reaches nobody else.)
      if (input.kind !== 'RECTIFICATION') rows = await this.resolver.resolve(tx, tenantId, rows, now, receiveTime, { insert: async () => undefined, update: async () => undefined });
      if (prepared) {
        for (const row of rows) {
          if (row.viaLink === null || row.subjectId === null) continue;
          const person = await this.objections.prepareSubject(tx, tenantId, row.subjectId, { kind: row.identifierKind, blindIndex: row.blindIndex });
          const applied = await this.objections.apply(tx, person, { id: requestId, principal: principal.id, now, position: row.position });
          objected.set(row.position, applied);
          row.outcome = applied.note;
        }
      }
      // Under the persons' locks, so that an erasure that committed meanwhile shows: it seals every
      // row pairing its person with a blind index (docs/keys.md), and none may be added behind it.
      const persons = [...new Set(rows.map((r) => r.subjectId).filter((x): x is string => x !== null))];
      if (persons.length > 0) {
        const locked = await this.subjects.lockMany(tx, tenantId, persons);
        for (const row of rows) if (row.subjectId !== null && (locked.get(row.subjectId)?.erased ?? true)) row.subjectId = null;
        rows = rows.filter((row) => row.viaLink === null || row.subjectId !== null);
      }
      const first = rows[0];
      if (rectified && first.subjectId !== rectified.subjectId) {
        // Recorded (or erased) since it was prepared: the value must be encrypted for the person found now.
        throw new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the person changed concurrently; retry');
      }
      const record: SubjectRequestRecord = {
        id: requestId,
        tenantId,
        kind: input.kind!,
        state: prepared ? 'COMPLETED' : 'RECEIVED',
        identifierKind: first.identifierKind,
        blindIndex: first.blindIndex,
        subjectId: first.subjectId,
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
      await this.repo.insertRequestIdentifiers(tx, rows);
      const reached = rows.length > indexes.length ? ` (${indexes.length} identifier(s), ${rows.length - indexes.length} linked)` : indexes.length > 1 ? ` (${indexes.length} identifiers)` : '';
      await this.recordTransition(tx, tenantId, { requestId: record.id, fromState: null, toState: 'RECEIVED', principal: principal.id, at: now, note: `received via ${record.receivedVia}${reached}` });
      if (prepared) {
        // Art. 21(3): honoured at once, without identity verification (it only restricts).
        const notes = [...objected.values()];
        const purposes = Math.max(0, ...notes.map((a) => a.purposes));
        const persons = distinctSubjects(rows).length;
        const note = rows.length === 1 ? notes[0].note : `objection applied for ${persons} person(s): OPT_OUT on every channel for ${purposes} MARKETING purpose(s)`;
        await this.recordTransition(tx, tenantId, { requestId: record.id, fromState: 'RECEIVED', toState: 'COMPLETED', principal: principal.id, at: now, note: note.slice(0, 200) });
        const subjects = notes.filter((a) => a.subjectId !== null).map((a) => ({ subjectId: a.subjectId!, created: a.createdSubject }));
        return { id: record.id, applied: { subjects, logSize: await this.audit.committedSize(tx, tenantId) } };
      }
      return { id: record.id, applied: null };
    });
    return this.registered(principal, tenantId, id, applied);
  }

  /**
   * A request just registered: the persons an objection reached told to the decision caches, and
   * for an objection the consistency token that covers it (also for a retry: the log's size now
   * is past the first call's objection).
   */
  private async registered(
    principal: Principal,
    tenantId: string,
    id: string,
    applied: { subjects: Array<{ subjectId: string; created: boolean }>; logSize: number } | null,
  ): Promise<{ request: SubjectRequestView; consistencyToken: string }> {
    for (const subject of applied?.subjects ?? []) this.observer?.(tenantId, subject.subjectId, subject.created, applied!.logSize);
    const request = await this.get(principal, tenantId, id);
    let consistencyToken = '';
    if (request.kind === 'OBJECTION') {
      const position = applied?.logSize ?? (await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
      consistencyToken = encodeConsistencyToken(tenantId, position);
    }
    return { request, consistencyToken };
  }

  /**
   * A request a person makes on the preference page for the subject their signed link names
   * (docs/privacy-center.md, "Preference links"): received via SELF_SERVICE by the privacy
   * center's principal, the link's id in the transition note. When the tenant lets the link verify
   * the person for this kind, the verification is recorded at once (method SIGNED_LINK, verified_by
   * "preference link {jti}") and the request is VERIFIED; otherwise it waits in RECEIVED for the
   * DPO. `index` is one of the person's identifiers as stored (no value is handled). A retry
   * (same request_id) returns the request made first; while one of the same kind made through the
   * page is open, that one is returned instead of a second.
   *
   * An OBJECTION (Art. 21(2)-(3), offered on the page as Art. 21(4)-(5) ask: clearly, separately,
   * by automated means) needs no verification (it only restricts) and takes effect in the same
   * transaction for the person and everyone linked to them, as CreateRequest's objection does
   * (ObjectionRecorder): the request is COMPLETED at once, and the consistency token covers it.
   */
  async createForSubject(
    principal: Principal,
    tenantId: string,
    input: { kind: RequestKind; subjectId: string; index: IdentifierIndex; linkId: string; linkVerifies: boolean; requestId: string },
  ): Promise<{ request: SubjectRequestView; consistencyToken: string }> {
    const violations: FieldViolation[] = [];
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const link = `preference link ${input.linkId}`;
    const objection = input.kind === 'OBJECTION';
    const { id, applied } = await this.tx.write(async (tx): Promise<{ id: string; applied: { subjects: Array<{ subjectId: string; created: boolean }>; logSize: number } | null }> => {
      await this.tenants.require(tx, tenantId, false);
      const replay = await this.repo.findRequestByRequestId(tx, tenantId, input.requestId);
      if (replay) {
        if (replay.kind !== input.kind || replay.subjectId !== input.subjectId || replay.receivedVia !== RECEIVED_VIA_SELF_SERVICE) {
          throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: input.requestId });
        }
        return { id: replay.id, applied: null };
      }
      // Under the subject's lock: an erasure that committed first shows, one that follows waits.
      const subject = await this.subjects.lock(tx, tenantId, input.subjectId);
      if (!subject || subject.erased) throw failedPrecondition('SUBJECT_ERASED', 'the person of this link was erased');
      const open = (await this.repo.requestsOfSubject(tx, tenantId, input.subjectId)).find(
        (r) => r.receivedVia === RECEIVED_VIA_SELF_SERVICE && r.kind === input.kind && r.subjectId === input.subjectId && OPEN_REQUEST_STATES.includes(r.state),
      );
      if (open) return { id: open.id, applied: null };
      const requestId = randomBytes(16).toString('hex');
      // An objection is not verified: it takes effect below, whatever the tenant's link settings.
      const verifies = input.linkVerifies && !objection;
      const verification = verifies ? { verificationMethod: SIGNED_LINK, verifiedBy: link, verifiedAt: now } : { verificationMethod: null, verifiedBy: null, verifiedAt: null };
      const first: RequestIdentifierRecord = {
        requestId,
        tenantId,
        position: 1,
        identifierKind: input.index.kind,
        blindIndex: input.index.blindIndex,
        subjectId: input.subjectId,
        viaLink: null,
        ...verification,
        outcome: null,
      };
      // Persons linked to them are reached too, verified through their identity link (as CreateRequest).
      const rows = await this.resolver.resolve(tx, tenantId, [first], now, now, { insert: async () => undefined, update: async () => undefined });
      // The objection, for the person and each person linked to them, under their locks.
      const objected: AppliedObjection[] = [];
      if (objection) {
        for (const row of rows) {
          if (row.subjectId === null) continue;
          const person = await this.objections.prepareSubject(tx, tenantId, row.subjectId, { kind: row.identifierKind, blindIndex: row.blindIndex });
          const applied = await this.objections.apply(tx, person, { id: requestId, principal: principal.id, now, position: row.position });
          row.outcome = applied.note;
          objected.push(applied);
        }
      }
      const record: SubjectRequestRecord = {
        id: requestId,
        tenantId,
        kind: input.kind,
        state: objection ? 'COMPLETED' : verifies ? 'VERIFIED' : 'RECEIVED',
        identifierKind: input.index.kind,
        blindIndex: input.index.blindIndex,
        subjectId: input.subjectId,
        receivedVia: RECEIVED_VIA_SELF_SERVICE,
        receiveTime: now,
        dueTime: requestDeadline(now),
        extensionReason: null,
        verificationMethod: verifies ? SIGNED_LINK : null,
        verifiedBy: verifies ? link : null,
        rejectionReason: null,
        result: null,
        requestId: input.requestId,
        createdAt: now,
        updatedAt: now,
      };
      await this.repo.insertRequest(tx, record);
      await this.repo.insertRequestIdentifiers(tx, rows);
      const linked = rows.length > 1 ? ` (${rows.length - 1} linked)` : '';
      await this.recordTransition(tx, tenantId, { requestId, fromState: null, toState: 'RECEIVED', principal: principal.id, at: now, note: `received via ${RECEIVED_VIA_SELF_SERVICE} with ${link}${linked}` });
      if (verifies) {
        await this.recordTransition(tx, tenantId, { requestId, fromState: 'RECEIVED', toState: 'VERIFIED', principal: principal.id, at: now, note: `identity verified by ${SIGNED_LINK} (${link})` });
      }
      if (objection) {
        // Art. 21(3): honoured at once, without identity verification (it only restricts).
        const purposes = Math.max(0, ...objected.map((a) => a.purposes));
        const note = objected.length === 1 ? objected[0].note : `objection applied for ${distinctSubjects(rows).length} person(s): OPT_OUT on every channel for ${purposes} MARKETING purpose(s)`;
        await this.recordTransition(tx, tenantId, { requestId, fromState: 'RECEIVED', toState: 'COMPLETED', principal: principal.id, at: now, note: note.slice(0, 200) });
        const subjects = objected.filter((a) => a.subjectId !== null).map((a) => ({ subjectId: a.subjectId!, created: a.createdSubject }));
        return { id: requestId, applied: { subjects, logSize: await this.audit.committedSize(tx, tenantId) } };
      }
      return { id: requestId, applied: null };
    });
    return this.registered(principal, tenantId, id, applied);
  }

  /** The person's open requests made through the preference page, oldest first (in the caller's transaction). */
  async openSelfServiceRequests(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRequestView[]> {
    const open = (await this.repo.requestsOfSubject(tx, tenantId, subjectId)).filter(
      (r) => r.receivedVia === RECEIVED_VIA_SELF_SERVICE && r.subjectId === subjectId && OPEN_REQUEST_STATES.includes(r.state),
    );
    return this.views(tx, open);
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
      // Extended requests whose person was never told of the extension are due by their first deadline.
      // (Lapsed only once the first deadline has passed: before now, not merely before a future bound.)
      const lapsedReceivedBefore = openDueBefore === undefined ? undefined : receivedBeforeFirstDeadline(Math.min(openDueBefore, now) - 1);
      const rows = await this.repo.listRequests(tx, tenantId, { state: query.state, kind: query.kind, openDueBefore, lapsedReceivedBefore }, parseCursor(after), size + 1);
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return {
        items: await this.views(tx, page),
        nextPageToken: rows.length > size ? encodePageToken(`${last.createdAt}:${last.id}`, scope, sealer) : '',
      };
    });
  }

  /**
   * Records the verification of some (`positions`) or all not yet verified identifiers of a
   * RECEIVED request; the request becomes VERIFIED when every identifier is. Each verification
   * is kept on its identifier (method, by whom, when) and as a transition naming the positions.
   * An identifier verified already keeps its first verification; a retry changes nothing.
   */
  async verifyIdentity(principal: Principal, tenantId: string, id: string, method: string, verifiedBy: string, positions: number[] = []): Promise<SubjectRequestView> {
    const v = new Violations();
    v.check(/^[A-Za-z0-9_.:-]{1,64}$/.test(method), 'method', 'INVALID_METHOD', '1-64 characters of A-Z a-z 0-9 _ . : -, e.g. ID_DOCUMENT');
    v.check(verifiedBy.trim().length > 0 && characterCount(verifiedBy) <= 128, 'verified_by', 'REQUIRED', 'a staff reference of 1-128 characters');
    v.check(
      positions.every((p) => Number.isInteger(p) && p >= 1) && new Set(positions).size === positions.length,
      'identifier_positions',
      'INVALID_POSITION',
      'positions of the request\'s identifiers (1, 2, ...), each at most once',
    );
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    await this.tx.write(async (tx) => {
      const request = await this.lockedRequest(tx, tenantId, id);
      const name = `tenants/${tenantId}/requests/${id}`;
      const rows = (await this.repo.requestIdentifiers(tx, [id])).get(id) ?? [];
      const unknown = positions.filter((p) => !rows.some((r) => r.position === p));
      if (unknown.length > 0) {
        throw invalidArgument([{ field: 'identifier_positions', reason: 'UNKNOWN_POSITION', description: `the request has no identifier at position ${unknown.join(', ')} (it has ${rows.length})` }]);
      }
      const chosen = rows.filter((r) => (positions.length === 0 || positions.includes(r.position)) && r.verifiedAt === null);
      if (request.state !== 'RECEIVED') {
        throw failedPrecondition('INVALID_TRANSITION', `a ${request.state} request cannot become VERIFIED`, { state: request.state, request: name });
      }
      for (const row of chosen) {
        await this.repo.updateRequestIdentifier(tx, id, row.position, { verificationMethod: method, verifiedBy, verifiedAt: now });
        row.verifiedAt = now;
      }
      const which = rows.length > 1 ? ` (identifier${chosen.length > 1 ? 's' : ''} ${chosen.map((r) => r.position).join(', ')})` : '';
      const open = rows.filter((r) => r.verifiedAt === null).length;
      if (open === 0) {
        await this.repo.updateRequest(tx, id, { state: 'VERIFIED', verificationMethod: method, verifiedBy, updatedAt: now });
        await this.recordTransition(tx, tenantId, { requestId: id, fromState: 'RECEIVED', toState: 'VERIFIED', principal: principal.id, at: now, note: `identity verified by ${method}${which}` });
      } else if (chosen.length > 0) {
        await this.repo.updateRequest(tx, id, { updatedAt: now });
        const note = `identity verified by ${method}${which}; ${open} identifier(s) still to verify`;
        await this.recordTransition(tx, tenantId, { requestId: id, fromState: 'RECEIVED', toState: 'RECEIVED', principal: principal.id, at: now, note });
      }
    });
    return this.get(principal, tenantId, id);
  }

  reject(principal: Principal, tenantId: string, id: string, reason: string): Promise<SubjectRequestView> {
    const v = new Violations();
    v.check(reason.trim().length > 0 && characterCount(reason) <= MAX_TEXT, 'reason', 'REQUIRED', `1-${MAX_TEXT} characters`);
    v.throwIfAny();
    return this.transition(principal, tenantId, id, ['RECEIVED', 'VERIFIED'], 'REJECTED', 'rejected', { rejectionReason: reason });
  }

  /**
   * Art. 12(3)-(4): records that the person was told of the extension of their request's deadline
   * (and its reasons), or of its rejection (its reasons and their right to complain): how, by whom,
   * when. On the request, as a transition note and in the audit log. A retry with the same values
   * answers the same; other values once recorded are ALREADY_NOTIFIED (the record is not rewritten).
   */
  async recordNotice(principal: Principal, tenantId: string, id: string, topic: 'EXTENSION' | 'REJECTION' | null, method: string, notifiedBy: string): Promise<SubjectRequestView> {
    const v = new Violations();
    v.check(topic !== null, 'topic', 'REQUIRED', 'EXTENSION or REJECTION');
    checkNotice(v, method, notifiedBy);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    await this.tx.write(async (tx) => {
      const request = await this.lockedRequest(tx, tenantId, id);
      const name = `tenants/${tenantId}/requests/${id}`;
      if (topic === 'EXTENSION' && request.extensionReason === null) throw failedPrecondition('NOT_EXTENDED', 'the deadline of this request was not extended', { request: name });
      if (topic === 'REJECTION' && request.state !== 'REJECTED') throw failedPrecondition('NOT_REJECTED', 'this request was not rejected', { request: name });
      const recorded = topic === 'EXTENSION' ? request.extensionNotice : request.rejectionNotice;
      if (recorded) {
        if (recorded.method === method && recorded.notifiedBy === notifiedBy) return;
        throw failedPrecondition('ALREADY_NOTIFIED', `the notice of the ${topic === 'EXTENSION' ? 'extension' : 'rejection'} was recorded already`, { request: name });
      }
      await this.repo.recordNotice(tx, id, topic!, { method, notifiedBy, at: now });
      const what = topic === 'EXTENSION' ? 'the extension and its reasons (Art. 12(3))' : 'the rejection, its reasons and the right to complain (Art. 12(4))';
      // Told only after the first deadline: the extension does not hold, the first deadline stands.
      const late = topic === 'EXTENSION' && now >= requestDeadline(request.receiveTime);
      if (late) await this.repo.updateRequest(tx, id, { dueTime: requestDeadline(request.receiveTime), updatedAt: now });
      const lateNote = late ? '; after the first deadline, so the extension does not hold' : '';
      await this.recordTransition(tx, tenantId, { requestId: id, fromState: request.state, toState: request.state, principal: principal.id, at: now, note: `person informed of ${what} by ${method}${lateNote}` });
      await this.audit.append(tx, tenantId, { type: 'REQUEST_NOTICE_RECORDED', time: now, principal: principal.id, subject: request.subjectId ?? undefined, ref: name, payloadSha256: sha256Hex(`${topic}\u0000${method}`) });
    });
    return this.get(principal, tenantId, id);
  }

  async extendDeadline(principal: Principal, tenantId: string, id: string, months: number, reason: string): Promise<SubjectRequestView> {
    const v = new Violations();
    v.check(months === 1 || months === 2, 'months', 'OUT_OF_RANGE', 'one or two further months (Art. 12(3))');
    v.check(reason.trim().length > 0 && characterCount(reason) <= MAX_TEXT, 'reason', 'REQUIRED', `1-${MAX_TEXT} characters`);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    await this.tx.write(async (tx) => {
      const request = await this.lockedRequest(tx, tenantId, id);
      const name = { request: `tenants/${tenantId}/requests/${id}` };
      if (request.extensionReason !== null) throw failedPrecondition('ALREADY_EXTENDED', 'the deadline was already extended once (Art. 12(3) allows one extension)', name);
      if (!OPEN_REQUEST_STATES.includes(request.state)) throw failedPrecondition('REQUEST_CLOSED', `the request is ${request.state}`, name);
      if (now >= request.dueTime) throw failedPrecondition('DEADLINE_PASSED', 'an extension must be decided before the first deadline passes', name);
      await this.repo.updateRequest(tx, id, { dueTime: extendedDeadline(request.receiveTime, months as 1 | 2), extensionReason: reason, updatedAt: now });
      await this.recordTransition(tx, tenantId, { requestId: id, fromState: request.state, toState: request.state, principal: principal.id, at: now, note: `deadline extended by ${months} month(s)` });
      await this.redactIfErased(tx, tenantId, await this.subjectsOfRequest(tx, request));
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
    if (characterCount(input.note) > MAX_TEXT) violations.push({ field: 'note', reason: 'TOO_LONG', description: `at most ${MAX_TEXT} characters` });
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const index = { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) };
      const replay = await this.repo.findHoldByRequestId(tx, tenantId, input.requestId);
      if (replay) {
        // A retry answers the hold placed first; the same request_id for another hold is refused
        // (otherwise the caller believes a hold is in place that never was).
        const named = await this.subjects.findByIdentifier(tx, tenantId, index);
        const same = replay.ground === input.ground && replay.note === input.note && (named === null || named.subjectId === replay.subjectId); // null: erased since
        if (!same) throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different legal hold', { request_id: input.requestId });
        return replay;
      }
      const found = await this.subjects.findByIdentifier(tx, tenantId, index);
      // The messages name no identifier: it is personal data. An erased identifier names nobody
      // any more, but it is not unknown either.
      if (!found && (await this.subjects.findSuppressed(tx, tenantId, [index])).size > 0) throw failedPrecondition('SUBJECT_ERASED', 'the person with this identifier was erased; nothing is kept under it');
      if (!found) throw new DomainError('NOT_FOUND', 'SUBJECT_NOT_FOUND', 'no subject with this identifier');
      // Under the person's lock, which the erasure takes too: an erasure that committed first is
      // seen, and so is one that was started (IN_PROGRESS: it no longer looks at holds) and will
      // shred the person whatever is placed now.
      const subject = await this.subjects.lock(tx, tenantId, found.subjectId);
      if (!subject || subject.erased) throw failedPrecondition('SUBJECT_ERASED', 'the subject was erased already');
      if (await this.erasureUnderWay(tx, tenantId, subject.subjectId)) {
        throw failedPrecondition('SUBJECT_ERASED', 'an erasure of this subject is under way (its request is IN_PROGRESS); a hold can no longer stop it');
      }
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

  /** Whether an erasure request that was started (IN_PROGRESS) reaches `subjectId`. */
  private async erasureUnderWay(tx: TxContext, tenantId: string, subjectId: string): Promise<boolean> {
    const started = (await this.repo.inProgressErasures(tx)).filter((r) => r.tenantId === tenantId);
    if (started.length === 0) return false;
    const rows = await this.repo.requestIdentifiers(tx, started.map((r) => r.id));
    return [...rows.values()].some((list) => list.some((row) => row.subjectId === subjectId));
  }

  async releaseHold(principal: Principal, tenantId: string, id: string, note: string): Promise<LegalHoldRecord> {
    const v = new Violations();
    v.check(note.trim().length > 0 && characterCount(note) <= MAX_TEXT, 'note', 'REQUIRED', `1-${MAX_TEXT} characters`);
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
      await this.redactIfErased(tx, tenantId, [hold.subjectId]);
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
  ): Promise<{ request: SubjectRequestView; restrictions: RestrictionRecord[]; consistencyToken: string }> {
    const v = new Violations();
    v.check(ground !== null, 'ground', 'REQUIRED', 'an Art. 18(1) ground (a-d)');
    v.check(characterCount(note) <= MAX_TEXT, 'note', 'TOO_LONG', `at most ${MAX_TEXT} characters`);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const done = await this.tx.write(async (tx) => {
      const request = await this.lockedRequest(tx, tenantId, id);
      const name = { request: `tenants/${tenantId}/requests/${id}` };
      if (request.kind !== 'RESTRICTION') throw failedPrecondition('NOT_A_RESTRICTION', `this is an ${request.kind} request, not a restriction`, name);
      if (request.state === 'COMPLETED') return { restrictions: await this.repo.restrictionsOfRequest(tx, tenantId, id), subjects: [], logSize: null };
      if (request.state === 'RECEIVED') throw failedPrecondition('IDENTITY_NOT_VERIFIED', 'verify the identity of the requester first (VerifyIdentity)', name);
      if (request.state !== 'VERIFIED') throw failedPrecondition('INVALID_TRANSITION', `a ${request.state} request cannot be carried out`, { ...name, state: request.state });
      // The persons the identifiers name now (perhaps recorded since the request was received),
      // and those linked to them.
      const rows = await this.resolver.refresh(tx, request, now);
      const restrictions: RestrictionRecord[] = [];
      const outcomes = new Map<string, string>();
      for (const row of distinctSubjects(rows)) {
        const person = await this.subjects.lock(tx, tenantId, row.subjectId);
        if (!person || person.erased) {
          outcomes.set(row.subjectId, 'erased: nothing to restrict');
          continue;
        }
        const restriction = await placeRestriction(
          tx,
          { requests: this.repo, subjects: this.subjects, audit: this.audit, changes: this.changes },
          { tenantId, subjectId: person.subjectId, ground: ground!, requestId: id, note, principal: principal.id, at: now, restrictedAlready: person.restrictedSince !== undefined },
        );
        restrictions.push(restriction);
        outcomes.set(row.subjectId, `restricted: ${restrictionName(restriction)}`);
      }
      for (const row of rows) {
        const outcome = row.subjectId === null ? unreachedOutcome(row) : (sameAsEarlier(rows, row) ?? outcomes.get(row.subjectId)!);
        await this.repo.updateRequestIdentifier(tx, id, row.position, { outcome: outcome.slice(0, 200) });
      }
      await this.repo.updateRequest(tx, id, { state: 'COMPLETED', updatedAt: now });
      const art = `Art. 18(1)(${ground!.slice(0, 1).toLowerCase()})`;
      const noteText =
        restrictions.length === 0 ? 'completed: no data held' : restrictions.length === 1 ? `restricted (${art}): ${restrictionName(restrictions[0])}` : `restricted (${art}): ${restrictions.length} persons`;
      await this.recordTransition(tx, tenantId, { requestId: id, fromState: 'VERIFIED', toState: 'COMPLETED', principal: principal.id, at: now, note: noteText });
      return { restrictions, subjects: restrictions.map((r) => r.subjectId), logSize: await this.audit.committedSize(tx, tenantId) };
    });
    if (done.logSize !== null) for (const subjectId of done.subjects) this.observer?.(tenantId, subjectId, false, done.logSize);
    const request = await this.get(principal, tenantId, id);
    const position = done.logSize ?? (await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
    return { request, restrictions: done.restrictions, consistencyToken: encodeConsistencyToken(tenantId, position) };
  }

  /** Carries out a verified RECTIFICATION request (Art. 16): identifier-rectification.ts. */
  async rectify(principal: Principal, tenantId: string, id: string): Promise<{ request: SubjectRequestView; consistencyToken: string }> {
    const { consistencyToken } = await this.rectification!.rectify(principal, tenantId, id, (tx, tenant, transition) => this.recordTransition(tx, tenant, transition));
    return { request: await this.get(principal, tenantId, id), consistencyToken };
  }

  /** Art. 18(3): records that the person was informed before the restriction is lifted. */
  async recordRestrictionNotice(principal: Principal, tenantId: string, id: string, method: string, notifiedBy: string): Promise<RestrictionRecord> {
    const v = new Violations();
    checkNotice(v, method, notifiedBy);
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
    v.check(reason.trim().length > 0 && characterCount(reason) <= MAX_TEXT, 'reason', 'REQUIRED', `1-${MAX_TEXT} characters`);
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
      if (person?.erased) await this.subjects.redactFreeTexts(tx, tenantId, restriction.subjectId);
      let since: number | null = null;
      if (person && !person.erased) {
        const open = await this.repo.listRestrictions(tx, tenantId, { subjectId: restriction.subjectId, includeLifted: false }, null, 1000);
        since = open.length > 0 ? Math.min(...open.map((r) => r.placedAt)) : null;
        await this.subjects.setRestrictedSince(tx, tenantId, restriction.subjectId, since);
      }
      const auditSeq = await this.audit.append(tx, tenantId, { type: 'RESTRICTION_LIFTED', time: now, principal: principal.id, subject: restriction.subjectId, ref: restrictionName(restriction), payloadSha256: sha256Hex(reason) });
      // Only when no other restriction of the person stays in force may downstream resume.
      if (person && !person.erased && since === null) {
        await this.changes.append(tx, [{ tenantId, kind: 'UNRESTRICTED', subjectId: restriction.subjectId, purposeId: null, channel: null, eventId: null, at: now, auditSeq }]);
      }
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
    const closing = to === 'COMPLETED' || to === 'REJECTED';
    const someoneErased = await this.tx.write(async (tx) => {
      const request = await this.lockedRequest(tx, tenantId, id);
      if (!from.includes(request.state)) {
        throw failedPrecondition('INVALID_TRANSITION', `a ${request.state} request cannot become ${to}`, { state: request.state, request: `tenants/${tenantId}/requests/${id}` });
      }
      await this.repo.updateRequest(tx, id, { ...change, state: to, updatedAt: now });
      await this.recordTransition(tx, tenantId, { requestId: id, fromState: request.state, toState: to, principal: principal.id, at: now, note });
      return this.redactIfErased(tx, tenantId, await this.subjectsOfRequest(tx, request));
    });
    // Closed, a request naming an erased person no longer pairs its unreached identifiers with them.
    if (closing && someoneErased) {
      const keyring = await this.keys.tenantKeyring(tenantId);
      await this.tx.write((tx) => this.repo.sealUnreachedIdentifiers(tx, id, (blindIndex) => this.keys.erasedReference(keyring, blindIndex)));
    }
    return this.get(principal, tenantId, id);
  }

  /** The persons a request reached: its first subject and every identifier's. */
  private async subjectsOfRequest(tx: TxContext, request: SubjectRequestRecord): Promise<string[]> {
    const rows = (await this.repo.requestIdentifiers(tx, [request.id])).get(request.id) ?? [];
    return [...new Set([request.subjectId, ...rows.map((r) => r.subjectId)].filter((s): s is string => s !== null))];
  }

  /** A reason written about an erased person goes the way of those written before the erasure (redactFreeTexts). */
  private async redactIfErased(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<boolean> {
    let someone = false;
    for (const subjectId of subjectIds) {
      if ((await this.subjects.find(tx, tenantId, subjectId))?.erased) {
        await this.subjects.redactFreeTexts(tx, tenantId, subjectId);
        someone = true;
      }
    }
    return someone;
  }

  /** The tenant checked, then the request locked against concurrent transitions; NOT_FOUND when it does not exist. */
  private async lockedRequest(tx: TxContext, tenantId: string, id: string): Promise<SubjectRequestRecord> {
    await this.tenants.require(tx, tenantId, false);
    const request = await this.repo.lockRequest(tx, tenantId, id);
    if (!request) throw notFound('REQUEST', `tenants/${tenantId}/requests/${id}`);
    return request;
  }

  private async views(tx: TxContext, requests: SubjectRequestRecord[]): Promise<SubjectRequestView[]> {
    const ids = requests.map((r) => r.id);
    const transitions = await this.repo.transitions(tx, ids);
    const identifiers = await this.repo.requestIdentifiers(tx, ids);
    const now = this.clock.now();
    return requests.map((r) => {
      // An extension the person was not told of before the first deadline does not hold (Art. 12(3)).
      const dueTime = deadlineInForce(r, now);
      return {
        ...r,
        dueTime,
        identifiers: identifiers.get(r.id) ?? [],
        transitions: transitions.get(r.id) ?? [],
        overdue: OPEN_REQUEST_STATES.includes(r.state) && now >= dueTime,
      };
    });
  }

}

function parseCursor(token: string | null): NewestFirstCursor | null {
  if (!token) return null;
  const [time, id] = token.split(':');
  return { createdAt: Number(time), id };
}

/** The erasure of `subjectId` an earlier attempt of the request recorded (RequestIdentifierRecord.erasure), if any. */
function recordedErasure(rows: RequestIdentifierRecord[], subjectId: string): ErasureRecord | undefined {
  const json = rows.find((r) => r.subjectId === subjectId && r.erasure)?.erasure;
  return json ? (JSON.parse(json) as ErasureRecord) : undefined;
}

/** How and by whom a person was told something (RecordRequestNotice, RecordRestrictionNotice): the fields' checks. */
function checkNotice(v: Violations, method: string, notifiedBy: string): void {
  v.check(/^[A-Za-z0-9_.:-]{1,64}$/.test(method), 'method', 'INVALID_METHOD', '1-64 characters of A-Z a-z 0-9 _ . : -, e.g. LETTER');
  v.check(notifiedBy.trim().length > 0 && characterCount(notifiedBy) <= 128, 'notified_by', 'REQUIRED', 'a staff reference of 1-128 characters');
}
