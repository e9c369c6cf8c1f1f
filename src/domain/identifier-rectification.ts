import { decryptField, encryptField, FieldContext } from '../crypto/field-cipher';
import { KeyManager } from '../crypto/key-manager';
import { AuditTrail } from '../audit/audit-types';
import { failedPrecondition, FieldViolation, notFound } from '../shared/errors';
import { sha256Hex } from '../shared/hashing';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { encodeConsistencyToken } from './consistency';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { IdentifierRef } from './model';
import { ChangeFeedRepository, IdentifierChangeRepository, IdentifierIndex, RequestKind, RequestTransitionRecord, SubjectRepository, SubjectRequestRecord, SubjectRightsRepository } from './ports';
import { Principal } from './principal';
import { SignUpRepository } from './self-service-signup';
import { TenantService } from './tenant-service';

/** Audit entry type of a carried-out rectification; names the subject and, as `ref`, the request. */
export const IDENTIFIER_RECTIFIED = 'IDENTIFIER_RECTIFIED';

/** What a RECTIFICATION request keeps of the correct identifier: never the value in clear. */
export type RectifiedFields = Pick<SubjectRequestRecord, 'rectifiedKind' | 'rectifiedBlindIndex' | 'rectifiedCiphertext'>;

/** Where the correct identifier's ciphertext on a request belongs; bound into it. */
function requestContext(tenantId: string, subjectId: string, index: IdentifierIndex): FieldContext {
  return { tenant: tenantId, subject: subjectId, table: 'subject_requests', column: 'rectified_ciphertext', row: `${index.kind}:${index.blindIndex}` };
}

function identifierContext(tenantId: string, subjectId: string, index: IdentifierIndex): FieldContext {
  return { tenant: tenantId, subject: subjectId, table: 'subject_identifiers', column: 'value_ciphertext', row: `${index.kind}:${index.blindIndex}` };
}

/**
 * CreateRequest's check of `rectified_identifier`: required for a RECTIFICATION (of the same kind
 * as the person's identifier, and another one), refused for every other kind. Violations name the
 * field, never the value.
 */
export function checkRectifiedIdentifier(kind: RequestKind | null, raw: RawIdentifier | undefined, current: IdentifierRef | FieldViolation, violations: FieldViolation[]): IdentifierRef | null {
  if (kind !== 'RECTIFICATION') {
    if (raw) violations.push({ field: 'rectified_identifier', reason: 'NOT_ALLOWED', description: 'only a RECTIFICATION request carries a rectified identifier' });
    return null;
  }
  const rectified = normaliseIdentifier(raw, 'rectified_identifier');
  if (isViolation(rectified)) {
    violations.push(rectified);
    return null;
  }
  if (!isViolation(current) && current.kind !== rectified.kind) {
    violations.push({ field: 'rectified_identifier', reason: 'KIND_MISMATCH', description: 'must be of the same kind as subject_identifier (a phone number for a phone number, ...)' });
  } else if (!isViolation(current) && current.value === rectified.value) {
    violations.push({ field: 'rectified_identifier', reason: 'UNCHANGED', description: 'must differ from subject_identifier' });
  }
  return rectified;
}

/**
 * Art. 16: rectification of an identifier. The person's correct identifier is kept on the
 * request as its blind index and its value encrypted under the person's subject key (erasing the
 * person makes it unreadable too); when the request is carried out (verified first, like an
 * erasure), under the person's lock the old identifier row is replaced by the new one on the
 * same subject, so everything that belongs to the subject (history, consents, service windows,
 * objection, restrictions, holds) follows it, and the old identifier keeps nothing: a check for
 * it finds no one (UNKNOWN_SUBJECT), like an identifier never recorded. An IDENTIFIER_RECTIFIED
 * audit entry names the person, so every process's decision cache drops what it held for them
 * and for identifiers cached as naming nobody (the new one may have been).
 */
export class IdentifierRectification {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly repo: SubjectRightsRepository,
    private readonly subjects: SubjectRepository,
    private readonly identifiers: IdentifierChangeRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly audit: AuditTrail,
    private readonly changes: ChangeFeedRepository,
    private readonly signUps: Pick<SignUpRepository, 'supersedeDeliveries'>,
  ) {}

  /** Told about each committed rectification before it is answered (the decision cache forgets the person at once). */
  observer?: (tenantId: string, subjectId: string, logSize: number) => void;

  /**
   * Outside CreateRequest's transaction (keys before data): the correct identifier's blind index,
   * and its value encrypted under the key of the person `current` names (none when it names nobody:
   * the request will find no data held). The caller checks that the request names that person.
   */
  async prepare(tenantId: string, currentIdentifier: IdentifierRef, rectified: IdentifierRef): Promise<RectifiedFields & { subjectId: string | null }> {
    // The tenant first: an unknown one is NOT_FOUND, not a key that cannot be found.
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
    const keyring = await this.keys.tenantKeyring(tenantId);
    const index = { kind: rectified.kind, blindIndex: this.keys.blindIndex(keyring, rectified) };
    const current = { kind: currentIdentifier.kind, blindIndex: this.keys.blindIndex(keyring, currentIdentifier) };
    const person = await this.tx.read((tx) => this.subjects.findByIdentifier(tx, tenantId, current));
    if (!person || person.erased) return { subjectId: null, rectifiedKind: index.kind, rectifiedBlindIndex: index.blindIndex, rectifiedCiphertext: null };
    await this.keys.reserveEncryptions(tenantId, person.subjectId, 1);
    const key = await this.keys.subjectKey(tenantId, person.subjectId);
    return {
      subjectId: person.subjectId,
      rectifiedKind: index.kind,
      rectifiedBlindIndex: index.blindIndex,
      rectifiedCiphertext: encryptField(key.key, key.kid, requestContext(tenantId, person.subjectId, index), rectified.value),
    };
  }

  /**
   * Carries out a verified RECTIFICATION request (see the class). Idempotent: a completed request
   * answers as it is. `recordTransition` is the request service's (transition row and audit entry).
   */
  async rectify(
    principal: Principal,
    tenantId: string,
    id: string,
    recordTransition: (tx: TxContext, tenantId: string, t: Omit<RequestTransitionRecord, 'seq'>) => Promise<void>,
  ): Promise<{ consistencyToken: string }> {
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const name = { request: `tenants/${tenantId}/requests/${id}` };
    // The person's key before the transaction (keys before data); checked again under the locks.
    const { before, erased } = await this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const request = await this.repo.findRequest(tx, tenantId, id);
      // An erased person's key is destroyed: no key to fetch, and the transaction completes the
      // request with nothing held (asking the key store would fail, as unavailable, for ever).
      const person = request?.subjectId ? await this.subjects.find(tx, tenantId, request.subjectId) : null;
      return { before: request, erased: person?.erased === true };
    });
    if (!before) throw notFound('REQUEST', name.request);
    const needsKey = before.kind === 'RECTIFICATION' && before.state === 'VERIFIED' && before.subjectId !== null && before.rectifiedCiphertext && !erased;
    if (needsKey) await this.keys.reserveEncryptions(tenantId, before.subjectId!, 1);
    const key = needsKey ? await this.keys.subjectKey(tenantId, before.subjectId!) : null;

    const done = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const request = await this.repo.lockRequest(tx, tenantId, id);
      if (!request) throw notFound('REQUEST', name.request);
      if (request.kind !== 'RECTIFICATION') throw failedPrecondition('NOT_A_RECTIFICATION', `this is an ${request.kind} request, not a rectification`, name);
      if (request.state === 'COMPLETED') return { subjectId: null, logSize: null };
      if (request.state === 'RECEIVED') throw failedPrecondition('IDENTITY_NOT_VERIFIED', 'verify the identity of the requester first (VerifyIdentity)', name);
      if (request.state !== 'VERIFIED') throw failedPrecondition('INVALID_TRANSITION', `a ${request.state} request cannot be carried out`, { ...name, state: request.state });
      const old: IdentifierIndex = { kind: request.identifierKind, blindIndex: request.blindIndex };
      const found = await this.subjects.findByIdentifier(tx, tenantId, old);
      const complete = async (subjectId: string | null, note: string) => {
        const change: Partial<SubjectRequestRecord> = { state: 'COMPLETED', updatedAt: now, rectifiedCiphertext: null };
        if (subjectId) change.subjectId = subjectId;
        await this.repo.updateRequest(tx, id, change);
        await recordTransition(tx, tenantId, { requestId: id, fromState: 'VERIFIED', toState: 'COMPLETED', principal: principal.id, at: now, note });
      };
      if (!found || found.erased) {
        // Nothing is held about the identifier (any more): there is nothing to rectify.
        await complete(null, 'completed: no data held');
        return { subjectId: null, logSize: null };
      }
      if (found.subjectId !== request.subjectId || !request.rectifiedCiphertext || !key) {
        throw failedPrecondition(
          'SUBJECT_CHANGED',
          'the identifier names a person recorded after the request was received; reject this request and register a new one',
          name,
        );
      }
      const person = await this.subjects.lock(tx, tenantId, found.subjectId);
      if (!person || person.erased) {
        await complete(null, 'completed: no data held');
        return { subjectId: null, logSize: null };
      }
      const rectified: IdentifierIndex = { kind: request.rectifiedKind!, blindIndex: request.rectifiedBlindIndex! };
      const holder = await this.subjects.findByIdentifier(tx, tenantId, rectified);
      if (holder && holder.subjectId !== person.subjectId) {
        // The message names neither identifier nor the other person: both are personal data.
        throw failedPrecondition('IDENTIFIER_IN_USE', 'the new identifier belongs to another subject; link the two subjects instead of rectifying', name);
      }
      if (!holder && (await this.subjects.findSuppressed(tx, tenantId, [rectified])).size > 0) {
        throw failedPrecondition('IDENTIFIER_ERASED', 'the new identifier belonged to an erased person; it cannot be given to anyone (reject this request)', name);
      }
      const value = decryptField(key.key, requestContext(tenantId, person.subjectId, rectified), request.rectifiedCiphertext);
      await this.identifiers.deleteIdentifier(tx, tenantId, old);
      await this.identifiers.markIdentifiersChanged(tx, tenantId, person.subjectId, now);
      if (!holder) {
        await this.subjects.insertIdentifier(tx, {
          ...rectified,
          tenantId,
          subjectId: person.subjectId,
          createdAt: now,
          valueCiphertext: encryptField(key.key, key.kid, identifierContext(tenantId, person.subjectId, rectified), value),
        });
      }
      // A confirmation mail of a sign-up still waiting to go to the old (wrong) address does not go.
      await this.signUps.supersedeDeliveries(tx, tenantId, person.subjectId, old, now);
      const auditSeq = await this.audit.append(tx, tenantId, { type: IDENTIFIER_RECTIFIED, time: now, principal: principal.id, subject: person.subjectId, ref: name.request, payloadSha256: sha256Hex(rectified.kind) });
      // Art. 19: recipients that keep copies learn of the rectification on the change feed.
      await this.changes.append(tx, [{ tenantId, kind: 'RECTIFIED', subjectId: person.subjectId, purposeId: null, channel: null, eventId: null, at: now, auditSeq }]);
      await complete(person.subjectId, `rectified: the ${rectified.kind.toLowerCase()} identifier was replaced; history and consents follow it`);
      return { subjectId: person.subjectId, logSize: await this.audit.committedSize(tx, tenantId) };
    });
    if (done.subjectId && done.logSize !== null) this.observer?.(tenantId, done.subjectId, done.logSize);
    const position = done.logSize ?? (await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
    return { consistencyToken: encodeConsistencyToken(tenantId, position) };
  }
}
