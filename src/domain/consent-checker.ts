import { KeyManager, TenantKeyring } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { CheckTarget, decide, Decision, foldEvents, readsFor, SubjectFacts } from './consent-rules';
import { Clock } from './clock';
import { DomainError, FieldViolation, invalidArgument } from '../shared/errors';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { PurposeCategory, SendChannel, Tenant } from './model';
import { ConsentRepository, IdentifierIndex, StoredConsentEvent, SubjectRef, SubjectRepository } from './ports';
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
  /** Path of the query in its request ("query", "queries[3]"), for field violations. */
  fieldPrefix: string;
}

/** A decision with what it rests on (ConsentChecker.explain). */
export interface DecisionBasis {
  decision: Decision;
  /** The time decided for. */
  at: number;
  category: PurposeCategory;
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
  target: CheckTarget;
  at: number;
  live: boolean;
}

/**
 * Answers "may I send this now?" for one query or many. Queries of a batch are answered
 * independently: a malformed one gets its own INVALID_ARGUMENT, the others their decisions.
 * When the state cannot be read the whole call fails with UNAVAILABLE: never a guessed ALLOW.
 */
export class ConsentChecker {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly subjects: SubjectRepository,
    private readonly consent: ConsentRepository,
    private readonly tenants: TenantService,
    private readonly purposes: PurposeService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
  ) {}

  /** Decides a single query; its errors are thrown. */
  async checkOne(principal: Principal, tenantId: string, query: CheckQuery): Promise<Decision> {
    const [outcome] = await this.checkMany(principal, tenantId, [query]);
    if ('error' in outcome) throw outcome.error;
    return outcome.decision;
  }

  /** Decides each query independently, answers in order. */
  async checkMany(principal: Principal, tenantId: string, queries: CheckQuery[]): Promise<CheckOutcome[]> {
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, true);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const outcomes: CheckOutcome[] = new Array(queries.length);
      const prepared: PreparedQuery[] = [];
      for (const [position, query] of queries.entries()) {
        try {
          prepared.push(await this.prepare(tx, tenant, keyring, query, position, now));
        } catch (err) {
          if (!(err instanceof DomainError) || err.kind === 'UNAVAILABLE') throw err;
          outcomes[position] = { error: err };
        }
      }
      const found = await this.resolveSubjects(tx, tenantId, prepared);
      const liveSubjects = prepared.filter((p) => p.live).map((p) => found.get(key(p.index)))
        .flatMap((r) => (r && r !== ERASED ? [r.subjectId] : []));
      const state = await this.consent.loadState(tx, tenantId, liveSubjects);
      for (const query of prepared) {
        const resolved = found.get(key(query.index));
        const facts = resolved === ERASED ? ERASED_FACTS : resolved ? await this.facts(tx, tenantId, resolved, query, state) : null;
        const serviceWindowMs = query.live ? tenant.settings.serviceWindowMs : (await this.tenants.settingsAt(tx, tenant, query.at)).serviceWindowMs;
        outcomes[query.position] = { decision: decide(facts, query.target, query.at, serviceWindowMs) };
      }
      return outcomes;
    });
  }

  /**
   * What `checkOne` answers for `query`, with what it rests on: the subject's events recorded by
   * then that the rules read for this purpose and channel. Read in one transaction with the answer.
   */
  async explain(principal: Principal, tenantId: string, query: CheckQuery): Promise<DecisionBasis> {
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, true);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const prepared = await this.prepare(tx, tenant, keyring, query, 0, now);
      const resolved = (await this.resolveSubjects(tx, tenantId, [prepared])).get(key(prepared.index));
      // The settings in force at the asked time (the service window length), not today's.
      const settings = prepared.live ? tenant.settings : await this.tenants.settingsAt(tx, tenant, prepared.at);
      const basis = { at: prepared.at, category: prepared.target.category, serviceWindowMs: settings.serviceWindowMs };
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
    const missing = prepared.filter((p) => !found.has(key(p.index))).map((p) => p.index);
    const suppressed = missing.length > 0 ? await this.subjects.findSuppressed(tx, tenantId, missing) : new Map<string, unknown>();
    for (const k of suppressed.keys()) found.set(k, ERASED);
    return found;
  }

  private async prepare(
    tx: TxContext,
    tenant: Tenant,
    keyring: TenantKeyring,
    query: CheckQuery,
    position: number,
    now: number,
  ): Promise<PreparedQuery> {
    const violations = [...query.violations];
    const identifier = normaliseIdentifier(query.identifier, `${query.fieldPrefix}.subject_identifier`);
    if (isViolation(identifier)) violations.push(identifier);
    if (violations.length > 0 || isViolation(identifier)) throw invalidArgument(violations);
    const category = query.purposeId ? (await this.purposes.requirePurpose(tx, tenant.id, query.purposeId)).category : query.category!;
    const at = query.at ?? now;
    return {
      position,
      index: { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) },
      target: { purposeId: query.purposeId, category, channel: query.channel! },
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
      return { ...foldEvents(subject.subjectId, events), erased: subject.erased };
    }
    const rows = state.get(subject.subjectId) ?? { scopes: [], windows: [] };
    return { subjectId: subject.subjectId, erased: subject.erased, suppressed: false, ...rows };
  }
}

/** An identifier whose person was erased and that names nobody since. */
const ERASED = Symbol('erased identifier');
/** What the rules know of an erased identifier: only that it was erased (no subject is left to name). */
const ERASED_FACTS: SubjectFacts = Object.freeze({ subjectId: '', erased: true, suppressed: false, scopes: [], windows: [] });

function key(index: IdentifierIndex): string {
  return `${index.kind}:${index.blindIndex}`;
}

