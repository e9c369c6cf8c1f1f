import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Channel, PurposeCategory } from '../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, RecordConsentRequest } from '../src/gen/consent/v1/consent';
import { CreatePurposeRequest, PublishNoticeRequest } from '../src/gen/consent/v1/purpose';
import { CreateTenantRequest } from '../src/gen/consent/v1/tenant';
import { Clients, createClients, healthCheck, unary } from './clients';
import { CountedServer, runCalls } from './callgrind-server';
import { dropMariaDb, ensureBuilt, mariadbUrl, PROJECT_ROOT, resetMariaDb, freePort, SERVER_LOG_LEVEL } from './server-process';

/**
 * `npx tsx bench/write-instructions.ts [--db sqlite|mariadb] [--root DIR] [--calls N] [--warmup N] [--in-flight 16,256] [--out FILE] [--keep DIR]`
 *
 * The issue-14 ratio "server CPU per durable write / server CPU per no-op RPC" counted in
 * instructions rather than timed: the server runs under valgrind's callgrind, which counts every
 * instruction the server process executes (all its threads: the main thread, V8's GC and compiler
 * helpers, libuv's pool), and `callgrind_control --dump` cuts the count at the edges of each
 * window. The count of a window does not depend on what else the machine runs, so a change to
 * the write path can be measured on a machine shared with other work, where bench:writes' timed
 * windows vary by 2-3x from run to run. What it does not see: time in the kernel (socket and
 * file system calls, fsync), cache misses and stalls (an instruction is not a cycle), and
 * mariadbd's own work. Under valgrind the server runs ~50x slower, so batches of writes form as
 * they would under heavy load: every window uses a fixed number of calls in flight. Caches with a
 * time to live expire ~50x more often per call than at full speed: the subject-key and keyring
 * caches are given 50x their default TTL here, but the tenant row's 0.5 s (fixed in
 * tenant-service.ts) is not configurable, so writes pay some extra tenant reads they would not at
 * full speed, and the slower the machine, the more: compare builds in runs made at the same time.
 *
 * Windows per in-flight level: N Health/Check calls, an idle pause (the background work per
 * second: health probes, the decision cache following the logs, which the other windows are
 * charged for by their length), N RecordConsent opt-ins (80% new people, 20% a person written
 * before, as bench:writes). The warm-up runs both kinds first, so V8 has compiled the hot code.
 */

interface Options {
  database: 'sqlite' | 'mariadb';
  root: string | null;
  calls: number;
  warmup: number;
  inFlight: number[];
  out: string | null;
  /** Keep callgrind's files of every window here (callgrind_annotate reads them). */
  keep: string | null;
}

const USAGE = `usage: npx tsx bench/write-instructions.ts [--db sqlite|mariadb] [--root DIR] [--calls N] [--warmup N] [--in-flight 16,256] [--out FILE] [--keep DIR]
  --db         the database (default sqlite)
  --root       run the server built in DIR (DIR/dist/src/main.js) instead of this checkout's dist/
  --calls      calls per window (default 2000)
  --warmup     calls of each kind before the windows (default 3000)
  --in-flight  calls in flight, a window pair per value (default 16,256)
  --out        also write the markdown report to FILE
  --keep       keep callgrind's file of every window in DIR (callgrind_annotate DIR/<window>.callgrind)`;

const SERVICE_DB = 'consent_bench_instructions';
const IDLE_MS = 10_000;
const log = (line: string) => process.stderr.write(`${line}\n`);

function parseArgs(argv: string[]): Options {
  const o: Options = { database: 'sqlite', root: null, calls: 2000, warmup: 3000, inFlight: [16, 256], out: null, keep: null };
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
    else if (arg === '--warmup') o.warmup = count(value(), '--warmup');
    else if (arg === '--in-flight') o.inFlight = value().split(',').map((v) => count(v, '--in-flight'));
    else if (arg === '--out') o.out = path.resolve(value());
    else if (arg === '--keep') o.keep = path.resolve(value());
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else usage(`unknown argument "${arg}"`);
  }
  return o;
}

function usage(message: string): never {
  process.stderr.write(`write-instructions: ${message}\n${USAGE}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (spawnSync('valgrind', ['--version']).status !== 0) throw new Error('valgrind is not installed (apt-get install valgrind)');
  const root = o.root ?? PROJECT_ROOT;
  if (!o.root) ensureBuilt(log);
  const work = mkdtempSync(path.join(os.tmpdir(), 'consent-bench-instructions-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['CONFIG_FILE', 'DATABASE_URL', 'KEYSTORE_URL', 'ROOT_KEYS_JSON', 'ROOT_KEYS_FILE', 'RUN_MIGRATIONS', 'AUTH_MODE']) delete env[key];
  // Timeouts sized for a server running ~50x slower than usual; everything else as configured by default.
  Object.assign(env, {
    PORT: String(port),
    BIND_ADDRESS: '127.0.0.1',
    DATA_DIR: path.join(work, 'data'),
    LOG_LEVEL: SERVER_LOG_LEVEL,
    DATABASE_CALL_TIMEOUT_MS: '600000',
    DATABASE_ACQUIRE_TIMEOUT_MS: '600000',
    DATABASE_CONNECT_TIMEOUT_MS: '600000',
    DATABASE_BACKGROUND_TIMEOUT_MS: '3600000',
    SUBJECT_KEY_CACHE_TTL_MS: '3000000',
  });
  if (o.database === 'mariadb') {
    await resetMariaDb(SERVICE_DB);
    env.DATABASE_URL = mariadbUrl(SERVICE_DB);
  }
  const server = new CountedServer(`127.0.0.1:${port}`, path.join(work, 'callgrind.out'), root, env);
  const clients = createClients(server.address);
  const lines: string[] = [];
  try {
    log(`server under callgrind: pid ${server.pid}, ${server.address}, build ${root}`);
    const deadline = Date.now() + 600_000;
    for (;;) {
      if (await healthCheck(clients.health, 5000).catch(() => false)) break;
      if (Date.now() > deadline) throw new Error('the server did not answer within 10 minutes');
      await new Promise((r) => setTimeout(r, 1000));
    }
    const target = await setUp(clients);
    const health = () => healthCheck(clients.health, 600_000).then((ok) => {
      if (!ok) throw new Error('Health/Check did not answer SERVING');
    });
    let subjects = 0;
    const people: number[] = [];
    let requests = 0;
    const write = () => {
      // 80% new people, 20% one written before (a deterministic choice: the same work in every run).
      const repeat = people.length > 0 && requests % 5 === 4;
      const person = repeat ? people[(requests * 7919) % people.length] : subjects++;
      if (!repeat) people.push(person);
      return unary(clients.consent, clients.consent.recordConsent, writeRequest(target, person, requests++), 600_000);
    };
    const maxInFlight = Math.max(...o.inFlight);
    log(`warm-up: ${o.warmup} Health/Check and ${o.warmup} RecordConsent at ${maxInFlight} in flight ...`);
    await runCalls(o.warmup, maxInFlight, health);
    await runCalls(o.warmup, maxInFlight, write);
    if (o.keep) mkdirSync(o.keep, { recursive: true });
    server.cut(o.keep ? { dir: o.keep, name: 'warmup' } : undefined);
    const rows: Array<{ inFlight: number; noop: number; write: number; idlePerMs: number; noopMs: number; writeMs: number }> = [];
    for (const inFlight of o.inFlight) {
      log(`${inFlight} in flight: ${o.calls} Health/Check ...`);
      const noopMs = await runCalls(o.calls, inFlight, health);
      const noop = server.cut(o.keep ? { dir: o.keep, name: `noop-${inFlight}` } : undefined).all;
      await new Promise((r) => setTimeout(r, IDLE_MS));
      const idle = server.cut(o.keep ? { dir: o.keep, name: `idle-${inFlight}` } : undefined).all;
      log(`${inFlight} in flight: ${o.calls} RecordConsent ...`);
      const writeMs = await runCalls(o.calls, inFlight, write);
      const written = server.cut(o.keep ? { dir: o.keep, name: `write-${inFlight}` } : undefined).all;
      rows.push({ inFlight, noop, write: written, idlePerMs: idle / IDLE_MS, noopMs, writeMs });
      log(`  no-op ${fmt(noop / o.calls)} instructions per call, write ${fmt(written / o.calls)} per call, ratio ${(written / noop).toFixed(2)}x`);
    }
    lines.push(
      `## Write path in instructions (bench/write-instructions.ts)`,
      '',
      `Run ${new Date().toISOString()}: \`npx tsx bench/write-instructions.ts ${process.argv.slice(2).join(' ')}\`; ${o.database === 'sqlite' ? 'SQLite' : 'MariaDB'}, server build ${root}; ${o.calls} calls per window after ${o.warmup} of each kind; server under valgrind callgrind (all threads).`,
      '',
      '| in flight | Health/Check: instructions per call | RecordConsent: instructions per write | write / no-op | the same without the idle background (per ms of window) |',
      '|--:|--:|--:|--:|--:|',
    );
    for (const r of rows) {
      const noop = (r.noop - r.idlePerMs * r.noopMs) / o.calls;
      const write = (r.write - r.idlePerMs * r.writeMs) / o.calls;
      lines.push(`| ${r.inFlight} | ${fmt(r.noop / o.calls)} | ${fmt(r.write / o.calls)} | ${(r.write / r.noop).toFixed(2)}x | ${fmt(noop)} / ${fmt(write)}: ${(write / noop).toFixed(2)}x |`);
    }
    lines.push('', `Background when idle: ${fmt(rows[0]?.idlePerMs ?? 0)} instructions per ms.`);
  } finally {
    clients.close();
    await server.stop();
    if (o.database === 'mariadb') await dropMariaDb(SERVICE_DB).catch(() => undefined);
    for (const f of readdirSync(work)) if (f.startsWith('callgrind.out')) rmSync(path.join(work, f), { force: true });
    rmSync(work, { recursive: true, force: true });
  }
  const markdown = `${lines.join('\n')}\n`;
  process.stdout.write(markdown);
  if (o.out) writeFileSync(o.out, markdown);
}

interface Target {
  parent: string;
  purpose: string;
  notice: string;
}

async function setUp(clients: Clients): Promise<Target> {
  const parent = 'tenants/bench';
  await unary(clients.tenants, clients.tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId: 'bench', displayName: 'Instruction count', requestId: 'instr-tenant' }), 600_000);
  await unary(
    clients.purposes,
    clients.purposes.createPurpose,
    CreatePurposeRequest.fromPartial({ parent, purposeId: 'newsletter', purpose: { displayName: 'Newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING }, requestId: 'instr-purpose' }),
    600_000,
  );
  const purpose = `${parent}/purposes/newsletter`;
  const published = await unary(
    clients.purposes,
    clients.purposes.publishNotice,
    PublishNoticeRequest.fromPartial({ parent: purpose, language: 'en', text: 'We would like to send you our newsletter. You can opt out at any time by replying STOP.', requestId: 'instr-notice' }),
    600_000,
  );
  if (!published.notice?.name) throw new Error('PublishNotice returned no notice name');
  return { parent, purpose, notice: published.notice.name };
}

/** An opt-in as bench:writes sends it (bench/write-jobs.ts). */
function writeRequest(t: Target, person: number, n: number): RecordConsentRequest {
  return RecordConsentRequest.fromPartial({
    parent: t.parent,
    subjectIdentifier: { kind: { $case: 'phoneNumber', value: `+49151${String(person).padStart(8, '0')}` }, defaultRegion: '' },
    purpose: t.purpose,
    channel: n % 2 === 0 ? Channel.CHANNEL_WHATSAPP : Channel.CHANNEL_SMS,
    kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
    method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
    notice: t.notice,
    evidence: { sourceIp: `198.51.100.${1 + (person % 250)}`, userAgent: 'Mozilla/5.0 (consent-ledger write benchmark)', pageUrl: 'https://shop.example/newsletter/sign-up' },
    jurisdiction: 'DE',
    requestId: `i-${n}`,
  });
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    log(`write-instructions: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
