import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { PurposeCategory } from '../src/gen/consent/v1/common';
import { createClients, unary } from './clients';
import { findDatabasePid, machineBusySeconds, procCpuSeconds } from './cpu';
import { renderProfileSummary, summariseProfile } from './profile-summary';
import { DatabaseKind, DatabaseUnavailableError, dropMariaDb, ensureBuilt, MARIADB, PROJECT_ROOT, resetMariaDb, ServerProcess, startServer } from './server-process';
import { seededRandom } from './stats';

/**
 * `npm run bench:import [-- --db sqlite|mariadb|both] [--quick] [--rows N] [--out FILE] [--profile DIR] [--verify] [--keep] [--verbose]`
 *
 * Issue 14 point 4: a business's list of opt-ins of people the service has never seen, imported
 * with `consentctl import` (a child process, as an operator runs it) into the real server (a
 * child process too), per database. Measures rows per second and total time, CPU of server,
 * database and consentctl, and the server's resident memory while it imports (sampled every
 * 100 ms, and the kernel's high-water mark). Afterwards every row is counted in the database;
 * --verify (default with --quick) also runs `consentctl audit verify --records`.
 * Progress goes to stderr, the markdown report to stdout (and --out).
 */

interface Options {
  databases: DatabaseKind[];
  rows: number;
  quick: boolean;
  out: string | null;
  profileDir: string | null;
  verify: boolean;
  keep: boolean;
  verbose: boolean;
}

const USAGE = `usage: npm run bench:import -- [--db sqlite|mariadb|both] [--quick] [--rows N] [--out FILE] [--profile DIR] [--verify] [--keep] [--verbose]
  --db        which databases (default both)
  --quick     50,000 rows instead of 1,000,000 (and --verify)
  --rows      rows to import
  --out       also write the report to FILE
  --profile   run the server under the V8 CPU profiler (DIR/server-<db>.cpuprofile) and summarise where its time went
  --verify    run consentctl audit verify --records afterwards (every row against its audit entry)
  --keep      keep the MariaDB database, the SQLite data directory and the generated file`;

const TENANT = 'bench-import';
const PURPOSE = 'newsletter';
/** The MariaDB database of this benchmark (its key store: <name>_keys). */
const MARIADB_DATABASE = 'consent_bench_import';
const GOAL_SECONDS = 60;

function parseArgs(argv: string[]): Options {
  const options: Options = { databases: ['sqlite', 'mariadb'], rows: 1_000_000, quick: false, out: null, profileDir: null, verify: false, keep: false, verbose: false };
  let rowsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      return v;
    };
    switch (arg) {
      case '--db': {
        const v = value();
        if (v === 'both') options.databases = ['sqlite', 'mariadb'];
        else if (v === 'sqlite' || v === 'mariadb') options.databases = [v];
        else throw new Error(`--db must be sqlite, mariadb or both\n${USAGE}`);
        break;
      }
      case '--quick':
        options.quick = true;
        break;
      case '--rows':
        options.rows = Number(value());
        rowsGiven = true;
        if (!Number.isSafeInteger(options.rows) || options.rows < 1) throw new Error(`--rows must be a positive whole number\n${USAGE}`);
        break;
      case '--out':
        options.out = path.resolve(value());
        break;
      case '--profile':
        options.profileDir = path.resolve(value());
        break;
      case '--verify':
        options.verify = true;
        break;
      case '--keep':
        options.keep = true;
        break;
      case '--verbose':
        options.verbose = true;
        break;
      case '--help':
        process.stdout.write(USAGE + '\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${arg}\n${USAGE}`);
    }
  }
  if (options.quick) {
    if (!rowsGiven) options.rows = 50_000;
    options.verify = true;
  }
  return options;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

/**
 * The file a business would bring: one opt-in per person, every person new, with the notice
 * version they saw, how it was collected, when (spread over five years) and the usual web-form
 * evidence (IP address, page). German mobile numbers +49 151 followed by 8 digits: all valid.
 */
async function generateFile(file: string, rows: number): Promise<number> {
  const random = seededRandom(14);
  const out = createWriteStream(file, { encoding: 'utf8' });
  out.write('phone,purpose,channel,kind,event_time,method,notice,source_ip,page_url\n');
  const from = Date.UTC(2020, 0, 1);
  const span = Date.UTC(2025, 0, 1) - from;
  let chunk = '';
  for (let i = 0; i < rows; i++) {
    const time = new Date(from + Math.floor(random() * span)).toISOString().replace('.000Z', 'Z');
    const ip = `198.51.100.${Math.floor(random() * 254) + 1}`;
    chunk += `+49151${String(10_000_000 + i).padStart(8, '0')},${PURPOSE},whatsapp,opt_in,${time},web_form,1,${ip},https://shop.example/newsletter\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
  return statSync(file).size;
}

/** Resident memory of a process from /proc (current and the kernel's high-water mark), in bytes. */
function rssOf(pid: number): { rss: number; peak: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return null;
  }
}

/** The node process that runs the service (startServer spawns node directly: the child itself). */
function serverPid(server: ServerProcess): number {
  if (server.pid === undefined) throw new Error('the server has no pid');
  return server.pid;
}

interface RunResult {
  database: DatabaseKind;
  rows: number;
  recorded: number;
  alreadyRecorded: number;
  rejected: number;
  seconds: number;
  rowsPerSecond: number;
  serverCpuSeconds: number | null;
  databaseCpuSeconds: number | null;
  clientCpuSeconds: number | null;
  machineCpuSeconds: number | null;
  rssBeforeMb: number;
  rssPeakMb: number;
  rssHighWaterMb: number;
  rssAfterMb: number;
  storedEvents: number;
  verify: string;
  profile: string[];
}

async function setUpTenant(address: string): Promise<void> {
  const clients = createClients(address);
  try {
    await unary(clients.tenants, clients.tenants.createTenant, { tenantId: TENANT, displayName: 'Import benchmark', requestId: '', settings: undefined });
    await unary(clients.purposes, clients.purposes.createPurpose, {
      parent: `tenants/${TENANT}`,
      purposeId: PURPOSE,
      purpose: { name: '', displayName: 'Newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: '', createTime: undefined, allowedWhileRestricted: false },
      requestId: '',
    });
    await unary(clients.purposes, clients.purposes.publishNotice, { parent: `tenants/${TENANT}/purposes/${PURPOSE}`, language: 'en', text: 'Our newsletter, weekly.', requestId: 'notice-1' });
  } finally {
    clients.close();
  }
}

/** Runs a consentctl command as its own process; resolves with its exit code, output and CPU seconds. */
function consentctl(args: string[], verbose: boolean): Promise<{ code: number | null; out: string; err: string; cpuSeconds: number | null }> {
  const child: ChildProcess = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'src', 'cli', 'consentctl.js'), ...args], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString('utf8');
    if (verbose) process.stderr.write(`  [consentctl] ${c.toString('utf8')}`);
  });
  // The child's CPU time, read until it exits (the last reading misses at most its final 100 ms).
  let cpuSeconds: number | null = null;
  const meter = setInterval(() => (cpuSeconds = procCpuSeconds(child.pid!) ?? cpuSeconds), 100);
  return new Promise((resolve) => {
    child.once('exit', (code) => {
      clearInterval(meter);
      resolve({ code, out, err, cpuSeconds });
    });
  });
}

async function countStoredEvents(kind: DatabaseKind, server: ServerProcess): Promise<number> {
  if (kind === 'mariadb') {
    const connection = await mysql.createConnection({ host: MARIADB.host, port: MARIADB.port, user: MARIADB.user, database: MARIADB_DATABASE });
    try {
      const [rows] = await connection.query('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ?', [TENANT]);
      return Number((rows as Array<{ n: unknown }>)[0].n);
    } finally {
      await connection.end();
    }
  }
  const Database = require('better-sqlite3') as new (file: string, options: { readonly: boolean }) => { prepare(sql: string): { get(...p: unknown[]): { n: number } }; close(): void };
  const db = new Database(path.join(server.dataDir, 'consent-ledger.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ?').get(TENANT).n;
  } finally {
    db.close();
  }
}

async function runDatabase(kind: DatabaseKind, file: string, rows: number, options: Options): Promise<RunResult> {
  if (kind === 'mariadb') await resetMariaDb(MARIADB_DATABASE);
  log(`${kind}: starting the server`);
  const server = await startServer({ database: kind, verbose: options.verbose, profileDir: options.profileDir ?? undefined, mariadbDatabase: MARIADB_DATABASE });
  let stopped = false;
  try {
    await setUpTenant(server.address);
    const pid = serverPid(server);
    const databasePid = kind === 'mariadb' ? findDatabasePid() : null;
    const before = { server: procCpuSeconds(pid), database: databasePid === null ? null : procCpuSeconds(databasePid), machine: machineBusySeconds(), rss: rssOf(pid) };
    let rssPeak = before.rss?.rss ?? 0;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssOf(pid)?.rss ?? 0)), 100);
    const rejects = path.join(path.dirname(file), `rejects-${kind}.csv`);
    log(`${kind}: consentctl import of ${rows.toLocaleString('en')} rows`);
    const started = process.hrtime.bigint();
    const run = await consentctl(['--address', server.address, '--json', 'import', file, '--tenant', TENANT, '--rejects', rejects], options.verbose);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    clearInterval(sampler);
    const after = { server: procCpuSeconds(pid), database: databasePid === null ? null : procCpuSeconds(databasePid), machine: machineBusySeconds(), rss: rssOf(pid) };
    if (run.code !== 0) throw new Error(`consentctl import exited ${run.code}\n${run.err.slice(-3000)}\n${run.out.slice(-2000)}`);
    const summary = JSON.parse(run.out) as { rows: number; recorded: number; alreadyRecorded: number; rejected: number };
    const storedEvents = await countStoredEvents(kind, server);
    let verify = 'not run';
    if (options.verify) {
      log(`${kind}: consentctl audit verify --records`);
      const verified = await consentctl(['--address', server.address, 'audit', 'verify', '--tenant', TENANT, '--records'], false);
      if (verified.code !== 0) throw new Error(`audit verify failed (exit ${verified.code}): ${verified.err}`);
      verify = verified.out.trim().split('\n').slice(-2, -1)[0] ?? 'verified';
    }
    const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : b - a);
    await server.stop({ keepData: options.keep });
    stopped = true;
    if (options.keep) log(`${kind}: the server's data directory is kept: ${server.dataDir}`);
    let profile: string[] = [];
    if (options.profileDir) {
      const profileFile = path.join(options.profileDir, `server-${kind}.cpuprofile`);
      try {
        profile = renderProfileSummary(`${kind}: server CPU profile of the whole run (start-up and set-up included, small)`, summariseProfile(profileFile, [], 30), 25);
      } catch (err) {
        profile = [`(no profile summary: ${(err as Error).message})`];
      }
    }
    const mb = (bytes: number | undefined) => Math.round((bytes ?? 0) / 1048576);
    return {
      database: kind,
      rows: summary.rows,
      recorded: summary.recorded,
      alreadyRecorded: summary.alreadyRecorded,
      rejected: summary.rejected,
      seconds,
      rowsPerSecond: summary.rows / seconds,
      serverCpuSeconds: diff(before.server, after.server),
      databaseCpuSeconds: diff(before.database, after.database),
      clientCpuSeconds: run.cpuSeconds,
      machineCpuSeconds: diff(before.machine, after.machine),
      rssBeforeMb: mb(before.rss?.rss),
      rssPeakMb: mb(rssPeak),
      rssHighWaterMb: mb(after.rss?.peak),
      rssAfterMb: mb(after.rss?.rss),
      storedEvents,
      verify,
      profile,
    };
  } finally {
    if (!stopped) await server.stop();
    if (kind === 'mariadb' && !options.keep) await dropMariaDb(MARIADB_DATABASE).catch(() => undefined);
  }
}

function render(results: RunResult[], options: Options, fileBytes: number, skipped: string[]): string {
  const cpu = (s: number | null, seconds: number) => (s === null ? 'n/a' : `${s.toFixed(1)} s (${Math.round((s / seconds) * 100)}%)`);
  const lines = [
    `## Import (issue 14): ${options.rows.toLocaleString('en')} opt-ins of ${options.rows.toLocaleString('en')} new people`,
    '',
    `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node.js ${process.version}, load average before the run ${os.loadavg()[0].toFixed(2)}.`,
    `File: CSV, ${(fileBytes / 1048576).toFixed(1)} MiB (phone, purpose, channel, kind, event_time, method, notice, source_ip, page_url). consentctl import and the server are separate processes; CPU columns are CPU seconds during the import (and % of one core over its wall time).`,
    '',
    '| database | rows | wall time | rows/s | goal (≤ 60 s) | server CPU | database CPU | consentctl CPU | whole machine | server RSS before / peak sampled / high-water / after |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of results) {
    const scaled = options.rows >= 1_000_000 ? (r.seconds <= GOAL_SECONDS ? 'met' : 'MISSED') : `${((r.seconds * 1_000_000) / options.rows).toFixed(0)} s per 1M (scaled)`;
    lines.push(
      `| ${r.database} | ${r.recorded.toLocaleString('en')} recorded of ${r.rows.toLocaleString('en')} | ${r.seconds.toFixed(1)} s | ${Math.round(r.rowsPerSecond).toLocaleString('en')} | ${scaled} | ${cpu(r.serverCpuSeconds, r.seconds)} | ${cpu(r.databaseCpuSeconds, r.seconds)} | ${cpu(r.clientCpuSeconds, r.seconds)} | ${cpu(r.machineCpuSeconds, r.seconds)} | ${r.rssBeforeMb} / ${r.rssPeakMb} / ${r.rssHighWaterMb} / ${r.rssAfterMb} MiB |`,
    );
  }
  lines.push('');
  for (const r of results) lines.push(`- ${r.database}: ${r.storedEvents.toLocaleString('en')} consent events stored for the tenant; audit verify --records: ${r.verify}`);
  for (const s of skipped) lines.push(`- ${s}`);
  for (const r of results) if (r.profile.length > 0) lines.push('', ...r.profile);
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  ensureBuilt(log);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'consent-bench-import-'));
  const file = path.join(dir, 'opt-ins.csv');
  log(`generating ${options.rows.toLocaleString('en')} rows in ${file}`);
  const fileBytes = await generateFile(file, options.rows);
  const results: RunResult[] = [];
  const skipped: string[] = [];
  try {
    for (const kind of options.databases) {
      try {
        results.push(await runDatabase(kind, file, options.rows, options));
        const r = results[results.length - 1];
        log(`${kind}: ${r.recorded.toLocaleString('en')} rows in ${r.seconds.toFixed(1)} s (${Math.round(r.rowsPerSecond).toLocaleString('en')} rows/s), server RSS peak ${r.rssPeakMb} MiB`);
        if (r.recorded !== options.rows || r.storedEvents !== options.rows) throw new Error(`${kind}: ${r.recorded} recorded and ${r.storedEvents} stored, expected ${options.rows}`);
      } catch (err) {
        if (!(err instanceof DatabaseUnavailableError)) throw err;
        skipped.push(`${kind} skipped: ${err.message}`);
      }
    }
  } finally {
    if (!options.keep) rmSync(dir, { recursive: true, force: true });
  }
  const report = render(results, options, fileBytes, skipped);
  process.stdout.write(report);
  if (options.out) writeFileSync(options.out, report);
}

main().catch((err) => {
  process.stderr.write(`bench:import failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
