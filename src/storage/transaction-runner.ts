import { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { DatabaseTimeouts } from '../config/config';
import { currentCallBudget } from '../shared/call-budget';
import { DomainError } from '../shared/errors';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { timeoutsOf } from './data-source';
import { classifyDbError, databaseUnavailable, toDomainError } from './db-errors';

/** The EntityManager behind an opaque TxContext. Only storage code calls this. */
export function managerOf(tx: TxContext): EntityManager {
  return tx as unknown as EntityManager;
}

function contextOf(manager: EntityManager): TxContext {
  return manager as unknown as TxContext;
}

/** How often a write whose transaction hit a racing insert or a lock timeout is run at most. */
const WRITE_ATTEMPTS = 4;
/**
 * How often a write that lost a race at commit (a deadlock; on Galera a certification conflict
 * with another node's commit of the same row, e.g. a tenant's audit head written through several
 * replicas) is run at most. Such a loss is normal on a cluster, not an error to hand to the
 * client: it is run again, with a growing random pause, for as long as the call's budget lasts.
 */
const RACE_ATTEMPTS = 40;
/** The longest pause between two attempts of a write that lost a race. */
const RACE_PAUSE_MAX_MS = 60;
/** A retry needs at least this much of the budget left to be worth starting. */
const RETRY_FLOOR_MS = 20;

/**
 * Runs units of work on TypeORM, each bounded in time. Writes that collide with a concurrent write
 * (deadlock, lock timeout, a unique key inserted by a racing call) are rolled back and run again,
 * so the domain code re-reads what the winner committed (this is how idempotent retries converge).
 *
 * Time: a unit of work inside an RPC may take DATABASE_CALL_TIMEOUT_MS, and never past the RPC's
 * deadline or cancellation (the CallBudget the transport opened); outside any RPC (start-up,
 * background jobs) DATABASE_BACKGROUND_TIMEOUT_MS. Retries share that one budget. When it runs
 * out, the caller gets UNAVAILABLE (ABORTED CANCELLED if the caller itself gave up) at once, and
 * on MySQL the connection the unit was waiting on is destroyed, never returned to the pool: a
 * server that stopped answering leaves no hung connection behind for the next call, and the
 * server rolls the transaction back when it sees the connection gone. A transaction is thus
 * committed whole or not at all, and the caller's retry with the same request id converges.
 *
 * SQLite has one connection: TypeORM cannot nest or interleave transactions on it, and a read
 * between two statements of an open transaction would see uncommitted rows. So on SQLite every
 * unit of work, read or write, takes its turn on one in-process queue; a unit whose budget ran
 * out while queued never starts, and one given up while running is rolled back when it returns
 * (better-sqlite3 runs each statement synchronously, so a running statement cannot be stopped;
 * SQLITE_BUSY_TIMEOUT_MS bounds how long one waits for another process).
 */
export class TypeormTransactionRunner implements TransactionRunner {
  private readonly sqlite: boolean;
  private readonly mariadb: boolean;
  /** Whether the MySQL server is a Galera node (wsrep_on), learnt from the first connection. */
  private galera = false;
  private tail: Promise<unknown> = Promise.resolve();
  /** MySQL connections whose session limits are set (see prepareSession). */
  private readonly prepared = new WeakSet<object>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly timeouts: DatabaseTimeouts = timeoutsOf(dataSource),
  ) {
    this.sqlite = dataSource.options.type === 'better-sqlite3';
    this.mariadb = dataSource.options.type === 'mariadb';
  }

  /** Writes run again after losing a race at commit, since start (for tests, benchmarks and metrics). */
  readonly stats = { raceRetries: 0, otherRetries: 0 };

  /** When tracing is on (src/observability/tracing.ts): a span per unit of work, its statements under it. */
  tracing?: { inSpan<T>(name: string, attributes: Record<string, string | number | boolean>, work: () => Promise<T>): Promise<T> };

  write<T>(work: (tx: TxContext) => Promise<T>): Promise<T> {
    return this.tracing ? this.tracing.inSpan('db.transaction', { 'db.system': this.system() }, () => this.writeWithRetries(work)) : this.writeWithRetries(work);
  }

  read<T>(work: (tx: TxContext) => Promise<T>): Promise<T> {
    return this.tracing ? this.tracing.inSpan('db.read', { 'db.system': this.system() }, () => this.readOnce(work)) : this.readOnce(work);
  }

  private system(): string {
    return this.sqlite ? 'sqlite' : 'mysql';
  }

  private async writeWithRetries<T>(work: (tx: TxContext) => Promise<T>): Promise<T> {
    const budget = Budget.now(this.timeouts);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.bounded(budget, (unit) => (this.sqlite ? this.sqliteUnit(unit, 'write', work) : this.mysqlUnit(unit, 'write', work)));
      } catch (err) {
        const failure = classifyDbError(err);
        const race = failure === 'retryable';
        const again = race || failure === 'conflict' || failure === 'busy';
        // A race is lost to another writer that is committing right now: pause a random while
        // (growing with the attempts, so that writers through several replicas spread out)
        // rather than collide again at once.
        const pause = race ? Math.random() * Math.min(RACE_PAUSE_MAX_MS, 2 ** attempt) + 1 : attempt * 5 + Math.random() * 10;
        if (again && attempt < (race ? RACE_ATTEMPTS : WRITE_ATTEMPTS) && budget.remainingMs() > pause + RETRY_FLOOR_MS) {
          if (race) this.stats.raceRetries++;
          else this.stats.otherRetries++;
          await delay(pause);
          continue;
        }
        throw toDomainError(err);
      }
    }
  }

  private async readOnce<T>(work: (tx: TxContext) => Promise<T>): Promise<T> {
    const budget = Budget.now(this.timeouts);
    try {
      return await this.bounded(budget, (unit) => (this.sqlite ? this.sqliteUnit(unit, 'read', work) : this.mysqlUnit(unit, 'read', work)));
    } catch (err) {
      throw toDomainError(err);
    }
  }

  /** Runs one attempt of a unit of work; rejects when the budget runs out, whatever the attempt is doing. */
  private bounded<T>(budget: Budget, run: (unit: Unit) => Promise<T>): Promise<T> {
    if (budget.signal?.aborted) return Promise.reject(cancelled());
    const remaining = budget.remainingMs();
    if (remaining <= 0) return Promise.reject(budget.expired());
    return new Promise<T>((resolve, reject) => {
      const unit = new Unit((err) => {
        finish();
        reject(err);
      });
      const timer = setTimeout(() => unit.giveUp(budget.expired()), remaining);
      const onAbort = () => unit.giveUp(cancelled());
      budget.signal?.addEventListener('abort', onAbort);
      const finish = () => {
        clearTimeout(timer);
        budget.signal?.removeEventListener('abort', onAbort);
      };
      run(unit).then(
        (value) => {
          if (unit.abandoned) return;
          finish();
          resolve(value);
        },
        (err: unknown) => {
          if (unit.abandoned) return;
          finish();
          reject(err);
        },
      );
    });
  }

  private async mysqlUnit<T>(unit: Unit, kind: 'read' | 'write', work: (tx: TxContext) => Promise<T>): Promise<T> {
    const runner = this.dataSource.createQueryRunner();
    let used = false;
    let broken = false;
    unit.onGiveUp(() => {
      if (used) destroyConnection(runner);
    });
    const connecting = runner.connect();
    try {
      await unit.acquire(connecting, this.timeouts.acquireMs);
      unit.check();
      used = true;
      await this.prepareSession(runner);
      if (kind === 'read') return await work(contextOf(runner.manager));
      await runner.startTransaction();
      try {
        const result = await work(contextOf(runner.manager));
        unit.check();
        await runner.commitTransaction();
        return result;
      } catch (err) {
        if (runner.isTransactionActive && !unit.abandoned) await runner.rollbackTransaction().catch(() => (broken = true));
        throw err;
      }
    } finally {
      if (!connectionOf(runner)) {
        // Given up while waiting for a connection: hand it back whenever the pool delivers it.
        connecting.then(() => connectionOf(runner)?.release(), () => undefined);
      } else if ((unit.abandoned && used) || broken) {
        destroyConnection(runner);
      } else {
        await runner.release();
      }
    }
  }

  private async sqliteUnit<T>(unit: Unit, kind: 'read' | 'write', work: (tx: TxContext) => Promise<T>): Promise<T> {
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    const previous = this.tail;
    this.tail = previous.then(() => mine);
    try {
      await unit.acquire(previous, this.timeouts.acquireMs);
      unit.check();
      if (kind === 'read') return await work(contextOf(this.dataSource.manager));
      // BEGIN IMMEDIATE, not TypeORM's deferred BEGIN: it takes the file's write lock up front,
      // waiting up to busy_timeout for another process to finish. A deferred transaction that
      // has read fails at its first write with SQLITE_BUSY at once when another process writes,
      // without waiting: with several processes on one file, every contended write would fail.
      const runner = this.dataSource.createQueryRunner(); // better-sqlite3: the one connection
      await runner.query('BEGIN IMMEDIATE');
      markTransactionStarted(runner);
      try {
        const result = await work(contextOf(runner.manager));
        unit.check(); // given up meanwhile: roll back rather than commit what nobody waits for
        await runner.commitTransaction();
        return result;
      } catch (err) {
        if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
        throw err;
      }
    } finally {
      // Leaving early (given up while queued) is safe: the next unit waits for `previous` too.
      done();
    }
  }

  /**
   * Once per MySQL connection: READ COMMITTED (writers lock the rows they update; see
   * docs/architecture.md, Concurrency), and server-side limits so that a statement or lock wait
   * of a unit that was given up ends on the server too: lock waits end about when a call's budget
   * does, any statement after DATABASE_STATEMENT_TIMEOUT_MS (MariaDB max_statement_time; MySQL's
   * max_execution_time covers SELECTs only). Migrations run on their own connection without them.
   */
  private async prepareSession(runner: QueryRunner): Promise<void> {
    const connection = connectionOf(runner);
    if (!connection || this.prepared.has(connection)) return;
    const lockWaitSeconds = Math.max(1, Math.ceil(this.timeouts.callMs / 1000));
    const statementLimit = this.mariadb ? `max_statement_time = ${this.timeouts.statementMs / 1000}` : `max_execution_time = ${this.timeouts.statementMs}`;
    await runner.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await runner.query(`SET SESSION ${statementLimit}, innodb_lock_wait_timeout = ${lockWaitSeconds}`);
    // MySQL without Galera has no such variable and answers no row.
    const wsrep: Array<{ Value?: string }> = await runner.query("SHOW VARIABLES LIKE 'wsrep_on'");
    this.galera = wsrep.length > 0 && String(wsrep[0].Value).toUpperCase() === 'ON';
    // Galera applies other nodes' commits a moment after they certify, and a node cut off from
    // its peers (or just resumed after a pause) answers from old state until it sees that it
    // was left out: every unit of work is causal (wsrep_sync_wait = 1 covers SELECT and START
    // TRANSACTION: the node first applies everything the cluster committed before it, and fails
    // when it is no longer part of the cluster). Writes too: the checks a transaction makes
    // before it writes (erasure, an earlier write with the same request id) must not rest on a
    // lagging node's rows. No unit may opt out: an option one call could forget is how a check
    // once answered ALLOW from a resumed node's old state (751fb9d, fixed in 01b0370).
    if (this.galera) await runner.query('SET SESSION wsrep_sync_wait = 1');
    this.prepared.add(connection);
  }
}

/** How long a unit of work (with its retries) may take, and what ends it early. */
class Budget {
  private constructor(
    readonly expiresAt: number,
    /** Whether our own limit or the caller's deadline is the nearer end. */
    private readonly limitedBy: 'database' | 'caller',
    private readonly limitMs: number,
    readonly signal: AbortSignal | undefined,
  ) {}

  static now(timeouts: DatabaseTimeouts): Budget {
    const now = Date.now();
    const call = currentCallBudget();
    if (!call) return new Budget(now + timeouts.backgroundMs, 'database', timeouts.backgroundMs, undefined);
    const own = now + timeouts.callMs;
    return call.deadline < own ? new Budget(call.deadline, 'caller', 0, call.signal) : new Budget(own, 'database', timeouts.callMs, call.signal);
  }

  remainingMs(): number {
    return this.expiresAt - Date.now();
  }

  expired(): DomainError {
    return this.limitedBy === 'caller'
      ? new DomainError('DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED', 'the call passed its deadline before the database answered')
      : databaseUnavailable(`the database did not answer within ${this.limitMs} ms`);
  }
}

/** One attempt of a unit of work, which the runner may give up on while it is still running. */
class Unit {
  abandoned = false;
  private reason: unknown;
  private readonly hooks: Array<() => void> = [];

  constructor(private readonly onAbandon: (reason: unknown) => void) {}

  /** Called once, when the runner gives up (before the caller hears of it). */
  onGiveUp(hook: () => void): void {
    this.hooks.push(hook);
  }

  giveUp(reason: unknown): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.reason = reason;
    for (const hook of this.hooks) hook();
    this.onAbandon(reason);
  }

  /** Throws when given up: the attempt's remaining steps must not run. */
  check(): void {
    if (this.abandoned) throw this.reason;
  }

  /** Waits for a connection or a turn, for at most `ms`; an overloaded database is UNAVAILABLE, not a queue without end. */
  async acquire<T>(waiting: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        waiting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const err = databaseUnavailable(`no database connection was free within ${ms} ms`);
            this.giveUp(err);
            reject(err);
          }, ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function cancelled(): DomainError {
  return new DomainError('ABORTED', 'CANCELLED', 'the call was cancelled or passed its deadline before the database answered');
}

/** The parts of a mysql2 pool connection (callback API) the runner touches. */
interface Mysql2Connection {
  release(): void;
  destroy(): void;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  stream?: { destroy(err?: Error): void };
}

function connectionOf(runner: QueryRunner): Mysql2Connection | undefined {
  return (runner as unknown as { databaseConnection?: Mysql2Connection }).databaseConnection;
}

const destroyed = new WeakSet<Mysql2Connection>();

/**
 * Takes a connection out of the pool and closes it now. mysql2's destroy() alone waits for the
 * server to acknowledge, which a stopped server never does; destroying the socket with an error
 * also fails the statement in flight at once (code CONSENT_DB_ABANDONED, see db-errors.ts).
 */
function destroyConnection(runner: QueryRunner): void {
  const connection = connectionOf(runner);
  if (!connection || destroyed.has(connection)) return;
  destroyed.add(connection);
  connection.on('error', () => undefined); // the socket's error below is expected; nothing else listens for it
  connection.destroy();
  const reason = Object.assign(new Error('the unit of work was given up: the database did not answer in time'), { code: 'CONSENT_DB_ABANDONED' });
  connection.stream?.destroy(reason);
}

/**
 * Tells TypeORM's query runner that a transaction is open (one this runner began with its own
 * BEGIN IMMEDIATE), so that its entity operations join it instead of beginning another, and its
 * commitTransaction()/rollbackTransaction() end it.
 */
function markTransactionStarted(runner: QueryRunner): void {
  const state = runner as unknown as { isTransactionActive: boolean; transactionDepth: number };
  state.isTransactionActive = true;
  state.transactionDepth = 1;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
