import { randomBytes } from 'node:crypto';
import { decryptField, encryptField } from '../crypto/field-cipher';
import { KeyManager, SubjectKey } from '../crypto/key-manager';
import { AuditTrail } from '../audit/audit-types';
import { DomainError, failedPrecondition, FieldViolation, invalidArgument, notFound, Violations } from '../shared/errors';
import { sha256Hex } from '../shared/hashing';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { newId } from './consent-writer';
import { ObjectionRecorder } from './objection';
import { placeRestriction } from './restriction-placement';
import { encodeConsistencyToken } from './consistency';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { IdentifierKind, IdentifierRef } from './model';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from './pagination';
import { ChangeFeedRepository, IdentifierIndex, NewestFirstCursor, RestrictionRecord, restrictionName, SubjectRepository, SubjectRequestRecord, SubjectRightsRepository } from './ports';
import { Principal } from './principal';
import { Page } from './purpose-service';
import { checkRequestId } from './request-id';
import { names } from './resource-names';
import { TenantService } from './tenant-service';
import { characterCount } from '../shared/text';

/** Audit entry types: one entry per linked subject, `ref` the link's name, no personal data. */
export const IDENTITIES_LINKED = 'IDENTITIES_LINKED';
export const IDENTITIES_UNLINKED = 'IDENTITIES_UNLINKED';

/**
 * How many other subjects one person's identifiers may reach through links. A request or an
 * objection by one identifier is carried out for each of them, in one transaction: the bound
 * keeps that transaction small. Beyond it: FAILED_PRECONDITION TOO_MANY_LINKS.
 */
export const MAX_LINKED_SUBJECTS = 100;

/** A link as stored: subjects and identifier kinds and blind indexes; the evidence encrypted under subject A's key. */
export interface IdentityLinkRecord {
  id: string;
  tenantId: string;
  subjectA: string;
  kindA: IdentifierKind;
  blindIndexA: string;
  subjectB: string;
  kindB: IdentifierKind;
  blindIndexB: string;
  /** encryptField of JSON {method, verifiedBy, request} under subject A's key. */
  evidenceCiphertext: string;
  linkedBy: string;
  linkedAt: number;
  unlinkedBy: string | null;
  unlinkedAt: number | null;
  unlinkReason: string | null;
  /** The caller's idempotency key, unique per tenant. */
  requestId: string;
  /** Keyed fingerprint of the request's body: the same request_id with another body is refused. */
  fingerprint: string;
}

/** A link with its evidence decrypted (for the DPO and the auditor: no identifier value is in it). */
export interface IdentityLinkView extends IdentityLinkRecord {
  method: string;
  verifiedBy: string;
  /** The verified data-subject request's id, when one was the person's verified path. */
  request: string | null;
}

/** One subject reached through links: by which link, from which subject. */
export interface LinkedSubject {
  subjectId: string;
  /** The link's name, "tenants/{tenant}/identityLinks/{id}". */
  viaLink: string;
  /** The subject id it was reached from. */
  from: string;
}

export interface IdentityLinkRepository {
  insert(tx: TxContext, link: IdentityLinkRecord): Promise<void>;
  find(tx: TxContext, tenantId: string, id: string): Promise<IdentityLinkRecord | null>;
  findByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<IdentityLinkRecord | null>;
  update(tx: TxContext, tenantId: string, id: string, change: Partial<IdentityLinkRecord>): Promise<void>;
  /** The open links with one end among `subjectIds`, in id order. */
  openLinksOf(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<IdentityLinkRecord[]>;
  /** Newest link first, of one subject when given. */
  list(tx: TxContext, tenantId: string, filter: { subjectId?: string; includeUnlinked: boolean }, after: NewestFirstCursor | null, limit: number): Promise<IdentityLinkRecord[]>;
  /** Deletes every link (open or closed) of the subject; returns how many. Part of its erasure. */
  deleteOfSubject(tx: TxContext, tenantId: string, subjectId: string): Promise<number>;
}

export function identityLinkName(tenantId: string, id: string): string {
  return `tenants/${tenantId}/identityLinks/${id}`;
}

const METHOD = /^[A-Za-z0-9_.:-]{1,64}$/;
const REQUEST_NAME = /^tenants\/([^/]+)\/requests\/([0-9a-f]{32})$/;
const MAX_TEXT = 1000;
/** States of a request whose requester's identity was verified. */
const VERIFIED_STATES = ['VERIFIED', 'IN_PROGRESS', 'COMPLETED'];

/** One side of a link, found (or made, key first) before the link's transaction. */
interface PreparedSide {
  identifier: IdentifierRef;
  index: IdentifierIndex;
  /** The subject found for the identifier when prepared. */
  subjectId?: string;
  /** For an identifier the tenant has no subject for: the new subject's id and key. */
  newSubject?: { id: string; key: SubjectKey };
}

/**
 * Linked identities (issue 18, point 2): two identifiers linked as one person, with evidence.
 * A link is a fact about people, not a consent: consent checks never read it, so a link never
 * widens consent (an opt-in for the phone number allows nothing for the linked e-mail address).
 * Data-subject requests and objections follow links through `linkedSubjects`. Links go with
 * either person's erasure (SubjectEraser deletes them in the erasure's transaction).
 */
export class IdentityLinks {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly repo: IdentityLinkRepository,
    private readonly subjects: SubjectRepository,
    private readonly requests: SubjectRightsRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly pages: PageLimits,
    private readonly audit: AuditTrail,
    /** Carries a standing objection over to the subjects a link joins to the person. */
    private readonly objections: ObjectionRecorder,
    /** Where a restriction carried over is announced (CHANGE_KIND_RESTRICTED). */
    private readonly changes: ChangeFeedRepository,
  ) {}

  /**
   * Told, before a link is answered, about the subjects it made (`created`) and those whose
   * checks it changed by carrying an objection or a restriction over (`carried`): the decision
   * cache forgets them.
   */
  observer?: (tenantId: string, changed: { created: string[]; carried: string[] }, logSize: number) => void;

  /**
   * The subjects reachable from `subjectIds` over open links (transitively), without the given
   * ones, each with the link it was reached by and the subject it was reached from; breadth
   * first, in link id order, so the answer is the same for the same links. More than
   * MAX_LINKED_SUBJECTS: FAILED_PRECONDITION TOO_MANY_LINKS. Reads in `tx` (the caller's unit).
   */
  async linkedSubjects(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<LinkedSubject[]> {
    const seen = new Set(subjectIds);
    const found: LinkedSubject[] = [];
    let frontier = [...seen];
    while (frontier.length > 0) {
      const next: string[] = [];
      const reached = new Set(frontier);
      for (const link of await this.repo.openLinksOf(tx, tenantId, frontier)) {
        for (const [from, to] of [
          [link.subjectA, link.subjectB],
          [link.subjectB, link.subjectA],
        ]) {
          if (!reached.has(from) || seen.has(to)) continue;
          seen.add(to);
          next.push(to);
          found.push({ subjectId: to, viaLink: identityLinkName(tenantId, link.id), from });
          if (found.length > MAX_LINKED_SUBJECTS) {
            throw failedPrecondition('TOO_MANY_LINKS', `the person's identifiers are linked to more than ${MAX_LINKED_SUBJECTS} others; unlink some first`);
          }
        }
      }
      frontier = next;
    }
    return found;
  }

  /** Whether the link named `linkName` (of `tenantId`) was undone by UnlinkIdentifiers; a link deleted with an erased person is not found, so false. */
  async wasUnlinked(tx: TxContext, tenantId: string, linkName: string): Promise<boolean> {
    const prefix = identityLinkName(tenantId, '');
    if (!linkName.startsWith(prefix)) return false;
    const link = await this.repo.find(tx, tenantId, linkName.slice(prefix.length));
    return link !== null && link.unlinkedAt !== null;
  }

  /**
   * Links two identifiers as one person (see the class). An identifier the tenant has no subject
   * for becomes a subject (its key made first, outside the transaction), so the link holds for
   * later requests. Both subjects are locked (as every writer of them does), so an erasure
   * that commits first is seen: an erased identifier is FAILED_PRECONDITION SUBJECT_ERASED.
   * A retry with the same request_id answers the link made first.
   */
  async link(
    principal: Principal,
    tenantId: string,
    input: { first: RawIdentifier | undefined; second: RawIdentifier | undefined; method: string; verifiedBy: string; request: string; requestId: string },
  ): Promise<{ link: IdentityLinkView; consistencyToken: string }> {
    const violations: FieldViolation[] = [];
    const first = normaliseIdentifier(input.first, 'first');
    const second = normaliseIdentifier(input.second, 'second');
    if (isViolation(first)) violations.push(first);
    if (isViolation(second)) violations.push(second);
    if (!isViolation(first) && !isViolation(second) && first.kind === second.kind && first.value === second.value) {
      violations.push({ field: 'second', reason: 'SAME_IDENTIFIER', description: 'must be another identifier than first' });
    }
    const viaRequest = input.request !== '';
    let requestId: string | null = null;
    if (viaRequest) {
      const m = REQUEST_NAME.exec(input.request);
      if (!m) violations.push({ field: 'request', reason: 'INVALID_NAME', description: 'must be "tenants/{tenant}/requests/{request}"' });
      else if (m[1] !== tenantId) violations.push({ field: 'request', reason: 'OTHER_TENANT', description: 'must be a request of the parent tenant' });
      else requestId = m[2];
    }
    // With a verified request, method and verifier may be left empty (the request's are taken).
    if (!viaRequest || input.method !== '') {
      if (!METHOD.test(input.method)) violations.push({ field: 'method', reason: input.method ? 'INVALID_METHOD' : 'REQUIRED', description: '1-64 characters of A-Z a-z 0-9 _ . : -, e.g. ID_DOCUMENT' });
    }
    if (!viaRequest || input.verifiedBy !== '') {
      if (input.verifiedBy.trim().length === 0 || characterCount(input.verifiedBy) > 128) violations.push({ field: 'verified_by', reason: 'REQUIRED', description: 'a staff reference of 1-128 characters' });
    }
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0 || isViolation(first) || isViolation(second)) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const canonical = JSON.stringify(['link/v1', first.kind, first.value, second.kind, second.value, input.method, input.verifiedBy, input.request]);

    // Keys before data: the subjects are looked up, and keys made for new ones, outside the transaction.
    const prepared = await this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenantId);
      if (await this.repo.findByRequestId(tx, tenantId, input.requestId)) return null;
      const sides = [first, second].map((identifier) => ({ identifier, index: { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) } }));
      if (requestId) await this.verifiedRequest(tx, tenantId, requestId, sides.map((s) => s.index));
      const out: PreparedSide[] = [];
      for (const side of sides) {
        const found = await this.subjects.findByIdentifier(tx, tenantId, side.index);
        if (found?.erased || (!found && (await this.subjects.findSuppressed(tx, tenantId, [side.index])).size > 0)) throw erased();
        out.push(found ? { ...side, subjectId: found.subjectId } : { ...side, newSubject: { id: newId(), key: null as unknown as SubjectKey } });
      }
      return { sides: out };
    });
    if (prepared) {
      // The evidence is encrypted under the first person's key: counted against it first, like
      // every encryption (a new person's key counts its identifier and the evidence).
      const fresh = prepared.sides.filter((s) => s.newSubject);
      if (fresh.length > 0) {
        const made = await this.keys.createSubjectKeys(tenantId, fresh.map((s) => ({ subjectId: s.newSubject!.id, use: s === prepared.sides[0] ? 2 : 1 })), now);
        for (const side of fresh) side.newSubject!.key = made.get(side.newSubject!.id)!;
      }
      if (prepared.sides[0].subjectId) await this.keys.reserveEncryptions(tenantId, prepared.sides[0].subjectId, 1);
    }

    const done = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const fingerprint = this.keys.requestFingerprint(keyring, canonical);
      const replay = await this.repo.findByRequestId(tx, tenantId, input.requestId);
      if (replay) {
        if (replay.fingerprint !== fingerprint) throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: input.requestId });
        return { link: replay, created: [] as string[], carried: [] as string[], logSize: null };
      }
      // Registered concurrently by a retry that was not visible when prepared: prepare again.
      if (!prepared) throw new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the link was made concurrently; retry');
      const indexes = prepared.sides.map((s) => s.index);
      const request = requestId ? await this.verifiedRequest(tx, tenantId, requestId, indexes) : null;
      const ids: string[] = [];
      const created: string[] = [];
      const newKeys = new Map<string, SubjectKey>();
      for (const side of prepared.sides) {
        const found = await this.subjects.findByIdentifier(tx, tenantId, side.index);
        if (found) {
          ids.push(found.subjectId);
          continue;
        }
        if ((await this.subjects.findSuppressed(tx, tenantId, [side.index])).size > 0) throw erased();
        // Erased meanwhile and recorded again, or not known when prepared: prepare again.
        if (!side.newSubject) throw new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the identifier changed meanwhile; retry');
        const { id, key } = side.newSubject;
        await this.subjects.insertMany(
          tx,
          [{ id, tenantId, createdAt: now }],
          [
            {
              ...side.index,
              tenantId,
              subjectId: id,
              createdAt: now,
              valueCiphertext: encryptField(key.key, key.kid, { tenant: tenantId, subject: id, table: 'subject_identifiers', column: 'value_ciphertext', row: `${side.index.kind}:${side.index.blindIndex}` }, side.identifier.value),
            },
          ],
        );
        ids.push(id);
        created.push(id);
        newKeys.set(id, key);
      }
      const [a, b] = ids;
      const locked = await this.subjects.lockMany(tx, tenantId, [a, b]);
      if (!locked.get(a) || locked.get(a)!.erased || !locked.get(b) || locked.get(b)!.erased) throw erased();
      if (a === b) throw failedPrecondition('ALREADY_LINKED', 'both identifiers name one subject already');
      const direct = (await this.repo.openLinksOf(tx, tenantId, [a])).find((l) => l.subjectA === b || l.subjectB === b);
      if (direct) throw failedPrecondition('ALREADY_LINKED', `the open link ${identityLinkName(tenantId, direct.id)} joins the two already`, { link: identityLinkName(tenantId, direct.id) });
      // The person after the link: from either end, at most MAX_LINKED_SUBJECTS others.
      const group = await this.linkedSubjects(tx, tenantId, [a, b]);
      if (group.length + 1 > MAX_LINKED_SUBJECTS) throw failedPrecondition('TOO_MANY_LINKS', `the person's identifiers would be linked to more than ${MAX_LINKED_SUBJECTS} others`);

      const evidence = {
        method: input.method || request!.verificationMethod!,
        verifiedBy: input.verifiedBy || request!.verifiedBy!,
        request: request ? request.id : null,
      };
      const id = randomBytes(16).toString('hex');
      const key = newKeys.get(a) ?? (await this.keys.subjectKey(tenantId, a));
      const link: IdentityLinkRecord = {
        id,
        tenantId,
        subjectA: a,
        kindA: first.kind,
        blindIndexA: indexes[0].blindIndex,
        subjectB: b,
        kindB: second.kind,
        blindIndexB: indexes[1].blindIndex,
        evidenceCiphertext: encryptField(key.key, key.kid, evidenceContext(tenantId, a, id), JSON.stringify(evidence)),
        linkedBy: principal.id,
        linkedAt: now,
        unlinkedBy: null,
        unlinkedAt: null,
        unlinkReason: null,
        requestId: input.requestId,
        fingerprint,
      };
      await this.repo.insert(tx, link);
      const name = identityLinkName(tenantId, id);
      for (const subject of [a, b]) {
        await this.audit.append(tx, tenantId, { type: IDENTITIES_LINKED, time: now, principal: principal.id, subject, ref: name, payloadSha256: sha256Hex(link.evidenceCiphertext) });
      }
      const members = [a, b, ...group.map((g) => g.subjectId)];
      const objected = await this.carryObjection(tx, tenantId, members, newKeys, { id, name, principal: principal.id, now, side: { identifier: first, index: indexes[0] } });
      const restricted = await this.carryRestrictions(tx, tenantId, members, { name, principal: principal.id, now });
      return { link, created, carried: [...new Set([...objected, ...restricted])], logSize: await this.audit.committedSize(tx, tenantId) };
    });
    if (done.logSize !== null && done.created.length + done.carried.length > 0) this.observer?.(tenantId, { created: done.created, carried: done.carried }, done.logSize);
    // A retry's token covers the first call too: the log's size now is past it.
    const position = done.logSize ?? (await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
    return { link: await this.view(done.link), consistencyToken: encodeConsistencyToken(tenantId, position) };
  }

  /**
   * An objection by any of a person's identifiers reaches all of them (Art. 21(3)): when one of
   * the subjects the link joins has a standing objection, it is applied to each of the others
   * that has none, or an earlier one it consented to marketing after, under their locks (ObjectionRecorder.apply: an OPT_OUT on every channel for
   * every MARKETING purpose, the standing objection, a SUBJECT_OBJECTED entry whose `ref` is the
   * link: its provenance). Returns the subjects it was applied to.
   */
  private async carryObjection(
    tx: TxContext,
    tenantId: string,
    members: string[],
    newKeys: Map<string, SubjectKey>,
    link: { id: string; name: string; principal: string; now: number; side: { identifier: IdentifierRef; index: IdentifierIndex } },
  ): Promise<string[]> {
    const states = await this.subjects.lockMany(tx, tenantId, members);
    // The latest standing objection of the joined subjects reaches every other one that has none,
    // and one that objected earlier and consented to marketing again since: its own objection no
    // longer covers that consent, the person's later one does.
    let latest: number | undefined;
    for (const s of states.values()) if (!s.erased && s.objectedAt !== undefined && (latest === undefined || s.objectedAt > latest)) latest = s.objectedAt;
    if (latest === undefined) return [];
    const objected: string[] = [];
    for (const subjectId of members) {
      const state = states.get(subjectId);
      if (!state || state.erased) continue;
      if (state.objectedAt !== undefined && (state.objectedAt >= latest || !(await this.objections.consentedToMarketingSince(tx, tenantId, subjectId, state.objectedAt)))) continue;
      const key = newKeys.get(subjectId) ?? (await this.keys.subjectKey(tenantId, subjectId));
      // The subject exists: apply() reads neither the identifier nor its index then.
      const prepared = { tenantId, identifier: link.side.identifier, index: link.side.index, subjectId, key, erased: false };
      const applied = await this.objections.apply(tx, prepared, { id: `${link.id}:${subjectId}`, principal: link.principal, now: link.now, ref: link.name });
      if (applied.subjectId) objected.push(applied.subjectId);
    }
    return objected;
  }

  /**
   * A restriction of processing in force on any of a person's identifiers covers all of them
   * (Art. 18: it is the person's). For each RESTRICTION request with a restriction in force on one
   * of the subjects the link joins, every other one that never had a restriction of that request gets its
   * own (same ground; placed by the linking principal now; its note names where it came from), with
   * a RESTRICTION_PLACED entry and a CHANGE_KIND_RESTRICTED change, as if the request had named it:
   * it is told to the person and lifted like the others (Art. 18(3)). Returns the subjects restricted.
   */
  private async carryRestrictions(tx: TxContext, tenantId: string, members: string[], link: { name: string; principal: string; now: number }): Promise<string[]> {
    const states = await this.subjects.lockMany(tx, tenantId, members);
    const held = new Map<string, RestrictionRecord[]>();
    for (const subjectId of members) held.set(subjectId, await this.requests.listRestrictions(tx, tenantId, { subjectId, includeLifted: true }, null, 1000));
    const byRequest = new Map<string, RestrictionRecord>();
    for (const list of held.values()) for (const r of list) if (r.liftedAt === null && !byRequest.has(r.requestId)) byRequest.set(r.requestId, r);
    const restricted = new Set<string>();
    for (const [requestId, source] of byRequest) {
      for (const subjectId of members) {
        const state = states.get(subjectId);
        // A subject with a restriction of this request already, in force or lifted (after its own
        // notice, by the DPO's decision for that subject), gets no second one.
        if (!state || state.erased || held.get(subjectId)!.some((r) => r.requestId === requestId)) continue;
        await placeRestriction(
          tx,
          { requests: this.requests, subjects: this.subjects, audit: this.audit, changes: this.changes },
          {
            tenantId,
            subjectId,
            ground: source.ground,
            requestId,
            note: `carried over from ${restrictionName(source)} by ${link.name}`,
            principal: link.principal,
            at: link.now,
            restrictedAlready: state.restrictedSince !== undefined || restricted.has(subjectId),
          },
        );
        restricted.add(subjectId);
      }
    }
    return [...restricted];
  }

  /** Closes a link, with the reason (no personal data). Closing a closed link: FAILED_PRECONDITION LINK_CLOSED. */
  async unlink(principal: Principal, tenantId: string, id: string, reason: string): Promise<IdentityLinkView> {
    const v = new Violations();
    v.check(reason.trim().length > 0 && characterCount(reason) <= MAX_TEXT, 'reason', 'REQUIRED', `1-${MAX_TEXT} characters`);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const link = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const name = identityLinkName(tenantId, id);
      const found = await this.repo.find(tx, tenantId, id);
      if (!found) throw notFound('IDENTITY_LINK', name);
      await this.subjects.lockMany(tx, tenantId, [found.subjectA, found.subjectB]);
      // Read again under the persons' locks: a concurrent unlinking (or erasure) committed first shows here.
      const current = await this.repo.find(tx, tenantId, id);
      if (!current) throw notFound('IDENTITY_LINK', name);
      if (current.unlinkedAt !== null) throw failedPrecondition('LINK_CLOSED', 'the link was unlinked already', { link: name });
      const change = { unlinkedBy: principal.id, unlinkedAt: now, unlinkReason: reason };
      await this.repo.update(tx, tenantId, id, change);
      for (const subject of [current.subjectA, current.subjectB]) {
        await this.audit.append(tx, tenantId, { type: IDENTITIES_UNLINKED, time: now, principal: principal.id, subject, ref: name, payloadSha256: sha256Hex(reason) });
      }
      return { ...current, ...change };
    });
    return this.view(link);
  }

  /**
   * A page of the tenant's links, newest first, of one identifier when given (found through its
   * blind index; nobody found is an empty page, never an error that would tell whether the
   * tenant knows the identifier). The filters are bound into the page token.
   */
  async list(
    principal: Principal,
    tenantId: string,
    query: { identifier?: RawIdentifier; includeUnlinked: boolean; pageSize: number; pageToken: string },
  ): Promise<Page<IdentityLinkView>> {
    const v = new Violations();
    const size = resolvePageSize(query.pageSize, this.pages, v);
    const identifier = query.identifier ? normaliseIdentifier(query.identifier, 'subject_identifier') : undefined;
    if (identifier && isViolation(identifier)) v.add(identifier.field, identifier.reason, identifier.description);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const scope = { identifier: query.identifier ?? null, includeUnlinked: query.includeUnlinked };
    const page = await this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const sealer = this.keys.pageTokenSealer(keyring, 'identity_links');
      const after = decodePageToken<string>(query.pageToken, scope, 'string', sealer, v);
      v.throwIfAny();
      let subjectId: string | undefined;
      if (identifier && !isViolation(identifier)) {
        const subject = await this.subjects.findByIdentifier(tx, tenantId, { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) });
        if (!subject) return { items: [], nextPageToken: '' };
        subjectId = subject.subjectId;
      }
      const rows = await this.repo.list(tx, tenantId, { subjectId, includeUnlinked: query.includeUnlinked }, parseCursor(after), size + 1);
      const items = rows.slice(0, size);
      const last = items[items.length - 1];
      return { items, nextPageToken: rows.length > size ? encodePageToken(`${last.linkedAt}:${last.id}`, scope, sealer) : '' };
    });
    return { items: await Promise.all(page.items.map((l) => this.view(l))), nextPageToken: page.nextPageToken };
  }

  /** The request that is the person's verified path: of the tenant, verified, by one of the two identifiers. */
  private async verifiedRequest(tx: TxContext, tenantId: string, id: string, indexes: IdentifierIndex[]): Promise<SubjectRequestRecord> {
    const name = `tenants/${tenantId}/requests/${id}`;
    const request = await this.requests.findRequest(tx, tenantId, id);
    if (!request) throw notFound('REQUEST', name);
    // An objection is completed without verification (Art. 21(3)): completed alone proves nothing.
    if (!VERIFIED_STATES.includes(request.state) || !request.verificationMethod || !request.verifiedBy) {
      throw failedPrecondition('IDENTITY_NOT_VERIFIED', 'the request\'s requester was not verified (VerifyIdentity)', { request: name });
    }
    if (!indexes.some((i) => i.kind === request.identifierKind && i.blindIndex === request.blindIndex)) {
      throw failedPrecondition('REQUEST_NOT_FOR_IDENTIFIER', 'the request was made by neither of the two identifiers', { request: name });
    }
    return request;
  }

  private async view(link: IdentityLinkRecord): Promise<IdentityLinkView> {
    const key = await this.keys.subjectKey(link.tenantId, link.subjectA);
    const evidence = JSON.parse(decryptField(key.key, evidenceContext(link.tenantId, link.subjectA, link.id), link.evidenceCiphertext)) as { method: string; verifiedBy: string; request: string | null };
    return { ...link, method: evidence.method, verifiedBy: evidence.verifiedBy, request: evidence.request };
  }
}

function evidenceContext(tenantId: string, subjectId: string, linkId: string) {
  return { tenant: tenantId, subject: subjectId, table: 'identity_links', column: 'evidence_ciphertext', row: linkId };
}

function erased(): DomainError {
  // The message names no identifier: it is personal data.
  return failedPrecondition('SUBJECT_ERASED', 'an identifier belongs to an erased person');
}

function parseCursor(token: string | null): NewestFirstCursor | null {
  if (!token) return null;
  const [time, id] = token.split(':');
  return { createdAt: Number(time), id };
}

/** The subject name of a link end (for transports). */
export function linkSubjectNames(link: IdentityLinkRecord): string[] {
  return [names.subject(link.tenantId, link.subjectA), names.subject(link.tenantId, link.subjectB)];
}
