import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { ConsentServiceClient, Verdict } from '../../src/gen/consent/v1/consent';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../../src/gen/grpc/health/v1/health';
import { testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { PrivateMariaDb, startPrivateMariaDb } from '../support/private-mariadb';
import { startServerProcess } from '../support/server-process';
import { call, errorDetails, startTestServer, TestServer } from '../support/test-server';

/**
 * A database host that hangs: the MariaDB server is stopped with SIGSTOP, so its sockets stay open
 * and nothing answers (no error, no reset), then resumed with SIGCONT.
 *
 * MariaDB only, by nature: SQLite is a file inside the process, there is no server to stop (its
 * lock-wait bound, busy_timeout, is tested in database-errors.test.ts on both databases). The
 * server is a private one this test starts in a temporary directory, never the shared one.
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** GET /metrics of the metrics port: status and body. */
function getMetrics(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/metrics', method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

if (testDatabaseKinds().includes('mariadb')) {
  describe('a hung database (private MariaDB stopped with SIGSTOP)', function () {
    this.timeout(120_000);
    const T = 'hung';
    let mariadb: PrivateMariaDb;
    let db: TestDatabase;
    let s: TestServer;
    let healthClient: HealthClient;

    const health = (timeoutMs = 1000): Promise<string> =>
      new Promise((resolve) => {
        healthClient.check({ service: '' }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
          resolve(err ? 'UNREACHABLE' : HealthCheckResponse_ServingStatus[res.status]),
        );
      });
    const waitForHealth = async (wanted: string, withinMs: number): Promise<number> => {
      const started = Date.now();
      while (Date.now() - started < withinMs) {
        if ((await health()) === wanted) return Date.now() - started;
        await sleep(100);
      }
      expect.fail(`health did not turn ${wanted} within ${withinMs} ms`);
    };
    const sql = async <R>(statement: string, params: unknown[] = []): Promise<R[]> => {
      const connection = await mysql.createConnection(`${mariadb.url}/consent_hung`);
      try {
        const [rows] = await connection.query(statement, params);
        return rows as R[];
      } finally {
        await connection.end();
      }
    };
    const write = (i: number, requestId: string) =>
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`+4915112${String(i).padStart(6, '0')}`), requestId }));

    before(async function () {
      mariadb = await startPrivateMariaDb();
      await mariadb.createDatabase('consent_hung');
      await mariadb.createDatabase('consent_hung_keys');
      const dataDir = mkdtempSync(path.join(os.tmpdir(), 'consent-hung-'));
      db = {
        label: 'mariadb',
        config: { kind: 'mysql', url: `${mariadb.url}/consent_hung`, poolSize: 6 },
        keyStore: { kind: 'mysql', url: `${mariadb.url}/consent_hung_keys`, poolSize: 4 },
        dataDir,
        drop: async () => rmSync(dataDir, { recursive: true, force: true }),
      };
      // The defaults are under test: DATABASE_CALL_TIMEOUT_MS 2000, HEALTH_PROBE_INTERVAL_MS 1000.
      s = await startTestServer(db, { metrics: { port: 0, bindAddress: '127.0.0.1', maxTenants: 10 } });
      expect(s.app.config.databaseTimeouts.callMs).to.equal(2000);
      healthClient = new HealthClient(s.address, credentials.createInsecure());
      await seedTenant(s, T);
    });
    after(async function () {
      mariadb?.resume();
      healthClient?.close();
      await s?.stop();
      await db?.drop();
      await mariadb?.stop();
    });

    it('calls fail UNAVAILABLE within 2 s, health turns NOT_SERVING within 5 s and SERVING again on resume; nothing is lost or half-written', async function () {
      const acknowledged: string[] = [];
      for (let i = 0; i < 5; i++) {
        await write(i, `ack-${i}`);
        acknowledged.push(`ack-${i}`);
      }
      expect(await health()).to.equal('SERVING');

      // Writes in flight at the moment the host hangs: writes start every few milliseconds, and
      // the host hangs once a few have been answered, so that some finish before, some are
      // mid-transaction and some start after.
      const inFlightIds = Array.from({ length: 60 }, (_, i) => `flight-${i}`);
      const writes: Array<Promise<unknown>> = [];
      let pausedAt = 0;
      let answered = 0;
      const pause = () => {
        if (pausedAt) return;
        mariadb.pause();
        pausedAt = Date.now();
      };
      for (let i = 0; i < inFlightIds.length; i++) {
        const w = write(100 + i, inFlightIds[i]);
        writes.push(w);
        w.then(() => ++answered >= 5 && pause(), () => undefined);
        await sleep(2);
      }
      pause();
      const inFlight = Promise.allSettled(writes);

      // New calls while it hangs: UNAVAILABLE DATABASE_UNAVAILABLE within the 2 s call timeout.
      const timed = async (p: Promise<unknown>) => {
        const started = Date.now();
        const err = await p.then(
          () => expect.fail('the call succeeded while the database was stopped'),
          (e: ServiceError) => e,
        );
        return { err, ms: Date.now() - started };
      };
      const [check, newWrite] = await Promise.all([
        timed(call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T) })),
        timed(write(200, 'during-hang')),
      ]);
      for (const { err, ms } of [check, newWrite]) {
        expect(err.code, err.details).to.equal(status.UNAVAILABLE);
        expect(errorDetails(err).reason).to.equal('DATABASE_UNAVAILABLE');
        expect(ms, 'answered within the call timeout').to.be.below(2800);
      }

      // Every call in flight ended too, each OK or UNAVAILABLE (never INTERNAL, never hanging).
      const settled = await inFlight;
      expect(Date.now() - pausedAt, 'in-flight calls settled').to.be.below(3500);
      const failed = ['during-hang'];
      settled.forEach((r, i) => {
        if (r.status === 'fulfilled') acknowledged.push(inFlightIds[i]);
        else {
          expect((r.reason as ServiceError).code, (r.reason as ServiceError).details).to.equal(status.UNAVAILABLE);
          failed.push(inFlightIds[i]);
        }
      });
      expect(failed.length, 'in-flight writes met the hang').to.be.greaterThan(1);

      // A caller's deadline bounds the work even below the call timeout: the server gives up too.
      const deadlineId = 'deadline-during-hang';
      const metadata = new Metadata();
      metadata.set('x-request-id', deadlineId);
      const deadlineCall = await new Promise<ServiceError | null>((resolve) =>
        s.consent.checkConsent({ parent: `tenants/${T}`, query: query(T) }, metadata, { deadline: Date.now() + 400 }, (err) => resolve(err)),
      );
      expect(deadlineCall?.code).to.equal(status.DEADLINE_EXCEEDED);
      let line: { duration_ms: number; code: string } | undefined;
      for (let i = 0; i < 20 && !line; i++) {
        line = s
          .logs()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { request_id?: string; duration_ms: number; code: string })
          .find((l) => l.request_id === deadlineId);
        if (!line) await sleep(100);
      }
      expect(line, 'the server logged the call').to.not.equal(undefined);
      expect(line!.duration_ms, 'the server stopped waiting at the deadline').to.be.below(1000);
      expect(line!.code).to.not.equal('INTERNAL');

      const notServingAfter = Date.now() - pausedAt + (await waitForHealth('NOT_SERVING', 5000));
      expect(notServingAfter, 'NOT_SERVING within 5 s of the hang').to.be.at.most(5500);

      // A scrape still answers, in time for a scraper (10 s), and says the replica is not ready;
      // the gauges read from the database are left out (found by a probe: 503 after 60 s).
      const scrapeStarted = Date.now();
      const scrape = await getMetrics(s.app.metricsPort!);
      expect([scrape.status, Date.now() - scrapeStarted < 8000], 'scrape while hung').to.deep.equal([200, true]);
      expect(scrape.body).to.match(/^consent_ready 0$/m);
      expect(scrape.body).to.not.match(/^consent_audit_log_size\{/m);

      mariadb.resume();
      await waitForHealth('SERVING', 15_000);

      // Nothing half-written: each failed request id is there completely or not at all, and
      // every event has its audit entry.
      const idsIn = failed.map(() => '?').join(',');
      const rows = await sql<{ request_id: string; n: number }>(
        `SELECT request_id, COUNT(*) AS n FROM consent_events WHERE tenant_id = ? AND request_id IN (${idsIn}) GROUP BY request_id`,
        [T, ...failed],
      );
      for (const row of rows) expect(Number(row.n), row.request_id).to.equal(1);
      const consistency = async () => {
        const [events] = await sql<{ n: number }>('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ?', [T]);
        const [entries] = await sql<{ n: number }>("SELECT COUNT(*) AS n FROM audit_entries WHERE tenant_id = ? AND entry_type LIKE 'CONSENT_EVENT_%'", [T]);
        const [all] = await sql<{ n: number }>('SELECT COUNT(*) AS n FROM audit_entries WHERE tenant_id = ?', [T]);
        const [head] = await sql<{ size: number }>('SELECT size FROM audit_heads WHERE tenant_id = ?', [T]);
        if (Number(entries.n) !== Number(events.n)) {
          // Which events lack their entry, and what the log holds: the message explains the failure.
          const orphans = await sql<{ request_id: string }>(
            `SELECT e.request_id FROM consent_events e WHERE e.tenant_id = ? AND NOT EXISTS (SELECT 1 FROM audit_entries a WHERE a.tenant_id = e.tenant_id AND a.entry_json LIKE CONCAT('%', e.id, '%'))`,
            [T],
          );
          const types = await sql<{ entry_type: string; n: number }>('SELECT entry_type, COUNT(*) AS n FROM audit_entries WHERE tenant_id = ? GROUP BY entry_type', [T]);
          expect.fail(`one audit entry per event: ${events.n} events, ${entries.n} entries; events without an entry: ${orphans.map((o) => o.request_id).join(', ')}; entry types: ${JSON.stringify(types)}`);
        }
        expect(Number(head.size), 'audit head matches its entries').to.equal(Number(all.n));
        return Number(events.n);
      };
      await consistency();

      // Acknowledged writes are all there; retries of the failed ones converge on one event each.
      for (const id of failed) {
        const i = id === 'during-hang' ? 200 : 100 + inFlightIds.indexOf(id);
        await write(i, id);
      }
      const all = [...acknowledged, ...failed];
      const present = await sql<{ request_id: string; n: number }>(
        `SELECT request_id, COUNT(*) AS n FROM consent_events WHERE tenant_id = ? GROUP BY request_id`,
        [T],
      );
      expect(present.map((r) => r.request_id).sort()).to.deep.equal([...all].sort());
      for (const row of present) expect(Number(row.n), row.request_id).to.equal(1);
      expect(await consistency()).to.equal(all.length);

      const started = Date.now();
      const after = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone('+4915112000000') }) });
      expect(after.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
      expect(Date.now() - started, 'no call waits on a connection that hung').to.be.below(1000);
    });

    it('SIGTERM while the host hangs and writers keep writing: the process ends with 0 (found by a probe: exit 1, nothing logged)', async function () {
      const child = await startServerProcess(db, { env: { SHUTDOWN_DRAIN_MS: '3000', LOG_LEVEL: 'info' } });
      const consent = new ConsentServiceClient(child.address, credentials.createInsecure());
      let writing = true;
      const codes = new Set<string>();
      // Writers that keep writing through the hang and the drain: connections are opened (and time
      // out) while the process stops.
      const writer = async (w: number) => {
        for (let n = 0; writing && !child.hasExited(); n++) {
          const outcome = await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`+4915112${String(990000 + w * 1000 + (n % 1000))}`), requestId: `term-${w}-${n}` })).then(
            () => 'OK',
            (e: ServiceError) => status[e.code],
          );
          codes.add(outcome);
          if (outcome !== 'OK') await sleep(50);
        }
      };
      const writers = Array.from({ length: 8 }, (_, w) => writer(w));
      try {
        await sleep(1500);
        mariadb.pause();
        await sleep(1000);
        child.child.kill('SIGTERM');
        const code = await Promise.race([child.exited, sleep(60_000).then(() => 'still running')]);
        expect(code, child.output().slice(-3000)).to.equal(0);
        expect([...codes].filter((c) => c !== 'OK' && c !== 'UNAVAILABLE'), 'answers other than OK and UNAVAILABLE').to.deep.equal([]);
      } finally {
        writing = false;
        mariadb.resume();
        await Promise.all(writers);
        consent.close();
        await child.stop(1000);
      }
    });

    it('checks under load while the host hangs: no ALLOW later than B after the stop, then UNAVAILABLE; answering again within 5 s of the resume', async function () {
      const bound = s.app.config.decisionCache.stalenessMs;
      const people = Array.from({ length: 20 }, (_, i) => phone(`+4915113${String(i).padStart(6, '0')}`));
      for (const [i, person] of people.entries()) {
        await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, requestId: `load-${i}` }));
        await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person }) }); // cached
      }
      const answers: Array<{ sentAt: number; endedAt: number; outcome: 'ALLOW' | 'DENY' | string }> = [];
      let stopAt = Number.POSITIVE_INFINITY;
      let running = true;
      const t0 = performance.now();
      const loop = async (worker: number) => {
        for (let n = worker; running; n++) {
          const sentAt = performance.now() - t0;
          const outcome = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: people[n % people.length] }) }).then(
            (r) => Verdict[r.decision!.verdict].replace('VERDICT_', ''),
            (err: ServiceError) => status[err.code],
          );
          answers.push({ sentAt, endedAt: performance.now() - t0, outcome });
          if (outcome !== 'ALLOW') await sleep(5); // UNAVAILABLE answers come fast: do not spin
        }
      };
      const loops = Array.from({ length: 8 }, (_, w) => loop(w));
      await sleep(500);
      stopAt = performance.now() - t0;
      mariadb.pause();
      await sleep(bound + 4500); // two call timeouts: checks asked after B are answered while it hangs
      const resumeAt = performance.now() - t0;
      mariadb.resume();
      let answeredAgainAt = Number.POSITIVE_INFINITY;
      while (performance.now() - t0 - resumeAt < 15_000) {
        const fresh = answers.find((a) => a.sentAt > resumeAt && a.outcome === 'ALLOW');
        if (fresh) {
          answeredAgainAt = fresh.endedAt;
          break;
        }
        await sleep(50);
      }
      running = false;
      await Promise.all(loops);

      // Answered while the host hung (a call still waiting at the resume is answered from a fresh read).
      const hung = answers.filter((a) => a.endedAt < resumeAt);
      const late = hung.filter((a) => a.outcome === 'ALLOW' && a.sentAt > stopAt + bound);
      const during = hung.filter((a) => a.sentAt > stopAt + bound);
      const slowest = Math.max(...answers.map((a) => a.endedAt - a.sentAt));
      console.log(
        `      ${answers.length} checks; ALLOW asked until ${Math.round(Math.max(...hung.filter((a) => a.outcome === 'ALLOW').map((a) => a.sentAt)) - stopAt)} ms after the stop (B = ${bound} ms); ` +
          `answering again ${Math.round(answeredAgainAt - resumeAt)} ms after the resume; slowest call ${Math.round(slowest)} ms`,
      );
      // Answered before the stop: ALLOW. (A call sent just before it may need the database after
      // it, e.g. for the tenant row the process re-reads every 0.5 s, and then fails closed.)
      expect(
        answers.filter((a) => a.endedAt < stopAt && a.outcome !== 'ALLOW').map((a) => `${a.outcome} sent ${Math.round(a.sentAt)} ms, answered ${Math.round(a.endedAt)} ms`),
        'all ALLOW before the stop',
      ).to.deep.equal([]);
      expect(late, 'ALLOW answered from state older than B').to.deep.equal([]);
      expect(during.length, 'checks were asked while the host hung').to.be.greaterThan(0);
      expect([...new Set(during.map((a) => a.outcome))], 'asked after B, answered while the host hung: only UNAVAILABLE').to.deep.equal(['UNAVAILABLE']);
      expect(answers.every((a) => ['ALLOW', 'UNAVAILABLE'].includes(a.outcome)), 'no other outcome (never INTERNAL, never DENY for a person who opted in)').to.equal(true);
      expect(slowest, 'no call hangs past the call timeout').to.be.below(3000);
      expect(answeredAgainAt - resumeAt, 'answering again within 5 s of the resume').to.be.at.most(5000);
      await waitForHealth('SERVING', 15_000);
    });
  });
}
