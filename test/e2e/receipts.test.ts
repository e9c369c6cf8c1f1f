import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { verifyReceipt } from '../../src/cli/verify-receipt';
import { ConsentEventKind } from '../../src/gen/consent/v1/consent';
import { JobState, KeyServiceClient } from '../../src/gen/consent/v1/key';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

const run = promisify(execFile);
const ROOT = path.join(__dirname, '..', '..');

forEachDatabase('consent receipts', (db) => {
  let s: TestServer;
  let keys: KeyServiceClient;
  const T = 'receipts';
  before(async function () {
    s = await startTestServer(db());
    keys = new KeyServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
    await seedTenant(s, 'stranger');
  });
  after(async () => {
    keys?.close();
    await s?.stop();
  });

  const jwksOf = async (tenant: string) => (await call(keys, keys.getPublicKeys, { name: `tenants/${tenant}` })).jwks;

  it('an opt-in can return a signed receipt that verifies offline with the published keys only', async function () {
    const { event, receipt } = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915150000001'), issueReceipt: true, jurisdiction: 'DE' }));
    expect(receipt.split('.')).to.have.length(3);
    const jwks = await jwksOf(T);
    expect(JSON.parse(jwks).keys[0]).to.not.have.property('d');
    const verified = await verifyReceipt(receipt, jwks);
    expect(verified.payload).to.include({ version: 'KI-CR-v1.1.0', jti: event!.name, sub: event!.subject, iss: `tenants/${T}`, jurisdiction: 'DE', eventType: 'OPT_IN' });
    expect(JSON.stringify(verified.payload), 'no personal data in the receipt').to.not.include('4915150000001');
    let otherTenant: unknown;
    try {
      await verifyReceipt(receipt, await jwksOf('stranger'));
    } catch (err) {
      otherTenant = err;
    }
    expect(otherTenant, "another tenant's keys do not verify it").to.be.instanceOf(Error);
  });

  it('the CLI verifies a receipt and rejects a tampered one', async function () {
    this.timeout(30_000);
    const { receipt } = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915150000002'), issueReceipt: true }));
    const jwksFile = path.join(db().dataDir, 'jwks.json');
    const good = path.join(db().dataDir, 'receipt.jws');
    const bad = path.join(db().dataDir, 'tampered.jws');
    writeFileSync(jwksFile, await jwksOf(T));
    writeFileSync(good, receipt);
    const [h, p, sig] = receipt.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
    payload.eventType = 'OPT_OUT';
    writeFileSync(bad, [h, Buffer.from(JSON.stringify(payload)).toString('base64url'), sig].join('.'));
    const cli = (file: string) => run('npx', ['tsx', 'src/main.ts', 'verify-receipt', '--jwks', jwksFile, file], { cwd: ROOT }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
    const ok = await cli(good);
    expect(ok.code).to.equal(0);
    expect(JSON.parse(ok.out)).to.deep.include({ valid: true });
    const tampered = await cli(bad);
    expect(tampered.code).to.equal(1);
    expect(JSON.parse(tampered.out).valid).to.equal(false);
    // An unsigned token ("alg": "none") is refused too.
    const none = path.join(db().dataDir, 'none.jws');
    writeFileSync(none, [Buffer.from(JSON.stringify({ alg: 'none', typ: 'consent-receipt+jwt' })).toString('base64url'), p, ''].join('.'));
    expect((await cli(none)).code).to.equal(1);
  });

  it('receipts signed before a key rotation still verify afterwards; new ones use the new key', async function () {
    this.timeout(30_000);
    const before = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915150000003'), issueReceipt: true }));
    const { rotation } = await call(keys, keys.rotateTenantKey, { name: `tenants/${T}`, requestId: 'rotate-receipts' });
    for (let i = 0; i < 100; i++) {
      const r = await call(keys, keys.getKeyRotation, { name: rotation!.name });
      if (r.rotation!.state !== JobState.JOB_STATE_RUNNING) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const after = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915150000004'), issueReceipt: true }));
    const jwks = await jwksOf(T);
    const old = await verifyReceipt(before.receipt, jwks);
    const fresh = await verifyReceipt(after.receipt, jwks);
    expect(old.kid).to.not.equal(fresh.kid);
    expect(JSON.parse(jwks).keys).to.have.length(2);
  });

  it('receipts are for opt-ins only', async function () {
    const err = await expectGrpcError(
      call(s.consent, s.consent.recordConsent, consentRequest(T, { kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '', issueReceipt: true })),
      status.INVALID_ARGUMENT,
    );
    expect(err.fields).to.deep.equal(['issue_receipt']);
  });
});
