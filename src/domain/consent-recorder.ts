import { randomBytes } from 'node:crypto';
import { KeyManager, SubjectKey } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { applyToScope, applyToWindow, ScopeState, WindowState } from './consent-rules';
import { Clock } from './clock';
import { addCalendarMonths } from './deadlines';
import { failedPrecondition, FieldViolation, invalidArgument } from '../shared/errors';
import { eventRecordSha256, hasEvidence, openEvent, sealEvent } from './event-codec';
import { consentReceipt } from './consent-receipt';
import { prepareEvidence } from './evidence';
import { normaliseIdentifier, isViolation, RawIdentifier } from './identifiers';
import { matchKeyword } from './keywords';
import {
  ALL_PURPOSES,
  Channel,
  CollectionMethod,
  ConsentEvent,
  ConsentKind,
  Evidence,
  LawfulBasis,
  Tenant,
} from './model';
import { AuditTrail } from '../audit/audit-types';
import { ChangeFeedRepository, ConsentRepository, StoredConsentEvent } from './ports';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { sha256Hex } from '../shared/hashing';
import { Principal } from './principal';
import { PurposeService } from './purpose-service';
import { checkRequestId } from './request-id';
import { SubjectDirectory } from './subject-directory';
import { TenantService } from './tenant-service';

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
}

const OPT_IN_KINDS: ReadonlySet<ConsentKind> = new Set(['OPT_IN', 'OPT_IN_PENDING', 'OPT_IN_CONFIRMED']);
/** Suffix of the request id of the keyword event an inbound message records. */
const KEYWORD_REQUEST_SUFFIX = '#keyword';

/**
 * Appends consent events with their provenance and keeps the current-state tables in step,
 * in one transaction per call. Idempotent by request_id.
 */
export class ConsentRecorder {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly consent: ConsentRepository,
    private readonly subjects: SubjectDirectory,
    private readonly tenants: TenantService,
    private readonly purposes: PurposeService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly maxEventTimeSkewMs: number,
    private readonly changes: ChangeFeedRepository,
    private readonly audit: AuditTrail,
  ) {}

  async record(principal: Principal, input: RecordConsentInput): Promise<{ event: ConsentEvent; receipt?: string }> {
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
    if (input.jurisdiction.length > 16) violations.push({ field: 'jurisdiction', reason: 'TOO_LONG', description: 'at most 16 characters' });
    checkRequestId(input.requestId, true, violations);
    const evidence = prepareEvidence(input.evidence, 'evidence', violations);
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, input.tenantId);

    const event = await this.tx.write(async (tx) => {
      const tenant = await this.tenants.require(tx, input.tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenant.id);
      const fingerprint = this.keys.requestFingerprint(keyring, input.fingerprintSource);
      const replay = await this.replay(tx, tenant.id, input.requestId, fingerprint);
      if (replay) return replay;

      if (input.purposeId !== ALL_PURPOSES) await this.purposes.requirePurpose(tx, tenant.id, input.purposeId);
      const notice = input.notice
        ? await this.purposes.requireNotice(tx, tenant.id, input.notice.purposeId, input.notice.version)
        : undefined;

      const subject = await this.subjects.findOrCreate(tx, keyring, identifier, now, input.method);
      const state = await this.loadScopes(tx, tenant.id, subject.subjectId);
      const scopeKey = `${input.purposeId}\u0000${input.channel}`;
      const pending = state.get(scopeKey)?.optIn;
      if (input.kind === 'OPT_IN_CONFIRMED') {
        if (pending?.kind !== 'OPT_IN_PENDING') {
          throw failedPrecondition('NO_PENDING_OPT_IN', 'there is no pending double opt-in to confirm for this purpose and channel');
        }
        if (eventTime < pending.eventTime) {
          throw failedPrecondition('BEFORE_PENDING_OPT_IN', 'a confirmation cannot precede the pending opt-in it confirms');
        }
      }

      const event: ConsentEvent = {
        id: newEventId(),
        tenantId: tenant.id,
        subjectId: subject.subjectId,
        kind: input.kind,
        purposeId: input.purposeId,
        channel: input.channel,
        eventTime,
        recordTime: now,
        method: input.method,
        notice: notice && { purposeId: notice.purposeId, version: notice.version, textSha256: notice.textSha256, language: notice.language },
        principal: principal.id,
        evidence,
        lawfulBasis: optIn ? (input.lawfulBasis ?? 'CONSENT') : null,
        jurisdiction: input.jurisdiction,
        expireTime: optIn ? (input.expireTime ?? defaultExpiry(tenant, input.purposeId, eventTime)) : undefined,
        requestId: input.requestId,
      };
      await this.append(tx, event, subject.key, fingerprint, state);
      return event;
    });
    if (!input.issueReceipt) return { event };
    // Signed after the commit: a receipt is never issued for a consent that was not recorded.
    const { tenant, purpose } = await this.tx.read(async (tx) => ({
      tenant: await this.tenants.require(tx, event.tenantId, true),
      purpose: await this.purposes.requirePurpose(tx, event.tenantId, event.purposeId),
    }));
    const issuedAt = this.clock.now();
    const receipt = await this.keys.sign(event.tenantId, consentReceipt(event, tenant, purpose, issuedAt), 'consent-receipt+jwt', issuedAt);
    return { event, receipt };
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
    const evidence: Evidence = input.messageId ? { inboundMessageId: input.messageId } : {};
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, input.tenantId);

    return this.tx.write(async (tx) => {
      const tenant = await this.tenants.require(tx, input.tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenant.id);
      const fingerprint = this.keys.requestFingerprint(keyring, input.fingerprintSource);
      const replayed = await this.replay(tx, tenant.id, input.requestId, fingerprint);
      if (replayed) return this.replayInbound(tx, tenant, replayed, input.requestId);

      const subject = await this.subjects.findOrCreate(tx, keyring, identifier, now, 'CHAT_MESSAGE');
      const state = await this.loadScopes(tx, tenant.id, subject.subjectId);
      const base = {
        tenantId: tenant.id,
        subjectId: subject.subjectId,
        purposeId: ALL_PURPOSES,
        channel: input.channel,
        eventTime,
        recordTime: now,
        principal: principal.id,
        evidence,
        lawfulBasis: null,
        jurisdiction: '',
      };
      const inbound: ConsentEvent = { ...base, id: newEventId(), kind: 'INBOUND_MESSAGE', method: 'CHAT_MESSAGE', requestId: input.requestId };
      await this.append(tx, inbound, subject.key, fingerprint, state);

      const window = await this.updateWindow(tx, tenant.id, subject.subjectId, state.windows, inbound);
      const match = matchKeyword(input.text, tenant.settings);
      let keyword: ConsentEvent | undefined;
      if (match) {
        keyword = { ...base, id: newEventId(), kind: match, method: 'KEYWORD', requestId: input.requestId + KEYWORD_REQUEST_SUFFIX };
        await this.append(tx, keyword, subject.key, fingerprint, state);
      }
      return { inbound, keyword, windowExpireTime: window + tenant.settings.serviceWindowMs };
    });
  }

  /**
   * A retry's first result; FAILED_PRECONDITION when the request_id was used for another request,
   * or when the person it was recorded for has been erased since (final: a retry cannot help, and
   * recording it again would re-create consent the person had erased).
   */
  private async replay(tx: TxContext, tenantId: string, requestId: string, fingerprint: string): Promise<ConsentEvent | null> {
    const existing = await this.consent.findByRequestId(tx, tenantId, requestId);
    if (!existing) return null;
    if (existing.requestFingerprint !== fingerprint) {
      throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: requestId });
    }
    if (await this.subjects.isErased(tx, tenantId, existing.subjectId)) {
      throw failedPrecondition('SUBJECT_ERASED', 'the person this request was recorded for has been erased since', { request_id: requestId });
    }
    return this.open(existing);
  }

  private async replayInbound(tx: TxContext, tenant: Tenant, inbound: ConsentEvent, requestId: string): Promise<InboundResult> {
    const keywordRow = await this.consent.findByRequestId(tx, tenant.id, requestId + KEYWORD_REQUEST_SUFFIX);
    const state = await this.consent.loadState(tx, tenant.id, [inbound.subjectId]);
    const window = state.get(inbound.subjectId)?.windows.find((w) => w.channel === inbound.channel);
    const last = Math.max(window?.lastInboundTime ?? inbound.eventTime, inbound.eventTime);
    return {
      inbound,
      keyword: keywordRow ? await this.open(keywordRow) : undefined,
      windowExpireTime: last + tenant.settings.serviceWindowMs,
    };
  }

  private async open(stored: StoredConsentEvent): Promise<ConsentEvent> {
    const key = stored.evidenceCiphertext === null ? null : await this.keys.subjectKey(stored.tenantId, stored.subjectId);
    return openEvent(stored, key);
  }

  /** The subject's current state under its lock: scopes keyed by purpose and channel, and windows. */
  private async loadScopes(tx: TxContext, tenantId: string, subjectId: string): Promise<Map<string, ScopeState> & { windows: WindowState[] }> {
    const rows = (await this.consent.loadState(tx, tenantId, [subjectId])).get(subjectId);
    const scopes = new Map((rows?.scopes ?? []).map((s) => [`${s.purposeId}\u0000${s.channel}`, s]));
    return Object.assign(scopes, { windows: rows?.windows ?? [] });
  }

  /** Inserts the event and folds it into the scope's current state (same transaction). */
  private async append(
    tx: TxContext,
    event: ConsentEvent,
    key: SubjectKey,
    fingerprint: string,
    scopes: Map<string, ScopeState>,
  ): Promise<void> {
    // Counted before the encryption is made (AES-GCM's limit per key).
    if (hasEvidence(event.evidence)) await this.keys.reserveEncryptions(event.tenantId, event.subjectId, 1);
    const sealed = sealEvent(event, key, fingerprint);
    // The row is inserted under the audit head lock: event rows and their entries are in the same
    // order by construction, however concurrent writers of the tenant interleave (F3).
    await this.audit.appendAfter(tx, event.tenantId, async () => {
      await this.consent.insertEvent(tx, sealed);
      return {
      type: `CONSENT_EVENT_${event.kind}`,
      time: event.recordTime,
      principal: event.principal,
      subject: event.subjectId,
      purpose: event.purposeId,
      channel: event.channel,
      noticeSha256: event.notice?.textSha256,
      payloadSha256: sealed.evidenceCiphertext ? sha256Hex(sealed.evidenceCiphertext) : undefined,
      ref: event.id,
      eventTime: event.eventTime,
      expireTime: event.expireTime,
      recordSha256: eventRecordSha256(sealed),
      };
    });
    if (event.kind === 'INBOUND_MESSAGE') return;
    if (event.kind === 'OPT_OUT') {
      // Downstream senders drop cached permissions from the feed; same transaction as the event.
      await this.changes.append(tx, { tenantId: event.tenantId, kind: 'OPT_OUT', subjectId: event.subjectId, purposeId: event.purposeId, channel: event.channel, eventId: event.id, at: event.recordTime });
    }
    const scopeKey = `${event.purposeId}\u0000${event.channel}`;
    const before = scopes.get(scopeKey);
    const after = applyToScope(before ?? { purposeId: event.purposeId, channel: event.channel }, { ...event, kind: event.kind });
    if (after !== before) {
      await this.consent.saveScope(tx, event.tenantId, event.subjectId, after, before !== undefined);
      scopes.set(scopeKey, after);
    }
  }

  /** Restarts the channel's service window; returns the start of the (possibly unchanged) window. */
  private async updateWindow(tx: TxContext, tenantId: string, subjectId: string, windows: WindowState[], inbound: ConsentEvent): Promise<number> {
    // The windows were read with the scopes, under the subject lock: no second read.
    const before = windows.find((w) => w.channel === inbound.channel);
    const after = applyToWindow(before, inbound.channel, inbound.id, inbound.eventTime);
    if (after !== before) await this.consent.saveWindow(tx, tenantId, subjectId, after, before !== undefined);
    return after.lastInboundTime;
  }

  private checkEventTime(eventTime: number, now: number, violations: FieldViolation[]): void {
    if (eventTime > now + this.maxEventTimeSkewMs) {
      violations.push({ field: 'event_time', reason: 'IN_THE_FUTURE', description: 'must not be more than 5 minutes in the future' });
    }
    if (eventTime < Date.UTC(2000, 0, 1)) {
      violations.push({ field: 'event_time', reason: 'OUT_OF_RANGE', description: 'must not be before 2000-01-01' });
    }
  }

}

/**
 * When an opt-in without its own expire_time lapses: the purpose's validity if it has one, else
 * the tenant's default, each given either as a duration or in calendar months (validated to be
 * one or the other). Fixed when the opt-in is recorded, so a later policy change does not move it.
 */
function defaultExpiry(tenant: Tenant, purposeId: string, eventTime: number): number | undefined {
  const s = tenant.settings;
  const months = s.purposeConsentValidityMonths[purposeId];
  if (months > 0) return addCalendarMonths(eventTime, months);
  const ms = s.purposeConsentValidityMs[purposeId];
  if (ms > 0) return eventTime + ms;
  if (purposeId in s.purposeConsentValidityMs) return undefined; // 0 for this purpose: no expiry
  if (s.defaultConsentValidityMonths > 0) return addCalendarMonths(eventTime, s.defaultConsentValidityMonths);
  return s.defaultConsentValidityMs > 0 ? eventTime + s.defaultConsentValidityMs : undefined;
}

function newEventId(): string {
  return randomBytes(16).toString('hex');
}
