import path from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { ChangeKind, ConsentServiceClient, DecisionReason, ListConsentEventsRequest, StreamChangesResponse, Verdict } from '../../src/gen/consent/v1/consent';
import { SelfServiceServiceClient, SignUpRequest } from '../../src/gen/consent/v1/self_service';
import { CreateRequestRequest, ReceivedVia, RequestKind, RequestState } from '../../src/gen/consent/v1/subject_rights';
import { createTestDatabase, forEachDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { ServerProcess, startServerProcess } from '../support/server-process';
import { waitUntil } from '../support/wait';
import { call, expectGrpcError, startTestServer, T0, TestServer } from '../support/test-server';

const MINUTE = 60_000;

forEachDatabase('Rectification of an identifier (Art. 16)', (db) => {
  let s: TestServer;
  const T = 'rectifying';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => {
    await s?.stop();
  });
  beforeEach(() => s.clock.set(T0));

  let counter = 0;
  const create = (who: SubjectIdentifier | undefined, rectified: SubjectIdentifier | undefined, kind = RequestKind.REQUEST_KIND_RECTIFICATION, requestId = `rect-${++counter}`) =>
    call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifier: who, rectifiedIdentifier: rectified, receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId })).then((r) => r.request!);
  const verify = (name: string) => call(s.rights, s.rights.verifyIdentity, { name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-anna', identifierPositions: [] }).then((r) => r.request!);
  const rectify = (name: string) => call(s.rights, s.rights.rectifyIdentifier, { name });
  const verified = async (who: SubjectIdentifier, rectified: SubjectIdentifier) => verify((await create(who, rectified)).name);
  const check = (who: SubjectIdentifier, purpose: string | null = 'newsletter', channel = Channel.CHANNEL_WHATSAPP) =>
    call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: who, purpose: purpose ? `tenants/${T}/purposes/${purpose}` : '', channel }) } as never).then(
      (r) => (r as unknown as { decision: { verdict: Verdict; reason: DecisionReason } }).decision,
    );
  const said = async (who: SubjectIdentifier, purpose = 'newsletter') => {
    const d = await check(who, purpose);
    return `${Verdict[d.verdict]} ${DecisionReason[d.reason]}`;
  };
  const optIn = (who: SubjectIdentifier, purpose = 'newsletter') =>
    call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/${purpose}`, notice: `tenants/${T}/purposes/${purpose}/notices/1` }));

  it('the new identifier takes over the history and consents; the old one keeps nothing', async function () {
    const old = phone('+4915112370001');
    const next = phone('+4915112370002');
    const recorded = await optIn(old, 'newsletter');
    await optIn(old, 'orders');
    const subject = recorded.event!.name.split('/consentEvents/')[0];
    // Both cached: the old one naming the person, the new one naming nobody.
    expect([await said(old), await said(next)]).to.deep.equal(['VERDICT_ALLOW DECISION_REASON_OPTED_IN', 'VERDICT_DENY DECISION_REASON_UNKNOWN_SUBJECT']);

    const received = await create(old, next);
    expect([received.kind, received.state, received.subject]).to.deep.equal([RequestKind.REQUEST_KIND_RECTIFICATION, RequestState.REQUEST_STATE_RECEIVED, subject]);
    expect((await expectGrpcError(rectify(received.name), status.FAILED_PRECONDITION)).reason, 'identity first').to.equal('IDENTITY_NOT_VERIFIED');
    await verify(received.name);
    s.clock.advance(MINUTE);
    const done = await rectify(received.name);
    expect(done.request!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(done.request!.subject).to.equal(subject);
    expect(done.consistencyToken).to.not.equal('');
    const note = done.request!.transitions.pop()!;
    expect([RequestState[note.toState], note.principal, note.note]).to.deep.equal(['REQUEST_STATE_COMPLETED', 'dev-admin', 'rectified: the phone identifier was replaced; history and consents follow it']);

    // At once in this process: ALLOW moved from the old identifier to the new one.
    expect([await said(next), await said(next, 'orders'), await said(old), await said(old, 'orders')]).to.deep.equal([
      'VERDICT_ALLOW DECISION_REASON_OPTED_IN',
      'VERDICT_ALLOW DECISION_REASON_OPTED_IN',
      'VERDICT_DENY DECISION_REASON_UNKNOWN_SUBJECT',
      'VERDICT_DENY DECISION_REASON_UNKNOWN_SUBJECT',
    ]);
    // The history follows: the new identifier lists the events recorded under the old one.
    const history = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: next, pageSize: 100 }));
    expect(history.consentEvents.map((e) => e.name)).to.include(recorded.event!.name);
    const none = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: old, pageSize: 100 }));
    expect(none.consentEvents).to.deep.equal([]);
    // A new consent by the new identifier lands on the same person.
    const later = await optIn(next, 'otp');
    expect(later.event!.name.startsWith(`${subject}/`)).to.equal(true);
    // The old identifier, recorded again, is a new person.
    const stranger = await optIn(old, 'otp');
    expect(stranger.event!.name.startsWith(`${subject}/`)).to.equal(false);

    // A retry answers the completed request; the audit log names the person and the request.
    expect((await rectify(received.name)).request!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    const entries = await call(s.audit, s.audit.listAuditEntries, { parent: `tenants/${T}`, startIndex: 0, pageSize: 1000, subjectIdentifier: undefined, subject: '', purpose: '', entryTypes: ['IDENTIFIER_RECTIFIED'], principal: '', startTime: undefined, endTime: undefined });
    const parsed = entries.entries.map((e) => JSON.parse(e.entryJson) as { subject: string; ref: string; principal: string });
    expect(parsed.map((e) => [e.subject, e.ref, e.principal])).to.deep.equal([[subject.split('/').pop(), received.name, 'dev-admin']]);
    // Lists and requests hold no identifier in clear; neither do the logs.
    expect(JSON.stringify(done)).to.not.include('4915112370002');
    expect(s.logs()).to.not.include('4915112370001');
    expect(s.logs()).to.not.include('4915112370002');
  });

  it('an e-mail address is rectified the same way; the deadline can be extended and the request rejected like any other', async function () {
    const old = email('typo@exmaple.com');
    const next = email('right@example.com');
    await optIn(old);
    const request = await verified(old, next);
    const extended = await call(s.rights, s.rights.extendDeadline, { name: request.name, months: 1, reason: 'several systems hold the address' });
    expect(extended.request!.extensionReason).to.equal('several systems hold the address');
    await rectify(request.name);
    expect([await said(next), await said(old)]).to.deep.equal(['VERDICT_ALLOW DECISION_REASON_OPTED_IN', 'VERDICT_DENY DECISION_REASON_UNKNOWN_SUBJECT']);
    const rejected = await create(next, email('other@example.com'));
    await call(s.rights, s.rights.rejectRequest, { name: rejected.name, reason: 'not the person' });
    expect((await expectGrpcError(rectify(rejected.name), status.FAILED_PRECONDITION)).reason).to.equal('INVALID_TRANSITION');
    expect(await said(next), 'nothing changed').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(s.logs()).to.not.include('right@example.com');
  });

  it('recipients learn of it on the change feed (Art. 19); a pending sign-up\'s mail to the old address is not sent and its link confirms nothing', async function () {
    const self = new SelfServiceServiceClient(s.address, credentials.createInsecure());
    try {
      const old = email('misstyped.addres@example.org');
      const next = email('correct.address@example.org');
      const signUp = (who: SubjectIdentifier) =>
        call(self, self.signUp, SignUpRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: who, choices: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_EMAIL, notice: `tenants/${T}/purposes/newsletter/notices/1` }], evidence: { sourceIp: '203.0.113.9' }, language: 'en', requestId: `rect-su-${++counter}` }));
      const deliveries = async () => (await call(self, self.listConfirmationDeliveries, { parent: `tenants/${T}`, pageSize: 0, pageToken: '' })).deliveries;
      await signUp(old);
      const pending = (await deliveries()).find((d) => d.email === 'misstyped.addres@example.org')!;
      const subject = `tenants/${T}/subjects/${(JSON.parse(Buffer.from(/#token=(.+)$/.exec(pending.link)![1].split('.')[1], 'base64url').toString()) as { sub: string }).sub}`;
      const request = await verified(old, next);
      s.clock.advance(MINUTE);
      await rectify(request.name);

      expect((await deliveries()).map((d) => d.name), 'the mail to the wrong address is not listed').not.to.include(pending.name);
      const link = decodeURIComponent(/#token=(.+)$/.exec(pending.link)![1]);
      const refused = await expectGrpcError(call(self, self.confirmSignUp, { parent: `tenants/${T}`, token: link, evidence: { sourceIp: '198.51.100.3' } } as never), status.FAILED_PRECONDITION);
      expect(refused.reason).to.equal('SIGNUP_SUPERSEDED');
      const pendingNow = await check(next, 'newsletter', Channel.CHANNEL_EMAIL);
      expect(`${Verdict[pendingNow.verdict]} ${DecisionReason[pendingNow.reason]}`, 'still pending: nobody at the right address confirmed').to.equal('VERDICT_DENY DECISION_REASON_CONFIRMATION_PENDING');

      const feed: StreamChangesResponse[] = [];
      const stream = s.consent.streamChanges({ parent: `tenants/${T}`, cursor: '' });
      stream.on('data', (c: StreamChangesResponse) => feed.push(c));
      stream.on('error', () => undefined);
      await waitUntil(async () => feed.some((c) => c.kind === ChangeKind.CHANGE_KIND_IDENTIFIER_RECTIFIED && c.subject === subject), 5000);
      stream.cancel();
      const change = feed.find((c) => c.kind === ChangeKind.CHANGE_KIND_IDENTIFIER_RECTIFIED && c.subject === subject)!;
      expect([change.subject, change.purpose, change.event]).to.deep.equal([subject, '', '']);
      expect(JSON.stringify(StreamChangesResponse.toJSON(change))).not.to.include('example.org');
    } finally {
      self.close();
    }
  });

  it('an identifier the tenant holds nothing about completes with no data held', async function () {
    const done = await rectify((await verified(phone('+4915112379999'), phone('+4915112379998'))).name);
    expect([done.request!.state, done.request!.subject]).to.deep.equal([RequestState.REQUEST_STATE_COMPLETED, '']);
    expect(done.request!.transitions.pop()!.note).to.equal('completed: no data held');
    expect(await said(phone('+4915112379998'))).to.equal('VERDICT_DENY DECISION_REASON_UNKNOWN_SUBJECT');
  });

  it('a person erased after the request was verified: the rectification completes with no data held (not UNAVAILABLE for ever)', async function () {
    const who = phone('+4915112370021');
    await optIn(who);
    const request = await verified(who, phone('+4915112370022'));
    const erasure = await verify((await create(who, undefined, RequestKind.REQUEST_KIND_ERASURE)).name);
    await call(s.rights, s.rights.eraseSubject, { name: erasure.name });
    const done = await rectify(request.name);
    expect(done.request!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(done.request!.transitions.pop()!.note).to.equal('completed: no data held');
    expect((await rectify(request.name)).request!.state, 'a retry answers the completed request').to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(await said(phone('+4915112370022')), 'nobody got the new identifier').to.equal('VERDICT_DENY DECISION_REASON_UNKNOWN_SUBJECT');
    expect(s.logs()).to.not.include('"rpc failed"');
  });

  it('a new identifier of someone else is IDENTIFIER_IN_USE; an erased one is IDENTIFIER_ERASED; nothing changes', async function () {
    const a = phone('+4915112370011');
    const b = phone('+4915112370012');
    const gone = phone('+4915112370013');
    await optIn(a);
    await optIn(b);
    await optIn(gone);
    const toB = await verified(a, b);
    const inUse = await expectGrpcError(rectify(toB.name), status.FAILED_PRECONDITION);
    expect(inUse.reason).to.equal('IDENTIFIER_IN_USE');
    expect(inUse.message).to.not.include('4915112370012');
    // Erase the owner of `gone`.
    const erasure = await verify((await create(gone, undefined, RequestKind.REQUEST_KIND_ERASURE)).name);
    await call(s.rights, s.rights.eraseSubject, { name: erasure.name });
    const toGone = await verified(a, gone);
    expect((await expectGrpcError(rectify(toGone.name), status.FAILED_PRECONDITION)).reason).to.equal('IDENTIFIER_ERASED');
    expect([await said(a), await said(b), await said(gone)]).to.deep.equal(['VERDICT_ALLOW DECISION_REASON_OPTED_IN', 'VERDICT_ALLOW DECISION_REASON_OPTED_IN', 'VERDICT_DENY DECISION_REASON_SUBJECT_ERASED']);
    // Both requests stay VERIFIED: the DPO rejects them (or links the subjects instead).
    expect((await call(s.rights, s.rights.getRequest, { name: toB.name })).request!.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
  });

  it('every error path has a precise status, and bad input changes nothing', async function () {
    const who = phone('+4915112370021');
    await optIn(who);
    const fields = async (p: Promise<unknown>) => (await expectGrpcError(p, status.INVALID_ARGUMENT)).fields;
    expect(await fields(create(who, undefined)), 'required for a rectification').to.deep.equal(['rectified_identifier']);
    expect(await fields(create(who, phone('+4915112370022'), RequestKind.REQUEST_KIND_ACCESS)), 'refused for other kinds').to.deep.equal(['rectified_identifier']);
    expect(await fields(create(who, phone('12')))).to.deep.equal(['rectified_identifier.phone_number']);
    expect(await fields(create(who, email('new@example.com'))), 'same kind').to.deep.equal(['rectified_identifier']);
    expect(await fields(create(who, phone('+49 151 1237 0021'))), 'another identifier').to.deep.equal(['rectified_identifier']);
    expect(await fields(create(undefined, phone('+4915112370022')))).to.deep.equal(['subject_identifier']);
    expect(await fields(rectify('requests/1'))).to.deep.equal(['name']);
    expect((await expectGrpcError(rectify(`tenants/${T}/requests/${'0'.repeat(32)}`), status.NOT_FOUND)).reason).to.equal('REQUEST_NOT_FOUND');
    expect((await expectGrpcError(rectify(`tenants/nobody/requests/${'0'.repeat(32)}`), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
    expect((await expectGrpcError(create(who, phone('+4915112370022'), RequestKind.REQUEST_KIND_RECTIFICATION, 'rect-x').then(() => call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: 'tenants/nobody', kind: RequestKind.REQUEST_KIND_RECTIFICATION, subjectIdentifier: who, rectifiedIdentifier: phone('+4915112370022'), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'r-nobody' }))), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
    const access = await verify((await create(who, undefined, RequestKind.REQUEST_KIND_ACCESS)).name);
    expect((await expectGrpcError(rectify(access.name), status.FAILED_PRECONDITION)).reason).to.equal('NOT_A_RECTIFICATION');
    // A retry of CreateRequest answers the first request.
    const first = await create(who, phone('+4915112370023'), RequestKind.REQUEST_KIND_RECTIFICATION, 'rect-retry');
    expect((await create(who, phone('+4915112370023'), RequestKind.REQUEST_KIND_RECTIFICATION, 'rect-retry')).name).to.equal(first.name);
    expect(await said(who), 'nothing changed').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(s.logs()).to.not.include('4915112370022');
  });
});

if (testDatabaseKinds().includes('mariadb')) describe('rectification and reassignment across two server processes on one MariaDB', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let a: TestServer;
  let b: ServerProcess;
  let bConsent: ConsentServiceClient;
  const T = 'rectify2';
  const BOUND_MS = 1000;
  const checkOnB = (who: SubjectIdentifier) =>
    call(bConsent, bConsent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: who }) } as never) as unknown as Promise<{ decision: { verdict: Verdict; reason: DecisionReason } }>;

  before(async function () {
    db = await createTestDatabase('mariadb');
    a = await startTestServer(db);
    await seedTenant(a, T);
    b = await startServerProcess(db, { env: { LOG_LEVEL: 'warn', ROOT_KEYS_FILE: path.join(db.dataDir, 'root-keys.dev.json'), DECISION_CACHE_STALENESS_MS: String(BOUND_MS) } });
    bConsent = new ConsentServiceClient(b.address, credentials.createInsecure());
    await waitUntil(() => checkOnB(phone('+4915188800000')).then(() => true, () => false), 30_000);
  });
  after(async function () {
    bConsent?.close();
    await b?.stop();
    await a?.stop();
    await db?.drop();
  });

  it('the other process answers the new truth within B (rectified: both identifiers; reassigned)', async function () {
    const delays: number[] = [];
    for (let n = 1; n <= 3; n++) {
      const old = phone(`+49151888${String(n).padStart(5, '0')}`);
      const next = phone(`+49151889${String(n).padStart(5, '0')}`);
      await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: old }));
      await waitUntil(async () => (await checkOnB(old)).decision.verdict === Verdict.VERDICT_ALLOW, 5_000);
      // The other process holds the new identifier as nobody's.
      expect((await checkOnB(next)).decision.reason).to.equal(DecisionReason.DECISION_REASON_UNKNOWN_SUBJECT);
      const { request } = await call(a.rights, a.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_RECTIFICATION, subjectIdentifier: old, rectifiedIdentifier: next, receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: `r-${n}` }));
      await call(a.rights, a.rights.verifyIdentity, { name: request!.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-anna', identifierPositions: [] });
      await call(a.rights, a.rights.rectifyIdentifier, { name: request!.name });
      let acknowledged = performance.now();
      delays.push(await waitUntil(async () => (await checkOnB(next)).decision.verdict === Verdict.VERDICT_ALLOW && (await checkOnB(old)).decision.reason === DecisionReason.DECISION_REASON_UNKNOWN_SUBJECT, 5_000, acknowledged));
      await call(a.consent, a.consent.reportReassignedIdentifier, { parent: `tenants/${T}`, subjectIdentifier: next, reassignTime: undefined, source: 'CARRIER_NOTICE', requestId: `rr-${n}` });
      acknowledged = performance.now();
      delays.push(await waitUntil(async () => (await checkOnB(next)).decision.reason === DecisionReason.DECISION_REASON_IDENTIFIER_REASSIGNED, 5_000, acknowledged));
    }
    const worst = Math.max(...delays);
    console.log(`      rectification/reassignment honoured by the other process after ${Math.round(worst)} ms at worst (B = ${BOUND_MS} ms)`);
    expect(worst).to.be.at.most(BOUND_MS);
  });
});

