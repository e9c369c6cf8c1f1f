import { KeyManager, TenantKeyring } from '../crypto/key-manager';
import { BLIND_INDEX_WORKER_MIN_INPUTS } from '../crypto/blind-index-workers';
import { authorizeTenant } from './authorization';
import { CheckTarget, decide, Decision, foldEvents, readsFor, SubjectFacts } from './consent-rules';
import { Clock } from './clock';
import { DomainError, FieldViolation, invalidArgument } from '../shared/errors';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { IdentifierRef, Purpose, PurposeCategory, SendChannel, Tenant } from './model';
import { ConsentRepository, DecisionStateRepository, IdentifierIndex, StoredConsentEvent, SubjectRef, SubjectRepository, SubjectStateRows } from './ports';
import { BOUNDED, Consistency } from './consistency';
import { CachedIdentifier, DecisionCache, ERASED, identifierState } from './decision-cache';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { Principal } from './principal';
import { PurposeService } from './purpose-service';
import { TenantService } from './tenant-service';

/** One question, as the transport hands it over (already shape-checked). */
export interface CheckQuery {
  identifier: RawIdentifier | undefined;
  /** A purpose id, or null for a category-only check. */
  purposeId: string | null;
  category: PurposeCategory | null;
  channel: SendChannel | null;
  at?: number;
  /** Shape violations the transport found; the query is answered with INVALID_ARGUMENT. */
  violations: FieldViolation[];
  /** The transport could not decode the query's fields (only `violations` say anything about it). */
  undecoded?: boolean;
  /** Path of the query in its request ("query", "queries[3]"), for field violations. */
  fieldPrefix: string;
}

/** A decision with what it rests on (ConsentChecker.explain). */
export interface DecisionBasis {
  decision: Decision;
  /** The time decided for. */
  at: number;
  category: PurposeCategory;
  /** The purpose may be used while the person's processing is restricted (Art. 18(2)). */
  allowedWhileRestricted: boolean;
  serviceWindowMs: number;
  /** Unset for a person the tenant never recorded. */
  subject?: SubjectRef;
  /**
   * The subject's events recorded by `at` (and by now) that the rules read, in recording order;
   * if there are none, the subject's first event, which shows the person was known by then.
   */
  events: StoredConsentEvent[];
}

/** Each query's own outcome: a decision, or the error that prevented one. */
export type CheckOutcome = { decision: Decision } | { error: DomainError };

interface PreparedQuery {
  position: number;
  index: IdentifierIndex;
  /** key(index), made once. */
  key: string;
  target: CheckTarget;
  at: number;
  live: boolean;
}

/** A query checked and its identifier normalised, before its blind index is known. */
interface AcceptedQuery {
  position: number;
  identifier: IdentifierRef;
  target: CheckTarget;
  at: number;
  live: boolean;
}

function preparedOf(query: AcceptedQuery, blindIndex: string): PreparedQuery {
  const index: IdentifierIndex = { kind: query.identifier.kind, blindIndex };
  return { position: query.position, index, key: key(index), target: query.target, at: query.at, live: query.live };
}

/**
 * Answers "may I send this now?" for one query or many. Queries of a batch are answered
 * independently: a malformed one gets its own INVALID_ARGUMENT, the others their decisions.
 * When the state cannot be read the whole call fails with UNAVAILABLE: never a guessed ALLOW.
 *
 * A question about now is answered from the decision cache when it holds the identifier and is
 * proven within the staleness bound (and as fresh as a consistency token asks); otherwise the
 * identifiers it lacks are read in one statement and kept. A question about a past moment replays
 * the person's events up to it, from the database.
 */
export class ConsentChecker {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly subjects: SubjectRepository,
    private readonly consent: ConsentRepository,
    private readonly decisionState: DecisionStateRepository,
    private readonly tenants: TenantService,
    private readonly purposes: PurposeService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    /** Null: every check reads the database (DECISION_CACHE_ENTRIES=0). */
    private readonly cache: DecisionCache | null,
    private readonly monotonic: () => number = () => performance.now(),
  ) {}

  /** Decides a single query; its errors are thrown. */
  async checkOne(principal: Principal, tenantId: string, query: CheckQuery, consistency: Consistency = BOUNDED): Promise<Decision> {
    const outcome = (await this.checkMany(principal, tenantId, [query], consistency))[0];
    if ('error' in outcome) throw outcome.error;
    return outcome.decision;
  }

  /**
   * Decides each query independently, answers in order. A question about now that the caches
   * answer costs one turn of the event loop (the tenant keyring); a bulk call (64 questions or
   * more) also waits for its blind indexes when a worker thread hashes them, and every other await
   * below is taken only when something has to be read. The decision cache is consulted after
   * those waits, so an answer rests on state as fresh as the lookup (within B, or the token's).
   */
  async checkMany(principal: Principal, tenantId: string, queries: CheckQuery[], consistency: Consistency = BOUNDED): Promise<CheckOutcome[]> {
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    // The tenant row (settings) from the process's cache unless the check asks for more than the
    // staleness bound: a token the decision cache has not reached, or full consistency.
    const cachedTenantWillDo = consistency.kind === 'bounded' || (consistency.kind === 'atLeast' && (this.cache?.position(tenantId) ?? -1) >= consistency.position);
    const tenant = (cachedTenantWillDo && this.tenants.cached(tenantId)) || (await this.tx.read((tx) => this.tenants.require(tx, tenantId, cachedTenantWillDo)));
    const keyring = await this.keys.tenantKeyring(tenantId);
    const outcomes: CheckOutcome[] = new Array(queries.length);
    const prepared: PreparedQuery[] = [];
    const purposes = this.cachedPurposes(tenant, queries) ?? (await this.purposesOf(tenant, queries));
    // A bulk call's blind indexes are hashed together (on worker threads where the process has
    // them: KeyManager.blindIndexes); a small call's one by one, with no turn of the event loop.
    const bulk = queries.length >= BLIND_INDEX_WORKER_MIN_INPUTS;
    const accepted: AcceptedQuery[] = [];
    for (let position = 0; position < queries.length; position++) {
      try {
        const query = this.accept(queries[position], position, now, purposes);
        if (bulk) accepted.push(query);
        else prepared.push(preparedOf(query, this.keys.blindIndex(keyring, query.identifier)));
      } catch (err) {
        if (!(err instanceof DomainError) || err.kind === 'UNAVAILABLE') throw err;
        outcomes[position] = { error: err };
      }
    }
    if (accepted.length > 0) {
      const hashed = this.keys.blindIndexes(keyring, accepted.map((query) => query.identifier));
      const blindIndexes = Array.isArray(hashed) ? hashed : await hashed;
      for (let i = 0; i < accepted.length; i++) prepared.push(preparedOf(accepted[i], blindIndexes[i]));
    }
    let liveQueries = prepared;
    let pastQueries: PreparedQuery[] | null = null;
    for (const query of prepared) {
      if (query.live) continue;
      liveQueries = prepared.filter((p) => p.live);
      pastQueries = prepared.filter((p) => !p.live);
      break;
    }
    const lookup = this.lookUp(tenantId, liveQueries, consistency);
    const live = lookup.missing.size === 0 ? lookup.found : await this.readMissing(tenantId, lookup);
    const past = pastQueries ? await this.pastFacts(tenant, pastQueries) : null;
    for (const query of prepared) {
      if (query.live) {
        outcomes[query.position] = { decision: decide(factsOf(live.get(query.key)!), query.target, query.at, tenant.settings.serviceWindowMs) };
      } else {
        const { facts, serviceWindowMs } = past!.get(query.position)!;
        outcomes[query.position] = { decision: decide(facts, query.target, query.at, serviceWindowMs) };
      }
    }
    return outcomes;
  }

  /**
   * What the cache holds of the identifiers of questions about now, where it may answer (within
   * the staleness bound, as fresh as a token asks), each identifier looked up once; the rest missing.
   */
  private lookUp(tenantId: string, queries: PreparedQuery[], consistency: Consistency): Lookup {
    const found = new Map<string, CachedIdentifier>();
    const missing = new Map<string, IdentifierIndex>();
    const minPosition = consistency.kind === 'atLeast' ? consistency.position : 0;
    for (const query of queries) {
      const k = query.key;
      if (found.has(k) || missing.has(k)) continue;
      const hit = consistency.kind !== 'full' && this.cache ? this.cache.get(tenantId, query.index, minPosition) : undefined;
      if (hit) found.set(k, hit);
      else missing.set(k, query.index);
    }
    return { found, missing, minPosition };
  }

  /** The identifiers the cache could not answer for, read in one statement (and kept for the next check). */
  private async readMissing(tenantId: string, { found, missing, minPosition }: Lookup): Promise<Map<string, CachedIdentifier>> {
    const indexes = [...missing.values()];
    for (let attempt = 0; ; attempt++) {
      const readAt = this.monotonic();
      const read = await this.tx.read((tx) => this.decisionState.read(tx, tenantId, indexes));
      if (read.version < minPosition) {
        // A token from a write this database has not shown yet (a replica of a cluster behind
        // by a moment): wait a little; never answer from older state than the token asks for.
        if (attempt < TOKEN_WAIT_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, 10 * 2 ** attempt));
          continue;
        }
        throw new DomainError('UNAVAILABLE', 'BEHIND_CONSISTENCY_TOKEN', 'the database has not caught up with the consistency token yet; retry', {}, [], 100);
      }
      this.cache?.store(tenantId, indexes, read, readAt);
      for (const [k, index] of missing) found.set(k, identifierState(read, index));
      return found;
    }
  }

  /** Facts and the service window in force for questions about past moments, replayed from the log. */
  private pastFacts(tenant: Tenant, queries: PreparedQuery[]): Promise<Map<number, PastFacts>> {
    return this.tx.read(async (tx) => {
      const found = await this.resolveSubjects(tx, tenant.id, queries);
      const result = new Map<number, PastFacts>();
      for (const query of queries) {
        const resolved = found.get(query.key);
        const facts = resolved === ERASED ? ERASED_FACTS : resolved ? await this.facts(tx, tenant.id, resolved, query, new Map()) : null;
        result.set(query.position, { facts, serviceWindowMs: (await this.tenants.settingsAt(tx, tenant, query.at)).serviceWindowMs });
      }
      return result;
    });
  }

  /**
   * What `checkOne` answers for `query`, with what it rests on: the subject's events recorded by
   * then that the rules read for this purpose and channel. Read in one transaction with the answer.
   */
  async explain(principal: Principal, tenantId: string, query: CheckQuery): Promise<DecisionBasis> {
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    // The tenant first: an unknown one is NOT_FOUND, not a key that cannot be found.
    const known = await this.tx.read((tx) => this.tenants.require(tx, tenantId, true));
    const prepared = await this.prepare(known, await this.keys.tenantKeyring(tenantId), query, 0, now);
    return this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, true);
      const resolved = (await this.resolveSubjects(tx, tenantId, [prepared])).get(prepared.key);
      // The settings in force at the asked time (the service window length), not today's.
      const settings = prepared.live ? tenant.settings : await this.tenants.settingsAt(tx, tenant, prepared.at);
      const basis = { at: prepared.at, category: prepared.target.category, allowedWhileRestricted: prepared.target.allowedWhileRestricted === true, serviceWindowMs: settings.serviceWindowMs };
      // An erased identifier explains nothing: what is left of the person is not reachable by it.
      if (resolved === ERASED) return { ...basis, decision: decide(ERASED_FACTS, prepared.target, prepared.at, basis.serviceWindowMs), events: [] };
      const subject = resolved;
      if (!subject) return { ...basis, decision: decide(null, prepared.target, prepared.at, basis.serviceWindowMs), events: [] };
      const state = prepared.live ? await this.consent.loadState(tx, tenantId, [subject.subjectId]) : new Map();
      const facts = await this.facts(tx, tenantId, subject, prepared, state);
      const decision = decide(facts, prepared.target, prepared.at, basis.serviceWindowMs);
      const recorded = await this.consent.eventsRecordedBy(tx, tenantId, subject.subjectId, Math.min(prepared.at, now));
      const read = recorded.filter((e) => readsFor(e, prepared.target));
      // None read, yet the person was known by then: the first event proves it (NO_CONSENT, not UNKNOWN_SUBJECT).
      const events = read.length > 0 || recorded.length === 0 ? read : [recorded[0]];
      return { ...basis, decision, subject, events };
    });
  }

  /**
   * The subjects of the queries' identifiers. An identifier that names nobody may be the
   * tombstone of an erased person: ERASED (rule 1 denies), though it leads to no subject.
   */
  private async resolveSubjects(tx: TxContext, tenantId: string, prepared: PreparedQuery[]): Promise<Map<string, SubjectRef | typeof ERASED>> {
    const found: Map<string, SubjectRef | typeof ERASED> = await this.subjects.findByIdentifiers(tx, tenantId, prepared.map((p) => p.index));
    const missing = prepared.filter((p) => !found.has(p.key)).map((p) => p.index);
    const suppressed = missing.length > 0 ? await this.subjects.findSuppressed(tx, tenantId, missing) : new Map<string, unknown>();
    for (const k of suppressed.keys()) found.set(k, ERASED);
    return found;
  }

  private async prepare(tenant: Tenant, keyring: TenantKeyring, query: CheckQuery, position: number, now: number): Promise<PreparedQuery> {
    return this.prepareWith(keyring, query, position, now, await this.purposesOf(tenant, [query]));
  }

  /** The purposes the queries name if the cache holds them all (the usual case), else null. */
  private cachedPurposes(tenant: Tenant, queries: CheckQuery[]): Map<string, Purpose | DomainError> | null {
    const found = new Map<string, Purpose | DomainError>();
    for (const { purposeId } of queries) {
      if (!purposeId || found.has(purposeId)) continue;
      const cached = this.purposes.cached(tenant.id, purposeId)?.purpose;
      if (!cached) return null;
      found.set(purposeId, cached);
    }
    return found;
  }

  /**
   * The purposes the queries name, each looked up once per call (a batch of a thousand queries
   * names a few): from the cache, or read; one that does not exist is its queries' NOT_FOUND.
   */
  private async purposesOf(tenant: Tenant, queries: CheckQuery[]): Promise<Map<string, Purpose | DomainError>> {
    const found = new Map<string, Purpose | DomainError>();
    for (const { purposeId } of queries) {
      if (!purposeId || found.has(purposeId)) continue;
      const cached = this.purposes.cached(tenant.id, purposeId)?.purpose;
      if (cached) {
        found.set(purposeId, cached);
        continue;
      }
      try {
        found.set(purposeId, await this.tx.read((tx) => this.purposes.requirePurpose(tx, tenant.id, purposeId)));
      } catch (err) {
        if (!(err instanceof DomainError) || err.kind === 'UNAVAILABLE') throw err;
        found.set(purposeId, err);
      }
    }
    return found;
  }

  /** A query checked, normalised and blind-indexed (no awaits). */
  private prepareWith(keyring: TenantKeyring, query: CheckQuery, position: number, now: number, purposes: Map<string, Purpose | DomainError>): PreparedQuery {
    const accepted = this.accept(query, position, now, purposes);
    return preparedOf(accepted, this.keys.blindIndex(keyring, accepted.identifier));
  }

  /** A query checked and normalised (throws its DomainError), not yet blind-indexed. */
  private accept(query: CheckQuery, position: number, now: number, purposes: Map<string, Purpose | DomainError>): AcceptedQuery {
    if (query.undecoded) throw invalidArgument(query.violations);
    const identifier = normaliseIdentifier(query.identifier, `${query.fieldPrefix}.subject_identifier`);
    if (query.violations.length > 0 || isViolation(identifier)) {
      const violations = [...query.violations];
      if (isViolation(identifier)) violations.push(identifier);
      throw invalidArgument(violations);
    }
    const purpose = query.purposeId ? purposes.get(query.purposeId)! : undefined;
    if (purpose instanceof DomainError) throw purpose;
    const category = purpose ? purpose.category : query.category!;
    const at = query.at ?? now;
    return {
      position,
      identifier,
      target: purpose?.allowedWhileRestricted ? { purposeId: query.purposeId, category, channel: query.channel!, allowedWhileRestricted: true } : { purposeId: query.purposeId, category, channel: query.channel! },
      at,
      // A past `at` must not see events recorded after it: replay the log up to `at`.
      live: at >= now,
    };
  }

  private async facts(
    tx: TxContext,
    tenantId: string,
    subject: SubjectRef,
    query: PreparedQuery,
    state: Awaited<ReturnType<ConsentRepository['loadState']>>,
  ): Promise<SubjectFacts | null> {
    if (!query.live) {
      const events = await this.consent.eventsRecordedBy(tx, tenantId, subject.subjectId, query.at);
      // Nothing recorded yet at `at`: the service did not know the person then.
      if (events.length === 0) return null;
      const past: SubjectFacts = { ...foldEvents(subject.subjectId, events), erased: subject.erased };
      // The standing objection as it was then: the latest one recorded by `at` (a later objection
      // moves it forward, but must not take back what an earlier one denied at that moment).
      const objectedAt = subject.objectedAt === undefined ? undefined : await this.subjects.objectedAtBy(tx, tenantId, subject.subjectId, query.at);
      if (objectedAt !== undefined) past.objectedAt = objectedAt;
      // A restriction in force then: placed by `at` and not lifted by then (Art. 18).
      if (await this.subjects.restrictedAt(tx, tenantId, subject.subjectId, query.at)) past.restricted = true;
      if (subject.reassignedAt !== undefined) past.reassignedAt = subject.reassignedAt;
      return past;
    }
    return liveFacts(subject, state.get(subject.subjectId) ?? { scopes: [], windows: [] });
  }
}

/**
 * What the rules know of a person now: the current-state rows and the subject's marks. Every
 * live decision is made from these (checks, and the preference page's "granted").
 */
export function liveFacts(subject: SubjectRef, rows: SubjectStateRows): SubjectFacts {
  const facts: SubjectFacts = { subjectId: subject.subjectId, erased: subject.erased, suppressed: false, scopes: rows.scopes, windows: rows.windows };
  if (subject.objectedAt !== undefined) facts.objectedAt = subject.objectedAt;
  if (subject.restrictedSince !== undefined) facts.restricted = true;
  if (subject.reassignedAt !== undefined) facts.reassignedAt = subject.reassignedAt;
  return facts;
}

/** The facts and service window a question about a past moment is decided on. */
interface PastFacts {
  facts: SubjectFacts | null;
  serviceWindowMs: number;
}

/** What the cache answered for a call's questions about now, and the identifiers it has to read. */
interface Lookup {
  found: Map<string, CachedIdentifier>;
  missing: Map<string, IdentifierIndex>;
  /** The log position a consistency token asks for (0: none). */
  minPosition: number;
}

/** Attempts to read state at least as fresh as a consistency token before giving up (UNAVAILABLE). */
const TOKEN_WAIT_ATTEMPTS = 5;

/** What the rules know of a live identifier's person. */
function factsOf(state: CachedIdentifier): SubjectFacts | null {
  if (state.subject === ERASED) return ERASED_FACTS;
  if (state.subject === null) return null;
  return liveFacts(state.subject, state.rows);
}
/** What the rules know of an erased identifier: only that it was erased (no subject is left to name). */
const ERASED_FACTS: SubjectFacts = Object.freeze({ subjectId: '', erased: true, suppressed: false, scopes: [], windows: [] });

function key(index: IdentifierIndex): string {
  return `${index.kind}:${index.blindIndex}`;
}

