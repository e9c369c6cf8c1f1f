import { DataSource, Migration, MigrationExecutor, QueryRunner } from 'typeorm';
import { classifyDbError } from './db-errors';
import { MIGRATION_LOCK_TABLE, MigrationLockEvents, withMigrationLock } from './migration-lock';

/** Which of the two databases: they have separate schemas and separate migration lists. */
export type Store = 'data' | 'keys';

export interface MigrationEvents extends MigrationLockEvents {
  /** An empty MySQL database was switched to the binary collation. */
  collationSwitched?(previous: string): void;
}

/**
 * Brings the schema of `dataSource` up to date, holding the migration lock so that processes
 * started together migrate one after the other (the later ones find nothing left to do).
 * Resolves with the names of the migrations this process applied.
 */
export async function migrateSchema(dataSource: DataSource, store: Store, events: MigrationEvents = {}): Promise<string[]> {
  return withMigrationLock(dataSource, events, async () => {
    if (isMysql(dataSource)) await ensureBinaryCollation(dataSource, store, events);
    const applied = dataSource.options.type === 'better-sqlite3' ? await runSqliteMigrations(dataSource) : await dataSource.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  });
}

/** How often BEGIN IMMEDIATE is tried when busy_timeout passed with the file's write lock still taken. */
const BEGIN_ATTEMPTS = 5;

/**
 * SQLite: each migration in its own transaction (as `transaction: 'each'`), begun with BEGIN
 * IMMEDIATE instead of TypeORM's deferred BEGIN. TypeORM reads a table before it alters it
 * (addColumn, dropColumn), and a deferred transaction that has read is answered SQLITE_BUSY at
 * once, without waiting for busy_timeout, when its first write finds the file's write lock taken
 * by another connection, however briefly: the lock's own renewal, a replica started beside this
 * one, a service writing. IMMEDIATE takes the write lock first, waiting up to busy_timeout (and
 * is tried again a few times), so nothing inside the transaction can be answered busy.
 */
async function runSqliteMigrations(dataSource: DataSource): Promise<Migration[]> {
  const runner = dataSource.createQueryRunner();
  runner.startTransaction = () => beginImmediate(runner);
  const executor = new MigrationExecutor(dataSource, runner);
  executor.transaction = 'each';
  try {
    return await executor.executePendingMigrations();
  } finally {
    await runner.release();
  }
}

async function beginImmediate(runner: QueryRunner): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await runner.query('BEGIN IMMEDIATE');
      break;
    } catch (err) {
      if (classifyDbError(err) !== 'busy' || attempt >= BEGIN_ATTEMPTS) throw err;
    }
    // Between tries the event loop runs (busy_timeout blocks it): the lock's renewal among others.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // What TypeORM's own startTransaction records, so that its commit and rollback end this one.
  const state = runner as unknown as { isTransactionActive: boolean; transactionDepth: number };
  state.isTransactionActive = true;
  state.transactionDepth = 1;
}

/**
 * Checks, without changing anything, that the schema is the one this version expects
 * (RUN_MIGRATIONS=false): reads only, creates no table, alters nothing. Throws with what to do.
 */
export async function checkSchema(dataSource: DataSource, store: Store): Promise<void> {
  if (isMysql(dataSource)) {
    const schema = await databaseCollation(dataSource);
    if (schema && !/_bin$/.test(schema.collation)) throw wrongCollation(store, schema.collation);
  }
  const pending = await new MigrationExecutor(dataSource).getPendingMigrations();
  if (pending.length > 0) {
    throw new Error(
      `the ${label(store)} schema is behind this version (${pending.length} migration(s) pending); run \`npm run migrate\` ` +
        '(or start with RUN_MIGRATIONS=true)',
    );
  }
}

/**
 * Ids, request ids and blind indexes are compared byte for byte; a case-insensitive collation
 * (MySQL's default utf8mb4_general_ci / 0900_ai_ci) would make `Req-A` and `req-a` one request.
 * An empty database is switched to utf8mb4_bin; a database with tables must be fixed by hand.
 * Runs under the migration lock (whose own table does not count as content).
 */
async function ensureBinaryCollation(dataSource: DataSource, store: Store, events: MigrationEvents): Promise<void> {
  const schema = await databaseCollation(dataSource);
  if (!schema || /_bin$/.test(schema.collation)) return;
  const [tables] = await dataSource.query('SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> ?', [
    MIGRATION_LOCK_TABLE,
  ]);
  if (Number(tables.n) > 0) throw wrongCollation(store, schema.collation);
  await dataSource.query(`ALTER DATABASE \`${schema.name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  events.collationSwitched?.(schema.collation);
}

async function databaseCollation(dataSource: DataSource): Promise<{ name: string; collation: string } | null> {
  const [schema] = await dataSource.query(
    'SELECT SCHEMA_NAME AS name, DEFAULT_COLLATION_NAME AS collation FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()',
  );
  return schema ? { name: String(schema.name), collation: String(schema.collation) } : null;
}

function wrongCollation(store: Store, collation: string): Error {
  return new Error(
    `the ${label(store)} uses collation ${collation}, which compares text case-insensitively; ` +
      'create it with CHARACTER SET utf8mb4 COLLATE utf8mb4_bin (docs/configuration.md)',
  );
}

function label(store: Store): string {
  return store === 'data' ? 'data database' : 'key store';
}

function isMysql(dataSource: DataSource): boolean {
  return dataSource.options.type === 'mysql' || dataSource.options.type === 'mariadb';
}
