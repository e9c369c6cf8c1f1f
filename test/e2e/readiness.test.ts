import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ConsentServiceClient } from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { createTestDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { phone, query, seedTenant } from '../support/fixtures';
import { ServerProcess, startServerProcess } from '../support/server-process';
import { call, TestServer } from '../support/test-server';

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
      server = await startServerProcess(db, { env: { SHUTDOWN_DRAIN_MS: '2000' } });
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
        const signalled = Date.now();
        server.child.kill('SIGTERM');
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(await server.health(), 'health while draining').to.equal('NOT_SERVING');
        await ask(); // still answered
        expect(server.hasExited(), 'still running within the drain period').to.equal(false);
        const code = await server.exited;
        expect(code).to.equal(0);
        expect(Date.now() - signalled, 'stopped after the drain period').to.be.at.least(1900);
        expect(server.output()).to.include('draining');
      } finally {
        for (const c of Object.values(clients)) c.close();
      }
    });
  });
}
