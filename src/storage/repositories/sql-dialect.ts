import { EntityManager } from 'typeorm';

/** The few SQL differences between SQLite and MySQL that hand-written hot-path queries meet. */
export function forUpdate(manager: EntityManager): string {
  // SQLite serialises writers itself (one connection, one lock in TypeormTransactionRunner).
  return manager.connection.options.type === 'better-sqlite3' ? '' : ' FOR UPDATE';
}

/** A shared lock on the rows read: concurrent readers go on, a writer of those rows waits for the transaction. */
export function forShare(manager: EntityManager): string {
  // SQLite: BEGIN IMMEDIATE already holds the file's write lock (see forUpdate).
  return manager.connection.options.type === 'better-sqlite3' ? '' : ' LOCK IN SHARE MODE';
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
 * Inserts `rows` (each the values of `columns`, in order). MySQL: multi-row INSERT statements, one
 * round trip per ROWS_PER_STATEMENT rows instead of one per row. SQLite (in-process, no round
 * trips): one prepared single-row statement run per row, since compiling a statement of hundreds
 * of rows costs more than running a prepared one that many times, and statements of every other
 * row count would each be compiled anew.
 */
export async function insertRows(manager: EntityManager, table: string, columns: readonly string[], rows: unknown[][]): Promise<void> {
  if (rows.length === 0) return;
  const single = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${placeholders(columns.length)})`;
  const sqlite = sqliteDatabase(manager);
  if (sqlite) {
    runEach(sqlite, single, rows);
    return;
  }
  for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
    const chunk = rows.slice(start, start + ROWS_PER_STATEMENT);
    const tuple = `(${placeholders(columns.length)})`;
    await manager.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${chunk.map(() => tuple).join(', ')}`, chunk.flat());
  }
}

/** What of a better-sqlite3 database the bulk statements use. */
interface SqliteDatabase {
  prepare(sql: string): { run(...params: unknown[]): unknown };
}

const preparedBySqlite = new WeakMap<object, Map<string, { run(...params: unknown[]): unknown }>>();

/** The better-sqlite3 connection behind a SQLite manager (the service has one), or null for MySQL. */
function sqliteDatabase(manager: EntityManager): SqliteDatabase | null {
  if (manager.connection.options.type !== 'better-sqlite3') return null;
  return (manager.connection.driver as unknown as { databaseConnection: SqliteDatabase }).databaseConnection;
}

/** Runs one prepared statement (kept per connection) once per row. */
function runEach(db: SqliteDatabase, sql: string, rows: unknown[][]): void {
  let statements = preparedBySqlite.get(db);
  if (!statements) preparedBySqlite.set(db, (statements = new Map()));
  let statement = statements.get(sql);
  if (!statement) statements.set(sql, (statement = db.prepare(sql)));
  for (const row of rows) statement.run(...row.map((v) => (typeof v === 'boolean' ? Number(v) : v)));
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
  if (rows.length === 0) return;
  const columns = [...keyColumns, ...updateColumns];
  const sqlite = sqliteDatabase(manager);
  if (sqlite) {
    const onConflict = `ON CONFLICT (${keyColumns.join(', ')}) DO UPDATE SET ${updateColumns.map((c) => `${c} = excluded.${c}`).join(', ')}`;
    runEach(sqlite, `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${placeholders(columns.length)}) ${onConflict}`, rows);
    return;
  }
  const onConflict = `ON DUPLICATE KEY UPDATE ${updateColumns.map((c) => `${c} = VALUES(${c})`).join(', ')}`;
  for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
    const chunk = rows.slice(start, start + ROWS_PER_STATEMENT);
    const tuple = `(${placeholders(columns.length)})`;
    await manager.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${chunk.map(() => tuple).join(', ')} ${onConflict}`, chunk.flat());
  }
}
