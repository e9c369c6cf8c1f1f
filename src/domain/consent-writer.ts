import { encryptField } from '../crypto/field-cipher';
import { KeyManager, SubjectKey } from '../crypto/key-manager';
import { randomFillSync } from 'node:crypto';
import { AuditEntry, AuditTrail } from '../audit/audit-types';
import { withCallBudget } from '../shared/call-budget';
import { DomainError, failedPrecondition } from '../shared/errors';
import { sha256Hex } from '../shared/hashing';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { ItemOutcome } from './commit-queue';
import { applyToScope, applyToWindow, decide, ScopeState, SubjectFacts, WindowState } from './consent-rules';
import { addCalendarMonths } from './deadlines';
import { eventRecordSha256, hasEvidence, openEvent, sealEvent } from './event-codec';
import { matchKeyword } from './keywords';
import { ALL_PURPOSES, Channel, CollectionMethod, ConsentEvent, ConsentKind, Evidence, IdentifierRef, LawfulBasis, SendChannel, Tenant, TenantSettings } from './model';
import { ChangeFeedRepository, ChangeRecord, ConsentRepository, IdentifierIndex, StoredConsentEvent, SubjectRef, SubjectRepository } from './ports';
import { TenantService } from './tenant-service';

/** A consent or withdrawal as the recorder prepared it: validated, normalised, its notice found. */
export interface ConsentBody {
  type: 'consent';
  kind: ConsentKind;
  /** A purpose id, or ALL_PURPOSES (opt-outs only). */
  purposeId: string;
  channel: Channel;
  eventTime: number;
  method: CollectionMethod;
  notice?: { purposeId: string; version: number; textSha256: string; language: string };
  evidence: Evidence;
  lawfulBasis?: LawfulBasis;
  jurisdiction: string;
  expireTime?: number;
  /** The caller gave no event time: `eventTime` is this server's clock at receipt. */
  serverDated?: boolean;
  /** The purpose is of category MARKETING (Art. 21: only the person's consent lifts their objection or withdrawal). */
  marketing?: boolean;
}

/** An inbound message: opens the channel's service window; its text may be a keyword. */
export interface InboundBody {
  type: 'inbound';
  channel: Exclude<Channel, 'ANY'>;
  eventTime: number;
  text: string;
  messageId: string;
  /** The caller gave no event time: `eventTime` is this server's clock at receipt. */
  serverDated?: boolean;
}

/** One write, prepared outside any transaction by the recorder (or the importer). */
export interface PreparedWrite {
  tenantId: string;
  principal: string;
  requestId: string;
  /** Keyed fingerprint of the request: tells a retry from a reused request_id. */
  fingerprint: string;
  identifier: IdentifierRef;
  index: IdentifierIndex;
  recordTime: number;
  body: ConsentBody | InboundBody;
  /** From an import (ImportConsents or method IMPORT): refused for an erased person's identifier. */
  imported: boolean;
  /**
   * A write for a person known by opaque id (a preference link): `index` is one of their
   * identifiers as stored and `identifier.value` is not known. The write never creates a person:
   * when the index no longer names this subject (erased, or the identifier moved), it is refused.
   */
  subjectId?: string;
}

/** What a write came to. */
export interface WriteResult {
  /** The consent event; or the inbound message and, if its text was a keyword, the keyword's event. */
  events: ConsentEvent[];
  /** A retry answered with what its first call recorded. */
  replayed: boolean;
  /** Inbound messages: when the channel's service window closes after this message. */
  windowExpireTime?: number;
  /**
   * The tenant's audit log size once the write's batch committed (for a retry answered from the
   * first call: at least the first call's): the position of its consistency token.
   */
  logSize: number;
}

/** Told about each committed batch before its writes are answered (the decision cache: read your writes). */
/** The write path's metrics (src/observability/metrics.ts implements it). */
export interface WriteMetrics {
  written(tenantId: string, kind: string, count?: number): void;
  batchCommitted(size: number, seconds: number): void;
}

export type CommitObserver = (tenantId: string, committed: { subjectIds: Set<string>; createdSubjects: boolean; logSize: number }) => void;

/** Suffix of the request id of the keyword event an inbound message records. */
export const KEYWORD_REQUEST_SUFFIX = '#keyword';
const OPT_IN_KINDS: ReadonlySet<ConsentKind> = new Set(['OPT_IN', 'OPT_IN_PENDING', 'OPT_IN_CONFIRMED']);
/** Rounds of a batch whose writes had to be prepared again (a person created meanwhile elsewhere). */
const MAX_ROUNDS = 4;

/**
 * A batch's own time budget: it works for many calls at once, so no single caller's deadline or
 * cancellation may end it; the transaction runner bounds it by DATABASE_CALL_TIMEOUT_MS.
 */
const BATCH_BUDGET = { deadline: Number.POSITIVE_INFINITY, signal: new AbortController().signal };

/** A write of the batch during one round, with what the round learnt about it. */
interface Slot {
  position: number;
  write: PreparedWrite;
  /** The person: found by identifier, or created by this batch. */
  subjectId?: string;
  created?: boolean;
  key?: SubjectKey;
  /** The key could not be had (gone, or its usage limit): decided once the subject is locked. */
  keyError?: DomainError;
  /** The events to record, sealed; built before the transaction. */
  events?: ConsentEvent[];
  /** Known before the transaction: a retry of a write already recorded. */
  replay?: boolean;
  /** The person's `identifiersChangedAt` when found by identifier (compared under the lock). */
  seenIdentifiersChange?: number;
}

/** What the transaction decided for one slot. */
type Decision =
  | { kind: 'written'; events: ConsentEvent[]; windowStart?: number }
  | { kind: 'replay'; stored: StoredConsentEvent[]; windowStart?: number }
  | { kind: 'error'; error: DomainError }
  | { kind: 'again' }
  | { kind: 'same-as'; position: number };

/**
 * Commits batches of consent writes of one tenant (group commit, docs/architecture.md "The write
 * path"). Per batch: outside any transaction, one read finds the people and the retries, the keys
 * of new people are made in one key-store transaction (keys before data), encryptions are
 * counted from leases and the evidence is sealed; then ONE transaction re-checks what may have
 * changed, inserts the new people, locks the known ones (in id order), folds every subject's
 * state once, inserts all events with multi-row statements under the tenant's audit head lock
 * (their entries appended together), the change-feed rows and the new states, and commits.
 *
 * A write that cannot be recorded (erased person, no pending opt-in to confirm, reused
 * request_id, key limit) gets its own error and its batch mates go on; a request_id twice in one
 * batch gets the first write's answer both times. A write whose person was created meanwhile by
 * another process is prepared again in a next round. An unexpected failure of the batch
 * transaction is retried write by write, so only the write that causes it fails.
 */
export class ConsentWriter {
  /** Batches committed and writes in them since start (for tests, benchmarks and metrics). */
  readonly stats = { batches: 0, writes: 0, largestBatch: 0 };
  /** Told about every committed batch, before its writes are answered. */
  observer?: CommitObserver;
  /** Metrics of the write path, when on: events recorded by kind, batch sizes and commit times. */
  metrics?: WriteMetrics;

  constructor(
    private readonly tx: TransactionRunner,
    private readonly consent: ConsentRepository,
    private readonly subjects: SubjectRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly changes: ChangeFeedRepository,
    private readonly audit: AuditTrail,
  ) {}

  /** Commits `writes` (all of `tenantId`); answers each one, in order. */
  commit(tenantId: string, writes: PreparedWrite[]): Promise<Array<ItemOutcome<WriteResult>>> {
    return withCallBudget(BATCH_BUDGET, async () => {
      const outcomes: Array<ItemOutcome<WriteResult>> = new Array(writes.length);
      try {
        await this.commitRounds(tenantId, writes, writes.map((_, i) => i), outcomes);
      } catch (err) {
        // The batch as a whole failed unexpectedly: write by write, so only the culprit fails.
        if (writes.length === 1 || isExpected(err)) throw err;
        for (const [i, write] of writes.entries()) {
          const [single] = await this.commit(tenantId, [write]).catch((e: unknown) => [{ error: e }]);
          outcomes[i] = single;
        }
      }
      return outcomes;
    });
  }

  private async commitRounds(tenantId: string, writes: PreparedWrite[], positions: number[], outcomes: Array<ItemOutcome<WriteResult>>): Promise<void> {
    let pending = positions;
    for (let round = 1; pending.length > 0; round++) {
      if (round > MAX_ROUNDS) {
        for (const p of pending) outcomes[p] = { error: new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the write kept colliding with concurrent ones; retry') };
        return;
      }
      pending = await this.round(tenantId, writes, pending, outcomes, round === 1);
    }
  }

  /**
   * One round: prepare outside, commit inside one transaction; returns the positions to do again.
   * The first round seals with the tenant's settings as this process last read them (every batch's
   * transaction reads them, a moment ago under load); the transaction compares them with the row,
   * and a round after a change reads the row itself.
   */
  private async round(tenantId: string, writes: PreparedWrite[], positions: number[], outcomes: Array<ItemOutcome<WriteResult>>, first: boolean): Promise<number[]> {
    let slots: Slot[] = positions.map((position) => ({ position, write: writes[position] }));
    const requestIds = uniqueRequestIds(slots.map((s) => s.write));

    // 1. One read: the tenant (fresh settings), the people, writes already recorded, and whether
    // a person to be imported was erased (their identifier's tombstone).
    const found = await this.tx.read(async (tx) => {
      const people = await this.subjects.findByIdentifiers(tx, tenantId, distinctIndexes(slots));
      const importing = slots.filter((s) => isImport(s.write) || backdatedGrant(s.write));
      return {
        tenant: await this.tenants.require(tx, tenantId, first),
        people,
        recorded: new Set((await this.consent.findByRequestIds(tx, tenantId, requestIds)).map((e) => e.requestId)),
        suppressed: importing.length > 0 ? await this.subjects.findSuppressed(tx, tenantId, distinctIndexes(importing)) : new Map<string, { erasedAt: number }>(),
      };
    });
    const settings = found.tenant.settings;
    // Art. 17 and 21(3): an old list cannot bring back someone who asked to be forgotten. An
    // import for an erased person's identifier is refused while nobody holds it, and for
    // whoever holds it since (a fresh subject: the person's own new consent, an objection) when
    // it is dated at or before the erasure: that is the old person's data.
    // The same for any other write that grants something (an opt-in, an inbound message's window)
    // dated at or before the erasure: a paper or web-form opt-in sent again with its old date
    // would bring back the erased person's consent (ALLOW). Withdrawals are never refused.
    slots = slots.filter((slot) => {
      const tombstone = found.suppressed.get(indexKey(slot.write.index));
      if (!tombstone || found.recorded.has(slot.write.requestId)) return true;
      if (isImport(slot.write)) {
        if (found.people.has(indexKey(slot.write.index)) && slot.write.body.eventTime > tombstone.erasedAt) return true;
        outcomes[slot.position] = { error: failedPrecondition('SUBJECT_SUPPRESSED', 'this identifier belongs to an erased subject and cannot be imported again') };
        return false;
      }
      if (!backdatedGrant(slot.write) || slot.write.body.eventTime > tombstone.erasedAt) return true;
      // A STOP that arrives late withdraws (nothing to restore): taken like every withdrawal.
      if (slot.write.body.type === 'inbound' && matchKeyword(slot.write.body.text, settings) === 'OPT_OUT') return true;
      outcomes[slot.position] = { error: failedPrecondition('SUBJECT_SUPPRESSED', "this identifier's subject was erased after the event's time: the erased person's consent cannot be recorded again") };
      return false;
    });

    // A write for a known person whose identifier names nobody else now: never a new subject.
    slots = slots.filter((slot) => {
      const wanted = slot.write.subjectId;
      if (wanted === undefined || found.recorded.has(slot.write.requestId) || found.people.get(indexKey(slot.write.index))?.subjectId === wanted) return true;
      outcomes[slot.position] = { error: failedPrecondition('SUBJECT_ERASED', 'the person was erased (or their identifier changed) meanwhile', { subject: `tenants/${tenantId}/subjects/${wanted}` }) };
      return false;
    });

    // 2. Subjects and keys. New people get a subject id and key now (keys first, another database).
    const creating = new Map<string, { subjectId: string; use: number }>();
    for (const slot of slots) {
      slot.replay = found.recorded.has(slot.write.requestId);
      if (slot.replay) continue;
      const person = found.people.get(indexKey(slot.write.index));
      if (person) {
        slot.subjectId = person.subjectId;
        slot.seenIdentifiersChange = person.identifiersChangedAt;
        continue;
      }
      let created = creating.get(indexKey(slot.write.index));
      if (!created) creating.set(indexKey(slot.write.index), (created = { subjectId: newId(), use: 1 }));
      slot.subjectId = created.subjectId;
      slot.created = true;
      created.use += evidenceEncryptions(slot.write);
    }
    await this.keysFor(tenantId, slots, creating);

    // 3. Seal: event ids, kinds (keywords), expiry from the settings, evidence under the key.
    for (const slot of slots) if (!slot.replay && slot.key) slot.events = buildEvents(slot, settings);

    // 4. The transaction.
    const commitStarted = this.metrics ? performance.now() : 0;
    const committed = await this.tx.write((tx) => this.transaction(tx, found.tenant, slots));
    if (committed === 'settings-changed') return positions;
    const { decided, logSize, subjectIds, createdSubjects } = committed;
    if (subjectIds.size > 0) this.observer?.(tenantId, { subjectIds, createdSubjects, logSize });
    if (this.metrics) this.report(this.metrics, tenantId, slots, decided, (performance.now() - commitStarted) / 1000);
    this.stats.batches++;
    this.stats.writes += slots.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, slots.length);

    const again: number[] = [];
    for (const slot of slots) {
      const d = decided.get(slot.position)!;
      if (d.kind === 'again') again.push(slot.position);
      else if (d.kind === 'replay') outcomes[slot.position] = await this.replayOutcome(d, settings.serviceWindowMs, slot, logSize);
      else if (d.kind !== 'same-as') outcomes[slot.position] = outcomeOf(d, settings.serviceWindowMs, slot, logSize);
    }
    for (const slot of slots) {
      const d = decided.get(slot.position)!;
      if (d.kind !== 'same-as') continue;
      // The same request twice: the second gets the first one's answer (or goes again with it).
      if (outcomes[d.position]) outcomes[slot.position] = outcomes[d.position];
      else again.push(slot.position);
    }
    return again.filter((p) => !outcomes[p]);
  }

  /** Keys of the known people (cached), new people's keys in one key-store transaction, counted encryptions. */
  private async keysFor(tenantId: string, slots: Slot[], creating: Map<string, { subjectId: string; use: number }>): Promise<void> {
    const now = Math.max(...slots.map((s) => s.write.recordTime));
    let createdKeys = new Map<string, SubjectKey>();
    let creationError: DomainError | undefined;
    if (creating.size > 0) {
      createdKeys = await this.keys.createSubjectKeys(tenantId, [...creating.values()], now).catch((err: unknown) => {
        if (!(err instanceof DomainError) || err.kind === 'UNAVAILABLE') throw err;
        creationError = err;
        return new Map<string, SubjectKey>();
      });
    }
    const known = new Map<string, number>();
    for (const slot of slots) if (!slot.replay && !slot.created) known.set(slot.subjectId!, (known.get(slot.subjectId!) ?? 0) + evidenceEncryptions(slot.write));
    const keyOf = new Map<string, SubjectKey | DomainError>();
    for (const [subjectId, count] of known) {
      try {
        const key = await this.keys.subjectKey(tenantId, subjectId);
        if (count > 0) await this.keys.reserveEncryptions(tenantId, subjectId, count);
        keyOf.set(subjectId, key);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        keyOf.set(subjectId, err);
      }
    }
    for (const slot of slots) {
      if (slot.replay) continue;
      const key = slot.created ? (createdKeys.get(slot.subjectId!) ?? creationError) : keyOf.get(slot.subjectId!);
      if (key instanceof DomainError || key === undefined) slot.keyError = key instanceof DomainError ? key : new DomainError('UNAVAILABLE', 'SUBJECT_KEY_UNAVAILABLE', 'the subject key is unavailable');
      else slot.key = key;
    }
  }

  /** Everything that must be consistent, in one transaction; decides each slot. */
  private async transaction(
    tx: TxContext,
    tenantBefore: Tenant,
    slots: Slot[],
  ): Promise<{ decided: Map<number, Decision>; logSize: number; subjectIds: Set<string>; createdSubjects: boolean } | 'settings-changed'> {
    const tenantId = tenantBefore.id;
    const tenant = await this.tenants.require(tx, tenantId, false);
    // Events were sealed with the settings read before (expiry, keywords): changed since, start over.
    if (tenant.updatedAt !== tenantBefore.updatedAt) return 'settings-changed';
    const decided = new Map<number, Decision>();

    // Retries: of a write recorded before (its first answer), or of a write earlier in this batch.
    const stored = new Map<string, StoredConsentEvent>();
    for (const e of await this.consent.findByRequestIds(tx, tenantId, uniqueRequestIds(slots.map((s) => s.write)))) stored.set(e.requestId, e);
    const firstOf = new Map<string, Slot>();
    const writing: Slot[] = [];
    const replaying: Array<{ slot: Slot; stored: StoredConsentEvent[] }> = [];
    for (const slot of slots) {
      const { requestId, fingerprint } = slot.write;
      const earlier = stored.get(requestId);
      const twin = firstOf.get(requestId);
      if (earlier || twin) {
        const theirs = earlier ? earlier.requestFingerprint : twin!.write.fingerprint;
        if (theirs !== fingerprint) decided.set(slot.position, { kind: 'error', error: reusedRequestId(requestId) });
        else if (earlier) replaying.push({ slot, stored: [earlier, stored.get(requestId + KEYWORD_REQUEST_SUFFIX)].filter(isDefined) });
        else decided.set(slot.position, { kind: 'same-as', position: twin!.position });
        continue;
      }
      firstOf.set(requestId, slot);
      if (slot.replay) decided.set(slot.position, { kind: 'again' }); // recorded when first read, gone now: never expected
      else writing.push(slot);
    }

    // New people: someone may have created them meanwhile (then prepare again with their subject).
    const creating = writing.filter((s) => s.created);
    const nowThere = creating.length > 0 ? await this.subjects.findByIdentifiers(tx, tenantId, distinctIndexes(creating)) : new Map<string, SubjectRef>();
    for (const slot of creating) {
      if (nowThere.has(indexKey(slot.write.index))) decided.set(slot.position, { kind: 'again' });
      else if (slot.keyError) decided.set(slot.position, { kind: 'error', error: slot.keyError });
    }

    // Known people: locked in id order; an erasure that committed first shows here.
    const known = [...writing.filter((s) => !s.created && !decided.has(s.position)).map((s) => s.subjectId!), ...replaying.map((r) => r.stored[0].subjectId)];
    const locked = await this.subjects.lockMany(tx, tenantId, known);
    for (const r of replaying) {
      const person = locked.get(r.stored[0].subjectId);
      decided.set(r.slot.position, !person || person.erased ? { kind: 'error', error: erasedSince(r.slot.write.requestId) } : { kind: 'replay', stored: r.stored });
    }
    const live = writing.filter((slot) => {
      if (decided.has(slot.position)) return false;
      if (slot.created) return true;
      const person = locked.get(slot.subjectId!);
      if (!person || person.erased) {
        // The erasure takes the same lock: a write that waited for it never writes for the erased person.
        decided.set(slot.position, { kind: 'error', error: failedPrecondition('SUBJECT_ERASED', 'the subject was erased', { subject: `tenants/${tenantId}/subjects/${slot.subjectId}` }) });
        return false;
      }
      if (person.identifiersChangedAt !== slot.seenIdentifiersChange) {
        // An identifier moved off the person (rectified, reassigned) since it was looked up: look again.
        decided.set(slot.position, { kind: 'again' });
        return false;
      }
      if (slot.keyError) {
        decided.set(slot.position, { kind: 'error', error: slot.keyError });
        return false;
      }
      return true;
    });

    // Each subject's state, read once and folded event by event in batch order.
    // People this batch creates have no state yet: only the known ones are read.
    // A retry needs its person's state only for an inbound message's window (its answer says when it closes).
    const replayedInbound = replaying.filter((r) => r.stored.some((e) => e.kind === 'INBOUND_MESSAGE'));
    const states = await this.consent.loadState(tx, tenantId, [...new Set([...live.filter((s) => !s.created).map((s) => s.subjectId!), ...replayedInbound.map((r) => r.stored[0].subjectId)])]);
    const scopes = new Map<string, Map<string, ScopeState>>();
    const windows = new Map<string, Map<Channel, WindowState>>();
    const scopesOf = (subjectId: string) => {
      let m = scopes.get(subjectId);
      if (!m) scopes.set(subjectId, (m = new Map((states.get(subjectId)?.scopes ?? []).map((s) => [scopeKey(s.purposeId, s.channel), s]))));
      return m;
    };
    const windowsOf = (subjectId: string) => {
      let m = windows.get(subjectId);
      if (!m) windows.set(subjectId, (m = new Map((states.get(subjectId)?.windows ?? []).map((w) => [w.channel, w]))));
      return m;
    };
    for (const r of replaying) {
      const d = decided.get(r.slot.position)!;
      const inbound = r.stored.find((e) => e.kind === 'INBOUND_MESSAGE');
      if (d.kind === 'replay' && inbound) d.windowStart = Math.max(windowsOf(inbound.subjectId).get(inbound.channel)?.lastInboundTime ?? inbound.eventTime, inbound.eventTime);
    }

    const rows: StoredConsentEvent[] = [];
    const entries: AuditEntry[] = [];
    const optOuts: Array<{ event: ConsentEvent; entry: number }> = [];
    const changedScopes = new Map<string, { subjectId: string; scope: ScopeState }>();
    const changedWindows = new Map<string, { subjectId: string; window: WindowState }>();
    for (const slot of live) {
      const subjectId = slot.subjectId!;
      const events = slot.events!;
      if (slot.write.body.type === 'consent' && slot.write.body.kind === 'OPT_IN_CONFIRMED') {
        const pending = scopesOf(subjectId).get(scopeKey(events[0].purposeId, events[0].channel))?.optIn;
        if (pending?.kind !== 'OPT_IN_PENDING') {
          decided.set(slot.position, { kind: 'error', error: failedPrecondition('NO_PENDING_OPT_IN', 'there is no pending double opt-in to confirm for this purpose and channel') });
          continue;
        }
        if (events[0].eventTime < pending.eventTime) {
          decided.set(slot.position, { kind: 'error', error: failedPrecondition('BEFORE_PENDING_OPT_IN', 'a confirmation cannot precede the pending opt-in it confirms') });
          continue;
        }
        // A pending opt-in with an expiry is an offer to confirm until then (the privacy center's
        // links and codes stop too): a confirmation dated at or after it confirms nothing.
        if (pending.expireTime !== undefined && pending.expireTime !== null && events[0].eventTime >= pending.expireTime) {
          decided.set(slot.position, { kind: 'error', error: failedPrecondition('PENDING_OPT_IN_EXPIRED', 'the pending opt-in expired before this confirmation; a new opt-in is needed') });
          continue;
        }
        // Withdrawn after the sign-up (Art. 7(3)): the person's later confirmation of the earlier
        // step must not revive it; a new opt-in (with its notice) is what consents again.
        if (latestOptOutCovering(scopesOf(subjectId).values(), events[0].purposeId, events[0].channel) >= pending.eventTime) {
          decided.set(slot.position, { kind: 'error', error: failedPrecondition('PENDING_OPT_IN_WITHDRAWN', 'the pending opt-in was withdrawn after it was given; a new opt-in is needed') });
          continue;
        }
        // Art. 7(1): the confirmed event decides checks from now on, so it carries the notice the
        // person was shown at the pending step when the confirmation names none.
        if (!events[0].notice) {
          const notice = await this.consent.noticeOf(tx, tenantId, pending.eventId);
          if (notice) events[0] = { ...events[0], notice };
        }
      }
      let windowStart: number | undefined;
      let refused = false;
      for (let i = 0; i < events.length; i++) {
        // A withdrawal dated by this server's clock comes after every opt-in already recorded for
        // what it withdraws (the recording order says so); a clock behind the one that dated an
        // opt-in (another replica's, or this one's stepped back) must not make it lose to it.
        if (events[i].kind === 'OPT_OUT' && slot.write.body.serverDated) {
          const latest = latestOptInCovered(scopesOf(subjectId).values(), events[i].purposeId, events[i].channel);
          if (latest > events[i].eventTime) events[i] = { ...events[i], eventTime: latest };
        } else if (events[i].kind !== 'OPT_OUT' && events[i].kind !== 'INBOUND_MESSAGE' && slot.write.body.serverDated) {
          // And a consent dated by this server after such a withdrawal comes after it too: the
          // person's new opt-in must not lose to a withdrawal dated ahead by the rule above.
          const latest = latestOptOutCovering(scopesOf(subjectId).values(), events[i].purposeId, events[i].channel);
          if (latest >= events[i].eventTime) events[i] = { ...events[i], eventTime: latest + 1 };
        }
        // On the event as it will be recorded (its time adjusted above).
        const swapped = slot.write.body.type === 'consent' ? basisSwap(slot.write.body, events[i], scopesOf(subjectId), windowsOf(subjectId), slot.created ? undefined : locked.get(subjectId), slot.write.recordTime) : null;
        if (swapped) {
          decided.set(slot.position, { kind: 'error', error: swapped });
          refused = true;
          break;
        }
        const event = events[i];
        const sealed = sealEvent(event, slot.key!, slot.write.fingerprint);
        rows.push(sealed);
        entries.push(auditEntryOf(event, sealed));
        if (event.kind === 'INBOUND_MESSAGE') {
          const before = windowsOf(subjectId).get(event.channel);
          const after = applyToWindow(before, event.channel, event.id, event.eventTime);
          windowsOf(subjectId).set(event.channel, after);
          if (after !== before) changedWindows.set(`${subjectId}\u0000${event.channel}`, { subjectId, window: after });
          windowStart = after.lastInboundTime;
          continue;
        }
        if (event.kind === 'OPT_OUT') optOuts.push({ event, entry: entries.length - 1 });
        const key = scopeKey(event.purposeId, event.channel);
        const before = scopesOf(subjectId).get(key);
        const after = applyToScope(before ?? { purposeId: event.purposeId, channel: event.channel }, { id: event.id, kind: event.kind, eventTime: event.eventTime, expireTime: event.expireTime });
        if (after !== before) {
          scopesOf(subjectId).set(key, after);
          changedScopes.set(`${subjectId}\u0000${key}`, { subjectId, scope: after });
        }
      }
      if (!refused) decided.set(slot.position, { kind: 'written', events, windowStart });
    }

    // New people, only those with something recorded: a write that failed leaves no identifier behind.
    const newSubjects = new Map<string, Slot>();
    for (const slot of live) if (slot.created && decided.get(slot.position)?.kind === 'written' && !newSubjects.has(slot.subjectId!)) newSubjects.set(slot.subjectId!, slot);
    if (newSubjects.size > 0) {
      const created = [...newSubjects.values()];
      await this.subjects.insertMany(
        tx,
        created.map((slot) => ({ id: slot.subjectId!, tenantId, createdAt: slot.write.recordTime })),
        created.map((slot) => ({
          kind: slot.write.index.kind,
          blindIndex: slot.write.index.blindIndex,
          tenantId,
          subjectId: slot.subjectId!,
          createdAt: slot.write.recordTime,
          valueCiphertext: encryptField(
            slot.key!.key,
            slot.key!.kid,
            { tenant: tenantId, subject: slot.subjectId!, table: 'subject_identifiers', column: 'value_ciphertext', row: indexKey(slot.write.index) },
            slot.write.identifier.value,
          ),
        })),
      );
    }

    let logSize = 0;
    if (rows.length === 0 && replaying.length > 0) {
      // Only retries: their token must cover the first calls' entries, all below the committed size.
      logSize = await this.audit.committedSize(tx, tenantId);
    }
    if (rows.length > 0) {
      // Rows inserted under the head lock, in the order of their entries (docs/audit.md, "Order").
      const first = await this.audit.appendAfter(tx, tenantId, async () => {
        await this.consent.insertEvents(tx, rows);
        return entries;
      });
      if (optOuts.length > 0) {
        // Senders drop cached permissions from the feed; its position is the opt-out's log position.
        await this.changes.append(
          tx,
          optOuts.map(({ event, entry }): Omit<ChangeRecord, 'seq'> => ({
            tenantId,
            kind: 'OPT_OUT',
            subjectId: event.subjectId,
            purposeId: event.purposeId,
            channel: event.channel,
            eventId: event.id,
            at: event.recordTime,
            auditSeq: first + entry,
          })),
        );
      }
      await this.consent.saveStates(tx, tenantId, [...changedScopes.values()], [...changedWindows.values()]);
      logSize = first + entries.length;
    }
    return { decided, logSize, subjectIds: new Set(rows.map((r) => r.subjectId)), createdSubjects: newSubjects.size > 0 };
  }

  /** What a committed batch recorded, for the metrics: each inbound message, and the events by kind (a keyword's too). */
  private report(metrics: WriteMetrics, tenantId: string, slots: Slot[], decided: Map<number, Decision>, seconds: number): void {
    metrics.batchCommitted(slots.length, seconds);
    for (const slot of slots) {
      const d = decided.get(slot.position);
      if (d?.kind !== 'written') continue;
      if (slot.write.body.type === 'inbound') metrics.written(tenantId, 'INBOUND_MESSAGE');
      for (const event of d.events) metrics.written(tenantId, event.kind);
    }
  }

  /** The answer of a retry: its first call's events, opened (decrypted) outside the transaction. */
  private async replayOutcome(d: Extract<Decision, { kind: 'replay' }>, serviceWindowMs: number, slot: Slot, logSize: number): Promise<ItemOutcome<WriteResult>> {
    try {
      // An import's answer counts rows and never shows evidence: its retries are answered without
      // reading the person's key (a file run again an hour later read a thousand keys per batch).
      const needsKey = !slot.write.imported && d.stored.some((e) => e.evidenceCiphertext !== null);
      const key = needsKey ? await this.keys.subjectKey(d.stored[0].tenantId, d.stored[0].subjectId) : null;
      const events = d.stored.map((e) => openEvent(e, key));
      const inbound = slot.write.body.type === 'inbound';
      return { ok: { events, replayed: true, windowExpireTime: inbound && d.windowStart !== undefined ? d.windowStart + serviceWindowMs : undefined, logSize } };
    } catch (err) {
      return { error: err };
    }
  }
}

/** The answer of a slot decided without a retry (written, or refused); no promise per write. */
function outcomeOf(d: Exclude<Decision, { kind: 'replay' }>, serviceWindowMs: number, slot: Slot, logSize: number): ItemOutcome<WriteResult> {
  if (d.kind === 'error') return { error: d.error };
  if (d.kind === 'written') {
    const inbound = slot.write.body.type === 'inbound';
    return { ok: { events: d.events, replayed: false, windowExpireTime: inbound && d.windowStart !== undefined ? d.windowStart + serviceWindowMs : undefined, logSize } };
  }
  return { error: new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'retry') };
}

/**
 * The events a prepared write records (ids, kinds, expiry), with its evidence in plaintext.
 * Every field is written out in each literal, with no object spread: on Node.js 20 a literal of a
 * spread followed by a dozen fields took tens of microseconds per object (docs/benchmarks.md,
 * "Writes (issue 14): after trimming the write path").
 */
function buildEvents(slot: Slot, settings: TenantSettings): ConsentEvent[] {
  const w = slot.write;
  const subjectId = slot.subjectId!;
  if (w.body.type === 'consent') {
    const b = w.body;
    const optIn = OPT_IN_KINDS.has(b.kind);
    return [
      {
        tenantId: w.tenantId,
        subjectId,
        recordTime: w.recordTime,
        principal: w.principal,
        id: newEventId(),
        kind: b.kind,
        purposeId: b.purposeId,
        channel: b.channel,
        eventTime: b.eventTime,
        method: b.method,
        notice: b.notice,
        evidence: b.evidence,
        lawfulBasis: optIn ? (b.lawfulBasis ?? 'CONSENT') : null,
        jurisdiction: b.jurisdiction,
        expireTime: optIn ? (b.expireTime ?? defaultExpiry(settings, b.purposeId, b.eventTime)) : undefined,
        requestId: w.requestId,
      },
    ];
  }
  const b = w.body;
  const inbound = (kind: ConsentEvent['kind'], method: CollectionMethod, requestId: string): ConsentEvent => ({
    tenantId: w.tenantId,
    subjectId,
    recordTime: w.recordTime,
    principal: w.principal,
    id: newEventId(),
    kind,
    purposeId: ALL_PURPOSES,
    channel: b.channel,
    eventTime: b.eventTime,
    method,
    evidence: b.messageId ? { inboundMessageId: b.messageId } : {},
    lawfulBasis: null,
    jurisdiction: '',
    requestId,
  });
  const events: ConsentEvent[] = [inbound('INBOUND_MESSAGE', 'CHAT_MESSAGE', w.requestId)];
  const match = matchKeyword(b.text, settings);
  if (match) events.push(inbound(match, 'KEYWORD', w.requestId + KEYWORD_REQUEST_SUFFIX));
  return events;
}

/**
 * When an opt-in without its own expire_time lapses: the purpose's validity if it has one, else
 * the tenant's default, each given either as a duration or in calendar months (validated to be
 * one or the other). Fixed when the opt-in is recorded, so a later policy change does not move it.
 */
export function defaultExpiry(s: TenantSettings, purposeId: string, eventTime: number): number | undefined {
  const months = s.purposeConsentValidityMonths[purposeId];
  if (months > 0) return addCalendarMonths(eventTime, months);
  const ms = s.purposeConsentValidityMs[purposeId];
  if (ms > 0) return eventTime + ms;
  if (purposeId in s.purposeConsentValidityMs) return undefined; // 0 for this purpose: no expiry
  if (s.defaultConsentValidityMonths > 0) return addCalendarMonths(eventTime, s.defaultConsentValidityMonths);
  return s.defaultConsentValidityMs > 0 ? eventTime + s.defaultConsentValidityMs : undefined;
}

/** The audit entry of a recorded consent event (also used by the objection's opt-outs). */
export function auditEntryOf(event: ConsentEvent, sealed: StoredConsentEvent): AuditEntry {
  // The evidence ciphertext's hash is in the entry and in the record hash: computed once.
  const payloadSha256 = sealed.evidenceCiphertext ? sha256Hex(sealed.evidenceCiphertext) : null;
  return {
    type: `CONSENT_EVENT_${event.kind}`,
    time: event.recordTime,
    principal: event.principal,
    subject: event.subjectId,
    purpose: event.purposeId,
    channel: event.channel,
    noticeSha256: event.notice?.textSha256,
    payloadSha256: payloadSha256 ?? undefined,
    ref: event.id,
    eventTime: event.eventTime,
    expireTime: event.expireTime,
    recordSha256: eventRecordSha256(sealed, payloadSha256),
  };
}

/**
 * The latest event time of the opt-ins an opt-out of (purposeId, channel) withdraws: of the
 * purpose (any, for an all-purpose opt-out) on the channel, an opt-in on every channel (ANY)
 * included, and every channel's for an opt-out on ANY; 0 when there is none.
 */
function latestOptInCovered(scopes: Iterable<ScopeState>, purposeId: string, channel: Channel): number {
  let latest = 0;
  for (const s of scopes) {
    if (!s.optIn) continue;
    if (purposeId !== ALL_PURPOSES && s.purposeId !== purposeId) continue;
    if (channel !== 'ANY' && s.channel !== 'ANY' && s.channel !== channel) continue;
    if (s.optIn.eventTime > latest) latest = s.optIn.eventTime;
  }
  return latest;
}

/**
 * Art. 21(3), Art. 7(3): once the person objected to direct marketing or withdrew it, only their
 * own consent allows it again, not a basis the business claims instead (legitimate interests, a
 * contract: the EDPB's "no swapping of lawful basis"). An opt-in for a MARKETING purpose whose
 * lawful basis is not CONSENT is refused where it would be what allows marketing again: the rules
 * themselves (decide) answer, for each channel it covers, DENY OBJECTED or OPTED_OUT before it is
 * folded in and ALLOW after. Earlier-dated ones (history), ones beside a consent in force and a
 * fresh person's are recorded. Found by a probe: such an opt-in turned DENY OBJECTED into ALLOW.
 */
function basisSwap(
  body: ConsentBody,
  event: ConsentEvent,
  scopes: Map<string, ScopeState>,
  windows: Map<Channel, WindowState>,
  person: SubjectRef | undefined,
  now: number,
): DomainError | null {
  if (!body.marketing || body.kind === 'OPT_OUT' || body.lawfulBasis === undefined || body.lawfulBasis === 'CONSENT') return null;
  const base = { subjectId: event.subjectId, erased: false, suppressed: false, windows: [...windows.values()], objectedAt: person?.objectedAt, reassignedAt: person?.reassignedAt };
  const key = scopeKey(event.purposeId, event.channel);
  const folded = applyToScope(scopes.get(key) ?? { purposeId: event.purposeId, channel: event.channel }, { id: event.id, kind: body.kind, eventTime: event.eventTime, expireTime: event.expireTime });
  const before: SubjectFacts = { ...base, scopes: [...scopes.values()] };
  const after: SubjectFacts = { ...base, scopes: [...[...scopes.entries()].filter(([k]) => k !== key).map(([, v]) => v), folded] };
  const at = Math.max(now, event.eventTime);
  for (const channel of event.channel === 'ANY' ? SEND_CHANNELS : [event.channel]) {
    const target = { purposeId: event.purposeId, category: 'MARKETING' as const, channel };
    const was = decide(before, target, at, 0);
    if (was.allow || (was.reason !== 'OBJECTED' && was.reason !== 'OPTED_OUT') || !decide(after, target, at, 0).allow) continue;
    return was.reason === 'OBJECTED'
      ? failedPrecondition('OBJECTED', 'the person objected to direct marketing: only their consent (lawful_basis CONSENT) allows it again, not another lawful basis')
      : failedPrecondition('OPTED_OUT', 'the person withdrew this: only their consent (lawful_basis CONSENT) allows it again, not another lawful basis');
  }
  return null;
}

const SEND_CHANNELS: readonly SendChannel[] = ['WHATSAPP', 'SMS', 'EMAIL', 'PUSH', 'VOICE'];

/**
 * The latest event time of the opt-outs an opt-in of (purposeId, channel) must come after to
 * apply: of the purpose or of all purposes, on its channel, on every channel (ANY), or any channel
 * for an opt-in on ANY; -1 when there is none.
 */
function latestOptOutCovering(scopes: Iterable<ScopeState>, purposeId: string, channel: Channel): number {
  let latest = -1;
  for (const s of scopes) {
    if (!s.optOut) continue;
    if (s.purposeId !== ALL_PURPOSES && s.purposeId !== purposeId) continue;
    if (channel !== 'ANY' && s.channel !== 'ANY' && s.channel !== channel) continue;
    if (s.optOut.eventTime > latest) latest = s.optOut.eventTime;
  }
  return latest;
}

/**
 * A write that may grant something (an opt-in of any kind, an inbound message opening a window;
 * an opt-out keyword is let through where the settings are known) dated before it was recorded:
 * it may be the erased person's old consent sent again. Writes without an event time are dated
 * when recorded and never need the tombstones read; one whose caller gave a time (a gateway's
 * receipt time, a click a moment ago) reads them with its batch.
 */
function backdatedGrant(w: PreparedWrite): boolean {
  if (w.body.eventTime >= w.recordTime) return false;
  return w.body.type === 'inbound' || w.body.kind !== 'OPT_OUT';
}

function isImport(w: PreparedWrite): boolean {
  return w.imported || (w.body.type === 'consent' && w.body.method === 'IMPORT');
}

/** AES-GCM encryptions a write makes under its person's key: one per event with evidence. */
function evidenceEncryptions(w: PreparedWrite): number {
  if (w.body.type === 'consent') return hasEvidence(w.body.evidence) ? 1 : 0;
  // The inbound message carries its message id; a keyword event shares it.
  return w.body.messageId ? 2 : 0;
}

function uniqueRequestIds(writes: PreparedWrite[]): string[] {
  const ids = new Set<string>();
  for (const w of writes) {
    ids.add(w.requestId);
    if (w.body.type === 'inbound') ids.add(w.requestId + KEYWORD_REQUEST_SUFFIX);
  }
  return [...ids];
}

function distinctIndexes(slots: Slot[]): IdentifierIndex[] {
  const seen = new Map<string, IdentifierIndex>();
  for (const s of slots) seen.set(indexKey(s.write.index), s.write.index);
  return [...seen.values()];
}

function indexKey(index: IdentifierIndex): string {
  return `${index.kind}:${index.blindIndex}`;
}

function scopeKey(purposeId: string, channel: Channel): string {
  return `${purposeId}\u0000${channel}`;
}

function reusedRequestId(requestId: string): DomainError {
  return failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: requestId });
}

function erasedSince(requestId: string): DomainError {
  return failedPrecondition('SUBJECT_ERASED', 'the person this request was recorded for has been erased since', { request_id: requestId });
}

/** Errors that say nothing about one write in particular: the database, the tenant, a collision. */
function isExpected(err: unknown): boolean {
  return err instanceof DomainError;
}

function isDefined<T>(value: T | undefined): value is T {
  return value !== undefined;
}

function newEventId(): string {
  return newId();
}

/** Random bytes for ids, drawn from a block of the CSPRNG (ids are not key material: no buffer of their own). */
const ID_RANDOM_BYTES = 10;
const idRandom = Buffer.allocUnsafeSlow(4096);
let idRandomOffset = idRandom.length;

/**
 * A new subject or event id, 32 hex digits: the time in milliseconds (12 digits), then 80 random
 * bits. Ids made one after another sort one after another, so the indexes keyed by them (subjects,
 * subject keys, states, a person's events and audit entries, event ids) grow at their end rather
 * than at random places: a bulk import of new people dirties a few index pages per batch instead
 * of one page per row and index (docs/benchmarks.md, "Import"). Still unguessable; it tells when
 * the id was made, which the record's own times say anyway.
 */
export function newId(): string {
  if (idRandomOffset + ID_RANDOM_BYTES > idRandom.length) {
    randomFillSync(idRandom);
    idRandomOffset = 0;
  }
  const random = idRandom.toString('hex', idRandomOffset, idRandomOffset + ID_RANDOM_BYTES);
  idRandomOffset += ID_RANDOM_BYTES;
  return Date.now().toString(16).padStart(12, '0') + random;
}
