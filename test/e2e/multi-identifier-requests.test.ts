import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { DecisionReason, Verdict } from '../../src/gen/consent/v1/consent';
import {
  CreateRequestRequest,
  ExportSubjectDataResponse,
  LegalHoldGround,
  ReceivedVia,
  RequestKind,
  RequestState,
  RestrictionGround,
} from '../../src/gen/consent/v1/subject_rights';
import { credentials } from '@grpc/grpc-js';
import { IdentityServiceClient, LinkIdentifiersRequest } from '../../src/gen/consent/v1/identity';
import { verifyReceipt } from '../../src/cli/verify-receipt';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, T0, TestServer } from '../support/test-server';

const customer = (value: string): SubjectIdentifier => ({ kind: { $case: 'customerId', value }, defaultRegion: '' });

/**
 * Issue 18, point 1: one request for all of a person's identifiers. Each identifier finds its own
 * subject (or nothing), is verified on its own, and the request reaches every subject found:
 * export labelled per identifier, erasure of each, a legal hold on any blocks and is named.
 */
forEachDatabase('Requests for several identifiers of one person', (db) => {
  let s: TestServer;
  const T = 'multi';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => {
    await s?.stop();
  });
  beforeEach(() => s.clock.set(T0));

  let counter = 0;
  const create = (kind: RequestKind, first: SubjectIdentifier | undefined, more: SubjectIdentifier[], requestId = `multi-${++counter}`) =>
    call(
      s.rights,
      s.rights.createRequest,
      CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifier: first, subjectIdentifiers: more, receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId }),
    ).then((r) => r.request!);
  const verify = (name: string, positions: number[], method = 'ID_DOCUMENT') => call(s.rights, s.rights.verifyIdentity, { name, method, verifiedBy: 'dpo-anna', identifierPositions: positions }).then((r) => r.request!);
  const optIn = (who: SubjectIdentifier, requestId: string) => call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: who, requestId }));
  const check = (who: SubjectIdentifier) =>
    call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP }) }).then(
      (r) => `${Verdict[r.decision!.verdict]} ${DecisionReason[r.decision!.reason]}`,
    );
  const exportPackage = (name: string) =>
    new Promise<{ doc: Record<string, unknown> & { parts: Array<Record<string, unknown>>; consentEvents: Array<{ foundBy: number; name: string }> }; html: string; manifest: string }>((resolve, reject) => {
      const parts: ExportSubjectDataResponse[] = [];
      const stream = s.rights.exportSubjectData({ name });
      stream.on('data', (p: ExportSubjectDataResponse) => parts.push(p));
      stream.on('error', reject);
      stream.on('end', () => {
        const bytes = (kind: string) => Buffer.concat(parts.filter((p) => p.part!.$case === kind).map((p) => p.part!.value as Buffer)).toString('utf8');
        const last = parts[parts.length - 1].part!;
        resolve({ doc: JSON.parse(bytes('packageChunk')), html: bytes('htmlChunk'), manifest: last.$case === 'manifest' ? last.value.signedManifest : '' });
      });
    });
  const listNames = async () => (await call(s.rights, s.rights.listRequests, { parent: `tenants/${T}`, state: 0, kind: 0, overdue: false, dueBefore: undefined, pageSize: 500, pageToken: '' })).requests.map((r) => r.name);

  it('reports each identifier with the subject it found, nothing for an unknown one; the single-identifier form still works', async function () {
    const p = phone('+4915112360001');
    const e = email('multi-one@example.com');
    await optIn(p, 'm1-p');
    await optIn(e, 'm1-e');
    const request = await create(RequestKind.REQUEST_KIND_ACCESS, p, [e, customer('never-seen-7')]);
    expect(request.identifiers.map((i) => [i.position, i.kind, i.subject !== '', i.verificationMethod, i.viaLink])).to.deep.equal([
      [1, 'PHONE', true, '', ''],
      [2, 'EMAIL', true, '', ''],
      [3, 'CUSTOMER_ID', false, '', ''],
    ]);
    expect(request.identifiers[0].subject).to.not.equal(request.identifiers[1].subject);
    expect(request.subject, 'the first identifier names the request').to.equal(request.identifiers[0].subject);
    expect(request.transitions[0].note).to.equal('received via EMAIL (3 identifiers)');
    expect(JSON.stringify(request), 'no identifier value in the answer').to.not.match(/4915112360001|multi-one@example|never-seen-7/);

    // Only subject_identifiers, no subject_identifier: the first of them is position 1.
    const only = await create(RequestKind.REQUEST_KIND_ACCESS, undefined, [e]);
    expect(only.identifiers.map((i) => [i.position, i.kind])).to.deep.equal([[1, 'EMAIL']]);
    // An old client's request has its one identifier as position 1.
    const single = await create(RequestKind.REQUEST_KIND_ACCESS, p, []);
    expect(single.identifiers.map((i) => [i.position, i.kind, i.subject])).to.deep.equal([[1, 'PHONE', request.identifiers[0].subject]]);
  });

  it('verifies identifiers one by one; the request is VERIFIED when every one is, each verification kept', async function () {
    const request = await create(RequestKind.REQUEST_KIND_ACCESS, phone('+4915112360002'), [email('multi-two@example.com')]);
    const first = await verify(request.name, [1], 'SMS_CODE');
    expect(first.state).to.equal(RequestState.REQUEST_STATE_RECEIVED);
    expect(first.identifiers.map((i) => i.verificationMethod)).to.deep.equal(['SMS_CODE', '']);
    expect(first.identifiers[0].verifiedBy).to.equal('dpo-anna');
    expect(first.identifiers[0].verifyTime!.getTime()).to.equal(T0);
    const last = first.transitions[first.transitions.length - 1];
    expect([RequestState[last.fromState], RequestState[last.toState], last.note]).to.deep.equal([
      'REQUEST_STATE_RECEIVED',
      'REQUEST_STATE_RECEIVED',
      'identity verified by SMS_CODE (identifier 1); 1 identifier(s) still to verify',
    ]);
    // A repeat for an identifier verified already changes nothing.
    const again = await verify(request.name, [1], 'OTHER');
    expect(again.identifiers[0].verificationMethod).to.equal('SMS_CODE');
    expect(again.transitions).to.have.length(first.transitions.length);

    s.clock.advance(60_000);
    const done = await verify(request.name, [], 'EMAIL_CONFIRMATION');
    expect(done.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    expect(done.identifiers.map((i) => [i.verificationMethod, i.verifyTime!.getTime()])).to.deep.equal([
      ['SMS_CODE', T0],
      ['EMAIL_CONFIRMATION', T0 + 60_000],
    ]);
    expect(done.transitions[done.transitions.length - 1].note).to.equal('identity verified by EMAIL_CONFIRMATION (identifier 2)');
    expect((await expectGrpcError(verify(request.name, [2]), status.FAILED_PRECONDITION)).reason, 'verified already').to.equal('INVALID_TRANSITION');
  });

  it('refuses unknown and repeated positions with the field named, and changes nothing', async function () {
    const request = await create(RequestKind.REQUEST_KIND_ERASURE, phone('+4915112360003'), [email('multi-three@example.com')]);
    const unknown = await expectGrpcError(verify(request.name, [3]), status.INVALID_ARGUMENT);
    expect([unknown.reason, unknown.fields]).to.deep.equal(['UNKNOWN_POSITION', ['identifier_positions']]);
    expect(unknown.message).to.include('position 3');
    const repeated = await expectGrpcError(verify(request.name, [1, 1]), status.INVALID_ARGUMENT);
    expect(repeated.fields).to.deep.equal(['identifier_positions']);
    const zero = await expectGrpcError(verify(request.name, [0]), status.INVALID_ARGUMENT);
    expect(zero.fields).to.deep.equal(['identifier_positions']);
    const after = (await call(s.rights, s.rights.getRequest, { name: request.name })).request!;
    expect(after.identifiers.every((i) => i.verificationMethod === '')).to.equal(true);
    expect(after.transitions).to.have.length(1);
  });

  it('refuses bad identifier lists with the field and position named, never the value, and registers nothing', async function () {
    const before = await listNames();
    const twice = await expectGrpcError(create(RequestKind.REQUEST_KIND_ACCESS, email('Dup@Example.com'), [email('dup@example.com ')]), status.INVALID_ARGUMENT);
    expect(twice.fields).to.deep.equal(['subject_identifiers[0]']);
    expect(twice.message).to.not.include('dup@');
    const bad = await expectGrpcError(create(RequestKind.REQUEST_KIND_ACCESS, phone('+4915112360004'), [phone('+4915112360005'), email('not-an-address')]), status.INVALID_ARGUMENT);
    expect(bad.fields).to.deep.equal(['subject_identifiers[1].email']);
    expect(bad.message).to.not.include('not-an-address');
    const many = Array.from({ length: 10 }, (_, i) => customer(`c-${i}`));
    expect((await expectGrpcError(create(RequestKind.REQUEST_KIND_ACCESS, phone('+4915112360004'), many), status.INVALID_ARGUMENT)).fields).to.deep.equal(['subject_identifiers']);
    expect((await expectGrpcError(create(RequestKind.REQUEST_KIND_ACCESS, undefined, []), status.INVALID_ARGUMENT)).fields).to.deep.equal(['subject_identifier']);
    expect(await listNames()).to.deep.equal(before);
    expect(s.logs()).to.not.match(/not-an-address|dup@example/);
  });

  it('a retry returns the first request; the same request_id with other identifiers or another kind is REQUEST_ID_REUSED', async function () {
    await optIn(email('multi-six@example.com'), 'm6-e');
    const first = await create(RequestKind.REQUEST_KIND_ACCESS, phone('+4915112360006'), [email('multi-six@example.com')], 'multi-retry');
    const retry = await create(RequestKind.REQUEST_KIND_ACCESS, phone('+49 151 12360006'), [email('Multi-Six@example.com')], 'multi-retry');
    expect(retry.name).to.equal(first.name);
    for (const [kind, more] of [
      [RequestKind.REQUEST_KIND_ACCESS, [email('other@example.com')]],
      [RequestKind.REQUEST_KIND_ACCESS, []],
      [RequestKind.REQUEST_KIND_ERASURE, [email('multi-six@example.com')]],
      [RequestKind.REQUEST_KIND_OBJECTION, [email('multi-six@example.com')]],
    ] as const) {
      const reused = await expectGrpcError(create(kind, phone('+4915112360006'), [...more], 'multi-retry'), status.FAILED_PRECONDITION);
      expect(reused.reason).to.equal('REQUEST_ID_REUSED');
    }
    // The refused objection changed nothing: marketing to the e-mail address is still allowed.
    expect(await check(email('multi-six@example.com'))).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
  });

  it('exports every person found, each part labelled by the identifier that found it', async function () {
    const p = phone('+4915112360007');
    const e = email('multi-seven@example.com');
    await optIn(p, 'm7-p1');
    await optIn(p, 'm7-p2');
    await optIn(e, 'm7-e1');
    const request = await create(RequestKind.REQUEST_KIND_PORTABILITY, e, [customer('nobody-7'), p]);
    await verify(request.name, []);
    const { doc, html, manifest } = await exportPackage(request.name);
    const [emailSubject, , phoneSubject] = request.identifiers.map((i) => i.subject);
    expect(doc.parts).to.deep.equal([
      { position: 1, label: 'identifier 1 (EMAIL)', identifierKind: 'EMAIL', subject: emailSubject, viaLink: null, outcome: 'exported' },
      { position: 2, label: 'identifier 2 (CUSTOMER_ID)', identifierKind: 'CUSTOMER_ID', subject: null, viaLink: null, outcome: 'no data held' },
      { position: 3, label: 'identifier 3 (PHONE)', identifierKind: 'PHONE', subject: phoneSubject, viaLink: null, outcome: 'exported' },
    ]);
    expect(doc.subject).to.equal(emailSubject);
    expect(doc.identifiers).to.deep.equal([
      { subject: emailSubject, kind: 'EMAIL', value: 'multi-seven@example.com' },
      { subject: phoneSubject, kind: 'PHONE', value: '+4915112360007' },
    ]);
    expect(doc.consentEvents.map((ev) => ev.foundBy)).to.deep.equal([1, 3, 3]);
    expect(doc.consentEvents.every((ev) => ev.name.startsWith(ev.foundBy === 1 ? emailSubject : phoneSubject))).to.equal(true);
    expect(html).to.include('Found by identifier 1 (EMAIL)').and.include('Found by identifier 3 (PHONE)').and.include('identifier 2 (CUSTOMER_ID): no data held');
    const jwks = (await call(s.keys, s.keys.getPublicKeys, { name: `tenants/${T}` })).jwks;
    expect((await verifyReceipt(manifest, jwks)).payload).to.deep.include({ sub: emailSubject, subjects: [emailSubject, phoneSubject] });
    const done = (await call(s.rights, s.rights.getRequest, { name: request.name })).request!;
    expect(done.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(done.identifiers.map((i) => i.outcome)).to.deep.equal(['exported', 'no data held', 'exported']);
    // Who read what: each person whose data went out has the export in their own history.
    const exportedEntries = (await s.app.services.audit.entries(T, 0, 100_000, { types: ['SUBJECT_EXPORTED'] }))
      .map((x) => JSON.parse(x.entryJson) as { subject?: string; ref: string; principal: string })
      .filter((x) => x.ref === request.name.split('/').pop());
    expect(exportedEntries.map((x) => [x.subject, x.principal])).to.deep.equal([
      [emailSubject.split('/').pop(), 'dev-admin'],
      [phoneSubject.split('/').pop(), 'dev-admin'],
    ]);
  });

  it('a legal hold on any identifier blocks the erasure and is named; after its release every person is erased and the receipt lists each outcome', async function () {
    const p = phone('+4915112360008');
    const e = email('multi-eight@example.com');
    await optIn(p, 'm8-p');
    await optIn(e, 'm8-e');
    const { hold } = await call(s.rights, s.rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: e, ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS, note: 'case 18', requestId: 'm8-hold' });
    const request = await create(RequestKind.REQUEST_KIND_ERASURE, p, [e, customer('nobody-8')]);
    await verify(request.name, []);
    const blocked = await expectGrpcError(call(s.rights, s.rights.eraseSubject, { name: request.name }), status.FAILED_PRECONDITION);
    expect(blocked.reason).to.equal('LEGAL_HOLD');
    expect(blocked.message).to.include(hold!.name).and.include('identifier 2 (EMAIL)');
    expect(await check(p), 'nothing erased while blocked').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect((await call(s.rights, s.rights.getRequest, { name: request.name })).request!.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);

    await call(s.rights, s.rights.releaseLegalHold, { name: hold!.name, note: 'case closed' });
    const erased = await call(s.rights, s.rights.eraseSubject, { name: request.name });
    expect(erased.request!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(erased.request!.identifiers.map((i) => i.outcome)).to.deep.equal(['erased: subject key destroyed', 'erased: subject key destroyed', 'no data held']);
    expect(await check(p)).to.equal('VERDICT_DENY DECISION_REASON_SUBJECT_ERASED');
    expect(await check(e)).to.equal('VERDICT_DENY DECISION_REASON_SUBJECT_ERASED');
    const jwks = (await call(s.keys, s.keys.getPublicKeys, { name: `tenants/${T}` })).jwks;
    const receipt = (await verifyReceipt(erased.erasureReceipt, jwks)).payload as { keyIdsDestroyed: string[]; subjects: Array<{ position: number; identifierKind: string; subject: string | null; outcome: string; keyIdDestroyed: string | null }> };
    const [ps, es] = request.identifiers.map((i) => i.subject);
    expect(receipt.keyIdsDestroyed).to.deep.equal([`${ps}/key`, `${es}/key`]);
    expect(receipt.subjects.map((x) => [x.position, x.identifierKind, x.subject, x.outcome, x.keyIdDestroyed])).to.deep.equal([
      [1, 'PHONE', ps, 'erased: subject key destroyed', `${ps}/key`],
      [2, 'EMAIL', es, 'erased: subject key destroyed', `${es}/key`],
      [3, 'CUSTOMER_ID', null, 'no data held', null],
    ]);
    expect(JSON.stringify(receipt)).to.not.match(/4915112360008|multi-eight|nobody-8/);
    // Idempotent: a repeat answers the same receipt.
    expect((await call(s.rights, s.rights.eraseSubject, { name: request.name })).erasureReceipt).to.equal(erased.erasureReceipt);
  });

  it('an erasure reaches a person recorded after the request was received', async function () {
    const p = phone('+4915112360009');
    const e = email('multi-nine@example.com');
    await optIn(p, 'm9-p');
    const request = await create(RequestKind.REQUEST_KIND_ERASURE, p, [e]);
    expect(request.identifiers[1].subject).to.equal('');
    await optIn(e, 'm9-e');
    await verify(request.name, []);
    const erased = await call(s.rights, s.rights.eraseSubject, { name: request.name });
    expect(erased.request!.identifiers[1].subject).to.not.equal('');
    expect(await check(e)).to.equal('VERDICT_DENY DECISION_REASON_SUBJECT_ERASED');
  });

  it('an objection by several identifiers denies marketing to each at once', async function () {
    const p = phone('+4915112360010');
    const e = email('multi-ten@example.com');
    await optIn(p, 'm10-p');
    await optIn(e, 'm10-e');
    const done = await call(
      s.rights,
      s.rights.createRequest,
      CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_OBJECTION, subjectIdentifiers: [p, e, customer('new-10')], receivedVia: ReceivedVia.RECEIVED_VIA_CHAT, requestId: 'm10-obj' }),
    );
    expect(done.request!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(done.consistencyToken).to.not.equal('');
    expect(done.request!.identifiers.every((i) => i.outcome.startsWith('objection applied'))).to.equal(true);
    for (const who of [p, e, customer('new-10')]) expect(await check(who)).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
  });

  it('a restriction by several identifiers restricts each person', async function () {
    const p = phone('+4915112360011');
    const e = email('multi-eleven@example.com');
    await optIn(p, 'm11-p');
    await optIn(e, 'm11-e');
    const request = await create(RequestKind.REQUEST_KIND_RESTRICTION, p, [e, customer('nobody-11')]);
    await verify(request.name, []);
    const done = await call(s.rights, s.rights.restrictProcessing, { name: request.name, ground: RestrictionGround.RESTRICTION_GROUND_A_ACCURACY_CONTESTED, note: 'case 11' });
    expect(done.restrictions.map((r) => r.subject)).to.deep.equal([request.identifiers[0].subject, request.identifiers[1].subject]);
    expect(done.restriction!.name).to.equal(done.restrictions[0].name);
    expect(done.request!.identifiers.map((i) => i.outcome)).to.deep.equal([`restricted: ${done.restrictions[0].name}`, `restricted: ${done.restrictions[1].name}`, 'no data held']);
    for (const who of [p, e]) expect(await check(who)).to.equal('VERDICT_DENY DECISION_REASON_RESTRICTED');
    // A retry answers the same restrictions.
    const again = await call(s.rights, s.rights.restrictProcessing, { name: request.name, ground: RestrictionGround.RESTRICTION_GROUND_A_ACCURACY_CONTESTED, note: 'case 11' });
    expect(again.restrictions.map((r) => r.name).sort()).to.deep.equal(done.restrictions.map((r) => r.name).sort());
  });
  it("the export holds the person's restrictions and standing objection (Art. 15: all that is held about them)", async function () {
    const p = phone('+4915112360012');
    await optIn(p, 'm12-p');
    await call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_OBJECTION, subjectIdentifier: p, receivedVia: ReceivedVia.RECEIVED_VIA_CHAT, requestId: 'm12-obj' }));
    const restriction = await create(RequestKind.REQUEST_KIND_RESTRICTION, p, []);
    await verify(restriction.name, []);
    const { restrictions } = await call(s.rights, s.rights.restrictProcessing, { name: restriction.name, ground: RestrictionGround.RESTRICTION_GROUND_C_LEGAL_CLAIMS, note: 'case 12' });
    const access = await create(RequestKind.REQUEST_KIND_ACCESS, p, []);
    await verify(access.name, []);
    const { doc } = await exportPackage(access.name);
    const subject = access.identifiers[0].subject;
    expect(doc.objections).to.deep.equal([{ subject, objectTime: new Date(T0).toISOString() }]);
    expect(doc.restrictions).to.deep.equal([
      { subject, name: restrictions[0].name, ground: 'C_LEGAL_CLAIMS', request: restriction.name, placeTime: new Date(T0).toISOString(), notifyTime: null, liftTime: null, liftReason: null },
    ]);
  });
  describe('with identity links (issue 18, point 2)', () => {
    let identity: IdentityServiceClient;
    before(() => {
      identity = new IdentityServiceClient(s.address, credentials.createInsecure());
    });
    after(() => identity.close());
    const link = (first: SubjectIdentifier, second: SubjectIdentifier) =>
      call(identity, identity.linkIdentifiers, LinkIdentifiersRequest.fromPartial({ parent: `tenants/${T}`, first, second, method: 'ID_DOCUMENT', verifiedBy: 'dpo-anna', requestId: `lk-${++counter}` })).then((r) => r.link!);

    it('a request by one identifier reaches the persons linked to it (rows via the link, verified by it); the link never widens consent', async function () {
      const p = phone('+4915112360020');
      const e = email('linked-twenty@example.com');
      const c = customer('linked-20');
      await optIn(p, 'm20-p');
      const l1 = await link(p, e);
      const l2 = await link(e, c);
      expect(await check(e), 'a link never widens consent').to.equal('VERDICT_DENY DECISION_REASON_NO_CONSENT');
      const request = await create(RequestKind.REQUEST_KIND_ACCESS, p, []);
      expect(request.identifiers.map((i) => [i.position, i.kind, i.viaLink, i.verificationMethod])).to.deep.equal([
        [1, 'PHONE', '', ''],
        [2, 'EMAIL', l1.name, 'IDENTITY_LINK'],
        [3, 'CUSTOMER_ID', l2.name, 'IDENTITY_LINK'],
      ]);
      expect(request.transitions[0].note).to.equal('received via EMAIL (1 identifier(s), 2 linked)');
      const verified = await verify(request.name, []);
      expect(verified.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
      expect(verified.identifiers.map((i) => i.verificationMethod)).to.deep.equal(['ID_DOCUMENT', 'IDENTITY_LINK', 'IDENTITY_LINK']);
      const { doc } = await exportPackage(request.name);
      expect(doc.parts.map((part) => [part.label, part.viaLink, part.outcome])).to.deep.equal([
        ['identifier 1 (PHONE)', null, 'exported'],
        ['identifier 2 (EMAIL, linked)', l1.name, 'exported'],
        ['identifier 3 (CUSTOMER_ID, linked)', l2.name, 'exported'],
      ]);
      expect((doc.identifiers as Array<{ value: string }>).map((i) => i.value)).to.deep.equal(['+4915112360020', 'linked-twenty@example.com', 'linked-20']);
    });

    it('an objection by one identifier reaches every linked person at once', async function () {
      const p = phone('+4915112360021');
      const e = email('linked-twentyone@example.com');
      await optIn(p, 'm21-p');
      await optIn(e, 'm21-e');
      await link(p, e);
      const done = await call(
        s.rights,
        s.rights.createRequest,
        CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_OBJECTION, subjectIdentifier: e, receivedVia: ReceivedVia.RECEIVED_VIA_CHAT, requestId: 'm21-obj' }),
      );
      expect(done.request!.identifiers.map((i) => [i.kind, i.viaLink !== '', i.outcome.startsWith('objection applied')])).to.deep.equal([
        ['EMAIL', false, true],
        ['PHONE', true, true],
      ]);
      expect(await check(p)).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
      expect(await check(e)).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
    });

    it('an erasure erases the linked persons too, also one linked after the request was received; the links go with them', async function () {
      const p = phone('+4915112360022');
      const e = email('linked-twentytwo@example.com');
      const c = customer('linked-22');
      await optIn(p, 'm22-p');
      await optIn(e, 'm22-e');
      await optIn(c, 'm22-c');
      await link(p, e);
      const request = await create(RequestKind.REQUEST_KIND_ERASURE, p, []);
      expect(request.identifiers).to.have.length(2);
      await link(e, c); // after the request was received: followed when it is carried out
      await verify(request.name, []);
      const erased = await call(s.rights, s.rights.eraseSubject, { name: request.name });
      expect(erased.request!.identifiers.map((i) => [i.kind, i.outcome])).to.deep.equal([
        ['PHONE', 'erased: subject key destroyed'],
        ['EMAIL', 'erased: subject key destroyed'],
        ['CUSTOMER_ID', 'erased: subject key destroyed'],
      ]);
      for (const who of [p, e, c]) expect(await check(who)).to.equal('VERDICT_DENY DECISION_REASON_SUBJECT_ERASED');
      const jwks = (await call(s.keys, s.keys.getPublicKeys, { name: `tenants/${T}` })).jwks;
      const receipt = (await verifyReceipt(erased.erasureReceipt, jwks)).payload as { keyIdsDestroyed: string[]; counts: { links: number } };
      expect(receipt.keyIdsDestroyed).to.have.length(3);
      expect(receipt.counts.links, 'each link counted once per person it joined').to.be.greaterThan(0);
      const links = await call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: undefined, includeUnlinked: true, pageSize: 500, pageToken: '' });
      const gone = new Set(erased.request!.identifiers.map((i) => i.subject));
      expect(links.links.filter((l) => l.subjects.some((x) => gone.has(x)))).to.deep.equal([]);
    });

    it('a legal hold on a linked person blocks the erasure and names the linked identifier', async function () {
      const p = phone('+4915112360023');
      const e = email('linked-twentythree@example.com');
      await optIn(p, 'm23-p');
      await optIn(e, 'm23-e');
      await link(p, e);
      const { hold } = await call(s.rights, s.rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: e, ground: LegalHoldGround.LEGAL_HOLD_GROUND_B_LEGAL_OBLIGATION, note: 'tax', requestId: 'm23-hold' });
      const request = await create(RequestKind.REQUEST_KIND_ERASURE, p, []);
      await verify(request.name, []);
      const blocked = await expectGrpcError(call(s.rights, s.rights.eraseSubject, { name: request.name }), status.FAILED_PRECONDITION);
      expect(blocked.reason).to.equal('LEGAL_HOLD');
      expect(blocked.message).to.include(hold!.name).and.include('identifier 2 (EMAIL, linked)');
      expect(await check(p)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    });
  });
  it('a request keeps the person its identifier found: a number reassigned after receipt never leads to its new owner; a rectified one still reaches the person', async function () {
    const p = phone('+4915112360030');
    await optIn(p, 'm30-p');
    const request = await create(RequestKind.REQUEST_KIND_ERASURE, p, []);
    const oldOwner = request.identifiers[0].subject;
    s.clock.advance(60_000);
    const report = await call(s.consent, s.consent.reportReassignedIdentifier, { parent: `tenants/${T}`, subjectIdentifier: p, reassignTime: undefined, source: 'CARRIER_NOTICE', requestId: 'm30-rr' });
    expect(report.subject).to.not.equal(oldOwner);
    await verify(request.name, []);
    const erased = await call(s.rights, s.rights.eraseSubject, { name: request.name });
    expect(erased.request!.identifiers.map((i) => [i.subject, i.outcome])).to.deep.equal([[oldOwner, 'erased: subject key destroyed']]);
    expect(await check(p), "the new owner is not erased").to.equal('VERDICT_DENY DECISION_REASON_IDENTIFIER_REASSIGNED');

    // An identifier rectified after the request was received: the request still reaches the person.
    const before = email('m31-old@example.com');
    const after = email('m31-new@example.com');
    await optIn(before, 'm31-e');
    const access = await create(RequestKind.REQUEST_KIND_ERASURE, before, []);
    const rect = await call(
      s.rights,
      s.rights.createRequest,
      CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_RECTIFICATION, subjectIdentifier: before, rectifiedIdentifier: after, receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'm31-rect' }),
    );
    await verify(rect.request!.name, []);
    await call(s.rights, s.rights.rectifyIdentifier, { name: rect.request!.name });
    await verify(access.name, []);
    const done = await call(s.rights, s.rights.eraseSubject, { name: access.name });
    expect(done.request!.identifiers.map((i) => [i.subject, i.outcome])).to.deep.equal([[access.identifiers[0].subject, 'erased: subject key destroyed']]);
    expect(await check(after)).to.equal('VERDICT_DENY DECISION_REASON_SUBJECT_ERASED');
  });

  it('a rectification names exactly one identifier', async function () {
    const refused = await expectGrpcError(
      call(
        s.rights,
        s.rights.createRequest,
        CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_RECTIFICATION, subjectIdentifiers: [email('m32-a@example.com'), phone('+4915112360032')], rectifiedIdentifier: email('m32-b@example.com'), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'm32' }),
      ),
      status.INVALID_ARGUMENT,
    );
    expect(refused.fields).to.deep.equal(['subject_identifiers']);
    expect(refused.message).to.not.include('m32-');
  });
});
