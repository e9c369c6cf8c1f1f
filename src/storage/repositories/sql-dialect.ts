import { EntityManager } from 'typeorm';

/** The few SQL differences between SQLite and MySQL that hand-written hot-path queries meet. */
export function forUpdate(manager: EntityManager): string {
  // SQLite serialises writers itself (one connection, one lock in TypeormTransactionRunner).
  return manager.connection.options.type === 'better-sqlite3' ? '' : ' FOR UPDATE';
}

/** `?, ?, ?` for an IN list. */
export function placeholders(count: number): string {
  return new Array(count).fill('?').join(', ');
}

/** BIGINT columns arrive as strings from MySQL in raw queries. */
export function num(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

export function optNum(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : num(value);
}
