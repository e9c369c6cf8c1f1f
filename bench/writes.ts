import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import mysql from 'mysql2/promise';
import { verifyAuditLog } from '../src/cli/audit-verify';
import { Channel, PurposeCategory } from '../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, RecordConsentRequest } from '../src/gen/consent/v1/consent';
import { CreatePurposeRequest, PublishNoticeRequest } from '../src/gen/consent/v1/purpose';
import { CreateTenantRequest } from '../src/gen/consent/v1/tenant';
import { createDataSource } from '../src/storage/data-source';
import { createClients, unary } from './clients';
import { backgroundLoad, findDatabasePid } from './cpu';
import { JobRequest, LoadGenerators, PhaseMeasurement } from './load-generators';
import { renderProfileSummary, summariseProfile, ProfileWindow } from './profile-summary';
import { machineInfo } from './report';
import { DatabaseKind, DatabaseUnavailableError, dropMariaDb, ensureBuilt, MARIADB, mariadbUrl, resetMariaDb, ServerProcess, startServer } from './server-process';
import { formatMs, formatRate } from './stats';
import { RawInsertParams, RecordConsentParams, WriteTarget } from './write-jobs';

/**
 * `npm run bench:writes [-- --db sqlite|mariadb|both] [--quick] [--out FILE] [--profile DIR] [--generators N] [--keep] [--verbose] [--label TEXT] [--root DIR]`
 *
 * The write path against its yardsticks, in one run per database, against one server process:
 * the no-op RPC (grpc.health.v1 Health/Check) and durable opt-ins through the gRPC API
 * (RecordConsent) driven by the same load-generator processes, at 16 and 256 in flight (and 1),
 * on one tenant and spread over 100; then single-row autocommit INSERTs straight into the
 * database at the same concurrency. Server CPU per operation comes from /proc over exactly the
 * measurement window. Afterwards every benchmark tenant's audit log is verified with the
 * independent verifier (src/cli/audit-verify.ts: checkpoint signature, every entry re-hashed,
 * every consent event row matched to its entry); a failed verification fails the run.
 *
 * Progress goes to stderr, the markdown report to stdout (and --out).
 */

interface Options {
  databases: DatabaseKind[];
  quick: boolean;
  out: string | null;
  profileDir: string | null;
  generators: number;
  keep: boolean;
  verbose: boolean;
  label: string | null;
  /** Run the server built in this folder (DIR/dist/src/main.js) instead of this checkout's dist/. */
  root: string | null;
  /** Run only these workloads (phase keys), e.g. to time one of them with a preload or profiler. */
  only: Set<string> | null;
}

interface Settings {
  /** Warm-up before each window: no-op and raw inserts. */
  warmupMs: number;
  /** Warm-up before a write window: long enough for 256 writes in flight at today's rate to cycle once. */
  writeWarmupMs: number;
  /** Length of every measurement window. */
  durationMs: number;
  /** Tenants of the spread workload. */
  tenants: number;
  /** Share of writes that name a person written before. */
  repeatShare: number;
  /** Waiting for a quiet machine before each database, at most. */
  quietWaitMs: number;
  /** Measurements per workload at most, when other processes disturb one. */
  attempts: number;
  /** The whole run ends by itself after this long. */
  watchdogMs: number;
}

const FULL: Settings = { warmupMs: 2000, writeWarmupMs: 3000, durationMs: 6000, tenants: 100, repeatShare: 0.2, quietWaitMs: 30_000, attempts: 2, watchdogMs: 25 * 60_000 };
const QUICK: Settings = { ...FULL, warmupMs: 500, writeWarmupMs: 1500, durationMs: 2000, quietWaitMs: 0, attempts: 1, watchdogMs: 6 * 60_000 };

/** Background CPU (percent of one core) above which a measurement counts as disturbed. */
const QUIET_PERCENT = 25;
/** The MariaDB databases of this benchmark (the key store is `<name>_keys`); apart from `npm run bench`'s. */
const SERVICE_DB = 'consent_bench_writes';
const RAW_DB = 'consent_bench_writes_raw';
const TENANT = 'bench';
/** The workloads' keys (phasesFor), for --only. */
const PHASE_KEYS = ['no-op-1', 'no-op-16', 'no-op-256', 'write-1-tenant-16', 'write-1-tenant-256', 'write-1-tenant-1', 'write-100-tenants-16', 'write-100-tenants-256', 'raw-insert-16', 'raw-insert-256'];
const PURPOSE_ID = 'newsletter';

const USAGE = `usage: npm run bench:writes -- [--db sqlite|mariadb|both] [--quick] [--out FILE] [--profile DIR] [--generators N] [--keep] [--verbose] [--label TEXT] [--root DIR]
  --db          which database(s) (default: both)
  --quick       short windows (2 s): a smoke test of the benchmark, under 3 minutes for both databases
  --out         also write the markdown report to FILE
  --profile     run the server under the V8 CPU profiler: DIR/server-<db>.cpuprofile, DIR/windows-<db>.json
                (the measurement windows), and a summary of where the write windows' time went in the report
  --generators  load-generator processes (default 2)
  --keep        keep the data folder and the MariaDB databases ${SERVICE_DB}, ${SERVICE_DB}_keys, ${RAW_DB}
  --verbose     echo the server's output
  --label       describe the code under test in the report (default: git commit of this checkout)
  --root        run the server built in DIR (DIR/dist/src/main.js, e.g. a snapshot of some commits built elsewhere
                while others edit src/ here) instead of this checkout's dist/, which is then not rebuilt
  --only        run only these workloads, comma-separated: ${PHASE_KEYS.join(', ')}
                (e.g. one write window under a preload or profiler; goals without their workloads show –)`;

function parseArgs(argv: string[]): Options {
  const options: Options = { databases: ['sqlite', 'mariadb'], quick: false, out: null, profileDir: null, generators: 2, keep: false, verbose: false, label: null, root: null, only: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usageError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--db': {
        const db = value();
        if (db === 'both') options.databases = ['sqlite', 'mariadb'];
        else if (db === 'sqlite' || db === 'mariadb') options.databases = [db];
        else usageError(`--db must be sqlite, mariadb or both (got "${db}")`);
        break;
      }
      case '--quick':
        options.quick = true;
        break;
      case '--out':
        options.out = path.resolve(value());
        break;
      case '--profile':
        options.profileDir = path.resolve(value());
        break;
      case '--generators': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1 || n > 8) usageError('--generators must be an integer from 1 to 8');
        options.generators = n;
        break;
      }
      case '--keep':
        options.keep = true;
        break;
      case '--verbose':
        options.verbose = true;
        break;
      case '--label':
        options.label = value();
        break;
      case '--root':
        options.root = path.resolve(value());
        break;
      case '--only': {
        const keys = value().split(',').map((k) => k.trim()).filter((k) => k !== '');
        const unknown = keys.filter((k) => !PHASE_KEYS.includes(k));
        if (keys.length === 0 || unknown.length > 0) usageError(`--only takes workloads out of ${PHASE_KEYS.join(', ')}${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`);
        options.only = new Set(keys);
        break;
      }
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
  process.stderr.write(`bench:writes: ${message}\n${USAGE}\n`);
  process.exit(2);
}

/** better-sqlite3 has no type declarations here: the little this file uses of it. */
interface SqliteStatement {
  all(): unknown[];
  pluck(): { get(): unknown };
}
const Database = require('better-sqlite3') as new (file: string, options?: { readonly?: boolean; fileMustExist?: boolean }) => { prepare(sql: string): SqliteStatement; close(): void };

const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
/** A ratio with enough digits to tell 0.004x from 0.04x. */
const times = (ratio: number) => `${ratio.toFixed(ratio < 0.1 ? 3 : ratio < 10 ? 2 : 1)}x`;

// ---------------------------------------------------------------------------------------------
// What runs, and what it measured
// ---------------------------------------------------------------------------------------------

type PhaseKind = 'no-op' | 'write' | 'raw';

interface Phase {
  /** Stable key: the profile windows and the goals refer to it. */
  key: string;
  kind: PhaseKind;
  name: string;
  concurrency: number;
  job: JobRequest;
  /** The no-op phase this one is compared with (same concurrency). */
  noOpKey?: string;
  /** Run on this many generators at most (default: all). */
  generators?: number;
  note?: string;
}

interface PhaseResult {
  phase: Phase;
  /** The kept attempt (the least disturbed one). */
  m: PhaseMeasurement;
  /** Calls that succeeded / failed over every attempt, warm-up and drain included (every acknowledged write). */
  okTotal: number;
  failedTotal: number;
  notes: string[];
}

interface Durability {
  /** One line for the table's heading: what "durable" means in this run. */
  summary: string;
  /** Details for the notes under the table. */
  notes: string[];
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

interface DatabaseRun {
  kind: DatabaseKind;
  label: string;
  version: string;
  durability: Durability;
  background: string;
  serverPool: string;
  results: PhaseResult[];
  audit: AuditOutcome;
  generators: number;
  profile: string[];
  seconds: number;
}

// ---------------------------------------------------------------------------------------------
// Interrupts and the watchdog: stop generators and the server, drop the databases
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
  log(`\n${reason}: stopping the load generators and the server, dropping the benchmark databases (again to force)`);
  const force = setTimeout(() => process.exit(code), 20_000);
  force.unref();
  void cleanupAll().finally(() => process.exit(code));
}

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

/** Tenant, MARKETING purpose, notice, and one opt-in (so the tenant's keys are cached before any window). */
async function createTarget(clients: ReturnType<typeof createClients>, tenantId: string, runId: string): Promise<WriteTarget> {
  const parent = `tenants/${tenantId}`;
  await unary(clients.tenants, clients.tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId, displayName: `Write benchmark ${tenantId}`, requestId: `${runId}-tenant` }));
  await unary(
    clients.purposes,
    clients.purposes.createPurpose,
    CreatePurposeRequest.fromPartial({ parent, purposeId: PURPOSE_ID, purpose: { displayName: 'Newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING }, requestId: `${runId}-purpose` }),
  );
  const purpose = `${parent}/purposes/${PURPOSE_ID}`;
  const published = await unary(
    clients.purposes,
    clients.purposes.publishNotice,
    PublishNoticeRequest.fromPartial({ parent: purpose, language: 'en', text: 'We would like to send you our newsletter. You can opt out at any time by replying STOP.', requestId: `${runId}-notice` }),
  );
  const notice = published.notice?.name;
  if (!notice) throw new Error('PublishNotice returned no notice name');
  const first = await unary(
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
      requestId: `${runId}-first`,
    }),
  );
  if (first.event?.kind !== ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN) throw new Error(`the first opt-in of ${tenantId} came back as ${first.event?.kind}`);
  return { parent, purpose, notice };
}

async function inParallel<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i]);
      }
    }),
  );
  return results;
}

const SQLITE_SYNCHRONOUS: Record<number, string> = {
  0: 'OFF: no fsync at all; a commit may be lost even when only the OS crashes',
  1: 'NORMAL: in WAL mode a commit survives the process crashing (even SIGKILL), but the WAL is fsynced only at checkpoints, so an OS crash or power loss may lose the last commits before the most recent sync (never corrupting the file)',
  2: 'FULL: the WAL is fsynced at every commit: a commit survives a power loss',
  3: 'EXTRA: as FULL, and the directory is synced too',
};

/**
 * The raw-insert table for SQLite: a new file next to the service's, its consent_events table
 * created with the DDL the service's migrations produced, opened through createDataSource so the
 * pragmas are the service's. Reads the modes back from that connection.
 */
async function prepareSqliteRaw(server: ServerProcess): Promise<{ file: string; durability: Durability }> {
  const serviceFile = path.join(server.dataDir, 'consent-ledger.sqlite');
  const service = new Database(serviceFile, { readonly: true, fileMustExist: true });
  const ddl = service.prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'consent_events' AND sql IS NOT NULL ORDER BY type DESC").all() as unknown as Array<{ sql: string }>;
  service.close();
  if (ddl.length === 0) throw new Error('the service database has no consent_events table');
  const file = path.join(server.dataDir, 'raw-inserts.sqlite');
  const dataSource = await createDataSource({ kind: 'sqlite', file });
  await dataSource.initialize();
  try {
    for (const { sql } of ddl) await dataSource.query(sql);
    const journal = String((await dataSource.query('PRAGMA journal_mode'))[0].journal_mode);
    const synchronous = Number((await dataSource.query('PRAGMA synchronous'))[0].synchronous);
    const mode = SQLITE_SYNCHRONOUS[synchronous] ?? `${synchronous}`;
    const name = mode.split(':')[0];
    return {
      file,
      durability: {
        summary: `journal_mode=${journal}, synchronous=${name} (the service's pragmas, read back from a connection built by its createDataSource)`,
        notes: [
          `SQLite durability: journal_mode=${journal}, synchronous=${mode}.`,
          'Raw inserts: one connection (as the service has; SQLite admits one writer at a time and better-sqlite3 runs statements synchronously, so the calls in flight take turns), a file of its own in the same folder, table created with the service\'s own consent_events DDL.',
        ],
      },
    };
  } finally {
    await dataSource.destroy();
  }
}

/** The raw-insert database for MariaDB (consent_events copied with CREATE TABLE ... LIKE) and the server's durability settings. */
async function prepareMariaDbRaw(): Promise<{ url: string; durability: Durability; maxRawConnections: number; version: string }> {
  const admin = await mysql.createConnection({ host: MARIADB.host, port: MARIADB.port, user: MARIADB.user, connectTimeout: 3000 });
  try {
    await admin.query(`DROP DATABASE IF EXISTS \`${RAW_DB}\``);
    await admin.query(`CREATE DATABASE \`${RAW_DB}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
    await admin.query(`CREATE TABLE \`${RAW_DB}\`.consent_events LIKE \`${SERVICE_DB}\`.consent_events`);
    const [rows] = await admin.query(
      "SELECT VERSION() AS version, @@innodb_flush_log_at_trx_commit AS flush, @@log_bin AS binlog, @@sync_binlog AS syncBinlog, @@innodb_doublewrite AS doublewrite, @@innodb_buffer_pool_size AS pool, @@max_connections AS maxConnections, (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED') AS connected",
    );
    const r = (rows as Array<Record<string, string | number>>)[0];
    const flush = Number(r.flush);
    const flushMeaning =
      flush === 1 ? 'the redo log is written and fsynced at every commit (InnoDB group commit shares one fsync among concurrent commits)' : flush === 2 ? 'written at every commit, fsynced about once a second: an OS crash may lose up to a second of commits' : 'written and fsynced about once a second: a crash of mariadbd may lose up to a second of commits';
    // Leave room for the service's pools, other users of this MariaDB and the admin connection.
    const maxRawConnections = Math.max(16, Number(r.maxConnections) - Number(r.connected) - 30);
    return {
      url: mariadbUrl(RAW_DB),
      version: String(r.version),
      maxRawConnections,
      durability: {
        summary: `innodb_flush_log_at_trx_commit=${flush}, binary log ${Number(r.binlog) ? `on (sync_binlog=${r.syncBinlog})` : 'off'}`,
        notes: [
          `MariaDB durability (as this server has it): innodb_flush_log_at_trx_commit=${flush}: ${flushMeaning}; binary log ${Number(r.binlog) ? `on, sync_binlog=${r.syncBinlog}` : 'off'}; doublewrite ${Number(r.doublewrite) ? 'on' : 'off'}; buffer pool ${Math.round(Number(r.pool) / 2 ** 20)} MiB; max_connections ${r.maxConnections}.`,
          `Raw inserts: autocommit INSERTs over plain connections (prepared statements) into ${RAW_DB}.consent_events, created with CREATE TABLE ... LIKE the service's consent_events.`,
        ],
      },
    };
  } finally {
    await admin.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// One database
// ---------------------------------------------------------------------------------------------

async function waitForQuietMachine(maxWaitMs: number): Promise<number | null> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const load = await backgroundLoad(1000);
    if (load === null || load <= QUIET_PERCENT || Date.now() >= deadline) return load;
  }
}

function phasesFor(kind: DatabaseKind, runId: string, single: WriteTarget, spread: WriteTarget[], s: Settings, raw: (concurrency: number) => RawInsertParams): Phase[] {
  const writes = (targets: WriteTarget[], seed: number): JobRequest => ({ kind: 'record-consent', params: { targets, runId, repeatShare: s.repeatShare, seed } satisfies RecordConsentParams });
  const noOp = (n: number): Phase => ({ key: `no-op-${n}`, kind: 'no-op', name: 'Health/Check (no-op RPC)', concurrency: n, job: { kind: 'health-check' } });
  const phases: Phase[] = [noOp(1), noOp(16), noOp(256)];
  for (const n of [16, 256, 1]) {
    phases.push({ key: `write-1-tenant-${n}`, kind: 'write', name: 'RecordConsent opt-in, 1 tenant', concurrency: n, job: writes([single], n), noOpKey: `no-op-${n}` });
  }
  for (const n of [16, 256]) {
    phases.push({ key: `write-${spread.length}-tenants-${n}`, kind: 'write', name: `RecordConsent opt-in, ${spread.length} tenants`, concurrency: n, job: writes(spread, 1000 + n), noOpKey: `no-op-${n}` });
  }
  for (const n of [16, 256]) {
    // SQLite: one connection in one process, as the service has (a second connection would only add lock waits).
    phases.push({
      key: `raw-insert-${n}`,
      kind: 'raw',
      name: `Raw INSERT, 1 row, autocommit (${kind === 'sqlite' ? 'SQLite' : 'MariaDB'})`,
      concurrency: n,
      job: { kind: 'raw-insert', params: raw(n) },
      noOpKey: `no-op-${n}`,
      generators: kind === 'sqlite' ? 1 : undefined,
    });
  }
  return phases;
}

async function benchmarkDatabase(kind: DatabaseKind, s: Settings, options: Options): Promise<DatabaseRun> {
  const label = kind === 'sqlite' ? 'SQLite' : 'MariaDB';
  const started = Date.now();
  log(`\n== ${label}`);
  if (kind === 'mariadb') {
    await resetMariaDb(SERVICE_DB);
    cleanups.add(async () => {
      if (!options.keep) {
        await dropMariaDb(SERVICE_DB);
        await dropMariaDb(RAW_DB);
      }
    });
  }
  const background = await waitForQuietMachine(s.quietWaitMs);
  const busy = background === null ? 'unknown' : `${Math.round(background)}% of one core`;
  log(`  machine load before the run: ${busy}`);

  const server = await startServer({ database: kind, verbose: options.verbose, profileDir: options.profileDir ?? undefined, mariadbDatabase: SERVICE_DB, root: options.root ?? undefined });
  const stopServer = () => server.stop({ keepData: options.keep });
  cleanups.add(stopServer);
  log(`  server pid ${server.pid} on ${server.address}, data in ${server.dataDir}`);
  const clients = createClients(server.address);
  let generators: LoadGenerators | null = null;
  const stopGenerators = async () => generators?.stop();
  cleanups.add(stopGenerators);
  try {
    const runId = Date.now().toString(36);
    log(`  creating tenant ${TENANT} and ${s.tenants} more (purpose, notice, one opt-in each) ...`);
    const setupStarted = Date.now();
    const single = await createTarget(clients, TENANT, runId);
    const spreadIds = Array.from({ length: s.tenants }, (_, i) => `${TENANT}-t${String(i).padStart(3, '0')}`);
    const spread = await inParallel(spreadIds, 4, (id) => createTarget(clients, id, runId));
    log(`    ${s.tenants + 1} tenants in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s`);

    let durability: Durability;
    let version: string;
    let raw: (concurrency: number) => RawInsertParams;
    /** MariaDB: how many connections the raw inserts may open (max_connections leaves no room for 256 beside everyone else's). */
    let rawConnections = (n: number) => n;
    if (kind === 'sqlite') {
      const prepared = await prepareSqliteRaw(server);
      durability = prepared.durability;
      raw = () => ({ database: 'sqlite', file: prepared.file, runId });
      const probe = new Database(':memory:');
      version = `SQLite ${String(probe.prepare('SELECT sqlite_version()').pluck().get())} (better-sqlite3 ${(require('better-sqlite3/package.json') as { version: string }).version})`;
      probe.close();
    } else {
      const prepared = await prepareMariaDbRaw();
      durability = prepared.durability;
      version = `MariaDB ${prepared.version} on 127.0.0.1`;
      rawConnections = (n) => Math.min(n, prepared.maxRawConnections);
      raw = (n) => ({ database: 'mariadb', url: prepared.url, connectionsPerCall: rawConnections(n) / n, runId });
    }
    log(`  ${version}; ${durability.summary}`);

    const databasePid = kind === 'mariadb' ? findDatabasePid() : null;
    const generatorCount = options.generators;
    generators = await LoadGenerators.start({ count: generatorCount, address: server.address, serverPid: server.pid, databasePid });
    log(`  ${generatorCount} load generator(s): pids ${generators.pids.join(', ')}`);

    const phases = phasesFor(kind, runId, single, spread, s, raw).filter((phase) => !options.only || options.only.has(phase.key));
    if (options.only && phases.length !== options.only.size) throw new Error(`--only: the workloads are ${phasesFor(kind, runId, single, spread, s, raw).map((p) => p.key).join(', ')}`);
    const results: PhaseResult[] = [];
    const windows: ProfileWindow[] = [];
    for (const phase of phases) {
      const warmupMs = phase.kind === 'write' ? s.writeWarmupMs : s.warmupMs;
      let best: PhaseMeasurement | null = null;
      let okTotal = 0;
      let failedTotal = 0;
      for (let attempt = 1; attempt <= s.attempts; attempt++) {
        log(`  ${phase.name}, ${phase.concurrency} in flight${attempt > 1 ? ` (attempt ${attempt})` : ''} ...`);
        const m = await generators.run(phase.job, { concurrency: phase.concurrency, warmupMs, durationMs: s.durationMs, generators: phase.generators });
        progress(m, s);
        okTotal += m.okTotal;
        failedTotal += m.failedTotal;
        if (!best || otherPercent(m) < otherPercent(best)) best = m;
        if (otherPercent(best) <= QUIET_PERCENT) break;
        if (attempt < s.attempts) log(`    other processes used ${Math.round(otherPercent(m))}% of a core meanwhile: measuring again`);
      }
      const notes: string[] = [];
      if (phase.kind === 'raw' && kind === 'mariadb') {
        const perCall = rawConnections(phase.concurrency) / phase.concurrency;
        const connections = best!.split.reduce((sum, share) => sum + Math.max(1, Math.min(share, Math.floor(share * perCall))), 0);
        notes.push(`${connections} connections${connections < phase.concurrency ? ' (max_connections leaves no room for one per call)' : ''}`);
      }
      if (phase.kind === 'raw' && kind === 'sqlite') notes.push('1 connection in 1 generator: the calls take turns');
      const failedCalls = Object.values(best!.failed).reduce((sum, n) => sum + n, 0);
      if (failedCalls > 0) notes.push(`server CPU per call, failed ones included: ${perOp(best!.cpu.server, best!.items + failedCalls)}`);
      if (otherPercent(best!) > QUIET_PERCENT) notes.push(`**machine busy: other processes used ${Math.round(otherPercent(best!))}% of a core**`);
      results.push({ phase, m: best!, okTotal, failedTotal, notes });
      windows.push({ name: phase.key, from: best!.windowUs.from, to: best!.windowUs.to });
    }
    await generators.stop();
    cleanups.delete(stopGenerators);

    log('  verifying the audit logs of every benchmark tenant ...');
    const acknowledged = 1 + s.tenants + results.filter((r) => r.phase.kind === 'write').reduce((sum, r) => sum + r.okTotal, 0);
    const failedWrites = results.filter((r) => r.phase.kind === 'write').reduce((sum, r) => sum + r.failedTotal, 0);
    const audit = await verifyAudit(server.address, [TENANT, ...spreadIds], acknowledged, failedWrites);
    log(`    ${audit.ok ? 'verified' : 'FAILED'}: ${audit.tenants} tenants, ${fmt(audit.entries)} entries, ${fmt(audit.records)} consent event rows; ${fmt(acknowledged)} writes acknowledged, ${fmt(failedWrites)} failed${audit.problems.length ? `\n    ${audit.problems.join('\n    ')}` : ''}`);

    clients.close();
    await stopServer();
    cleanups.delete(stopServer);

    let profile: string[] = [];
    if (options.profileDir) {
      const windowsFile = path.join(options.profileDir, `windows-${kind}.json`);
      writeFileSync(windowsFile, JSON.stringify(windows, null, 1));
      profile = renderProfiles(label, path.join(options.profileDir, `server-${kind}.cpuprofile`), windows);
    }
    return {
      kind,
      label,
      version,
      durability,
      background: busy,
      serverPool: kind === 'mariadb' ? `the service's connection pool: ${process.env.DATABASE_POOL_SIZE ?? '10 (default)'}` : 'one connection',
      results,
      audit,
      generators: generatorCount,
      profile,
      seconds: (Date.now() - started) / 1000,
    };
  } catch (err) {
    const exited = server.exitStatus();
    throw new Error(`${(err as Error).message}${exited ? ` (the server process had ended: ${exited})` : ''}\n--- last server output ---\n${server.recentOutput() || '(none)'}`);
  } finally {
    clients.close();
    await stopGenerators().catch(() => undefined);
    cleanups.delete(stopGenerators);
    await stopServer().catch(() => undefined);
    cleanups.delete(stopServer);
    if (kind === 'mariadb' && !options.keep) {
      await dropMariaDb(SERVICE_DB).catch(() => undefined);
      await dropMariaDb(RAW_DB).catch(() => undefined);
    }
  }
}

/** What the rest of the machine used during a window, in percent of one core. */
function otherPercent(m: PhaseMeasurement): number {
  return m.cpu.other === null || m.cpu.seconds <= 0 ? 0 : (m.cpu.other / m.cpu.seconds) * 100;
}

function progress(m: PhaseMeasurement, s: Settings): void {
  const failed = Object.entries(m.failed).map(([code, n]) => `${n} ${code} ("${m.failureMessages[code] ?? ''}")`);
  log(
    `    ${formatRate(m.rate)}/s (${fmt(m.completed)} in ${s.durationMs / 1000} s), p50 ${formatMs(m.latency.p50Ms)}, p99 ${formatMs(m.latency.p99Ms)}; server ${perOp(m.cpu.server, m.items)}/op; CPU ${cpuShares(m)}${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}`,
  );
}

/**
 * Every tenant's log checked by the independent verifier, then the count of consent event rows
 * against what the generators were told: every acknowledged write must be there. A write that
 * failed (a time budget ran out) may or may not have committed, so the rows may exceed the
 * acknowledged writes by at most the failed ones.
 */
async function verifyAudit(address: string, tenants: string[], acknowledged: number, failedWrites: number): Promise<AuditOutcome> {
  const problems: string[] = [];
  let entries = 0;
  let records = 0;
  await inParallel(tenants, 4, async (tenant) => {
    try {
      const result = await verifyAuditLog({ address, credentials: credentials.createInsecure(), metadata: new Metadata(), tenant, entries: true, records: true });
      entries += result.entriesChecked ?? 0;
      records += result.recordsChecked ?? 0;
    } catch (err) {
      problems.push(`tenant ${tenant}: ${(err as Error).message}`);
    }
  });
  if (problems.length === 0 && records < acknowledged) problems.push(`${fmt(acknowledged)} writes were acknowledged but the logs vouch for only ${fmt(records)} consent events`);
  if (problems.length === 0 && records > acknowledged + failedWrites) problems.push(`${fmt(records)} consent events for ${fmt(acknowledged)} acknowledged and ${fmt(failedWrites)} failed writes`);
  return { ok: problems.length === 0, tenants: tenants.length, entries, records, acknowledged, failedWrites, problems };
}

/**
 * Where the server's time went: the RecordConsent window at 16 in flight in full (no failures
 * there, so it is the cost of a write), the one at 256 and the no-op windows more briefly.
 */
function renderProfiles(label: string, file: string, windows: ProfileWindow[]): string[] {
  const only = (...names: string[]) => windows.filter((w) => names.includes(w.name));
  try {
    return [
      ...renderProfileSummary(`${label}: server CPU profile, RecordConsent window (1 tenant, 16 in flight)`, summariseProfile(file, only('write-1-tenant-16'), 25), 15),
      ...renderProfileSummary(`${label}: server CPU profile, RecordConsent window (1 tenant, 256 in flight)`, summariseProfile(file, only('write-1-tenant-256'), 25), 10, ['category', 'function']),
      ...renderProfileSummary(`${label}: server CPU profile, no-op windows (16 and 256 in flight), for comparison`, summariseProfile(file, only('no-op-16', 'no-op-256'), 25), 8, ['category', 'function']),
    ];
  } catch (err) {
    return [`(no CPU profile summary for ${label}: ${(err as Error).message})`, ''];
  }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/** CPU seconds per operation, in µs or ms. */
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

function renderDatabase(run: DatabaseRun, s: Settings): string[] {
  const byKey = new Map(run.results.map((r) => [r.phase.key, r]));
  const lines = [
    `### ${run.label}`,
    '',
    `${run.version}; ${run.durability.summary}; ${run.serverPool}. ${run.generators} load-generator process(es). Machine load just before the run: ${run.background}. Run took ${run.seconds.toFixed(0)} s.`,
    '',
    '| Workload | In flight | Rate | vs no-op (same in flight) | p50 | p99 | Server CPU per op | vs no-op | mariadbd CPU per op | CPU, % of a core: generators / server / db / other | Notes |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|',
  ];
  for (const r of run.results) {
    const noOp = r.phase.noOpKey ? byKey.get(r.phase.noOpKey) : undefined;
    const unit = r.phase.kind === 'no-op' ? 'calls/s' : r.phase.kind === 'write' ? 'writes/s' : 'inserts/s';
    const rateRatio = noOp ? times(r.m.rate / noOp.m.rate) : '–';
    const serverUs = perOpUs(r.m.cpu.server, r.m.items);
    const noOpUs = noOp ? perOpUs(noOp.m.cpu.server, noOp.m.items) : null;
    const cpuRatio = r.phase.kind === 'write' && serverUs !== null && noOpUs !== null ? times(serverUs / noOpUs) : '–';
    const failed = Object.entries(r.m.failed).map(([code, n]) => `**${fmt(n)} failed ${code}** ("${r.m.failureMessages[code] ?? ''}")`);
    const notes = [...failed, ...r.notes];
    lines.push(
      `| ${r.phase.name} | ${r.phase.concurrency} | ${formatRate(r.m.rate)} ${unit} | ${rateRatio} | ${formatMs(r.m.latency.p50Ms)} | ${formatMs(r.m.latency.p99Ms)} | ${
        r.phase.kind === 'raw' ? `(idle: ${perOp(r.m.cpu.server, r.m.items)})` : perOp(r.m.cpu.server, r.m.items)
      } | ${cpuRatio} | ${run.kind === 'mariadb' ? perOp(r.m.cpu.database, r.m.items) : '–'} | ${cpuShares(r.m)} | ${notes.join('; ')} |`,
    );
  }
  const a = run.audit;
  lines.push(
    '',
    `- Windows: ${s.durationMs / 1000} s each, after a warm-up of ${s.warmupMs / 1000} s (writes: ${s.writeWarmupMs / 1000} s); calls finishing inside the window are counted, rates are per second of window. Server CPU per op: the server process's CPU time over the window / operations completed in it (for raw inserts the server is idle, shown for reference).`,
    `- Writes: RecordConsent OPT_IN on WhatsApp or SMS with a notice and evidence (source IP, user agent, page URL; encrypted under the subject's key), every call its own request_id; ${Math.round(s.repeatShare * 100)}% name a person the same generator wrote before, the rest a new person.${
      run.results.some((r) => Object.keys(r.m.failed).length > 0) ? ' Failed calls are counted, not retried; the rate counts successful writes only.' : ''
    }`,
    ...run.durability.notes.map((n) => `- ${n}`),
    `- Audit: ${a.ok ? '**verified**' : '**VERIFICATION FAILED**'}: ${a.tenants} tenants checked with the independent verifier (checkpoint signature, every entry re-hashed and the root recomputed, every consent event row matched with its entry, in order): ${fmt(a.entries)} entries, ${fmt(a.records)} consent event rows, for ${fmt(a.acknowledged)} acknowledged writes${
      a.failedWrites ? ` and ${fmt(a.failedWrites)} failed ones (${fmt(a.records - a.acknowledged)} of which committed anyway)` : ''
    }.${a.problems.length ? ` Problems: ${a.problems.join('; ')}` : ''}`,
  );
  if (run.kind === 'mariadb') lines.push('- mariadbd is shared with everything else on this machine: its CPU includes other clients\' queries, if any ran.');
  lines.push('');
  return lines;
}

const GOALS = { writeVsNoOp: 0.5, cpuVsNoOp: 3 } as const;

function renderGoals(runs: DatabaseRun[]): string[] {
  const verdict = (met: boolean) => (met ? 'met' : '**missed**');
  const find = (run: DatabaseRun, key: string) => run.results.find((r) => r.phase.key === key);
  const rateCell = (run: DatabaseRun, n: number) => {
    const w = find(run, `write-1-tenant-${n}`);
    const o = find(run, `no-op-${n}`);
    if (!w || !o) return '–';
    const ratio = w.m.rate / o.m.rate;
    return `${times(ratio)} (${formatRate(w.m.rate)} vs ${formatRate(o.m.rate)}/s): ${verdict(ratio >= GOALS.writeVsNoOp)}`;
  };
  const cpuCell = (run: DatabaseRun, n: number) => {
    const w = find(run, `write-1-tenant-${n}`);
    const o = find(run, `no-op-${n}`);
    const wu = w ? perOpUs(w.m.cpu.server, w.m.items) : null;
    const ou = o ? perOpUs(o.m.cpu.server, o.m.items) : null;
    if (wu === null || ou === null) return '–';
    return `${times(wu / ou)} (${perOp(w!.m.cpu.server, w!.m.items)} vs ${perOp(o!.m.cpu.server, o!.m.items)}): ${verdict(wu / ou <= GOALS.cpuVsNoOp)}`;
  };
  const rawCell = (run: DatabaseRun, n: number) => {
    const w = find(run, `write-1-tenant-${n}`);
    const r = find(run, `raw-insert-${n}`);
    return w && r ? `${formatRate(r.m.rate)} inserts/s (writes: ${times(w.m.rate / r.m.rate)} of it)` : '–';
  };
  return [
    `| Goal | Target | ${runs.map((r) => r.label).join(' | ')} |`,
    `|---|---|${runs.map(() => '---').join('|')}|`,
    `| RecordConsent rate vs no-op RPC, 16 in flight | >= ${GOALS.writeVsNoOp}x | ${runs.map((r) => rateCell(r, 16)).join(' | ')} |`,
    `| RecordConsent rate vs no-op RPC, 256 in flight | >= ${GOALS.writeVsNoOp}x | ${runs.map((r) => rateCell(r, 256)).join(' | ')} |`,
    `| Server CPU per write vs per no-op, 16 in flight | <= ${GOALS.cpuVsNoOp}x | ${runs.map((r) => cpuCell(r, 16)).join(' | ')} |`,
    `| Server CPU per write vs per no-op, 256 in flight | <= ${GOALS.cpuVsNoOp}x | ${runs.map((r) => cpuCell(r, 256)).join(' | ')} |`,
    `| Raw single-row autocommit INSERT, 16 in flight | (reference) | ${runs.map((r) => rawCell(r, 16)).join(' | ')} |`,
    `| Raw single-row autocommit INSERT, 256 in flight | (reference) | ${runs.map((r) => rawCell(r, 256)).join(' | ')} |`,
    `| Audit logs of the benchmark's tenants verify | all | ${runs.map((r) => (r.audit.ok ? `${r.audit.tenants} tenants, ${fmt(r.audit.entries)} entries: verified` : '**FAILED**')).join(' | ')} |`,
    '',
  ];
}

function renderReport(runs: DatabaseRun[], failed: string[], skipped: string[], s: Settings, options: Options): string {
  const lines = [
    `## Write benchmark${options.quick ? ' (quick smoke run: short windows, not representative)' : ''}`,
    '',
    `Run ${new Date().toISOString()}: \`npm run bench:writes -- ${process.argv.slice(2).map((arg) => (/[\s"'()]/.test(arg) ? `'${arg}'` : arg)).join(' ')}\`.`,
    '',
    ...machineInfo(options.label),
    ...(options.profileDir ? ['- The server ran under the V8 CPU profiler (--profile): its rates are lower and its CPU per op higher than without.'] : []),
    '',
  ];
  for (const run of runs) lines.push(...renderDatabase(run, s));
  if (runs.length > 0) lines.push('### Goals (issue 14)', '', ...renderGoals(runs));
  for (const run of runs) if (run.profile.length) lines.push(...run.profile);
  for (const x of skipped) lines.push(`- Skipped: ${x}`);
  for (const f of failed) lines.push(`- FAILED: ${f}`);
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

  if (options.root) {
    log(`server build: ${options.root}`);
    options.label ??= `the server build in ${options.root}`;
  } else {
    ensureBuilt(log);
  }
  const runs: DatabaseRun[] = [];
  const failed: string[] = [];
  const skipped: string[] = [];
  for (const kind of options.databases) {
    try {
      runs.push(await benchmarkDatabase(kind, s, options));
    } catch (err) {
      if (stopping) await new Promise<never>(() => undefined);
      if (err instanceof DatabaseUnavailableError) {
        log(`\n!! skipping ${kind}: ${err.message}`);
        skipped.push(`${kind}: ${err.message}`);
      } else {
        log(`\n!! ${kind} failed: ${(err as Error).message}`);
        failed.push(`${kind}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  }
  const markdown = renderReport(runs, failed, skipped, s, options);
  process.stdout.write(`\n${markdown}`);
  if (options.out) {
    writeFileSync(options.out, markdown);
    log(`report written to ${options.out}`);
  }
  log(`total time ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (runs.length === 0) return 1;
  if (runs.some((r) => !r.audit.ok)) {
    log('bench:writes: an audit log did not verify');
    return 1;
  }
  return failed.length > 0 ? 1 : 0;
}

main().then(
  async (code) => {
    await cleanupAll();
    process.exit(code);
  },
  async (err: Error) => {
    log(`bench:writes: ${err.stack ?? err.message}`);
    await cleanupAll();
    process.exit(1);
  },
);
