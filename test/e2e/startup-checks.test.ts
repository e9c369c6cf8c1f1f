import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { forEachDatabase, MARIADB_SERVER_URL, TestDatabase } from '../support/databases';
import { startServerProcess } from '../support/server-process';

/** better-sqlite3, opened read-only: looking must not change what is looked at. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Sqlite = require('better-sqlite3') as new (file: string, options: { readonly: boolean }) => {
  prepare(sql: string): { all(...params: unknown[]): unknown[] };
  close(): void;
};

async function admin<T>(work: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const connection = await mysql.createConnection(MARIADB_SERVER_URL);
  try {
    return await work(connection);
  } finally {
    await connection.end();
  }
}

function databaseName(url: string): string {
  return new URL(url).pathname.slice(1);
}

/**
 * Everything a start could change in the two stores, as comparable text: for MariaDB whether
 * each database exists, its collation, every table, column (type, collation), index, and the
 * rows of schema_migrations; for SQLite whether each file exists, its sqlite_master and the rows
 * of schema_migrations.
 */
async function snapshot(db: TestDatabase): Promise<string> {
  const parts: string[] = [];
  for (const config of [db.config, db.keyStore]) {
    if (config.kind === 'sqlite') {
      if (!existsSync(config.file)) {
        parts.push(`${config.file}: absent`);
        continue;
      }
      const file = new Sqlite(config.file, { readonly: true });
      try {
        parts.push(JSON.stringify(file.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name').all()));
        const hasMigrations = file.prepare("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").all().length > 0;
        if (hasMigrations) parts.push(JSON.stringify(file.prepare('SELECT * FROM schema_migrations ORDER BY id').all()));
      } finally {
        file.close();
      }
      continue;
    }
    const name = databaseName(config.url);
    parts.push(
      await admin(async (c) => {
        const [schema] = await c.query('SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [name]);
        const [columns] = await c.query(
          'SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION',
          [name],
        );
        const [indexes] = await c.query(
          'SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX',
          [name],
        );
        const [tables] = await c.query('SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME', [name]);
        const hasMigrations = (tables as Array<{ TABLE_NAME: string }>).some((t) => t.TABLE_NAME === 'schema_migrations');
        const migrations = hasMigrations ? (await c.query(`SELECT * FROM \`${name}\`.schema_migrations ORDER BY id`))[0] : null;
        return JSON.stringify({ name, schema, tables, columns, indexes, migrations });
      }),
    );
  }
  return parts.join('\n');
}

/** Starts the service as its own process and expects it to refuse to start; resolves with its output. */
async function expectRefusal(db: TestDatabase, env: Record<string, string>): Promise<string> {
  const server = await startServerProcess(db, { waitForServing: false, env });
  const code = await Promise.race([server.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 60_000))]);
  if (code === 'still running') await server.stop(1000);
  expect(code, server.output()).to.not.equal(0);
  expect(code, server.output()).to.not.equal('still running');
  return server.output();
}

forEachDatabase('start-up checks', (db, kind) => {
  let rootKeys: string;
  before(function () {
    rootKeys = path.join(db().dataDir, 'root-keys.json');
    writeFileSync(rootKeys, JSON.stringify({ keys: [{ kty: 'oct', kid: 'startup-root', k: randomBytes(32).toString('base64url') }] }), { mode: 0o600 });
  });

  it('a port in use fails the start at once, naming the port, before anything is migrated', async function () {
    this.timeout(60_000);
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const before = await snapshot(db());
      const output = await expectRefusal(db(), { PORT: String(port), ROOT_KEYS_FILE: rootKeys });
      expect(output).to.include(`port ${port} is already in use`);
      expect(await snapshot(db()), 'nothing was migrated').to.equal(before);
      expect(existsSync(path.join(db().dataDir, 'root-keys.dev.json')), 'no development key was generated').to.equal(false);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('RUN_MIGRATIONS=false on a database that was never migrated refuses to start and creates or alters nothing', async function () {
    this.timeout(60_000);
    if (kind === 'mariadb') {
      // The situation the service would "fix" with migrations on: a case-insensitive empty data
      // database and no key store database at all.
      const data = databaseName((db().config as { url: string }).url);
      const keys = databaseName((db().keyStore as { url: string }).url);
      await admin(async (c) => {
        await c.query(`ALTER DATABASE \`${data}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
        await c.query(`DROP DATABASE IF EXISTS \`${keys}\``);
      });
    }
    const before = await snapshot(db());
    const output = await expectRefusal(db(), { RUN_MIGRATIONS: 'false', ROOT_KEYS_FILE: rootKeys });
    expect(output).to.match(kind === 'sqlite' ? /does not exist; create it with `npm run migrate`/ : /collation utf8mb4_general_ci|npm run migrate/);
    expect(await snapshot(db())).to.equal(before);
    if (kind === 'mariadb') {
      const data = databaseName((db().config as { url: string }).url);
      const keys = databaseName((db().keyStore as { url: string }).url);
      await admin(async (c) => {
        await c.query(`ALTER DATABASE \`${data}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
        await c.query(`CREATE DATABASE \`${keys}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
      });
    }
  });

  it('RUN_MIGRATIONS=false on an up-to-date database serves and changes nothing; one migration behind, it refuses', async function () {
    this.timeout(120_000);
    const migrating = await startServerProcess(db(), { env: { ROOT_KEYS_FILE: rootKeys } });
    await migrating.stop();

    const before = await snapshot(db());
    const server = await startServerProcess(db(), { env: { RUN_MIGRATIONS: 'false', ROOT_KEYS_FILE: rootKeys } });
    expect(await server.health()).to.equal('SERVING');
    await server.stop();
    expect(await snapshot(db())).to.equal(before);

    // Forget the last migration, as a database restored from an older version would.
    const forget = "DELETE FROM schema_migrations WHERE name = (SELECT name FROM (SELECT MAX(name) AS name FROM schema_migrations) AS newest)";
    const config = db().config;
    if (config.kind === 'sqlite') {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const writable = new (require('better-sqlite3') as new (file: string) => { exec(sql: string): void; close(): void })(config.file);
      writable.exec(forget);
      writable.close();
    } else {
      await admin((c) => c.query(`USE \`${databaseName(config.url)}\``).then(() => c.query(forget)));
    }
    const behind = await snapshot(db());
    const output = await expectRefusal(db(), { RUN_MIGRATIONS: 'false', ROOT_KEYS_FILE: rootKeys });
    expect(output).to.include('schema is behind this version (1 migration(s) pending)');
    expect(await snapshot(db())).to.equal(behind);
  });
});
