import { expect } from 'chai';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/logging/logger';
import { createDataSource } from '../../src/storage/data-source';
import { SQLITE_AUTOCHECKPOINT_FALLBACK_PAGES, SqliteCheckpointer } from '../../src/storage/sqlite-checkpointer';
import { createTestDatabase } from '../support/databases';
import { startTestServer } from '../support/test-server';

// better-sqlite3 as TypeORM loads it (the project has no type declarations for it).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Database = require('better-sqlite3') as new (file: string) => {
  pragma(sql: string, options?: { simple: boolean }): unknown;
  exec(sql: string): void;
  prepare(sql: string): { run(...params: unknown[]): unknown; get(...params: unknown[]): unknown };
  transaction(fn: () => void): () => void;
  close(): void;
};

function capturedLogger() {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { logger: createLogger('debug', stream), lines: () => Buffer.concat(chunks).toString('utf8') };
}

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('SqliteCheckpointer', function () {
  this.timeout(30_000);
  let dir: string;
  let checkpointers: SqliteCheckpointer[];

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'consent-checkpointer-'));
    checkpointers = [];
  });
  afterEach(async () => {
    await Promise.all(checkpointers.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** A WAL database as the service opens it, with `rows` rows of 1 KiB committed into the WAL only. */
  function walDatabase(rows: number) {
    const file = path.join(dir, 'data.sqlite');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT_FALLBACK_PAGES}`);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)');
    const insert = db.prepare('INSERT INTO t (body) VALUES (?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(Buffer.alloc(1024, i % 251));
    })();
    return { file, db };
  }

  const start = (file: string, logger = capturedLogger().logger, intervalMs = 20) => {
    const c = new SqliteCheckpointer(file, logger, intervalMs);
    checkpointers.push(c);
    return c;
  };

  it("copies committed pages into the database file from its own thread while the writer's connection stays open", async function () {
    const { file, db } = walDatabase(2000);
    try {
      const before = statSync(file).size;
      expect(before, 'the rows are in the WAL only: the fallback threshold was not reached').to.be.below(64 * 1024);
      const c = start(file);
      await until('the database file to hold the rows', () => statSync(file).size >= 2000 * 1024);
      // The file can grow before the worker's report of that run reaches this thread.
      await until('the run reported', () => c.stats.runs > 0);
      expect(c.stats.failures).to.equal(0);
      await until('a run that finds every frame copied', () => c.stats.walFrames > 0 && c.stats.checkpointedFrames === c.stats.walFrames);
      // The writer goes on while the checkpointer runs, and a fresh connection reads everything.
      db.prepare('INSERT INTO t (body) VALUES (?)').run(Buffer.alloc(10));
      const reader = new Database(file);
      expect((reader.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n).to.equal(2001);
      reader.close();
    } finally {
      db.close();
    }
  });

  it('stops: its worker exits and closes its connection; stopping again is a no-op', async function () {
    const { file, db } = walDatabase(10);
    db.close();
    const c = start(file);
    await until('a first run', () => c.stats.runs > 0);
    await c.stop();
    expect(c.stats.running).to.equal(false);
    const runs = c.stats.runs;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(c.stats.runs, 'no run after the stop').to.equal(runs);
    await c.stop();
    // Nothing holds the file: it can be removed and made again at once.
    rmSync(file);
    rmSync(`${file}-wal`, { force: true });
    rmSync(`${file}-shm`, { force: true });
    walDatabase(1).db.close();
  });

  it('a file it cannot open: logged once as a failure, then the stop; nothing thrown, stop() still resolves', async function () {
    const { logger, lines } = capturedLogger();
    const c = start(path.join(dir, 'missing', 'data.sqlite'), logger);
    await until('the worker to stop', () => !c.stats.running);
    expect(c.stats.failures).to.equal(1);
    const log = lines();
    expect(log).to.include('SQLite checkpoint failed');
    expect(log).to.include('the SQLite checkpointer stopped; the connection checkpoints the WAL itself from now on');
    await c.stop();
  });

  it('two on one file (two processes of the service) are harmless: both run, neither fails, the rows are copied', async function () {
    const { file, db } = walDatabase(1000);
    try {
      const a = start(file, undefined, 5);
      const b = start(file, undefined, 5);
      await until('both to run and the rows to be copied', () => a.stats.runs > 5 && b.stats.runs > 5 && statSync(file).size >= 1000 * 1024);
      expect(a.stats.failures + b.stats.failures).to.equal(0);
    } finally {
      db.close();
    }
  });

  it("the service's SQLite connections checkpoint by themselves only past the fallback threshold", async function () {
    const ds = await createDataSource({ kind: 'sqlite', file: path.join(dir, 'service.sqlite') }, 'data');
    await ds.initialize();
    try {
      const rows: Array<{ wal_autocheckpoint: number }> = await ds.query('PRAGMA wal_autocheckpoint');
      expect(rows[0].wal_autocheckpoint).to.equal(SQLITE_AUTOCHECKPOINT_FALLBACK_PAGES);
      const mode: Array<{ journal_mode: string }> = await ds.query('PRAGMA journal_mode');
      expect(mode[0].journal_mode).to.equal('wal');
    } finally {
      await ds.destroy();
    }
  });
});

describe('the service with SQLite files', function () {
  this.timeout(60_000);

  it('checkpoints its data and key store files from worker threads while it runs, and stops them when it stops', async function () {
    const db = await createTestDatabase('sqlite');
    try {
      const server = await startTestServer(db);
      let stopped = false;
      try {
        const checkpointers = server.app.sqliteCheckpointers;
        expect(checkpointers).to.have.length(2);
        await until('both to run', () => checkpointers.every((c) => c.stats.runs > 0));
        expect(checkpointers.map((c) => c.stats.failures)).to.deep.equal([0, 0]);
        await server.stop();
        stopped = true;
        expect(checkpointers.map((c) => c.stats.running)).to.deep.equal([false, false]);
      } finally {
        if (!stopped) await server.stop();
      }
    } finally {
      await db.drop();
    }
  });

  it('has none in memory', async function () {
    const db = await createTestDatabase('sqlite');
    try {
      const server = await startTestServer(db, { database: { kind: 'sqlite', file: ':memory:' }, keyStore: { kind: 'sqlite', file: ':memory:' } });
      try {
        expect(server.app.sqliteCheckpointers).to.have.length(0);
      } finally {
        await server.stop();
      }
    } finally {
      await db.drop();
    }
  });
});
