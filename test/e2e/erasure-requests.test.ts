import { spawn } from 'node:child_process';
import path from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { verifyReceipt } from '../../src/cli/verify-receipt';
import { CollectionMethod, DecisionReason } from '../../src/gen/consent/v1/consent';
import { KeyServiceClient } from '../../src/gen/consent/v1/key';
import {
  CreateRequestRequest,
  LegalHoldGround,
  ReceivedVia,
  RequestKind,
  RequestState,
  SubjectRightsServiceClient,
} from '../../src/gen/consent/v1/subject_rights';
import { forEachDatabase, TestDatabase } from '../support/databases';
import { consentRequest, email, query, seedTenant } from '../support/fixtures';
import { freePort, ROOT, TSX } from '../support/processes';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('erasure requests', (db) => {
  let s: TestServer;
  let rights: SubjectRightsServiceClient;
  let keys: KeyServiceClient;
  const T = 'erasure';
  before(async function () {
    s = await startTestServer(db());
    rights = new SubjectRightsServiceClient(s.address, credentials.createInsecure());
    keys = new KeyServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
  });
  after(async () => {
    rights?.close();
    keys?.close();
    await s?.stop();
  });

  let n = 0;
  async function verifiedErasure(who: string, kind = RequestKind.REQUEST_KIND_ERASURE) {
    const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifier: email(who), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
    const { request: verified } = await call(rights, rights.verifyIdentity, { name: request!.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-1', identifierPositions: [] });
    return verified!;
  }

  it('erases a verified request, returns a signed receipt, and the person is suppressed afterwards', async function () {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('gone@example.com') }));
    const request = await verifiedErasure('gone@example.com');
    const { request: done, erasureReceipt } = await call(rights, rights.eraseSubject, { name: request.name });
    expect(done!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(done!.transitions.map((t) => t.toState)).to.deep.equal([RequestState.REQUEST_STATE_RECEIVED, RequestState.REQUEST_STATE_VERIFIED, RequestState.REQUEST_STATE_IN_PROGRESS, RequestState.REQUEST_STATE_COMPLETED]);
    const jwks = (await call(keys, keys.getPublicKeys, { name: `tenants/${T}` })).jwks;
    const verified = await verifyReceipt(erasureReceipt, jwks);
    expect(verified.payload).to.include({ request: request.name, subjectKnown: true, sub: request.subject });
    expect(verified.payload.keyIdsDestroyed).to.deep.equal([`${request.subject}/key`]);
    expect(verified.payload.counts).to.deep.equal({ identifiers: 1, eventsRetained: 1, links: 0, signUps: 0 });
    expect(JSON.stringify(verified.payload)).to.not.include('gone@example.com');

    const again = await call(rights, rights.eraseSubject, { name: request.name });
    expect(again.erasureReceipt, 'idempotent').to.equal(erasureReceipt);
    expect(again.consistencyToken, 'a consistency token, also for the repeat').to.match(/^ct1\./);
    // The token makes a check see the erasure, fully consistent or from the cache.
    for (const consistency of [{ requirement: { $case: 'atLeastAsFresh' as const, value: again.consistencyToken } }, undefined]) {
      const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email('gone@example.com') }), consistency });
      expect(check.decision!.reason).to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
    }
    const imported = await expectGrpcError(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('gone@example.com'), method: CollectionMethod.COLLECTION_METHOD_IMPORT })), status.FAILED_PRECONDITION);
    expect(imported.reason).to.equal('SUBJECT_SUPPRESSED');
  });

  it('after the erasure nothing is reachable by the identifier: a new access request exports nothing of the person, a new sign-up starts an unlinked history', async function () {
    const who = 'reachable@example.com';
    const first = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    await call(rights, rights.eraseSubject, { name: (await verifiedErasure(who)).name });

    const access = await verifiedErasure(who, RequestKind.REQUEST_KIND_ACCESS);
    expect(access.subject, 'the request finds no subject').to.equal('');
    const exported = await exportPackage(access.name);
    expect(exported.consentEvents, 'not even how many events there were').to.deep.equal([]);
    expect(JSON.stringify(exported)).to.not.include(first.event!.subject);

    const fresh = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who), kind: 1 }));
    expect(fresh.event!.subject).to.not.equal(first.event!.subject);
    const again = await verifiedErasure(who, RequestKind.REQUEST_KIND_ACCESS);
    expect(again.subject).to.equal(fresh.event!.subject);
    const events = (await exportPackage(again.name)).consentEvents as Array<{ name: string }>;
    expect(events.map((e) => e.name), 'only the new history').to.deep.equal([fresh.event!.name]);
  });

  /** The JSON package of an export, reassembled from its chunks. */
  function exportPackage(name: string): Promise<{ consentEvents: unknown[] }> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = rights.exportSubjectData({ name });
      stream.on('data', (p: { part?: { $case: string; value: unknown } }) => {
        if (p.part?.$case === 'packageChunk') chunks.push(p.part.value as Buffer);
      });
      stream.on('error', reject);
      stream.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { consentEvents: unknown[] }));
    });
  }

  it('an open legal hold blocks the erasure with its ground; released, the erasure goes through', async function () {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('held@example.com') }));
    const { hold } = await call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email('held@example.com'), ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS, note: 'case 17', requestId: 'hold-held' });
    const request = await verifiedErasure('held@example.com');
    const blocked = await expectGrpcError(call(rights, rights.eraseSubject, { name: request.name }), status.FAILED_PRECONDITION);
    expect(blocked.reason).to.equal('LEGAL_HOLD');
    expect(blocked.message).to.include('17(3)(e)');
    const stillThere = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email('held@example.com') }) });
    expect(stillThere.decision!.reason, 'nothing was erased').to.equal(DecisionReason.DECISION_REASON_OPTED_IN);
    await call(rights, rights.releaseLegalHold, { name: hold!.name, note: 'claim settled' });
    const { request: done } = await call(rights, rights.eraseSubject, { name: request.name });
    expect(done!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
  });

  it('refuses unverified and non-erasure requests; an unknown person completes with nothing to destroy', async function () {
    const { request: unverified } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: email('x@example.com'), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'er-unverified' }));
    expect((await expectGrpcError(call(rights, rights.eraseSubject, { name: unverified!.name }), status.FAILED_PRECONDITION)).reason).to.equal('IDENTITY_NOT_VERIFIED');
    const access = await verifiedErasure('x@example.com', RequestKind.REQUEST_KIND_ACCESS);
    expect((await expectGrpcError(call(rights, rights.eraseSubject, { name: access.name }), status.FAILED_PRECONDITION)).reason).to.equal('NOT_AN_ERASURE');
    const unknown = await verifiedErasure('never-recorded@example.com');
    const { erasureReceipt } = await call(rights, rights.eraseSubject, { name: unknown.name });
    const verified = await verifyReceipt(erasureReceipt, (await call(keys, keys.getPublicKeys, { name: `tenants/${T}` })).jwks);
    expect(verified.payload).to.include({ subjectKnown: false });
  });

  it('a server killed half-way through an erasure finishes it at its next start', async function () {
    this.timeout(120_000);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('crash@example.com') }));
    const request = await verifiedErasure('crash@example.com');
    const port = await freePort();
    const child = spawn(TSX[0], [TSX[1], 'src/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, ...childEnv(db(), port), CONSENT_FAILPOINT: 'erasure.started' },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ? -1 : code)));
    const other = new SubjectRightsServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      for (let i = 0; ; i++) {
        const ready = await call(other, other.getRequest, { name: request.name }).then(() => true, () => false);
        if (ready) break;
        if (i > 300) throw new Error('child server did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
      const lost = await call(other, other.eraseSubject, { name: request.name }).then(() => null, (e: { code: number }) => e);
      expect(lost?.code, 'the call died with the process').to.equal(status.UNAVAILABLE);
      expect([-1, 137], 'killed at the failpoint').to.include(await exited);
    } finally {
      other.close();
      child.kill('SIGKILL');
    }
    const halfway = await call(rights, rights.getRequest, { name: request.name });
    expect(halfway.request!.state, 'left in progress by the killed process').to.equal(RequestState.REQUEST_STATE_IN_PROGRESS);

    const restarted = await startTestServer(db());
    try {
      const restartedRights = new SubjectRightsServiceClient(restarted.address, credentials.createInsecure());
      const { request: done } = await call(restartedRights, restartedRights.getRequest, { name: request.name });
      restartedRights.close();
      expect(done!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
      expect(done!.erasureReceipt).to.match(/^ey/);
      const check = await call(restarted.consent, restarted.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email('crash@example.com') }) });
      expect(check.decision!.reason).to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
    } finally {
      await restarted.stop();
    }
  });
});

function childEnv(db: TestDatabase, port: number): Record<string, string> {
  const url = (c: TestDatabase['config']) => (c.kind === 'sqlite' ? `sqlite:${c.file}` : c.url);
  return {
    PORT: String(port),
    LOG_LEVEL: 'warn',
    DATA_DIR: db.dataDir,
    DATABASE_URL: url(db.config),
    KEYSTORE_URL: url(db.keyStore),
    ROOT_KEYS_FILE: path.join(db.dataDir, 'root-keys.dev.json'),
  };
}

