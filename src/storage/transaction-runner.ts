import { DataSource, EntityManager } from 'typeorm';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { classifyDbError, toDomainError } from './db-errors';

/** The EntityManager behind an opaque TxContext. Only storage code calls this. */
export function managerOf(tx: TxContext): EntityManager {
  return tx as unknown as EntityManager;
}

function contextOf(manager: EntityManager): TxContext {
  return manager as unknown as TxContext;
}

/** How often a write whose transaction hit a deadlock or a racing insert is run again. */
const WRITE_ATTEMPTS = 4;

/**
 * Runs units of work on TypeORM. Writes that collide with a concurrent write (deadlock, lock
 * timeout, a unique key inserted by a racing call) are rolled back and run again, so the domain
 * code re-reads what the winner committed (this is how idempotent retries converge).
 *
 * SQLite has one connection: TypeORM cannot nest or interleave transactions on it, and a read
 * between two statements of an open transaction would see uncommitted rows. So on SQLite every
 * unit of work, read or write, takes one in-process lock.
 */
export class TypeormTransactionRunner implements TransactionRunner {
  private readonly serialise: boolean;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly dataSource: DataSource) {
    this.serialise = dataSource.options.type === 'better-sqlite3';
  }

  async write<T>(work: (tx: TxContext) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.exclusive(() =>
          this.serialise
            ? this.dataSource.transaction((manager) => work(contextOf(manager)))
            : this.dataSource.transaction('READ COMMITTED', (manager) => work(contextOf(manager))),
        );
      } catch (err) {
        const failure = classifyDbError(err);
        if ((failure === 'retryable' || failure === 'conflict') && attempt < WRITE_ATTEMPTS) {
          await delay(attempt * 5 + Math.random() * 10);
          continue;
        }
        throw toDomainError(err);
      }
    }
  }

  async read<T>(work: (tx: TxContext) => Promise<T>): Promise<T> {
    try {
      return await this.exclusive(() => work(contextOf(this.dataSource.manager)));
    } catch (err) {
      throw toDomainError(err);
    }
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (!this.serialise) return work();
    const run = this.tail.then(work, work);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
