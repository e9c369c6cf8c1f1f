/**
 * Audit-log benchmarks (npm run bench:audit), each against its baseline in the same run, on SQLite
 * and MariaDB:
 *
 * 1. Proof cost at scale: inclusion and consistency proofs from a tenant log of 1,000,000 entries
 *    against one of 1,000 (--quick: 100,000), each log in its own fresh database. The logs are
 *    bulk-loaded (the rows AuditLog.append would write, computed in memory and inserted with
 *    multi-row INSERTs), checked against AuditLog.root and the RFC 9162 verifiers, and every timed
 *    proof is verified afterwards.
 * 2. Opt-in write throughput with the audit append against the same recorder with a no-op audit
 *    trail, both wired by hand identically, each on its own fresh database.
 *
 * Everything runs in this process against databases on this machine (MariaDB on 127.0.0.1 only);
 * every database is dropped at the end, and the run stops by itself (each phase has a time budget,
 * and a watchdog ends the process if the whole run overshoots).
 *
 *   npm run bench:audit -- [--db sqlite|mariadb|both] [--quick]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { DataSource, QueryRunner } from 'typeorm';
import { backgroundLoad, CpuMeter, findDatabasePid } from './cpu';
import { benchDatabase } from './databases';
import { RatioRow } from './report';
import { LatencyRecorder, seededRandom } from './stats';
import { openDatabase, openKeyStore } from '../src/app';
import { AuditLog } from '../src/audit/audit-log';
import { canonicalJson, sha256Hex } from '../src/shared/hashing';
import { leafHash, nodeHash, rootFromLeafHashes, split, verifyConsistency, verifyInclusion } from '../src/audit/merkle';
import { Config, loadConfig } from '../src/config/config';
import { KeyManager } from '../src/crypto/key-manager';
import { loadRootKeys } from '../src/crypto/root-key-provider';
import { systemClock } from '../src/domain/clock';
import { ConsentRecorder } from '../src/domain/consent-recorder';
import { ConsentWriter } from '../src/domain/consent-writer';
import { AuditEntry, AuditTrail } from '../src/audit/audit-types';
import { TxContext } from '../src/shared/unit-of-work';
import { DEVELOPMENT_PRINCIPAL } from '../src/domain/principal';
import { PurposeService } from '../src/domain/purpose-service';
import { SubjectDirectory } from '../src/domain/subject-directory';
import { TenantService } from '../src/domain/tenant-service';
import { createLogger } from '../src/logging/logger';
import { TypeormKeyStore } from '../src/storage/keystore/typeorm-key-store';
import { TypeormAuditRepository } from '../src/storage/repositories/audit-repository';
import { TypeormChangeFeedRepository } from '../src/storage/repositories/change-feed-repository';
import { TypeormConsentRepository } from '../src/storage/repositories/consent-repository';
import { TypeormPurposeRepository } from '../src/storage/repositories/purpose-repository';
import { TypeormSubjectRepository } from '../src/storage/repositories/subject-repository';
import { TypeormTenantRepository } from '../src/storage/repositories/tenant-repository';
import { TypeormTransactionRunner } from '../src/storage/transaction-runner';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const dbArg = args.includes('--db') ? args[args.indexOf('--db') + 1] : 'both';

/** Proof cost: log sizes, proofs timed per workload and scale, and the time budget of each such run. */
const SMALL_LOG = 1_000;
const LARGE_LOG = quick ? 100_000 : 1_000_000;
const PROOFS = quick ? 100 : 300;
const PROOF_BUDGET_MS = quick ? 15_000 : 60_000;
/** Bulk load: rows per INSERT statement, statements per transaction. */
const ROWS_PER_STATEMENT = 1_000;
const STATEMENTS_PER_TX = 50;

/** Write throughput: opt-ins per measured phase, how many in flight, and each phase's time budget. */
const WRITES = quick ? 300 : 2_000;
const EXISTING_WRITES = quick ? 300 : 1_000;
const SERIAL_WRITES = quick ? 100 : 300;
const IN_FLIGHT = 16;
const WRITE_BUDGET_MS = quick ? 30_000 : 120_000;
/** Write workloads run in rounds, alternating baseline and audited recorder. */
const ROUNDS = quick ? 1 : 2;
/** Before each measured run, wait at most this long for other processes to go quiet. */
const QUIET_WAIT_MS = quick ? 0 : 5_000;

/** The whole run ends by itself even if something hangs: the watchdog drops the databases and exits. */
const WATCHDOG_MS = (quick ? 5 : 15) * 60_000 * (dbArg === 'both' ? 1 : 0.6);

type Row = RatioRow;

// ---------------------------------------------------------------------------------------------
// Throwaway databases, dropped at the end, on Ctrl-C and when the watchdog fires
// ---------------------------------------------------------------------------------------------

const cleanups = new Set<() => Promise<void>>();

async function cleanupAll(): Promise<void> {
  for (const cleanup of [...cleanups]) {
    cleanups.delete(cleanup);
    await cleanup().catch((err: Error) => console.error(`cleanup failed: ${err.message}`));
  }
}

/** Set once a signal or the watchdog stops the run: the main flow then leaves the exit to it. */
let stopping = false;

function onExitSignal(reason: string, code: number): void {
  if (stopping) return;
  stopping = true;
  console.error(`\n${reason}: dropping the benchmark databases`);
  const force = setTimeout(() => process.exit(code), 15_000);
  force.unref();
  void cleanupAll().finally(() => process.exit(code));
}

interface Throwaway {
  config: Config['database'] & object;
  /** A fresh temporary folder (DATA_DIR: the SQLite files, the development root key). */
  dataDir: string;
  /** Registers a data source to be closed before the database is dropped. */
  own(dataSource: DataSource): DataSource;
  /** Closes the owned data sources, removes the folder, drops the database (and its `_keys` twin). Idempotent. */
  drop(): Promise<void>;
}

/** A fresh database (benchDatabase) with its folder, registered for cleanup; null if unreachable. */
async function throwaway(kind: string, label: string): Promise<Throwaway | null> {
  const env = await benchDatabase(kind, label);
  if (!env) return null;
  if (env.config.kind === 'mysql' && !isLoopback(env.config.url)) {
    await env.drop();
    throw new Error(`refusing to benchmark a MariaDB that is not on 127.0.0.1 (${new URL(env.config.url).host})`);
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'consent-bench-audit-'));
  const owned: DataSource[] = [];
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    cleanups.delete(drop);
    // Closing the connections first ends any open transaction, which would block DROP DATABASE.
    for (const ds of owned) if (ds.isInitialized) await ds.destroy().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    await env.drop();
  };
  cleanups.add(drop);
  return { config: env.config, dataDir, own: (ds) => (owned.push(ds), ds), drop };
}

function isLoopback(url: string): boolean {
  return new URL(url).hostname === '127.0.0.1';
}

function baseConfig(dataDir: string, database: Config['database']): Config {
  const base = loadConfig({ PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'error' });
  const keyStore: Config['keyStore'] =
    database.kind === 'sqlite' ? { kind: 'sqlite', file: path.join(dataDir, 'keys.sqlite') } : { ...database, url: `${database.url}_keys` };
  return { ...base, database, keyStore };
}

const quietLogger = () => createLogger('error', new PassThrough());

// ---------------------------------------------------------------------------------------------
// Statement counting: every TypeORM query of a data source goes through its query runner's query()
// ---------------------------------------------------------------------------------------------

const statementCounts = new WeakMap<DataSource, { n: number }>();
const patchedRunners = new WeakSet<object>();

/** Counts the statements `dataSource` sends (SELECT, INSERT, BEGIN, COMMIT...) from now on. */
async function countStatements(dataSource: DataSource): Promise<{ n: number }> {
  const runner = dataSource.createQueryRunner();
  const proto = Object.getPrototypeOf(runner) as { query: QueryRunner['query'] };
  await runner.release();
  if (!patchedRunners.has(proto)) {
    patchedRunners.add(proto);
    const original = proto.query;
    proto.query = function (this: QueryRunner, ...rest: Parameters<QueryRunner['query']>) {
      const counter = statementCounts.get(this.connection);
      if (counter) counter.n++;
      return original.apply(this, rest);
    } as QueryRunner['query'];
  }
  const counter = { n: 0 };
  statementCounts.set(dataSource, counter);
  return counter;
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = Date.now();
  const kinds = dbArg === 'both' ? ['sqlite', 'mariadb'] : [dbArg];
  if (!kinds.every((k) => k === 'sqlite' || k === 'mariadb')) throw new Error(`--db must be sqlite, mariadb or both (got "${dbArg}")`);
  const out: string[] = [
    `## Audit log benchmark (${new Date().toISOString()})`,
    '',
    `Machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}${quick ? ' (quick run)' : ''}`,
    '',
  ];
  for (const kind of kinds) {
    const kindStarted = Date.now();
    meter = new CpuMeter(undefined, kind === 'mariadb' ? findDatabasePid() : null);
    progress(`${kind}: starting`);
    const proofs = await proofRows(kind);
    if (!proofs) {
      out.push(`### ${kind}: skipped (not reachable)`, '');
      continue;
    }
    const writes = await writeRows(kind);
    out.push(`### ${kind}`, '', `${proofs.version}.`, '', ...table([...proofs.rows, ...(writes?.rows ?? [])]), '');
    out.push(...[...proofs.notes, ...(writes?.notes ?? []), ...backgroundNote(kind)].map((n) => `- ${n}`));
    otherLoad.length = 0;
    out.push(`- ${kind} run: ${seconds(Date.now() - kindStarted)}.`, '');
  }
  out.push(`Total: ${seconds(Date.now() - started)}.`);
  console.log(out.join('\n'));
}

// ---------------------------------------------------------------------------------------------
// 1. Proof cost at scale
// ---------------------------------------------------------------------------------------------

/** A log's tree in memory: levels[L] holds the hashes of the complete subtrees of level L, 32 bytes each. */
interface MemTree {
  size: number;
  levels: Buffer[];
}

interface ProofSet {
  inclusionFull: Samples;
  inclusionWorst: Samples;
  consistency: Samples;
}

interface ScaleResult extends ProofSet {
  size: number;
  loadMs: number;
  worstSize: number;
  /** A SMALL_LOG-entry tenant in the same database as this log (large scale only). */
  neighbour: ProofSet | null;
}

interface Samples {
  count: number;
  medianUs: number;
  p99Us: number;
  statementsPerProof: number;
}

async function proofRows(kind: string): Promise<{ rows: Row[]; notes: string[]; version: string } | null> {
  const small = await proofScale(kind, 'audit_s', SMALL_LOG, false);
  if (!small) return null;
  const large = await proofScale(kind, 'audit_l', LARGE_LOG, true);
  if (!large) return null;
  const n = (x: number) => x.toLocaleString('en-US');
  const row = (workload: string, pick: (r: ProofSet) => Samples, sizes: (r: ScaleResult) => string): Row => {
    const a = pick(small.result);
    const b = pick(large.result);
    return {
      workload,
      baseline: `${sizes(small.result)}: ${proofCell(a)}`,
      measured: `${sizes(large.result)}: ${proofCell(b)}`,
      ratio: b.medianUs / a.medianUs,
      goal: 'ratio <= 3',
    };
  };
  const logs = `${n(LARGE_LOG)} vs ${n(SMALL_LOG)} entries`;
  const neighbour = large.result.neighbour!;
  const picks: Array<[string, (r: ProofSet) => Samples]> = [
    ['inclusion', (r) => r.inclusionFull],
    ['ragged inclusion', (r) => r.inclusionWorst],
    ['consistency', (r) => r.consistency],
  ];
  return {
    version: small.version,
    rows: [
      row(`inclusion proof, random index, tree_size = log size (${logs})`, (r) => r.inclusionFull, (r) => `n = ${n(r.size)}`),
      row(`inclusion proof, random index, tree_size = 2^k - 1 (every level ragged)`, (r) => r.inclusionWorst, (r) => `n = ${n(r.worstSize)}`),
      row(`consistency proof, random first < second <= log size (${logs})`, (r) => r.consistency, (r) => `n = ${n(r.size)}`),
    ],
    notes: [
      `Proofs: one at a time through AuditLog (TypeORM reads), ${n(PROOFS)} per workload and log after ${n(warmups())} untimed; median (p99) per proof, and statements sent per proof. Each log in its own fresh database. Every timed proof was verified afterwards with the RFC 9162 verifiers; AuditLog.root matched the root computed in memory.`,
      `The same ${n(SMALL_LOG)}-entry log as a second tenant inside the database that holds the ${n(LARGE_LOG)}-entry log (so the tables are equally large): ${picks
        .map(([name, pick]) => `${name} ${us(pick(neighbour).medianUs)} (large log ${(pick(large.result).medianUs / pick(neighbour).medianUs).toFixed(2)}x)`)
        .join(', ')}.`,
      `Bulk load (informational): ${n(SMALL_LOG)} entries in ${seconds(small.result.loadMs)}, ${n(LARGE_LOG)} entries in ${seconds(large.result.loadMs)} (${n(Math.round(LARGE_LOG / (large.result.loadMs / 1000)))} entries/s, with ${n(nodeCount(LARGE_LOG))} audit_nodes rows; ${n(ROWS_PER_STATEMENT)} rows per INSERT, ${STATEMENTS_PER_TX} INSERTs per transaction, ${kind === 'sqlite' ? 'one connection' : 'two connections'}).`,
    ],
  };
}

const warmups = () => Math.max(50, Math.ceil(PROOFS / 5));

function proofCell(s: Samples): string {
  const cut = s.count < PROOFS ? ` [only ${s.count} within the time budget]` : '';
  return `${us(s.medianUs)} (p99 ${us(s.p99Us)}), ${s.statementsPerProof.toFixed(1)} stmts${cut}`;
}

/** One log of `size` entries in a fresh database (and a small neighbour tenant): load, check, time the proofs, drop. */
async function proofScale(kind: string, label: string, size: number, withNeighbour: boolean): Promise<{ result: ScaleResult; version: string } | null> {
  const env = await throwaway(kind, label);
  if (!env) return null;
  try {
    const dataSource = env.own(await openDatabase(baseConfig(env.dataDir, env.config), quietLogger()));
    const version = await databaseVersion(dataSource);
    const tenantId = `audit-${size}`;
    progress(`${kind}: loading ${size.toLocaleString('en-US')} audit entries`);
    const loadStarted = Date.now();
    const tree = await bulkLoad(dataSource, tenantId, size);
    const loadMs = Date.now() - loadStarted;
    const neighbourTree = withNeighbour ? await bulkLoad(dataSource, 'audit-neighbour', SMALL_LOG) : null;
    progress(`${kind}: loaded in ${seconds(loadMs)}; letting the database settle`);
    await settle(dataSource);

    const log = new AuditLog(new TypeormTransactionRunner(dataSource), new TypeormAuditRepository());
    await sanityCheck(log, tenantId, tree);
    if (neighbourTree) await sanityCheck(log, 'audit-neighbour', neighbourTree);
    const counter = await countStatements(dataSource);
    progress(`${kind}: timing proofs on ${size.toLocaleString('en-US')} entries`);
    const proofs = await timeProofSet(log, counter, tenantId, tree);
    const neighbour = neighbourTree ? await timeProofSet(log, counter, 'audit-neighbour', neighbourTree) : null;
    return { result: { size, loadMs, ...proofs, worstSize: worstSize(size), neighbour }, version };
  } finally {
    await env.drop();
  }
}

let warmedUp = false;

/** The largest 2^k - 1 below `size`: a tree whose right border is incomplete at every level. */
const worstSize = (size: number) => 2 ** Math.floor(Math.log2(size)) - 1;

/** The three proof workloads on one tenant's log, indexes from a PRNG seeded by the log size. */
async function timeProofSet(log: AuditLog, counter: { n: number }, tenantId: string, tree: MemTree): Promise<ProofSet> {
  const { size } = tree;
  if (!warmedUp) {
    // The first log measured in the process also warms the JIT and TypeORM's caches: not on its clock.
    const random = seededRandom(1);
    for (let i = 0; i < 3 * warmups(); i++) {
      const second = 2 + Math.floor(random() * (size - 1));
      await (i % 2 === 0 ? log.inclusionProof(tenantId, Math.floor(random() * second), second) : log.consistencyProof(tenantId, 1 + Math.floor(random() * (second - 1)), second));
    }
    warmedUp = true;
  }
  const random = seededRandom(size);
  const inclusionAt = (treeSize: number) =>
    timeProofs(counter, () => {
      const index = Math.floor(random() * treeSize);
      return { run: () => log.inclusionProof(tenantId, index, treeSize), verify: (proof) => verifyInclusion(BigInt(index), BigInt(treeSize), memNode(tree, 0, index), proof, memRange(tree, 0, treeSize)) };
    });
  const inclusionFull = await inclusionAt(size);
  const inclusionWorst = await inclusionAt(worstSize(size));
  const consistency = await timeProofs(counter, () => {
    const second = 2 + Math.floor(random() * (size - 1));
    const first = 1 + Math.floor(random() * (second - 1));
    return {
      run: () => log.consistencyProof(tenantId, first, second),
      verify: (proof) => verifyConsistency(BigInt(first), BigInt(second), proof, memRange(tree, 0, first), memRange(tree, 0, second)),
    };
  });
  return { inclusionFull, inclusionWorst, consistency };
}

/**
 * Writes the rows AuditLog.append would have written for `size` entries: audit_entries, every
 * complete subtree in audit_nodes (level 0 = the leaves), and the head. Entries are shaped like
 * the ones ConsentRecorder appends for an opt-in. Returns the tree, kept in memory as reference.
 */
async function bulkLoad(dataSource: DataSource, tenantId: string, size: number): Promise<MemTree> {
  const loadStarted = Date.now();
  const writer = await BulkWriter.open(dataSource);
  try {
    // The filter columns a later migration added are filled when present; the insert names its columns.
    const present = new Set((await writer.runner.getTable('audit_entries'))?.columns.map((c) => c.name) ?? []);
    const extra = ['entry_type', 'subject_id', 'purpose_id', 'principal', 'entry_time'].filter((c) => present.has(c));
    const entryColumns = ['tenant_id', 'seq', 'entry_json', 'leaf_hash', ...extra];
    const leaves = Buffer.alloc(size * 32);
    const t0 = Date.UTC(2026, 0, 1);
    const noticeSha256 = sha256Hex('We would like to send you our newsletter by SMS.');
    for (let from = 0; from < size; from += ROWS_PER_STATEMENT) {
      const count = Math.min(ROWS_PER_STATEMENT, size - from);
      const random = randomBytes(count * 112).toString('hex');
      const params: unknown[] = [];
      for (let j = 0; j < count; j++) {
        const seq = from + j;
        const r = random.slice(j * 224, (j + 1) * 224);
        const time = t0 + seq * 50;
        const entry: AuditEntry = {
          type: 'CONSENT_EVENT_OPT_IN',
          time,
          principal: DEVELOPMENT_PRINCIPAL.id,
          subject: r.slice(0, 32),
          purpose: 'marketing',
          channel: 'SMS',
          noticeSha256,
          payloadSha256: r.slice(32, 96),
          ref: r.slice(96, 128),
        };
        // The entry as AuditLog.append hashes it: canonicalJson({ ...entry, seq, tenant }), with the
        // consent-event fields the entry carries in the version under work. Keys are listed in
        // sorted order, so JSON.stringify gives canonicalJson's bytes at a quarter of its cost
        // (checked against canonicalJson on the first entry of every statement).
        const canonical = {
          channel: entry.channel,
          eventTime: time,
          expireTime: time + 730 * 86_400_000,
          noticeSha256,
          payloadSha256: entry.payloadSha256,
          principal: entry.principal,
          purpose: entry.purpose,
          recordSha256: r.slice(128, 192),
          ref: entry.ref,
          seq,
          subject: entry.subject,
          tenant: tenantId,
          time,
          type: entry.type,
        };
        const json = JSON.stringify(canonical);
        if (j === 0 && json !== canonicalJson({ ...entry, ...canonical })) throw new Error(`bulk load: entry ${seq} is not in canonical form`);
        const hash = leafHash(Buffer.from(json, 'utf8'));
        hash.copy(leaves, seq * 32);
        params.push(tenantId, seq, json, hash.toString('hex'));
        for (const c of extra) {
          params.push(c === 'entry_type' ? entry.type : c === 'subject_id' ? entry.subject : c === 'purpose_id' ? entry.purpose : c === 'principal' ? entry.principal : entry.time);
        }
      }
      await writer.insert('audit_entries', entryColumns, count, params);
    }
    if (size >= 100_000) progress(`  audit_entries written (${seconds(Date.now() - loadStarted)}); audit_nodes next`);
    // Every complete subtree, level by level (primary-key order): level L index i covers leaves [i*2^L, (i+1)*2^L).
    const levels: Buffer[] = [leaves];
    for (let level = 0; size >> level > 0; level++) {
      const count = Math.floor(size / 2 ** level);
      if (level > 0) {
        const below = levels[level - 1];
        const hashes = Buffer.alloc(count * 32);
        for (let i = 0; i < count; i++) nodeHash(below.subarray(64 * i, 64 * i + 32), below.subarray(64 * i + 32, 64 * i + 64)).copy(hashes, 32 * i);
        levels.push(hashes);
      }
      for (let from = 0; from < count; from += ROWS_PER_STATEMENT) {
        const n = Math.min(ROWS_PER_STATEMENT, count - from);
        const params: unknown[] = [];
        for (let i = from; i < from + n; i++) params.push(tenantId, level, i, levels[level].toString('hex', 32 * i, 32 * i + 32));
        await writer.insert('audit_nodes', ['tenant_id', 'level', 'idx', 'hash'], n, params);
      }
    }
    await writer.insert('audit_heads', ['tenant_id', 'size'], 1, [tenantId, size]);
    await writer.finish();
    return { size, levels };
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/**
 * Multi-row INSERTs, STATEMENTS_PER_TX per transaction, each connection ("lane") with one
 * statement in flight while the next is built. MariaDB gets two lanes, so both cores work
 * (statements alternate between them); better-sqlite3 is synchronous and single-connection.
 */
class BulkWriter {
  private readonly sql = new Map<string, string>();
  private next = 0;

  private constructor(private readonly lanes: Lane[]) {}

  static async open(dataSource: DataSource): Promise<BulkWriter> {
    const lanes: Lane[] = [];
    for (let i = 0; i < (dataSource.options.type === 'better-sqlite3' ? 1 : 2); i++) {
      const runner = dataSource.createQueryRunner();
      await runner.connect();
      lanes.push(new Lane(runner));
    }
    return new BulkWriter(lanes);
  }

  get runner(): QueryRunner {
    return this.lanes[0].runner;
  }

  async insert(table: string, columns: string[], rows: number, params: unknown[]): Promise<void> {
    const key = `${table}:${columns.length}:${rows}`;
    let sql = this.sql.get(key);
    if (!sql) {
      const tuple = `(${columns.map(() => '?').join(', ')})`;
      sql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')}`;
      this.sql.set(key, sql);
    }
    await this.lanes[this.next++ % this.lanes.length].send(sql, params);
  }

  async finish(): Promise<void> {
    for (const lane of this.lanes) await lane.commit();
    for (const lane of this.lanes) await lane.runner.release();
  }

  async abort(): Promise<void> {
    for (const lane of this.lanes) await lane.abort();
  }
}

class Lane {
  private pending: Promise<unknown> | null = null;
  private inTransaction = 0;

  constructor(readonly runner: QueryRunner) {}

  async send(sql: string, params: unknown[]): Promise<void> {
    await this.drain();
    if (this.inTransaction === 0) await this.runner.startTransaction();
    this.pending = this.runner.query(sql, params);
    // Keep the rejection observed until drain() awaits it.
    this.pending.catch(() => undefined);
    if (++this.inTransaction === STATEMENTS_PER_TX) await this.commit();
  }

  async commit(): Promise<void> {
    await this.drain();
    if (this.inTransaction > 0) await this.runner.commitTransaction();
    this.inTransaction = 0;
  }

  async abort(): Promise<void> {
    await this.drain().catch(() => undefined);
    if (this.runner.isTransactionActive) await this.runner.rollbackTransaction().catch(() => undefined);
    await this.runner.release().catch(() => undefined);
  }

  private async drain(): Promise<void> {
    const pending = this.pending;
    this.pending = null;
    if (pending) await pending;
  }
}

function nodeCount(size: number): number {
  let total = 0;
  for (let level = 0; Math.floor(size / 2 ** level) > 0; level++) total += Math.floor(size / 2 ** level);
  return total;
}

function memNode(tree: MemTree, level: number, index: number): Buffer {
  return tree.levels[level].subarray(32 * index, 32 * index + 32);
}

/** MTH of leaves [start, end) from the in-memory subtrees: the same recursion AuditLog.rangeHash runs on rows. */
function memRange(tree: MemTree, start: number, end: number): Buffer {
  const width = end - start;
  if ((width & (width - 1)) === 0 && start % width === 0) return memNode(tree, Math.log2(width), start / width);
  const k = split(width);
  return nodeHash(memRange(tree, start, start + k), memRange(tree, start + k, end));
}

/** Fails loudly unless the stored log is the tree built in memory and proofs from it verify. */
async function sanityCheck(log: AuditLog, tenantId: string, tree: MemTree): Promise<void> {
  const { size } = tree;
  const fail = (what: string) => {
    throw new Error(`audit log sanity check failed (tenant ${tenantId}, ${size} entries): ${what}`);
  };
  if ((await log.size(tenantId)) !== size) fail(`AuditLog.size is ${await log.size(tenantId)}`);
  const root = await log.root(tenantId, size);
  if (!root.equals(memRange(tree, 0, size))) fail('AuditLog.root differs from the root computed in memory');
  // The in-memory levels against the RFC 6962 definition over the leaves (O(n); skipped for huge logs).
  if (size <= 200_000) {
    const leaves = Array.from({ length: size }, (_, i) => memNode(tree, 0, i));
    if (!rootFromLeafHashes(leaves).equals(root)) fail('the root differs from MTH over the leaf hashes');
  }
  const index = Math.floor(size * 0.7);
  const [entry] = await log.entries(tenantId, index, 1);
  if (!entry || entry.seq !== index) fail(`entry ${index} not found`);
  const leaf = leafHash(Buffer.from(entry.entryJson, 'utf8'));
  if (leaf.toString('hex') !== entry.leafHash || !leaf.equals(memNode(tree, 0, index))) fail(`leaf hash of entry ${index} does not match its JSON`);
  verifyInclusion(BigInt(index), BigInt(size), leaf, await log.inclusionProof(tenantId, index, size), root);
  const first = Math.floor(size / 3) + 1;
  const firstRoot = await log.root(tenantId, first);
  if (!firstRoot.equals(memRange(tree, 0, first))) fail(`AuditLog.root at ${first} differs from memory`);
  verifyConsistency(BigInt(first), BigInt(size), await log.consistencyProof(tenantId, first, size), firstRoot, root);
}

/** Times PROOFS proofs one at a time (after a few untimed), then verifies every one of them. */
async function timeProofs(
  counter: { n: number },
  next: () => { run: () => Promise<Buffer[]>; verify: (proof: Buffer[]) => void },
): Promise<Samples> {
  for (let i = 0; i < warmups(); i++) await next().run();
  const recorder = new LatencyRecorder();
  const done: Array<{ proof: Buffer[]; verify: (proof: Buffer[]) => void }> = [];
  let statements = 0;
  await measured(async () => {
    const deadline = Date.now() + PROOF_BUDGET_MS;
    const statementsBefore = counter.n;
    while (done.length < PROOFS && Date.now() < deadline) {
      const { run, verify } = next();
      const t0 = process.hrtime.bigint();
      const proof = await run();
      recorder.recordSince(t0);
      done.push({ proof, verify });
    }
    statements = counter.n - statementsBefore;
  });
  for (const { proof, verify } of done) verify(proof);
  const summary = recorder.summary();
  return { count: summary.count, medianUs: summary.p50Ms * 1000, p99Us: summary.p99Ms * 1000, statementsPerProof: statements / done.length };
}

/**
 * Lets the database write back the bulk load, so the timed reads do not pay for it: SQLite
 * checkpoints its WAL; for MariaDB, waits (bounded) until InnoDB's dirty pages stop falling or
 * drop below 10% of the buffer pool (it keeps some dirty pages indefinitely when idle).
 */
async function settle(dataSource: DataSource): Promise<void> {
  if (dataSource.options.type === 'better-sqlite3') {
    await dataSource.query('PRAGMA wal_checkpoint(TRUNCATE)');
  } else {
    const status = async (name: string) => Number((await dataSource.query(`SHOW GLOBAL STATUS LIKE '${name}'`))[0]?.Value ?? 0);
    const total = await status('Innodb_buffer_pool_pages_total');
    const deadline = Date.now() + (quick ? 5_000 : 20_000);
    let last = Infinity;
    while (Date.now() < deadline) {
      const dirty = await status('Innodb_buffer_pool_pages_dirty');
      if (dirty < total / 10 || dirty > last * 0.98) break;
      last = dirty;
      await sleep(1000);
    }
  }
  await sleep(500);
}

async function databaseVersion(dataSource: DataSource): Promise<string> {
  if (dataSource.options.type === 'better-sqlite3') {
    const [row] = await dataSource.query('SELECT sqlite_version() AS v');
    return `SQLite ${row.v} (better-sqlite3, WAL)`;
  }
  const [row] = await dataSource.query("SELECT VERSION() AS v, @@innodb_buffer_pool_size AS pool, @@innodb_flush_method AS flush");
  return `MariaDB ${String(row.v).replace(/-MariaDB.*/, '')} on 127.0.0.1 (buffer pool ${Math.round(Number(row.pool) / 2 ** 20)} MiB, ${row.flush})`;
}

// ---------------------------------------------------------------------------------------------
// 2. Opt-in write throughput with and without the audit append
// ---------------------------------------------------------------------------------------------

/** The baseline's audit trail: accepts every entry and writes nothing. */
class NoOpAuditTrail implements AuditTrail {
  appended = 0;
  append(_tx: TxContext, _tenantId: string, _entry: AuditEntry): Promise<number> {
    return Promise.resolve(this.appended++);
  }
  /** Runs the row write (the event insert is part of the measured work), appends nothing. */
  async appendAfter(_tx: TxContext, _tenantId: string, write: () => Promise<AuditEntry[]>): Promise<number> {
    const first = this.appended;
    this.appended += (await write()).length;
    return first;
  }
  committedSize(): Promise<number> {
    return Promise.resolve(this.appended);
  }
}

interface Stack {
  label: string;
  recorder: ConsentRecorder;
  tenants: TenantService;
  purposes: PurposeService;
  audit: AuditLog | null;
  noOp: NoOpAuditTrail | null;
  statements: { n: number };
  close(): Promise<void>;
}

/** One measured phase of one variant, summed over its rounds. */
interface WritePhase {
  writes: number;
  seconds: number;
  latency: LatencyRecorder;
  statements: number;
}

/** The recorder as src/app.ts wires it, on a fresh database; only the audit trail differs. */
async function buildStack(kind: string, withAudit: boolean): Promise<Stack | null> {
  const env = await throwaway(kind, withAudit ? 'audit_w' : 'audit_n');
  if (!env) return null;
  const config = baseConfig(env.dataDir, env.config);
  const logger = quietLogger();
  try {
    const { provider: rootKeys } = await loadRootKeys(config.rootKeys);
    const dataSource = env.own(await openDatabase(config, logger));
    const keyDataSource = env.own(await openKeyStore(config, logger));
    const tx = new TypeormTransactionRunner(dataSource);
    const audit = withAudit ? new AuditLog(tx, new TypeormAuditRepository()) : null;
    const noOp = withAudit ? null : new NoOpAuditTrail();
    const trail: AuditTrail = audit ?? noOp!;
    const keys = new KeyManager(rootKeys, new TypeormKeyStore(keyDataSource), config.limits);
    const purposeRows = new TypeormPurposeRepository();
    const tenants = new TenantService(tx, new TypeormTenantRepository(), purposeRows, keys, systemClock, trail);
    const purposes = new PurposeService(tx, purposeRows, tenants, keys, systemClock, config.limits, trail);
    const subjects = new TypeormSubjectRepository();
    const writer = new ConsentWriter(tx, new TypeormConsentRepository(), subjects, tenants, keys, new TypeormChangeFeedRepository(), trail);
    const recorder = new ConsentRecorder(tx, writer, new SubjectDirectory(subjects, keys), tenants, purposes, keys, systemClock, config.limits.maxEventTimeSkewMs, config.databaseTimeouts.callMs);
    const statements = await countStatements(dataSource);
    return { label: withAudit ? 'with audit' : 'no audit', recorder, tenants, purposes, audit, noOp, statements, close: env.drop };
  } catch (err) {
    await env.drop();
    throw err;
  }
}

const TENANT = 'bench';
const PURPOSE = 'news';
const phone = (i: number) => `+49151${String(i).padStart(8, '0')}`;

async function setUpTenant(stack: Stack): Promise<void> {
  await stack.tenants.create(DEVELOPMENT_PRINCIPAL, { tenantId: TENANT, displayName: 'Benchmark', settings: {}, requestId: '' });
  await stack.purposes.create(DEVELOPMENT_PRINCIPAL, TENANT, { purposeId: PURPOSE, displayName: 'Newsletter', category: 'MARKETING', description: '', requestId: '' });
  await stack.purposes.publishNotice(DEVELOPMENT_PRINCIPAL, TENANT, PURPOSE, { language: 'en', text: 'We would like to send you our newsletter.', requestId: 'n1' });
}

async function optIn(stack: Stack, i: number, channel: 'WHATSAPP' | 'SMS'): Promise<void> {
  const { event } = await stack.recorder.record(DEVELOPMENT_PRINCIPAL, {
    tenantId: TENANT,
    identifier: { phoneNumber: phone(i) },
    purposeId: PURPOSE,
    channel,
    kind: 'OPT_IN',
    method: 'WEB_FORM',
    notice: { purposeId: PURPOSE, version: 1 },
    evidence: { userAgent: 'bench', sourceIp: '198.51.100.1' },
    jurisdiction: 'DE',
    requestId: `${channel}-${i}`,
    fingerprintSource: `${channel}-${i}`,
  });
  if (event.kind !== 'OPT_IN') throw new Error(`opt-in ${i} recorded as ${event.kind}`);
}

/** After the run: the audit log is gap-free, has one entry per write, and its root is MTH over its entries. */
async function checkWrittenLog(log: AuditLog, expected: number): Promise<void> {
  const size = await log.size(TENANT);
  if (size !== expected) throw new Error(`audit log has ${size} entries, expected ${expected}`);
  const leaves: Buffer[] = [];
  while (leaves.length < size) {
    const page = await log.entries(TENANT, leaves.length, 1000);
    if (page.length === 0) break;
    for (const e of page) {
      if (e.seq !== leaves.length) throw new Error(`audit log has a gap at ${leaves.length}`);
      leaves.push(leafHash(Buffer.from(e.entryJson, 'utf8')));
    }
  }
  if (!rootFromLeafHashes(leaves).equals(await log.root(TENANT, size))) throw new Error('audit root differs from MTH over its entries');
}

/** Calls `call(first..first+count-1)`, `concurrency` in flight; stops early at the time budget. Adds to `into`. */
async function drive(stack: Stack, into: WritePhase, first: number, count: number, concurrency: number, budgetMs: number, call: (i: number) => Promise<void>): Promise<void> {
  let deadline = 0;
  let issued = 0;
  let completed = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (failure === null && issued < count && Date.now() < deadline) {
      const i = first + issued++;
      const t0 = process.hrtime.bigint();
      try {
        await call(i);
      } catch (err) {
        failure ??= err;
        return;
      }
      into.latency.recordSince(t0);
      completed++;
    }
  };
  await measured(async () => {
    deadline = Date.now() + budgetMs;
    const statementsBefore = stack.statements.n;
    const started = process.hrtime.bigint();
    await Promise.all(Array.from({ length: concurrency }, worker));
    into.seconds += Number(process.hrtime.bigint() - started) / 1e9;
    into.statements += stack.statements.n - statementsBefore;
  });
  if (failure !== null) throw failure;
  into.writes += completed;
}

/**
 * Both recorders side by side (two fresh databases), measured in alternation: each phase runs
 * in rounds, and every round measures the baseline and then the audited recorder, so drifting
 * background load on a shared machine hits both alike.
 */
async function writeRows(kind: string): Promise<{ rows: Row[]; notes: string[] } | null> {
  const stacks: Stack[] = [];
  try {
    for (const withAudit of [false, true]) {
      const stack = await buildStack(kind, withAudit);
      if (!stack) return null;
      stacks.push(stack);
      await setUpTenant(stack);
      // The first opt-in alone: it loads the tenant key, so every measured write starts warm.
      await optIn(stack, 0, 'WHATSAPP');
    }
    const phases = [
      { name: `opt-in, new subject (${IN_FLIGHT} in flight, ${fmt(WRITES)} writes)`, count: WRITES, concurrency: IN_FLIGHT, call: (s: Stack, i: number) => optIn(s, 1 + i, 'WHATSAPP') },
      { name: `opt-in, existing subject, other channel (${IN_FLIGHT} in flight, ${fmt(EXISTING_WRITES)} writes)`, count: EXISTING_WRITES, concurrency: IN_FLIGHT, call: (s: Stack, i: number) => optIn(s, 1 + i, 'SMS') },
      { name: `opt-in, new subject (1 in flight, ${fmt(SERIAL_WRITES)} writes)`, count: SERIAL_WRITES, concurrency: 1, call: (s: Stack, i: number) => optIn(s, 1 + WRITES + i, 'WHATSAPP') },
    ];
    const results = phases.map(() => stacks.map((): WritePhase => ({ writes: 0, seconds: 0, latency: new LatencyRecorder(), statements: 0 })));
    for (const [p, phase] of phases.entries()) {
      const perRound = Math.ceil(phase.count / ROUNDS);
      for (let round = 0; round < ROUNDS; round++) {
        const first = round * perRound;
        const count = Math.min(perRound, phase.count - first);
        for (const [v, stack] of stacks.entries()) {
          progress(`${kind}: ${phase.name}, round ${round + 1}/${ROUNDS}, ${stack.label}`);
          await drive(stack, results[p][v], first, count, phase.concurrency, WRITE_BUDGET_MS / ROUNDS, (i) => phase.call(stack, i));
        }
      }
    }
    const [baseline, audited] = stacks;
    const written = (v: number) => 1 + results.reduce((sum, r) => sum + r[v].writes, 0);
    // 3 entries for tenant, purpose and notice, then one per opt-in.
    if (baseline.noOp!.appended !== 3 + written(0)) throw new Error(`no-op audit trail saw ${baseline.noOp!.appended} appends, expected ${3 + written(0)}`);
    await checkWrittenLog(audited.audit!, 3 + written(1));

    const rate = (r: WritePhase) => r.writes / r.seconds;
    const cell = (r: WritePhase) => {
      const l = r.latency.summary();
      return `${fmt(rate(r))} writes/s (p50 ${l.p50Ms.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(1)} ms), ${(r.statements / r.writes).toFixed(1)} stmts/write`;
    };
    const partial = phases.some((phase, p) => results[p].some((r) => r.writes < phase.count));
    return {
      rows: phases.map((phase, p) => ({
        workload: phase.name,
        baseline: `no audit: ${cell(results[p][0])}`,
        measured: `with audit: ${cell(results[p][1])}`,
        ratio: rate(results[p][1]) / rate(results[p][0]),
        goal: 'report the cost',
      })),
      notes: [
        `Writes: ConsentRecorder.record in this process, one tenant, two recorders wired identically by hand (as src/app.ts does), each on its own fresh database, differing only in the audit trail (AuditLog vs a no-op); measured alternately in ${ROUNDS} round(s) per workload. Statements counted on the data database (BEGIN/COMMIT included, key store not). The audited log was checked afterwards: one entry per write, gap-free, root = MTH over its entries.${
          partial ? ' **Some workloads hit their time budget and measured fewer writes.**' : ''
        }`,
      ],
    };
  } finally {
    for (const stack of stacks) await stack.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Background load: the machine is shared, so every measurement waits for it to be quiet and
// records what other processes used meanwhile
// ---------------------------------------------------------------------------------------------

const QUIET_PERCENT = 25;
/** This process and, on MariaDB runs, the database server: everything else counts as "other". */
let meter = new CpuMeter(undefined, null);
const otherLoad: number[] = [];

/** Runs `work` after waiting (bounded) for a quiet machine; records other processes' CPU during it. */
async function measured<T>(work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + QUIET_WAIT_MS;
  while (Date.now() < deadline) {
    const load = await backgroundLoad(500);
    if (load === null || load <= QUIET_PERCENT) break;
  }
  const before = meter.sample();
  const started = process.hrtime.bigint();
  const result = await work();
  const usage = CpuMeter.usage(before, meter.sample(), Number(process.hrtime.bigint() - started) / 1e9);
  if (usage.other !== null) otherLoad.push(usage.other);
  return result;
}

function backgroundNote(kind: string): string[] {
  if (otherLoad.length === 0) return [];
  const sorted = [...otherLoad].sort((a, b) => a - b);
  const max = sorted[sorted.length - 1];
  return [
    `CPU used by other processes (not this one${kind === 'mariadb' ? ', nor MariaDB' : ''}) during the measured runs${QUIET_WAIT_MS > 0 ? `, each of which first waited up to ${QUIET_WAIT_MS / 1000} s for a quiet machine` : ''}: median ${Math.round(sorted[Math.floor(sorted.length / 2)])}%, max ${Math.round(max)}% of one core${max > QUIET_PERCENT ? ' (**the machine was not quiet**: treat the affected figures with care)' : ''}.`,
  ];
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

function table(rows: Row[]): string[] {
  return [
    '| workload | baseline (same run) | measured | ratio | goal |',
    '| --- | --- | --- | --: | --- |',
    ...rows.map((r) => `| ${r.workload} | ${r.baseline} | ${r.measured} | ${r.ratio.toFixed(2)}x | ${r.goal} |`),
  ];
}

function progress(message: string): void {
  process.stderr.write(`[bench:audit ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const us = (n: number) => (n < 10_000 ? `${Math.round(n)} µs` : `${(n / 1000).toFixed(1)} ms`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

// Listeners stay installed: a second Ctrl-C (or tsx relaying the signal) must not kill the cleanup.
process.on('SIGINT', () => onExitSignal('interrupted', 130));
process.on('SIGTERM', () => onExitSignal('terminated', 143));
const watchdog = setTimeout(() => onExitSignal(`time limit of ${Math.round(WATCHDOG_MS / 60_000)} min exceeded`, 2), WATCHDOG_MS);
watchdog.unref();

main().then(
  async () => {
    if (stopping) return;
    await cleanupAll();
    process.exit(0);
  },
  async (err: Error) => {
    if (stopping) return;
    console.error(err);
    await cleanupAll();
    process.exit(1);
  },
);
