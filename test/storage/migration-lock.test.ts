import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { createDataSource } from '../../src/storage/data-source';
import { MIGRATIONS } from '../../migrations';
import { MIGRATION_LOCK_TABLE, MigrationLock } from '../../src/storage/migration-lock';
import { migrateSchema } from '../../src/storage/schema';
import { createTestDatabase, forEachDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The migration lock row (src/storage/migration-lock.ts), on both databases. */
forEachDatabase('migration lock', (db, kind) => {
  let ds: DataSource;
  before(async function () {
    ds = await createDataSource(db().config);
    await ds.initialize();
  });
  after(async () => ds?.destroy());
  afterEach(async () => {
    await ds.query(`DELETE FROM ${MIGRATION_LOCK_TABLE}`).catch(() => undefined);
  });

  /** The database's clock in ms, as the lock reads it. */
  const dbNow = kind === 'sqlite' ? `CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)` : 'CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED)';

  it('one holder at a time: a second process waits, says so, and gets the lock once it is released', async function () {
    const first = await MigrationLock.open(ds, { holder: 'first' });
    await first.acquire();
    const waits: Array<{ holder: string }> = [];
    const second = await MigrationLock.open(ds, { holder: 'second', pollMs: 50, waiting: (w) => waits.push(w) });
    let secondHolds = false;
    const secondAcquired = second.acquire().then((r) => ((secondHolds = true), r));
    await sleep(400);
    expect(secondHolds, 'the second must wait while the first holds the lock').to.equal(false);
    expect(waits.map((w) => w.holder)).to.deep.equal(['first']);
    await first.release();
    const { waitedMs } = await secondAcquired;
    expect(waitedMs).to.be.at.least(350);
    const [row] = await ds.query(`SELECT holder FROM ${MIGRATION_LOCK_TABLE}`);
    expect(row.holder).to.equal('second');
    await second.release();
    expect(await ds.query(`SELECT holder FROM ${MIGRATION_LOCK_TABLE}`)).to.deep.equal([]);
  });

  it('three processes at once: never two holders', async function () {
    let holding = 0;
    let most = 0;
    const order: string[] = [];
    await Promise.all(
      ['a', 'b', 'c'].map(async (holder) => {
        const lock = await MigrationLock.open(ds, { holder, pollMs: 20 });
        await lock.acquire();
        holding++;
        most = Math.max(most, holding);
        order.push(holder);
        await sleep(100);
        holding--;
        await lock.release();
      }),
    );
    expect(most).to.equal(1);
    expect([...order].sort()).to.deep.equal(['a', 'b', 'c']);
  });

  it('a holder that died (stopped renewing) is taken over once its lease has passed', async function () {
    const second = await MigrationLock.open(ds, { holder: 'live' }); // creates the table
    await ds.query(`INSERT INTO ${MIGRATION_LOCK_TABLE} (name, holder, acquired_at, expires_at) VALUES ('schema', 'dead', ${dbNow}, ${dbNow} + 600)`);
    const tookOver: string[] = [];
    const waited: number[] = [];
    const lock = await MigrationLock.open(ds, { holder: 'taker', pollMs: 50, tookOver: (t) => tookOver.push(t.previousHolder), waiting: (w) => waited.push(w.expiresInMs) });
    const { waitedMs } = await lock.acquire();
    expect(tookOver).to.deep.equal(['dead']);
    expect(waited.length).to.equal(1);
    expect(waited[0]).to.be.within(0, 600);
    expect(waitedMs).to.be.at.least(400);
    const [row] = await ds.query(`SELECT holder FROM ${MIGRATION_LOCK_TABLE}`);
    expect(row.holder).to.equal('taker');
    await lock.release();
    await second.release();
  });

  it('a live holder renews its lease, so it is not taken over however long it migrates', async function () {
    const holder = await MigrationLock.open(ds, { holder: 'slow', leaseMs: 300 });
    await holder.acquire();
    const other = await MigrationLock.open(ds, { holder: 'eager', pollMs: 30, leaseMs: 300 });
    let otherHolds = false;
    const acquired = other.acquire().then(() => (otherHolds = true));
    await sleep(1200); // four leases
    expect(otherHolds).to.equal(false);
    await holder.release();
    await acquired;
    await other.release();
  });

  it('a holder whose row another process took over hears that it lost the lock', async function () {
    let lost = 0;
    const holder = await MigrationLock.open(ds, { holder: 'old', leaseMs: 300, lost: () => lost++ });
    await holder.acquire();
    await ds.query(`UPDATE ${MIGRATION_LOCK_TABLE} SET holder = 'new'`);
    await sleep(400);
    expect(lost).to.equal(1);
    await holder.release();
    const [row] = await ds.query(`SELECT holder FROM ${MIGRATION_LOCK_TABLE}`);
    expect(row.holder, 'release leaves the new holder alone').to.equal('new');
  });
});

/** better-sqlite3 as TypeORM loaded it (the project has no type declarations for it). */
type SqliteConnection = { exec(sql: string): void; close(): void; inTransaction: boolean };
type SqliteConstructor = new (file: string, options: { timeout: number }) => SqliteConnection;

/**
 * Replicas started together on one SQLite file (the fresh-clone CI saw one exit with "database is
 * locked"): whatever another connection is writing at that moment, a starting process waits or
 * tries again. Another connection of this process stands for the other replicas; its busy_timeout
 * is 0, as the lock's own connection's.
 */
if (testDatabaseKinds().includes('sqlite')) describe('migration lock and migrations beside other writers of one SQLite file', function () {
  let own: TestDatabase;
  let ds: DataSource;
  let other: SqliteConnection;
  beforeEach(async function () {
    own = await createTestDatabase('sqlite');
    ds = await createDataSource(own.config);
    await ds.initialize();
    const Sqlite = (ds.driver as unknown as { sqlite: SqliteConstructor }).sqlite;
    other = new Sqlite((own.config as { file: string }).file, { timeout: 0 });
  });
  afterEach(async function () {
    if (other?.inTransaction) other.exec('ROLLBACK');
    other?.close();
    await ds?.destroy();
    await own?.drop();
  });

  it('opening the lock while another process writes the file (the lock table not created yet) waits for it', async function () {
    other.exec('BEGIN IMMEDIATE');
    other.exec('CREATE TABLE another_writer (x INTEGER)');
    setTimeout(() => other.exec('COMMIT'), 300);
    const started = Date.now();
    const lock = await MigrationLock.open(ds, { holder: 'starting', pollMs: 50 });
    expect(Date.now() - started, 'it waited for the other writer').to.be.at.least(250);
    await lock.acquire();
    await lock.release();
  });

  it('a waiter reads who holds the lock: it needs no write lock of the file for that', async function () {
    const holder = await MigrationLock.open(ds, { holder: 'migrating' });
    await holder.acquire();
    const waits: string[] = [];
    const waiter = await MigrationLock.open(ds, { holder: 'waiting', pollMs: 20, waiting: (w) => waits.push(w.holder) });
    other.exec('BEGIN IMMEDIATE'); // as the holder's migration holds it
    const acquired = waiter.acquire();
    await sleep(150);
    expect(waits, 'the waiter saw the holder while the file was being written').to.deep.equal(['migrating']);
    other.exec('COMMIT');
    await holder.release();
    await acquired;
    await waiter.release();
  });

  it("migrations are not answered busy when another connection wants the file's write lock between a read and a write of theirs", async function () {
    // After every read inside a migration's transaction (TypeORM reads a table before it alters
    // it), the other connection tries to take the write lock and holds it for a moment if it can.
    let taken = 0;
    let refused = 0;
    const create = ds.createQueryRunner.bind(ds);
    ds.createQueryRunner = (...args: Parameters<DataSource['createQueryRunner']>) => {
      const runner = create(...args);
      const query = runner.query.bind(runner);
      runner.query = (async (sql: string, ...rest: unknown[]) => {
        const result = await (query as (...a: unknown[]) => Promise<unknown>)(sql, ...rest);
        if (runner.isTransactionActive && /^\s*SELECT/i.test(sql) && !other.inTransaction) {
          try {
            other.exec('BEGIN IMMEDIATE');
            taken++;
            setTimeout(() => other.exec('COMMIT'), 50);
          } catch {
            refused++;
          }
        }
        return result;
      }) as typeof runner.query;
      return runner;
    };
    const applied = await migrateSchema(ds, 'data');
    expect([...applied].sort()).to.deep.equal(MIGRATIONS.map((m) => m.name).sort());
    expect(taken, "the file's write lock was free inside a migration's transaction").to.equal(0);
    expect(refused, 'the other connection did try').to.be.greaterThan(0);
  });
});
