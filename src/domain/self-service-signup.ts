import { createHash } from 'node:crypto';
import { AuditTrail } from '../audit/audit-types';
import { decryptField, encryptField } from '../crypto/field-cipher';
import { KeyManager } from '../crypto/key-manager';
import { DomainError, failedPrecondition, FieldViolation, invalidArgument, Violations } from '../shared/errors';
import { canonicalJson } from '../shared/hashing';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { ConsentRecorder } from './consent-recorder';
import { newId } from './consent-writer';
import { prepareEvidence } from './evidence';
import { isViolation, mailboxOf, normaliseIdentifier, RawIdentifier } from './identifiers';
import { ConsentEvent, Evidence, IdentifierKind, SendChannel } from './model';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from './pagination';
import { ChangeFeedRepository, PurposeRepository, SubjectRepository } from './ports';
import { Principal } from './principal';
import { checkRequestId } from './request-id';
import { SelfServiceTokens } from './self-service-tokens';
import { TenantService } from './tenant-service';

/**
 * Sign-up with double opt-in on the privacy center (issue 20, docs/privacy-center.md "API").
 *
 * SignUp records OPT_IN_PENDING for every choice through the ordinary write path (ConsentRecorder:
 * group commit, audit log, change feed, decision cache) and keeps a confirmation row saying how the
 * person proves the identifier is theirs: a one-time code they send from the phone number (the
 * inbound message confirms, RecordInboundMessage), or a signed link mailed to the e-mail address
 * (ConfirmSignUp). A confirmation records OPT_IN_CONFIRMED for each pending scope, again through
 * the recorder, with request ids derived from the confirmation and the scope: two confirmations
 * racing for one sign-up record the events once (the second is the first's retry), and the row is
 * claimed by exactly one of them. Nothing here holds an identifier in clear.
 */

/** At most this many sign-ups per identifier (blind index) and SIGNUP_WINDOW_MS. */
export const MAX_SIGNUPS_PER_IDENTIFIER = 5;
export const SIGNUP_WINDOW_MS = 60 * 60 * 1000;
const MAX_CHOICES = 50;
/** Letters and digits nobody mixes up when reading or typing (no 0 O 1 I L): 31 symbols. */
const CODE_ALPHABET = '23456789ABCDEFGHJKMNPQRSTUVWXYZ';
/** A code as a person may type it back: two groups of four, with or without the dash. */
const CODE_IN_TEXT = /(?:^|[^A-Za-z0-9])([2-9A-HJ-KM-NP-Za-hj-km-np-z]{4})-?([2-9A-HJ-KM-NP-Za-hj-km-np-z]{4})(?=$|[^A-Za-z0-9])/g;
/** Codes looked for in one message (a message is at most 4 KiB; this bounds the lookups). */
const MAX_CODES_PER_MESSAGE = 4;
/** Audit entry of a new e-mail confirmation delivery: `ref` the delivery's name, no address. */
export const CONFIRMATION_REQUESTED = 'CONFIRMATION_REQUESTED';

export type ConfirmationMethod = 'INBOUND_CODE' | 'EMAIL_LINK';

/** One scope a sign-up left pending. */
export interface PendingScope {
  purposeId: string;
  channel: SendChannel;
  notice: { purposeId: string; version: number };
  /** The OPT_IN_PENDING event. */
  eventId: string;
}

export interface SignUpConfirmationRecord {
  id: string;
  tenantId: string;
  subjectId: string;
  identifierKind: IdentifierKind;
  blindIndex: string;
  /**
   * The blind index of the mailbox the confirmation goes to (an e-mail address without its
   * +tag; a phone number's own index): what the per-identifier limit counts, so that sub-addresses
   * of one mailbox share it. Null on rows made before migration 20 filled it.
   */
  mailboxIndex: string | null;
  method: ConfirmationMethod;
  /** SHA-256 (hex) of the normalised code (8 symbols, no dash); INBOUND_CODE only. */
  codeSha256: string | null;
  /** The confirmation token's jti; EMAIL_LINK only. */
  tokenJti: string | null;
  /** The channel the code must arrive on (WHATSAPP or SMS), EMAIL for links. */
  channel: SendChannel;
  language: string;
  scopes: PendingScope[];
  createdAt: number;
  expiresAt: number;
  confirmedAt: number | null;
  confirmedEventIds: string[] | null;
  /** What confirmed it: the inbound message's event id, or "link". */
  confirmedRef: string | null;
  requestId: string;
  fingerprint: string;
}

export interface ConfirmationDeliveryRecord {
  id: string;
  tenantId: string;
  subjectId: string;
  confirmationId: string;
  /** The e-mail address, encryptField under the subject key. */
  addressCiphertext: string;
  /** The confirmation link (it holds the token), encryptField under the subject key. */
  linkCiphertext: string;
  language: string;
  createdAt: number;
  expiresAt: number;
  acknowledgedAt: number | null;
}

/** What became of a mail the mailer leased (src/jobs/confirmation-mailer.ts). */
export type MailOutcome =
  | { kind: 'SENT'; at: number }
  | { kind: 'RETRY'; nextAttemptAt: number; error: string }
  | { kind: 'FAILED'; error: string }
  | { kind: 'RELEASED' };

export interface SignUpRepository {
  insertConfirmation(tx: TxContext, row: SignUpConfirmationRecord): Promise<void>;
  findByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<SignUpConfirmationRecord | null>;
  findByJti(tx: TxContext, tenantId: string, jti: string): Promise<SignUpConfirmationRecord | null>;
  /** Confirmations of the subject whose code hash is one of `codeHashes` (read only; confirm() locks the one it claims). */
  findByCodes(tx: TxContext, tenantId: string, subjectId: string, codeHashes: string[]): Promise<SignUpConfirmationRecord[]>;
  /** Locks the row and reads it as it is now. */
  lockConfirmation(tx: TxContext, tenantId: string, id: string): Promise<SignUpConfirmationRecord | null>;
  /** Creation times of the identifier's sign-ups since `since`, oldest first. */
  /** Creation times (ascending) of the sign-ups to one mailbox (mailbox index) since `since`. */
  createdSince(tx: TxContext, tenantId: string, mailboxIndex: string, since: number): Promise<number[]>;
  markConfirmed(tx: TxContext, tenantId: string, id: string, at: number, eventIds: string[], ref: string): Promise<void>;
  insertDelivery(tx: TxContext, row: ConfirmationDeliveryRecord): Promise<void>;
  deliveryOf(tx: TxContext, tenantId: string, confirmationId: string): Promise<ConfirmationDeliveryRecord | null>;
  /**
   * Not acknowledged, not expired at `now`, after (createdAt, id), oldest first; with
   * `mailFailedOnly`, only those the service's mailer gave up on (SMTP configured).
   */
  openDeliveries(tx: TxContext, tenantId: string, now: number, after: { createdAt: number; id: string } | null, limit: number, mailFailedOnly?: boolean): Promise<ConfirmationDeliveryRecord[]>;
  /** Ids of deliveries of all tenants the mailer may take at `now`, oldest first. */
  mailCandidates(tx: TxContext, now: number, limit: number): Promise<string[]>;
  /** Leases those of `ids` still mailable at `now` to `owner` until `until` (one attempt more); returns those `owner` now holds. */
  leaseForMail(tx: TxContext, ids: string[], owner: string, now: number, until: number): Promise<Array<{ delivery: ConfirmationDeliveryRecord; attempts: number }>>;
  /** Records the outcome of a leased delivery, ends the lease; false when `owner` no longer holds it. */
  finishMail(tx: TxContext, id: string, owner: string, outcome: MailOutcome): Promise<boolean>;
  /**
   * Marks the deliveries that expired unsent as such (mail_state EXPIRED), so that the mailer's
   * scan, which starts at the oldest open delivery, does not walk over them again; returns how many.
   */
  expireUnmailed(tx: TxContext, now: number): Promise<number>;
  /** Creation time of the oldest delivery the mailer has yet to send (not expired), or null. */
  oldestMailable(tx: TxContext, now: number): Promise<number | null>;
  /** Acknowledges those of `ids` still open at `now`; returns how many. */
  acknowledge(tx: TxContext, tenantId: string, ids: string[], now: number): Promise<number>;
  /**
   * The identifier no longer names the subject (rectified, reported reassigned): deliveries of the
   * subject's unconfirmed sign-ups with that identifier that are not yet handed out or sent are
   * made obsolete (neither listed nor mailed): the address is wrong, or someone else's now.
   */
  supersedeDeliveries(tx: TxContext, tenantId: string, subjectId: string, identifier: { kind: string; blindIndex: string }, at: number): Promise<void>;
  /** Deletes the subject's confirmations and deliveries (erasure); returns how many rows. */
  deleteOfSubject(tx: TxContext, tenantId: string, subjectId: string): Promise<number>;
}

export interface SignUpChoiceInput {
  purposeId: string;
  channel: SendChannel;
  notice: { purposeId: string; version: number };
}

export interface SignUpInput {
  identifier: RawIdentifier | undefined;
  choices: SignUpChoiceInput[];
  evidence: Evidence;
  language: string;
  requestId: string;
  /** The request as received, canonically serialised: tells a retry from a reused request_id. */
  fingerprintSource: string;
}

export interface SignUpResult {
  method: ConfirmationMethod;
  /** INBOUND_CODE: "K7Q2-MX4P" and the text that carries it. */
  code: string;
  text: string;
  expireTime: number;
}

export interface ConfirmationDeliveryView {
  id: string;
  tenantId: string;
  email: string;
  link: string;
  language: string;
  expireTime: number;
  createTime: number;
}

/** The pre-filled confirmation message, per page language ("{code}" is replaced). */
const CONFIRMATION_TEXTS: Record<string, string> = {
  en: 'Yes, I want to receive these messages. My confirmation code: {code}',
  de: 'Ja, ich möchte diese Nachrichten erhalten. Mein Bestätigungscode: {code}',
};

export class SelfServiceSignUp {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly repo: SignUpRepository,
    private readonly recorder: ConsentRecorder,
    private readonly subjects: SubjectRepository,
    private readonly purposes: PurposeRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly tokens: SelfServiceTokens,
    private readonly changes: ChangeFeedRepository,
    private readonly audit: AuditTrail,
    private readonly clock: Clock,
    private readonly pages: PageLimits,
    /** PRIVACY_CENTER_PUBLIC_URL without a trailing slash; '' when not configured. */
    private readonly publicUrl: string,
    /**
     * SMTP_URL is set: the service's mailer sends the deliveries, and ListConfirmationDeliveries
     * hands out only those it gave up on (a permanent refusal), so that no mail goes out twice.
     */
    private readonly mailerOwnsDeliveries = false,
  ) {}

  async signUp(principal: Principal, tenantId: string, input: SignUpInput): Promise<SignUpResult> {
    const v: FieldViolation[] = [];
    const identifier = normaliseIdentifier(input.identifier, 'subject_identifier');
    if (isViolation(identifier)) v.push(identifier);
    else if (identifier.kind !== 'PHONE' && identifier.kind !== 'EMAIL') {
      v.push({ field: 'subject_identifier', reason: 'IDENTIFIER_KIND_NOT_OFFERED', description: 'a phone number or an e-mail address' });
    }
    // A confirmation mail goes to this address: it must be one a mail can be sent to (no display
    // name, quotes or trailing dot), and its mailbox is what the limit below counts.
    const mailbox = !isViolation(identifier) && identifier.kind === 'EMAIL' ? mailboxOf(identifier.value) : null;
    if (!isViolation(identifier) && identifier.kind === 'EMAIL' && !mailbox) {
      v.push({ field: 'subject_identifier.email', reason: 'INVALID_EMAIL', description: 'is not an address a confirmation can be mailed to' });
    }
    if (input.choices.length < 1 || input.choices.length > MAX_CHOICES) {
      v.push({ field: 'choices', reason: input.choices.length ? 'TOO_MANY' : 'REQUIRED', description: `1-${MAX_CHOICES} choices` });
    }
    const seen = new Set<string>();
    input.choices.forEach((c, i) => {
      const key = `${c.purposeId}\u0000${c.channel}`;
      if (seen.has(key)) v.push({ field: `choices[${i}]`, reason: 'DUPLICATE_CHOICE', description: 'each purpose and channel once' });
      seen.add(key);
      if (c.notice.purposeId !== c.purposeId) v.push({ field: `choices[${i}].notice`, reason: 'NOTICE_OF_OTHER_PURPOSE', description: 'the notice belongs to another purpose' });
      if (!isViolation(identifier)) {
        const fits = identifier.kind === 'PHONE' ? c.channel === 'WHATSAPP' || c.channel === 'SMS' : identifier.kind === 'EMAIL' && c.channel === 'EMAIL';
        if (!fits) v.push({ field: `choices[${i}].channel`, reason: 'CHANNEL_MISMATCH', description: 'WHATSAPP or SMS for a phone number, EMAIL for an e-mail address' });
      }
    });
    if (!/^[a-z]{2}$/.test(input.language)) v.push({ field: 'language', reason: input.language ? 'INVALID_LANGUAGE' : 'REQUIRED', description: 'the page language, e.g. "de" or "en"' });
    checkRequestId(input.requestId, true, v);
    const evidence = prepareEvidence(input.evidence, 'evidence', v);
    if (v.length > 0 || isViolation(identifier)) throw invalidArgument(v);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const method: ConfirmationMethod = identifier.kind === 'PHONE' ? 'INBOUND_CODE' : 'EMAIL_LINK';

    // The tenant first (NOT_FOUND, TENANT_ERASED): an unknown tenant has no keys to ask for.
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, true));
    const keyring = await this.keys.tenantKeyring(tenantId);
    const fingerprint = this.keys.requestFingerprint(keyring, input.fingerprintSource);
    const blindIndex = this.keys.blindIndex(keyring, identifier);
    const mailboxIndex = mailbox && mailbox.mailbox !== identifier.value ? this.keys.blindIndex(keyring, { kind: 'EMAIL', value: mailbox.mailbox }) : blindIndex;
    const checked = await this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, false);
      const settings = tenant.settings.selfService;
      const replay = await this.repo.findByRequestId(tx, tenantId, input.requestId);
      if (replay) {
        if (replay.fingerprint !== fingerprint) throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: input.requestId });
        return { replay, settings };
      }
      if (!settings.languages.includes(input.language)) {
        throw invalidArgument([{ field: 'language', reason: 'LANGUAGE_NOT_OFFERED', description: `the tenant's pages are in ${settings.languages.join(', ')}` }]);
      }
      for (const [i, c] of input.choices.entries()) {
        if ((c.channel === 'WHATSAPP' && !settings.whatsappNumber) || (c.channel === 'SMS' && !settings.smsNumber)) {
          throw failedPrecondition('CHANNEL_NOT_OFFERED', `choices[${i}]: the tenant offers no ${c.channel} confirmation (self_service.${c.channel === 'SMS' ? 'sms' : 'whatsapp'}_number is not set)`);
        }
        if (!(await this.purposes.find(tx, tenantId, c.purposeId))) throw new DomainError('NOT_FOUND', 'PURPOSE_NOT_FOUND', `no purpose tenants/${tenantId}/purposes/${c.purposeId}`, { resource: `tenants/${tenantId}/purposes/${c.purposeId}` });
        const named = await this.purposes.findNotice(tx, tenantId, c.purposeId, c.notice.version);
        if (!named) throw new DomainError('NOT_FOUND', 'NOTICE_NOT_FOUND', `no notice tenants/${tenantId}/purposes/${c.purposeId}/notices/${c.notice.version}`, { resource: `tenants/${tenantId}/purposes/${c.purposeId}/notices/${c.notice.version}` });
        const current = await this.currentNotice(tx, tenantId, c.purposeId, input.language);
        if (current !== c.notice.version) {
          throw failedPrecondition('NOTICE_OUTDATED', `choices[${i}]: the purpose's current notice in "${input.language}" is ${current === null ? 'missing' : `version ${current}`}; reload the page`, {
            notice: current === null ? '' : `tenants/${tenantId}/purposes/${c.purposeId}/notices/${current}`,
          });
        }
      }
      const recent = await this.repo.createdSince(tx, tenantId, mailboxIndex, now - SIGNUP_WINDOW_MS);
      if (recent.length >= MAX_SIGNUPS_PER_IDENTIFIER) {
        const retryMs = recent[recent.length - MAX_SIGNUPS_PER_IDENTIFIER] + SIGNUP_WINDOW_MS - now;
        throw new DomainError('RESOURCE_EXHAUSTED', 'RATE_LIMITED', `at most ${MAX_SIGNUPS_PER_IDENTIFIER} sign-ups per identifier (an e-mail address's sub-addresses count as one) and hour`, {}, [], Math.max(1000, retryMs));
      }
      return { replay: null, settings };
    });
    const code = method === 'INBOUND_CODE' ? this.code(keyring, input.requestId) : '';
    const answer = (expireTime: number): SignUpResult => ({
      method,
      code: code ? `${code.slice(0, 4)}-${code.slice(4)}` : '',
      text: code ? (CONFIRMATION_TEXTS[input.language] ?? CONFIRMATION_TEXTS.en).replace('{code}', `${code.slice(0, 4)}-${code.slice(4)}`) : '',
      expireTime,
    });
    if (checked.replay) return answer(checked.replay.expiresAt);

    // The pending opt-ins, through the write path; retried, they are answered from the first call.
    // They lapse when the sign-up does: a confirmation after that confirms nothing by any path,
    // and the preference page shows them as not confirmed in time rather than as waiting.
    const offeredUntil = now + checked.settings.confirmationTtlMs;
    const base = `ss-${createHash('sha256').update(input.requestId).digest('hex').slice(0, 40)}`;
    const pending: ConsentEvent[] = [];
    for (const [i, c] of input.choices.entries()) {
      const { event } = await this.recorder.record(principal, {
        tenantId,
        identifier: input.identifier,
        purposeId: c.purposeId,
        channel: c.channel,
        kind: 'OPT_IN_PENDING',
        method: 'WEB_FORM',
        notice: c.notice,
        evidence,
        jurisdiction: '',
        requestId: `${base}:p${i}`,
        expireTime: offeredUntil,
        fingerprintSource: canonicalJson({ v: 'signup-pending/1', request: input.fingerprintSource, choice: i }),
      });
      pending.push(event);
    }
    const subjectId = pending[0].subjectId;
    // A retry whose first call recorded the pending opt-ins but not the sign-up's row replays
    // those events: the sign-up lapses when they do, not at this call's own later time.
    const expiresAt = Math.min(...pending.map((e) => e.expireTime ?? offeredUntil));
    const id = newId();
    const channel: SendChannel = method === 'EMAIL_LINK' ? 'EMAIL' : input.choices.some((c) => c.channel === 'WHATSAPP') ? 'WHATSAPP' : 'SMS';
    const issued = method === 'EMAIL_LINK' ? await this.tokens.issue(tenantId, subjectId, 'signup-confirmation', now, Math.max(1000, expiresAt - now)) : null;
    if (issued) await this.keys.reserveEncryptions(tenantId, subjectId, 2);
    const key = issued ? await this.keys.subjectKey(tenantId, subjectId) : null;

    const row: SignUpConfirmationRecord = {
      id,
      tenantId,
      subjectId,
      identifierKind: identifier.kind,
      blindIndex,
      mailboxIndex,
      method,
      codeSha256: code ? sha256(code) : null,
      tokenJti: issued ? issued.claims.jti : null,
      channel,
      language: input.language,
      scopes: input.choices.map((c, i) => ({ purposeId: c.purposeId, channel: c.channel, notice: c.notice, eventId: pending[i].id })),
      createdAt: now,
      expiresAt,
      confirmedAt: null,
      confirmedEventIds: null,
      confirmedRef: null,
      requestId: input.requestId,
      fingerprint,
    };
    const stored = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const locked = await this.subjects.lock(tx, tenantId, subjectId);
      if (!locked || locked.erased) throw failedPrecondition('SUBJECT_ERASED', 'the person was erased meanwhile');
      const concurrent = await this.repo.findByRequestId(tx, tenantId, input.requestId);
      if (concurrent) return concurrent;
      await this.repo.insertConfirmation(tx, row);
      if (issued && key) {
        const deliveryId = newId();
        const link = this.link(tenantId, issued.token);
        await this.repo.insertDelivery(tx, {
          id: deliveryId,
          tenantId,
          subjectId,
          confirmationId: id,
          addressCiphertext: encryptField(key.key, key.kid, deliveryContext(tenantId, subjectId, deliveryId, 'address_ciphertext'), identifier.value),
          linkCiphertext: encryptField(key.key, key.kid, deliveryContext(tenantId, subjectId, deliveryId, 'link_ciphertext'), link),
          language: input.language,
          createdAt: now,
          expiresAt,
          acknowledgedAt: null,
        });
        const name = confirmationDeliveryName(tenantId, deliveryId);
        const auditSeq = await this.audit.append(tx, tenantId, { type: CONFIRMATION_REQUESTED, time: now, principal: principal.id, subject: subjectId, ref: name });
        await this.changes.append(tx, [{ tenantId, kind: 'CONFIRMATION', subjectId, purposeId: null, channel: 'EMAIL', eventId: deliveryId, at: now, auditSeq }]);
      }
      return row;
    });
    return answer(stored.expiresAt);
  }

  /**
   * RecordInboundMessage's second step: when `text` holds the code of a pending, unexpired sign-up
   * of this subject and channel, its scopes are confirmed (OPT_IN_CONFIRMED, method CHAT_MESSAGE,
   * evidence the inbound message id). A code of another person, channel, an expired or used one
   * confirms nothing. The retry of the message that confirmed answers the same events.
   */
  async confirmByInbound(
    principal: Principal,
    tenantId: string,
    identifier: RawIdentifier | undefined,
    inbound: ConsentEvent,
    text: string,
  ): Promise<{ events: ConsentEvent[]; consistencyToken?: string }> {
    if (inbound.channel !== 'WHATSAPP' && inbound.channel !== 'SMS') return { events: [] };
    const hashes = codesIn(text).map(sha256);
    if (hashes.length === 0) return { events: [] };
    const now = this.clock.now();
    const rows = await this.tx.read((tx) => this.repo.findByCodes(tx, tenantId, inbound.subjectId, hashes));
    const events: ConsentEvent[] = [];
    let consistencyToken: string | undefined;
    for (const row of rows) {
      if (row.method !== 'INBOUND_CODE' || row.channel !== inbound.channel) continue;
      const retry = row.confirmedAt !== null && row.confirmedRef === inbound.id;
      if (!retry && (row.confirmedAt !== null || row.expiresAt <= now)) continue;
      const done = await this.confirm(principal, row, identifier, 'CHAT_MESSAGE', { inboundMessageId: inbound.evidence.inboundMessageId }, inbound.eventTime, inbound.id);
      events.push(...done.events);
      consistencyToken = done.consistencyToken ?? consistencyToken;
    }
    return { events, consistencyToken };
  }

  /** ConfirmSignUp: the e-mail link's click (see the proto). */
  async confirmByLink(principal: Principal, tenantId: string, token: string, rawEvidence: Evidence): Promise<{ events: ConsentEvent[]; consistencyToken?: string }> {
    const v: FieldViolation[] = [];
    if (!token) v.push({ field: 'token', reason: 'REQUIRED', description: 'the token of the confirmation link' });
    else if (token.length > 4096) v.push({ field: 'token', reason: 'TOKEN_INVALID', description: 'not a valid link of this tenant for this use' });
    const evidence = prepareEvidence(rawEvidence, 'evidence', v);
    if (v.length > 0) throw invalidArgument(v);
    authorizeTenant(principal, tenantId);
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
    const now = this.clock.now();
    const claims = await this.tokens.verify(tenantId, token, 'signup-confirmation', now);
    // A write unit for the subject's lock: an erasure that committed first is seen.
    const found = await this.tx.write(async (tx) => {
      const row = await this.repo.findByJti(tx, tenantId, claims.jti);
      const subject = await this.subjects.lock(tx, tenantId, claims.sub);
      return { row, erased: !subject || subject.erased, delivery: row ? await this.repo.deliveryOf(tx, tenantId, row.id) : null };
    });
    if (found.erased) throw failedPrecondition('SUBJECT_ERASED', 'the person who signed up was erased since');
    const row = found.row;
    if (!row || row.subjectId !== claims.sub || !found.delivery) throw invalidArgument([{ field: 'token', reason: 'TOKEN_INVALID', description: 'not a valid link of this tenant for this use' }]);
    if (row.confirmedAt !== null) throw used(row);
    const key = await this.keys.subjectKey(tenantId, row.subjectId);
    const email = decryptField(key.key, deliveryContext(tenantId, row.subjectId, found.delivery.id, 'address_ciphertext'), found.delivery.addressCiphertext);
    const done = await this.confirm(principal, row, { email }, 'WEB_FORM', evidence, now, 'link');
    if (!done.won) throw used(done.row);
    return { events: done.events, consistencyToken: done.consistencyToken };
  }

  /**
   * Records OPT_IN_CONFIRMED for each pending scope (request ids derived from the confirmation, so
   * racing confirmations record them once), then claims the row; `won` false when another
   * confirmation claimed it first. A scope no longer pending (withdrawn meanwhile) is skipped.
   */
  private async confirm(
    principal: Principal,
    row: SignUpConfirmationRecord,
    identifier: RawIdentifier | undefined,
    method: 'CHAT_MESSAGE' | 'WEB_FORM',
    evidence: Evidence,
    eventTime: number,
    ref: string,
  ): Promise<{ events: ConsentEvent[]; won: boolean; row: SignUpConfirmationRecord; consistencyToken?: string }> {
    const events: ConsentEvent[] = [];
    let consistencyToken: string | undefined;
    for (const [i, scope] of row.scopes.entries()) {
      try {
        const recorded = await this.recorder.record(principal, {
          tenantId: row.tenantId,
          identifier,
          purposeId: scope.purposeId,
          channel: scope.channel,
          kind: 'OPT_IN_CONFIRMED',
          eventTime: Math.min(eventTime, this.clock.now()),
          method,
          notice: scope.notice,
          evidence,
          jurisdiction: '',
          requestId: `ss-confirm:${row.id}:${i}`,
          fingerprintSource: canonicalJson({ v: 'signup-confirm/1', confirmation: row.id, scope: i }),
          // The person who signed up, not whoever holds the address now: an address reported
          // reassigned or rectified since confirms nothing for its new holder (Art. 7(1)).
          subjectId: row.subjectId,
        });
        // Each later write's token covers the earlier ones (log positions grow).
        consistencyToken = recorded.consistencyToken;
        if (recorded.event.subjectId === row.subjectId) events.push(recorded.event);
      } catch (err) {
        if (err instanceof DomainError && (err.reason === 'NO_PENDING_OPT_IN' || err.reason === 'BEFORE_PENDING_OPT_IN' || err.reason === 'PENDING_OPT_IN_WITHDRAWN' || err.reason === 'PENDING_OPT_IN_EXPIRED')) continue;
        if (err instanceof DomainError && err.reason === 'SUBJECT_ERASED' && events.length === 0) {
          // The writer says the address no longer names the signer: erased meanwhile, or moved on.
          const person = await this.tx.read((tx) => this.subjects.find(tx, row.tenantId, row.subjectId));
          if (!person || person.erased) throw failedPrecondition('SUBJECT_ERASED', 'the person who signed up was erased since');
          throw failedPrecondition('SIGNUP_SUPERSEDED', 'the address of this sign-up no longer belongs to the person who signed up (corrected or reassigned since): nothing was confirmed');
        }
        throw err;
      }
    }
    return this.tx.write(async (tx) => {
      const current = await this.repo.lockConfirmation(tx, row.tenantId, row.id);
      if (!current) throw failedPrecondition('SUBJECT_ERASED', 'the person who signed up was erased since');
      if (current.confirmedAt !== null) return { events: current.confirmedRef === ref ? events : [], won: current.confirmedRef === ref && ref !== 'link', row: current, consistencyToken };
      const at = this.clock.now();
      await this.repo.markConfirmed(tx, row.tenantId, row.id, at, events.map((e) => e.id), ref);
      return { events, won: true, row: { ...current, confirmedAt: at, confirmedEventIds: events.map((e) => e.id), confirmedRef: ref }, consistencyToken };
    });
  }

  /** A page of the tenant's open e-mail confirmations, oldest first, with address and link decrypted. */
  async listDeliveries(principal: Principal, tenantId: string, pageSize: number, pageToken: string): Promise<{ items: ConfirmationDeliveryView[]; nextPageToken: string }> {
    const v = new Violations();
    const size = resolvePageSize(pageSize, this.pages, v);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const page = await this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'confirmation_deliveries');
      const after = decodePageToken<string>(pageToken, {}, 'string', sealer, v);
      v.throwIfAny();
      const cursor = after ? { createdAt: Number(after.split(':')[0]), id: after.split(':')[1] } : null;
      const rows = await this.repo.openDeliveries(tx, tenantId, now, cursor, size + 1, this.mailerOwnsDeliveries);
      const items = rows.slice(0, size);
      const last = items[items.length - 1];
      return { items, nextPageToken: rows.length > size ? encodePageToken(`${last.createdAt}:${last.id}`, {}, sealer) : '' };
    });
    const items: ConfirmationDeliveryView[] = [];
    for (const d of page.items) items.push(await openDelivery(this.keys, d, this.publicUrl));
    return { items, nextPageToken: page.nextPageToken };
  }

  /** Marks deliveries as handed to the mail system; returns how many were still open. */
  async acknowledgeDeliveries(principal: Principal, tenantId: string, ids: string[]): Promise<number> {
    if (ids.length < 1 || ids.length > 500) throw invalidArgument([{ field: 'names', reason: ids.length ? 'TOO_MANY' : 'REQUIRED', description: '1-500 delivery names' }]);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      return this.repo.acknowledge(tx, tenantId, [...new Set(ids)], now);
    });
  }

  /** The purpose's newest notice version in `language`, or null. */
  private async currentNotice(tx: TxContext, tenantId: string, purposeId: string, language: string): Promise<number | null> {
    let before: number | null = null;
    for (;;) {
      const notices = await this.purposes.listNotices(tx, tenantId, purposeId, before, 100);
      for (const n of notices) if (n.language === language) return n.version;
      if (notices.length < 100) return null;
      before = notices[notices.length - 1].version;
    }
  }

  /**
   * The one-time code of a sign-up: 8 symbols of CODE_ALPHABET, at least one a digit (about 39 bits), derived from the
   * request_id under the tenant's request key (HMAC), so a retry of the sign-up answers the same
   * code without the code being stored anywhere; nobody without the key can predict it.
   */
  private code(keyring: Awaited<ReturnType<KeyManager['tenantKeyring']>>, requestId: string): string {
    const hex = this.keys.requestFingerprint(keyring, `signup-code/1\u0000${requestId}`);
    let value = BigInt(`0x${hex.slice(0, 24)}`);
    let out = '';
    for (let i = 0; i < 8; i++) {
      out += CODE_ALPHABET[Number(value % BigInt(CODE_ALPHABET.length))];
      value /= BigInt(CODE_ALPHABET.length);
    }
    // At least one digit, so that a word of a message ("MESSAGES") is never taken for a code.
    if (!/[2-9]/.test(out)) out = `${out.slice(0, 3)}${'23456789'[Number(value % 8n)]}${out.slice(4)}`;
    return out;
  }

  private link(tenantId: string, token: string): string {
    // The token in the fragment: browsers do not send it to servers, so it stays out of access logs.
    const fragment = `/t/${tenantId}/confirm#token=${token}`;
    return this.publicUrl ? `${this.publicUrl}${fragment}` : fragment;
  }
}

/** The codes a message may hold, normalised (upper case, no dash). */
export function codesIn(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(CODE_IN_TEXT)) {
    const code = `${m[1]}${m[2]}`.toUpperCase();
    // Every code holds a digit (see SelfServiceSignUp.code): words of the message are no candidates.
    if (!/[2-9]/.test(code)) continue;
    out.add(code);
    if (out.size >= MAX_CODES_PER_MESSAGE) break;
  }
  return [...out];
}

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function used(row: SignUpConfirmationRecord): DomainError {
  const at = new Date(row.confirmedAt ?? 0).toISOString();
  return failedPrecondition('TOKEN_USED', `the link was used already; the sign-up was confirmed at ${at}`, { confirm_time: at });
}

export function confirmationDeliveryName(tenantId: string, id: string): string {
  return `tenants/${tenantId}/confirmationDeliveries/${id}`;
}

/**
 * A delivery with its address and link decrypted under the subject key: what
 * ListConfirmationDeliveries answers and what the service's mailer sends. A link stored as a bare
 * path (made before PRIVACY_CENTER_PUBLIC_URL was set) gets today's `publicUrl` in front.
 */
export async function openDelivery(keys: KeyManager, d: ConfirmationDeliveryRecord, publicUrl: string): Promise<ConfirmationDeliveryView> {
  const key = await keys.subjectKey(d.tenantId, d.subjectId);
  const link = decryptField(key.key, deliveryContext(d.tenantId, d.subjectId, d.id, 'link_ciphertext'), d.linkCiphertext);
  return {
    id: d.id,
    tenantId: d.tenantId,
    email: decryptField(key.key, deliveryContext(d.tenantId, d.subjectId, d.id, 'address_ciphertext'), d.addressCiphertext),
    link: link.startsWith('/') && publicUrl ? `${publicUrl}${link}` : link,
    language: d.language,
    expireTime: d.expiresAt,
    createTime: d.createdAt,
  };
}

function deliveryContext(tenantId: string, subjectId: string, id: string, column: string) {
  return { tenant: tenantId, subject: subjectId, table: 'confirmation_deliveries', column, row: id };
}
