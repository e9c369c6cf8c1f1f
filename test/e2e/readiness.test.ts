import { execFile } from 'node:child_process';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ConsentServiceClient } from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { createTestDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { phone, query, seedTenant } from '../support/fixtures';
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
