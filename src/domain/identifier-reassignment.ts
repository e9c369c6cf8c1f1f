import { encryptField } from '../crypto/field-cipher';
import { KeyManager } from '../crypto/key-manager';
import { AuditEntry, AuditTrail } from '../audit/audit-types';
import { failedPrecondition, FieldViolation, invalidArgument } from '../shared/errors';
import { TransactionRunner } from '../shared/unit-of-work';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { applyToScope, ScopeState } from './consent-rules';
import { auditEntryOf, newId } from './consent-writer';
import { encodeConsistencyToken } from './consistency';
import { sealEvent } from './event-codec';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { ConsentEvent, EARLIEST_RECORD_TIME } from './model';
import { ChangeFeedRepository, ConsentRepository, IdentifierChangeRepository, ReassignmentRecord, StoredConsentEvent, SubjectRepository } from './ports';
import { Principal } from './principal';
import { SignUpRepository } from './self-service-signup';
import { checkRequestId } from './request-id';
import { TenantService } from './tenant-service';

/** Audit entry type of a reassignment: one naming the subject the identifier moved off, one naming the fresh subject. */
export const IDENTIFIER_REASSIGNED = 'IDENTIFIER_REASSIGNED';

/** Who reported the reassignment: CARRIER_NOTICE, REASSIGNED_NUMBERS_DB, NEW_OWNER, ... (no personal data). */
const SOURCE = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Clock skew tolerated on `reassign_time` (it is then taken as now). */
const MAX_SKEW_MS = 5 * 60_000;

export interface ReassignmentInput {
  identifier: RawIdentifier | undefined;
  /** Default: now. */
  reassignTime?: number;
  source: string;
  requestId: string;
  /** The request as the transport received it, for the idempotency fingerprint. */
  fingerprintSource: string;
}

/**
 * A phone number (or e-mail address) reported as passed to someone else. In one transaction,
 * under the lock of the person it named:
 *
 * - every consent of that person still in force ends at the reassignment: an OPT_OUT of the scope
 *   (event time: the reassignment, or the scope's opt-in if that is later, so the opt-out wins),
 *   with the report as provenance (request id "reassigned:{report}#{purpose}#{channel}"), its
 *   audit entry and change-feed row; their service windows close (the derived rows go, the
 *   inbound events stay in the history);
 * - the identifier row moves off that person, who keeps their history and other identifiers;
 * - a fresh subject, linked to nothing, takes the identifier (value encrypted under its own new
 *   key), marked with the reassignment time (`subjects.reassigned_at`): checks answer
 *   IDENTIFIER_REASSIGNED until its new owner opts in (consent-rules.ts, rule 1c);
 * - IDENTIFIER_REASSIGNED audit entries name both subjects, so every process's decision cache
 *   drops what it held for them (and for the identifier, cached under the old person).
 *
 * Why the consents end on the old person and not only on the identifier: consent belongs to the
 * subject, and a subject reached by a number that is no longer theirs cannot be asked again by
 * it; their other identifiers need a new consent (docs/consent-rules.md).
 *
 * A consent write that found the old person by the identifier just before the report committed
 * sees, under the person's lock, that an identifier moved off them (`identifiersChangedAt`) and
 * looks the identifier up again (ConsentWriter), so it lands on the fresh subject instead.
 *
 * Idempotent by request_id: a retry answers the fresh subject made first; the same request_id
 * with another body is FAILED_PRECONDITION REQUEST_ID_REUSED.
 */
export class IdentifierReassignment {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly subjects: SubjectRepository,
    private readonly consent: ConsentRepository,
    private readonly changes: ChangeFeedRepository,
    private readonly identifiers: IdentifierChangeRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly audit: AuditTrail,
    private readonly signUps: Pick<SignUpRepository, 'supersedeDeliveries'>,
  ) {}

  /** Told about each committed report before it is answered (the decision cache forgets both people at once). */
  observer?: (tenantId: string, subjectIds: string[], createdSubject: boolean, logSize: number) => void;

  async report(principal: Principal, tenantId: string, input: ReassignmentInput): Promise<{ subjectId: string; consistencyToken: string }> {
    const now = this.clock.now();
    const violations: FieldViolation[] = [];
    const identifier = normaliseIdentifier(input.identifier, 'subject_identifier');
    if (isViolation(identifier)) violations.push(identifier);
    else if (identifier.kind === 'CUSTOMER_ID') {
      violations.push({ field: 'subject_identifier', reason: 'NOT_REASSIGNABLE', description: 'a phone number or an e-mail address; a customer id is never given to someone else' });
    }
    if (input.reassignTime !== undefined && input.reassignTime > now + MAX_SKEW_MS) {
      violations.push({ field: 'reassign_time', reason: 'IN_THE_FUTURE', description: 'must not be in the future' });
    }
    if (input.reassignTime !== undefined && input.reassignTime < EARLIEST_RECORD_TIME) {
      violations.push({ field: 'reassign_time', reason: 'OUT_OF_RANGE', description: 'must not be before 2000-01-01 (as event times)' });
    }
    if (!SOURCE.test(input.source)) {
      violations.push({ field: 'source', reason: input.source ? 'INVALID_SOURCE' : 'REQUIRED', description: '1-64 characters of A-Z a-z 0-9 _ . : -, e.g. CARRIER_NOTICE' });
    }
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const reassignTime = Math.min(input.reassignTime ?? now, now);

    // The tenant first: an unknown one is NOT_FOUND, not a key that cannot be found.
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
    const keyring = await this.keys.tenantKeyring(tenantId);
    const index = { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) };
    const fingerprint = this.keys.requestFingerprint(keyring, input.fingerprintSource);
    const replayed = (report: ReassignmentRecord) => {
      if (report.requestFingerprint !== fingerprint) {
        throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: input.requestId });
      }
      return report;
    };

    // Keys before data: the fresh subject's key is made outside the transaction (a retry makes none).
    const earlier = await this.tx.read((tx) => this.identifiers.findReassignment(tx, tenantId, input.requestId));
    if (earlier) return this.answer(tenantId, replayed(earlier).newSubjectId, null);
    const newSubjectId = newId();
    const newKey = (await this.keys.createSubjectKeys(tenantId, [{ subjectId: newSubjectId, use: 1 }], now)).get(newSubjectId)!;

    const done = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const replay = await this.identifiers.findReassignment(tx, tenantId, input.requestId);
      if (replay) return { subjectId: replayed(replay).newSubjectId, oldSubjectId: null, logSize: null };
      const suppressed = await this.subjects.findSuppressed(tx, tenantId, [index]);
      const found = await this.subjects.findByIdentifier(tx, tenantId, index);
      if (!found && suppressed.size > 0) {
        // The message names no identifier: it is personal data.
        throw failedPrecondition('IDENTIFIER_ERASED', 'the person this identifier named was erased; every check denies it already, and nothing is recorded for it');
      }
      const reportId = newId();
      const entries: AuditEntry[] = [];
      const rows: StoredConsentEvent[] = [];
      const events: ConsentEvent[] = [];
      const changed: Array<{ subjectId: string; scope: ScopeState }> = [];
      let oldSubjectId: string | null = null;
      // A late report: withdrawals the old person's history got since the reassignment may have
      // been the new owner's (a STOP from the number), and opt-outs always count for the new
      // owner (docs/consent-rules.md): each is carried over to the fresh subject, as a copy
      // without the evidence (that stays the old person's, under their key). On the safe side:
      // one the old owner made by another identifier also denies the new owner until they opt in.
      const freshScopes = new Map<string, ScopeState>();
      const carryWithdrawals = (history: StoredConsentEvent[]) => {
        for (const out of history) {
          if (out.kind !== 'OPT_OUT' || out.eventTime < reassignTime) continue;
          const event: ConsentEvent = {
            id: newId(),
            tenantId,
            subjectId: newSubjectId,
            kind: 'OPT_OUT',
            purposeId: out.purposeId,
            channel: out.channel,
            eventTime: out.eventTime,
            recordTime: now,
            method: out.method,
            principal: principal.id,
            evidence: {},
            lawfulBasis: null,
            jurisdiction: '',
            requestId: `reassigned:${reportId}#carried:${out.id}`,
          };
          const sealed = sealEvent(event, newKey, '');
          events.push(event);
          rows.push(sealed);
          entries.push(auditEntryOf(event, sealed));
          const key = `${out.purposeId}\u0000${out.channel}`;
          freshScopes.set(key, applyToScope(freshScopes.get(key) ?? { purposeId: out.purposeId, channel: out.channel }, { id: event.id, kind: 'OPT_OUT', eventTime: event.eventTime }));
        }
      };
      if (found) {
        const locked = await this.subjects.lock(tx, tenantId, found.subjectId);
        if (locked && !locked.erased) {
          oldSubjectId = found.subjectId;
          const key = await this.keys.subjectKey(tenantId, oldSubjectId);
          const scopes = (await this.consent.loadState(tx, tenantId, [oldSubjectId])).get(oldSubjectId)?.scopes ?? [];
          for (const scope of scopes) {
            const optIn = scope.optIn;
            // Ended already: withdrawn, or never given.
            if (!optIn || (scope.optOut && scope.optOut.eventTime >= optIn.eventTime)) continue;
            const event: ConsentEvent = {
              id: newId(),
              tenantId,
              subjectId: oldSubjectId,
              kind: 'OPT_OUT',
              purposeId: scope.purposeId,
              channel: scope.channel,
              eventTime: Math.max(reassignTime, optIn.eventTime),
              recordTime: now,
              method: 'API',
              principal: principal.id,
              evidence: {},
              lawfulBasis: null,
              jurisdiction: '',
              requestId: `reassigned:${reportId}#${scope.purposeId}#${scope.channel}`,
            };
            const sealed = sealEvent(event, key, '');
            events.push(event);
            rows.push(sealed);
            entries.push(auditEntryOf(event, sealed));
            changed.push({ subjectId: oldSubjectId, scope: applyToScope(scope, { id: event.id, kind: 'OPT_OUT', eventTime: event.eventTime }) });
          }
          // Before the reassignment entries: the events' entries come first, in the events' order (auditSeq below).
          if (reassignTime < now) carryWithdrawals(await this.consent.eventsRecordedBy(tx, tenantId, oldSubjectId, now));
          entries.push({ type: IDENTIFIER_REASSIGNED, time: now, principal: principal.id, subject: oldSubjectId, ref: `reassigned:${reportId}`, eventTime: reassignTime });
        }
      }
      entries.push({ type: IDENTIFIER_REASSIGNED, time: now, principal: principal.id, subject: newSubjectId, ref: `reassigned:${reportId}`, eventTime: reassignTime });
      const first = await this.audit.appendAfter(tx, tenantId, async () => {
        if (rows.length > 0) await this.consent.insertEvents(tx, rows);
        return entries;
      });
      if (oldSubjectId) {
        if (events.length > 0) {
          await this.changes.append(
            tx,
            events.map((event, i) => ({ tenantId, kind: 'OPT_OUT' as const, subjectId: event.subjectId, purposeId: event.purposeId, channel: event.channel, eventId: event.id, at: now, auditSeq: first + i })),
          );
          await this.consent.saveStates(tx, tenantId, [...changed, ...[...freshScopes.values()].map((scope) => ({ subjectId: newSubjectId, scope }))], []);
        }
        await this.identifiers.closeWindows(tx, tenantId, oldSubjectId);
        // The former holder's confirmation mails not yet sent would reach the new holder.
        await this.signUps.supersedeDeliveries(tx, tenantId, oldSubjectId, index, now);
        await this.identifiers.markIdentifiersChanged(tx, tenantId, oldSubjectId, now);
      }
      // The identifier moves: its row (and the old person's ciphertext of it) goes, a new one names the fresh subject.
      if (found) await this.identifiers.deleteIdentifier(tx, tenantId, index);
      await this.identifiers.insertReassignedSubject(tx, { id: newSubjectId, tenantId, createdAt: now, reassignedAt: reassignTime });
      await this.subjects.insertIdentifier(tx, {
        ...index,
        tenantId,
        subjectId: newSubjectId,
        createdAt: now,
        valueCiphertext: encryptField(
          newKey.key,
          newKey.kid,
          { tenant: tenantId, subject: newSubjectId, table: 'subject_identifiers', column: 'value_ciphertext', row: `${index.kind}:${index.blindIndex}` },
          identifier.value,
        ),
      });
      await this.identifiers.insertReassignment(tx, {
        id: reportId,
        tenantId,
        requestId: input.requestId,
        requestFingerprint: fingerprint,
        kind: index.kind,
        blindIndex: index.blindIndex,
        oldSubjectId,
        newSubjectId,
        reassignTime,
        source: input.source,
        reportedBy: principal.id,
        createdAt: now,
      });
      return { subjectId: newSubjectId, oldSubjectId, logSize: await this.audit.committedSize(tx, tenantId) };
    });
    // (A concurrent retry that committed first leaves the key made here naming no row, like any
    // key of a subject never written: keys before data.)
    if (done.logSize !== null) this.observer?.(tenantId, done.oldSubjectId ? [done.oldSubjectId, done.subjectId] : [done.subjectId], true, done.logSize);
    return this.answer(tenantId, done.subjectId, done.logSize);
  }

  private async answer(tenantId: string, subjectId: string, logSize: number | null): Promise<{ subjectId: string; consistencyToken: string }> {
    // A retry's token covers the first call's report too: the log's size now is past it.
    const position = logSize ?? (await this.tx.read((tx) => this.audit.committedSize(tx, tenantId)));
    return { subjectId, consistencyToken: encodeConsistencyToken(tenantId, position) };
  }
}
