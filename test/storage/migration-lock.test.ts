import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { createDataSource } from '../../src/storage/data-source';
import { MIGRATION_LOCK_TABLE, MigrationLock } from '../../src/storage/migration-lock';
import { forEachDatabase } from '../support/databases';

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
