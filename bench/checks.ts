import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { PurposeCategory } from '../src/gen/consent/v1/common';
import { CreatePurposeRequest, PublishNoticeRequest } from '../src/gen/consent/v1/purpose';
import { CreateTenantRequest } from '../src/gen/consent/v1/tenant';
import { BatchCheckParams, CheckTarget, checkSubjectPhone, isOptedOut, KeySpec, OPT_OUT_EVERY, StreamCheckParams, UnaryCheckParams } from './check-jobs';
import { createClients, unary } from './clients';
import { backgroundLoad, findDatabasePid } from './cpu';
import { JobRequest, LoadGenerators, PhaseMeasurement } from './load-generators';
import { moduleOf, renderProfileSummary, summariseProfile, ProfileWindow } from './profile-summary';
import { machineInfo } from './report';
import { DatabaseKind, DatabaseUnavailableError, dropMariaDb, ensureBuilt, freePort, MARIADB, PROJECT_ROOT, resetMariaDb, ServerProcess, startServer } from './server-process';
import { formatMs, formatRate } from './stats';

/**
 * `npm run bench:checks [-- --db sqlite|mariadb|both] [--subjects 20000,1000000] [--quick] [--reuse] [--commit REV] [--out FILE] [--profile DIR] [--generators N] [--verbose] [--label TEXT] [--observability]`
 *
 * With --observability, only the cost of metrics and tracing (issue 17) is measured, see
 * benchmarkObservability; otherwise:
 *
 * The check path (issue 15) against its yardsticks, per database and per tenant size, against
 * one server process, driven by load-generator processes (bench/load-generators.ts):
 *
 * 1. Seeding: a tenant with N people, through the service's own API (consentctl import of a CSV,
 *    as bench:import does): subject i is +49 151 1000000 + i; every 10th (i % 10 = 9) opted out
 *    of the newsletter on WhatsApp, the others opted in. With --reuse the seeded data folder (and
 *    MariaDB database) stays for the next run, so the 1,000,000-subject tenant is made once.
 * 2. One server life: Health/Check (no-op RPC); every subject asked once through CheckConsentBatch
 *    (the decision cache's warm-up, as in a server that has run a while); unary CheckConsent closed loop, same calls in
 *    flight (the check's maximum rate R); both again open loop at R/2 (latency counted from each
 *    call's scheduled time); CheckConsentBatch (1,000 queries per call) and StreamCheckConsent
 *    (several streams, chunks pipelined); the server's VmRSS / VmHWM afterwards.
 * 3. The server restarted: its process warmed up with checks on a quarter of the subjects
 *    (i % 4 = 3), then the cold window asks the other subjects, each once in a seeded random
 *    order (first touches since the restart), and the warm window asks the same subjects in the
 *    same order again.
 *
 * Every query names a seeded subject drawn uniformly over the tenant, and every answer is
 * checked (ALLOW OPTED_IN or DENY OPTED_OUT as seeded): any other answer stops the run.
 * Progress goes to stderr, the markdown report to stdout (and --out).
 */

interface Options {
  databases: DatabaseKind[];
  sizes: number[];
  quick: boolean;
  reuse: boolean;
  commit: string | null;
  out: string | null;
  profileDir: string | null;
  generators: number;
  verbose: boolean;
  label: string | null;
  observability: boolean;
}

interface Settings {
  warmupMs: number;
  durationMs: number;
  /** Calls in flight for the closed-loop unary phases (no-op and check). */
  concurrency: number;
  /** CheckConsentBatch calls in flight, queries per call. */
  batchConcurrency: number;
  batchSize: number;
  /** StreamCheckConsent: streams, chunk size, chunks in flight per stream. */
  streams: number;
  streamChunk: number;
  chunksPerStream: number;
  /** Process warm-up after the restart, before the cold window. */
  restartWarmupMs: number;
  quietWaitMs: number;
  /** Measurements of a phase at most, when other processes disturb one (cold and warm are measured once). */
  attempts: number;
  watchdogMs: number;
}

const FULL: Settings = {
  warmupMs: 2000,
  durationMs: 6000,
  concurrency: 64,
  batchConcurrency: 4,
  batchSize: 1000,
  streams: 4,
  streamChunk: 500,
  chunksPerStream: 2,
  restartWarmupMs: 4000,
  quietWaitMs: 30_000,
  attempts: 2,
  watchdogMs: 90 * 60_000,
};
const QUICK: Settings = { ...FULL, warmupMs: 500, durationMs: 2000, restartWarmupMs: 1500, quietWaitMs: 0, attempts: 1, watchdogMs: 20 * 60_000 };

/** Background CPU (percent of one core) above which a measurement counts as disturbed. */
const QUIET_PERCENT = 25;
/** --observability: how often the metrics server is scraped during its windows. */
const SCRAPE_EVERY_MS = 2000;
const TENANT = 'bench-checks';
const PURPOSE_ID = 'newsletter';
const PARENT = `tenants/${TENANT}`;
const PURPOSE = `${PARENT}/purposes/${PURPOSE_ID}`;
/** Seeded data kept by --reuse: <dir>/<db>-<subjects>/ (the server's DATA_DIR: SQLite files, development root key). */
const REUSE_DIR = path.join(os.tmpdir(), 'consent-bench-checks');
const SEED_MARKER = 'bench-checks-seed.json';
/** The cold window's subjects: every subject but the process warm-up's (i % 4 = 3). */
const WARMUP_RESIDUE = { modulo: 4, residues: [3] };
const COLD_RESIDUES = { modulo: 4, residues: [0, 1, 2] };
const GOALS = { cpuVsNoOp: 1.25, rateVsNoOp: 0.8, p99VsNoOp: 1.2, decisionsPerSecond: 100_000, growth: 1.2, rssMb: 512 } as const;

const USAGE = `usage: npm run bench:checks -- [--db sqlite|mariadb|both] [--subjects N[,N...]] [--quick] [--reuse] [--commit REV] [--out FILE] [--profile DIR] [--generators N] [--verbose] [--label TEXT] [--observability]
  --db          which database(s) (default: both)
  --subjects    tenant sizes, comma-separated (default 20000,1000000; with --quick 20000). Seeding 1,000,000
                subjects takes ~10 min on SQLite, ~8 min on MariaDB: use --reuse to do it once
  --quick       short windows (2 s): a smoke test of the benchmark
  --reuse       keep each seeded tenant in ${REUSE_DIR}/<db>-<N>/ (MariaDB: database consent_bench_checks_<N>)
                and use it again in later runs instead of seeding (rm -rf that folder to start over)
  --commit      run the server built from this commit (a snapshot in ${os.tmpdir()}/consent-bench-build-<sha>/)
                instead of this checkout's dist/: measures committed code while src/ is being edited
  --out         also write the markdown report to FILE
  --profile     run the server under the V8 CPU profiler (DIR/server-<db>-<N>.cpuprofile and the windows) and
                summarise where the unary check's server time goes
  --generators  load-generator processes (default 2)
  --verbose     echo the server's output
  --label       describe the code under test in the report
  --observability  only the cost of metrics and tracing: the warm unary CheckConsent load against three servers
                on the same tenant, one with neither, one with METRICS_PORT (scraped every ${SCRAPE_EVERY_MS / 1000} s), one with
                metrics and OpenTelemetry tracing (OTLP to a sink on 127.0.0.1), windows alternating between them
                (default --subjects 20000; a few minutes per database)`;

function parseArgs(argv: string[]): Options {
  const options: Options = { databases: ['sqlite', 'mariadb'], sizes: [], quick: false, reuse: false, commit: null, out: null, profileDir: null, generators: 2, verbose: false, label: null, observability: false };
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
      case '--subjects': {
        const sizes = value().split(',').map((v) => Number(v.replace(/_/g, '')));
        if (sizes.some((n) => !Number.isInteger(n) || n < 1000 || n > 5_000_000)) usageError('--subjects: whole numbers from 1,000 to 5,000,000, comma-separated');
        options.sizes = sizes;
        break;
      }
      case '--quick':
        options.quick = true;
        break;
      case '--reuse':
        options.reuse = true;
        break;
      case '--commit':
        options.commit = value();
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
      case '--verbose':
        options.verbose = true;
        break;
      case '--label':
        options.label = value();
        break;
      case '--observability':
        options.observability = true;
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
  if (options.sizes.length === 0) options.sizes = options.quick || options.observability ? [20_000] : [20_000, 1_000_000];
  return options;
}

function usageError(message: string): never {
  process.stderr.write(`bench:checks: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const times = (ratio: number) => `${ratio.toFixed(ratio < 0.1 ? 3 : ratio < 10 ? 2 : 1)}x`;
const mib = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;

// ---------------------------------------------------------------------------------------------
// Interrupts and the watchdog
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
  log(`\n${reason}: stopping the load generators and the server (again to force)`);
  const force = setTimeout(() => process.exit(code), 20_000);
  force.unref();
  void cleanupAll().finally(() => process.exit(code));
}

// ---------------------------------------------------------------------------------------------
// The code under test: this checkout's dist/, or a snapshot of a commit
// ---------------------------------------------------------------------------------------------

/**
 * Builds `rev` into a folder of its own (git archive of src/, migrations/ and the tsconfigs, this
 * checkout's node_modules linked), once per commit. Other engineers editing src/ meanwhile change
 * neither the snapshot nor what it measures.
 */
function buildSnapshot(rev: string): { root: string; label: string } {
  const sha = spawnSync('git', ['rev-parse', '--verify', `${rev}^{commit}`], { cwd: PROJECT_ROOT, encoding: 'utf8' }).stdout.trim();
  if (!/^[0-9a-f]{40}$/.test(sha)) throw new Error(`--commit: "${rev}" is not a commit of this repository`);
  const subject = spawnSync('git', ['log', '-1', '--format=%s', sha], { cwd: PROJECT_ROOT, encoding: 'utf8' }).stdout.trim();
  const root = path.join(os.tmpdir(), `consent-bench-build-${sha.slice(0, 12)}`);
  const label = `commit ${sha.slice(0, 7)} ("${subject.length > 80 ? `${subject.slice(0, 77)}...` : subject}"), built in ${root}`;
  if (existsSync(path.join(root, 'dist', 'src', 'gen', 'descriptor-set.binpb'))) {
    log(`server build of ${sha.slice(0, 7)} found in ${root}`);
    return { root, label };
  }
  log(`building ${sha.slice(0, 7)} in ${root} ...`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const archive = spawnSync('sh', ['-c', `git archive ${sha} src migrations tsconfig.json tsconfig.build.json package.json | tar -x -C '${root}'`], { cwd: PROJECT_ROOT, stdio: 'inherit' });
  if (archive.status !== 0) throw new Error('git archive failed');
  symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(root, 'node_modules'));
  const tsc = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  if (tsc.status !== 0) throw new Error(`tsc failed for ${sha.slice(0, 7)}`);
  writeFileSync(path.join(root, 'dist', 'src', 'gen', 'descriptor-set.binpb'), readFileSync(path.join(root, 'src', 'gen', 'descriptor-set.binpb')));
  return { root, label };
}

// ---------------------------------------------------------------------------------------------
// Seeding through the service's API
// ---------------------------------------------------------------------------------------------

interface SeedInfo {
  subjects: number;
  database: DatabaseKind;
  mariadbDatabase: string | null;
  seconds: number;
  rowsPerSecond: number;
  code: string;
  at: string;
}

/** The CSV a business would import: one row per person, opt-ins and every 10th an opt-out, event times in the last 60 days. */
async function writeSeedFile(file: string, subjects: number): Promise<void> {
  const out = createWriteStream(file, { encoding: 'utf8' });
  out.write('phone,purpose,channel,kind,event_time,method,notice,source_ip\n');
  const now = Date.now();
  let chunk = '';
  for (let i = 0; i < subjects; i++) {
    const time = new Date(now - 60 * 86_400_000 + Math.floor((i / subjects) * 59 * 86_400_000)).toISOString().replace(/\.\d{3}Z$/, 'Z');
    chunk += isOptedOut(i)
      ? `${checkSubjectPhone(i)},${PURPOSE_ID},whatsapp,opt_out,${time},web_form,,198.51.100.${1 + (i % 250)}\n`
      : `${checkSubjectPhone(i)},${PURPOSE_ID},whatsapp,opt_in,${time},web_form,1,198.51.100.${1 + (i % 250)}\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}

function consentctl(root: string, args: string[], verbose: boolean): Promise<{ code: number | null; out: string; err: string }> {
  const child: ChildProcess = spawn(process.execPath, [path.join(root, 'dist', 'src', 'cli', 'consentctl.js'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString('utf8');
    if (verbose) process.stderr.write(`  [consentctl] ${c.toString('utf8')}`);
  });
  cleanups.add(async () => void child.kill('SIGTERM'));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out, err })));
}

async function seedTenant(server: ServerProcess, root: string, subjects: number, verbose: boolean): Promise<{ seconds: number }> {
  const clients = createClients(server.address);
  try {
    await unary(clients.tenants, clients.tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId: TENANT, displayName: 'Check benchmark', requestId: 'bench-checks-tenant' }));
    await unary(
      clients.purposes,
      clients.purposes.createPurpose,
      CreatePurposeRequest.fromPartial({ parent: PARENT, purposeId: PURPOSE_ID, purpose: { displayName: 'Newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING }, requestId: 'bench-checks-purpose' }),
    );
    await unary(clients.purposes, clients.purposes.publishNotice, PublishNoticeRequest.fromPartial({ parent: PURPOSE, language: 'en', text: 'Our newsletter on WhatsApp. Reply STOP to opt out.', requestId: 'bench-checks-notice' }));
  } finally {
    clients.close();
  }
  const file = path.join(server.dataDir, 'seed.csv');
  await writeSeedFile(file, subjects);
  const started = Date.now();
  const progress = setInterval(() => log(`    ... importing, ${Math.round((Date.now() - started) / 1000)} s`), 60_000);
  try {
    const run = await consentctl(root, ['--address', server.address, '--json', 'import', file, '--tenant', TENANT, '--rejects', path.join(server.dataDir, 'seed-rejects.csv')], verbose);
    if (run.code !== 0) throw new Error(`consentctl import exited ${run.code}: ${run.err.slice(-2000)}`);
    const summary = JSON.parse(run.out) as { rows: number; recorded: number; alreadyRecorded: number; rejected: number };
    if (summary.recorded + summary.alreadyRecorded !== subjects) throw new Error(`seeding recorded ${summary.recorded} of ${subjects} rows (${summary.rejected} rejected)`);
  } finally {
    clearInterval(progress);
    rmSync(file, { force: true });
  }
  return { seconds: (Date.now() - started) / 1000 };
}

async function mariadbHasTenant(database: string): Promise<boolean> {
  try {
    const connection = await mysql.createConnection({ host: MARIADB.host, port: MARIADB.port, user: MARIADB.user, database, connectTimeout: 3000 });
    try {
      const [rows] = await connection.query('SELECT COUNT(*) AS n FROM tenants WHERE id = ?', [TENANT]);
      return Number((rows as Array<{ n: unknown }>)[0].n) === 1;
    } finally {
      await connection.end();
    }
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

type PhaseKind = 'no-op' | 'check' | 'batch' | 'stream' | 'cold' | 'warm';

interface Phase {
  key: string;
  kind: PhaseKind;
  name: string;
  /** How the load was applied, for the table. */
  load: string;
  unit: string;
  m: PhaseMeasurement;
  notes: string[];
}

interface Memory {
  rss: number;
  hwm: number;
}

interface SizeRun {
  subjects: number;
  seed: string;
  phases: Phase[];
  /** After the first server life (all throughput phases), and after the cold/warm life. */
  memory: { main: Memory | null; restart: Memory | null };
  profile: string[];
}

interface DatabaseRun {
  kind: DatabaseKind;
  label: string;
  version: string;
  background: string;
  sizes: SizeRun[];
  seconds: number;
}

function memoryOf(pid: number | undefined): Memory | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

async function waitForQuietMachine(maxWaitMs: number): Promise<number | null> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const load = await backgroundLoad(1000);
    if (load === null || load <= QUIET_PERCENT || Date.now() >= deadline) return load;
  }
}

function otherPercent(m: PhaseMeasurement): number {
  return m.cpu.other === null || m.cpu.seconds <= 0 ? 0 : (m.cpu.other / m.cpu.seconds) * 100;
}

function perOpUs(cpuSeconds: number | null, items: number): number | null {
  return cpuSeconds === null || items === 0 ? null : (cpuSeconds * 1e6) / items;
}

function perOp(cpuSeconds: number | null, items: number): string {
  const us = perOpUs(cpuSeconds, items);
  if (us === null) return '–';
  return us < 10 ? `${us.toFixed(1)} µs` : us < 1000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(2)} ms`;
}

function cpuShares(m: PhaseMeasurement): string {
  const pct = (v: number | null) => (v === null ? '–' : `${Math.round((v / m.cpu.seconds) * 100)}%`);
  return `${pct(m.cpu.generators)} / ${pct(m.cpu.server)} / ${pct(m.cpu.database)} / ${pct(m.cpu.other)}`;
}

function progressLine(p: Phase): void {
  const failed = Object.entries(p.m.failed).map(([code, n]) => `${n} ${code} ("${p.m.failureMessages[code] ?? ''}")`);
  log(
    `    ${formatRate(p.m.rate)} ${p.unit}, p50 ${formatMs(p.m.latency.p50Ms)}, p99 ${formatMs(p.m.latency.p99Ms)}; server ${perOp(p.m.cpu.server, p.m.items)}/op; CPU gen/server/db/other ${cpuShares(p.m)}${
      failed.length ? `; FAILED: ${failed.join(', ')}` : ''
    }${p.notes.length ? `; ${p.notes.join('; ')}` : ''}`,
  );
}

/**
 * The benchmark's tenant of `subjects` people on `kind`, seeded through the API (or found from an
 * earlier --reuse run), and how to start a server on it (a server life, with extra environment).
 */
async function prepareTenant(
  kind: DatabaseKind,
  subjects: number,
  options: Options,
  code: { root: string; label: string },
): Promise<{ seedLine: string; start(life: string, env?: NodeJS.ProcessEnv): Promise<ServerProcess>; removeData(): Promise<void> }> {
  const mariadbDatabase = `consent_bench_checks_${subjects}`;
  // One data folder for both server lives (the SQLite files and the development root key live there).
  const dataDir = options.reuse ? path.join(REUSE_DIR, `${kind}-${subjects}`) : mkdtempSync(path.join(os.tmpdir(), `consent-bench-checks-${kind}-`));
  const marker = options.reuse ? path.join(dataDir, SEED_MARKER) : null;
  let seedInfo: SeedInfo | null = null;
  if (marker && existsSync(marker)) {
    seedInfo = JSON.parse(readFileSync(marker, 'utf8')) as SeedInfo;
    if (seedInfo.subjects !== subjects || (kind === 'mariadb' && !(await mariadbHasTenant(mariadbDatabase)))) seedInfo = null;
  }
  if (!seedInfo) {
    if (options.reuse) {
      rmSync(dataDir, { recursive: true, force: true });
      mkdirSync(dataDir, { recursive: true });
    }
    if (kind === 'mariadb') await resetMariaDb(mariadbDatabase);
  }
  const removeData = async () => {
    if (options.reuse) return;
    rmSync(dataDir, { recursive: true, force: true });
    if (kind === 'mariadb') await dropMariaDb(mariadbDatabase);
  };
  cleanups.add(removeData);

  const start = (life: string, env: NodeJS.ProcessEnv = {}) =>
    startServer({
      database: kind,
      verbose: options.verbose,
      profileDir: options.profileDir ?? undefined,
      profileName: `server-${kind}-${subjects}-${life}.cpuprofile`,
      mariadbDatabase,
      dataDir,
      root: code.root,
      startTimeoutMs: 180_000,
      // The per-principal call limit (default 5,000/s) would refuse a check rate above it that
      // Health/Check, which has no limit, reaches: raised so the rate is the server's, while every
      // call still goes through the limiter's accounting.
      env: { RATE_LIMIT_PER_SECOND: '1000000', RATE_LIMIT_BURST: '1000000', ...env },
    });

  // Seeding in a server life of its own, so the import's memory does not count in the RSS below.
  let seedLine: string;
  if (!seedInfo) {
    const seeder = await start('seed');
    const stopSeeder = () => seeder.stop({ keepData: false });
    cleanups.add(stopSeeder);
    try {
      log(`  seeding ${fmt(subjects)} subjects through consentctl import (server pid ${seeder.pid}) ...`);
      const seeded = await seedTenant(seeder, code.root, subjects, options.verbose);
      seedInfo = { subjects, database: kind, mariadbDatabase: kind === 'mariadb' ? mariadbDatabase : null, seconds: seeded.seconds, rowsPerSecond: subjects / seeded.seconds, code: code.label, at: new Date().toISOString() };
      if (marker) writeFileSync(marker, JSON.stringify(seedInfo, null, 1));
      seedLine = `seeded in this run: ${fmt(subjects)} rows in ${seeded.seconds.toFixed(0)} s (${fmt(seedInfo.rowsPerSecond)} rows/s)`;
      log(`    ${seedLine}`);
    } catch (err) {
      throw new Error(`seeding failed: ${(err as Error).message}\n--- last server output ---\n${seeder.recentOutput() || '(none)'}`);
    } finally {
      await stopSeeder();
      cleanups.delete(stopSeeder);
    }
  } else {
    seedLine = `seeded by an earlier run (--reuse, ${seedInfo.at}: ${seedInfo.seconds.toFixed(0)} s, ${fmt(seedInfo.rowsPerSecond)} rows/s)`;
    log(`  ${seedLine}`);
  }

  return { seedLine, start, removeData };
}

async function benchmarkSize(kind: DatabaseKind, subjects: number, s: Settings, options: Options, code: { root: string; label: string }): Promise<SizeRun> {
  const { seedLine, start, removeData } = await prepareTenant(kind, subjects, options, code);
  const windows: ProfileWindow[] = [];
  const phases: Phase[] = [];
  const profileName = (life: string) => `server-${kind}-${subjects}-${life}.cpuprofile`;

  // --- First server life: the throughput and latency phases.
  let server = await start('main');
  let stopServer = () => server.stop({ keepData: false });
  cleanups.add(stopServer);
  let generators: LoadGenerators | null = null;
  const stopGenerators = async () => generators?.stop();
  cleanups.add(stopGenerators);
  const databasePid = kind === 'mariadb' ? findDatabasePid() : null;
  try {
    const target: CheckTarget = { parent: PARENT, purpose: PURPOSE, subjects };
    generators = await LoadGenerators.start({ count: options.generators, address: server.address, serverPid: server.pid, databasePid });
    // The generators of the current server life (they are started again with the server).
    const current = () => {
      if (!generators) throw new Error('no load generators running');
      return generators;
    };

    const measure = async (key: string, kind: PhaseKind, name: string, load: string, unit: string, job: JobRequest, run: { concurrency: number; warmupMs?: number; durationMs?: number; openLoop?: { rate: number; maxInFlight: number } }) => {
      let m: PhaseMeasurement | null = null;
      const attempts = kind === 'cold' || kind === 'warm' ? 1 : s.attempts;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        log(`  ${name}, ${load}${attempt > 1 ? ` (attempt ${attempt}: other processes used ${Math.round(otherPercent(m!))}% of a core)` : ''} ...`);
        const next = await current().run(job, { concurrency: run.concurrency, warmupMs: run.warmupMs ?? s.warmupMs, durationMs: run.durationMs ?? s.durationMs, openLoop: run.openLoop });
        if (!m || otherPercent(next) < otherPercent(m)) m = next;
        if (otherPercent(m) <= QUIET_PERCENT) break;
      }
      if (!m) throw new Error('no measurement');
      const notes: string[] = [];
      if (m.counters.deny !== undefined || m.counters.allow !== undefined) notes.push(`${fmt(m.counters.allow ?? 0)} ALLOW / ${fmt(m.counters.deny ?? 0)} DENY verified (whole phase)`);
      if (run.openLoop && (m.counters.overloaded ?? 0) > 0) {
        notes.push(`**the server fell ${fmt(run.openLoop.maxInFlight)} calls behind: ${fmt(m.counters.notSent ?? 0)} scheduled calls not sent, so the rate and the percentiles are lower bounds**`);
      }
      if (run.openLoop) notes.push(`generators started calls late by at most ${(m.maxima.lateMs ?? 0).toFixed(1)} ms (${fmt(m.counters.lateOver5ms ?? 0)} calls > 5 ms late)`);
      if (otherPercent(m) > QUIET_PERCENT) notes.push(`**machine busy: other processes used ${Math.round(otherPercent(m))}% of a core**`);
      const phase: Phase = { key, kind, name, load, unit, m, notes };
      progressLine(phase);
      phases.push(phase);
      windows.push({ name: `${subjects}-${key}`, from: m.windowUs.from, to: m.windowUs.to });
      return phase;
    };
    const uniform = (seed: number): KeySpec => ({ kind: 'uniform', seed });
    const unaryJob = (seed: number): JobRequest => ({ kind: 'check-unary', params: { target, keys: uniform(seed) } satisfies UnaryCheckParams });
    const c = s.concurrency;

    await measure('no-op', 'no-op', 'Health/Check (no-op RPC)', `${c} in flight`, 'calls/s', { kind: 'health-check' }, { concurrency: c });
    // Every subject asked once before the checks are measured (first touches are measured apart,
    // after the restart: cold window).
    await warmDecisionCache(current(), target, s, options);
    const check = await measure('check', 'check', 'CheckConsent', `${c} in flight`, 'calls/s', unaryJob(1), { concurrency: c });
    const rate = Math.max(10, Math.round(check.m.rate / 2));
    // Outstanding calls allowed in open loop: 5 s of the rate (a server that falls that far behind is not keeping up).
    const openLoop = { rate, maxInFlight: Math.max(1000, rate * 5) };
    await measure('no-op-open', 'no-op', 'Health/Check (no-op RPC)', `open loop ${fmt(rate)}/s`, 'calls/s', { kind: 'health-check' }, { concurrency: 1, openLoop });
    await measure('check-open', 'check', 'CheckConsent', `open loop ${fmt(rate)}/s`, 'calls/s', unaryJob(2), { concurrency: 1, openLoop });
    await measure(
      'batch',
      'batch',
      `CheckConsentBatch (${fmt(s.batchSize)} per call)`,
      `${s.batchConcurrency} calls in flight`,
      'decisions/s',
      { kind: 'check-batch', params: { target, keys: uniform(3), batchSize: s.batchSize } satisfies BatchCheckParams },
      { concurrency: s.batchConcurrency },
    );
    await measure(
      'stream',
      'stream',
      'StreamCheckConsent',
      `${s.streams} streams, ${s.chunksPerStream} chunks of ${s.streamChunk} in flight each`,
      'decisions/s',
      { kind: 'check-stream', params: { target, keys: uniform(4), chunk: s.streamChunk, chunksPerStream: s.chunksPerStream } satisfies StreamCheckParams },
      { concurrency: s.streams * s.chunksPerStream },
    );
    // The same load with each chunk as one packed message (its queries as `items`).
    await measure(
      'stream-packed',
      'stream',
      'StreamCheckConsent, packed',
      `${s.streams} streams, ${s.chunksPerStream} messages of ${s.streamChunk} items in flight each`,
      'decisions/s',
      { kind: 'check-stream', params: { target, keys: uniform(6), chunk: s.streamChunk, chunksPerStream: s.chunksPerStream, packed: true } satisfies StreamCheckParams },
      { concurrency: s.streams * s.chunksPerStream },
    );
    const main = memoryOf(server.pid);
    log(`  server memory: VmRSS ${main ? mib(main.rss) : '?'}, VmHWM ${main ? mib(main.hwm) : '?'}`);
    await generators.stop();
    generators = null;
    await stopServer();
    cleanups.delete(stopServer);

    // --- Second server life: process warm-up on one quarter of the subjects, then cold and warm on the rest.
    log('  restarting the server (cold / warm) ...');
    server = await start('restart');
    stopServer = () => server.stop({ keepData: false });
    cleanups.add(stopServer);
    generators = await LoadGenerators.start({ count: options.generators, address: server.address, serverPid: server.pid, databasePid });
    log(`  process warm-up: CheckConsent on subjects i % 4 = 3 for ${s.restartWarmupMs / 1000} s ...`);
    await current().run({ kind: 'check-unary', params: { target, keys: { kind: 'uniform', seed: 5, ...WARMUP_RESIDUE } } satisfies UnaryCheckParams }, { concurrency: c, warmupMs: 0, durationMs: s.restartWarmupMs });
    // The cold set must not run out in the window: at most 80% of it at the rate measured above.
    const coldSet = Math.floor((subjects * COLD_RESIDUES.residues.length) / COLD_RESIDUES.modulo);
    const coldMs = Math.max(1000, Math.min(s.durationMs, Math.floor(((0.8 * coldSet) / Math.max(1, check.m.rate)) * 1000)));
    const sweep: KeySpec = { kind: 'sweep', seed: 6, generators: options.generators, ...COLD_RESIDUES };
    const sweepJob: JobRequest = { kind: 'check-unary', params: { target, keys: sweep } satisfies UnaryCheckParams };
    const cold = await measure('cold', 'cold', 'CheckConsent, cold: first touch of each subject since the restart', `${c} in flight`, 'calls/s', sweepJob, { concurrency: c, warmupMs: 0, durationMs: coldMs });
    const warm = await measure('warm', 'warm', 'CheckConsent, warm: the same subjects again, same order', `${c} in flight`, 'calls/s', sweepJob, { concurrency: c, warmupMs: 0, durationMs: coldMs });
    for (const p of [cold, warm]) {
      p.notes.unshift(`${coldMs / 1000} s window over ${fmt(coldSet)} subjects (i % 4 ≠ 3)`);
      if ((p.m.counters.repeats ?? 0) > 0 && p.kind === 'cold') p.notes.push(`**${fmt(p.m.counters.repeats)} asks repeated a subject (the set ran out)**`);
    }
    const restart = memoryOf(server.pid);
    log(`  server memory after cold/warm: VmRSS ${restart ? mib(restart.rss) : '?'}, VmHWM ${restart ? mib(restart.hwm) : '?'}`);
    await generators.stop();
    generators = null;
    await stopServer();
    cleanups.delete(stopServer);

    let profile: string[] = [];
    if (options.profileDir) {
      writeFileSync(path.join(options.profileDir, `windows-${kind}-${subjects}.json`), JSON.stringify(windows, null, 1));
      profile = renderProfiles(`${kind === 'sqlite' ? 'SQLite' : 'MariaDB'}, ${fmt(subjects)} subjects`, path.join(options.profileDir, profileName('main')), windows, subjects);
    }
    return { subjects, seed: seedLine, phases, memory: { main, restart }, profile };
  } catch (err) {
    const exited = server.exitStatus();
    throw new Error(`${(err as Error).message}${exited ? ` (the server process had ended: ${exited})` : ''}\n--- last server output ---\n${server.recentOutput() || '(none)'}`);
  } finally {
    await generators?.stop().catch(() => undefined);
    cleanups.delete(stopGenerators);
    await server.stop({ keepData: false }).catch(() => undefined);
    cleanups.delete(stopServer);
    await removeData().catch(() => undefined);
    cleanups.delete(removeData);
  }
}

/**
 * Every subject asked once (batches of 1,000) before checks are measured: the decision cache holds
 * what fits its bound (DECISION_CACHE_ENTRIES), as in a server that has run for a while. A sweep
 * that did not reach every subject in its time (a busy machine, a slow database) is run again for
 * longer: the subjects it already asked are answered from the cache and it gets further.
 */
async function warmDecisionCache(generators: LoadGenerators, target: CheckTarget, s: Settings, options: Options): Promise<void> {
  let warmMs = Math.ceil(target.subjects / 40_000) * 1000 + 1000;
  for (let round = 1; ; round++) {
    log(`  cache warm-up: every subject once through CheckConsentBatch (${warmMs / 1000} s) ...`);
    const sweep = await generators.run(
      { kind: 'check-batch', params: { target, keys: { kind: 'sweep', seed: 7, generators: options.generators }, batchSize: s.batchSize } satisfies BatchCheckParams },
      { concurrency: s.batchConcurrency, warmupMs: 0, durationMs: warmMs },
    );
    const unswept = sweep.maxima.unswept ?? 0;
    if (unswept === 0) return;
    if (round === 4) {
      log(`    the warm-up left up to ${fmt(unswept)} subjects per generator unasked: the check windows include first touches`);
      return;
    }
    warmMs *= 2;
  }
}

function renderProfiles(label: string, file: string, windows: ProfileWindow[], subjects: number): string[] {
  const only = (...keys: string[]) => windows.filter((w) => keys.map((k) => `${subjects}-${k}`).includes(w.name));
  try {
    return [
      ...renderProfileSummary(`${label}: server CPU profile, unary CheckConsent window (closed loop)`, summariseProfile(file, only('check'), 30), 15),
      ...renderProfileSummary(`${label}: server CPU profile, Health/Check window (closed loop), for comparison`, summariseProfile(file, only('no-op'), 25), 8, ['category', 'function']),
      ...renderProfileSummary(`${label}: server CPU profile, CheckConsentBatch and StreamCheckConsent windows`, summariseProfile(file, only('batch', 'stream', 'stream-packed'), 25), 10, ['category', 'function']),
    ];
  } catch (err) {
    return [`(no CPU profile summary for ${label}: ${(err as Error).message})`, ''];
  }
}

async function databaseVersion(kind: DatabaseKind): Promise<string> {
  try {
    if (kind === 'sqlite') {
      const Database = require('better-sqlite3') as new (file: string) => { prepare(sql: string): { get(): { v: string } }; close(): void };
      const db = new Database(':memory:');
      const v = db.prepare('SELECT sqlite_version() AS v').get().v;
      db.close();
      return `SQLite ${v} (better-sqlite3 ${(require('better-sqlite3/package.json') as { version: string }).version}), one connection`;
    }
    const connection = await mysql.createConnection({ host: MARIADB.host, port: MARIADB.port, user: MARIADB.user, connectTimeout: 3000 });
    try {
      const [rows] = await connection.query('SELECT VERSION() AS v, @@innodb_buffer_pool_size AS b');
      const row = (rows as Array<{ v: string; b: number }>)[0];
      return `MariaDB ${row.v} on 127.0.0.1, buffer pool ${Math.round(Number(row.b) / 2 ** 20)} MiB; the service's connection pool: ${process.env.DATABASE_POOL_SIZE ?? '10 (default)'}`;
    } finally {
      await connection.end().catch(() => undefined);
    }
  } catch (err) {
    if (kind === 'mariadb') throw new DatabaseUnavailableError(`MariaDB at ${MARIADB.host}:${MARIADB.port} is not reachable: ${(err as Error).message}`);
    return `${kind} (version unknown: ${(err as Error).message})`;
  }
}

async function benchmarkDatabase(kind: DatabaseKind, s: Settings, options: Options, code: { root: string; label: string }): Promise<DatabaseRun> {
  const label = kind === 'sqlite' ? 'SQLite' : 'MariaDB';
  const started = Date.now();
  const version = await databaseVersion(kind);
  log(`\n== ${label}: ${version}`);
  const background = await waitForQuietMachine(s.quietWaitMs);
  const busy = background === null ? 'unknown' : `${Math.round(background)}% of one core`;
  log(`  machine load before the run: ${busy}`);
  const sizes: SizeRun[] = [];
  for (const subjects of options.sizes) {
    log(`\n -- ${label}, ${fmt(subjects)} subjects`);
    sizes.push(await benchmarkSize(kind, subjects, s, options, code));
  }
  return { kind, label, version, background: busy, sizes, seconds: (Date.now() - started) / 1000 };
}


// ---------------------------------------------------------------------------------------------
// --observability: what metrics and tracing cost (issue 17, point 5)
// ---------------------------------------------------------------------------------------------

type Setup = 'off' | 'metrics' | 'tracing';
const SETUPS: Array<{ key: Setup; name: string }> = [
  { key: 'off', name: 'off: no METRICS_PORT, tracing off' },
  { key: 'metrics', name: `metrics: METRICS_PORT, scraped every ${SCRAPE_EVERY_MS / 1000} s` },
  { key: 'tracing', name: 'metrics + tracing: OTLP/HTTP to a sink on 127.0.0.1, every call sampled' },
];
/** Rounds of windows, each measuring every setup once (the order rotated each round). */
const OBSERVABILITY_ROUNDS = { full: 5, quick: 1 } as const;
/** The metrics cost goal: the check rate with metrics on at least this share of the rate without. */
const METRICS_RATE_GOAL = 0.95;

interface SetupRun {
  setup: Setup;
  /** --profile: the share of the server's busy time in its windows spent in metrics and tracing code. */
  profile?: { busyMs: number; metricsMs: number; tracingMs: number };
  name: string;
  server: ServerProcess;
  generators: LoadGenerators;
  metricsPort: number | null;
  windows: PhaseMeasurement[];
  scrapes: { ok: number; failed: number; bytes: number; slowestMs: number };
}

/**
 * A stand-in OTLP/HTTP collector on 127.0.0.1: accepts every trace export (protobuf or JSON) and
 * counts requests and bytes; nothing is kept or forwarded.
 */
async function startOtlpSink(): Promise<{ url: string; stats: { requests: number; bytes: number }; close(): Promise<void> }> {
  const stats = { requests: 0, bytes: 0 };
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => {
      stats.requests++;
      stats.bytes += bytes;
      const json = String(req.headers['content-type'] ?? '').includes('json');
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, stats, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** GET /metrics every SCRAPE_EVERY_MS (as Prometheus would, more often than its usual 15 s) until stopped. */
function scrapeWhile(run: SetupRun): () => Promise<void> {
  if (run.metricsPort === null) return async () => undefined;
  const port = run.metricsPort;
  let inFlight: Promise<void> = Promise.resolve();
  const scrape = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 10_000 }, (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', () => {
          if (res.statusCode === 200) {
            run.scrapes.ok++;
            run.scrapes.bytes = bytes;
            run.scrapes.slowestMs = Math.max(run.scrapes.slowestMs, performance.now() - started);
          } else run.scrapes.failed++;
          resolve();
        });
      });
      req.on('error', () => {
        run.scrapes.failed++;
        resolve();
      });
      req.on('timeout', () => req.destroy());
    });
  inFlight = scrape();
  const timer = setInterval(() => {
    inFlight = inFlight.then(scrape);
  }, SCRAPE_EVERY_MS);
  return async () => {
    clearInterval(timer);
    await inFlight;
  };
}

/** Metrics code: prom-client and the service's metrics modules. */
const isMetricsModule = (mod: string) => mod === 'prom-client' || mod === 'tdigest' || mod === 'bintrees' || mod === 'src/observability/metrics' || mod === 'src/observability/metrics-server' || mod === 'src/observability/rpc-telemetry';
/** Tracing code: the OpenTelemetry SDK and the service's tracing modules. */
const isTracingModule = (mod: string) => mod.startsWith('@opentelemetry/') || mod === 'src/observability/tracing' || mod === 'src/storage/statement-tracing';

/**
 * From a server's V8 CPU profile, inside `windows`: the busy (non-idle) sampled time, and of it the
 * time charged to the metrics code and to the tracing code. A sample is charged to the nearest
 * frame on its stack that is code of a package or of the service (Node.js and V8 frames are charged
 * to their caller: the scrape's HTTP write to the metrics server, AsyncLocalStorage to the tracing
 * SDK), so work that merely runs inside a call's trace context is not counted as tracing; garbage
 * collection (no caller) is counted as neither.
 */
function observabilityShare(file: string, windows: ProfileWindow[]): { busyMs: number; metricsMs: number; tracingMs: number } {
  type Frame = { functionName: string; url: string; lineNumber: number };
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Array<{ id: number; callFrame: Frame; children?: number[] }>; startTime: number; samples: number[]; timeDeltas: number[] };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const kind = new Map<number, 'tracing' | 'metrics' | 'other'>();
  const kindOf = (id: number): 'tracing' | 'metrics' | 'other' => {
    const known = kind.get(id);
    if (known) return known;
    let k: 'tracing' | 'metrics' | 'other' = 'other';
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      const mod = moduleOf(frame);
      if (!frame.url || mod.startsWith('node:') || mod.startsWith('(')) continue; // runtime: charged to its caller
      k = isTracingModule(mod) ? 'tracing' : isMetricsModule(mod) ? 'metrics' : 'other';
      break;
    }
    kind.set(id, k);
    return k;
  };
  let busy = 0;
  let metrics = 0;
  let tracing = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (!windows.some((w) => t >= w.from && t <= w.to)) continue;
    const node = byId.get(profile.samples[i]);
    if (!node || node.callFrame.functionName === '(idle)') continue;
    const delta = profile.timeDeltas[i] ?? 0;
    busy += delta;
    const k = kindOf(node.id);
    if (k === 'tracing') tracing += delta;
    else if (k === 'metrics') metrics += delta;
  }
  return { busyMs: busy / 1000, metricsMs: metrics / 1000, tracingMs: tracing / 1000 };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/**
 * The same warm unary CheckConsent load (closed loop, the usual calls in flight, subjects drawn
 * uniformly, every answer verified) against three servers on one tenant, running side by side:
 * observability off, metrics on (scraped during its windows), metrics and tracing on (OTLP over
 * HTTP to a sink in this process; every call sampled, as with the SDK's default sampler). Each
 * server's decision cache is warmed first; then rounds of one window per server, the order rotated
 * each round so that drift of the machine's load does not favour one; medians over the rounds.
 */
async function benchmarkObservability(kind: DatabaseKind, s: Settings, options: Options, code: { root: string; label: string }): Promise<string[]> {
  const label = kind === 'sqlite' ? 'SQLite' : 'MariaDB';
  const subjects = options.sizes[0];
  const started = Date.now();
  const version = await databaseVersion(kind);
  log(`\n== ${label}: ${version}; observability cost, ${fmt(subjects)} subjects`);
  const background = await waitForQuietMachine(s.quietWaitMs);
  log(`  machine load before the run: ${background === null ? 'unknown' : `${Math.round(background)}% of one core`}`);
  const { seedLine, start, removeData } = await prepareTenant(kind, subjects, options, code);
  const sink = await startOtlpSink();
  const runs: SetupRun[] = [];
  const stopAll = async () => {
    for (const run of runs) {
      await run.generators.stop().catch(() => undefined);
      await run.server.stop({ keepData: false }).catch(() => undefined);
    }
  };
  cleanups.add(stopAll);
  const databasePid = kind === 'mariadb' ? findDatabasePid() : null;
  const target: CheckTarget = { parent: PARENT, purpose: PURPOSE, subjects };
  try {
    for (const { key, name } of SETUPS) {
      const metricsPort = key === 'off' ? null : await freePort();
      // Explicit either way: nothing from this process's environment turns either on or off.
      const env: NodeJS.ProcessEnv = {
        METRICS_PORT: metricsPort === null ? undefined : String(metricsPort),
        METRICS_BIND_ADDRESS: '127.0.0.1',
        OTEL_SDK_DISABLED: undefined,
        OTEL_TRACES_EXPORTER: key === 'tracing' ? 'otlp' : 'none',
        OTEL_EXPORTER_OTLP_ENDPOINT: key === 'tracing' ? sink.url : undefined,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined,
        OTEL_TRACES_SAMPLER: undefined,
        OTEL_SERVICE_NAME: 'consent-ledger-bench',
      };
      log(`  starting the server "${name}" ...`);
      const server = await start(`observability-${key}`, env);
      const generators = await LoadGenerators.start({ count: options.generators, address: server.address, serverPid: server.pid, databasePid });
      const run: SetupRun = { setup: key, name, server, generators, metricsPort, windows: [], scrapes: { ok: 0, failed: 0, bytes: 0, slowestMs: 0 } };
      runs.push(run);
      await warmDecisionCache(generators, target, s, options);
      // The process warm-up (JIT): a short unary run, not measured.
      await generators.run({ kind: 'check-unary', params: { target, keys: { kind: 'uniform', seed: 9 } } satisfies UnaryCheckParams }, { concurrency: s.concurrency, warmupMs: 0, durationMs: s.warmupMs });
    }
    const rounds = options.quick ? OBSERVABILITY_ROUNDS.quick : OBSERVABILITY_ROUNDS.full;
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < runs.length; i++) {
        const run = runs[(i + round) % runs.length];
        log(`  round ${round + 1}/${rounds}: ${run.name}, ${s.concurrency} in flight ...`);
        const stopScraping = scrapeWhile(run);
        const m = await run.generators.run(
          { kind: 'check-unary', params: { target, keys: { kind: 'uniform', seed: 10 + round } } satisfies UnaryCheckParams },
          { concurrency: s.concurrency, warmupMs: s.warmupMs, durationMs: s.durationMs },
        );
        await stopScraping();
        const failed = Object.entries(m.failed);
        if (failed.length > 0) throw new Error(`${run.name}: calls failed: ${failed.map(([c, n]) => `${n} ${c} ("${m.failureMessages[c] ?? ''}")`).join(', ')}`);
        run.windows.push(m);
        log(`    ${formatRate(m.rate)} calls/s, p99 ${formatMs(m.latency.p99Ms)}; server ${perOp(m.cpu.server, m.items)}/call; CPU gen/server/db/other ${cpuShares(m)}`);
      }
    }
  } catch (err) {
    const ended = runs.find((r) => r.server.exitStatus());
    throw new Error(`${(err as Error).message}${ended ? `\n--- output of the server "${ended.name}" (${ended.server.exitStatus()}) ---\n${ended.server.recentOutput()}` : ''}`);
  } finally {
    await stopAll();
    cleanups.delete(stopAll);
    await sink.close();
    await removeData().catch(() => undefined);
    cleanups.delete(removeData);
  }
  if (options.profileDir) {
    for (const run of runs) {
      const file = path.join(options.profileDir, `server-${kind}-${subjects}-observability-${run.setup}.cpuprofile`);
      try {
        run.profile = observabilityShare(file, run.windows.map((m, i) => ({ name: `${run.setup}-${i}`, from: m.windowUs.from, to: m.windowUs.to })));
      } catch (err) {
        log(`  no profile of "${run.name}": ${(err as Error).message}`);
      }
    }
  }
  return renderObservability(label, version, background, subjects, seedLine, runs, sink.stats, s, (Date.now() - started) / 1000);
}

function renderObservability(
  label: string,
  version: string,
  background: number | null,
  subjects: number,
  seedLine: string,
  runs: SetupRun[],
  sink: { requests: number; bytes: number },
  s: Settings,
  seconds: number,
): string[] {
  const summary = runs.map((run) => {
    const us = run.windows.map((m) => perOpUs(m.cpu.server, m.items) ?? NaN);
    return {
      run,
      rate: median(run.windows.map((m) => m.rate)),
      us: median(us),
      p99: median(run.windows.map((m) => m.latency.p99Ms)),
      other: Math.max(...run.windows.map(otherPercent)),
    };
  });
  const off = summary.find((x) => x.run.setup === 'off')!;
  const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
  const lines = [
    `### ${label}: observability cost, ${fmt(subjects)} subjects`,
    '',
    `${version}. Tenant ${seedLine}. Machine load just before the run: ${background === null ? 'unknown' : `${Math.round(background)}% of one core`}. Run took ${seconds.toFixed(0)} s.`,
    '',
    `| Server | Rate (median) | vs off | Server CPU per call | vs off | p99 | vs off | Windows: rate / CPU per call / p99 | Most CPU of other processes in a window |`,
    '|---|--:|--:|--:|--:|--:|--:|---|--:|',
  ];
  for (const x of summary) {
    const base = x.run.setup === 'off';
    lines.push(
      `| ${x.run.name} | ${formatRate(x.rate)} calls/s | ${base ? '–' : `${times(x.rate / off.rate)} (${pct(x.rate / off.rate)})`} | ${x.us.toFixed(1)} µs | ${base ? '–' : `${times(x.us / off.us)} (${pct(x.us / off.us)})`} | ${formatMs(x.p99)} | ${
        base ? '–' : times(x.p99 / off.p99)
      } | ${x.run.windows.map((m) => `${formatRate(m.rate)} / ${perOp(m.cpu.server, m.items)} / ${formatMs(m.latency.p99Ms)}`).join('; ')} | ${Math.round(x.other)}% of a core |`,
    );
  }
  const metrics = summary.find((x) => x.run.setup === 'metrics');
  const profiled = runs.filter((r) => r.profile);
  if (profiled.length > 0) {
    const share = (ms: number, busy: number) => `${((100 * ms) / Math.max(busy, 1e-9)).toFixed(1)}%`;
    lines.push(
      '',
      'The servers ran under the V8 CPU profiler (--profile: every rate lower, every CPU figure higher than without). Of each server\'s busy time in its measured windows, the share charged to metrics code (prom-client, src/observability/metrics*, rpc-telemetry) and to tracing code (@opentelemetry/*, src/observability/tracing, statement-tracing): each sample to the nearest package or service frame on its stack (Node.js work such as the scrape\'s HTTP to its caller; garbage collection to neither):',
      '',
      '| Server | Busy time sampled | Metrics | Tracing |',
      '|---|--:|--:|--:|',
      ...profiled.map((r) => `| ${r.name} | ${fmt(r.profile!.busyMs)} ms | ${share(r.profile!.metricsMs, r.profile!.busyMs)} | ${share(r.profile!.tracingMs, r.profile!.busyMs)} |`),
    );
  }
  const scraped = runs.filter((r) => r.metricsPort !== null).map((r) => `${r.setup}: ${r.scrapes.ok} scrapes (${fmt(r.scrapes.bytes)} bytes each, slowest ${r.scrapes.slowestMs.toFixed(0)} ms)${r.scrapes.failed ? `, **${r.scrapes.failed} failed**` : ''}`);
  lines.push(
    '',
    `- Unary CheckConsent, closed loop, ${s.concurrency} calls in flight from the load generators, subjects drawn uniformly over the tenant (all in the decision cache, warmed first), every answer verified. Windows of ${s.durationMs / 1000} s after ${s.warmupMs / 1000} s of warm-up, one per server and round, the order rotated each round; the three servers ran side by side on the same database, idle when not measured.`,
    `- Metrics goal (issue 17): the rate with metrics on at least ${Math.round(METRICS_RATE_GOAL * 100)}% of the rate without: ${metrics ? `${(100 * (metrics.rate / off.rate)).toFixed(1)}%, ${metrics.rate / off.rate >= METRICS_RATE_GOAL ? 'met' : '**missed**'}` : '–'}; server CPU per call ${metrics ? pct(metrics.us / off.us) : '–'}.`,
    `- Scrapes during the measured windows: ${scraped.join('; ')}. Trace exports received by the sink: ${fmt(sink.requests)} requests, ${fmt(sink.bytes)} bytes (the SDK's BatchSpanProcessor with its defaults: a queue of 2,048 spans exported every 5 s; spans beyond the queue are dropped).`,
    '',
  );
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const find = (size: SizeRun, key: string) => size.phases.find((p) => p.key === key);

function renderSize(run: DatabaseRun, size: SizeRun): string[] {
  const noOp = find(size, 'no-op');
  const noOpOpen = find(size, 'no-op-open');
  const lines = [
    `#### ${run.label}, ${fmt(size.subjects)} subjects in the tenant`,
    '',
    `Tenant ${size.seed}. Server memory after the throughput phases: ${size.memory.main ? `VmRSS ${mib(size.memory.main.rss)}, VmHWM ${mib(size.memory.main.hwm)}` : 'unknown'}; after the cold/warm phases (second server life): ${
      size.memory.restart ? `VmRSS ${mib(size.memory.restart.rss)}, VmHWM ${mib(size.memory.restart.hwm)}` : 'unknown'
    }.`,
    '',
    '| Workload | Load | Rate | vs no-op | p50 | p99 | p99 vs no-op | Server CPU per decision | vs no-op | mariadbd CPU per decision | CPU, % of a core: generators / server / db / other | Notes |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|',
  ];
  for (const p of size.phases) {
    const base = p.key === 'check-open' ? noOpOpen : p.kind === 'no-op' ? undefined : noOp;
    const us = perOpUs(p.m.cpu.server, p.m.items);
    const baseUs = base ? perOpUs(base.m.cpu.server, base.m.items) : null;
    const failed = Object.entries(p.m.failed).map(([code, n]) => `**${fmt(n)} failed ${code}** ("${p.m.failureMessages[code] ?? ''}")`);
    lines.push(
      `| ${p.name} | ${p.load} | ${formatRate(p.m.rate)} ${p.unit} | ${base && p.unit === 'calls/s' && p.key !== 'check-open' ? times(p.m.rate / base.m.rate) : '–'} | ${formatMs(p.m.latency.p50Ms)} | ${formatMs(p.m.latency.p99Ms)} | ${
        base && p.key === 'check-open' ? times(p.m.latency.p99Ms / base.m.latency.p99Ms) : '–'
      } | ${perOp(p.m.cpu.server, p.m.items)} | ${base && us !== null && baseUs !== null ? times(us / baseUs) : '–'} | ${run.kind === 'mariadb' ? perOp(p.m.cpu.database, p.m.items) : '–'} | ${cpuShares(p.m)} | ${[...failed, ...p.notes].join('; ')} |`,
    );
  }
  lines.push('');
  return lines;
}

function renderDatabase(run: DatabaseRun, s: Settings): string[] {
  const lines = [`### ${run.label}`, '', `${run.version}. Machine load just before the run: ${run.background}. Run took ${run.seconds.toFixed(0)} s.`, ''];
  for (const size of run.sizes) lines.push(...renderSize(run, size));
  lines.push(
    `- Windows: ${s.durationMs / 1000} s after a warm-up of ${s.warmupMs / 1000} s (cold and warm: no warm-up, window shortened so the cold set does not run out); calls finishing inside the window are counted (open loop: calls scheduled inside it). Server CPU per decision: the server process's CPU time over the window / decisions completed in it. "vs no-op": against Health/Check closed loop at the same calls in flight; the open-loop p99 against Health/Check open loop at the same rate.`,
    `- Queries: a seeded subject drawn uniformly over the tenant (purpose newsletter, WhatsApp); 1 in ${OPT_OUT_EVERY} opted out (DENY OPTED_OUT), the rest opted in (ALLOW OPTED_IN); every answer verified.`,
    '',
  );
  return lines;
}

function renderGoals(runs: DatabaseRun[], s: Settings): string[] {
  const columns = runs.flatMap((run) => run.sizes.map((size) => ({ run, size })));
  const verdict = (met: boolean) => (met ? 'met' : '**missed**');
  const cell = (f: (run: DatabaseRun, size: SizeRun) => string) => columns.map(({ run, size }) => f(run, size)).join(' | ');
  const us = (p: Phase | undefined) => (p ? perOpUs(p.m.cpu.server, p.m.items) : null);
  const cpu = (_run: DatabaseRun, size: SizeRun) => {
    const c = us(find(size, 'check'));
    const o = us(find(size, 'no-op'));
    return c === null || o === null ? '–' : `${times(c / o)} (${Math.round(c)} vs ${Math.round(o)} µs): ${verdict(c / o <= GOALS.cpuVsNoOp)}`;
  };
  const rate = (_run: DatabaseRun, size: SizeRun) => {
    const c = find(size, 'check');
    const o = find(size, 'no-op');
    return c && o ? `${times(c.m.rate / o.m.rate)} (${formatRate(c.m.rate)} vs ${formatRate(o.m.rate)}/s): ${verdict(c.m.rate / o.m.rate >= GOALS.rateVsNoOp)}` : '–';
  };
  const p99 = (_run: DatabaseRun, size: SizeRun) => {
    const c = find(size, 'check-open');
    const o = find(size, 'no-op-open');
    if (!c || !o) return '–';
    if (c.m.counters.overloaded) return `the server did not keep up with ${c.load} (stopped sending): **missed**`;
    return `${times(c.m.latency.p99Ms / o.m.latency.p99Ms)} (${formatMs(c.m.latency.p99Ms)} vs ${formatMs(o.m.latency.p99Ms)} at ${formatRate(c.m.rate)}/s): ${verdict(c.m.latency.p99Ms / o.m.latency.p99Ms <= GOALS.p99VsNoOp)}`;
  };
  const decisions = (key: string) => (_run: DatabaseRun, size: SizeRun) => {
    const p = find(size, key);
    return p ? `${formatRate(p.m.rate)}/s: ${verdict(p.m.rate >= GOALS.decisionsPerSecond)}` : '–';
  };
  const growth = (run: DatabaseRun, size: SizeRun) => {
    const smallest = run.sizes[0];
    if (size === smallest) return run.sizes.length > 1 ? '(reference)' : '– (one size only)';
    const a = us(find(smallest, 'check'));
    const b = us(find(size, 'check'));
    return a === null || b === null ? '–' : `${times(b / a)} of ${fmt(smallest.subjects)}'s (${Math.round(b)} vs ${Math.round(a)} µs): ${verdict(b / a <= GOALS.growth)}`;
  };
  const rss = (_run: DatabaseRun, size: SizeRun) => {
    const peak = Math.max(size.memory.main?.hwm ?? NaN, size.memory.restart?.hwm ?? NaN);
    return Number.isFinite(peak) ? `VmHWM ${mib(peak)}: ${verdict(peak < GOALS.rssMb * 2 ** 20)}` : '–';
  };
  const coldWarm = (_run: DatabaseRun, size: SizeRun) => {
    const c = find(size, 'cold');
    const w = find(size, 'warm');
    return c && w ? `cold ${formatRate(c.m.rate)}/s, p99 ${formatMs(c.m.latency.p99Ms)}, ${perOp(c.m.cpu.server, c.m.items)}; warm ${formatRate(w.m.rate)}/s, p99 ${formatMs(w.m.latency.p99Ms)}, ${perOp(w.m.cpu.server, w.m.items)}` : '–';
  };
  return [
    `| Goal | Target | ${columns.map(({ run, size }) => `${run.label}, ${fmt(size.subjects)}`).join(' | ')} |`,
    `|---|---|${columns.map(() => '---').join('|')}|`,
    `| Server CPU per unary CheckConsent vs per Health/Check (primary) | <= ${GOALS.cpuVsNoOp}x | ${cell(cpu)} |`,
    `| CheckConsent rate vs Health/Check, closed loop | >= ${GOALS.rateVsNoOp}x | ${cell(rate)} |`,
    `| p99 CheckConsent vs p99 Health/Check, open loop at half the check's max | <= ${GOALS.p99VsNoOp}x | ${cell(p99)} |`,
    `| StreamCheckConsent, one question per message, one server process | >= ${fmt(GOALS.decisionsPerSecond)} decisions/s | ${cell(decisions('stream'))} |`,
    `| StreamCheckConsent, packed (${fmt(s.streamChunk)} items per message), one server process | >= ${fmt(GOALS.decisionsPerSecond)} decisions/s | ${cell(decisions('stream-packed'))} |`,
    `| CheckConsentBatch (1,000 per call), one server process | >= ${fmt(GOALS.decisionsPerSecond)} decisions/s | ${cell(decisions('batch'))} |`,
    `| A check's server CPU does not grow with the tenant | <= ${GOALS.growth}x of the smallest tenant's | ${cell(growth)} |`,
    `| Server RSS (peak of both server lives) | < ${GOALS.rssMb} MB | ${cell(rss)} |`,
    `| Cold (first touch after restart) vs warm | (both known) | ${cell(coldWarm)} |`,
    '',
  ];
}

function renderReport(runs: DatabaseRun[], failed: string[], skipped: string[], s: Settings, options: Options, codeLabel: string | null): string {
  const lines = [
    `## Check benchmark${options.quick ? ' (quick smoke run: short windows, not representative)' : ''}`,
    '',
    `Run ${new Date().toISOString()}: \`npm run bench:checks -- ${process.argv.slice(2).map((arg) => (/[\s"'()]/.test(arg) ? `'${arg}'` : arg)).join(' ')}\`.`,
    '',
    ...machineInfo(options.label ?? codeLabel),
    `- ${options.generators} load-generator processes; ${s.concurrency} unary calls in flight (closed loop); open loop at half the check's closed-loop rate.`,
    ...(options.profileDir ? ['- The server ran under the V8 CPU profiler (--profile): its rates are lower and its CPU per op higher than without.'] : []),
    '',
  ];
  for (const run of runs) lines.push(...renderDatabase(run, s));
  if (runs.length > 0) lines.push('### Goals (issue 15)', '', ...renderGoals(runs, s));
  for (const run of runs) for (const size of run.sizes) if (size.profile.length) lines.push(...size.profile);
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
  if (options.profileDir) mkdirSync(options.profileDir, { recursive: true });
  if (options.reuse) mkdirSync(REUSE_DIR, { recursive: true });

  let code: { root: string; label: string };
  if (options.commit) code = buildSnapshot(options.commit);
  else {
    ensureBuilt(log);
    code = { root: PROJECT_ROOT, label: '' };
  }
  const runs: DatabaseRun[] = [];
  const failed: string[] = [];
  const skipped: string[] = [];
  if (options.observability) return observabilityMain(options, s, code, started);
  for (const kind of options.databases) {
    try {
      runs.push(await benchmarkDatabase(kind, s, options, code));
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
  const markdown = renderReport(runs, failed, skipped, s, options, code.label || null);
  process.stdout.write(`\n${markdown}`);
  if (options.out) {
    writeFileSync(options.out, markdown);
    log(`report written to ${options.out}`);
  }
  log(`total time ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (runs.length === 0) return 1;
  return failed.length > 0 ? 1 : 0;
}

/** --observability: one section per database, the report to stdout (and --out). */
async function observabilityMain(options: Options, s: Settings, code: { root: string; label: string }, started: number): Promise<number> {
  const sections: string[] = [];
  let measured = 0;
  for (const kind of options.databases) {
    try {
      sections.push(...(await benchmarkObservability(kind, s, options, code)));
      measured++;
    } catch (err) {
      if (stopping) await new Promise<never>(() => undefined);
      const skipped = err instanceof DatabaseUnavailableError;
      log(`\n!! ${kind} ${skipped ? 'skipped' : 'failed'}: ${(err as Error).message}`);
      sections.push(`- ${skipped ? 'Skipped' : 'FAILED'}: ${kind}: ${(err as Error).message.split('\n')[0]}`, '');
    }
  }
  const markdown = [
    `## Observability cost${options.quick ? ' (quick smoke run: short windows, not representative)' : ''}`,
    '',
    `Run ${new Date().toISOString()}: \`npm run bench:checks -- ${process.argv.slice(2).map((arg) => (/[\s"'()]/.test(arg) ? `'${arg}'` : arg)).join(' ')}\`.`,
    '',
    ...machineInfo(options.label ?? (code.label || null)),
    `- ${options.generators} load-generator processes.`,
    '',
    ...sections,
  ].join('\n');
  process.stdout.write(`\n${markdown}\n`);
  if (options.out) {
    writeFileSync(options.out, `${markdown}\n`);
    log(`report written to ${options.out}`);
  }
  log(`total time ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return measured === options.databases.length ? 0 : 1;
}

main().then(
  async (code) => {
    await cleanupAll();
    process.exit(code);
  },
  async (err: Error) => {
    log(`bench:checks: ${err.stack ?? err.message}`);
    await cleanupAll();
    process.exit(1);
  },
);
