import { AuditLog } from '../audit/audit-log';
import { verifyConsistency } from '../audit/merkle';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { CheckQuery, ConsentChecker, DecisionBasis } from './consent-checker';
import { Decision, readsFor } from './consent-rules';
import { EventKind } from './model';
import { eventRecordSha256 } from './event-codec';
import { Violations } from '../shared/errors';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from './pagination';
import { AuditEntryFilter, CheckpointRecord, StoredAuditEntry } from '../audit/audit-types';
import { ConsentRepository, StoredConsentEvent } from './ports';
import { TransactionRunner } from '../shared/unit-of-work';
import { Principal } from './principal';
import { names } from './resource-names';
import { SubjectDirectory } from './subject-directory';
import { SUBJECT_OBJECTED } from './objection';
import { IDENTIFIER_REASSIGNED } from './identifier-reassignment';
import { TenantService } from './tenant-service';
import { characterCount } from '../shared/text';

export interface SignedCheckpoint {
  size: number;
  rootHex: string;
  time: number;
  signed: string;
}

/** Filters of ListAuditEntries as the transport hands them over (names already parsed). */
export interface AuditEntryQuery {
  identifier?: RawIdentifier;
  subjectId?: string;
  purposeId?: string;
  types: string[];
  principal?: string;
  startTime?: number;
  endTime?: number;
}

/** A consent event row as stored, with the hash its audit entry must carry. */
export interface ConsentRecord {
  event: StoredConsentEvent;
  recordSha256: string;
}

/** An entry with its inclusion proof and, for consent events, the row it vouches for. */
export interface ExplainedEntry {
  /** Unset for an event row that has no audit entry (a row added behind the service's back). */
  entry?: StoredAuditEntry;
  proof: Buffer[];
  /** Unset for a non-event entry, or for an entry whose event row is gone. */
  record?: ConsentRecord;
}

export interface Explanation {
  decision: Decision;
  basis: Omit<DecisionBasis, 'decision' | 'events'>;
  checkpoint: SignedCheckpoint;
  entries: ExplainedEntry[];
  /**
   * Erasures in the tenant after the asked time (within the checkpoint). Not 0: the evidence of
   * an erased person is no longer reachable by identifier, so the reconstruction may be missing
   * what decided the answer then; it is complete only for a person not erased since.
   */
  erasuresSince: number;
}

/** Entry types that decide a check: consent events (by kind) and the subject's erasure. */
const DECIDING_TYPES = ['CONSENT_EVENT_OPT_IN', 'CONSENT_EVENT_OPT_OUT', 'CONSENT_EVENT_OPT_IN_PENDING', 'CONSENT_EVENT_OPT_IN_CONFIRMED', 'CONSENT_EVENT_INBOUND_MESSAGE', 'SUBJECT_ERASED', SUBJECT_OBJECTED, 'RESTRICTION_PLACED', 'RESTRICTION_LIFTED', IDENTIFIER_REASSIGNED];
/** Principal of checkpoints the service signs on its own schedule. */
export const CHECKPOINT_PRINCIPAL = 'system:audit-checkpointer';

/**
 * The auditor's view of a tenant's log: signed checkpoints, entries, proofs, explained decisions
 * and the event rows to cross-check. Everything it returns is checkable without trusting the
 * server (consentctl audit verify / explain).
 */
export class AuditService {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly log: AuditLog,
    private readonly tenants: TenantService,
    private readonly directory: SubjectDirectory,
    private readonly consent: ConsentRepository,
    private readonly checker: ConsentChecker,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly pages: PageLimits,
  ) {}

  async checkpoint(principal: Principal, tenantId: string): Promise<SignedCheckpoint> {
    await this.requireTenant(principal, tenantId);
    return this.sign(tenantId);
  }

  /**
   * Signs and keeps a checkpoint of every tenant whose log grew since its last kept one; the
   * periodic job. A tenant that cannot be signed for (erased meanwhile, key store unreachable)
   * is counted as failed and tried again next time; the others still get theirs.
   */
  async checkpointAll(): Promise<{ signed: number; failed: number; inconsistent: Array<{ tenantId: string; problem: string }> }> {
    let signed = 0;
    let failed = 0;
    const inconsistent: Array<{ tenantId: string; problem: string }> = [];
    for (const tenantId of await this.log.tenantsWithoutLatestCheckpoint()) {
      try {
        // The service is the first witness of its own log: it never signs a log that does not
        // extend the checkpoint it kept last (one rewritten in the database behind it).
        const problem = await this.departureFromLastKept(tenantId);
        if (problem) {
          inconsistent.push({ tenantId, problem });
          continue;
        }
        const c = await this.sign(tenantId);
        await this.log.keepCheckpoint({ tenantId, treeSize: c.size, rootHash: c.rootHex, signedAt: c.time, jws: c.signed });
        signed++;
      } catch {
        failed++;
      }
    }
    return { signed, failed, inconsistent };
  }

  /**
   * Why the tenant's log does not extend its last kept checkpoint (as signed, where its key is
   * still there to verify it: else as kept), or null when it does: a consistency proof from the
   * stored tree, checked against the kept root.
   */
  private async departureFromLastKept(tenantId: string): Promise<string | null> {
    const [kept] = await this.log.checkpoints(tenantId, null, 1);
    if (!kept) return null;
    const signedForm = (await this.keys.verify(tenantId, kept.jws, 'audit-checkpoint+jwt')) as { treeSize?: unknown; rootHash?: unknown } | null;
    if (signedForm && (signedForm.treeSize !== kept.treeSize || signedForm.rootHash !== kept.rootHash)) {
      return `the kept checkpoint of size ${kept.treeSize} differs from what it signed`;
    }
    // Unverifiable is fine only when the key store holds its signing key as destroyed (by a
    // rotation); a kept checkpoint that names a live key, or no key the store knows, was replaced.
    if (!signedForm) {
      const kid = jwsKeyId(kept.jws);
      if (kid === undefined || !(await this.keys.signingKeyDestroyed(tenantId, kid))) return `the kept checkpoint of size ${kept.treeSize} does not verify with the tenant's signing key`;
    }
    const head = await this.log.head(tenantId);
    if (head.size < kept.treeSize) return `the log holds ${head.size} entries, fewer than the ${kept.treeSize} of its last kept checkpoint`;
    const proof = await this.log.consistencyProof(tenantId, kept.treeSize, head.size);
    try {
      verifyConsistency(BigInt(kept.treeSize), BigInt(head.size), proof, Buffer.from(kept.rootHash, 'hex'), head.root);
    } catch {
      return `the log no longer extends its last kept checkpoint (size ${kept.treeSize}): entries before it were changed`;
    }
    return null;
  }

  async listCheckpoints(principal: Principal, tenantId: string, pageSize: number, pageToken: string): Promise<{ items: CheckpointRecord[]; nextPageToken: string }> {
    const v = new Violations();
    const size = resolvePageSize(pageSize, this.pages, v);
    v.throwIfAny();
    await this.requireTenant(principal, tenantId);
    const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'audit_checkpoints');
    const before = decodePageToken<number>(pageToken, { tenantId }, 'number', sealer, v);
    v.throwIfAny();
    const rows = await this.log.checkpoints(tenantId, before, size + 1);
    const items = rows.slice(0, size);
    return { items, nextPageToken: rows.length > size ? encodePageToken(items[items.length - 1].treeSize, { tenantId }, sealer) : '' };
  }

  async entries(principal: Principal, tenantId: string, start: number, pageSize: number, query: AuditEntryQuery) {
    const v = new Violations();
    const size = resolvePageSize(pageSize, this.pages, v);
    v.check(Number.isInteger(start) && start >= 0, 'start_index', 'OUT_OF_RANGE', 'must not be negative');
    const identifier = query.identifier ? normaliseIdentifier(query.identifier, 'subject_identifier') : undefined;
    if (identifier && isViolation(identifier)) v.add(identifier.field, identifier.reason, identifier.description);
    if (identifier && query.subjectId) v.add('subject', 'CONFLICTING_FILTERS', 'give subject or subject_identifier, not both');
    if (query.startTime !== undefined && query.endTime !== undefined) v.check(query.startTime < query.endTime, 'end_time', 'INVALID_RANGE', 'must be after start_time');
    for (const [i, type] of query.types.entries()) v.check(/^[A-Z][A-Z0-9_]{0,39}$/.test(type), `entry_types[${i}]`, 'INVALID_FORMAT', 'must be an entry type such as CONSENT_EVENT_OPT_OUT');
    v.check(query.principal === undefined || characterCount(query.principal) <= 128, 'principal', 'TOO_LONG', 'must be at most 128 characters');
    v.throwIfAny();
    await this.requireTenant(principal, tenantId);
    const logSize = await this.log.size(tenantId);
    const filter: AuditEntryFilter = { types: query.types, subjectId: query.subjectId, purposeId: query.purposeId, principal: query.principal, startTime: query.startTime, endTime: query.endTime, beforeSeq: logSize };
    if (identifier && !isViolation(identifier)) {
      const keyring = await this.keys.tenantKeyring(tenantId);
      const subject = await this.tx.read((tx) => this.directory.find(tx, keyring, identifier));
      // Nobody with this identifier: no entries, the same answer as a subject without any.
      if (!subject) return { entries: [], nextIndex: logSize };
      filter.subjectId = subject.subjectId;
    }
    const entries = await this.log.entries(tenantId, start, size, filter);
    // A full page may have more after it; a short one means nothing else matches up to the size
    // read, so the next page starts at that size (also for a start past the end: a client that
    // tails the log from there sees the entries appended next, none skipped).
    const nextIndex = entries.length === size ? entries[entries.length - 1].seq + 1 : logSize;
    return { entries, nextIndex };
  }

  async inclusionProof(principal: Principal, tenantId: string, index: number, treeSize: number): Promise<Buffer[]> {
    await this.requireTenant(principal, tenantId);
    const size = await this.log.size(tenantId);
    const v = new Violations();
    v.check(treeSize >= 1 && treeSize <= size, 'tree_size', 'OUT_OF_RANGE', `must be 1 to the log size ${size}`);
    v.check(index >= 0 && index < treeSize, 'index', 'OUT_OF_RANGE', 'must be below tree_size');
    v.throwIfAny();
    return this.log.inclusionProof(tenantId, index, treeSize);
  }

  async consistencyProof(principal: Principal, tenantId: string, first: number, second: number): Promise<Buffer[]> {
    await this.requireTenant(principal, tenantId);
    const size = await this.log.size(tenantId);
    const v = new Violations();
    v.check(second >= 0 && second <= size, 'second_size', 'OUT_OF_RANGE', `must be 0 to the log size ${size}`);
    v.check(first >= 0 && first <= second, 'first_size', 'OUT_OF_RANGE', 'must be 0 to second_size');
    v.throwIfAny();
    return this.log.consistencyProof(tenantId, first, second);
  }

  /**
   * CheckConsent's answer with its grounds: the subject's deciding entries (consent events read
   * for this purpose and channel, and an erasure) under a checkpoint signed now, each with its
   * inclusion proof and the event row it vouches for. Rows and entries are paired by event id and
   * handed over as found, mismatches included: judging them is the verifier's job, not ours.
   */
  async explain(principal: Principal, tenantId: string, query: CheckQuery): Promise<Explanation> {
    const { decision, events, ...basis } = await this.checker.explain(principal, tenantId, query);
    const checkpoint = await this.sign(tenantId);
    const entries: ExplainedEntry[] = [];
    if (basis.subject) {
      const subjectId = basis.subject.subjectId;
      const subjectEntries = await this.allEntries(tenantId, { subjectId, types: DECIDING_TYPES }, checkpoint.size);
      // Every row of the subject, so an entry meets its row even when the row now says something else.
      const rows = new Map((await this.tx.read((tx) => this.consent.eventsRecordedBy(tx, tenantId, subjectId, Number.MAX_SAFE_INTEGER))).map((e) => [e.id, e]));
      const read = new Set(events.map((e) => e.id));
      const paired = new Set<string>();
      const withRecord = (row: StoredConsentEvent | undefined) => (row ? { event: row, recordSha256: eventRecordSha256(row) } : undefined);
      for (const entry of subjectEntries) {
        const fields = JSON.parse(entry.entryJson) as { type: string; ref?: string; time: number; purpose?: string; channel?: string; eventTime?: number };
        if (fields.type === 'SUBJECT_ERASED') {
          entries.push({ entry, proof: [] });
        } else if (fields.type === IDENTIFIER_REASSIGNED) {
          // The reassignment that made this subject (rule 1c), once recorded; not one that later
          // moved the identifier off it (its opt-outs are listed like any).
          if (fields.eventTime === basis.subject.reassignedAt && fields.time <= Math.min(basis.at, checkpoint.time)) entries.push({ entry, proof: [] });
        } else if (fields.type === 'RESTRICTION_PLACED' || fields.type === 'RESTRICTION_LIFTED') {
          // Art. 18: restrictions of the person and their lifting, once recorded.
          if (fields.time <= Math.min(basis.at, checkpoint.time)) entries.push({ entry, proof: [] });
        } else if (fields.type === SUBJECT_OBJECTED) {
          // The standing objection (Art. 21(3)) the rules read for MARKETING, once recorded.
          if (basis.category === 'MARKETING' && fields.time <= Math.min(basis.at, checkpoint.time)) entries.push({ entry, proof: [] });
        } else if (fields.ref !== undefined && (read.has(fields.ref) || (fields.time <= Math.min(basis.at, checkpoint.time) && readsFor(eventOf(fields), query)))) {
          // Unset record: the log vouches for an event the rules should have read, and its row is gone.
          entries.push({ entry, proof: [], record: withRecord(rows.get(fields.ref)) });
          paired.add(fields.ref);
        }
      }
      for (const row of events) if (!paired.has(row.id)) entries.push({ proof: [], record: withRecord(row) });
      const proven = entries.filter((e) => e.entry);
      const proofs = await this.log.inclusionProofs(tenantId, proven.map((e) => e.entry!.seq), checkpoint.size);
      proven.forEach((e, i) => (e.proof = proofs[i]));
    }
    const erasuresSince = await this.log.count(tenantId, { types: ['SUBJECT_ERASED'], startTime: basis.at + 1, beforeSeq: checkpoint.size });
    return { decision, basis, checkpoint, entries, erasuresSince };
  }

  /** The tenant's consent event rows in recording order, with their record hashes. */
  async consentRecords(principal: Principal, tenantId: string, pageSize: number, pageToken: string): Promise<{ items: ConsentRecord[]; nextPageToken: string }> {
    const v = new Violations();
    const size = resolvePageSize(pageSize, this.pages, v);
    v.throwIfAny();
    await this.requireTenant(principal, tenantId);
    const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'consent_records');
    const after = decodePageToken<number>(pageToken, { tenantId }, 'number', sealer, v) ?? 0;
    v.throwIfAny();
    const rows = await this.tx.read((tx) => this.consent.list(tx, tenantId, {}, after, size + 1));
    const page = rows.slice(0, size);
    return {
      items: page.map(({ event }) => ({ event, recordSha256: eventRecordSha256(event) })),
      nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1].seq, { tenantId }, sealer) : '',
    };
  }

  private async sign(tenantId: string): Promise<SignedCheckpoint> {
    const { size, root } = await this.log.head(tenantId);
    const time = this.clock.now();
    const signed = await this.keys.sign(
      tenantId,
      { tenant: names.tenant(tenantId), treeSize: size, rootHash: root.toString('hex'), time: new Date(time).toISOString() },
      'audit-checkpoint+jwt',
      time,
    );
    return { size, rootHex: root.toString('hex'), time, signed };
  }

  /** Every entry matching `filter` below `size`, in order. */
  private async allEntries(tenantId: string, filter: AuditEntryFilter, size: number): Promise<StoredAuditEntry[]> {
    const all: StoredAuditEntry[] = [];
    for (let from = 0; ; ) {
      const page = await this.log.entries(tenantId, from, 1000, { ...filter, beforeSeq: size });
      all.push(...page);
      if (page.length < 1000) return all;
      from = page[page.length - 1].seq + 1;
    }
  }

  private async requireTenant(principal: Principal, tenantId: string): Promise<void> {
    authorizeTenant(principal, tenantId);
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
  }
}

/** The event a consent-event entry describes, in the shape the rules read. */
function eventOf(entry: { type: string; purpose?: string; channel?: string }): { kind: EventKind; purposeId?: string; channel?: string } {
  return { kind: entry.type.slice('CONSENT_EVENT_'.length) as EventKind, purposeId: entry.purpose, channel: entry.channel };
}

/** The key id a compact JWS's protected header names, if it is readable. */
function jwsKeyId(token: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid?: unknown };
    return typeof header.kid === 'string' ? header.kid : undefined;
  } catch {
    return undefined;
  }
}
