import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClientDuplexStream, Metadata } from '@grpc/grpc-js';
import { Channel, PurposeCategory } from '../src/gen/consent/v1/common';
import { ConsentQuery, StreamCheckConsentRequest, StreamCheckConsentResponse, Verdict } from '../src/gen/consent/v1/consent';
import { checkSubjectPhone, expectedDecision } from './check-jobs';
import { Clients, createClients, healthCheck, unary } from './clients';
import { CountedServer, InstructionCount, runCalls } from './callgrind-server';
import { ensureBuilt, freePort, mariadbUrl, PROJECT_ROOT, SERVER_LOG_LEVEL } from './server-process';

/**
 * `npx tsx bench/check-instructions.ts [--db sqlite|mariadb] [--root DIR] [--calls N] [--in-flight N] [--rounds N] [--out FILE]`
 *
 * The check path's ratio "server CPU per cached CheckConsent / per Health/Check" counted in
 * instructions, as bench/write-instructions.ts does for writes: the server runs under valgrind's
 * callgrind (every instruction of every thread of the server process), and `callgrind_control
 * --dump` cuts the count at the edges of each window, so the count does not depend on what else
 * the shared machine runs (bench:checks' timed windows vary 2-3x between runs there). Not seen:
 * kernel time (the sockets), cache misses and stalls, mariadbd. Under valgrind the server runs
 * ~50x slower, so calls queue as under heavy load; every window has the same calls in flight.
 *
 * The tenant is the one `npm run bench:checks -- --reuse` seeded with 20,000 subjects (SQLite: a
 * copy of its data folder; MariaDB: its database, only read). The decision cache is warmed with
 * every subject once (batches of 1,000); its staleness bound is raised to 60 s so that a server
 * slowed down this much is never behind it (a check's work does not depend on the bound). Windows:
 * N Health/Check and N CheckConsent (a fixed spread of subjects, every answer verified),
 * alternating for a few rounds; an idle pause (the background work per ms, which every window
 * carries in proportion to its length); N decisions through CheckConsentBatch (1,000 per call)
 * and through one StreamCheckConsent (chunks of 500 written before their answers are awaited).
 * The main thread's count (the JavaScript, and the scavenges it waits for) is the figure to
 * compare: V8's helper threads (concurrent marking, compiling) vary more from run to run.
 */

interface Options {
  database: 'sqlite' | 'mariadb';
  root: string | null;
  calls: number;
  inFlight: number;
  rounds: number;
  out: string | null;
}

const USAGE = `usage: npx tsx bench/check-instructions.ts [--db sqlite|mariadb] [--root DIR] [--calls N] [--in-flight N] [--rounds N] [--out FILE]
  --db         the database (default sqlite); the tenant seeded by \`npm run bench:checks -- --reuse\` (20,000 subjects)
  --root       run the server built in DIR (DIR/dist/src/main.js) instead of this checkout's dist/
  --calls      calls (unary) and decisions (batch, stream) per window (default 2000)
  --in-flight  unary calls in flight (default 64, as bench:checks)
  --rounds     Health/Check and CheckConsent windows, alternating (default 2)
  --out        also write the markdown report to FILE`;

const SUBJECTS = 20_000;
const PARENT = 'tenants/bench-checks';
const PURPOSE = `${PARENT}/purposes/newsletter`;
const SEEDED_DIR = path.join(os.tmpdir(), 'consent-bench-checks');
const IDLE_MS = 10_000;
const DEADLINE_MS = 600_000;
const log = (line: string) => process.stderr.write(`${line}\n`);

function parseArgs(argv: string[]): Options {
  const o: Options = { database: 'sqlite', root: null, calls: 2000, inFlight: 64, rounds: 2, out: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${arg} needs a value`);
      return v;
    };
    const count = (v: string, name: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) usage(`${name} must be a positive integer`);
      return n;
    };
    if (arg === '--db') {
      const db = value();
      if (db !== 'sqlite' && db !== 'mariadb') usage('--db must be sqlite or mariadb');
      o.database = db;
    } else if (arg === '--root') o.root = path.resolve(value());
    else if (arg === '--calls') o.calls = count(value(), '--calls');
    else if (arg === '--in-flight') o.inFlight = count(value(), '--in-flight');
    else if (arg === '--rounds') o.rounds = count(value(), '--rounds');
    else if (arg === '--out') o.out = path.resolve(value());
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else usage(`unknown argument "${arg}"`);
  }
  return o;
}

function usage(message: string): never {
  process.stderr.write(`check-instructions: ${message}\n${USAGE}\n`);
  process.exit(2);
}

/** The same seeded draw in every run (the same work for every build). */
function subjectOf(n: number): number {
  return (n * 7919 + 13) % SUBJECTS;
}

function query(subject: number): ConsentQuery {
  return {
    subjectIdentifier: { kind: { $case: 'phoneNumber', value: checkSubjectPhone(subject) }, defaultRegion: '' },
    purpose: PURPOSE,
    category: PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED,
    channel: Channel.CHANNEL_WHATSAPP,
    at: undefined,
  };
}

function verify(subject: number, verdict: Verdict | undefined, reason: number | undefined): void {
  const expected = expectedDecision(subject);
  if (verdict !== expected.verdict || reason !== expected.reason) throw new Error(`subject #${subject} answered ${verdict}/${reason}, expected ${expected.verdict}/${expected.reason}`);
}

async function checkOne(clients: Clients, n: number): Promise<void> {
  const subject = subjectOf(n);
  const r = await unary(clients.consent, clients.consent.checkConsent, { parent: PARENT, query: query(subject), consistency: undefined }, DEADLINE_MS);
  verify(subject, r.decision?.verdict, r.decision?.reason);
}

async function checkBatch(clients: Clients, first: number, size: number): Promise<void> {
  const subjects = Array.from({ length: size }, (_, k) => subjectOf(first + k));
  const r = await unary(clients.consent, clients.consent.checkConsentBatch, { parent: PARENT, queries: subjects.map(query), consistency: undefined }, DEADLINE_MS);
  subjects.forEach((s, k) => verify(s, r.results[k]?.decision?.verdict, r.results[k]?.decision?.reason));
}

/** `total` decisions on one StreamCheckConsent, `chunk` queries written before their answers are awaited. */
async function checkStream(clients: Clients, first: number, total: number, chunk: number): Promise<void> {
  const call: ClientDuplexStream<StreamCheckConsentRequest, StreamCheckConsentResponse> = clients.consent.streamCheckConsent(new Metadata(), { deadline: Date.now() + DEADLINE_MS });
  const answered = new Map<string, () => void>();
  call.on('data', (r: StreamCheckConsentResponse) => {
    const subject = subjectOf(Number(r.correlationId));
    verify(subject, r.result?.decision?.verdict, r.result?.decision?.reason);
    answered.get(r.correlationId)?.();
  });
  const failed = new Promise<never>((_, reject) => call.on('error', reject));
  for (let start = first; start < first + total; start += chunk) {
    const waits: Promise<void>[] = [];
    for (let n = start; n < Math.min(start + chunk, first + total); n++) {
      waits.push(new Promise<void>((resolve) => answered.set(String(n), resolve)));
      call.write({ parent: PARENT, query: query(subjectOf(n)), correlationId: String(n), consistency: undefined, items: [] });
    }
    await Promise.race([Promise.all(waits), failed]);
  }
  call.end();
}

/** `total` decisions on one StreamCheckConsent, each chunk of `chunk` queries as one packed message (`items`). */
async function checkPackedStream(clients: Clients, first: number, total: number, chunk: number): Promise<void> {
  const call: ClientDuplexStream<StreamCheckConsentRequest, StreamCheckConsentResponse> = clients.consent.streamCheckConsent(new Metadata(), { deadline: Date.now() + DEADLINE_MS });
  const answered = new Map<string, () => void>();
  let fail: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
    call.on('error', reject);
  });
  call.on('data', (r: StreamCheckConsentResponse) => {
    try {
      if (r.answers.length === 0) throw new Error(`a packed message was refused: ${r.result?.error?.message ?? 'no answers'}`);
      for (const a of r.answers) verify(subjectOf(Number(a.correlationId)), a.result?.decision?.verdict, a.result?.decision?.reason);
    } catch (err) {
      fail(err as Error);
      return;
    }
    answered.get(r.correlationId)?.();
  });
  for (let start = first; start < first + total; start += chunk) {
    const items = [];
    for (let n = start; n < Math.min(start + chunk, first + total); n++) items.push({ query: query(subjectOf(n)), correlationId: String(n) });
    const done = new Promise<void>((resolve) => answered.set(`m${start}`, resolve));
    call.write({ parent: PARENT, query: undefined, correlationId: `m${start}`, consistency: undefined, items });
    await Promise.race([done, failed]);
  }
  call.end();
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (spawnSync('valgrind', ['--version']).status !== 0) throw new Error('valgrind is not installed (apt-get install valgrind)');
  const seeded = path.join(SEEDED_DIR, `${o.database}-${SUBJECTS}`);
  if (!existsSync(path.join(seeded, 'bench-checks-seed.json'))) {
    throw new Error(`no seeded tenant in ${seeded}: run \`npm run bench:checks -- --quick --db ${o.database} --reuse\` once`);
  }
  const root = o.root ?? PROJECT_ROOT;
  if (!o.root) ensureBuilt(log);
  const work = mkdtempSync(path.join(os.tmpdir(), 'consent-check-instructions-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['CONFIG_FILE', 'DATABASE_URL', 'KEYSTORE_URL', 'ROOT_KEYS_JSON', 'ROOT_KEYS_FILE', 'RUN_MIGRATIONS', 'AUTH_MODE', 'METRICS_PORT']) delete env[key];
  // SQLite: a copy of the seeded folder (its files and development root key); MariaDB: the seeded
  // database, only read (the root key lives in the seeded folder, copied too).
  const dataDir = path.join(work, 'data');
  cpSync(seeded, dataDir, { recursive: true });
  Object.assign(env, {
    PORT: String(port),
    BIND_ADDRESS: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: SERVER_LOG_LEVEL,
    // As bench:checks: the per-principal limit would refuse what the unlimited no-op gets.
    RATE_LIMIT_PER_SECOND: '1000000',
    RATE_LIMIT_BURST: '1000000',
    DECISION_CACHE_STALENESS_MS: '60000',
    DATABASE_CALL_TIMEOUT_MS: '600000',
    DATABASE_ACQUIRE_TIMEOUT_MS: '600000',
    DATABASE_CONNECT_TIMEOUT_MS: '600000',
    DATABASE_BACKGROUND_TIMEOUT_MS: '3600000',
  });
  if (o.database === 'mariadb') env.DATABASE_URL = mariadbUrl(`consent_bench_checks_${SUBJECTS}`);
  const server = new CountedServer(`127.0.0.1:${port}`, path.join(work, 'callgrind.out'), root, env, true);
  const clients = createClients(server.address);
  let markdown = '';
  try {
    log(`server under callgrind: pid ${server.pid}, ${server.address}, build ${root}`);
    const deadline = Date.now() + 600_000;
    for (;;) {
      if (await healthCheck(clients.health, 5000).catch(() => false)) break;
      if (Date.now() > deadline) throw new Error('the server did not answer within 10 minutes');
      await new Promise((r) => setTimeout(r, 1000));
    }
    const health = () =>
      healthCheck(clients.health, DEADLINE_MS).then((ok) => {
        if (!ok) throw new Error('Health/Check did not answer SERVING');
      });
    log(`cache warm-up: ${SUBJECTS} subjects in batches of 1,000; code warm-up: 3,000 of each kind ...`);
    await runCalls(SUBJECTS / 1000, 2, (b) => checkBatch(clients, b * 1000, 1000));
    await runCalls(3000, o.inFlight, health);
    await runCalls(3000, o.inFlight, (n) => checkOne(clients, n));
    await checkStream(clients, 0, 2000, 500);
    await checkPackedStream(clients, 0, 2000, 500);
    server.cut();
    type Window = { name: string; count: InstructionCount; items: number };
    const windows: Window[] = [];
    const measure = async (name: string, items: number, work: () => Promise<unknown>) => {
      log(`${name} ...`);
      await work();
      const w = { name, count: server.cut(), items };
      windows.push(w);
      return w;
    };
    // Health/Check and CheckConsent alternate, so neither is always the one after some other work.
    const pairs: Array<[Window, Window]> = [];
    for (let round = 0; round < o.rounds; round++) {
      const noop = await measure(`Health/Check (round ${round + 1})`, o.calls, () => runCalls(o.calls, o.inFlight, health));
      const check = await measure(`CheckConsent (round ${round + 1})`, o.calls, () => runCalls(o.calls, o.inFlight, (n) => checkOne(clients, (round + 1) * 100_000 + n)));
      pairs.push([noop, check]);
    }
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idle = server.cut();
    const batches = Math.max(1, Math.round(o.calls / 1000));
    await measure('CheckConsentBatch (1,000 per call), per decision', batches * 1000, () => runCalls(batches, 2, (b) => checkBatch(clients, 900_000 + b * 1000, 1000)));
    await measure('StreamCheckConsent (chunks of 500), per decision', o.calls, () => checkStream(clients, 950_000, o.calls, 500));
    await measure('StreamCheckConsent, packed (500 items per message), per decision', o.calls, () => checkPackedStream(clients, 970_000, o.calls, 500));
    const noopMain = pairs.reduce((sum, [n]) => sum + n.count.main / n.items, 0) / pairs.length;
    const noopAll = pairs.reduce((sum, [n]) => sum + n.count.all / n.items, 0) / pairs.length;
    const row = (w: Window) => {
      const main = w.count.main / w.items;
      const all = w.count.all / w.items;
      return `| ${w.name} | ${fmt(main)} | ${(main / noopMain).toFixed(2)}x | ${fmt(all)} | ${(all / noopAll).toFixed(2)}x |`;
    };
    const ratios = pairs.map(([n, c]) => `${(c.count.main / c.items / (n.count.main / n.items)).toFixed(2)}x`).join(', ');
    const lines = [
      `Run ${new Date().toISOString()}: \`npx tsx bench/check-instructions.ts ${process.argv.slice(2).join(' ')}\`; ${o.database === 'sqlite' ? 'SQLite' : 'MariaDB'}, 20,000 subjects, decision cache warm; server build ${root}; server under valgrind callgrind.`,
      '',
      '| window | main thread: instructions per call or decision | vs Health/Check (mean of the rounds) | all threads | vs Health/Check |',
      '|---|--:|--:|--:|--:|',
      ...windows.map(row),
      '',
      `CheckConsent vs the Health/Check just before it, main thread: ${ratios}. ${o.calls} calls per unary window at ${o.inFlight} in flight. Background when idle: ${fmt(idle.main / IDLE_MS)} instructions per ms on the main thread, ${fmt(idle.all / IDLE_MS)} in all threads (in every window, in proportion to its length).`,
    ];
    markdown = `${lines.join('\n')}\n`;
  } finally {
    clients.close();
    await server.stop();
    for (const f of readdirSync(work)) if (f.startsWith('callgrind.out')) rmSync(path.join(work, f), { force: true });
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(markdown);
  if (o.out) writeFileSync(o.out, markdown);
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    log(`check-instructions: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
