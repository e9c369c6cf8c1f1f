import 'reflect-metadata';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { DataSource, DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { KEYSTORE_MIGRATIONS } from '../../migrations/keystore';
import { KEYSTORE_ENTITIES } from './keystore/entities';
import { DatabaseConfig } from '../config/config';
import { ENTITIES } from './entities';

/**
 * Builds (does not connect) the TypeORM data source for the configured database. For MySQL
 * URLs it first asks the server whether it is MariaDB: TypeORM reads MariaDB's information
 * schema differently (column defaults) and only does so when told the type is "mariadb".
 */
export async function createDataSource(config: DatabaseConfig, store: 'data' | 'keys' = 'data'): Promise<DataSource> {
  if (config.kind === 'mysql' && !config.flavor) config = { ...config, flavor: await detectFlavor(config.url) };
  return buildDataSource(config, store);
}

/** Creates the MySQL database a URL names if it does not exist (the key store's default). */
export async function ensureMysqlDatabase(url: string): Promise<void> {
  const parsed = new URL(url);
  const name = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(name)) throw new Error('the database name may hold only letters, digits, _ and $');
  parsed.pathname = '/';
  const connection = await mysql.createConnection({ uri: parsed.toString(), connectTimeout: 5000 });
  try {
    await connection.query(`CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await connection.end();
  }
}

async function detectFlavor(url: string): Promise<'mysql' | 'mariadb'> {
  const connection = await mysql.createConnection({ uri: url, connectTimeout: 5000 });
  try {
    const [rows] = await connection.query('SELECT VERSION() AS v');
    return /mariadb/i.test(String((rows as Array<{ v: string }>)[0].v)) ? 'mariadb' : 'mysql';
  } finally {
    await connection.end();
  }
}

function buildDataSource(config: DatabaseConfig, store: 'data' | 'keys'): DataSource {
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
      // WAL lets readers proceed during a write; NORMAL sync is durable across process crashes.
      prepareDatabase: (db: { pragma(sql: string): unknown }) => {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        db.pragma('busy_timeout = 5000');
        db.pragma('foreign_keys = ON');
      },
    };
  } else {
    options = {
      ...common,
      type: config.flavor ?? 'mysql',
      url: config.url,
      poolSize: config.poolSize,
      charset: 'utf8mb4_bin',
      // Fail fast when the server is gone; the caller gets UNAVAILABLE rather than a hang.
      connectTimeout: 5000,
      extra: { connectionLimit: config.poolSize, waitForConnections: true, queueLimit: 0, enableKeepAlive: true },
    };
  }
  return new DataSource(options);
}
