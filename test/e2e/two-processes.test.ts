import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ConsentServiceClient, DecisionReason, ListConsentEventsRequest } from '../../src/gen/consent/v1/consent';
import { KeyServiceClient } from '../../src/gen/consent/v1/key';
import { createTestDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { freePort, ROOT, TSX } from '../support/processes';
import { waitUntil } from '../support/wait';
import { call, startTestServer, TestServer } from '../support/test-server';

/** Two real server processes on one MariaDB: an erasure acknowledged by one is honoured by the other within 1 s. */
// Runs where MariaDB is configured (always in CI); SQLite has one process by nature.
if (testDatabaseKinds().includes('mariadb')) describe('two server processes on one MariaDB', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let a: TestServer;
  let b: ChildProcess;
  let bConsent: ConsentServiceClient;
  let bPort: number;
  const T = 'twoproc';
  const evidence = { sourceIp: '', userAgent: 'TwoProc/1', pageUrl: '', inboundMessageId: '', freeText: '' };

  before(async function () {
    db = await createTestDatabase('mariadb');
    a = await startTestServer(db);
    await seedTenant(a, T);
    bPort = await freePort();
    b = spawn(TSX[0], [TSX[1], 'src/main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(bPort),
        LOG_LEVEL: 'warn',
        DATA_DIR: db.dataDir,
        DATABASE_URL: (db.config as { url: string }).url,
        KEYSTORE_URL: (db.keyStore as { url: string }).url,
        ROOT_KEYS_FILE: path.join(db.dataDir, 'root-keys.dev.json'),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    bConsent = new ConsentServiceClient(`127.0.0.1:${bPort}`, credentials.createInsecure());
    await waitUntil(() => call(bConsent, bConsent.checkConsent, { parent: `tenants/${T}`, query: query(T) }).then(() => true, () => false), 30_000, performance.now(), 10);
  });
  after(async function () {
    bConsent?.close();
    b?.kill('SIGTERM');
    await a?.stop();
    await db?.drop();
  });

  it('a subject erased through one process is refused by the other at once, although it cached the key', async function () {
    await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915170000001'), evidence }));
    // Process B reads (and caches the subject key).
    const before = await call(bConsent, bConsent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: phone('+4915170000001') }));
    expect(before.consentEvents[0].evidence!.userAgent).to.equal('TwoProc/1');
    const state = await call(a.consent, a.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: phone('+4915170000001') });

    await a.app.services.subjectEraser.erase(T, state.subject.split('/').pop()!);
    const acknowledged = performance.now();
    const elapsed = await waitUntil(async () => {
      const list = await call(bConsent, bConsent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: phone('+4915170000001') }));
      const check = await call(bConsent, bConsent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone('+4915170000001') }) });
      // Erased means nothing is reachable by the identifier any more (docs/keys.md, "Erasure").
      return list.consentEvents.length === 0 && check.decision!.reason === DecisionReason.DECISION_REASON_SUBJECT_ERASED;
    }, 5_000, acknowledged, 10);
    console.log(`      subject erasure honoured by the other process after ${Math.round(elapsed)} ms`);
    expect(elapsed).to.be.below(1000);
  });

  it('a tenant shredded through one process is refused by the other within 1 s', async function () {
    await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915170000002'), evidence }));
    await call(bConsent, bConsent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone('+4915170000002') }) });
    const keys = new KeyServiceClient(a.address, credentials.createInsecure());
    try {
      await call(keys, keys.shredTenant, { name: `tenants/${T}`, confirmTenantId: T, requestId: '' });
    } finally {
      keys.close();
    }
    const acknowledged = performance.now();
    const elapsed = await waitUntil(
      () => call(bConsent, bConsent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone('+4915170000002') }) }).then(() => false, (err: { details: string }) => /erased/.test(err.details)),
      5_000,
      acknowledged,
      10,
    );
    console.log(`      tenant shred honoured by the other process after ${Math.round(elapsed)} ms`);
    expect(elapsed).to.be.below(1000);
  });
});

