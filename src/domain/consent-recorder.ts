import { encodeConsistencyToken } from './consistency';
import { KeyManager } from '../crypto/key-manager';
import { DomainError, FieldViolation, invalidArgument } from '../shared/errors';
import { canonicalJson } from '../shared/hashing';
import { TransactionRunner } from '../shared/unit-of-work';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { BatchTracing, CommitQueue, ItemOutcome, WaitLimit } from './commit-queue';
import { ConsentImport, ImportItem } from './consent-import';
import { consentReceipt } from './consent-receipt';
import { ConsentWriter, PreparedWrite, WriteResult } from './consent-writer';
import { prepareEvidence } from './evidence';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { ALL_PURPOSES, Channel, EARLIEST_RECORD_TIME, CollectionMethod, ConsentEvent, ConsentKind, Evidence, IdentifierRef, LawfulBasis, Notice, Purpose } from './model';
import { Principal } from './principal';
import { PurposeService } from './purpose-service';
import { checkRequestId } from './request-id';
import { SubjectDirectory } from './subject-directory';
import { IdentifierIndex } from './ports';
import { TenantService } from './tenant-service';
import { characterCount } from '../shared/text';

export interface RecordConsentInput {
  tenantId: string;
  identifier: RawIdentifier | undefined;
  /** A purpose id, or ALL_PURPOSES (opt-outs only). */
  purposeId: string;
  channel: Channel;
  kind: ConsentKind;
  eventTime?: number;
  method: CollectionMethod;
  notice?: { purposeId: string; version: number };
  evidence: Evidence;
  lawfulBasis?: LawfulBasis;
  jurisdiction: string;
  expireTime?: number;
  requestId: string;
  /** The request as received, canonically serialised: tells a retry from a reused request_id. */
  fingerprintSource: string;
  /** Return a signed consent receipt (opt-in kinds only). */
  issueReceipt?: boolean;
  /**
   * The person the write must be for (a sign-up's confirmation): refused (SUBJECT_ERASED) when the
   * identifier names nobody or someone else by the time it commits; never creates a person.
   */
  subjectId?: string;
}

export interface RecordInboundInput {
  tenantId: string;
  identifier: RawIdentifier | undefined;
  channel: Exclude<Channel, 'ANY'>;
  eventTime?: number;
  text: string;
  messageId: string;
  requestId: string;
  fingerprintSource: string;
}

export interface InboundResult {
  inbound: ConsentEvent;
  keyword?: ConsentEvent;
  windowExpireTime: number;
  /** The consistency token of the write (encodeConsistencyToken). */
  consistencyToken: string;
}

/** OPT_OUTs for a person known by opaque id (ConsentRecorder.withdrawForSubject). */
export interface SubjectWithdrawal {
  tenantId: string;
  subjectId: string;
  /** One of the person's identifiers as stored (kind and blind index; no value). */
  index: IdentifierIndex;
  /** Purpose ids (or ALL_PURPOSES) and channels (or ANY). */
  scopes: Array<{ purposeId: string; channel: Channel }>;
  eventTime: number;
  evidence: Evidence;
  requestId: string;
  /** The request as received, canonically serialised: tells a retry from a reused request_id. */
  fingerprintSource: string;
}

const OPT_IN_KINDS: ReadonlySet<ConsentKind> = new Set(['OPT_IN', 'OPT_IN_PENDING', 'OPT_IN_CONFIRMED']);
/** The most writes of one tenant committed in one transaction. */
const MAX_BATCH = 256;

/**
 * Records consent events with their provenance. Each call is validated, normalised and hashed on
 * its own; its write then joins the tenant's next group commit (ConsentWriter through a
 * CommitQueue): concurrent writes of a tenant share one transaction, and each is answered once
 * that transaction is durable. Idempotent by request_id.
 */
export class ConsentRecorder {
  private readonly queue: CommitQueue<PreparedWrite, WriteResult>;

  constructor(
    private readonly tx: TransactionRunner,
    private readonly writer: ConsentWriter,
    private readonly subjects: SubjectDirectory,
    private readonly tenants: TenantService,
    private readonly purposes: PurposeService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly maxEventTimeSkewMs: number,
    /** How long a call waits for its batch (DATABASE_CALL_TIMEOUT_MS): then UNAVAILABLE, as any database call. */
    private readonly commitWaitMs: number,
  ) {
    this.queue = new CommitQueue((tenantId, writes) => this.writer.commit(tenantId, writes), MAX_BATCH);
  }

  /** When tracing is on: a span per commit batch, linked to the calls whose writes it carries. */
  set batchTracing(tracing: BatchTracing | undefined) {
    this.queue.tracing = tracing;
  }

  /** The wait limit of a call's write: the database answers within DATABASE_CALL_TIMEOUT_MS or the call is UNAVAILABLE. */
  private get waitLimit(): WaitLimit {
    return {
      ms: this.commitWaitMs,
      error: () => new DomainError('UNAVAILABLE', 'DATABASE_UNAVAILABLE', `the database did not commit the write within ${this.commitWaitMs} ms; retry with the same request_id`, {}, [], 1000),
    };
  }

  async record(principal: Principal, input: RecordConsentInput): Promise<{ event: ConsentEvent; receipt?: string; consistencyToken: string }> {
    const prepared = await this.prepareConsent(principal, input, false);
    const result = await this.queue.submit(input.tenantId, prepared, this.waitLimit);
    const event = result.events[0];
    const consistencyToken = encodeConsistencyToken(input.tenantId, result.logSize);
    if (!input.issueReceipt) return { event, consistencyToken };
    // Signed after the commit: a receipt is never issued for a consent that was not recorded.
    const { tenant, purpose } = await this.tx.read(async (tx) => ({
      tenant: await this.tenants.require(tx, event.tenantId, true),
      purpose: await this.purposes.requirePurpose(tx, event.tenantId, event.purposeId),
    }));
    const issuedAt = this.clock.now();
    const receipt = await this.keys.sign(event.tenantId, consentReceipt(event, tenant, purpose, issuedAt), 'consent-receipt+jwt', issuedAt);
    return { event, receipt, consistencyToken };
  }

  /**
   * Starts an import of a business's records (ImportConsents) into `tenantId`: the caller adds
   * rows as they arrive; each is validated like RecordConsent (an event time is required) and the
   * rows are committed in large batches, in order, straight to the writer (consent-import.ts).
   * Every row gets its own outcome; rows recorded before (same request_id) are not recorded again.
   * A tenant that does not exist (or was erased) fails the whole import here, before any row.
   */
  async startImport<T>(principal: Principal, tenantId: string, report: (tag: T, outcome: ItemOutcome<WriteResult>) => void): Promise<ConsentImport<T>> {
    authorizeTenant(principal, tenantId);
    await this.references(tenantId, null);
    return new ConsentImport<T>(this.writer, tenantId, report);
  }

  /** One row of an import, prepared when its batch is: validated, normalised and hashed. */
  importItem<T>(principal: Principal, input: RecordConsentInput, tag: T): ImportItem<T> {
    return {
      tag,
      prepare: () => {
        if (input.eventTime === undefined) {
          return Promise.reject(invalidArgument([{ field: 'event_time', reason: 'REQUIRED', description: 'an imported row must say when the person acted' }]));
        }
        return this.prepareConsent(principal, input, true);
      },
    };
  }

  /** Validates a consent write, finds its notice, and hashes what the batch needs: no transaction. */
  private async prepareConsent(principal: Principal, input: RecordConsentInput, imported: boolean): Promise<PreparedWrite> {
    const now = this.clock.now();
    const violations: FieldViolation[] = [];
    const identifier = normaliseIdentifier(input.identifier, 'subject_identifier');
    if (isViolation(identifier)) violations.push(identifier);
    const optIn = OPT_IN_KINDS.has(input.kind);
    if (input.purposeId === ALL_PURPOSES && input.kind !== 'OPT_OUT') {
      violations.push({ field: 'purpose', reason: 'SPECIFIC_PURPOSE_REQUIRED', description: 'consent is given for one purpose; only an opt-out may name all purposes' });
    }
    if (input.method === 'KEYWORD') {
      violations.push({ field: 'method', reason: 'RESERVED_METHOD', description: 'KEYWORD events are recorded by RecordInboundMessage' });
    }
    if ((input.kind === 'OPT_IN' || input.kind === 'OPT_IN_PENDING') && !input.notice) {
      violations.push({ field: 'notice', reason: 'REQUIRED', description: 'an opt-in must name the notice version the person saw (Art. 7(1))' });
    }
    if (input.notice && input.notice.purposeId !== input.purposeId) {
      violations.push({ field: 'notice', reason: 'NOTICE_OF_OTHER_PURPOSE', description: 'the notice belongs to another purpose' });
    }
    const eventTime = input.eventTime ?? now;
    this.checkEventTime(eventTime, now, violations);
    if (input.expireTime !== undefined && (!optIn || input.expireTime <= eventTime)) {
      violations.push({ field: 'expire_time', reason: 'INVALID_EXPIRY', description: optIn ? 'must be after event_time' : 'only opt-ins expire' });
    }
    if (input.issueReceipt && !optIn) {
      violations.push({ field: 'issue_receipt', reason: 'NOT_AN_OPT_IN', description: 'receipts are issued for opt-ins' });
    }
    if (input.lawfulBasis !== undefined && !optIn) {
      violations.push({ field: 'lawful_basis', reason: 'NOT_AN_OPT_IN', description: 'only opt-ins have a lawful basis; a withdrawal needs none' });
    }
    if (characterCount(input.jurisdiction) > 16) violations.push({ field: 'jurisdiction', reason: 'TOO_LONG', description: 'at most 16 characters' });
    // An imported row without a request_id gets one derived from what it says (below).
    const derivedRequestId = imported && input.requestId === '';
    checkRequestId(input.requestId, !derivedRequestId, violations);
    const evidence = prepareEvidence(input.evidence, 'evidence', violations);
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, input.tenantId);

    // From the caches without an await when they hold everything (each await is a promise and,
    // with the call budget's AsyncLocalStorage, its hooks: per write).
    const references = this.references(input.tenantId, input.purposeId === ALL_PURPOSES ? null : input.purposeId, input.notice);
    const { notice, purpose } = references instanceof Promise ? await references : references;
    const keyring = this.keys.cachedTenantKeyring(input.tenantId) ?? (await this.keys.tenantKeyring(input.tenantId));
    const fingerprint = this.keys.requestFingerprint(keyring, derivedRequestId ? importedRowContent(identifier, input, eventTime, evidence) : input.fingerprintSource);
    return {
      tenantId: input.tenantId,
      principal: principal.id,
      requestId: derivedRequestId ? `${DERIVED_REQUEST_ID_PREFIX}${fingerprint.slice(0, 32)}` : input.requestId,
      fingerprint,
      identifier,
      index: this.subjects.index(keyring, identifier),
      subjectId: input.subjectId,
      recordTime: now,
      body: {
        type: 'consent',
        kind: input.kind,
        purposeId: input.purposeId,
        channel: input.channel,
        // Only consents are clamped: an opt-out dated ahead errs on the safe side, and the
        // preference page dates one at a later opt-in's time on purpose (preference-links.ts).
        eventTime: input.kind === 'OPT_OUT' ? eventTime : takenEffectBy(eventTime, now),
        serverDated: input.eventTime === undefined,
        method: input.method,
        notice: notice && { purposeId: notice.purposeId, version: notice.version, textSha256: notice.textSha256, language: notice.language },
        evidence,
        lawfulBasis: input.lawfulBasis,
        jurisdiction: input.jurisdiction,
        expireTime: input.expireTime,
        marketing: purpose?.category === 'MARKETING',
      },
      imported,
    };
  }

  async recordInbound(principal: Principal, input: RecordInboundInput): Promise<InboundResult> {
    const now = this.clock.now();
    const violations: FieldViolation[] = [];
    const identifier = normaliseIdentifier(input.identifier, 'subject_identifier');
    if (isViolation(identifier)) violations.push(identifier);
    const eventTime = input.eventTime ?? now;
    this.checkEventTime(eventTime, now, violations);
    checkRequestId(input.requestId, true, violations);
    if (Buffer.byteLength(input.text, 'utf8') > 4096) violations.push({ field: 'text', reason: 'TOO_LONG', description: 'at most 4,096 bytes' });
    if (Buffer.byteLength(input.messageId, 'utf8') > 256) violations.push({ field: 'message_id', reason: 'TOO_LONG', description: 'at most 256 bytes' });
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, input.tenantId);

    const references = this.references(input.tenantId, null);
    if (references instanceof Promise) await references;
    const keyring = this.keys.cachedTenantKeyring(input.tenantId) ?? (await this.keys.tenantKeyring(input.tenantId));
    const result = await this.queue.submit(input.tenantId, {
      tenantId: input.tenantId,
      principal: principal.id,
      requestId: input.requestId,
      fingerprint: this.keys.requestFingerprint(keyring, input.fingerprintSource),
      identifier,
      index: this.subjects.index(keyring, identifier),
      recordTime: now,
      body: { type: 'inbound', channel: input.channel, eventTime: takenEffectBy(eventTime, now), text: input.text, messageId: input.messageId, serverDated: input.eventTime === undefined },
      imported: false,
    }, this.waitLimit);
    const [inbound, keyword] = result.events;
    return { inbound, keyword, windowExpireTime: result.windowExpireTime!, consistencyToken: encodeConsistencyToken(input.tenantId, result.logSize) };
  }

  /**
   * OPT_OUTs for a person known by opaque id (a preference link: SelfServiceService.WithdrawWithLink),
   * through the same group commit as every consent write (audit log, change feed, caches). `index`
   * is one of the person's stored identifiers: the write is refused (SUBJECT_ERASED) rather than
   * made for anyone else if it no longer names them. One write per scope; a single scope keeps the
   * caller's request id, several get `{request_id}#{n}` (n from 1, in the order given), so a retry
   * is answered with the first call's events.
   */
  async withdrawForSubject(principal: Principal, input: SubjectWithdrawal): Promise<{ events: ConsentEvent[]; consistencyToken: string }> {
    const now = this.clock.now();
    const violations: FieldViolation[] = [];
    this.checkEventTime(input.eventTime, now, violations);
    checkRequestId(input.requestId, true, violations);
    const evidence = prepareEvidence(input.evidence, 'evidence', violations);
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenant(principal, input.tenantId);
    for (const purposeId of new Set(input.scopes.map((s) => s.purposeId))) {
      const references = this.references(input.tenantId, purposeId === ALL_PURPOSES ? null : purposeId);
      if (references instanceof Promise) await references;
    }
    const keyring = this.keys.cachedTenantKeyring(input.tenantId) ?? (await this.keys.tenantKeyring(input.tenantId));
    const writes: PreparedWrite[] = input.scopes.map((scope, i) => ({
      tenantId: input.tenantId,
      principal: principal.id,
      requestId: input.scopes.length === 1 ? input.requestId : `${input.requestId}#${i + 1}`,
      fingerprint: this.keys.requestFingerprint(keyring, `${input.fingerprintSource}\u0000${i}`),
      // Never used: the write finds the person by `index` and never creates one (subjectId).
      identifier: { kind: input.index.kind, value: '' },
      index: input.index,
      subjectId: input.subjectId,
      recordTime: now,
      // Dated by this server (the preference page times it): the writer moves it after any opt-in
      // recorded since the page read the person's state (consent-writer.ts).
      body: { type: 'consent', kind: 'OPT_OUT', purposeId: scope.purposeId, channel: scope.channel, eventTime: input.eventTime, method: 'WEB_FORM', evidence, jurisdiction: '', serverDated: true },
      imported: false,
    }));
    const results = await Promise.all(writes.map((w) => this.queue.submit(input.tenantId, w, this.waitLimit)));
    return {
      events: results.map((r) => r.events[0]),
      consistencyToken: encodeConsistencyToken(input.tenantId, Math.max(...results.map((r) => r.logSize))),
    };
  }

  /**
   * The tenant (NOT_FOUND, TENANT_ERASED), the purpose and the notice a write names (NOT_FOUND),
   * from the caches when all are there (they are immutable, the tenant at most a moment old), or
   * in one read. The batch that commits the write reads the tenant again.
   */
  private references(
    tenantId: string,
    purposeId: string | null,
    notice?: { purposeId: string; version: number },
  ): { notice?: Notice; purpose?: Purpose } | Promise<{ notice?: Notice; purpose?: Purpose }> {
    const tenant = this.tenants.cached(tenantId);
    const cached = tenant ? this.purposes.cached(tenantId, purposeId, notice) : undefined;
    if (cached) return cached;
    return this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, true);
      const purpose = purposeId !== null ? await this.purposes.requirePurpose(tx, tenantId, purposeId) : undefined;
      return { purpose, notice: notice ? await this.purposes.requireNotice(tx, tenantId, notice.purposeId, notice.version) : undefined };
    });
  }

  private checkEventTime(eventTime: number, now: number, violations: FieldViolation[]): void {
    if (eventTime > now + this.maxEventTimeSkewMs) {
      violations.push({ field: 'event_time', reason: 'IN_THE_FUTURE', description: 'must not be more than 5 minutes in the future' });
    }
    if (eventTime < EARLIEST_RECORD_TIME) {
      violations.push({ field: 'event_time', reason: 'OUT_OF_RANGE', description: 'must not be before 2000-01-01' });
    }
  }
}

/**
 * The event time recorded for a consent (or an inbound message) the caller dates `eventTime`,
 * told to the service at `now`: an event time ahead of the service's clock (accepted up to five minutes ahead, a
 * sender's clock running fast) is recorded as `now`. A person cannot have acted after the
 * service was told, and the rules order a person's actions by event time: an opt-in dated four
 * minutes ahead would otherwise outrank every withdrawal recorded in those four minutes, and go
 * on outranking them after (Art. 7(3): a withdrawal takes effect at once). The request's
 * fingerprint keeps the time as sent, so a retry is still recognised.
 */
export function takenEffectBy(eventTime: number, now: number): number {
  return eventTime > now ? now : eventTime;
}

/** Request ids the service derives for imported rows that have none: this prefix and 128 bits of the row's fingerprint. */
export const DERIVED_REQUEST_ID_PREFIX = 'row-';

/**
 * What an imported row says, normalised (the identifier as stored, the evidence as kept, the
 * defaults applied), without where it stands in its file: the source of the fingerprint, and so
 * of the request id, of a row that came without one. The same row in another place of an edited
 * file, or written differently (a phone number with spaces), gets the same request id and is
 * recorded once. The fingerprint is an HMAC under the tenant's request key, so the id reveals
 * nothing of the row to whoever reads it.
 */
function importedRowContent(identifier: IdentifierRef, input: RecordConsentInput, eventTime: number, evidence: Evidence): string {
  const optIn = OPT_IN_KINDS.has(input.kind);
  return canonicalJson({
    v: 'import-row/1',
    identifier,
    purpose: input.purposeId,
    channel: input.channel,
    kind: input.kind,
    eventTime,
    method: input.method,
    notice: input.notice,
    evidence,
    lawfulBasis: optIn ? (input.lawfulBasis ?? 'CONSENT') : undefined,
    jurisdiction: input.jurisdiction,
    expireTime: input.expireTime,
  });
}
