import { writeFileSync } from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { Clients, createClients } from './clients';
import { backgroundLoad, CpuMeter, findDatabasePid, formatCpu } from './cpu';
import { DatabaseReport, renderReport, serverCpuPerOpUs } from './report';
import {
  DatabaseKind,
  DatabaseUnavailableError,
  dropMariaDb,
  ensureBuilt,
  MARIADB,
  resetMariaDb,
  ServerProcess,
  startServer,
} from './server-process';
import { formatMs, formatRate } from './stats';
import { batchCheck, checkAtRate, noOpAtRate, noOpRpc, seed, streamCheck, unaryCheck, WorkloadContext, WorkloadResult } from './workloads';

/**
 * `npm run bench [-- --db sqlite|mariadb|both] [--quick] [--out FILE] [--keep] [--verbose] [--profile DIR] [--subjects N] [--label TEXT]`
 *
 * Starts the real server as a child process per database, seeds it, measures the no-op RPC,
 * unary/batch/stream checks and the latency at half load, and prints a markdown report.
 * Progress goes to stderr, the report to stdout (and to --out).
 */

interface Options {
  databases: DatabaseKind[];
  quick: boolean;
  out: string | null;
  keep: boolean;
  verbose: boolean;
  profileDir: string | null;
  /** Overrides the number of seeded subjects (the check path's cost may depend on it). */
  subjects: number | null;
  /** Describes the code under test in the report instead of asking git (e.g. for an exported commit). */
  label: string | null;
}

/** Every count and duration of a run; --quick only makes them smaller. */
interface Settings {
  subjects: number;
  seedConcurrency: number;
  seedTimeLimitMs: number;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  batchSize: number;
  batchConcurrency: number;
  streamQueries: number;
  streamTimeLimitMs: number;
  halfLoadMs: number;
  maxInFlight: number;
  /** How long to wait for other work on the machine to finish before each database. */
  quietWaitMs: number;
  /** Measurements per workload at most, when other processes disturb one (see `step`). */
  attempts: number;
}

const FULL: Settings = {
  subjects: 2000,
  seedConcurrency: 16,
  seedTimeLimitMs: 120_000,
  concurrency: 32,
  durationMs: 5000,
  warmupMs: 1000,
  batchSize: 500,
  batchConcurrency: 4,
  streamQueries: 200_000,
  streamTimeLimitMs: 60_000,
  halfLoadMs: 5000,
  maxInFlight: 2000,
  quietWaitMs: 30_000,
  attempts: 2,
};

const QUICK: Settings = {
  ...FULL,
  subjects: 200,
  seedTimeLimitMs: 30_000,
  durationMs: 1000,
  warmupMs: 200,
  streamQueries: 20_000,
  streamTimeLimitMs: 20_000,
  halfLoadMs: 1000,
  quietWaitMs: 0,
  attempts: 1,
};

const USAGE = `usage: npm run bench -- [--db sqlite|mariadb|both] [--quick] [--out FILE] [--keep] [--verbose] [--profile DIR] [--subjects N] [--label TEXT]
  --db       which database(s) to benchmark (default: both)
  --quick    small counts and short runs: a smoke test of the benchmark itself
  --out      also write the markdown report to FILE
  --keep     keep the data folder and the MariaDB databases ${MARIADB.database} and ${MARIADB.keyDatabase} afterwards
  --verbose  echo the server's output
  --profile  write a V8 CPU profile of the server to DIR (server-<db>.cpuprofile; slows it down)
  --subjects seed N subjects instead of 2,000 (--quick: 200); seeding may then take long
  --label    describe the code under test in the report (default: git commit of this checkout)`;

function parseArgs(argv: string[]): Options {
  const options: Options = { databases: ['sqlite', 'mariadb'], quick: false, out: null, keep: false, verbose: false, profileDir: null, subjects: null, label: null };
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
      case '--keep':
        options.keep = true;
        break;
      case '--verbose':
        options.verbose = true;
        break;
      case '--profile':
        options.profileDir = path.resolve(value());
        break;
      case '--label':
        options.label = value();
        break;
      case '--subjects': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1 || n > 1_000_000) usageError('--subjects must be an integer from 1 to 1,000,000');
        options.subjects = n;
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
  process.stderr.write(`bench: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const log = (line: string) => process.stderr.write(`${line}\n`);

/** Set by SIGINT or SIGTERM; from then on the interrupt handler cleans up and exits, the main flow only waits. */
let interrupted = false;

/** The server currently running, so an interrupt can stop it. */
let current: { kind: DatabaseKind; server: ServerProcess; clients: Clients } | null = null;

function describeSettings(s: Settings): string[] {
  return [
    `${s.subjects.toLocaleString('en-US')} seeded subjects (opt-in, MARKETING purpose, WhatsApp), seeded with ${s.seedConcurrency} RecordConsent calls in flight`,
    `unary workloads: ${s.concurrency} calls in flight, ${s.warmupMs / 1000} s warm-up then ${s.durationMs / 1000} s measured`,
    `CheckConsentBatch: ${s.batchSize} queries per call, ${s.batchConcurrency} calls in flight, same warm-up and duration`,
    `StreamCheckConsent: ${s.streamQueries.toLocaleString('en-US')} queries on one stream (at most ${s.streamTimeLimitMs / 1000} s of writing), after a warm-up stream of ${Math.min(10_000, s.streamQueries / 10).toLocaleString('en-US')}`,
    `half load: CheckConsent open loop at 50% of the measured unary CheckConsent throughput for ${s.halfLoadMs / 1000} s, then the no-op RPC on the same schedule as a control (its tail is gRPC, load generator and machine, not the check path)`,
    'every answer is checked (ALLOW for every seeded subject, stream answers in order); any failed call aborts the run',
    `CPU is read from /proc for the load generator ("client"), the server, MariaDB ("db") and everything else ("other"); ${
      s.attempts > 1 ? `a workload during which other processes used more than ${QUIET_PERCENT}% of a core is measured again (at most ${s.attempts} attempts) and the quieter attempt kept` : 'no repeats (--quick)'
    }`,
  ];
}

async function databaseVersion(kind: DatabaseKind): Promise<string> {
  try {
    if (kind === 'sqlite') {
      const Database = require('better-sqlite3') as new (file: string) => { prepare(sql: string): { get(): { v: string } }; close(): void };
      const pkg = require('better-sqlite3/package.json') as { version: string };
      const db = new Database(':memory:');
      const v = db.prepare('SELECT sqlite_version() AS v').get().v;
      db.close();
      return `SQLite ${v} (better-sqlite3 ${pkg.version}), WAL, synchronous=NORMAL; one connection, checks serialised in-process`;
    }
    const connection = await mysql.createConnection({ host: MARIADB.host, port: MARIADB.port, user: MARIADB.user, connectTimeout: 3000 });
    try {
      const [rows] = await connection.query('SELECT VERSION() AS v, @@innodb_flush_log_at_trx_commit AS f, @@innodb_buffer_pool_size AS b');
      const row = (rows as Array<{ v: string; f: number; b: number }>)[0];
      return `MariaDB ${row.v} on 127.0.0.1, innodb_flush_log_at_trx_commit=${row.f}, buffer pool ${Math.round(Number(row.b) / 2 ** 20)} MiB; the service's connection pool: ${process.env.DATABASE_POOL_SIZE ?? '10 (default)'}`;
    } finally {
      await connection.end().catch(() => undefined);
    }
  } catch (err) {
    return `${kind} (version unknown: ${(err as Error).message})`;
  }
}

/** Background CPU (percent of one core) below which the machine counts as quiet. */
const QUIET_PERCENT = 25;

/**
 * On a shared machine someone else's build or test run takes the cores the server needs. Waits
 * (at most `maxWaitMs`) for a second in which the machine is quiet; returns the last load seen.
 */
async function waitForQuietMachine(maxWaitMs: number): Promise<number | null> {
  const deadline = Date.now() + maxWaitMs;
  let announced = false;
  for (;;) {
    const load = await backgroundLoad(1000);
    if (load === null || load <= QUIET_PERCENT || Date.now() >= deadline) return load;
    if (!announced) {
      log(`  the machine is busy (${Math.round(load)}% of one core); waiting up to ${Math.round(maxWaitMs / 1000)} s for it to calm down`);
      announced = true;
    }
  }
}

function progress(r: WorkloadResult): void {
  const latency = r.latency ? `, p50 ${formatMs(r.latency.p50Ms)}, p99 ${formatMs(r.latency.p99Ms)}` : '';
  const perOp = serverCpuPerOpUs(r);
  const cpu = `${formatCpu(r.cpu)}${perOp === null ? '' : `; server ${Math.round(perOp)} µs CPU per op`}`;
  log(`    ${r.name}: ${formatRate(r.throughput)} ${r.unit}${latency} [${cpu}]${r.notes.length ? ` (${r.notes.join('; ')})` : ''}`);
}

async function benchmarkDatabase(kind: DatabaseKind, s: Settings, options: Options): Promise<DatabaseReport> {
  const label = kind === 'sqlite' ? 'SQLite' : 'MariaDB';
  if (kind === 'mariadb') await resetMariaDb();
  const version = await databaseVersion(kind);
  log(`\n== ${label}: ${version}`);
  const background = await waitForQuietMachine(s.quietWaitMs);
  const busy = background === null ? 'unknown' : `${Math.round(background)}% of one core`;
  if (background !== null && background > QUIET_PERCENT) log(`  WARNING: the machine is busy before the run (${busy}): results will be lower than they should be`);
  else log(`  background load: ${busy}`);
  const server = await startServer({ database: kind, verbose: options.verbose, profileDir: options.profileDir ?? undefined });
  const clients = createClients(server.address);
  current = { kind, server, clients };
  log(`  server pid ${server.pid} on ${server.address}, data in ${server.dataDir}`);
  try {
    const ctx: WorkloadContext = { clients, cpu: new CpuMeter(server.pid, kind === 'mariadb' ? findDatabasePid() : null), subjects: s.subjects };
    const timed = { concurrency: s.concurrency, durationMs: s.durationMs, warmupMs: s.warmupMs };
    // On a shared machine other work may start in the middle of a measurement: a workload during
    // which other processes took more than QUIET_PERCENT of a core is measured once more, and the
    // quieter of the attempts is kept. Seeding cannot be repeated (it creates the data).
    const step = async (what: string, run: () => Promise<WorkloadResult>, repeatable = true) => {
      let best: WorkloadResult | null = null;
      for (let attempt = 1; attempt <= s.attempts; attempt++) {
        log(`  ${what}${attempt > 1 ? ` (attempt ${attempt})` : ''} ...`);
        const result = await run();
        progress(result);
        if (!best || (result.cpu?.other ?? 0) < (best.cpu?.other ?? 0)) best = result;
        const other = best.cpu?.other ?? 0;
        if (!repeatable || other <= QUIET_PERCENT) break;
        if (attempt < s.attempts) log(`    other processes used ${Math.round(other)}% of a core meanwhile: measuring again`);
      }
      const other = best!.cpu?.other ?? 0;
      if (other > QUIET_PERCENT) best!.notes.push(`**machine busy: other processes used ${Math.round(other)}% of a core**`);
      return best!;
    };
    const seeded = await step(`seeding ${s.subjects} opt-ins`, () => seed(ctx, { concurrency: s.seedConcurrency, timeLimitMs: s.seedTimeLimitMs }), false);
    const noOp = await step('no-op RPC', () => noOpRpc(ctx, timed));
    const check = await step('unary CheckConsent', () => unaryCheck(ctx, timed));
    const batch = await step('CheckConsentBatch', () => batchCheck(ctx, { ...timed, concurrency: s.batchConcurrency, batchSize: s.batchSize }));
    const stream = await step('StreamCheckConsent', async () => {
      await streamCheck(ctx, { queries: Math.min(10_000, s.streamQueries / 10), timeLimitMs: 10_000 }, 'warm-up stream');
      return streamCheck(ctx, { queries: s.streamQueries, timeLimitMs: s.streamTimeLimitMs });
    });
    const rate = check.throughput / 2;
    const halfLoad = await step(`CheckConsent open loop at ${formatRate(rate)}/s`, () =>
      checkAtRate(ctx, { rate, durationMs: s.halfLoadMs, maxInFlight: s.maxInFlight, label: '50% of max' }),
    );
    const control = await step(`Health/Check open loop at ${formatRate(rate)}/s`, () =>
      noOpAtRate(ctx, { rate, durationMs: s.halfLoadMs, maxInFlight: s.maxInFlight }),
    );
    return { database: label, version, background: busy, seed: seeded, noOp, check, batch, stream, halfLoad, control };
  } catch (err) {
    const exited = server.exitStatus();
    // A server that exited without a word at LOG_LEVEL=warn was most likely stopped from outside.
    const how = exited ? ` (the server process had ended: ${exited})` : '';
    throw new Error(`${(err as Error).message}${how}\n--- last server output ---\n${server.recentOutput() || '(none)'}`);
  } finally {
    clients.close();
    await server.stop({ keepData: options.keep });
    current = null;
    if (kind === 'mariadb' && !options.keep) await dropMariaDb().catch(() => undefined);
  }
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const base = options.quick ? QUICK : FULL;
  // More subjects take longer to seed: allow at least 20 ms per opt-in.
  const settings = options.subjects === null ? base : { ...base, subjects: options.subjects, seedTimeLimitMs: Math.max(base.seedTimeLimitMs, options.subjects * 20) };
  const startedAt = Date.now();

  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(130); // the 'exit' handler SIGKILLs any child still running
    interrupted = true;
    log(`\n${signal}: stopping the server (Ctrl-C again to force)`);
    const running = current;
    const cleanUp = async () => {
      if (!running) return;
      running.clients.close();
      await running.server.stop({ keepData: options.keep });
      if (running.kind === 'mariadb' && !options.keep) await dropMariaDb();
    };
    cleanUp()
      .catch((err: Error) => log(`clean-up after interrupt failed: ${err.message}`))
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  ensureBuilt(log);

  const reports: DatabaseReport[] = [];
  const skipped: string[] = [];
  const failed: string[] = [];
  for (const kind of options.databases) {
    try {
      reports.push(await benchmarkDatabase(kind, settings, options));
    } catch (err) {
      // Calls fail once the interrupt handler stops the server; it reports and exits, not us.
      if (interrupted) await new Promise<never>(() => undefined);
      if (err instanceof DatabaseUnavailableError) {
        log(`\n!! skipping ${kind}: ${err.message}`);
        skipped.push(`${kind}: ${err.message}`);
      } else {
        log(`\n!! ${kind} benchmark failed: ${(err as Error).message}`);
        failed.push(`${kind}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  }

  const described = describeSettings(settings);
  if (options.profileDir) described.push('the server ran under the V8 CPU profiler (--profile): numbers are lower than without it');
  const markdown = renderReport({ reports, skipped, failed, settings: described, quick: options.quick, codeLabel: options.label });
  process.stdout.write(`\n${markdown}`);
  if (options.out) {
    writeFileSync(options.out, markdown);
    log(`report written to ${options.out}`);
  }
  log(`total time ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
  if (reports.length === 0) {
    log('bench: nothing ran');
    return 1;
  }
  return failed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    log(`bench: ${err.message}`);
    process.exit(1);
  },
);
