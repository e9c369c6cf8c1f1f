import { KeyManager } from '../crypto/key-manager';
import { DomainError, failedPrecondition, FieldViolation, invalidArgument } from '../shared/errors';
import { canonicalJson, sha256Hex } from '../shared/hashing';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { liveFacts } from './consent-checker';
import { ConsentRecorder } from './consent-recorder';
import { decide, ScopeState } from './consent-rules';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { ALL_PURPOSES, Channel, ConsentEvent, Evidence, IdentifierKind, LinkVerifiableKind, OptInKind, SendChannel } from './model';
import { ConsentRepository, IdentifierIndex, PurposeRepository, RequestKind, SubjectRef, SubjectRepository, SubjectStateRows } from './ports';
import { Principal } from './principal';
import { SelfServiceClaims, SelfServiceTokens } from './self-service-tokens';
import { SubjectDirectory } from './subject-directory';
import { SubjectRequestView, SubjectRightsService } from './subject-rights-service';
import { TenantService } from './tenant-service';

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
/** A preference link works 1 hour to 90 days (and at most the tenant's max_preference_link_ttl). */
export const MIN_LINK_TTL_MS = HOUR;
export const MAX_LINK_TTL_MS = 90 * DAY;
export const DEFAULT_LINK_TTL_MS = 30 * DAY;
/** Scopes one WithdrawWithLink may name. */
export const MAX_WITHDRAW_SCOPES = 100;
/** Tokens are a few hundred bytes; anything longer is not one of ours (and is not verified). */
const MAX_TOKEN_LENGTH = 4096;
/** The kinds a link may verify the person for (tenant setting `self_service.link_verifies`). */
export const LINK_REQUEST_KINDS: readonly LinkVerifiableKind[] = ['ACCESS', 'PORTABILITY', 'ERASURE'];
/**
 * The kinds the preference page offers, in the order it shows them: those, and the objection to
 * direct marketing, which needs no verification (Art. 21(3)-(5): honoured at once, by automated means).
 */
export const LINK_KINDS: readonly LinkRequestKind[] = [...LINK_REQUEST_KINDS, 'OBJECTION'];
export type LinkRequestKind = LinkVerifiableKind | 'OBJECTION';
const SEND_CHANNELS: readonly SendChannel[] = ['WHATSAPP', 'SMS', 'EMAIL', 'PUSH', 'VOICE'];
/** free_text of a withdrawal made on the page, unless the page gives its own. */
export const PREFERENCE_PAGE_PROVENANCE = 'preference page';

/** One purpose and channel as the preference page shows it. */
export interface PreferenceView {
  purposeId: string;
  purposeDisplayName: string;
  channel: Channel;
  granted: boolean;
  lastKind: OptInKind | 'OPT_OUT';
  eventTime: number;
  expireTime?: number;
  notice?: { purposeId: string; version: number; text: string };
}

export interface PreferencesView {
  tenantId: string;
  subjectId: string;
  identifierKind: IdentifierKind;
  preferences: PreferenceView[];
  /** linkVerifies of OBJECTION is always true: it needs no proof of identity. */
  requestOptions: Array<{ kind: LinkRequestKind; linkVerifies: boolean }>;
  openRequests: SubjectRequestView[];
  expireTime: number;
}

/**
 * The server side of preference links (issue 20, docs/privacy-center.md "Preference links"): a
 * tenant's system asks for a link for one person (CreatePreferenceLink); the privacy center, with
 * the person's token, shows what they agreed to (GetPreferences), withdraws it (WithdrawWithLink)
 * and files data-subject requests (CreateRequestWithLink). The token names the tenant and the
 * opaque subject, never an identifier; every use verifies it (signature, tenant, use, expiry)
 * and finds the person by subject id. Withdrawals go through the ConsentRecorder's write path and
 * requests through the SubjectRightsService, so audit log, change feed and caches follow as for
 * any other write.
 */
export class PreferenceLinks {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly subjects: SubjectRepository,
    private readonly consent: ConsentRepository,
    private readonly directory: SubjectDirectory,
    private readonly purposes: PurposeRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly tokens: SelfServiceTokens,
    private readonly recorder: ConsentRecorder,
    private readonly rights: SubjectRightsService,
    private readonly clock: Clock,
    /** PRIVACY_CENTER_PUBLIC_URL without a trailing slash; '' when unset. */
    private readonly publicUrl: string,
    /** Identity links (IdentityService): "withdraw everything" reaches the persons linked to the link's. */
    private readonly links?: { linkedSubjects(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<Array<{ subjectId: string }>> },
  ) {}

  /** CreatePreferenceLink: a signed link for the person `raw` names (role recorder). */
  async createLink(principal: Principal, tenantId: string, raw: RawIdentifier | undefined, ttlMs: number | undefined): Promise<{ token: string; link: string; expireTime: number }> {
    const violations: FieldViolation[] = [];
    const identifier = normaliseIdentifier(raw, 'subject_identifier');
    if (isViolation(identifier)) violations.push(identifier);
    if (ttlMs !== undefined && !(ttlMs >= MIN_LINK_TTL_MS && ttlMs <= MAX_LINK_TTL_MS)) {
      violations.push({ field: 'ttl', reason: 'OUT_OF_RANGE', description: '1 hour to 90 days (and at most the tenant\'s self_service.max_preference_link_ttl)' });
    }
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const { subjectId, maxTtl } = await this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const subject = await this.directory.find(tx, keyring, identifier);
      // Messages name no identifier (personal data), and an erased one names no subject either.
      if (!subject && (await this.directory.wasErased(tx, keyring, identifier))) {
        throw failedPrecondition('SUBJECT_ERASED', 'the person with this identifier was erased; nothing is kept under it');
      }
      if (!subject) throw new DomainError('NOT_FOUND', 'SUBJECT_NOT_FOUND', 'no subject with this identifier');
      return { subjectId: subject.subjectId, maxTtl: Math.min(MAX_LINK_TTL_MS, tenant.settings.selfService.maxPreferenceLinkTtlMs) };
    });
    if (ttlMs !== undefined && ttlMs > maxTtl) {
      throw invalidArgument([{ field: 'ttl', reason: 'OUT_OF_RANGE', description: `at most the tenant's self_service.max_preference_link_ttl (${Math.floor(maxTtl / 1000)} s)` }]);
    }
    const ttl = ttlMs ?? Math.min(DEFAULT_LINK_TTL_MS, maxTtl);
    const { token, claims } = await this.tokens.issue(tenantId, subjectId, 'preference-link', now, ttl);
    return { token, link: preferenceLink(this.publicUrl, tenantId, token), expireTime: claims.exp * 1000 };
  }

  /** GetPreferences: what the link's person agreed to, per purpose and channel (role self_service). */
  async preferences(principal: Principal, tenantId: string, token: string): Promise<PreferencesView> {
    const { claims, now } = await this.verify(principal, tenantId, token);
    return this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, false);
      const subject = await this.liveSubject(tx, tenantId, claims.sub);
      const identifiers = await this.consent.identifiersOf(tx, tenantId, subject.subjectId);
      const rows = (await this.consent.loadState(tx, tenantId, [subject.subjectId])).get(subject.subjectId) ?? { scopes: [], windows: [] };
      const facts = liveFacts(subject, rows);
      // The notice each opt-in named (a confirmation names none: the pending opt-in's counts).
      const events = await this.consent.eventsRecordedBy(tx, tenantId, subject.subjectId, Number.MAX_SAFE_INTEGER);
      const noticeOf = new Map<string, { purposeId: string; version: number }>();
      for (const e of events) if (e.notice && e.kind !== 'OPT_OUT' && e.kind !== 'INBOUND_MESSAGE') noticeOf.set(`${e.purposeId}\u0000${e.channel}`, e.notice);
      const general = rows.scopes.filter((s) => s.purposeId === ALL_PURPOSES);
      const preferences: PreferenceView[] = [];
      const scopes = rows.scopes.filter((s) => s.purposeId !== ALL_PURPOSES && s.optIn).sort((a, b) => a.purposeId.localeCompare(b.purposeId) || a.channel.localeCompare(b.channel));
      for (const scope of scopes) {
        const purpose = await this.purposes.find(tx, tenantId, scope.purposeId);
        if (!purpose) continue;
        // "granted" is what CheckConsent answers now, from the same rules and state.
        const channels = scope.channel === 'ANY' ? SEND_CHANNELS : [scope.channel as SendChannel];
        const granted = channels.some(
          (channel) => decide(facts, { purposeId: purpose.id, category: purpose.category, channel, allowedWhileRestricted: purpose.allowedWhileRestricted }, now, tenant.settings.serviceWindowMs).allow,
        );
        // Opt-outs covering this scope: all purposes (keyword STOP, "withdraw everything") and
        // this purpose on every channel (an objection's), as the rules read them.
        const covering = [...general, ...rows.scopes.filter((s) => s !== scope && s.purposeId === scope.purposeId && s.channel === 'ANY')];
        const last = lastAction(scope, covering);
        const noticeRef = noticeOf.get(`${scope.purposeId}\u0000${scope.channel}`);
        const notice = noticeRef ? await this.purposes.findNotice(tx, tenantId, noticeRef.purposeId, noticeRef.version) : null;
        preferences.push({
          purposeId: purpose.id,
          purposeDisplayName: purpose.displayName,
          channel: scope.channel,
          granted,
          lastKind: last.kind,
          eventTime: last.eventTime,
          expireTime: scope.optIn!.expireTime,
          notice: notice ? { purposeId: notice.purposeId, version: notice.version, text: notice.text } : undefined,
        });
      }
      const verifies = tenant.settings.selfService.linkVerifies;
      return {
        tenantId,
        subjectId: subject.subjectId,
        identifierKind: (identifiers[0]?.kind as IdentifierKind | undefined) ?? 'CUSTOMER_ID',
        preferences,
        requestOptions: LINK_KINDS.map((kind) => ({ kind, linkVerifies: kind === 'OBJECTION' || verifies.includes(kind) })),
        openRequests: await this.rights.openSelfServiceRequests(tx, tenantId, subject.subjectId),
        expireTime: claims.exp * 1000,
      };
    });
  }

  /**
   * WithdrawWithLink: OPT_OUT, method WEB_FORM, with the click's evidence. `all` records one
   * all-purpose opt-out on every channel (purpose "-", channel ANY): by the rules it denies every
   * purpose, category and channel of the person, and only a later opt-in the person gives again
   * lifts it. Its event time is now, or the latest opt-in's event time when one is later (an
   * opt-in recorded with a time ahead of the clock, within the allowed skew): opt-out wins ties,
   * so after `all` every check denies. A scope's opt-out is timed the same way against its
   * own opt-in.
   */
  async withdraw(
    principal: Principal,
    tenantId: string,
    input: { token: string; scopes: Array<{ purposeId: string; channel: Channel }>; all: boolean; evidence: Evidence; requestId: string; fingerprintSource: string },
  ): Promise<{ events: ConsentEvent[]; consistencyToken: string }> {
    const violations: FieldViolation[] = [];
    checkToken(input.token, violations);
    if (input.all && input.scopes.length > 0) violations.push({ field: 'scopes', reason: 'SCOPES_WITH_ALL', description: 'name scopes or set all, not both' });
    if (!input.all && input.scopes.length === 0) violations.push({ field: 'scopes', reason: 'REQUIRED', description: 'name the purposes and channels to withdraw, or set all' });
    if (input.scopes.length > MAX_WITHDRAW_SCOPES) violations.push({ field: 'scopes', reason: 'TOO_MANY', description: `at most ${MAX_WITHDRAW_SCOPES} scopes` });
    const seen = new Set<string>();
    input.scopes.forEach((s, i) => {
      const key = `${s.purposeId}\u0000${s.channel}`;
      if (seen.has(key)) violations.push({ field: `scopes[${i}]`, reason: 'DUPLICATE', description: 'the same purpose and channel twice' });
      seen.add(key);
    });
    if (violations.length > 0) throw invalidArgument(violations);
    const { claims, now } = await this.verify(principal, tenantId, input.token);
    const { subject, index, rows, linked } = await this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const subject = await this.liveSubject(tx, tenantId, claims.sub);
      // "Everything" is everything of the person: the identifiers a DPO linked to this one too
      // (as their requests and objections reach them), each withdrawn under its own subject.
      const linked: Array<{ subjectId: string; index: IdentifierIndex; rows: SubjectStateRows }> = [];
      if (input.all && this.links) {
        // More links than a request may follow (TOO_MANY_LINKS) must not stop the person's own withdrawal.
        const reached = await this.links.linkedSubjects(tx, tenantId, [subject.subjectId]).catch((err: unknown) => {
          if (err instanceof DomainError && err.reason === 'TOO_MANY_LINKS') return [];
          throw err;
        });
        for (const { subjectId } of reached) {
          const other = await this.subjects.find(tx, tenantId, subjectId);
          const first = other && !other.erased ? (await this.consent.identifiersOf(tx, tenantId, subjectId))[0] : undefined;
          if (!first) continue;
          linked.push({ subjectId, index: { kind: first.kind as IdentifierKind, blindIndex: first.blindIndex }, rows: (await this.consent.loadState(tx, tenantId, [subjectId])).get(subjectId) ?? { scopes: [], windows: [] } });
        }
      }
      return {
        subject,
        index: await this.indexOf(tx, tenantId, subject.subjectId),
        rows: (await this.consent.loadState(tx, tenantId, [subject.subjectId])).get(subject.subjectId) ?? { scopes: [], windows: [] },
        linked,
      };
    });
    const scopes = input.all ? [{ purposeId: ALL_PURPOSES, channel: 'ANY' as Channel }] : input.scopes;
    // Opt-out wins ties (consent-rules.ts): timed no earlier than any opt-in it must override.
    const timeFor = (state: SubjectStateRows) => {
      let eventTime = now;
      for (const s of state.scopes) {
        const covered = input.all || scopes.some((w) => w.purposeId === s.purposeId && (w.channel === 'ANY' || w.channel === s.channel));
        if (covered && s.optIn && s.optIn.eventTime > eventTime) eventTime = s.optIn.eventTime;
      }
      return eventTime;
    };
    const evidence: Evidence = { ...input.evidence, freeText: input.evidence.freeText || PREFERENCE_PAGE_PROVENANCE, collectedBy: undefined, inboundMessageId: undefined };
    const result = await this.recorder.withdrawForSubject(principal, {
      tenantId,
      subjectId: subject.subjectId,
      index,
      scopes,
      eventTime: timeFor(rows),
      evidence,
      requestId: input.requestId,
      // What the person asked for, not the token (a retry may come with a fresh link for the same person).
      fingerprintSource: canonicalJson({ v: 'withdraw-with-link/1', subject: subject.subjectId, scopes, all: input.all, evidence: input.fingerprintSource }),
    });
    const events = [...result.events];
    let consistencyToken = result.consistencyToken;
    for (const other of linked) {
      // Each linked person's withdrawal has a request id of its own, derived: a retry finds it.
      // One erased (or whose identifier moved) since it was read has nothing left to withdraw.
      const more = await this.recorder.withdrawForSubject(principal, {
        tenantId,
        subjectId: other.subjectId,
        index: other.index,
        scopes,
        eventTime: timeFor(other.rows),
        evidence,
        requestId: `wl-${sha256Hex(`${input.requestId}\u0000${other.subjectId}`).slice(0, 40)}`,
        fingerprintSource: canonicalJson({ v: 'withdraw-with-link-linked/1', subject: other.subjectId, via: subject.subjectId, scopes, evidence: input.fingerprintSource }),
      }).catch((err: unknown) => {
        if (err instanceof DomainError && err.reason === 'SUBJECT_ERASED') return null;
        throw err;
      });
      if (!more) continue;
      events.push(...more.events);
      // Later writes' tokens cover the earlier ones (log positions grow).
      consistencyToken = more.consistencyToken;
    }
    return { events, consistencyToken };
  }

  /** CreateRequestWithLink: a data-subject request of the link's person (see SubjectRightsService.createForSubject). */
  async createRequest(
    principal: Principal,
    tenantId: string,
    input: { token: string; kind: RequestKind | null; requestId: string; evidence: Evidence },
  ): Promise<{ request: SubjectRequestView; consistencyToken: string }> {
    const violations: FieldViolation[] = [];
    checkToken(input.token, violations);
    if (!input.kind || !(LINK_KINDS as readonly string[]).includes(input.kind)) {
      violations.push({ field: 'kind', reason: 'UNSUPPORTED_KIND', description: 'ACCESS, PORTABILITY, ERASURE or OBJECTION' });
    }
    if (violations.length > 0) throw invalidArgument(violations);
    const { claims } = await this.verify(principal, tenantId, input.token);
    const { subject, index, verifies } = await this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, false);
      const subject = await this.liveSubject(tx, tenantId, claims.sub);
      return { subject, index: await this.indexOf(tx, tenantId, subject.subjectId), verifies: tenant.settings.selfService.linkVerifies.includes(input.kind as LinkVerifiableKind) };
    });
    return this.rights.createForSubject(principal, tenantId, { kind: input.kind!, subjectId: subject.subjectId, index, linkId: claims.jti, linkVerifies: verifies, requestId: input.requestId });
  }

  /** The token's claims (INVALID_ARGUMENT TOKEN_INVALID, FAILED_PRECONDITION TOKEN_EXPIRED). */
  private async verify(principal: Principal, tenantId: string, token: string): Promise<{ claims: SelfServiceClaims; now: number }> {
    const violations: FieldViolation[] = [];
    checkToken(token, violations);
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    // The tenant first: an erased tenant (its keys destroyed) answers as such, not as a bad token.
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
    const now = this.clock.now();
    return { claims: await this.tokens.verify(tenantId, token, 'preference-link', now), now };
  }

  /** The token's subject, not erased (FAILED_PRECONDITION SUBJECT_ERASED). */
  private async liveSubject(tx: TxContext, tenantId: string, subjectId: string): Promise<SubjectRef> {
    const subject = await this.subjects.find(tx, tenantId, subjectId);
    // A verified token names a subject this tenant had: one gone entirely was erased (and purged).
    if (!subject || subject.erased) throw failedPrecondition('SUBJECT_ERASED', 'the person of this link was erased');
    return subject;
  }

  /** One of the person's identifiers as stored (kind and blind index): how writes and requests find them. */
  private async indexOf(tx: TxContext, tenantId: string, subjectId: string): Promise<IdentifierIndex> {
    const first = (await this.consent.identifiersOf(tx, tenantId, subjectId))[0];
    // Every identifier moved to others (rectified, reassigned): nothing reaches the person any more.
    if (!first) throw failedPrecondition('NO_IDENTIFIER', 'the identifier this link was made for belongs to someone else now (reassigned or corrected): nothing of the person can be changed through it; their data is kept and can be asked for through the business');
    return { kind: first.kind as IdentifierKind, blindIndex: first.blindIndex };
  }
}

/**
 * The link the privacy center serves: `{PRIVACY_CENTER_PUBLIC_URL}/t/{tenant}/preferences#token={token}`.
 * The token is in the fragment, which browsers never send to a server, so it reaches no access
 * log or Referer; without PRIVACY_CENTER_PUBLIC_URL the path alone (as for confirmation links).
 */
export function preferenceLink(publicUrl: string, tenantId: string, token: string): string {
  const path = `/t/${tenantId}/preferences#token=${token}`;
  return publicUrl ? `${publicUrl}${path}` : path;
}

function checkToken(token: string, violations: FieldViolation[]): void {
  if (!token) violations.push({ field: 'token', reason: 'REQUIRED', description: 'the token of the preference link' });
  else if (token.length > MAX_TOKEN_LENGTH) violations.push({ field: 'token', reason: 'TOKEN_INVALID', description: 'not a valid link of this tenant for this use' });
}

/** The latest of the scope's own events and the opt-outs of the covering scopes (all purposes, or the purpose on every channel). */
function lastAction(scope: ScopeState, covering: ScopeState[]): { kind: OptInKind | 'OPT_OUT'; eventTime: number } {
  let last: { kind: OptInKind | 'OPT_OUT'; eventTime: number } = { kind: scope.optIn!.kind, eventTime: scope.optIn!.eventTime };
  const outs = [scope.optOut, ...covering.filter((g) => g.channel === 'ANY' || g.channel === scope.channel).map((g) => g.optOut)];
  for (const out of outs) if (out && out.eventTime >= last.eventTime) last = { kind: 'OPT_OUT', eventTime: out.eventTime };
  return last;
}
