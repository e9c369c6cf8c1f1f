import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { DatabaseConfig } from '../../src/config/config';

/** A database a suite runs against; `drop` removes it afterwards. */
export interface TestDatabase {
  label: 'sqlite' | 'mariadb';
  config: DatabaseConfig;
  /** The key store that goes with it: another SQLite file, or another MariaDB database. */
  keyStore: DatabaseConfig;
  dataDir: string;
  drop(): Promise<void>;
}

/**
 * Which databases the storage-backed suites run on: CONSENT_TEST_DATABASES=sqlite,mariadb
 * (the default, what CI runs). MariaDB is reached at MARIADB_URL (default root@127.0.0.1:3306).
 */
export function testDatabaseKinds(): Array<'sqlite' | 'mariadb'> {
  const raw = process.env.CONSENT_TEST_DATABASES ?? 'sqlite,mariadb';
  const kinds = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const kind of kinds) if (kind !== 'sqlite' && kind !== 'mariadb') throw new Error(`unknown test database "${kind}"`);
  return kinds as Array<'sqlite' | 'mariadb'>;
}

export const MARIADB_SERVER_URL = process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306';

/**
 * The start of every database name the tests create (CONSENT_TEST_DB_PREFIX, default
 * consent_test_), so a MariaDB user with rights on that one name pattern can run every suite:
 * `GRANT ALL ON \`ctest\\_%\`.* TO ...` with CONSENT_TEST_DB_PREFIX=ctest_ (README, Tests).
 */
export const TEST_DB_PREFIX = testDatabasePrefix(process.env.CONSENT_TEST_DB_PREFIX);

export function testDatabasePrefix(raw: string | undefined): string {
  const prefix = raw ?? 'consent_test_';
  // Names go into SQL unquoted and must stay under MariaDB's 64 characters with suffixes added.
  if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(prefix)) {
    throw new Error(`CONSENT_TEST_DB_PREFIX must be 1-32 characters of A-Z a-z 0-9 _, starting with a letter (got "${prefix}")`);
  }
  return prefix;
}

/** A fresh database name under the test prefix; `label` says which suite made it. */
export function testDatabaseName(label = ''): string {
  return `${TEST_DB_PREFIX}${label ? `${label}_` : ''}${randomBytes(6).toString('hex')}`;
}

/**
 * How to run mysqldump against MARIADB_URL's server as its user: host, port and user as
 * arguments, the password (if the URL has one) in MYSQL_PWD, never on the command line.
 */
export function mysqldumpCommand(database: string, options: string[] = []): { args: string[]; env: NodeJS.ProcessEnv } {
  const server = new URL(MARIADB_SERVER_URL);
  const args = ['-h', server.hostname, '-P', server.port || '3306', '-u', decodeURIComponent(server.username) || 'root', ...options, database];
  return { args, env: server.password ? { ...process.env, MYSQL_PWD: decodeURIComponent(server.password) } : process.env };
}

/** A fresh, empty database of the given kind. */
export async function createTestDatabase(kind: 'sqlite' | 'mariadb'): Promise<TestDatabase> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'consent-test-'));
  if (kind === 'sqlite') {
    return {
      label: 'sqlite',
      config: { kind: 'sqlite', file: path.join(dataDir, 'ledger.sqlite') },
      keyStore: { kind: 'sqlite', file: path.join(dataDir, 'keys.sqlite') },
      dataDir,
      drop: async () => rmSync(dataDir, { recursive: true, force: true }),
    };
  }
  const name = testDatabaseName();
  const admin = await mysql.createConnection(MARIADB_SERVER_URL);
  try {
    await admin.query(`CREATE DATABASE ${name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
    await admin.query(`CREATE DATABASE ${name}_keys CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await admin.end();
  }
  return {
    label: 'mariadb',
    config: { kind: 'mysql', url: `${MARIADB_SERVER_URL}/${name}`, poolSize: 10 },
    keyStore: { kind: 'mysql', url: `${MARIADB_SERVER_URL}/${name}_keys`, poolSize: 4 },
    dataDir,
    drop: async () => {
      const conn = await mysql.createConnection(MARIADB_SERVER_URL);
      try {
        await conn.query(`DROP DATABASE IF EXISTS ${name}`);
        await conn.query(`DROP DATABASE IF EXISTS ${name}_keys`);
      } finally {
        await conn.end();
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs `define` once per configured database, inside a describe block named after it. */
export function forEachDatabase(title: string, define: (db: () => TestDatabase, kind: 'sqlite' | 'mariadb') => void): void {
  for (const kind of testDatabaseKinds()) {
    describe(`${title} [${kind}]`, function () {
      let db: TestDatabase;
      before(async function () {
        db = await createTestDatabase(kind);
      });
      after(async function () {
        await db?.drop();
      });
      define(() => db, kind);
    });
  }
}
