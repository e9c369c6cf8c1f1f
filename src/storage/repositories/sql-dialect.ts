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

/** Rows per multi-row statement: well under SQLite's 32,766 bound parameters and MySQL's packet size. */
const ROWS_PER_STATEMENT = 250;

/**
 * Inserts `rows` (each the values of `columns`, in order) with multi-row INSERT statements: one
 * round trip per ROWS_PER_STATEMENT rows instead of one per row.
 */
export async function insertRows(manager: EntityManager, table: string, columns: readonly string[], rows: unknown[][]): Promise<void> {
  for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
    const chunk = rows.slice(start, start + ROWS_PER_STATEMENT);
    const tuple = `(${placeholders(columns.length)})`;
    await manager.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${chunk.map(() => tuple).join(', ')}`, chunk.flat());
  }
}

/**
 * Inserts `rows`, or updates `updateColumns` of the rows whose primary key (`keyColumns`) exists:
 * `ON CONFLICT ... DO UPDATE` on SQLite, `ON DUPLICATE KEY UPDATE` on MySQL/MariaDB.
 */
export async function upsertRows(
  manager: EntityManager,
  table: string,
  keyColumns: readonly string[],
  updateColumns: readonly string[],
  rows: unknown[][],
): Promise<void> {
  const columns = [...keyColumns, ...updateColumns];
  const sqlite = manager.connection.options.type === 'better-sqlite3';
  const onConflict = sqlite
    ? `ON CONFLICT (${keyColumns.join(', ')}) DO UPDATE SET ${updateColumns.map((c) => `${c} = excluded.${c}`).join(', ')}`
    : `ON DUPLICATE KEY UPDATE ${updateColumns.map((c) => `${c} = VALUES(${c})`).join(', ')}`;
  for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
    const chunk = rows.slice(start, start + ROWS_PER_STATEMENT);
    const tuple = `(${placeholders(columns.length)})`;
    await manager.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${chunk.map(() => tuple).join(', ')} ${onConflict}`, chunk.flat());
  }
}
