import { execFile } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { DataSource } from 'typeorm';
import { DatabaseConfig } from '../../src/config/config';
import { MARIADB_SERVER_URL, mysqldumpCommand } from './databases';

const run = promisify(execFile);

/**
 * A copy of the data database as a backup would hold it: a file copy (after a WAL checkpoint) on
 * SQLite, mysqldump on MariaDB. `restore` loads it into a fresh database and returns its config.
 */
export async function dumpDatabase(config: DatabaseConfig, live: DataSource, label: string): Promise<{ restore(): Promise<DatabaseConfig> }> {
  if (config.kind === 'sqlite') {
    // Everything committed must be in the file before it is copied: a checkpoint that another
    // connection held up (the checkpointer thread, a reader) reports busy and is tried again.
    for (let i = 0; ; i++) {
      const [row] = (await live.query('PRAGMA wal_checkpoint(TRUNCATE)')) as Array<{ busy: number; log: number; checkpointed: number }>;
      if (Number(row.busy) === 0 && Number(row.log) === Number(row.checkpointed)) break;
      if (i >= 200) throw new Error('the WAL could not be checkpointed for the dump');
      await new Promise((r) => setTimeout(r, 25));
    }
    const copy = `${config.file}.${label}.bak`;
    copyFileSync(config.file, copy);
    return {
      async restore() {
        const restored = `${config.file}.${label}.restored`;
        copyFileSync(copy, restored);
        if (existsSync(`${restored}-wal`)) throw new Error('unexpected WAL beside a restored copy');
        return { kind: 'sqlite', file: restored };
      },
    };
  }
  const url = new URL(config.url);
  const dump = mysqldumpCommand(url.pathname.slice(1));
  const { stdout } = await run('mysqldump', dump.args, { env: dump.env, maxBuffer: 256 * 1024 * 1024 });
  return {
    async restore() {
      const name = `${url.pathname.slice(1)}_${label}`;
      const admin = await mysql.createConnection({ uri: MARIADB_SERVER_URL, multipleStatements: true });
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${name}; CREATE DATABASE ${name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin; USE ${name};`);
        await admin.query(stdout);
      } finally {
        await admin.end();
      }
      return { ...config, url: `${MARIADB_SERVER_URL}/${name}` };
    },
  };
}

/** Drops a database made by restore() (MariaDB only; SQLite copies go with their folder). */
export async function dropRestored(config: DatabaseConfig): Promise<void> {
  if (config.kind !== 'mysql') return;
  const admin = await mysql.createConnection(MARIADB_SERVER_URL);
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${new URL(config.url).pathname.slice(1)}`);
  } finally {
    await admin.end();
  }
}
