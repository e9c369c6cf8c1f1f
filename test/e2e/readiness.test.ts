import { execFile } from 'node:child_process';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import mysql from 'mysql2/promise';
import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { DatabaseConfig } from '../../src/config/config';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../../src/gen/grpc/health/v1/health';
import { createDataSource } from '../../src/storage/data-source';
import { MIGRATION_LOCK_TABLE, MigrationLock } from '../../src/storage/migration-lock';
import { ConsentServiceClient } from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { createTestDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { ROOT, TSX } from '../support/processes';
import { ServerProcess, startServerProcess } from '../support/server-process';
import { call, TestServer } from '../support/test-server';

/** `consent-ledger health` against a health port: exit code and output. */
function probe(port: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(TSX[0], [TSX[1], 'src/main.ts', 'health'], { cwd: ROOT, env: { ...process.env, HEALTH_PORT: String(port) }, timeout: 20_000 }, (err, stdout) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout }),
    );
  });
}

/** grpc.health.v1 Check of `service` on 127.0.0.1:`port`: SERVING, NOT_SERVING, or UNREACHABLE. */
async function healthOf(port: number, service = ''): Promise<string> {
  const client = new HealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    return await new Promise<string>((resolve) =>
      client.check({ service }, new Metadata(), { deadline: Date.now() + 2000 }, (err, res) => resolve(err ? 'UNREACHABLE' : HealthCheckResponse_ServingStatus[res.status])),
    );
  } finally {
    client.close();
  }
}

async function withDataSource<T>(config: DatabaseConfig, work: (ds: DataSource) => Promise<T>): Promise<T> {
  const ds = await createDataSource(config, 'data');
  await ds.initialize();
  try {
    return await work(ds);
  } finally {
    await ds.destroy();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Readiness while migrating (issue 17 point 3): the health-only port opens before the databases
 * are migrated and answers NOT_SERVING while the process waits for (or runs) migrations, so that
 * probes see "not ready", not a refused connection; the API port opens only once started. The
 * test plants the migration lock row of another process in the empty data database, so the
 * server waits for it observably, then releases it.
 */
for (const kind of testDatabaseKinds()) {
  describe(`health while migrating [${kind}]`, function () {
    this.timeout(90_000);
    let db: TestDatabase;
    let server: ServerProcess | undefined;
    before(async function () {
      db = await createTestDatabase(kind);
    });
    after(async function () {
      await server?.stop(5000);
      await db?.drop();
    });

    it('NOT_SERVING on the health port while waiting for the migration lock, SERVING once migrated', async function () {
      await withDataSource(db.config, async (ds) => {
        const lock = await MigrationLock.open(ds, { holder: 'unused' }); // creates the lock table
        await lock.release();
        await ds.query(`INSERT INTO ${MIGRATION_LOCK_TABLE} (name, holder, acquired_at, expires_at) VALUES ('schema', 'other-replica', 0, 9999999999999)`);
      });
      const s = await startServerProcess(db, { waitForServing: false, env: { HEALTH_PORT: '0', RUN_MIGRATIONS: 'true' } });
      server = s;
      const deadline = Date.now() + 60_000;
      const until = async (what: string, done: () => boolean | Promise<boolean>) => {
        while (!(await done())) {
          if (s.hasExited()) expect.fail(`the server exited while ${what}:\n${s.output().slice(-3000)}`);
          if (Date.now() > deadline) expect.fail(`timed out: ${what}\n${s.output().slice(-3000)}`);
          await sleep(100);
        }
      };
      await until('waiting for the migration lock', () => s.output().split('\n').some((l) => l.includes('waiting for another process to finish migrations') && l.includes('other-replica')));
      const healthPort = Number(/"message":"health listening"[^\n]*"port":(\d+)/.exec(s.output())?.[1]);
      expect(healthPort, 'health port logged before migrating').to.be.above(0);
      expect(s.output().indexOf('"message":"health listening"'), 'health port opened before the migration wait').to.be.below(s.output().indexOf('waiting for another process'));

      // Still waiting: not ready, for the whole server and for each API service; the API port is not open.
      for (const service of ['', 'consent.v1.ConsentService', 'consent.v1.TenantService', 'consent.v1.AuditService']) {
        expect(await healthOf(healthPort, service), `health of "${service}" while migrating`).to.equal('NOT_SERVING');
      }
      expect(await s.health(), 'the API port before the service is ready').to.equal('UNREACHABLE');
      const waiting = await probe(healthPort);
      expect([waiting.code, waiting.out.trim()], 'consent-ledger health while migrating').to.deep.equal([1, 'NOT_SERVING']);
      expect(await healthOf(healthPort), 'still NOT_SERVING (the lock is still held)').to.equal('NOT_SERVING');
      expect(s.output()).to.not.include('migration applied');

      // The other process is done: this one migrates, starts and says SERVING by itself.
      await withDataSource(db.config, (ds) => ds.query(`DELETE FROM ${MIGRATION_LOCK_TABLE}`));
      await until('serving after the lock was released', async () => (await healthOf(healthPort)) === 'SERVING');
      expect(s.output()).to.include('migration applied');
      for (const service of ['consent.v1.ConsentService', 'consent.v1.TenantService', 'consent.v1.AuditService']) {
        expect(await healthOf(healthPort, service), `health of "${service}" once started`).to.equal('SERVING');
      }
      expect(await s.health(), 'the API port once started').to.equal('SERVING');
      expect((await probe(healthPort)).code, 'consent-ledger health once serving').to.equal(0);
      const clients = {
        tenants: new TenantServiceClient(s.address, credentials.createInsecure()),
        purposes: new PurposeServiceClient(s.address, credentials.createInsecure()),
        consent: new ConsentServiceClient(s.address, credentials.createInsecure()),
      };
      try {
        await seedTenant(clients as unknown as TestServer, 'migrated');
        await call(clients.consent, clients.consent.checkConsent, { parent: 'tenants/migrated', query: query('migrated', { subjectIdentifier: phone('+4915100000002') }) } as never);
      } finally {
        for (const c of Object.values(clients)) c.close();
      }
    });
  });
}

/**
 * Readiness on SIGTERM (issue 17 point 3): the server first reports NOT_SERVING for the drain
 * period (SHUTDOWN_DRAIN_MS) while it still answers the calls that arrive, so that probes and
 * load balancers stop sending before it stops taking calls; then it exits 0.
 */
for (const kind of testDatabaseKinds()) {
  describe(`draining on SIGTERM [${kind}]`, function () {
    this.timeout(60_000);
    let db: TestDatabase;
    let server: ServerProcess;
    before(async function () {
      db = await createTestDatabase(kind);
      server = await startServerProcess(db, { env: { SHUTDOWN_DRAIN_MS: '8000', HEALTH_PORT: '0' } });
    });
    after(async function () {
      await server?.stop(5000);
      await db?.drop();
    });

    it('NOT_SERVING at once, calls still answered during the drain period, then a clean exit', async function () {
      const clients = {
        tenants: new TenantServiceClient(server.address, credentials.createInsecure()),
        purposes: new PurposeServiceClient(server.address, credentials.createInsecure()),
        consent: new ConsentServiceClient(server.address, credentials.createInsecure()),
      };
      try {
        await seedTenant(clients as unknown as TestServer, 'drain');
        const ask = () => call(clients.consent, clients.consent.checkConsent, { parent: 'tenants/drain', query: query('drain', { subjectIdentifier: phone('+4915100000001') }) } as never);
        await ask();
        expect(await server.health()).to.equal('SERVING');
        // The plaintext health port, as Docker's HEALTHCHECK asks it: `consent-ledger health`.
        const healthPort = Number(/"message":"health listening"[^\n]*"port":(\d+)/.exec(server.output())?.[1]);
        expect(healthPort, 'health port logged').to.be.above(0);
        expect((await probe(healthPort)).code, 'consent-ledger health while serving').to.equal(0);
        const signalled = Date.now();
        server.child.kill('SIGTERM');
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(await server.health(), 'health while draining').to.equal('NOT_SERVING');
        const draining = await probe(healthPort);
        expect([draining.code, draining.out.trim()], 'consent-ledger health while draining').to.deep.equal([1, 'NOT_SERVING']);
        await ask(); // still answered
        expect(server.hasExited(), 'still running within the drain period').to.equal(false);
        const code = await server.exited;
        expect(code).to.equal(0);
        expect(Date.now() - signalled, 'stopped after the drain period').to.be.at.least(7900);
        expect(server.output()).to.include('draining');
      } finally {
        for (const c of Object.values(clients)) c.close();
      }
    });
  });
}

/**
 * What a SIGTERM does to calls in flight (found by a probe): a unary write waiting for the
 * database less than DATABASE_CALL_TIMEOUT_MS is finished, not cut after a fixed 5 s; a stream
 * that would stay open as long as its client reads ends at once with UNAVAILABLE SHUTTING_DOWN,
 * which clients retry on another replica, and the process exits 0.
 */
for (const kind of testDatabaseKinds()) {
  describe(`calls in flight at SIGTERM [${kind}]`, function () {
    this.timeout(90_000);
    let db: TestDatabase;
    before(async function () {
      db = await createTestDatabase(kind);
    });
    after(async function () {
      await db?.drop();
    });

    it('a StreamChanges consumer is ended with UNAVAILABLE SHUTTING_DOWN, not cut with CANCELLED; a health watch ends too; the process exits 0 at once', async function () {
      // A long call budget: the process must not wait for it when only streams are open.
      const server = await startServerProcess(db, { env: { SHUTDOWN_DRAIN_MS: '300', DATABASE_CALL_TIMEOUT_MS: '20000' } });
      const health = new HealthClient(server.address, credentials.createInsecure());
      const watching = health.watch({ service: '' });
      watching.on('data', () => undefined);
      const watchEnded = new Promise<number>((resolve) => {
        watching.on('status', (st: { code: number }) => resolve(st.code));
        watching.on('error', () => undefined);
      });
      const clients = {
        tenants: new TenantServiceClient(server.address, credentials.createInsecure()),
        purposes: new PurposeServiceClient(server.address, credentials.createInsecure()),
        consent: new ConsentServiceClient(server.address, credentials.createInsecure()),
      };
      try {
        await seedTenant(clients as unknown as TestServer, 'feed-at-stop');
        const ended = new Promise<{ code: number; reason: string | undefined; at: number }>((resolve) => {
          const stream = clients.consent.streamChanges({ parent: 'tenants/feed-at-stop', cursor: '' });
          stream.on('data', () => undefined);
          stream.on('error', (e: { code: number; metadata?: Metadata }) => {
            const info = e.metadata?.get('grpc-status-details-bin')[0];
            resolve({ code: e.code, reason: info ? /SHUTTING_DOWN/.exec(Buffer.from(info as Buffer).toString('latin1'))?.[0] : undefined, at: Date.now() });
          });
        });
        await new Promise((r) => setTimeout(r, 500));
        const signalled = Date.now();
        server.child.kill('SIGTERM');
        const end = await ended;
        expect([end.code, end.reason]).to.deep.equal([status.UNAVAILABLE, 'SHUTTING_DOWN']);
        expect(end.at - signalled, 'ended soon after the drain period').to.be.below(3000);
        expect(await watchEnded, 'the health watch').to.equal(status.OK);
        expect(await server.exited).to.equal(0);
        expect(Date.now() - signalled, 'exited without waiting for the call budget').to.be.below(4000);
      } finally {
        health.close();
        for (const c of Object.values(clients)) c.close();
        await server.stop(1000);
      }
    });

    if (kind === 'mariadb') {
      it('writes waiting 7 s for a lock (under DATABASE_CALL_TIMEOUT_MS 9 s) are finished and stored, not cut at 5 s', async function () {
        const server = await startServerProcess(db, { env: { SHUTDOWN_DRAIN_MS: '500', DATABASE_CALL_TIMEOUT_MS: '9000' } });
        const clients = {
          tenants: new TenantServiceClient(server.address, credentials.createInsecure()),
          purposes: new PurposeServiceClient(server.address, credentials.createInsecure()),
          consent: new ConsentServiceClient(server.address, credentials.createInsecure()),
        };
        const locker = await mysql.createConnection((db.config as { url: string }).url);
        try {
          const T = 'slow-at-stop';
          await seedTenant(clients as unknown as TestServer, T);
          await call(clients.consent, clients.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915116000000'), requestId: 'warm' }));
          await locker.beginTransaction();
          await locker.query('SELECT size FROM audit_heads WHERE tenant_id = ? FOR UPDATE', [T]);
          const writes = Array.from({ length: 4 }, (_, i) =>
            call(clients.consent, clients.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`+491511600000${i + 1}`), requestId: `slow-${i}` })).then(
              () => 'OK',
              (e: { code: number }) => status[e.code],
            ),
          );
          await new Promise((r) => setTimeout(r, 500));
          server.child.kill('SIGTERM');
          await new Promise((r) => setTimeout(r, 6500));
          await locker.commit();
          expect(await Promise.all(writes)).to.deep.equal(['OK', 'OK', 'OK', 'OK']);
          expect(await server.exited).to.equal(0);
          const [rows] = (await locker.query("SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ? AND request_id LIKE 'slow-%'", [T])) as unknown as [Array<{ n: number }>];
          expect(Number(rows[0].n)).to.equal(4);
        } finally {
          await locker.end().catch(() => undefined);
          for (const c of Object.values(clients)) c.close();
          await server.stop(1000);
        }
      });
    }
  });
}
