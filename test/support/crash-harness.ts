import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ClientReadableStream, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import mysql from 'mysql2/promise';
import { SubjectIdentifier } from '../../src/gen/consent/v1/common';
import {
  ChangeKind,
  ConsentEvent,
  ConsentEventKind,
  ConsentServiceClient,
  Evidence,
  ListConsentEventsRequest,
  StreamChangesResponse,
} from '../../src/gen/consent/v1/consent';
import { ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { Status } from '../../src/gen/google/rpc/status';
import { TestDatabase } from './databases';
import { freePort, runConsentctl } from './processes';
import { ServerProcess, startServerProcess } from './server-process';

/*
 * Crash safety, as a reusable harness (issue 14 point 5): a server process that is killed with
 * SIGKILL at seeded moments and restarted at once while a workload runs against it, a ledger of
 * the workload's writes by request_id, and the checks that every answered write is stored
 * exactly once and everything else all or nothing. A workload is anything that re-drives itself
 * after a restart: the retrying writers of test/e2e/crash-writes.test.ts, or an import that is
 * run again until it exits 0. The import scenario (with `consentctl import`; streaming the same rows
 * through the ImportConsents RPC again until a call ends OK is the same workload) is:
 *
 *   const ledger = new WriteLedger();
 *   for (const row of rows) ledger.add({ tenant, requestId: row.requestId, identifier: phone(row.phone),
 *     events: new Map([[row.requestId, { kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN, evidence: row.evidence }]]) });
 *   writeFileSync(file, csvOf(rows));
 *   await runUnderKills({ server, budgetMs, plan: planKills(seededRandom(seed), 2, rows.length),
 *     progress: () => countStoredEvents(db, [tenant]),
 *     workload: async (signal) => { // exit 3: the server was killed under it; run the same file again
 *       while (!signal.aborted && (await runConsentctl(server.address, 'import', file)).code !== 0) await sleep(200); } });
 *   ledger.acknowledgeAll();
 *   checkExactlyOnce(ledger, await readStoredEvents(db, [tenant])), checkThroughApi(server.address, ledger),
 *   verifyAuditLogs(server.address, [tenant]): each must find nothing.
 */

/** better-sqlite3 ships no type declarations (and @types/better-sqlite3 is no dependency): the little used here. */
interface SqliteConnection {
  prepare(sql: string): { all(...params: unknown[]): unknown[] };
  close(): void;
}
const SqliteDatabase = require('better-sqlite3') as new (file: string, options: { fileMustExist: boolean; timeout: number }) => SqliteConnection;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A small seeded generator (mulberry32): one seed, one kill schedule and one set of writes. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// The server that is killed

/**
 * Process ids below `pid`, deepest first. startServerProcess runs the service under the tsx
 * command line, which runs it as a child of its own: a SIGKILL to the process it returns would
 * leave the service itself running (a signal that cannot be caught is not passed on).
 */
function descendants(pid: number): number[] {
  let children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      children.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    }
  } catch {
    children = []; // gone already
  }
  return children.flatMap((child) => [...descendants(child), child]);
}

/** Whether a process still runs (a zombie holds no sockets and counts as gone). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * SIGKILL to a server process started by startServerProcess: the service's own process and the
 * tsx launcher above it (killing only the launcher would leave the service running). Resolves
 * once all of them are gone.
 */
export async function killServerProcess(proc: ServerProcess): Promise<void> {
  const pids = [...descendants(proc.child.pid!), proc.child.pid!];
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await proc.exited;
  for (let i = 0; pids.some(running); i++) {
    if (i > 500) throw new Error(`processes ${pids.filter(running).join(', ')} still run 5 s after SIGKILL`);
    await sleep(10);
  }
}

/**
 * The service as its own process on a fixed port, so clients reconnect to it by themselves, with
 * one root key set that every restart reuses (a generated development key is also kept in
 * DATA_DIR, but a fixed file makes the restarts independent of that).
 */
export class CrashableServer {
  private readonly generations: ServerProcess[];
  /** Kills so far. */
  kills = 0;
  /** How long each restart took until the service answered SERVING. */
  readonly restartMs: number[] = [];

  private constructor(
    private readonly db: TestDatabase,
    private readonly env: Record<string, string>,
    readonly port: number,
    first: ServerProcess,
  ) {
    this.generations = [first];
  }

  static async start(db: TestDatabase, env: Record<string, string> = {}): Promise<CrashableServer> {
    const rootKeys = path.join(db.dataDir, 'crash-root-keys.json');
    writeFileSync(rootKeys, JSON.stringify({ keys: [{ kty: 'oct', kid: 'crash-root', k: randomBytes(32).toString('base64url') }] }), { mode: 0o600 });
    const port = await freePort();
    const fullEnv = { ROOT_KEYS_FILE: rootKeys, LOG_LEVEL: 'warn', ...env };
    return new CrashableServer(db, fullEnv, port, await startServerProcess(db, { port, env: fullEnv }));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private get current(): ServerProcess {
    return this.generations[this.generations.length - 1];
  }

  /** SIGKILL to the service's process (and the tsx launcher above it); resolves once both are gone. */
  async kill(): Promise<void> {
    const proc = this.current;
    if (proc.hasExited()) {
      throw new Error(`the server exited by itself (${String(await proc.exited)}) before kill ${this.kills + 1}:\n${proc.output().slice(-4000)}`);
    }
    await killServerProcess(proc);
    this.kills++;
  }

  /**
   * Starts the next process on the same port and database; resolves once it answers SERVING. A
   * start that fails (the port taken for a moment by another process's connection) is tried
   * twice more.
   */
  async restart(): Promise<void> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        this.generations.push(await startServerProcess(this.db, { port: this.port, env: this.env, startTimeoutMs: 60_000 }));
        break;
      } catch (err) {
        if (attempt === 3) throw err;
        await sleep(500);
      }
    }
    this.restartMs.push(Date.now() - started);
  }

  /** SIGTERM (SIGKILL after 10 s) to the current process, and nothing of it left running. */
  async stop(): Promise<void> {
    const proc = this.current;
    const pids = proc.hasExited() ? [] : descendants(proc.child.pid!);
    await proc.stop(10_000);
    for (const pid of pids.filter(running)) process.kill(pid, 'SIGKILL');
  }

  /** What every process wrote, oldest first, for a failure message. */
  output(): string {
    return this.generations.map((g, i) => `--- process ${i + 1} (${g.hasExited() ? 'ended' : 'running'}) ---\n${g.output()}`).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// The kill schedule and the run

export interface KillPlan {
  /** The workload's progress (e.g. acknowledged writes) at which each kill falls due, ascending. */
  atProgress: number[];
  /** Then this long, so a kill lands at a random point among the calls in flight. */
  delayMs: number[];
}

/**
 * `kills` kills spread over the progress range [from, to] of a workload of `total` units, one in
 * each equal slice, at a seeded point of it.
 */
export function planKills(random: () => number, kills: number, total: number, from = 0.1, to = 0.85, maxDelayMs = 300): KillPlan {
  const slice = (to - from) / kills;
  const atProgress = Array.from({ length: kills }, (_, i) => Math.max(1, Math.floor(total * (from + slice * (i + random())))));
  return { atProgress, delayMs: atProgress.map(() => Math.floor(random() * maxDelayMs)) };
}

export interface CrashRunOptions {
  server: CrashableServer;
  plan: KillPlan;
  /** How far the workload has come, in the plan's units; polled every 20 ms. */
  progress: () => number | Promise<number>;
  /**
   * The work that must survive the kills: keeps re-driving itself across restarts (retrying its
   * calls, or running an import again) and resolves when all of it was answered. Stops early
   * when `signal` aborts (the budget ran out).
   */
  workload: (signal: AbortSignal) => Promise<void>;
  /** Runs after each kill while no server runs, before the restart: look at the database then. */
  whileDown?: (kill: number) => Promise<void>;
  /** The most the whole run may take (kills, restarts and the workload's end), in ms. */
  budgetMs: number;
}

export interface CrashRun {
  kills: number;
  restartMs: number[];
  elapsedMs: number;
}

/** Runs the workload while the server is killed and restarted at each point of the plan. */
export async function runUnderKills(options: CrashRunOptions): Promise<CrashRun> {
  const { server, plan } = options;
  const started = Date.now();
  const abort = new AbortController();
  let finished = false;
  const work = options.workload(abort.signal).finally(() => (finished = true));
  work.catch(() => undefined); // observed below; not an unhandled rejection meanwhile
  const overBudget = () => Date.now() - started > options.budgetMs;
  try {
    for (let k = 0; k < plan.atProgress.length; k++) {
      while ((await options.progress()) < plan.atProgress[k]) {
        if (finished) {
          await work; // its error, if it failed
          throw new Error(`the workload ended before kill ${k + 1} fell due (at progress ${plan.atProgress[k]}): plan kills inside the workload`);
        }
        if (overBudget()) throw new Error(`kill ${k + 1} not due within the budget of ${options.budgetMs} ms (progress ${await options.progress()} of ${plan.atProgress[k]})`);
        await sleep(20);
      }
      await sleep(plan.delayMs[k]);
      await server.kill();
      await options.whileDown?.(k + 1);
      await server.restart();
    }
    const timeLeft = options.budgetMs - (Date.now() - started);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(0, timeLeft))));
    const outcome = await Promise.race([work.then(() => 'done' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') throw new Error(`the workload did not finish within the budget of ${options.budgetMs} ms`);
  } finally {
    abort.abort();
    await work.catch(() => undefined);
  }
  await work;
  return { kills: server.kills, restartMs: server.restartMs, elapsedMs: Date.now() - started };
}

// ---------------------------------------------------------------------------------------------
// The ledger of writes and the retrying sender

/** What one event a write records must look like when read back through the API. */
export interface ExpectedEvent {
  kind: ConsentEventKind;
  /** Evidence fields that must come back decrypted as sent. */
  evidence?: Partial<Evidence>;
}

/** One write of the workload, identified by its request_id. */
export interface LedgerWrite {
  tenant: string;
  requestId: string;
  /** The person it is about, to read it back through the API. */
  identifier: SubjectIdentifier;
  /** The request id of each event it records (an inbound STOP records two) and what that event holds. */
  events: Map<string, ExpectedEvent>;
  state: 'planned' | 'sent' | 'acknowledged' | 'refused';
  /** For a write that must fail: the final status and ErrorInfo reason it must be refused with ("NOT_FOUND PURPOSE_NOT_FOUND"). */
  mustBeRefused?: string;
  attempts: number;
  /** The answer's event name for each event request id (set when acknowledged). */
  answered: Map<string, string>;
  /** The final error, when refused: status and reason ("NOT_FOUND PURPOSE_NOT_FOUND"). */
  refusal?: string;
  /** The refusal's message, for a failure report. */
  refusalMessage?: string;
}

/** Every write of a workload by tenant and request_id, and how it fared. */
export class WriteLedger {
  readonly writes = new Map<string, LedgerWrite>();
  retries = 0;
  /** Retried failures by kind ("UNAVAILABLE", "DEADLINE_EXCEEDED", ...). */
  readonly retriedBy = new Map<string, number>();

  add(write: Omit<LedgerWrite, 'state' | 'attempts' | 'answered'>): LedgerWrite {
    const key = `${write.tenant}/${write.requestId}`;
    if (this.writes.has(key)) throw new Error(`request id ${key} planned twice`);
    const entry: LedgerWrite = { ...write, state: 'planned', attempts: 0, answered: new Map() };
    this.writes.set(key, entry);
    return entry;
  }

  /** Marks writes acknowledged as a whole, with no event names to compare (e.g. an import that exited 0). */
  acknowledgeAll(): void {
    for (const w of this.writes.values()) if (w.state !== 'refused') w.state = 'acknowledged';
  }

  all(): LedgerWrite[] {
    return [...this.writes.values()];
  }

  count(state: LedgerWrite['state']): number {
    return this.all().filter((w) => w.state === state).length;
  }

  /** Sent at least once and not answered: their outcome is unknown until a retry answers. */
  unanswered(): LedgerWrite[] {
    return this.all().filter((w) => w.state === 'sent');
  }

  /** The events the acknowledged writes recorded. */
  acknowledgedEvents(): number {
    return this.all().reduce((n, w) => n + (w.state === 'acknowledged' ? w.events.size : 0), 0);
  }

  noteRetry(kind: string): void {
    this.retries++;
    this.retriedBy.set(kind, (this.retriedBy.get(kind) ?? 0) + 1);
  }
}

/** The reason of a failed call's google.rpc.ErrorInfo, or '' when it has none. */
function errorReason(err: ServiceError): string {
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (!(bin instanceof Buffer)) return '';
  const info = Status.decode(bin).details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
  return info ? ErrorInfo.decode(info.value).reason : '';
}

/**
 * Whether a failure means "try again with the same request_id", and as what kind: the server is
 * gone or not up yet (UNAVAILABLE, connection refused or dropped), the call ran out of time, a
 * write lost a race (ABORTED CONCURRENT_UPDATE), or the connection broke mid-answer (INTERNAL
 * from the client library, without the service's error details). Anything else is final.
 */
export function retryKind(err: ServiceError): string | null {
  const reason = errorReason(err);
  switch (err.code) {
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      return reason ? `${status[err.code]} ${reason}` : status[err.code];
    case status.ABORTED:
      return reason === 'CONCURRENT_UPDATE' ? 'ABORTED CONCURRENT_UPDATE' : null;
    case status.INTERNAL:
      return reason ? null : 'INTERNAL (connection broken mid-call)';
    default:
      return null;
  }
}

export interface SendOptions {
  ledger: WriteLedger;
  signal: AbortSignal;
  random: () => number;
  /** Each attempt's deadline, generous for a loaded machine; the run's budget bounds the total. */
  callDeadlineMs: number;
}

/**
 * Sends a write, and again with the same request_id until it is answered: OK (acknowledged) or a
 * final error (refused). Returns the answer, or undefined when refused or the run was aborted.
 */
export async function sendUntilAnswered<T>(write: LedgerWrite, send: (deadline: Date) => Promise<T>, options: SendOptions): Promise<T | undefined> {
  for (let failures = 0; !options.signal.aborted; ) {
    write.state = 'sent';
    write.attempts++;
    try {
      const answer = await send(new Date(Date.now() + options.callDeadlineMs));
      write.state = 'acknowledged';
      return answer;
    } catch (e) {
      const err = e as ServiceError;
      const kind = typeof err.code === 'number' ? retryKind(err) : null;
      if (kind === null) {
        write.state = 'refused';
        write.refusal = `${status[err.code] ?? 'no status'} ${errorReason(err)}`.trim();
        write.refusalMessage = err.details ?? err.message;
        return undefined;
      }
      options.ledger.noteRetry(kind);
      failures++;
      // Short, growing, jittered: reconnects within a few hundred ms of a restart.
      await sleep(Math.min(400, 20 * 2 ** Math.min(failures, 5)) * (0.5 + options.random()));
    }
  }
  return undefined;
}

/** Client options for writers that outlive server restarts: reconnect quickly, own connection each. */
export const RECONNECTING_CLIENT_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
  'grpc.use_local_subchannel_pool': 1,
};

// ---------------------------------------------------------------------------------------------
// Checks: the database directly

/** Rows of a query on the test database, read directly (not through the service). */
export async function queryDatabase(db: TestDatabase, sql: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  if (db.config.kind === 'sqlite') {
    const conn = new SqliteDatabase(db.config.file, { fileMustExist: true, timeout: 10_000 });
    try {
      return conn.prepare(sql).all(...params) as Array<Record<string, unknown>>;
    } finally {
      conn.close();
    }
  }
  const conn = await mysql.createConnection(db.config.url);
  try {
    const [rows] = await conn.query(sql, params);
    return rows as Array<Record<string, unknown>>;
  } finally {
    await conn.end();
  }
}

/** How many consent events the tenants have stored: cheap enough to poll as a workload's progress. */
export async function countStoredEvents(db: TestDatabase, tenants: string[]): Promise<number> {
  const rows = await queryDatabase(db, `SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id IN (${tenants.map(() => '?').join(', ')})`, tenants);
  return Number(rows[0].n);
}

export interface StoredEvents {
  /** Consent event rows: tenant, request id, event id, kind. */
  rows: Array<{ tenant: string; requestId: string; id: string; kind: string }>;
  /** How many audit entries name each event id, by tenant/id. */
  auditRefs: Map<string, number>;
}

/** Every consent event row of the tenants and the audit entries that vouch for them. */
export async function readStoredEvents(db: TestDatabase, tenants: string[]): Promise<StoredEvents> {
  const marks = tenants.map(() => '?').join(', ');
  const rows = await queryDatabase(db, `SELECT tenant_id, request_id, id, kind FROM consent_events WHERE tenant_id IN (${marks}) ORDER BY seq`, tenants);
  const entries = await queryDatabase(db, `SELECT tenant_id, entry_json FROM audit_entries WHERE tenant_id IN (${marks}) AND entry_type LIKE 'CONSENT_EVENT_%'`, tenants);
  const auditRefs = new Map<string, number>();
  for (const e of entries) {
    const key = `${String(e.tenant_id)}/${(JSON.parse(String(e.entry_json)) as { ref: string }).ref}`;
    auditRefs.set(key, (auditRefs.get(key) ?? 0) + 1);
  }
  return {
    rows: rows.map((r) => ({ tenant: String(r.tenant_id), requestId: String(r.request_id), id: String(r.id), kind: String(r.kind) })),
    auditRefs,
  };
}

/** The id at the end of an event name ".../consentEvents/{id}". */
const eventId = (name: string) => name.split('/').pop() ?? '';

/**
 * For writes whose outcome is not known (sent, never answered, e.g. in flight at a kill): each
 * is all or nothing, every event it records stored once with its audit entry, or none of them.
 * Returns the problems (empty when none) and how many were stored and how many absent.
 */
export function checkAllOrNothing(writes: LedgerWrite[], stored: StoredEvents): { problems: string[]; present: number; absent: number } {
  const byRequest = groupRows(stored);
  const problems: string[] = [];
  let present = 0;
  let absent = 0;
  for (const w of writes) {
    const counts = [...w.events.keys()].map((id) => byRequest.get(`${w.tenant}/${id}`) ?? []);
    if (counts.every((rows) => rows.length === 0)) {
      absent++;
      continue;
    }
    if (!counts.every((rows) => rows.length === 1)) {
      problems.push(`${w.tenant}/${w.requestId}: partly stored (rows per event: ${counts.map((rows) => rows.length).join(', ')})`);
      continue;
    }
    for (const [row] of counts) {
      if (stored.auditRefs.get(`${w.tenant}/${row.id}`) !== 1) problems.push(`${w.tenant}/${w.requestId}: event ${row.id} stored without exactly one audit entry`);
    }
    present++;
  }
  return { problems, present, absent };
}

function groupRows(stored: StoredEvents): Map<string, StoredEvents['rows']> {
  const byRequest = new Map<string, StoredEvents['rows']>();
  for (const row of stored.rows) {
    const key = `${row.tenant}/${row.requestId}`;
    byRequest.set(key, [...(byRequest.get(key) ?? []), row]);
  }
  return byRequest;
}

/**
 * Exactly once, read from the database: every acknowledged write's events are stored once each
 * (the ones its answer named, when it named them), with one audit entry each; no request id is
 * stored twice; no row belongs to a request the ledger does not know, never sent or refused; no
 * audit entry names an event that is not stored. Returns the problems (empty when none).
 */
export function checkExactlyOnce(ledger: WriteLedger, stored: StoredEvents): string[] {
  const problems: string[] = [];
  const byRequest = groupRows(stored);
  const planned = new Map<string, LedgerWrite>();
  for (const w of ledger.all()) for (const id of w.events.keys()) planned.set(`${w.tenant}/${id}`, w);
  for (const [key, rows] of byRequest) {
    if (rows.length > 1) problems.push(`${key}: stored ${rows.length} times`);
    const w = planned.get(key);
    if (!w) problems.push(`${key}: stored, but no write of the workload has this request id`);
    else if (w.state === 'refused') problems.push(`${key}: stored, but its write was refused (${w.refusal})`);
    else if (w.state === 'planned') problems.push(`${key}: stored, but its write was never sent`);
  }
  for (const w of ledger.all()) {
    if (w.state !== 'acknowledged') continue;
    for (const id of w.events.keys()) {
      const rows = byRequest.get(`${w.tenant}/${id}`) ?? [];
      if (rows.length === 0) {
        problems.push(`${w.tenant}/${id}: acknowledged, but not stored`);
        continue;
      }
      const answered = w.answered.get(id);
      if (answered !== undefined && eventId(answered) !== rows[0].id) problems.push(`${w.tenant}/${id}: the answer named event ${eventId(answered)}, the database holds ${rows[0].id}`);
    }
  }
  const storedIds = new Set(stored.rows.map((r) => `${r.tenant}/${r.id}`));
  for (const [ref, n] of stored.auditRefs) {
    if (!storedIds.has(ref)) problems.push(`audit entry for event ${ref}, which is not stored`);
    else if (n !== 1) problems.push(`event ${ref} has ${n} audit entries`);
  }
  for (const id of storedIds) if (!stored.auditRefs.has(id)) problems.push(`event ${id} is stored without an audit entry`);
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Checks: through the API

/** Every event of one person, page by page. */
export async function listEvents(client: ConsentServiceClient, tenant: string, identifier: SubjectIdentifier): Promise<ConsentEvent[]> {
  const events: ConsentEvent[] = [];
  let pageToken = '';
  do {
    const page = await new Promise<{ consentEvents: ConsentEvent[]; nextPageToken: string }>((resolve, reject) =>
      client.listConsentEvents(
        ListConsentEventsRequest.fromPartial({ parent: `tenants/${tenant}`, subjectIdentifier: identifier, pageSize: 500, pageToken }),
        new Metadata(),
        { deadline: Date.now() + 30_000 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    events.push(...page.consentEvents);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return events;
}

/**
 * Exactly once, read through the API (ListConsentEvents per person): every acknowledged write's
 * events are listed once each, under the name its answer gave, of the expected kind, with their
 * evidence decrypted as sent; nothing is listed that no write of the ledger recorded.
 */
export async function checkThroughApi(address: string, ledger: WriteLedger): Promise<string[]> {
  const problems: string[] = [];
  const people = new Map<string, { tenant: string; identifier: SubjectIdentifier; writes: LedgerWrite[] }>();
  for (const w of ledger.all()) {
    const key = `${w.tenant}/${JSON.stringify(w.identifier)}`;
    const person = people.get(key) ?? { tenant: w.tenant, identifier: w.identifier, writes: [] };
    person.writes.push(w);
    people.set(key, person);
  }
  const client = new ConsentServiceClient(address, credentials.createInsecure());
  try {
    for (const person of people.values()) {
      const listed = new Map<string, ConsentEvent[]>();
      for (const e of await listEvents(client, person.tenant, person.identifier)) listed.set(e.requestId, [...(listed.get(e.requestId) ?? []), e]);
      const expected = new Set<string>();
      for (const w of person.writes) {
        for (const [id, want] of w.events) {
          expected.add(id);
          if (w.state === 'refused' && listed.has(id)) problems.push(`${w.tenant}/${id}: listed through the API, but its write was refused`);
          if (w.state !== 'acknowledged') continue;
          const found = listed.get(id) ?? [];
          if (found.length !== 1) {
            problems.push(`${w.tenant}/${id}: listed ${found.length} times through the API`);
            continue;
          }
          const [event] = found;
          const answered = w.answered.get(id);
          if (answered !== undefined && event.name !== answered) problems.push(`${w.tenant}/${id}: listed as ${eventId(event.name)}, answered as ${eventId(answered)}`);
          if (event.kind !== want.kind) problems.push(`${w.tenant}/${id}: listed as ${ConsentEventKind[event.kind]}, expected ${ConsentEventKind[want.kind]}`);
          for (const [field, value] of Object.entries(want.evidence ?? {})) {
            if ((event.evidence as unknown as Record<string, unknown> | undefined)?.[field] !== value) problems.push(`${w.tenant}/${id}: evidence ${field} does not come back as sent`);
          }
        }
      }
      for (const id of listed.keys()) if (!expected.has(id)) problems.push(`${person.tenant}/${id}: listed through the API, but no write of this person has this request id`);
    }
  } finally {
    client.close();
  }
  return problems;
}

/**
 * The change feed (StreamChanges from the start) of each tenant holds every acknowledged opt-out
 * once, under the event name its answer gave, and nothing else: what a downstream sender reads
 * is exactly once too. Waits for changes to settle (the feed holds back recent ones), then a
 * little longer, so a late duplicate is seen as well.
 */
export async function checkChangeFeed(address: string, ledger: WriteLedger, tenants: string[], timeoutMs = 30_000): Promise<string[]> {
  const client = new ConsentServiceClient(address, credentials.createInsecure());
  try {
    const perTenant = await Promise.all(
      tenants.map(async (tenant) => {
        const expected = new Map<string, string>(); // event name -> request id
        let unnamed = 0;
        for (const w of ledger.all()) {
          if (w.tenant !== tenant || w.state !== 'acknowledged') continue;
          for (const [id, want] of w.events) {
            if (want.kind !== ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT) continue;
            const name = w.answered.get(id);
            if (name === undefined) unnamed++;
            else expected.set(name, id);
          }
        }
        const wanted = expected.size + unnamed;
        const changes = await new Promise<StreamChangesResponse[]>((resolve, reject) => {
          const got: StreamChangesResponse[] = [];
          const stream: ClientReadableStream<StreamChangesResponse> = client.streamChanges({ parent: `tenants/${tenant}`, cursor: '' });
          let grace: NodeJS.Timeout | undefined;
          const end = () => {
            clearTimeout(timer);
            clearTimeout(grace);
            stream.cancel();
            resolve(got);
          };
          const timer = setTimeout(end, timeoutMs);
          stream.on('data', (c: StreamChangesResponse) => {
            got.push(c);
            if (got.length === wanted) grace = setTimeout(end, 1500);
          });
          stream.on('error', (err: ServiceError) => {
            if (err.code !== status.CANCELLED) reject(err);
          });
          if (wanted === 0) grace = setTimeout(end, 1500);
        });
        const problems: string[] = [];
        const seen = new Map<string, number>();
        for (const c of changes) {
          if (c.kind !== ChangeKind.CHANGE_KIND_OPT_OUT) problems.push(`${tenant}: change feed holds a ${ChangeKind[c.kind]}, the workload made none`);
          seen.set(c.event, (seen.get(c.event) ?? 0) + 1);
        }
        for (const [name, id] of expected) {
          const n = seen.get(name) ?? 0;
          if (n !== 1) problems.push(`${tenant}/${id}: its opt-out is in the change feed ${n} times`);
        }
        for (const [name, n] of seen) if (!expected.has(name) && unnamed === 0) problems.push(`${tenant}: change feed names event ${eventId(name)} (${n} times), which no acknowledged opt-out is`);
        if (changes.length !== wanted) problems.push(`${tenant}: change feed holds ${changes.length} changes, ${wanted} opt-outs were acknowledged`);
        return problems;
      }),
    );
    return perTenant.flat();
  } finally {
    client.close();
  }
}

/**
 * `consentctl audit verify --tenant T --records` for each tenant: the checkpoint's signature, every
 * entry re-hashed into the signed root, every consent event row matched with its entry in order.
 */
export function verifyAuditLogs(address: string, tenants: string[]): Promise<Array<{ tenant: string; code: number; out: string; err: string }>> {
  return Promise.all(tenants.map(async (tenant) => ({ tenant, ...(await runConsentctl(address, 'audit', 'verify', '--tenant', tenant, '--records')) })));
}
