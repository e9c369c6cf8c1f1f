import 'reflect-metadata';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { DataSource, DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { KEYSTORE_MIGRATIONS } from '../../migrations/keystore';
import { KEYSTORE_ENTITIES } from './keystore/entities';
import { DatabaseConfig, DatabaseTimeouts, DEFAULT_DATABASE_TIMEOUTS } from '../config/config';
import { ENTITIES } from './entities';
import { SQLITE_AUTOCHECKPOINT_FALLBACK_PAGES } from './sqlite-checkpointer';

/** The timeouts each data source was built with; its transaction runner and probe read them. */
const TIMEOUTS = new WeakMap<DataSource, DatabaseTimeouts>();

/** The timeouts `dataSource` was built with (the defaults for one built elsewhere). */
export function timeoutsOf(dataSource: DataSource): DatabaseTimeouts {
  return TIMEOUTS.get(dataSource) ?? DEFAULT_DATABASE_TIMEOUTS;
}

/**
 * Builds (does not connect) the TypeORM data source for the configured database. For MySQL
 * URLs it first asks the server whether it is MariaDB: TypeORM reads MariaDB's information
 * schema differently (column defaults) and only does so when told the type is "mariadb".
 */
export async function createDataSource(
  config: DatabaseConfig,
  store: 'data' | 'keys' = 'data',
  timeouts: DatabaseTimeouts = DEFAULT_DATABASE_TIMEOUTS,
): Promise<DataSource> {
  if (config.kind === 'mysql' && !config.flavor) config = { ...config, flavor: await detectFlavor(config.url, timeouts) };
  const dataSource = buildDataSource(config, store, timeouts);
  TIMEOUTS.set(dataSource, timeouts);
  return dataSource;
}

/** Creates the MySQL database a URL names if it does not exist (the key store's default). */
export async function ensureMysqlDatabase(url: string, timeouts: DatabaseTimeouts = DEFAULT_DATABASE_TIMEOUTS): Promise<void> {
  const parsed = new URL(url);
  const name = databaseName(url);
  parsed.pathname = '/';
  await withServerConnection(parsed.toString(), timeouts, (connection) =>
    connection.query(`CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`),
  );
}

function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(name)) throw new Error('the database name may hold only letters, digits, _ and $');
  return name;
}

async function detectFlavor(url: string, timeouts: DatabaseTimeouts): Promise<'mysql' | 'mariadb'> {
  const [rows] = await withServerConnection(url, timeouts, (connection) => connection.query('SELECT VERSION() AS v'));
  return /mariadb/i.test(String((rows as Array<{ v: string }>)[0].v)) ? 'mariadb' : 'mysql';
}

/**
 * One short-lived connection for a start-up question, bounded as a unit of background work: a
 * server that accepts the connection and then hangs fails the start instead of stalling it.
 */
async function withServerConnection<T>(url: string, timeouts: DatabaseTimeouts, work: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const connection = await mysql.createConnection({ uri: url, connectTimeout: timeouts.connectMs });
  let timer: NodeJS.Timeout | undefined;
  let answered = false;
  try {
    const result = await Promise.race([
      work(connection),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(Object.assign(new Error(`the database server did not answer within ${timeouts.backgroundMs} ms`), { code: 'ETIMEDOUT' }));
        }, timeouts.backgroundMs);
      }),
    ]);
    answered = true;
    return result;
  } finally {
    clearTimeout(timer);
    if (answered) await connection.end().catch(() => undefined);
    else connection.destroy();
  }
}

function buildDataSource(config: DatabaseConfig, store: 'data' | 'keys', timeouts: DatabaseTimeouts): DataSource {
  const common = {
    entities: store === 'data' ? ENTITIES : KEYSTORE_ENTITIES,
    migrations: store === 'data' ? MIGRATIONS : KEYSTORE_MIGRATIONS,
    migrationsTableName: 'schema_migrations',
    logging: false,
  } as const;
  let options: DataSourceOptions;
  if (config.kind === 'sqlite') {
    if (config.file !== ':memory:') mkdirSync(path.dirname(config.file), { recursive: true });
    options = {
      ...common,
      type: 'better-sqlite3',
      database: config.file,
      prepareDatabase: (db: { pragma(sql: string): unknown }) => {
        // First, so that the pragmas below wait for another process opening the same file
        // (switching to WAL needs a moment of exclusive access) instead of failing. The wait
        // blocks this process's event loop, so it stays short.
        db.pragma(`busy_timeout = ${timeouts.sqliteBusyMs}`);
        // WAL lets readers proceed during a write; NORMAL sync is durable across process crashes.
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        // The WAL is copied into the file by the checkpointer's thread (sqlite-checkpointer.ts);
        // this connection does it itself only past a fallback threshold.
        db.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT_FALLBACK_PAGES}`);
        db.pragma('foreign_keys = ON');
        // Deleted rows are overwritten with zeros, in their pages and in freed pages: a destroyed
        // subject key must not stay in the file's free space, where a copy of the folder (a
        // backup) would carry it (crypto-shredding, docs/keys.md). The data file holds only
        // ciphertext and hashes of erased people; FAST zeroes what costs no extra writes there.
        db.pragma(store === 'keys' ? 'secure_delete = ON' : 'secure_delete = FAST');
      },
    };
  } else {
    options = {
      ...common,
      type: config.flavor ?? 'mysql',
      url: config.url,
      poolSize: config.poolSize,
      charset: 'utf8mb4_bin',
      // A server that accepts TCP and then says nothing (stopped, overloaded) fails the
      // connection after this long instead of holding a pool slot for ever.
      connectTimeout: timeouts.connectMs,
      // Waiting for a free connection is bounded by the transaction runner (acquire timeout).
      extra: { connectionLimit: config.poolSize, waitForConnections: true, queueLimit: 0, enableKeepAlive: true },
    };
  }
  return new DataSource(options);
}
