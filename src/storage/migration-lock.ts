import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import mysql from 'mysql2/promise';
import { DataSource } from 'typeorm';
import { classifyDbError } from './db-errors';
import { timeoutsOf } from './data-source';

/** The table that holds the lock row; created with CREATE TABLE IF NOT EXISTS before any migration. */
export const MIGRATION_LOCK_TABLE = 'schema_migration_lock';
const LOCK_NAME = 'schema';

/** What a process sees while it waits for or holds the lock (the caller logs it). */
export interface MigrationLockEvents {
  /** Another process holds the lock; said when the wait starts and every `reportEveryMs` after. */
  waiting?(info: { holder: string; expiresInMs: number; waitedMs: number }): void;
  /** This process holds the lock now; `waited`: another process held it first, for about `waitedMs`. */
  acquired?(info: { waited: boolean; waitedMs: number }): void;
  /** The lock's holder stopped renewing it and this process took it over. */
  tookOver?(info: { previousHolder: string }): void;
  /** This process's lock was taken over by another (it stopped renewing for longer than the lease). */
  lost?(): void;
}

export interface MigrationLockOptions extends MigrationLockEvents {
  /** Who holds the lock: host, process id and a random part. */
  holder?: string;
  /** How long the lock is valid without renewal; a holder that died is taken over after this. */
  leaseMs?: number;
  /** How often a waiting process tries again. */
  pollMs?: number;
  /** How often `waiting` is reported while the wait lasts. */
  reportEveryMs?: number;
}

/**
 * Mutual exclusion for schema migrations between processes that share a database: replicas
 * started together, a `migrate` job beside running services.
 *
 * A lock ROW, not GET_LOCK() or LOCK TABLES: those are local to one server and Galera does not
 * replicate them, so two replicas on two nodes would both "hold" them. An INSERT of the one row
 * with a fixed primary key is ordered by the database itself: on one server by the unique key, on
 * Galera by certification (two nodes inserting it at once: one gets a deadlock error at commit).
 * The same SQL works on MySQL, MariaDB, Galera and SQLite.
 *
 * The row names its holder and carries a lease (expires_at, on the database's clock so that
 * replicas with different clocks agree). The holder renews it every third of the lease; a holder
 * that died stops renewing, and a waiter takes the row over once the lease has passed, with a
 * conditional UPDATE only one waiter can win. Release deletes the row.
 *
 * The lock works on a connection of its own (autocommit), apart from the one migrations run on:
 * renewals must commit while a long migration runs, and on SQLite a migration's transaction must
 * not swallow them. On SQLite that connection never waits for the file's lock (busy_timeout 0):
 * a busy file just means "try again" (at the next poll; on creating the table and on release as
 * well), without blocking the process; and while the row is held, waiters only read, so they never
 * take the file's write lock from under the holder's migrations.
 */
export class MigrationLock {
  private renewal: NodeJS.Timeout | undefined;
  private held = false;
  private readonly holder: string;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly reportEveryMs: number;

  private constructor(
    private readonly connection: LockConnection,
    private readonly options: MigrationLockOptions,
  ) {
    this.holder = options.holder ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.pollMs = options.pollMs ?? 500;
    this.reportEveryMs = options.reportEveryMs ?? 10_000;
  }

  /** Opens the lock's own connection to the database of `dataSource` and creates the lock table if needed. */
  static async open(dataSource: DataSource, options: MigrationLockOptions = {}): Promise<MigrationLock> {
    const connection = await openLockConnection(dataSource);
    const lock = new MigrationLock(connection, options);
    try {
      // Replicas started together on an empty SQLite file all create the table: one that finds
      // another writing the file is answered busy at once (this connection does not wait), and
      // tries again at the next poll, for as long as a lease, rather than fail the start.
      const giveUpAt = Date.now() + lock.leaseMs;
      for (;;) {
        try {
          await connection.execute(connection.createTableSql);
          break;
        } catch (err) {
          if (!isTransient(err) || Date.now() >= giveUpAt) throw err;
        }
        await pause(lock.pollMs);
      }
    } catch (err) {
      await connection.close();
      throw err;
    }
    return lock;
  }

  /** This lock's holder id, as the row and the logs show it. */
  get holderId(): string {
    return this.holder;
  }

  /** Waits until this process holds the lock; resolves with whether and how long it waited. */
  async acquire(): Promise<{ waited: boolean; waitedMs: number }> {
    const started = Date.now();
    let lastReport = -Infinity;
    let waited = false;
    for (;;) {
      const seen = await this.tryAcquire();
      if (seen === null) {
        this.held = true;
        this.renewal = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.leaseMs / 3)));
        this.renewal.unref();
        return { waited, waitedMs: Date.now() - started };
      }
      waited = true;
      const now = Date.now();
      if (seen.holder && now - lastReport >= this.reportEveryMs) {
        lastReport = now;
        this.options.waiting?.({ holder: seen.holder, expiresInMs: Math.max(0, seen.expiresInMs), waitedMs: now - started });
      }
      await new Promise((resolve) => setTimeout(resolve, this.pollMs));
    }
  }

  /** Gives the lock up (if this process still holds it) and closes the lock's connection. */
  async release(): Promise<void> {
    clearInterval(this.renewal);
    try {
      // A busy file (another process writes it this moment) is tried again a few times: the
      // others would otherwise wait for the lease to run out, and one would "take over".
      for (let attempt = 1; this.held; attempt++) {
        try {
          await this.connection.execute(`DELETE FROM ${MIGRATION_LOCK_TABLE} WHERE name = ? AND holder = ?`, [LOCK_NAME, this.holder]);
          break;
        } catch (err) {
          if (!isTransient(err) || attempt >= RELEASE_ATTEMPTS) throw err;
        }
        await pause(RELEASE_PAUSE_MS);
      }
    } catch {
      // Not released: the lease runs out and the next process takes the row over.
    } finally {
      this.held = false;
      await this.connection.close();
    }
  }

  /**
   * One attempt: null when this process now holds the lock, else who holds it and for how much
   * longer ({ holder: '' } when the attempt could not tell, e.g. the file was busy).
   *
   * It reads before it writes: while another process holds the lock, a waiter only reads. On
   * SQLite any write, even an INSERT that fails on the key, takes the file's write lock for a
   * moment, and a migration's transaction that meets it there may be answered SQLITE_BUSY.
   */
  private async tryAcquire(): Promise<{ holder: string; expiresInMs: number } | null> {
    const now = this.connection.nowSql;
    try {
      let row = await this.currentHolder();
      if (!row) {
        try {
          await this.connection.execute(
            `INSERT INTO ${MIGRATION_LOCK_TABLE} (name, holder, acquired_at, expires_at) VALUES (?, ?, ${now}, ${now} + ?)`,
            [LOCK_NAME, this.holder, this.leaseMs],
          );
          return null;
        } catch (err) {
          if (classifyDbError(err) !== 'conflict') throw err;
        }
        row = await this.currentHolder(); // another process took it just now
        if (!row) return { holder: '', expiresInMs: 0 }; // and released it already: try again
      }
      const remaining = Number(row.remaining);
      if (remaining >= 0) return { holder: row.holder, expiresInMs: remaining };
      // The holder stopped renewing: take the row over, unless another waiter just did.
      const changed = await this.connection.execute(
        `UPDATE ${MIGRATION_LOCK_TABLE} SET holder = ?, acquired_at = ${now}, expires_at = ${now} + ? WHERE name = ? AND holder = ? AND expires_at < ${now}`,
        [this.holder, this.leaseMs, LOCK_NAME, row.holder],
      );
      if (changed === 1) {
        this.options.tookOver?.({ previousHolder: row.holder });
        return null;
      }
      return { holder: row.holder, expiresInMs: 0 };
    } catch (err) {
      // A busy file (SQLite: this connection never waits; a read too can be answered busy, e.g.
      // while another process recovers the WAL) or a lost race (Galera): try again at the next poll.
      if (isTransient(err)) return { holder: '', expiresInMs: 0 };
      throw err;
    }
  }

  private async currentHolder(): Promise<{ holder: string; remaining: number | string } | undefined> {
    const [row] = await this.connection.rows<{ holder: string; remaining: number | string }>(
      `SELECT holder, expires_at - ${this.connection.nowSql} AS remaining FROM ${MIGRATION_LOCK_TABLE} WHERE name = ?`,
      [LOCK_NAME],
    );
    return row;
  }

  private async renew(): Promise<void> {
    if (!this.held) return;
    const now = this.connection.nowSql;
    try {
      const changed = await this.connection.execute(
        `UPDATE ${MIGRATION_LOCK_TABLE} SET expires_at = ${now} + ? WHERE name = ? AND holder = ?`,
        [this.leaseMs, LOCK_NAME, this.holder],
      );
      if (changed === 0) {
        this.held = false;
        clearInterval(this.renewal);
        this.options.lost?.();
      }
    } catch {
      // A busy file or a slow server: the next renewal tries again, well within the lease.
    }
  }
}

/** How often release() tries to delete the row of a busy file, and the pause between tries. */
const RELEASE_ATTEMPTS = 20;
const RELEASE_PAUSE_MS = 50;

/** A busy file or a lost race: the same statement can succeed a moment later. */
function isTransient(err: unknown): boolean {
  const failure = classifyDbError(err);
  return failure === 'busy' || failure === 'retryable';
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `work` while holding the migration lock of `dataSource`'s database. */
export async function withMigrationLock<T>(dataSource: DataSource, options: MigrationLockOptions, work: () => Promise<T>): Promise<T> {
  // An in-memory SQLite database belongs to this one connection: nobody else can migrate it.
  if (dataSource.options.type === 'better-sqlite3' && dataSource.options.database === ':memory:') return work();
  const lock = await MigrationLock.open(dataSource, options);
  try {
    options.acquired?.(await lock.acquire());
    return await work();
  } finally {
    await lock.release();
  }
}

/** The part of better-sqlite3's API the lock uses. */
type SqliteConstructor = new (
  file: string,
  options: { timeout: number },
) => {
  prepare(sql: string): { run(...params: unknown[]): { changes: number }; all(...params: unknown[]): unknown[] };
  close(): void;
};

/** Autocommit statements on a connection of the lock's own. */
interface LockConnection {
  /** The database's clock in epoch milliseconds, as an SQL expression. */
  readonly nowSql: string;
  readonly createTableSql: string;
  /** Runs a statement; resolves with the number of rows it changed. */
  execute(sql: string, params?: unknown[]): Promise<number>;
  rows<T>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

async function openLockConnection(dataSource: DataSource): Promise<LockConnection> {
  const options = dataSource.options as { type: string; database?: unknown; url?: string };
  const timeouts = timeoutsOf(dataSource);
  if (options.type === 'better-sqlite3') {
    // better-sqlite3 as TypeORM loaded it (the project has no type declarations for it).
    const Sqlite = (dataSource.driver as unknown as { sqlite: SqliteConstructor }).sqlite;
    const db = new Sqlite(String(options.database), { timeout: 0 });
    return {
      nowSql: `CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`,
      createTableSql:
        `CREATE TABLE IF NOT EXISTS ${MIGRATION_LOCK_TABLE} (name TEXT NOT NULL PRIMARY KEY, holder TEXT NOT NULL, ` +
        'acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)',
      execute: async (sql, params = []) => db.prepare(sql).run(...params).changes,
      rows: async <T>(sql: string, params: unknown[] = []) => db.prepare(sql).all(...params) as T[],
      close: async () => void db.close(),
    };
  }
  const connection = await mysql.createConnection({ uri: options.url, connectTimeout: timeouts.connectMs });
  connection.on('error', () => undefined); // a lost connection fails the next statement, which reports it
  // Every statement is bounded: a server that stops answering fails the start instead of hanging it.
  const bounded = async <T>(statement: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        statement,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            connection.destroy();
            reject(Object.assign(new Error(`the database did not answer the migration lock within ${timeouts.backgroundMs} ms`), { code: 'ETIMEDOUT' }));
          }, timeouts.backgroundMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    nowSql: 'CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED)',
    createTableSql:
      `CREATE TABLE IF NOT EXISTS ${MIGRATION_LOCK_TABLE} (name VARCHAR(64) NOT NULL PRIMARY KEY, holder VARCHAR(200) NOT NULL, ` +
      'acquired_at BIGINT NOT NULL, expires_at BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin',
    execute: async (sql, params = []) => {
      const [result] = await bounded(connection.query(sql, params));
      return (result as { affectedRows?: number }).affectedRows ?? 0;
    },
    rows: async <T>(sql: string, params: unknown[] = []) => {
      const [rows] = await bounded(connection.query(sql, params));
      return rows as T[];
    },
    close: async () => {
      await connection.end().catch(() => connection.destroy());
    },
  };
}
