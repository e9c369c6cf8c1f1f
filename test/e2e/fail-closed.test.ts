import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CheckConsentBatchRequest, Verdict } from '../../src/gen/consent/v1/consent';
import { createTestDatabase, MARIADB_SERVER_URL, testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, query, seedTenant } from '../support/fixtures';
import { TcpProxy } from '../support/tcp-proxy';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

/** When the state cannot be read, the answer is UNAVAILABLE: never a guessed ALLOW. */
describe('fail closed', function () {
  this.timeout(60_000);

  if (testDatabaseKinds().includes('mariadb')) {
    describe('when the MariaDB connection is lost', function () {
      let db: TestDatabase;
      let s: TestServer;
      let proxy: TcpProxy;
      const T = 'outage';
      before(async function () {
        db = await createTestDatabase('mariadb');
        const target = new URL(MARIADB_SERVER_URL);
        proxy = new TcpProxy(target.hostname, Number(target.port || 3306));
        const port = await proxy.start();
        const url = new URL((db.config as { url: string }).url);
        url.host = `127.0.0.1:${port}`;
        s = await startTestServer({ ...db, config: { kind: 'mysql', url: url.toString(), poolSize: 4 } });
        await seedTenant(s, T);
        await call(s.consent, s.consent.recordConsent, consentRequest(T));
      });
      after(async function () {
        await proxy?.cut();
        await s?.stop();
        await db?.drop();
      });

      it('checks answer UNAVAILABLE, writes too, and recover when the database is back', async function () {
        const before = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T) });
        expect(before.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
        const port = proxy.port;
        await proxy.cut();

        const check = await expectGrpcError(call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T) }), status.UNAVAILABLE);
        expect(check.reason).to.equal('DATABASE_UNAVAILABLE');
        await expectGrpcError(call(s.consent, s.consent.checkConsentBatch, CheckConsentBatchRequest.fromPartial({ parent: `tenants/${T}`, queries: [query(T)] })), status.UNAVAILABLE);
        await expectGrpcError(call(s.consent, s.consent.recordConsent, consentRequest(T)), status.UNAVAILABLE);

        await proxy.start(port);
        let after;
        for (let i = 0; i < 20 && !after; i++) {
          after = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T) }).catch(() => undefined);
          if (!after) await new Promise((r) => setTimeout(r, 250));
        }
        expect(after?.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
      });
    });
  }

  describe('when the tenant key cannot be unwrapped (wrong root key)', function () {
    let db: TestDatabase;
    const T = 'wrongkey';
    before(async function () {
      db = await createTestDatabase('sqlite');
    });
    after(async () => db?.drop());

    it('checks answer UNAVAILABLE rather than ALLOW', async function () {
      const first = await startTestServer(db);
      await seedTenant(first, T);
      await call(first.consent, first.consent.recordConsent, consentRequest(T));
      await first.stop();

      const otherRoot = JSON.stringify({ keys: [{ kty: 'oct', kid: 'other-root', k: randomBytes(32).toString('base64url') }] });
      const second = await startTestServer(db, { rootKeys: { kind: 'env', json: otherRoot } });
      try {
        const err = await expectGrpcError(call(second.consent, second.consent.checkConsent, { parent: `tenants/${T}`, query: query(T) }), status.UNAVAILABLE);
        expect(err.reason).to.equal('KEY_UNWRAP_FAILED');
      } finally {
        await second.stop();
      }
    });
  });
});
