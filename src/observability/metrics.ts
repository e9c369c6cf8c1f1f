import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The service's Prometheus metrics (docs/operations.md lists them with their meanings).
 *
 * gRPC server metrics carry the names and labels of go-grpc-prometheus, which existing dashboards
 * understand. Domain metrics are prefixed `consent_`. No label ever holds personal data: the only
 * per-tenant label is the tenant id, and the number of tenant label values is bounded
 * (`maxTenants`; further tenants are counted under `_other`), as is every other label (method
 * names, status codes, verdicts and reasons are closed sets).
 *
 * What every call reports (the gRPC metrics, decisions) is counted in plain objects found by
 * nested Map lookups of the label values (MethodFigures, the decision counts) and handed to
 * prom-client only when scraped: a prom-client inc or observe with labels hashes and validates
 * its label object each time, ~4 µs per call for the four series a check touches (measured on the
 * bench machine), more than 5% of a cached check's server time; this way it is well under 1 µs.
 */

/** What the metrics read when scraped: the parts of the running service they describe. */
export interface MetricSources {
  decisionCache?(): { hits: number; misses: number; stale: number; evictions: number; invalidations: number; entries: number; oldestCatchUpMs: number | null };
  writer?(): { batches: number; writes: number };
  retries?(): { raceRetries: number; otherRetries: number };
  /** Connections of each database's pool: in use, idle, and calls waiting for one. */
  pools?(): Array<{ database: string; inUse: number; idle: number; waiting: number }>;
  /** Whether this replica reports SERVING on grpc.health.v1 (a NOT_SERVING replica still answers scrapes). */
  ready?(): boolean;
  /** Per tenant: audit log size and the age of its latest signed checkpoint (null: none yet). */
  auditLogs?(): Promise<Array<{ tenant: string; size: number; checkpointAgeSeconds: number | null }> | undefined>;
  /** Per tenant: data-subject requests open, due within 7 days, past their due time. */
  subjectRequests?(): Promise<Array<{ tenant: string; open: number; dueSoon: number; overdue: number }> | undefined>;
  /** Age of the oldest e-mail confirmation delivery not yet sent or handed out, not expired (null: none). */
  oldestConfirmationDeliveryMs?(): Promise<number | null | undefined>;
}

export const OTHER_TENANTS = '_other';

/** Seconds buckets for RPC handling: a check from the cache takes ~0.1 ms, a write a few ms. */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One method's RPC figures since start: calls started, completed by status code, handling times. */
class MethodFigures {
  started = 0;
  readonly handled = new Map<string, number>();
  /** Calls per handling-time bucket (not cumulative): index i counts times <= RPC_BUCKETS[i] and above the bucket before; the last counts those above every bound. */
  readonly buckets = new Array<number>(RPC_BUCKETS.length + 1).fill(0);
  sum = 0;
  count = 0;
  readonly labels: { grpc_type: string; grpc_service: string; grpc_method: string };

  constructor(type: RpcType, service: string, method: string) {
    this.labels = { grpc_type: type, grpc_service: service, grpc_method: method };
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < RPC_BUCKETS.length && seconds > RPC_BUCKETS[i]) i++;
    this.buckets[i]++;
    this.sum += seconds;
    this.count++;
  }
}

type HandlingLabels = 'grpc_type' | 'grpc_service' | 'grpc_method';
const HANDLING_HELP = 'Time the server took to answer an RPC (to the end of the stream for streams).';

/**
 * grpc_server_handling_seconds: a prom-client Histogram (same name, help, labels, buckets and
 * exposition) whose observations are counted in MethodFigures and read when scraped.
 */
class HandlingHistogram extends Histogram<HandlingLabels> {
  constructor(
    registers: Registry[],
    private readonly figures: () => Iterable<MethodFigures>,
  ) {
    super({ name: 'grpc_server_handling_seconds', help: HANDLING_HELP, labelNames: ['grpc_type', 'grpc_service', 'grpc_method'], buckets: RPC_BUCKETS, registers });
  }

  /** The series as prom-client's Histogram gives them to its registry: cumulative buckets with `le`, +Inf, _sum, _count. */
  getForPromString(): Promise<{ name: string; help: string; type: 'histogram'; values: Array<{ labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string }>; aggregator: string }> {
    const values: Array<{ labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string }> = [];
    const name = 'grpc_server_handling_seconds';
    for (const f of this.figures()) {
      if (f.count === 0) continue; // started, none answered yet: no series (as prom-client's own Histogram)
      let cumulative = 0;
      RPC_BUCKETS.forEach((le, i) => {
        cumulative += f.buckets[i];
        values.push({ labels: { le }, sharedLabels: { ...f.labels }, value: cumulative, metricName: `${name}_bucket` });
      });
      values.push({ labels: { le: '+Inf' }, sharedLabels: { ...f.labels }, value: f.count, metricName: `${name}_bucket` });
      values.push({ labels: {}, sharedLabels: { ...f.labels }, value: f.sum, metricName: `${name}_sum` });
      values.push({ labels: {}, sharedLabels: { ...f.labels }, value: f.count, metricName: `${name}_count` });
    }
    return Promise.resolve({ name, help: HANDLING_HELP, type: 'histogram', values, aggregator: 'sum' });
  }
}

export class ServiceMetrics {
  readonly registry = new Registry();
  private readonly tenantLabels = new Set<string>();
  /** Per service, per method: its RPC figures. */
  private readonly methods = new Map<string, Map<string, MethodFigures>>();
  /** Decisions per tenant label, verdict and reason. */
  private readonly decisions = new Map<string, Map<string, Map<string, { n: number }>>>();
  private readonly writes: Counter<'tenant' | 'kind'>;
  private readonly confirmationMails: Counter<'result'>;
  private readonly batchSize: Histogram<string>;
  private readonly commitSeconds: Histogram<string>;
  /** Cached children: one label combination, one object, found by a joined key. */
  private readonly children = new Map<string, { inc(n?: number): void; observe?(v: number): void }>();

  constructor(
    private readonly maxTenants: number,
    sources: MetricSources = {},
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // The per-call series, read from what the calls counted (class comment). A counter only goes
    // up: at each scrape it is reset, then set to the running totals.
    const allFigures = () => this.allFigures();
    new Counter({
      name: 'grpc_server_started_total',
      help: 'RPCs started on the server.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      registers,
      collect() {
        this.reset();
        for (const f of allFigures()) this.inc(f.labels, f.started);
      },
    });
    new Counter({
      name: 'grpc_server_handled_total',
      help: 'RPCs completed on the server, regardless of success or failure.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers,
      collect() {
        this.reset();
        for (const f of allFigures()) for (const [code, n] of f.handled) this.inc({ ...f.labels, grpc_code: code }, n);
      },
    });
    new HandlingHistogram(registers, allFigures);
    const decisions = this.decisions;
    new Counter({
      name: 'consent_checks_total',
      help: 'Consent decisions made (each query of a batch or stream counts), by verdict and reason.',
      labelNames: ['tenant', 'verdict', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const [tenant, verdicts] of decisions) for (const [verdict, reasons] of verdicts) for (const [reason, count] of reasons) this.inc({ tenant, verdict, reason }, count.n);
      },
    });
    this.writes = new Counter({ name: 'consent_writes_total', help: 'Consent events and inbound messages recorded, by kind.', labelNames: ['tenant', 'kind'], registers });
    // No tenant label: the mailer's health is one thing (the SMTP server), and logs name the tenant.
    this.confirmationMails = new Counter({
      name: 'consent_confirmation_mails_total',
      help: 'Confirmation mails the service tried to send (SMTP_URL set), by result: sent, retry (a transient failure, tried again later), failed (refused for good, or too many attempts).',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['sent', 'retry', 'failed']) this.confirmationMails.inc({ result }, 0);
    new Gauge({
      name: 'consent_confirmation_delivery_oldest_seconds',
      help: 'Age of the oldest e-mail confirmation delivery neither sent nor handed out yet (not expired); 0 when there is none.',
      registers,
      async collect() {
        const ms = await sources.oldestConfirmationDeliveryMs?.();
        // Undefined: the database could not be read; the last value read stays.
        if (ms !== undefined) this.set(ms === null ? 0 : ms / 1000);
      },
    });
    this.batchSize = new Histogram({ name: 'consent_commit_batch_size', help: 'Writes committed together in one group-commit transaction.', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers });
    this.commitSeconds = new Histogram({ name: 'consent_commit_seconds', help: 'Time from a batch leaving the queue to its commit being durable.', buckets: RPC_BUCKETS, registers });

    const counterFrom = (name: string, help: string, read: () => number | undefined) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const value = read();
          // A counter only goes up: it is reset, then set to the source's running total.
          this.reset();
          if (value !== undefined) this.inc(value);
        },
      });
    const cache = () => sources.decisionCache?.();
    counterFrom('consent_decision_cache_hits_total', 'Checks answered from the decision cache.', () => cache()?.hits);
    counterFrom('consent_decision_cache_misses_total', 'Identifiers the decision cache did not hold (read from the database).', () => cache()?.misses);
    counterFrom('consent_decision_cache_stale_total', 'Lookups the cache refused because it could not prove itself within the staleness bound.', () => cache()?.stale);
    counterFrom('consent_decision_cache_evictions_total', 'Entries evicted by the cache bound.', () => cache()?.evictions);
    counterFrom('consent_decision_cache_invalidations_total', 'Entries dropped because a change to them was committed.', () => cache()?.invalidations);
    new Gauge({ name: 'consent_decision_cache_entries', help: 'Identifiers held by the decision cache.', registers, collect() { this.set(cache()?.entries ?? 0); } });
    new Gauge({
      name: 'consent_decision_cache_staleness_seconds',
      help: 'How long ago the least recently proven tenant of the cache was proven up to date (answers from it need this below the bound).',
      registers,
      collect() {
        const ms = cache()?.oldestCatchUpMs;
        this.set(ms === null || ms === undefined ? 0 : ms / 1000);
      },
    });
    counterFrom('consent_commit_batches_total', 'Group-commit transactions committed.', () => sources.writer?.().batches);
    counterFrom('consent_write_race_retries_total', 'Write transactions run again after losing a race at commit (deadlock; Galera certification conflict).', () => sources.retries?.().raceRetries);
    counterFrom('consent_write_other_retries_total', 'Write transactions run again after a lock wait timeout or a racing insert.', () => sources.retries?.().otherRetries);
    new Gauge({
      name: 'consent_db_pool_connections',
      help: 'Database connections by state: in_use, idle, and calls waiting for one.',
      labelNames: ['database', 'state'],
      registers,
      collect() {
        this.reset();
        for (const p of sources.pools?.() ?? []) {
          this.set({ database: p.database, state: 'in_use' }, p.inUse);
          this.set({ database: p.database, state: 'idle' }, p.idle);
          this.set({ database: p.database, state: 'waiting' }, p.waiting);
        }
      },
    });
    new Gauge({ name: 'consent_ready', help: '1 while this replica reports SERVING on grpc.health.v1 (its databases answer, it is not draining), else 0.', registers, collect() { this.set(sources.ready?.() === false ? 0 : 1); } });
    const labelOf = (tenant: string) => this.tenantLabel(tenant);
    // Each gauge reads what it shows in its own collect: the registry serialises a gauge right
    // after collecting it, so one filled by another gauge's collect showed the previous scrape.
    new Gauge({
      name: 'consent_audit_log_size',
      help: "Entries in a tenant's audit log.",
      labelNames: ['tenant'],
      registers,
      async collect() {
        this.reset();
        // Tenants counted under _other: their sizes add up.
        for (const log of (await sources.auditLogs?.()) ?? []) this.inc({ tenant: labelOf(log.tenant) }, log.size);
      },
    });
    new Gauge({
      name: 'consent_audit_checkpoint_age_seconds',
      help: "Time since a tenant's latest signed audit checkpoint (absent: none yet).",
      labelNames: ['tenant'],
      registers,
      async collect() {
        this.reset();
        // Tenants counted under _other: the age is the oldest of theirs.
        const ages = new Map<string, number>();
        for (const log of (await sources.auditLogs?.()) ?? []) {
          const tenant = labelOf(log.tenant);
          if (log.checkpointAgeSeconds !== null) ages.set(tenant, Math.max(ages.get(tenant) ?? 0, log.checkpointAgeSeconds));
        }
        for (const [tenant, age] of ages) this.set({ tenant }, age);
      },
    });
    new Gauge({
      name: 'consent_subject_requests',
      help: 'Data-subject requests not completed or rejected, by state: open (all), due_7d (due within 7 days), overdue (past their due time).',
      labelNames: ['tenant', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const r of (await sources.subjectRequests?.()) ?? []) {
          const tenant = labelOf(r.tenant);
          this.inc({ tenant, state: 'open' }, r.open);
          this.inc({ tenant, state: 'due_7d' }, r.dueSoon);
          this.inc({ tenant, state: 'overdue' }, r.overdue);
        }
      },
    });
  }

  /** The label for a tenant: its id while fewer than maxTenants are labelled, then `_other`. */
  tenantLabel(tenant: string): string {
    if (this.tenantLabels.has(tenant)) return tenant;
    if (this.tenantLabels.size >= this.maxTenants) return OTHER_TENANTS;
    this.tenantLabels.add(tenant);
    return tenant;
  }

  rpcStarted(type: RpcType, service: string, method: string): void {
    this.figures(type, service, method).started++;
  }

  rpcHandled(type: RpcType, service: string, method: string, code: string, seconds: number): void {
    const f = this.figures(type, service, method);
    f.handled.set(code, (f.handled.get(code) ?? 0) + 1);
    f.observe(seconds);
  }

  /** One confirmation mail's outcome (src/jobs/confirmation-mailer.ts). */
  confirmationMail(result: 'sent' | 'retry' | 'failed'): void {
    this.confirmationMails.inc({ result });
  }

  checkDecided(tenant: string, verdict: string, reason: string): void {
    const label = this.tenantLabel(tenant);
    let verdicts = this.decisions.get(label);
    if (!verdicts) this.decisions.set(label, (verdicts = new Map()));
    let reasons = verdicts.get(verdict);
    if (!reasons) verdicts.set(verdict, (reasons = new Map()));
    const count = reasons.get(reason);
    if (count) count.n++;
    else reasons.set(reason, { n: 1 });
  }

  written(tenant: string, kind: string, count = 1): void {
    const label = this.tenantLabel(tenant);
    this.child(`w\0${label}\0${kind}`, () => this.writes.labels(label, kind)).inc(count);
  }

  batchCommitted(size: number, seconds: number): void {
    this.batchSize.observe(size);
    this.commitSeconds.observe(seconds);
  }

  /** The exposition, in Prometheus' text format. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** A method's figures (a method has one RPC type: the first seen names it). */
  private figures(type: RpcType, service: string, method: string): MethodFigures {
    let methods = this.methods.get(service);
    if (!methods) this.methods.set(service, (methods = new Map()));
    let f = methods.get(method);
    if (!f) methods.set(method, (f = new MethodFigures(type, service, method)));
    return f;
  }

  private *allFigures(): Iterable<MethodFigures> {
    for (const methods of this.methods.values()) yield* methods.values();
  }

  private child(key: string, make: () => { inc(n?: number): void; observe?(v: number): void }) {
    let child = this.children.get(key);
    if (!child) this.children.set(key, (child = make()));
    return child;
  }
}

export type RpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';
