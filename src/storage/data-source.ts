import 'reflect-metadata';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DataSource, DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { DatabaseConfig } from '../config/config';
import { ENTITIES } from './entities';

/** Builds (does not connect) the TypeORM data source for the configured database. */
export function createDataSource(config: DatabaseConfig): DataSource {
  const common = { entities: ENTITIES, migrations: MIGRATIONS, migrationsTableName: 'schema_migrations', logging: false } as const;
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
      type: 'mysql',
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
