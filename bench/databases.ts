import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { Config } from '../src/config/config';

const MARIADB = process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306';

/** A fresh database for an in-process benchmark, and how to drop it (with its `_keys` twin); null if MariaDB is unreachable. */
export async function benchDatabase(kind: string, label: string): Promise<{ config: Config['database'] & object; drop(): Promise<void> } | null> {
  if (kind === 'sqlite') {
    const dir = mkdtempSync(path.join(os.tmpdir(), `consent-bench-${label}-`));
    return { config: { kind: 'sqlite', file: path.join(dir, 'ledger.sqlite') }, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `consent_bench_${label}_${randomBytes(4).toString('hex')}`;
  try {
    const admin = await mysql.createConnection(MARIADB);
    await admin.query(`CREATE DATABASE ${name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
    await admin.end();
  } catch {
    return null;
  }
  return {
    config: { kind: 'mysql', url: `${MARIADB}/${name}`, poolSize: 10 },
    drop: async () => {
      const admin = await mysql.createConnection(MARIADB);
      await admin.query(`DROP DATABASE IF EXISTS ${name}`);
      await admin.query(`DROP DATABASE IF EXISTS ${name}_keys`);
      await admin.end();
    },
  };
}
