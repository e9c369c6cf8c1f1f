import { ScopeState, WindowState } from './consent-rules';
import { TxContext } from '../shared/unit-of-work';
import { Channel, ConsentEvent, IdentifierKind, Notice, Purpose, TenantSettings } from './model';

/** A subject found by its blind index. */
export interface SubjectRef {
  subjectId: string;
  erased: boolean;
  /** Art. 21(3): the time of the person's standing objection to direct marketing (event-time axis); absent: none. */
  objectedAt?: number;
  /** Art. 18: since when the person's processing is restricted (a restriction in force); absent: not restricted. */
  restrictedSince?: number;
  /** A fresh subject of a reassigned identifier's new owner: when it passed to them; absent: not one. */
  reassignedAt?: number;
  /** When an identifier last moved off the subject (rectified or reassigned); absent: never. */
  identifiersChangedAt?: number;
}

/** Key of one identifier row: the blind index, never the plaintext. */
export interface IdentifierIndex {
  kind: IdentifierKind;
  blindIndex: string;
}

/* ---- Repositories: what the domain needs persisted. Implemented in src/storage/repositories. ---- */

export interface TenantRecord {
  id: string;
  displayName: string;
  settings: TenantSettings;
  createRequestId: string | null;
  createdAt: number;
  updatedAt: number;
  erasedAt: number | null;
}

export interface TenantRepository {
  insert(tx: TxContext, tenant: TenantRecord): Promise<void>;
  find(tx: TxContext, id: string): Promise<TenantRecord | null>;
  /** `find` under the row's lock (MySQL: FOR UPDATE; SQLite's writers are serialised anyway). */
  lock(tx: TxContext, id: string): Promise<TenantRecord | null>;
  /** Stores new settings, in force from `updatedAt` (the previous versions are kept). */
  updateSettings(tx: TxContext, id: string, settings: TenantSettings, updatedAt: number): Promise<void>;
  /** The settings in force at `at`, or null before the first known version. */
  settingsAt(tx: TxContext, id: string, at: number): Promise<TenantSettings | null>;
  markErased(tx: TxContext, id: string, at: number): Promise<void>;
  /** Erased tenants whose rows have not been purged yet. */
  listUnpurged(tx: TxContext): Promise<string[]>;
  /**
   * Deletes up to `limit` of an erased tenant's event rows, or, when none are left, its other
   * rows (keeping the tenant row as the record of the erasure). Returns true once all are gone.
   */
  purgeBatch(tx: TxContext, id: string, limit: number, at: number): Promise<boolean>;
}

export interface KeyRotationRecord {
  id: string;
  tenantId: string;
  requestId: string;
  state: 'RUNNING' | 'SUCCEEDED' | 'FAILED';
  fromEpoch: number;
  toEpoch: number;
  total: number;
  done: number;
  error: string | null;
  principal: string;
  createdAt: number;
  endedAt: number | null;
}

export interface KeyRotationRepository {
  insert(tx: TxContext, rotation: KeyRotationRecord): Promise<void>;
  find(tx: TxContext, tenantId: string, id: string): Promise<KeyRotationRecord | null>;
  findByRequest(tx: TxContext, tenantId: string, requestId: string): Promise<KeyRotationRecord | null>;
  /** RUNNING rotations, of one tenant or of all. */
  running(tx: TxContext, tenantId?: string): Promise<KeyRotationRecord[]>;
  /**
   * Changes a rotation that is still RUNNING (or in one of `from`); false when it is not (another
   * process, or an earlier run of this one, ended it), and then nothing is changed.
   */
  updateRunning(tx: TxContext, id: string, change: Partial<Pick<KeyRotationRecord, 'state' | 'total' | 'done' | 'error' | 'endedAt'>>, from?: Array<KeyRotationRecord['state']>): Promise<boolean>;
}

export interface PurposeRecord extends Purpose {
  createRequestId: string | null;
}

export interface NoticeRecord extends Notice {
  requestId: string;
}

export interface PurposeRepository {
  insert(tx: TxContext, purpose: PurposeRecord): Promise<void>;
  find(tx: TxContext, tenantId: string, id: string): Promise<PurposeRecord | null>;
  /** Which of these purpose ids exist in the tenant. */
  existing(tx: TxContext, tenantId: string, ids: string[]): Promise<Set<string>>;
  /** Purposes ordered by id, after `afterId` (exclusive). */
  list(tx: TxContext, tenantId: string, afterId: string | null, limit: number): Promise<PurposeRecord[]>;
  insertNotice(tx: TxContext, notice: NoticeRecord): Promise<void>;
  latestNoticeVersion(tx: TxContext, tenantId: string, purposeId: string): Promise<number>;
  findNotice(tx: TxContext, tenantId: string, purposeId: string, version: number): Promise<NoticeRecord | null>;
  findNoticeByRequest(tx: TxContext, tenantId: string, requestId: string): Promise<NoticeRecord | null>;
  /** Notice versions newest first, below `beforeVersion` (exclusive) when given. */
  listNotices(tx: TxContext, tenantId: string, purposeId: string, beforeVersion: number | null, limit: number): Promise<NoticeRecord[]>;
}

export interface SubjectRepository {
  findByIdentifier(tx: TxContext, tenantId: string, index: IdentifierIndex): Promise<SubjectRef | null>;
  /** Batch lookup; the map is keyed by `${kind}:${blindIndex}`. */
  findByIdentifiers(tx: TxContext, tenantId: string, indexes: IdentifierIndex[]): Promise<Map<string, SubjectRef>>;
  insert(tx: TxContext, subject: { id: string; tenantId: string; createdAt: number }): Promise<void>;
  insertIdentifier(
    tx: TxContext,
    identifier: IdentifierIndex & { tenantId: string; subjectId: string; valueCiphertext: string; createdAt: number },
  ): Promise<void>;
  /**
   * Marks a subject erased, deletes its identifier rows (with their ciphertext) and its derived
   * state (consent_state, service_windows), and leaves a suppression tombstone per identifier:
   * the blind index (a keyed hash, no personal data) and the time, naming no subject. Rows are
   * few; the cost does not depend on how many events the subject has. Returns how many
   * identifiers were replaced by tombstones.
   */
  markErased(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<number>;
  /**
   * With the erasure: replaces the blind index in every other row that pairs one of the person's
   * identifiers with their subject id (data-subject requests and their identifiers, rectified
   * identifiers, reassignment reports) by `seal(blindIndex)`, so that the tombstone, which
   * carries the same blind index, is joined to nothing: it names no subject, and a person
   * recorded later under the identifier is not linked to the erased one. Returns the rows sealed.
   */
  sealIdentifierReferences(tx: TxContext, tenantId: string, subjectId: string, seal: (blindIndex: string) => string): Promise<number>;
  /**
   * Replaces the free texts staff wrote about the person's requests, restrictions and legal holds
   * (reasons of an extension, a rejection, a lifting or a release) with ERASED_TEXT: they may
   * name or describe the person and are stored in plaintext, so they go with the erasure.
   */
  redactFreeTexts(tx: TxContext, tenantId: string, subjectId: string): Promise<void>;
  /** Suppression tombstones of these identifiers, keyed by `${kind}:${blindIndex}`: when each was erased. */
  findSuppressed(tx: TxContext, tenantId: string, indexes: IdentifierIndex[]): Promise<Map<string, { erasedAt: number }>>;
  /** The subject with this opaque id as it is now (no lock), or null (never known, or its tenant purged). */
  find(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRef | null>;
  /**
   * Serialises writers of one subject until the transaction ends, and reads the subject as it
   * is under the lock (null if it is gone), so a writer sees an erasure that committed first.
   */
  lock(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRef | null>;
  /** Records the person's standing objection to direct marketing (Art. 21(3)) at `objectedAt` (event-time axis). */
  setObjection(tx: TxContext, tenantId: string, subjectId: string, objectedAt: number): Promise<void>;
  /**
   * Art. 21(3): the person's standing objection as it stood at `at` (event-time axis): that of the
   * latest objection recorded by then, or undefined when none was. Read from the log's
   * SUBJECT_OBJECTED entries, the record of every objection (`subjects.objected_at` keeps the latest).
   */
  objectedAtBy(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<number | undefined>;
  /** Art. 18: whether a restriction of the person was in force at `at` (placed by then, not lifted by then). */
  restrictedAt(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<boolean>;
  /** Art. 18: since when a restriction of the person is in force (the earliest open one), or null. */
  setRestrictedSince(tx: TxContext, tenantId: string, subjectId: string, since: number | null): Promise<void>;
  /** `lock` for several subjects, taken in id order (so concurrent writers cannot deadlock); missing ones are absent. */
  lockMany(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<Map<string, SubjectRef>>;
  /** Inserts new subjects and their identifier rows with multi-row statements. */
  insertMany(
    tx: TxContext,
    subjects: Array<{ id: string; tenantId: string; createdAt: number }>,
    identifiers: Array<IdentifierIndex & { tenantId: string; subjectId: string; valueCiphertext: string; createdAt: number }>,
  ): Promise<void>;
}

/** A consent event as stored: provenance only as ciphertext. */
export interface StoredConsentEvent extends Omit<ConsentEvent, 'evidence'> {
  requestFingerprint: string;
  evidenceCiphertext: string | null;
}

export interface ConsentEventFilter {
  /** Leave out the events of erased people (every listing but the auditor's row cross-check). */
  excludeErased?: boolean;
  subjectId?: string;
  purposeId?: string;
  channel?: Channel;
  startTime?: number;
  endTime?: number;
}

/** The folded state of one subject, as the rules read it. */
export interface SubjectStateRows {
  scopes: ScopeState[];
  windows: WindowState[];
}

export interface ConsentRepository {
  /** The events recorded under any of these request ids. */
  findByRequestIds(tx: TxContext, tenantId: string, requestIds: string[]): Promise<StoredConsentEvent[]>;
  /** The notice an event names (undefined: none, or no such event). */
  noticeOf(tx: TxContext, tenantId: string, eventId: string): Promise<ConsentEvent['notice']>;
  /** Inserts events in the order given (their seq follows it), with multi-row statements. */
  insertEvents(tx: TxContext, events: StoredConsentEvent[]): Promise<void>;
  /** Inserts or replaces the current-state rows of scopes and service windows. */
  saveStates(tx: TxContext, tenantId: string, scopes: Array<{ subjectId: string; scope: ScopeState }>, windows: Array<{ subjectId: string; window: WindowState }>): Promise<void>;
  /** Current-state rows of these subjects; subjects without any are absent from the map. */
  loadState(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<Map<string, SubjectStateRows>>;
  /** The events of a subject recorded at or before `recordedBy`, in recording order, for replay. */
  eventsRecordedBy(tx: TxContext, tenantId: string, subjectId: string, recordedBy: number): Promise<StoredConsentEvent[]>;
  countEvents(tx: TxContext, tenantId: string, subjectId: string): Promise<number>;
  /** Encrypted identifiers of a subject (for exports). */
  identifiersOf(tx: TxContext, tenantId: string, subjectId: string): Promise<Array<{ kind: string; blindIndex: string; valueCiphertext: string }>>;
  /** Events in recording order after `afterSeq` (exclusive); each paired with its cursor. */
  list(
    tx: TxContext,
    tenantId: string,
    filter: ConsentEventFilter,
    afterSeq: number,
    limit: number,
  ): Promise<Array<{ seq: number; event: StoredConsentEvent; subjectErased: boolean }>>;
}

/* ---- Identifiers that change (rectification, reassigned numbers) ---- */

/** A report that an identifier now belongs to someone else (ConsentService.ReportReassignedIdentifier). */
export interface ReassignmentRecord {
  id: string;
  tenantId: string;
  requestId: string;
  requestFingerprint: string;
  kind: IdentifierKind;
  blindIndex: string;
  /** The subject the identifier moved off (null: it named nobody). */
  oldSubjectId: string | null;
  /** The fresh subject of the new owner. */
  newSubjectId: string;
  reassignTime: number;
  source: string;
  reportedBy: string;
  createdAt: number;
}

export interface IdentifierChangeRepository {
  findReassignment(tx: TxContext, tenantId: string, requestId: string): Promise<ReassignmentRecord | null>;
  insertReassignment(tx: TxContext, report: ReassignmentRecord): Promise<void>;
  /** A fresh subject of a reassigned identifier's new owner, marked with the reassignment time. */
  insertReassignedSubject(tx: TxContext, subject: { id: string; tenantId: string; createdAt: number; reassignedAt: number }): Promise<void>;
  /** Deletes an identifier row (no tombstone: the identifier then names nobody). */
  deleteIdentifier(tx: TxContext, tenantId: string, index: IdentifierIndex): Promise<void>;
  /** Records that an identifier moved off the subject at `at` (consent writes that found the subject by it look again). */
  markIdentifiersChanged(tx: TxContext, tenantId: string, subjectId: string, at: number): Promise<void>;
  /** Deletes a subject's service-window rows (derived state): its windows are closed. */
  closeWindows(tx: TxContext, tenantId: string, subjectId: string): Promise<void>;
}

/* ---- Change feed ---- */

export interface ChangeRecord {
  seq: number;
  /** The position of the change's audit entry in its tenant's log: the tenant's commit order. */
  auditSeq: number;
  tenantId: string;
  /** CONFIRMATION: an e-mail sign-up confirmation to deliver (`eventId` holds the delivery's id). */
  kind: 'OPT_OUT' | 'ERASURE' | 'RESTRICTED' | 'UNRESTRICTED' | 'CONFIRMATION' | 'RECTIFIED' | 'OBJECTED';
  subjectId: string;
  purposeId: string | null;
  channel: string | null;
  eventId: string | null;
  at: number;
}

export interface ChangeFeedRepository {
  /**
   * Appends in the caller's transaction, so a change is in the feed exactly when it committed;
   * each with the position of its audit entry (appended in the same transaction).
   */
  append(tx: TxContext, changes: Array<Omit<ChangeRecord, 'seq'>>): Promise<void>;
  /** Changes of a tenant at log positions from `from` up to `below` (exclusive), in that order. */
  between(tx: TxContext, tenantId: string, from: number, below: number, limit: number): Promise<ChangeRecord[]>;
  /** The log position of the change with outbox `seq` (for cursors issued before positions existed). */
  positionOf(tx: TxContext, tenantId: string, seq: number): Promise<number | null>;
}

/* ---- Data-subject requests and legal holds ---- */

export type RequestKind = 'ACCESS' | 'PORTABILITY' | 'ERASURE' | 'OBJECTION' | 'RESTRICTION' | 'RECTIFICATION';
export type RequestState = 'RECEIVED' | 'VERIFIED' | 'IN_PROGRESS' | 'COMPLETED' | 'REJECTED';
/** States in which the deadline still matters. */
export const OPEN_REQUEST_STATES: readonly RequestState[] = ['RECEIVED', 'VERIFIED', 'IN_PROGRESS'];

export interface SubjectRequestRecord {
  id: string;
  tenantId: string;
  kind: RequestKind;
  state: RequestState;
  identifierKind: IdentifierKind;
  blindIndex: string;
  subjectId: string | null;
  receivedVia: string;
  receiveTime: number;
  dueTime: number;
  extensionReason: string | null;
  verificationMethod: string | null;
  verifiedBy: string | null;
  rejectionReason: string | null;
  /** For a completed erasure: the signed erasure receipt. */
  result: string | null;
  requestId: string;
  createdAt: number;
  updatedAt: number;
  /** RECTIFICATION: the correct identifier (blind index; value under the subject key, null when no subject was known). */
  rectifiedKind?: IdentifierKind | null;
  rectifiedBlindIndex?: string | null;
  rectifiedCiphertext?: string | null;
  /** Art. 12(3): that the person was told of the extension (RecordRequestNotice). */
  extensionNotice?: RequestNotice | null;
  /** Art. 12(4): that the person was told of the rejection. */
  rejectionNotice?: RequestNotice | null;
}

/** That the person was told something about their request: how, by whom, when recorded. */
export interface RequestNotice {
  method: string;
  notifiedBy: string;
  at: number;
}

/**
 * One identifier of a request (by blind index only): named by the requester (positions 1..n in
 * the order given) or reached through an identity link (`viaLink`), with its own verification.
 */
export interface RequestIdentifierRecord {
  requestId: string;
  tenantId: string;
  position: number;
  identifierKind: IdentifierKind;
  blindIndex: string;
  /** The subject it found; null: the tenant holds nothing under it. */
  subjectId: string | null;
  viaLink: string | null;
  verificationMethod: string | null;
  verifiedBy: string | null;
  verifiedAt: number | null;
  /** What carrying out the request did for it (no personal data). */
  outcome: string | null;
  /**
   * ERASURE: the erasure of `subjectId` by this request, recorded in the erasure's own
   * transaction (JSON of ErasureRecord), so that a request finished after an interruption still
   * reports what its first attempt erased.
   */
  erasure?: string | null;
}

export interface RequestTransitionRecord {
  requestId: string;
  seq: number;
  fromState: RequestState | null;
  toState: RequestState;
  principal: string;
  at: number;
  note: string;
}

export interface LegalHoldRecord {
  id: string;
  tenantId: string;
  subjectId: string;
  ground: string;
  note: string;
  placedBy: string;
  placedAt: number;
  releasedBy: string | null;
  releasedAt: number | null;
  releaseNote: string | null;
  requestId: string;
}

/** A restriction of processing (Art. 18) of a subject; in force while `liftedAt` is null. */
/** A restriction's resource name, "tenants/{tenant}/restrictions/{id}". */
export function restrictionName(r: Pick<RestrictionRecord, 'tenantId' | 'id'>): string {
  return `tenants/${r.tenantId}/restrictions/${r.id}`;
}

export interface RestrictionRecord {
  id: string;
  tenantId: string;
  subjectId: string;
  ground: string;
  /** The RESTRICTION request it carries out. */
  requestId: string;
  note: string;
  placedBy: string;
  placedAt: number;
  /** Art. 18(3): the person was informed before the lifting. */
  notifiedBy: string | null;
  noticeMethod: string | null;
  notifiedAt: number | null;
  liftedBy: string | null;
  liftedAt: number | null;
  liftReason: string | null;
}

/** A position in a newest-first listing. */
export interface NewestFirstCursor {
  createdAt: number;
  id: string;
}

export interface SubjectRightsRepository {
  insertRequest(tx: TxContext, request: SubjectRequestRecord): Promise<void>;
  findRequest(tx: TxContext, tenantId: string, id: string): Promise<SubjectRequestRecord | null>;
  findRequestByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<SubjectRequestRecord | null>;
  /** The request, locked against concurrent transitions until the transaction ends. */
  lockRequest(tx: TxContext, tenantId: string, id: string): Promise<SubjectRequestRecord | null>;
  updateRequest(tx: TxContext, id: string, change: Partial<Omit<SubjectRequestRecord, 'extensionNotice' | 'rejectionNotice'>>): Promise<void>;
  addTransition(tx: TxContext, transition: Omit<RequestTransitionRecord, 'seq'>): Promise<void>;
  transitions(tx: TxContext, requestIds: string[]): Promise<Map<string, RequestTransitionRecord[]>>;
  listRequests(
    tx: TxContext,
    tenantId: string,
    filter: { state?: RequestState; kind?: RequestKind; openDueBefore?: number; lapsedReceivedBefore?: number },
    after: NewestFirstCursor | null,
    limit: number,
  ): Promise<SubjectRequestRecord[]>;
  insertRequestIdentifiers(tx: TxContext, rows: RequestIdentifierRecord[]): Promise<void>;
  /** The identifiers of each request, in position order. */
  requestIdentifiers(tx: TxContext, requestIds: string[]): Promise<Map<string, RequestIdentifierRecord[]>>;
  updateRequestIdentifier(tx: TxContext, requestId: string, position: number, change: Partial<RequestIdentifierRecord>): Promise<void>;
  /** Seals the blind index of the request's rows that found nobody (SubjectRepository.sealIdentifierReferences says why). */
  sealUnreachedIdentifiers(tx: TxContext, requestId: string, seal: (blindIndex: string) => string): Promise<void>;
  /** Records that the person was told of the request's extension or rejection (Art. 12(3)-(4)). */
  recordNotice(tx: TxContext, id: string, topic: 'EXTENSION' | 'REJECTION', notice: RequestNotice): Promise<void>;
  /** Records on every row of the request that names `subjectId` what erasing them came to (RequestIdentifierRecord.erasure). */
  recordErasure(tx: TxContext, requestId: string, subjectId: string, erasure: string): Promise<void>;
  /** Every request that reached a subject (through any of its identifiers), oldest first. */
  requestsOfSubject(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRequestRecord[]>;
  /** ERASURE requests left IN_PROGRESS (by a process that stopped mid-way). */
  inProgressErasures(tx: TxContext): Promise<SubjectRequestRecord[]>;
  insertRestriction(tx: TxContext, restriction: RestrictionRecord): Promise<void>;
  findRestriction(tx: TxContext, tenantId: string, id: string): Promise<RestrictionRecord | null>;
  /** The restrictions that carry out a RESTRICTION request (one per person it reached), oldest first. */
  restrictionsOfRequest(tx: TxContext, tenantId: string, requestId: string): Promise<RestrictionRecord[]>;
  updateRestriction(tx: TxContext, id: string, change: Partial<RestrictionRecord>): Promise<void>;
  listRestrictions(
    tx: TxContext,
    tenantId: string,
    filter: { subjectId?: string; includeLifted: boolean },
    after: NewestFirstCursor | null,
    limit: number,
  ): Promise<RestrictionRecord[]>;
  insertHold(tx: TxContext, hold: LegalHoldRecord): Promise<void>;
  findHold(tx: TxContext, tenantId: string, id: string): Promise<LegalHoldRecord | null>;
  findHoldByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<LegalHoldRecord | null>;
  updateHold(tx: TxContext, id: string, change: Partial<LegalHoldRecord>): Promise<void>;
  listHolds(
    tx: TxContext,
    tenantId: string,
    filter: { subjectId?: string; includeReleased: boolean },
    after: NewestFirstCursor | null,
    limit: number,
  ): Promise<LegalHoldRecord[]>;
}

/** What a check reads on a cache miss (DecisionStateRepository.read), at one version. */
export interface DecisionStateRead {
  /** The tenant's committed audit log size when read: every write before it is in what was read. */
  version: number;
  /** Subjects by `${kind}:${blindIndex}`. */
  subjects: Map<string, SubjectRef>;
  /** Identifiers (`${kind}:${blindIndex}`) whose person was erased: tombstones. */
  suppressed: Set<string>;
  /** The named subjects' scopes and windows (absent: none). */
  state: Map<string, SubjectStateRows>;
}

/** One audit log entry as the decision cache's invalidation reads it. */
export interface AuditChange {
  seq: number;
  type: string | null;
  subjectId: string | null;
}

/** The check path's reads: a miss in one statement, and the tail of the commit-ordered audit log. */
export interface DecisionStateRepository {
  read(tx: TxContext, tenantId: string, indexes: IdentifierIndex[]): Promise<DecisionStateRead>;
  /** Committed audit log sizes of these tenants (absent: an empty log). */
  heads(tx: TxContext, tenantIds: string[]): Promise<Map<string, number>>;
  /** Entries [fromSeq, toSeq) of a tenant's log, in order, at most `limit`. */
  changes(tx: TxContext, tenantId: string, fromSeq: number, toSeq: number, limit: number): Promise<AuditChange[]>;
}
