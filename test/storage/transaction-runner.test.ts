import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { DEFAULT_DATABASE_TIMEOUTS, DatabaseTimeouts } from '../../src/config/config';
import { withCallBudget, withoutCallBudget } from '../../src/shared/call-budget';
import { DomainError } from '../../src/shared/errors';
import { createDataSource } from '../../src/storage/data-source';
import { managerOf, TypeormTransactionRunner } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `promise` and resolves with its error (failing if it succeeds) and how long it took. */
async function rejection(promise: Promise<unknown>): Promise<{ err: DomainError; ms: number }> {
  const started = Date.now();
  const err = await promise.then(
    () => expect.fail('expected the unit of work to fail'),
    (e: DomainError) => e,
  );
  return { err, ms: Date.now() - started };
}

/** Time bounds of the units of work (src/storage/transaction-runner.ts), on both databases. */
forEachDatabase('transaction runner time bounds', (db, kind) => {
  let ds: DataSource;
  const timeouts: DatabaseTimeouts = { ...DEFAULT_DATABASE_TIMEOUTS, callMs: 300, backgroundMs: 1000, acquireMs: 150 };
  let runner: TypeormTransactionRunner;
  const inCall = <T>(work: () => Promise<T>, deadline = Infinity, signal = new AbortController().signal) => withCallBudget({ deadline, signal }, work);
  const rows = async (id: string) => Number((await ds.query('SELECT COUNT(*) AS n FROM runner_probe WHERE id = ?', [id]))[0].n);

  before(async function () {
    ds = await createDataSource(db().config, 'data', timeouts);
    await ds.initialize();
    await ds.query('CREATE TABLE runner_probe (id VARCHAR(32) PRIMARY KEY)');
    runner = new TypeormTransactionRunner(ds);
  });
  after(async () => ds?.destroy());

  it('a write of a call that outlasts DATABASE_CALL_TIMEOUT_MS is UNAVAILABLE at the timeout and leaves nothing behind', async function () {
    const { err, ms } = await rejection(
      inCall(() =>
        runner.write(async (tx) => {
          await managerOf(tx).query("INSERT INTO runner_probe (id) VALUES ('slow-write')");
          await sleep(700);
        }),
      ),
    );
    expect([err.kind, err.reason]).to.deep.equal(['UNAVAILABLE', 'DATABASE_UNAVAILABLE']);
    expect(err.message).to.include('300 ms');
    expect(ms).to.be.within(280, 500);
    await sleep(700); // the abandoned work finishes (SQLite) or its connection is gone (MariaDB)
    expect(await rows('slow-write'), 'rolled back').to.equal(0);
  });

  it('a write that loses races at commit (deadlock, Galera certification) runs again until it wins, inside the budget; one that never wins is ABORTED in time', async function () {
    // The error Galera's certification failure and InnoDB's deadlock give: errno 1213.
    const lostRace = () => Object.assign(new Error('Deadlock found when trying to get lock; try restarting transaction'), { errno: 1213, code: 'ER_LOCK_DEADLOCK' });
    const before = runner.stats.raceRetries;
    let attempts = 0;
    await withCallBudget({ deadline: Date.now() + 5000, signal: new AbortController().signal }, () =>
      runner.write(async (tx) => {
        attempts++;
        await managerOf(tx).query('INSERT INTO runner_probe (id) VALUES (?)', [`race-${attempts}`]);
        if (attempts <= 8) throw lostRace(); // more losses than the 4 attempts other failures get
      }),
    );
    expect(attempts).to.equal(9);
    expect(runner.stats.raceRetries - before).to.equal(8);
    expect(await rows('race-9'), 'the winning attempt committed').to.equal(1);
    expect(await rows('race-1'), 'the lost attempts rolled back').to.equal(0);

    const { err, ms } = await rejection(
      inCall(() =>
        runner.write(async () => {
          throw lostRace();
        }),
      ),
    );
    expect([err.kind, err.reason]).to.deep.equal(['ABORTED', 'CONCURRENT_UPDATE']);
    expect(ms, 'within the call budget of 300 ms').to.be.below(600);
  });

  it("the caller's deadline bounds the work below the call timeout, and cancellation ends it at once", async function () {
    const deadline = await rejection(inCall(() => runner.read(() => sleep(1000)), Date.now() + 100));
    expect([deadline.err.kind, deadline.err.reason]).to.deep.equal(['DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED']);
    expect(deadline.ms).to.be.within(80, 250);

    const cancel = new AbortController();
    setTimeout(() => cancel.abort(), 50);
    const cancelled = await rejection(inCall(() => runner.write(async (tx) => {
      await managerOf(tx).query("INSERT INTO runner_probe (id) VALUES ('cancelled')");
      await sleep(1000);
    }), Infinity, cancel.signal));
    expect([cancelled.err.kind, cancelled.err.reason]).to.deep.equal(['ABORTED', 'CANCELLED']);
    expect(cancelled.ms).to.be.below(200);
    await sleep(1100);
    expect(await rows('cancelled')).to.equal(0);

    const already = new AbortController();
    already.abort();
    let ran = false;
    await rejection(inCall(() => runner.read(async () => void (ran = true)), Infinity, already.signal));
    expect(ran, 'work of a cancelled call never starts').to.equal(false);
  });

  it('outside any call, DATABASE_BACKGROUND_TIMEOUT_MS bounds the work instead', async function () {
    const quick = await runner.read(async () => {
      await sleep(500); // longer than a call may take, shorter than background work may
      return 'done';
    });
    expect(quick).to.equal('done');
    // A background job started by a call (withoutCallBudget, as BackgroundJobs does) outlives the
    // call's bounds: its deadline passed and it was cancelled, yet the job's work completes.
    const cancel = new AbortController();
    const job = inCall(() => withoutCallBudget(() => runner.read(() => sleep(500).then(() => 'job done'))), Date.now() + 50, cancel.signal);
    cancel.abort();
    expect(await job).to.equal('job done');
    const { err, ms } = await rejection(runner.read(() => sleep(1500)));
    expect(err.reason).to.equal('DATABASE_UNAVAILABLE');
    expect(ms).to.be.within(950, 1300);
    await sleep(600); // the given-up work ends (on SQLite it keeps its turn until then)
  });

  if (kind === 'sqlite') {
    it('a unit that waited for its turn longer than DATABASE_ACQUIRE_TIMEOUT_MS is UNAVAILABLE and never runs', async function () {
      const long = runner.write(() => sleep(400)).then(() => 'done');
      let ran = false;
      const { err, ms } = await rejection(runner.write(async () => void (ran = true)));
      expect(err.message).to.include('no database connection was free within 150 ms');
      expect(ms).to.be.within(130, 300);
      expect(await long).to.equal('done');
      await sleep(50);
      expect(ran).to.equal(false);
    });
  } else {
    it('the connection of a unit given up is destroyed, never handed to the next unit', async function () {
      let abandoned = 0;
      await rejection(
        inCall(() =>
          runner.read(async (tx) => {
            abandoned = Number((await managerOf(tx).query('SELECT CONNECTION_ID() AS id'))[0].id);
            await sleep(600);
          }),
        ),
      );
      const seen = new Set<number>();
      await Promise.all(
        Array.from({ length: 12 }, () => runner.read(async (tx) => seen.add(Number((await managerOf(tx).query('SELECT CONNECTION_ID() AS id'))[0].id)))),
      );
      expect(abandoned).to.be.greaterThan(0);
      expect([...seen]).to.not.include(abandoned);
      const [gone] = await ds.query('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ?', [abandoned]);
      expect(Number(gone.n), 'the server closed it').to.equal(0);
    });

    it('a unit waiting longer than DATABASE_ACQUIRE_TIMEOUT_MS for a pooled connection is UNAVAILABLE', async function () {
      const small = await createDataSource({ ...(db().config as { kind: 'mysql'; url: string }), poolSize: 1 }, 'data', timeouts);
      await small.initialize();
      try {
        const one = new TypeormTransactionRunner(small);
        const busy = one.read(() => sleep(400));
        const { err, ms } = await rejection(one.read(async () => 'never'));
        expect(err.message).to.include('no database connection was free within 150 ms');
        expect(ms).to.be.within(130, 300);
        await busy;
        expect(await one.read(async (tx) => (await managerOf(tx).query('SELECT 1 AS one'))[0].one)).to.equal(1);
      } finally {
        await small.destroy();
      }
    });
  }
});
