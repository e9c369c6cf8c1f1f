import { spawn } from 'node:child_process';
import { ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { DEFAULT_DATABASE_TIMEOUTS } from '../../src/config/config';
import { Verdict } from '../../src/gen/consent/v1/consent';
import { createTestDatabase, forEachDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { proxyFor, TcpProxy } from '../support/tcp-proxy';
import { call, errorDetails, startTestServer, TestServer } from '../support/test-server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Sqlite = require('better-sqlite3') as new (file: string) => { exec(sql: string): void; close(): void };

/** Resolves with the error of a call expected to fail, and how long it took. */
async function failure(p: Promise<unknown>): Promise<{ err: ServiceError; ms: number }> {
  const started = Date.now();
  const err = await p.then(
    () => expect.fail('the call succeeded'),
    (e: ServiceError) => e,
  );
  return { err, ms: Date.now() - started };
}

/**
 * A database that is there but cannot do the work in time, or whose connection breaks in the
 * middle of a call, answers UNAVAILABLE DATABASE_UNAVAILABLE (retry later), never INTERNAL; the
 * retry with the same request id converges on one event.
 */
forEachDatabase('a lock held elsewhere for longer than the call may wait', (db, kind) => {
  let s: TestServer;
  const T = 'locked';
  before(async function () {
    this.timeout(30_000);
    s = await startTestServer(db(), { databaseTimeouts: { ...DEFAULT_DATABASE_TIMEOUTS, callMs: 1000, sqliteBusyMs: 300 } });
    await seedTenant(s, T);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { requestId: 'before-lock' }));
  });
  after(async () => s?.stop());

  it(`a write is UNAVAILABLE within the call timeout, checks still answer, and the retry converges (${kind === 'sqlite' ? 'another process holds the write lock: busy_timeout' : "another transaction holds the tenant's audit head row: innodb_lock_wait_timeout"})`, async function () {
    this.timeout(30_000);
    let release: () => Promise<void>;
    if (kind === 'sqlite') {
      const other = new Sqlite((db().config as { file: string }).file);
      other.exec('BEGIN IMMEDIATE');
      release = async () => {
        other.exec('ROLLBACK');
        other.close();
      };
    } else {
      const other = await mysql.createConnection((db().config as { url: string }).url);
      await other.query('START TRANSACTION');
      await other.query('SELECT size FROM audit_heads WHERE tenant_id = ? FOR UPDATE', [T]);
      release = async () => {
        await other.query('ROLLBACK');
        await other.end();
      };
    }
    const request = consentRequest(T, { subjectIdentifier: phone('+4915199000001'), requestId: 'while-locked' });
    try {
      const { err, ms } = await failure(call(s.consent, s.consent.recordConsent, request));
      expect(err.code, err.details).to.equal(status.UNAVAILABLE);
      expect(errorDetails(err).reason).to.equal('DATABASE_UNAVAILABLE');
      expect(ms, 'bounded by the call timeout').to.be.below(1900);
      const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T) });
      expect(check.decision!.verdict, 'reads do not wait for the lock').to.equal(Verdict.VERDICT_ALLOW);
    } finally {
      await release();
    }
    const first = await call(s.consent, s.consent.recordConsent, request);
    const again = await call(s.consent, s.consent.recordConsent, request);
    expect(again.event!.name).to.equal(first.event!.name);
    const [row] = await s.app.dataSource.query("SELECT COUNT(*) AS n FROM consent_events WHERE request_id = 'while-locked'");
    expect(Number(row.n)).to.equal(1);
  });

  if (kind === 'sqlite') {
    it('a write waits for another process holding the file briefly, and succeeds (BEGIN IMMEDIATE, not a failed upgrade)', async function () {
      this.timeout(30_000);
      // Another process: takes the write lock, holds it 150 ms (under busy_timeout), commits.
      const holder = spawn(
        process.execPath,
        [
          '-e',
          `const db = new (require(${JSON.stringify(require.resolve('better-sqlite3'))}))(${JSON.stringify((db().config as { file: string }).file)});
           db.exec('BEGIN IMMEDIATE'); process.stdout.write('locked\\n');
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 150);
           db.exec('COMMIT'); db.close();`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const exited = new Promise((resolve) => holder.once('exit', resolve));
      await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
      const started = Date.now();
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915199000003'), requestId: 'after-brief-lock' }));
      expect(Date.now() - started, 'it waited for the other process').to.be.at.least(50);
      expect(await exited).to.equal(0);
    });
  }
});

// MariaDB only: SQLite has no connection to lose.
if (testDatabaseKinds().includes('mariadb')) {
  describe('the MariaDB connection is cut in the middle of a call', function () {
    this.timeout(60_000);
    let db: TestDatabase;
    let s: TestServer;
    let proxy: TcpProxy;
    const T = 'cut';
    before(async function () {
      db = await createTestDatabase('mariadb');
      const proxied = await proxyFor((db.config as { url: string }).url);
      proxy = proxied.proxy;
      const url = proxied.via((db.config as { url: string }).url);
      // A long call timeout: what ends the call here must be the lost connection, not a timer.
      s = await startTestServer(
        { ...db, config: { kind: 'mysql', url, poolSize: 4 } },
        { databaseTimeouts: { ...DEFAULT_DATABASE_TIMEOUTS, callMs: 20_000 } },
      );
      await seedTenant(s, T);
    });
    after(async function () {
      await proxy?.cut();
      await s?.stop();
      await db?.drop();
    });

    it('the call in flight is UNAVAILABLE DATABASE_UNAVAILABLE at once, not INTERNAL; the retry converges', async function () {
      // The write waits for the tenant's audit head row, which another session holds: it is
      // certainly in the middle of its transaction when the connection goes.
      const other = await mysql.createConnection((db.config as { url: string }).url);
      await other.query('START TRANSACTION');
      await other.query('SELECT size FROM audit_heads WHERE tenant_id = ? FOR UPDATE', [T]);
      const request = consentRequest(T, { subjectIdentifier: phone('+4915199000002'), requestId: 'cut-mid-call' });
      const pending = failure(call(s.consent, s.consent.recordConsent, request));
      await new Promise((r) => setTimeout(r, 500));
      const port = proxy.port;
      const cutAt = Date.now();
      await proxy.cut();
      const { err } = await pending;
      expect(err.code, err.details).to.equal(status.UNAVAILABLE);
      expect(errorDetails(err).reason).to.equal('DATABASE_UNAVAILABLE');
      expect(Date.now() - cutAt, 'answered when the connection broke').to.be.below(1500);
      await other.query('ROLLBACK');
      await other.end();

      await proxy.start(port);
      let first;
      for (let i = 0; i < 40 && !first; i++) {
        first = await call(s.consent, s.consent.recordConsent, request).catch(() => undefined);
        if (!first) await new Promise((r) => setTimeout(r, 250));
      }
      expect(first, 'the retry succeeds once the database is reachable').to.not.equal(undefined);
      const [row] = await s.app.dataSource.query("SELECT COUNT(*) AS n FROM consent_events WHERE request_id = 'cut-mid-call'");
      expect(Number(row.n)).to.equal(1);
    });
  });
}
