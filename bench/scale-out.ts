import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import mysql from 'mysql2/promise';
import { GaleraCluster, startGaleraCluster } from '../scripts/galera/cluster';
import { verifyAuditLog } from '../src/cli/audit-verify';
import { Channel, PurposeCategory } from '../src/gen/consent/v1/common';
import { CheckConsentBatchRequest, CollectionMethod, ConsentEventKind, ImportConsentsRequest, ImportConsentsResponse, RecordConsentRequest } from '../src/gen/consent/v1/consent';
import { CreatePurposeRequest, PublishNoticeRequest } from '../src/gen/consent/v1/purpose';
import { CreateTenantRequest } from '../src/gen/consent/v1/tenant';
import { startPrivateMariaDb } from '../test/support/private-mariadb';
import { CheckTarget, checkSubjectPhone, expectedDecision, isOptedOut, UnaryCheckParams } from './check-jobs';
import { Clients, createClients, unary } from './clients';
import { backgroundLoad, ProcessGroupMeter } from './cpu';
import { JobRequest, LoadGenerators, PhaseMeasurement } from './load-generators';
import { machineInfo } from './report';
import { ensureBuilt, freePort, ServerProcess, startServer } from './server-process';
import { formatMs, formatRate } from './stats';
import { RecordConsentParams, WriteTarget } from './write-jobs';

/**
 * `npm run bench:scale-out [-- --quick] [--out FILE] [--root DIR] [--verbose]`
 *
 * Issue 16 point 3: the service scaled out against the same service on one database, in one run
 * on this machine, with the same load-generator processes driving both:
 *
 * - A: one replica (the real server, `node dist/src/main.js`) on a private MariaDB server of its
 *   own in a temporary directory (test/support/private-mariadb.ts; the shared one at 3306 is not
 *   touched);
 * - B: three replicas, each on its own node of a three-node MariaDB Galera cluster
 *   (scripts/galera/cluster.ts), one shared root key file, DATABASE_CALL_TIMEOUT_MS=8000 (so a
 *   write can wait out a lost node).
 *
 * Three generator processes in both; in B generator i drives replica i, so calls are spread
 * evenly over the replicas (as a round_robin client does). Workloads: Health/Check (the no-op
 * RPC), warm unary CheckConsent (every subject once through CheckConsentBatch on every replica
 * first) closed loop and open loop at a fixed rate (the same load on A and B: a cheap call's CPU
 * depends on the rate), and durable RecordConsent opt-ins of one tenant at 16 and 64 in flight (the hot case on
 * Galera: every write of a tenant updates its audit head row, so writes through different nodes
 * conflict at certification and the server runs them again) and spread over 10 tenants.
 *
 * Each write workload runs in a server life of its own: the replicas are started, measured, and
 * stopped with SIGTERM, and each says on its way out how many writes it made and how often it ran
 * a transaction again after losing a race at commit ("write path totals", src/app.ts). The
 * databases' own counters (certification failures, brute-force aborts, deadlocks, write-set
 * bytes, flow control) are read before and after that life. Server CPU per operation is summed
 * over the replicas' processes, mariadbd CPU over the nodes. Afterwards every write tenant's audit
 * log is verified (independent verifier) and its rows counted against the acknowledged writes.
 *
 * On this machine three replicas and three database nodes share two cores: what this measures is
 * the cost per operation and the absence of collapse, not a speed-up.
 *
 * Progress goes to stderr, the markdown report to stdout (and --out).
 */

interface Options {
  quick: boolean;
  out: string | null;
  root: string | null;
  verbose: boolean;
}

interface Settings {
  /** Warm-up before the no-op and check windows. */
  warmupMs: number;
  /** Warm-up before a write window (the replicas are fresh processes: tenant keys, JIT). */
  writeWarmupMs: number;
  durationMs: number;
  /** Write windows are longer: on Galera under conflicts a write may take seconds. */
  writeDurationMs: number;
  /** A window with no calls at all: what the replicas and the nodes use when idle. */
  idleMs: number;
  /** Subjects of the check tenant. */
  checkSubjects: number;
  /** Waiting for a quiet machine before each set-up, at most. */
  quietWaitMs: number;
  watchdogMs: number;
}

const FULL: Settings = { warmupMs: 2000, writeWarmupMs: 4000, durationMs: 8000, writeDurationMs: 15_000, idleMs: 5000, checkSubjects: 10_000, quietWaitMs: 20_000, watchdogMs: 20 * 60_000 };
const QUICK: Settings = { warmupMs: 500, writeWarmupMs: 2000, durationMs: 2000, writeDurationMs: 4000, idleMs: 2000, checkSubjects: 2000, quietWaitMs: 0, watchdogMs: 8 * 60_000 };

/** One generator per replica of B; A gets the same three. */
const GENERATORS = 3;
const REPLICAS_B = 3;
const CALL_TIMEOUT_MS = 8000;
const READ_CONCURRENCY = 64;
const SPREAD_TENANTS = 10;
const PURPOSE_ID = 'newsletter';
/** Background CPU (percent of one core) above which a window counts as disturbed. */
const QUIET_PERCENT = 25;

const USAGE = `usage: npm run bench:scale-out -- [--quick] [--out FILE] [--root DIR] [--verbose]
  --quick    short windows (reads 2 s, writes 4 s) and 2,000 check subjects: a smoke test, about 5 minutes
  --out      also write the markdown report to FILE
  --root     run the server built in DIR (DIR/dist/src/main.js, e.g. a snapshot of a commit built
             elsewhere while others edit src/ here) instead of this checkout's dist/, which is then not rebuilt
  --verbose  echo the servers' output

A: one replica on a private MariaDB server (temporary directory, free port); B: three replicas, each
on its own node of a three-node Galera cluster (scripts/galera/cluster.ts). Everything on 127.0.0.1;
the cluster, the servers and the temporary directories are removed however the run ends.`;

function parseArgs(argv: string[]): Options {
  const options: Options = { quick: false, out: null, root: null, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usageError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--quick':
        options.quick = true;
        break;
      case '--out':
        options.out = path.resolve(value());
        break;
      case '--root':
        options.root = path.resolve(value());
        break;
      case '--verbose':
        options.verbose = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        usageError(`unknown argument "${arg}"`);
    }
  }
  return options;
}

function usageError(message: string): never {
  process.stderr.write(`bench:scale-out: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const times = (ratio: number) => (Number.isFinite(ratio) ? `${ratio.toFixed(ratio < 0.1 ? 3 : 2)}x` : '–');
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

const CAVEAT =
  'On this machine (2 cores) the three replicas, the three database nodes and the load generators of B share the same two cores that A\'s one replica and one database use: B cannot be faster here. What this measures is the cost per operation on Galera and the absence of collapse (no stall, no refused write), not a speed-up.';

// ---------------------------------------------------------------------------------------------
// Interrupts and the watchdog: everything started is stopped, every temporary directory removed
// ---------------------------------------------------------------------------------------------

let stopping = false;
const cleanups = new Set<() => Promise<void>>();

async function cleanupAll(): Promise<void> {
  for (const cleanup of [...cleanups].reverse()) {
    cleanups.delete(cleanup);
    await cleanup().catch((err: Error) => log(`clean-up failed: ${err.message}`));
  }
}

function stop(reason: string, code: number): void {
  if (stopping) process.exit(code);
  stopping = true;
  log(`\n${reason}: stopping the load generators, the replicas and the databases (again to force)`);
  // The exit handlers of server-process.ts, private-mariadb.ts and the Galera cluster kill what
  // is left and remove their directories even if this clean-up does not finish.
  const force = setTimeout(() => process.exit(code), 45_000);
  force.unref();
  void cleanupAll().finally(() => process.exit(code));
}

/** Runs `work` with `cleanup` registered for interrupts; cleans up when it ends, however it ends. */
async function using<T>(cleanup: () => Promise<void>, work: () => Promise<T>): Promise<T> {
  cleanups.add(cleanup);
  try {
    return await work();
  } finally {
    cleanups.delete(cleanup);
    await cleanup().catch((err: Error) => log(`clean-up failed: ${err.message}`));
  }
}

// ---------------------------------------------------------------------------------------------
// The two set-ups
// ---------------------------------------------------------------------------------------------

/** The databases' counters that say where writes collided and what replication cost. */
interface DbCounters {
  deadlocks: number;
  certFailures: number;
  bfAborts: number;
  /** Write sets this node sent to the cluster, and their bytes. */
  replicated: number;
  replicatedBytes: number;
  /** Time the node was paused by flow control, ns. */
  flowControlPausedNs: number;
}

interface Topology {
  key: 'A' | 'B';
  label: string;
  /** Per replica: the server URL of its database node (mysql://root@127.0.0.1:port). */
  nodeUrls: string[];
  /** mariadbd processes (one per node). */
  databasePids: number[];
  version: string;
  settings: string;
  /** Counters summed over the nodes. */
  counters(): Promise<DbCounters>;
  stop(): Promise<void>;
}

const COUNTER_NAMES: Record<string, keyof DbCounters> = {
  Innodb_deadlocks: 'deadlocks',
  wsrep_local_cert_failures: 'certFailures',
  wsrep_local_bf_aborts: 'bfAborts',
  wsrep_replicated: 'replicated',
  wsrep_replicated_bytes: 'replicatedBytes',
  wsrep_flow_control_paused_ns: 'flowControlPausedNs',
};

async function readCounters(urls: string[]): Promise<DbCounters> {
  const total: DbCounters = { deadlocks: 0, certFailures: 0, bfAborts: 0, replicated: 0, replicatedBytes: 0, flowControlPausedNs: 0 };
  for (const url of urls) {
    const connection = await mysql.createConnection({ uri: url, connectTimeout: 5000 });
    try {
      const [rows] = await connection.query<mysql.RowDataPacket[]>(`SHOW GLOBAL STATUS WHERE Variable_name IN (${Object.keys(COUNTER_NAMES).map((n) => `'${n}'`).join(', ')})`);
      for (const row of rows) {
        const key = COUNTER_NAMES[String(row.Variable_name)];
        if (key) total[key] += Number(row.Value) || 0;
      }
    } finally {
      await connection.end().catch(() => undefined);
    }
  }
  return total;
}

function counterDelta(before: DbCounters, after: DbCounters): DbCounters {
  const out = { ...after };
  for (const key of Object.keys(out) as Array<keyof DbCounters>) out[key] = after[key] - before[key];
  return out;
}

/** Version and the settings that decide what a commit costs, as the first node has them. */
async function describeServer(url: string, galera: boolean): Promise<{ version: string; settings: string }> {
  const connection = await mysql.createConnection({ uri: url, connectTimeout: 5000 });
  try {
    const [rows] = await connection.query<mysql.RowDataPacket[]>(
      'SELECT VERSION() AS version, @@innodb_flush_log_at_trx_commit AS flush, @@log_bin AS binlog, @@innodb_buffer_pool_size AS pool, @@max_connections AS maxConnections',
    );
    const r = rows[0];
    let settings = `innodb_flush_log_at_trx_commit=${r.flush}, binary log ${Number(r.binlog) ? 'on' : 'off'}, buffer pool ${Math.round(Number(r.pool) / 2 ** 20)} MiB`;
    if (galera) {
      const [variables] = await connection.query<mysql.RowDataPacket[]>("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('wsrep_sync_wait', 'wsrep_slave_threads')");
      const [status] = await connection.query<mysql.RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'wsrep_provider_version'");
      const v = (name: string) => String([...variables, ...status].find((w) => w.Variable_name === name)?.Value ?? '?');
      settings += `; Galera ${v('wsrep_provider_version')}, wsrep_slave_threads=${v('wsrep_slave_threads')}, wsrep_sync_wait=${v('wsrep_sync_wait')} (the service asks for causal reads per read where it needs them), evs.suspect_timeout 5 s (default)`;
    }
    return { version: `MariaDB ${r.version}`, settings };
  } finally {
    await connection.end().catch(() => undefined);
  }
}

async function startSingle(): Promise<Topology> {
  const server = await startPrivateMariaDb();
  try {
    await server.createDatabase('consent');
    await server.createDatabase('consent_keys');
    const pid = findMariadbdOnPort(server.port);
    if (pid === null) throw new Error(`cannot find the mariadbd process listening on port ${server.port}`);
    const { version, settings } = await describeServer(server.url, false);
    return {
      key: 'A',
      label: 'A: 1 replica on 1 MariaDB',
      nodeUrls: [server.url],
      databasePids: [pid],
      version,
      settings: `a private server on 127.0.0.1:${server.port} (test/support/private-mariadb.ts); ${settings}`,
      counters: () => readCounters([server.url]),
      stop: () => server.stop(),
    };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

async function startGalera(): Promise<Topology> {
  const cluster: GaleraCluster = await startGaleraCluster({ nodes: REPLICAS_B });
  try {
    await cluster.createDatabase('consent');
    await cluster.createDatabase('consent_keys');
    const urls = cluster.nodes.map((n) => n.url);
    const { version, settings } = await describeServer(urls[0], true);
    return {
      key: 'B',
      label: `B: ${REPLICAS_B} replicas on ${REPLICAS_B} Galera nodes`,
      nodeUrls: urls,
      databasePids: cluster.nodes.map((n) => n.pid),
      version,
      settings: `nodes on 127.0.0.1:${cluster.nodes.map((n) => n.sqlPort).join(', ')} (scripts/galera/cluster.ts); ${settings}`,
      counters: () => readCounters(urls),
      stop: () => cluster.stop(),
    };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/** The pid of the mariadbd started with --port=<port> (the private server does not say its pid). */
function findMariadbdOnPort(port: number): number | null {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (/mariadbd|mysqld/.test(path.basename(args[0] ?? '')) && args.includes(`--port=${port}`)) return Number(entry);
    } catch {
      // The process ended or is not ours to read.
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Replicas: one server life
// ---------------------------------------------------------------------------------------------

/** What a replica says when it stops (src/app.ts, "write path totals"), summed over replicas. */
interface WriteTotals {
  writes: number;
  batches: number;
  raceRetries: number;
  otherRetries: number;
  /** Replicas whose line was found (each that stopped normally). */
  replicas: number;
}

interface Life<T> {
  result: T;
  totals: WriteTotals;
  db: DbCounters;
}

interface Fleet {
  replicas: ServerProcess[];
  generators: LoadGenerators;
  /** Clients of each replica, for set-up and warming. */
  clients: Clients[];
  /** How long the replicas and then the generators took to start, in seconds. */
  startup: { replicas: number; generators: number };
  /** Each replica's /metrics port, when the life was started with metrics. */
  metricsPorts: number[];
}

/**
 * Starts a replica per node (all at once), the load generators (generator i drives replica
 * i % replicas), runs `work`, stops the generators, then the replicas with SIGTERM, and reads
 * their write totals and the databases' counters over the whole life.
 */
async function serverLife<T>(
  topology: Topology,
  rootKeysFile: string,
  logLevel: 'warn' | 'info',
  options: Options,
  work: (fleet: Fleet) => Promise<T>,
  withMetrics = false,
): Promise<Life<T>> {
  const before = await topology.counters();
  const replicas: ServerProcess[] = [];
  const stopReplicas = async () => {
    await Promise.all(replicas.map((r) => r.stop()));
  };
  return using(stopReplicas, async () => {
    const lifeStarted = Date.now();
    const metricsPorts = withMetrics ? await Promise.all(topology.nodeUrls.map(() => freePort())) : [];
    const started = await Promise.allSettled(
      topology.nodeUrls.map((url, i) =>
        startServer({
          database: 'mariadb',
          verbose: options.verbose,
          root: options.root ?? undefined,
          startTimeoutMs: 120_000,
          env: {
            DATABASE_URL: `${url}/consent`,
            KEYSTORE_URL: `${url}/consent_keys`,
            ROOT_KEYS_FILE: rootKeysFile,
            DATABASE_CALL_TIMEOUT_MS: String(CALL_TIMEOUT_MS),
            // The write totals are logged at info; so is every call (a JSON line each), so only
            // the write lives pay for it (the same in A and B).
            LOG_LEVEL: logLevel,
            // The generators have stopped when a replica is told to stop: no readiness drain.
            SHUTDOWN_DRAIN_MS: '0',
            ...(withMetrics ? { METRICS_PORT: String(metricsPorts[i]) } : {}),
          },
        }),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') replicas.push(s.value);
    const failure = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure) throw failure.reason;
    const replicasUp = Date.now();
    const clients = replicas.map((r) => createClients(r.address));
    let generators: LoadGenerators | null = null;
    const stopGenerators = async () => {
      await generators?.stop();
    };
    const result = await using(stopGenerators, async () => {
      const forked = await LoadGenerators.start({
        count: GENERATORS,
        address: replicas.map((r) => r.address),
        serverPid: replicas.map((r) => r.pid!),
        databasePid: topology.databasePids,
      });
      generators = forked;
      try {
        const startup = { replicas: (replicasUp - lifeStarted) / 1000, generators: (Date.now() - replicasUp) / 1000 };
        return await work({ replicas, generators: forked, clients, startup, metricsPorts });
      } finally {
        for (const c of clients) c.close();
      }
    });
    await stopReplicas();
    const totals: WriteTotals = { writes: 0, batches: 0, raceRetries: 0, otherRetries: 0, replicas: 0 };
    for (const r of replicas) {
      const line = r
        .recentOutput()
        .split('\n')
        .find((l) => l.includes('"write path totals"'));
      if (!line) continue;
      const t = JSON.parse(line) as { writes: number; batches: number; race_retries: number; other_retries: number };
      totals.writes += t.writes;
      totals.batches += t.batches;
      totals.raceRetries += t.race_retries;
      totals.otherRetries += t.other_retries;
      totals.replicas++;
    }
    const after = await topology.counters();
    return { result, totals, db: counterDelta(before, after) };
  });
}

/** The decision cache's counters (src/observability/metrics.ts), summed over replicas; null where the build has no metrics. */
interface CacheCounters {
  hits: number;
  misses: number;
  stale: number;
}

async function cacheCounters(ports: number[]): Promise<CacheCounters | null> {
  if (ports.length === 0) return null;
  const total: CacheCounters = { hits: 0, misses: 0, stale: 0 };
  for (const port of ports) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
      if (!response.ok) return null;
      const text = await response.text();
      const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      total.hits += value('consent_decision_cache_hits_total');
      total.misses += value('consent_decision_cache_misses_total');
      total.stale += value('consent_decision_cache_stale_total');
    } catch {
      return null;
    }
  }
  return Object.values(total).every(Number.isFinite) ? total : null;
}

// ---------------------------------------------------------------------------------------------
// Set-up of the tenants (through the first replica)
// ---------------------------------------------------------------------------------------------

/** Tenant, MARKETING purpose, a published notice and one opt-in (so the set-up has written once). */
async function createTenant(clients: Clients, tenantId: string, runId: string): Promise<WriteTarget> {
  const parent = `tenants/${tenantId}`;
  await unary(clients.tenants, clients.tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId, displayName: `Scale-out benchmark ${tenantId}`, requestId: `${runId}-${tenantId}-tenant` }));
  await unary(
    clients.purposes,
    clients.purposes.createPurpose,
    CreatePurposeRequest.fromPartial({ parent, purposeId: PURPOSE_ID, purpose: { displayName: 'Newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING }, requestId: `${runId}-${tenantId}-purpose` }),
  );
  const purpose = `${parent}/purposes/${PURPOSE_ID}`;
  const published = await unary(
    clients.purposes,
    clients.purposes.publishNotice,
    PublishNoticeRequest.fromPartial({ parent: purpose, language: 'en', text: 'Our newsletter on WhatsApp and SMS. Reply STOP to opt out at any time.', requestId: `${runId}-${tenantId}-notice` }),
  );
  const notice = published.notice?.name;
  if (!notice) throw new Error('PublishNotice returned no notice name');
  await unary(
    clients.consent,
    clients.consent.recordConsent,
    RecordConsentRequest.fromPartial({
      parent,
      subjectIdentifier: { kind: { $case: 'phoneNumber', value: '+4915199999999' }, defaultRegion: '' },
      purpose,
      channel: Channel.CHANNEL_WHATSAPP,
      kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
      method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
      notice,
      evidence: { sourceIp: '198.51.100.7', userAgent: 'set-up' },
      requestId: `${runId}-${tenantId}-first`,
    }),
  );
  return { parent, purpose, notice };
}

/** The check tenant's subjects through ImportConsents (subject i as bench/check-jobs.ts expects: every 10th opted out). */
async function importSubjects(clients: Clients, target: WriteTarget, subjects: number, runId: string): Promise<void> {
  const response = await new Promise<ImportConsentsResponse>((resolve, reject) => {
    const call = clients.consent.importConsents(new Metadata(), { deadline: Date.now() + 300_000 }, (err, res) => (err ? reject(err) : resolve(res)));
    const now = Date.now();
    const CHUNK = 500;
    for (let first = 0; first < subjects; first += CHUNK) {
      const rows = [];
      for (let i = first; i < Math.min(subjects, first + CHUNK); i++) {
        const out = isOptedOut(i);
        rows.push({
          line: i + 1,
          subjectIdentifier: { kind: { $case: 'phoneNumber' as const, value: checkSubjectPhone(i) }, defaultRegion: '' },
          purpose: target.purpose,
          channel: Channel.CHANNEL_WHATSAPP,
          kind: out ? ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT : ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
          eventTime: new Date(now - 86_400_000 + i),
          method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
          notice: out ? '' : target.notice,
          evidence: { sourceIp: `198.51.100.${1 + (i % 250)}` },
          requestId: `${runId}-seed-${i}`,
        });
      }
      call.write(ImportConsentsRequest.fromPartial({ parent: first === 0 ? target.parent : '', rows }));
    }
    call.end();
  });
  if (Number(response.recorded) + Number(response.alreadyRecorded) !== subjects) {
    throw new Error(`seeding the check tenant recorded ${response.recorded} of ${subjects} rows (${response.rejections.length} rejected: ${response.rejections[0]?.status?.message ?? ''})`);
  }
}

/** Every subject once through CheckConsentBatch on `clients` (a replica's decision cache warmed, as after a while of service). */
async function warmReplica(clients: Clients, target: CheckTarget): Promise<void> {
  const BATCH = 1000;
  for (let first = 0; first < target.subjects; first += BATCH) {
    const subjects = Array.from({ length: Math.min(BATCH, target.subjects - first) }, (_, n) => first + n);
    const response = await unary(
      clients.consent,
      clients.consent.checkConsentBatch,
      CheckConsentBatchRequest.fromPartial({
        parent: target.parent,
        queries: subjects.map((i) => ({ subjectIdentifier: { kind: { $case: 'phoneNumber', value: checkSubjectPhone(i) }, defaultRegion: '' }, purpose: target.purpose, channel: Channel.CHANNEL_WHATSAPP })),
      }),
      60_000,
    );
    response.results.forEach((r, n) => {
      const expected = expectedDecision(subjects[n]);
      if (r.decision?.verdict !== expected.verdict) throw new Error(`warming: subject #${subjects[n]} answered ${r.decision?.verdict ?? r.error?.message}, expected ${expected.verdict}`);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

type Kind = 'no-op' | 'check' | 'write';

interface Workload {
  key: string;
  kind: Kind;
  name: string;
  concurrency: number;
  /**
   * Open loop: calls start at this rate whatever the answers (latency from each call's scheduled
   * time). Closed-loop rates differ between A and B, and a cheap call's CPU per op depends on the
   * rate (fewer calls per event-loop turn and per syscall at a low one): this compares A and B at
   * the same load.
   */
  openLoopRate?: number;
}

/** What the table's "In flight" column says for a workload. */
const load = (w: Workload) => (w.openLoopRate ? `${w.openLoopRate}/s, open loop` : String(w.concurrency));

const WORKLOADS: Workload[] = [
  { key: 'no-op', kind: 'no-op', name: 'Health/Check (no-op RPC)', concurrency: READ_CONCURRENCY },
  { key: 'check', kind: 'check', name: 'CheckConsent, warm (unary)', concurrency: READ_CONCURRENCY },
  // Below what B reached closed loop even on a busy machine; one share per generator (replica).
  { key: 'check-fixed', kind: 'check', name: 'CheckConsent, warm (unary)', concurrency: GENERATORS, openLoopRate: 200 },
  { key: 'hot-16', kind: 'write', name: 'RecordConsent opt-in, 1 tenant', concurrency: 16 },
  { key: 'hot-64', kind: 'write', name: 'RecordConsent opt-in, 1 tenant', concurrency: 64 },
  { key: 'spread-64', kind: 'write', name: `RecordConsent opt-in, ${SPREAD_TENANTS} tenants`, concurrency: 64 },
];

interface Measured {
  workload: Workload;
  m: PhaseMeasurement;
  /** Write lives only. */
  totals?: WriteTotals;
  db?: DbCounters;
  /** Check windows, when the build has metrics: the decision cache over warm-up and window. */
  cache?: CacheCounters;
}

interface AuditOutcome {
  ok: boolean;
  tenants: number;
  entries: number;
  records: number;
  acknowledged: number;
  failedWrites: number;
  problems: string[];
}

/** CPU seconds per second the replicas (summed) and the nodes (summed) used with no calls. */
interface IdleRates {
  server: number | null;
  database: number | null;
}

interface TopologyRun {
  topology: Pick<Topology, 'key' | 'label' | 'version' | 'settings'>;
  background: string;
  /** CPU of the replicas and the nodes with no calls, after the set-up. */
  idle: string;
  idleRates: IdleRates;
  databaseStartSeconds: number;
  seeding: string;
  results: Measured[];
  audit: AuditOutcome;
  seconds: number;
}

function progress(m: PhaseMeasurement): void {
  const failed = Object.entries(m.failed).map(([code, n]) => `${n} ${code} ("${m.failureMessages[code] ?? ''}")`);
  log(
    `    ${formatRate(m.rate)}/s (${fmt(m.items)} in ${m.seconds} s), p50 ${formatMs(m.latency.p50Ms)}, p99 ${formatMs(m.latency.p99Ms)}; server ${perOp(m.cpu.server, m.items)}/op, mariadbd ${perOp(m.cpu.database, m.items)}/op; CPU ${cpuShares(m)}${
      failed.length ? `; FAILED: ${failed.join(', ')}` : ''
    }${m.failedTotal > 0 ? ` (${m.failedTotal} failed in the whole phase)` : ''}${m.counters.overloaded ? `; FELL BEHIND the rate (${m.counters.notSent ?? 0} not sent)` : ''}`,
  );
}

async function waitForQuietMachine(maxWaitMs: number): Promise<number | null> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const load = await backgroundLoad(1000);
    if (load === null || load <= QUIET_PERCENT || Date.now() >= deadline) return load;
  }
}

async function benchmarkTopology(key: 'A' | 'B', s: Settings, options: Options, rootKeysFile: string): Promise<TopologyRun> {
  const started = Date.now();
  log(`\n== ${key === 'A' ? 'A: one replica on one MariaDB (private server)' : `B: ${REPLICAS_B} replicas on a ${REPLICAS_B}-node Galera cluster`}`);
  let topology: Topology | null = null;
  const stopTopology = async () => {
    await topology?.stop();
  };
  return using(stopTopology, async () => {
    topology = key === 'A' ? await startSingle() : await startGalera();
    const t = topology;
    const databaseStartSeconds = (Date.now() - started) / 1000;
    log(`  ${t.version}; ${t.settings}; started in ${databaseStartSeconds.toFixed(0)} s`);
    const background = await waitForQuietMachine(s.quietWaitMs);
    const busy = background === null ? 'unknown' : `${Math.round(background)}% of one core`;
    log(`  machine load before the run (benchmark idle): ${busy}`);
    const runId = `${key}${Date.now().toString(36)}`;
    const results: Measured[] = [];
    let idle = '';
    let idleRates: IdleRates = { server: null, database: null };

    // Life 1: set-up through the first replica, an idle window, then the no-op and the check windows.
    let hot16!: WriteTarget;
    let hot64!: WriteTarget;
    const spread: WriteTarget[] = [];
    let seeding = '';
    const setupLife = await serverLife(t, rootKeysFile, 'warn', options, async (fleet) => {
      log(`  replicas: ${fleet.replicas.map((r) => `pid ${r.pid} on ${r.address}`).join(', ')} (${fleet.startup.replicas.toFixed(1)} s); generators ${fleet.generators.pids.join(', ')} (${fleet.startup.generators.toFixed(1)} s)`);
      const admin = fleet.clients[0];
      const setupStarted = Date.now();
      hot16 = await createTenant(admin, 'hot16', runId);
      hot64 = await createTenant(admin, 'hot64', runId);
      for (let i = 0; i < SPREAD_TENANTS; i++) spread.push(await createTenant(admin, `spread${i}`, runId));
      const checks = await createTenant(admin, 'checks', runId);
      const tenantsSeconds = (Date.now() - setupStarted) / 1000;
      const seedStarted = Date.now();
      await importSubjects(admin, checks, s.checkSubjects, runId);
      const seedSeconds = (Date.now() - seedStarted) / 1000;
      seeding = `${SPREAD_TENANTS + 3} tenants in ${tenantsSeconds.toFixed(1)} s; ${fmt(s.checkSubjects)} check subjects imported in ${seedSeconds.toFixed(1)} s (${fmt(s.checkSubjects / seedSeconds)} rows/s)`;
      log(`  ${seeding}`);
      const target: CheckTarget = { parent: checks.parent, purpose: checks.purpose, subjects: s.checkSubjects };
      const warmStarted = Date.now();
      await Promise.all(fleet.clients.map((c) => warmReplica(c, target)));
      log(`  decision caches warmed (every subject once on each replica) in ${((Date.now() - warmStarted) / 1000).toFixed(1)} s`);

      // What the replicas and the nodes use with no calls at all (probes, the decision cache's
      // catch-up, Galera's own chatter): at low rates it is a visible part of the cost per op.
      const meter = fleet.generators.meter();
      const before = meter.sample();
      await new Promise((resolve) => setTimeout(resolve, s.idleMs));
      const u = ProcessGroupMeter.usage(before, meter.sample());
      const pct = (v: number | null) => (v === null ? '–' : `${Math.round((v / u.seconds) * 100)}%`);
      idle = `replicas ${pct(u.server)}, mariadbd ${pct(u.database)} of one core (other processes: ${pct(u.other)})`;
      idleRates = { server: u.server === null ? null : u.server / u.seconds, database: u.database === null ? null : u.database / u.seconds };
      log(`  idle for ${s.idleMs / 1000} s: ${idle}`);

      const measured: Measured[] = [];
      for (const w of WORKLOADS.filter((x) => x.kind !== 'write')) {
        const job: JobRequest = w.kind === 'no-op' ? { kind: 'health-check' } : { kind: 'check-unary', params: { target, keys: { kind: 'uniform', seed: 11 } } satisfies UnaryCheckParams };
        log(`  ${w.name}, ${load(w)}${w.openLoopRate ? '' : ' in flight'} ...`);
        const cacheBefore = await cacheCounters(fleet.metricsPorts);
        const m = await fleet.generators.run(job, {
          concurrency: w.concurrency,
          warmupMs: s.warmupMs,
          durationMs: s.durationMs,
          openLoop: w.openLoopRate ? { rate: w.openLoopRate, maxInFlight: 512 } : undefined,
        });
        const cacheAfter = await cacheCounters(fleet.metricsPorts);
        progress(m);
        const cache = cacheBefore && cacheAfter ? { hits: cacheAfter.hits - cacheBefore.hits, misses: cacheAfter.misses - cacheBefore.misses, stale: cacheAfter.stale - cacheBefore.stale } : undefined;
        if (w.key === 'check' && cache) log(`    decision cache over warm-up and window: ${fmt(cache.hits)} hits, ${fmt(cache.misses)} misses, ${fmt(cache.stale)} stale`);
        measured.push({ workload: w, m, cache });
      }
      return measured;
    }, true);
    results.push(...setupLife.result);

    // One server life per write workload, so each replica's totals and the nodes' counters are
    // that workload's. The last one also verifies every write tenant's audit log once its window
    // is over (reads only: the write figures stay that workload's).
    let audit: AuditOutcome | null = null;
    const writeWorkloads = WORKLOADS.filter((w) => w.kind === 'write');
    const writeTenants = ['hot16', 'hot64', ...spread.map((x) => x.parent.slice('tenants/'.length))];
    for (const w of writeWorkloads) {
      const targets = w.key === 'hot-16' ? [hot16] : w.key === 'hot-64' ? [hot64] : spread;
      const job: JobRequest = { kind: 'record-consent', params: { targets, runId: `${runId}-${w.key}`, repeatShare: 0.2, seed: w.concurrency } satisfies RecordConsentParams };
      const last = w === writeWorkloads[writeWorkloads.length - 1];
      const lifeStarted = Date.now();
      const life = await serverLife(t, rootKeysFile, 'info', options, async (fleet) => {
        log(`  ${w.name}, ${w.concurrency} in flight (fresh replicas ${fleet.replicas.map((r) => r.pid).join(', ')} up in ${fleet.startup.replicas.toFixed(1)} s, generators in ${fleet.startup.generators.toFixed(1)} s) ...`);
        const m = await fleet.generators.run(job, { concurrency: w.concurrency, warmupMs: s.writeWarmupMs, durationMs: s.writeDurationMs, deadlineMs: 30_000 });
        progress(m);
        if (!last) return { m, audit: null };
        const writes = [...results.filter((r) => r.workload.kind === 'write').map((r) => r.m), m];
        const acknowledged = writeTenants.length + sum(writes.map((x) => x.okTotal));
        const failedWrites = sum(writes.map((x) => x.failedTotal));
        log(`  verifying the audit logs of ${writeTenants.length} tenants through the last replica ...`);
        return { m, audit: await verifyAudit(fleet.replicas[fleet.replicas.length - 1].address, writeTenants, acknowledged, failedWrites) };
      });
      const measured: Measured = { workload: w, m: life.result.m, totals: life.totals, db: life.db };
      log(`    ${describeTotals(measured, t.key)}; life took ${((Date.now() - lifeStarted) / 1000).toFixed(0)} s`);
      results.push(measured);
      if (life.result.audit) {
        audit = life.result.audit;
        log(`    audit ${audit.ok ? 'verified' : 'FAILED'}: ${fmt(audit.entries)} entries, ${fmt(audit.records)} consent event rows for ${fmt(audit.acknowledged)} acknowledged writes (${fmt(audit.failedWrites)} failed)${audit.problems.length ? `\n    ${audit.problems.join('\n    ')}` : ''}`);
      }
    }
    return {
      topology: { key: t.key, label: t.label, version: t.version, settings: t.settings },
      background: busy,
      idle,
      idleRates,
      databaseStartSeconds,
      seeding,
      results,
      audit: audit!,
      seconds: (Date.now() - started) / 1000,
    };
  });
}

/**
 * Every tenant's log checked by the independent verifier, then its consent event rows counted
 * against what the generators were told: every acknowledged write must be there; a failed one
 * (its budget ran out) may or may not have committed.
 */
async function verifyAudit(address: string, tenants: string[], acknowledged: number, failedWrites: number): Promise<AuditOutcome> {
  const problems: string[] = [];
  let entries = 0;
  let records = 0;
  for (const tenant of tenants) {
    try {
      const result = await verifyAuditLog({ address, credentials: credentials.createInsecure(), metadata: new Metadata(), tenant, entries: true, records: true });
      entries += result.entriesChecked ?? 0;
      records += result.recordsChecked ?? 0;
    } catch (err) {
      problems.push(`tenant ${tenant}: ${(err as Error).message}`);
    }
  }
  if (problems.length === 0 && records < acknowledged) problems.push(`${fmt(acknowledged)} writes were acknowledged but the logs vouch for only ${fmt(records)} consent events`);
  if (problems.length === 0 && records > acknowledged + failedWrites) problems.push(`${fmt(records)} consent events for ${fmt(acknowledged)} acknowledged and ${fmt(failedWrites)} failed writes`);
  return { ok: problems.length === 0, tenants: tenants.length, entries, records, acknowledged, failedWrites, problems };
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

function perOp(cpuSeconds: number | null, items: number): string {
  if (cpuSeconds === null || items === 0) return '–';
  const us = (cpuSeconds * 1e6) / items;
  return us < 1000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(2)} ms`;
}

function perOpUs(cpuSeconds: number | null, items: number): number | null {
  return cpuSeconds === null || items === 0 ? null : (cpuSeconds * 1e6) / items;
}

function cpuShares(m: PhaseMeasurement): string {
  const pct = (v: number | null) => (v === null ? '–' : `${Math.round((v / m.cpu.seconds) * 100)}%`);
  return `gen ${pct(m.cpu.generators)} / server ${pct(m.cpu.server)} / db ${pct(m.cpu.database)} / other ${pct(m.cpu.other)}`;
}

const perThousand = (n: number, writes: number) => (writes > 0 ? ((n * 1000) / writes).toFixed(n * 1000 < writes * 10 ? 2 : 1) : '–');

/** Conflicts the databases counted and retries the replicas made, per 1,000 writes of the life. */
function conflictCells(r: Measured, key: 'A' | 'B'): { conflicts: string; retries: string; batch: string } {
  if (!r.totals || !r.db) return { conflicts: '–', retries: '–', batch: '–' };
  const t = r.totals;
  const d = r.db;
  const conflicts = key === 'B' ? d.certFailures + d.bfAborts + d.deadlocks : d.deadlocks;
  return {
    conflicts: `${perThousand(conflicts, t.writes)}${key === 'B' ? ` (cert ${fmt(d.certFailures)}, BF ${fmt(d.bfAborts)}, deadlock ${fmt(d.deadlocks)})` : ` (deadlock ${fmt(d.deadlocks)})`}`,
    retries: `${perThousand(t.raceRetries, t.writes)} race, ${perThousand(t.otherRetries, t.writes)} other`,
    batch: t.batches > 0 ? (t.writes / t.batches).toFixed(1) : '–',
  };
}

function describeTotals(r: Measured, key: 'A' | 'B'): string {
  const t = r.totals!;
  const d = r.db!;
  return `life: ${fmt(t.writes)} writes in ${fmt(t.batches)} transactions, ${fmt(t.raceRetries)} race retries, ${fmt(t.otherRetries)} other retries (totals of ${t.replicas} replica(s)); database: ${
    key === 'B' ? `${fmt(d.certFailures)} certification failures, ${fmt(d.bfAborts)} brute-force aborts, ` : ''
  }${fmt(d.deadlocks)} deadlocks${key === 'B' ? `, ${fmt(d.replicated)} write sets (${fmt(d.replicatedBytes / Math.max(1, d.replicated))} bytes each), flow control paused ${fmt(d.flowControlPausedNs / 1e6)} ms` : ''}; ${fmt(r.m.failedTotal)} calls failed`;
}

function failedCell(m: PhaseMeasurement): string {
  const inWindow = Object.entries(m.failed).map(([code, n]) => `${fmt(n)} ${code}`);
  const aborted = m.failed.ABORTED ?? 0;
  // Open loop: a generator that had too many calls outstanding stopped sending (the server fell behind).
  const behind = m.counters.overloaded ? `; **fell behind the rate: ${fmt(m.counters.notSent ?? 0)} calls not sent**` : '';
  if (m.failedTotal === 0) return `0${behind}`;
  return `**${fmt(m.failedTotal)}** (in window: ${inWindow.join(', ') || 'none'}; ABORTED ${fmt(aborted)})${behind}`;
}

function renderReport(runs: TopologyRun[], failures: string[], s: Settings, options: Options, totalSeconds: number): string {
  const lines = [
    `## Scale-out benchmark${options.quick ? ' (quick run: short windows)' : ''}`,
    '',
    `Run ${new Date().toISOString()}: \`npm run bench:scale-out -- ${process.argv.slice(2).join(' ')}\`, ${totalSeconds.toFixed(0)} s in all.`,
    '',
    `**${CAVEAT}**`,
    '',
    ...machineInfo(options.root ? `server built in ${options.root}` : null),
    '',
  ];
  for (const run of runs) {
    lines.push(`- ${run.topology.label}: ${run.topology.version}; ${run.topology.settings}. Database(s) started in ${run.databaseStartSeconds.toFixed(0)} s. Machine load just before (benchmark idle): ${run.background}. Set-up: ${run.seeding}. Idle (no calls, after the set-up): ${run.idle}. ${run.seconds.toFixed(0)} s in all.`);
  }
  lines.push(
    `- Both: DATABASE_CALL_TIMEOUT_MS=${CALL_TIMEOUT_MS}, connection pools at their defaults (10 data + 10 key store per replica), one shared ROOT_KEYS_FILE; ${GENERATORS} load-generator processes, in B generator i drives replica i (calls spread evenly, as round_robin does); read windows of ${s.durationMs / 1000} s after ${s.warmupMs / 1000} s of warm-up, write windows of ${s.writeDurationMs / 1000} s after ${s.writeWarmupMs / 1000} s.`,
    '',
    '| Workload | In flight | Set-up | Rate | p50 | p99 | Server CPU per op (Σ replicas) | mariadbd CPU per op (Σ nodes) | CPU, % of a core: generators / server / db / other | Conflicts per 1,000 writes (database counters) | Retries per 1,000 writes (replicas) | Writes per transaction | Failed calls |',
    '|---|--:|---|--:|--:|--:|--:|--:|---|---|---|--:|--:|',
  );
  for (const w of WORKLOADS) {
    for (const run of runs) {
      const r = run.results.find((x) => x.workload.key === w.key);
      if (!r) continue;
      const unit = w.kind === 'write' ? 'writes/s' : 'calls/s';
      const c = conflictCells(r, run.topology.key);
      lines.push(
        `| ${w.name} | ${load(w)} | ${run.topology.key} | ${formatRate(r.m.rate)} ${unit} | ${formatMs(r.m.latency.p50Ms)} | ${formatMs(r.m.latency.p99Ms)} | ${perOp(r.m.cpu.server, r.m.items)} | ${perOp(r.m.cpu.database, r.m.items)} | ${cpuShares(r.m)} | ${c.conflicts} | ${c.retries} | ${c.batch} | ${failedCell(r.m)} |`,
      );
    }
  }
  const a = runs.find((r) => r.topology.key === 'A');
  const b = runs.find((r) => r.topology.key === 'B');
  if (a && b) {
    lines.push('', '**B against A** (same workload, same generators):', '', '| Workload | In flight | Rate B/A | p99 B/A | Server CPU per op B/A | mariadbd CPU per op B/A | Server + mariadbd CPU per op, A → B | The same above idle, A → B |', '|---|--:|--:|--:|--:|--:|--:|--:|');
    for (const w of WORKLOADS) {
      const ra = a.results.find((x) => x.workload.key === w.key);
      const rb = b.results.find((x) => x.workload.key === w.key);
      if (!ra || !rb) continue;
      const ratio = (x: number | null, y: number | null) => (x === null || y === null || y === 0 ? '–' : times(x / y));
      const both = (r: Measured) => {
        const server = perOpUs(r.m.cpu.server, r.m.items);
        const db = perOpUs(r.m.cpu.database, r.m.items);
        return server === null || db === null ? null : server + db;
      };
      // What the fleet uses with no calls at all, taken out: what the calls themselves cost.
      const aboveIdle = (r: Measured, idleRates: IdleRates) => {
        const total = r.m.cpu.server === null || r.m.cpu.database === null || idleRates.server === null || idleRates.database === null ? null : r.m.cpu.server + r.m.cpu.database;
        return total === null || r.m.items === 0 ? null : Math.max(0, ((total - (idleRates.server! + idleRates.database!) * r.m.cpu.seconds) * 1e6) / r.m.items);
      };
      const us = (v: number | null) => (v === null ? '–' : v < 1000 ? `${Math.round(v)} µs` : `${(v / 1000).toFixed(2)} ms`);
      lines.push(
        `| ${w.name} | ${load(w)} | ${times(rb.m.rate / ra.m.rate)} | ${times(rb.m.latency.p99Ms / ra.m.latency.p99Ms)} | ${ratio(perOpUs(rb.m.cpu.server, rb.m.items), perOpUs(ra.m.cpu.server, ra.m.items))} | ${ratio(
          perOpUs(rb.m.cpu.database, rb.m.items),
          perOpUs(ra.m.cpu.database, ra.m.items),
        )} | ${us(both(ra))} → ${us(both(rb))} | ${us(aboveIdle(ra, a.idleRates))} → ${us(aboveIdle(rb, b.idleRates))} |`,
      );
    }
  }
  lines.push('');
  for (const run of runs) {
    for (const r of run.results.filter((x) => x.totals)) lines.push(`- ${run.topology.key}, ${r.workload.name}, ${r.workload.concurrency} in flight, whole server life (warm-up, window, drain): ${describeTotals(r, run.topology.key)}.`);
    const check = run.results.find((x) => x.workload.key === 'check');
    if (check?.cache) {
      const c = check.cache;
      const all = c.hits + c.misses + c.stale;
      lines.push(`- ${run.topology.key}, decision cache during the check phase (warm-up and window, all replicas, from /metrics): ${fmt(c.hits)} hits, ${fmt(c.misses)} misses, ${fmt(c.stale)} refused as stale${all > 0 ? ` (${((c.hits / all) * 100).toFixed(1)}% answered from the cache)` : ''}.`);
    }
    const au = run.audit;
    lines.push(
      `- ${run.topology.key}, audit: ${au.ok ? '**verified**' : '**VERIFICATION FAILED**'}: ${au.tenants} write tenants checked with the independent verifier (checkpoint signature, every entry re-hashed, every consent event row matched with its entry): ${fmt(au.entries)} entries, ${fmt(au.records)} consent event rows for ${fmt(au.acknowledged)} acknowledged writes${au.failedWrites ? ` and ${fmt(au.failedWrites)} failed ones` : ''}.${au.problems.length ? ` Problems: ${au.problems.join('; ')}` : ''}`,
    );
  }
  lines.push(
    '- Rates count calls that succeeded and finished inside the window, per second of window. CPU per op: the processes\' CPU time over exactly the window / operations completed in it; "other" is the rest of the machine (other people\'s work) in the same window.',
    '- Conflicts: B: wsrep_local_cert_failures (a local transaction failed certification) + wsrep_local_bf_aborts (a local transaction was aborted by a replicated one) + Innodb_deadlocks, summed over the nodes; A: Innodb_deadlocks. Retries: transactions the replicas ran again after losing a race at commit ("race": deadlock or certification conflict, with a growing random pause) or after a lock wait timeout ("other"), from each replica\'s "write path totals" at SIGTERM. A transaction holds a batch of writes (group commit), so one conflict may repeat several writes.',
    '- Write lives run the replicas at LOG_LEVEL=info (the totals line is an info line), so each call also writes one JSON log line there, in A and B alike; the no-op and check windows run at warn.',
  );
  for (const f of failures) lines.push(`- FAILED: ${f}`);
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const s = options.quick ? QUICK : FULL;
  const started = Date.now();
  process.on('SIGINT', () => stop('interrupted', 130));
  process.on('SIGTERM', () => stop('terminated', 143));
  const watchdog = setTimeout(() => stop(`time limit of ${Math.round(s.watchdogMs / 60_000)} min exceeded`, 2), s.watchdogMs);
  watchdog.unref();
  log(CAVEAT);

  if (options.root) log(`server build: ${options.root}`);
  else ensureBuilt(log);
  const keysDir = mkdtempSync(path.join(os.tmpdir(), 'consent-scale-out-'));
  process.on('exit', () => rmSync(keysDir, { recursive: true, force: true }));
  const rootKeysFile = path.join(keysDir, 'root-keys.json');
  writeFileSync(rootKeysFile, JSON.stringify({ keys: [{ kty: 'oct', kid: 'scale-out-root', k: randomBytes(32).toString('base64url') }] }), { mode: 0o600 });

  const runs: TopologyRun[] = [];
  const failures: string[] = [];
  for (const key of ['A', 'B'] as const) {
    try {
      runs.push(await benchmarkTopology(key, s, options, rootKeysFile));
    } catch (err) {
      if (stopping) await new Promise<never>(() => undefined);
      log(`\n!! ${key} failed: ${(err as Error).stack ?? (err as Error).message}`);
      failures.push(`${key}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  rmSync(keysDir, { recursive: true, force: true });
  const markdown = renderReport(runs, failures, s, options, (Date.now() - started) / 1000);
  process.stdout.write(`\n${markdown}`);
  if (options.out) {
    writeFileSync(options.out, markdown);
    log(`report written to ${options.out}`);
  }
  log(`total time ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (runs.length === 0 || failures.length > 0) return 1;
  if (runs.some((r) => !r.audit.ok)) {
    log('bench:scale-out: an audit log did not verify');
    return 1;
  }
  const refused = runs.flatMap((r) => r.results).filter((r) => r.workload.kind === 'write' && r.m.failedTotal > 0);
  if (refused.length > 0) {
    log('bench:scale-out: writes failed (see the table)');
    return 1;
  }
  return 0;
}

main().then(
  async (code) => {
    await cleanupAll();
    process.exit(code);
  },
  async (err: Error) => {
    log(`bench:scale-out: ${err.stack ?? err.message}`);
    await cleanupAll();
    process.exit(1);
  },
);
