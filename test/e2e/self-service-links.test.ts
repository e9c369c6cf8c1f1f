import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { SelfServiceTokens } from '../../src/domain/self-service-tokens';
import { parseSubjectName } from '../../src/domain/resource-names';
import { Channel, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, ConsentServiceClient, DecisionReason, Verdict } from '../../src/gen/consent/v1/consent';
import { IdentifierKind, IdentityServiceClient, LinkIdentifiersRequest } from '../../src/gen/consent/v1/identity';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { CreateRequestWithLinkRequest, SelfServiceServiceClient, WithdrawWithLinkRequest } from '../../src/gen/consent/v1/self_service';
import { CreateRequestRequest, ReceivedVia, RequestKind, RequestState, SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { SelfServiceSettings, TenantServiceClient, TenantSettings } from '../../src/gen/consent/v1/tenant';
import { asBearer } from '../support/bearer';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, T0, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER } from '../support/tokens';

/**
 * Preference links (issue 20, docs/privacy-center.md "Preference links") over a real server with
 * bearer tokens: the tenant's recorder makes a link, the privacy center (role self_service) reads
 * the person's preferences, withdraws with one click (a check with the answer's consistency token
 * denies at once) and files requests verified by the link when the tenant allows it. Every
 * refusal is precise and changes nothing; no planted personal data or token reaches the logs.
 */
const T = 'prefshop';
const OTHER = 'prefshop-other';
const PLANTED = { phone: '+4915112399901', email: 'planted.pref@example.org', other: '+4915112399902', erased: '+4915112399903' };
const DAY = 86_400_000;
const EVIDENCE = { sourceIp: '203.0.113.77', userAgent: 'Mozilla/5.0 (planted-ua)', pageUrl: 'https://privacy.example/t/prefshop/preferences', freeText: '', inboundMessageId: '' };

forEachDatabase('preference links', (db) => {
  let s: TestServer;
  let center: SelfServiceServiceClient;
  let recorderLinks: SelfServiceServiceClient;
  let consent: ConsentServiceClient;
  let rights: SubjectRightsServiceClient;
  let tenants: TenantServiceClient;
  const clients: Array<{ close(): void }> = [];
  const as = <C extends { close(): void }>(c: C) => (clients.push(c), c);
  let adminToken: () => Promise<string>;

  before(async function () {
    this.timeout(60_000);
    const issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const jwksFile = path.join(db().dataDir, 'jwks.json');
    writeFileSync(jwksFile, issuer.jwks);
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const admin = await issuer.sign({ sub: 'pref-admin', roles: ['sender', 'recorder', 'dpo', 'auditor', 'admin'], tenants: '*', exp });
    adminToken = async () => admin;
    const centerToken = await issuer.sign({ sub: 'privacy-center', roles: ['self_service'], tenants: [T, OTHER], exp });
    const recorderToken = await issuer.sign({ sub: 'shop-crm', roles: ['recorder'], tenants: [T, OTHER], exp });
    s = await startTestServer(db(), {
      authMode: 'authenticated',
      tokens: { jwksFile, issuer: TEST_ISSUER, audience: TEST_AUDIENCE, algorithms: ['ES256'], clockSkewMs: 60_000 },
      privacyCenterPublicUrl: 'https://privacy.example',
    });
    const opts = asBearer(admin);
    tenants = as(new TenantServiceClient(s.address, credentials.createInsecure(), opts));
    const purposes = as(new PurposeServiceClient(s.address, credentials.createInsecure(), opts));
    consent = as(new ConsentServiceClient(s.address, credentials.createInsecure(), opts));
    rights = as(new SubjectRightsServiceClient(s.address, credentials.createInsecure(), opts));
    center = as(new SelfServiceServiceClient(s.address, credentials.createInsecure(), asBearer(centerToken)));
    recorderLinks = as(new SelfServiceServiceClient(s.address, credentials.createInsecure(), asBearer(recorderToken)));
    for (const t of [T, OTHER]) await seedTenant({ tenants, purposes } as unknown as TestServer, t);
  });
  after(async () => {
    for (const c of clients) c.close();
    await s?.stop();
  });

  let counter = 0;
  const optIn = (tenantId: string, who: SubjectIdentifier, purpose: string, channel: Channel) =>
    call(consent, consent.recordConsent, consentRequest(tenantId, { subjectIdentifier: who, purpose: `tenants/${tenantId}/purposes/${purpose}`, notice: `tenants/${tenantId}/purposes/${purpose}/notices/1`, channel }));
  const makeLink = (who: SubjectIdentifier, tenantId = T, ttlMs?: number) =>
    call(recorderLinks, recorderLinks.createPreferenceLink, { parent: `tenants/${tenantId}`, subjectIdentifier: who, ttl: ttlMs === undefined ? undefined : { seconds: ttlMs / 1000, nanos: 0 } });
  const preferences = (token: string, tenantId = T) => call(center, center.getPreferences, { parent: `tenants/${tenantId}`, token });
  const withdraw = (token: string, more: Partial<WithdrawWithLinkRequest>) =>
    call(center, center.withdrawWithLink, WithdrawWithLinkRequest.fromPartial({ parent: `tenants/${T}`, token, evidence: EVIDENCE, requestId: `wd-${++counter}`, ...more }));
  const requestWithLink = (token: string, kind: RequestKind, more: Partial<CreateRequestWithLinkRequest> = {}) =>
    call(center, center.createRequestWithLink, CreateRequestWithLinkRequest.fromPartial({ parent: `tenants/${T}`, token, kind, evidence: EVIDENCE, requestId: `rq-${++counter}`, ...more }));
  const check = async (who: SubjectIdentifier, purpose: string, channel: Channel, consistencyToken = '') => {
    const consistency = consistencyToken ? { requirement: { $case: 'atLeastAsFresh' as const, value: consistencyToken } } : undefined;
    const r = await call(consent, consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/${purpose}`, channel }), consistency });
    return `${Verdict[r.decision!.verdict]} ${DecisionReason[r.decision!.reason]}`;
  };
  const auditSize = () => s.app.services.audit.size(T) as Promise<number>;
  const setLinkVerifies = (linkVerifies: string[]) =>
    call(tenants, tenants.updateTenantSettings, {
      settings: TenantSettings.fromPartial({ name: `tenants/${T}/settings`, selfService: SelfServiceSettings.fromPartial({ linkVerifies }) }),
      updateMask: ['self_service.link_verifies'],
    });

  const person = phone(PLANTED.phone);
  let token = '';
  let subject = '';

  it('CreatePreferenceLink: a signed link for a known person, holding no identifier; default 30 days', async function () {
    await optIn(T, person, 'newsletter', Channel.CHANNEL_WHATSAPP);
    await optIn(T, person, 'newsletter', Channel.CHANNEL_EMAIL);
    await optIn(T, person, 'orders', Channel.CHANNEL_EMAIL);
    const made = await makeLink(person);
    token = made.token;
    expect(made.link).to.equal(`https://privacy.example/t/${T}/preferences#token=${made.token}`);
    expect(made.expireTime!.getTime()).to.equal(T0 + 30 * DAY);
    const payload = Buffer.from(made.token.split('.')[1], 'base64url').toString();
    expect(payload, 'the token holds no identifier').to.not.match(/4915112399901|planted/);
    expect(JSON.parse(payload)).to.include({ ten: T, use: 'preference-link' });
    expect((await makeLink(person, T, 3_600_000)).expireTime!.getTime(), '1 hour is the shortest').to.equal(T0 + 3_600_000);
  });

  it('CreatePreferenceLink refuses precisely: unknown person, TTL out of range or beyond the tenant maximum', async function () {
    const before = await auditSize();
    const unknown = await expectGrpcError(makeLink(phone('+4915112399999')), status.NOT_FOUND);
    expect(unknown.reason).to.equal('SUBJECT_NOT_FOUND');
    for (const ttl of [30 * 60_000, 91 * DAY, 45 * DAY]) {
      const bad = await expectGrpcError(makeLink(person, T, ttl), status.INVALID_ARGUMENT);
      expect(bad.fields, `ttl ${ttl}`).to.deep.equal(['ttl']);
    }
    expect(await auditSize()).to.equal(before);
  });

  it('GetPreferences: each purpose and channel with its state as a check sees it, the notice text, the request options', async function () {
    const got = await preferences(token);
    subject = got.subject;
    expect(parseSubjectName(got.subject)?.tenantId).to.equal(T);
    expect(got.identifierKind).to.equal(IdentifierKind.IDENTIFIER_KIND_PHONE_NUMBER);
    expect(got.expireTime!.getTime()).to.equal(T0 + 30 * DAY);
    expect(got.preferences.map((p) => [p.purpose, Channel[p.channel], p.granted, ConsentEventKind[p.lastKind], p.notice, p.noticeText])).to.deep.equal([
      [`tenants/${T}/purposes/newsletter`, 'CHANNEL_EMAIL', true, 'CONSENT_EVENT_KIND_OPT_IN', `tenants/${T}/purposes/newsletter/notices/1`, 'Notice for newsletter'],
      [`tenants/${T}/purposes/newsletter`, 'CHANNEL_WHATSAPP', true, 'CONSENT_EVENT_KIND_OPT_IN', `tenants/${T}/purposes/newsletter/notices/1`, 'Notice for newsletter'],
      [`tenants/${T}/purposes/orders`, 'CHANNEL_EMAIL', true, 'CONSENT_EVENT_KIND_OPT_IN', `tenants/${T}/purposes/orders/notices/1`, 'Notice for orders'],
    ]);
    expect(got.preferences[0].purposeDisplayName).to.equal('newsletter');
    expect(got.requestOptions.map((o) => [RequestKind[o.kind], o.linkVerifies])).to.deep.equal([
      ['REQUEST_KIND_ACCESS', false],
      ['REQUEST_KIND_PORTABILITY', false],
      ['REQUEST_KIND_ERASURE', false],
      ['REQUEST_KIND_OBJECTION', true],
    ]);
    expect(got.openRequests).to.deep.equal([]);
  });

  // Found in review: the opt-out the link records is dated at a later opt-in's time when that
  // is ahead of the clock (recorded by a server whose clock runs ahead); it must keep that time.
  it('WithdrawWithLink withdraws an opt-in dated ahead of this server\'s clock, at once', async function () {
    const who = phone('+4915112377901');
    const now = s.clock.now();
    s.clock.set(now + 3 * 60_000); // another server, its clock three minutes ahead, records the opt-in
    await optIn(T, who, 'newsletter', Channel.CHANNEL_WHATSAPP);
    s.clock.set(now);
    const { token } = await makeLink(who);
    await withdraw(token, { scopes: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP }] });
    expect(await check(who, 'newsletter', Channel.CHANNEL_WHATSAPP)).to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    s.clock.set(now + 10 * 60_000);
    expect(await check(who, 'newsletter', Channel.CHANNEL_WHATSAPP), 'also once that time has passed').to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    s.clock.set(now);
  });

  // Found in review: an objection's opt-outs (the purpose on every channel) did not count as the
  // scope's latest action, so the page showed the person as agreed with a Withdraw button.
  it('GetPreferences: after an objection each marketing scope\'s latest action is the opt-out', async function () {
    const who = phone('+4915112377902');
    await optIn(T, who, 'newsletter', Channel.CHANNEL_WHATSAPP);
    await optIn(T, who, 'newsletter', Channel.CHANNEL_SMS);
    s.clock.advance(1000);
    await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_OBJECTION, subjectIdentifier: who, receivedVia: ReceivedVia.RECEIVED_VIA_PHONE, requestId: `obj-${++counter}` }));
    const { token } = await makeLink(who);
    const prefs = (await preferences(token)).preferences.filter((p) => p.purpose.endsWith('/newsletter'));
    expect(prefs).to.have.length(2);
    for (const p of prefs) expect([Channel[p.channel], ConsentEventKind[p.lastKind], p.granted]).to.deep.equal([Channel[p.channel], 'CONSENT_EVENT_KIND_OPT_OUT', false]);
  });

  it('WithdrawWithLink one scope: that check denies at once, the other allows; the evidence is in the history; retries answer the same', async function () {
    expect(await check(person, 'newsletter', Channel.CHANNEL_WHATSAPP)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    const request = { scopes: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP }], requestId: 'wd-one' };
    const done = await withdraw(token, request);
    expect(done.events.map((e) => [ConsentEventKind[e.kind], CollectionMethod[e.method], Channel[e.channel], e.purpose])).to.deep.equal([
      ['CONSENT_EVENT_KIND_OPT_OUT', 'COLLECTION_METHOD_WEB_FORM', 'CHANNEL_WHATSAPP', `tenants/${T}/purposes/newsletter`],
    ]);
    expect(done.consistencyToken).to.not.equal('');
    expect(await check(person, 'newsletter', Channel.CHANNEL_WHATSAPP, done.consistencyToken)).to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    expect(await check(person, 'newsletter', Channel.CHANNEL_EMAIL, done.consistencyToken)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    const again = await withdraw(token, request);
    expect(again.events.map((e) => e.name)).to.deep.equal(done.events.map((e) => e.name));
    const reused = await expectGrpcError(withdraw(token, { ...request, scopes: [{ purpose: `tenants/${T}/purposes/orders`, channel: Channel.CHANNEL_EMAIL }] }), status.FAILED_PRECONDITION);
    expect(reused.reason).to.equal('REQUEST_ID_REUSED');

    const events = await call(consent, consent.listConsentEvents, { parent: `tenants/${T}`, subjectIdentifier: person, purpose: '', channel: 0, startTime: undefined, endTime: undefined, pageSize: 50, pageToken: '' });
    const optOut = events.consentEvents.find((e) => e.name === done.events[0].name)!;
    expect(optOut.principal).to.equal('privacy-center');
    expect(optOut.evidence).to.deep.include({ sourceIp: '203.0.113.0', userAgent: EVIDENCE.userAgent, pageUrl: EVIDENCE.pageUrl, freeText: 'preference page' });

    const shown = (await preferences(token)).preferences.find((p) => p.channel === Channel.CHANNEL_WHATSAPP)!;
    expect([shown.granted, ConsentEventKind[shown.lastKind]]).to.deep.equal([false, 'CONSENT_EVENT_KIND_OPT_OUT']);
  });

  it('WithdrawWithLink all: every check of the person denies, on every purpose and channel', async function () {
    const done = await withdraw(token, { all: true });
    expect(done.events.map((e) => [ConsentEventKind[e.kind], e.purpose, Channel[e.channel]])).to.deep.equal([['CONSENT_EVENT_KIND_OPT_OUT', `tenants/${T}/purposes/-`, 'CHANNEL_ANY']]);
    for (const purpose of ['newsletter', 'orders', 'support', 'otp']) {
      for (const channel of [Channel.CHANNEL_WHATSAPP, Channel.CHANNEL_EMAIL, Channel.CHANNEL_SMS]) {
        expect(await check(person, purpose, channel, done.consistencyToken), `${purpose} ${Channel[channel]}`).to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
      }
    }
    expect((await preferences(token)).preferences.map((p) => [p.granted, ConsentEventKind[p.lastKind]])).to.deep.equal([
      [false, 'CONSENT_EVENT_KIND_OPT_OUT'],
      [false, 'CONSENT_EVENT_KIND_OPT_OUT'],
      [false, 'CONSENT_EVENT_KIND_OPT_OUT'],
    ]);
  });

  it("WithdrawWithLink all reaches the identifiers a DPO linked to the link's person (each withdrawn under its own subject); a scope withdrawal does not; a retry records nothing twice", async function () {
    const number = phone('+4915122200401');
    const address = email('linked.withdraw@example.org');
    const unlinked = email('not.linked@example.org');
    await optIn(T, number, 'newsletter', Channel.CHANNEL_WHATSAPP);
    await optIn(T, address, 'newsletter', Channel.CHANNEL_EMAIL);
    await optIn(T, unlinked, 'newsletter', Channel.CHANNEL_EMAIL);
    const identity = as(new IdentityServiceClient(s.address, credentials.createInsecure(), asBearer(await adminToken())));
    await call(identity, identity.linkIdentifiers, LinkIdentifiersRequest.fromPartial({ parent: `tenants/${T}`, first: number, second: address, method: 'ID_DOCUMENT', verifiedBy: 'dpo-anna', requestId: `link-${++counter}` }));
    const { token: numberToken } = await makeLink(number);
    await withdraw(numberToken, { scopes: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP }] });
    expect(await check(address, 'newsletter', Channel.CHANNEL_EMAIL), 'a scope of the link person only').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    const requestId = `wd-all-linked-${++counter}`;
    const first = await withdraw(numberToken, { all: true, requestId });
    expect(first.events).to.have.length(2);
    expect(new Set(first.events.map((e) => e.subject)).size, 'one opt-out per person').to.equal(2);
    expect(await check(number, 'newsletter', Channel.CHANNEL_WHATSAPP, first.consistencyToken)).to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    expect(await check(address, 'newsletter', Channel.CHANNEL_EMAIL, first.consistencyToken), 'the linked address').to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    expect(await check(unlinked, 'newsletter', Channel.CHANNEL_EMAIL, first.consistencyToken), 'an unlinked person').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    const size = await auditSize();
    const again = await withdraw(numberToken, { all: true, requestId });
    expect(again.events.map((e) => e.name)).to.deep.equal(first.events.map((e) => e.name));
    expect(await auditSize(), 'a retry records nothing').to.equal(size);
  });

  it("a former holder's link, after the number was reported reassigned: withdrawing and requests are NO_IDENTIFIER (not SUBJECT_ERASED: nothing was erased), and nothing is recorded", async function () {
    const number = phone('+4915122200402');
    await optIn(T, number, 'newsletter', Channel.CHANNEL_WHATSAPP);
    const { token: formerToken } = await makeLink(number);
    await call(consent, consent.reportReassignedIdentifier, { parent: `tenants/${T}`, subjectIdentifier: number, reassignTime: undefined, source: 'CARRIER_NOTICE', requestId: `ra-${++counter}` } as never);
    const size = await auditSize();
    const withdrawn = await expectGrpcError(withdraw(formerToken, { all: true }), status.FAILED_PRECONDITION);
    expect(withdrawn.reason).to.equal('NO_IDENTIFIER');
    const asked = await expectGrpcError(requestWithLink(formerToken, RequestKind.REQUEST_KIND_ACCESS), status.FAILED_PRECONDITION);
    expect(asked.reason).to.equal('NO_IDENTIFIER');
    expect(await auditSize(), 'nothing recorded').to.equal(size);
  });

  it('WithdrawWithLink refuses bad input precisely and records nothing', async function () {
    const before = await auditSize();
    const cases: Array<[Partial<WithdrawWithLinkRequest>, string]> = [
      [{}, 'scopes'],
      [{ all: true, scopes: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_SMS }] }, 'scopes'],
      [{ scopes: [{ purpose: `tenants/${OTHER}/purposes/newsletter`, channel: Channel.CHANNEL_SMS }] }, 'scopes[0].purpose'],
      [{ scopes: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_UNSPECIFIED }] }, 'scopes[0].channel'],
      [{ all: true, requestId: '' }, 'request_id'],
      [{ all: true, evidence: { ...EVIDENCE, sourceIp: 'not-an-ip' } }, 'evidence.source_ip'],
    ];
    for (const [more, field] of cases) {
      const bad = await expectGrpcError(withdraw(token, more), status.INVALID_ARGUMENT);
      expect(bad.fields, field).to.include(field);
    }
    const unknownPurpose = await expectGrpcError(withdraw(token, { scopes: [{ purpose: `tenants/${T}/purposes/nope`, channel: Channel.CHANNEL_SMS }] }), status.NOT_FOUND);
    expect(unknownPurpose.reason).to.not.equal('');
    expect(await auditSize()).to.equal(before);
  });

  it('CreateRequestWithLink: RECEIVED unless the tenant lets the link verify the kind, then VERIFIED by SIGNED_LINK', async function () {
    const received = (await requestWithLink(token, RequestKind.REQUEST_KIND_ACCESS)).request!;
    expect([RequestState[received.state], ReceivedVia[received.receivedVia], received.subject]).to.deep.equal(['REQUEST_STATE_RECEIVED', 'RECEIVED_VIA_SELF_SERVICE', subject]);
    expect(received.transitions.map((t) => [t.principal, RequestState[t.toState]])).to.deep.equal([['privacy-center', 'REQUEST_STATE_RECEIVED']]);
    expect(received.transitions[0].note).to.match(/^received via SELF_SERVICE with preference link [A-Za-z0-9_-]{22}$/);
    // The same open kind again through the page: the open request, not a second one.
    expect((await requestWithLink(token, RequestKind.REQUEST_KIND_ACCESS)).request!.name).to.equal(received.name);
    // Idempotent by request_id; another kind under the same id is refused.
    const first = (await requestWithLink(token, RequestKind.REQUEST_KIND_PORTABILITY, { requestId: 'rq-port' })).request!;
    expect((await requestWithLink(token, RequestKind.REQUEST_KIND_PORTABILITY, { requestId: 'rq-port' })).request!.name).to.equal(first.name);
    expect((await expectGrpcError(requestWithLink(token, RequestKind.REQUEST_KIND_ACCESS, { requestId: 'rq-port' }), status.FAILED_PRECONDITION)).reason).to.equal('REQUEST_ID_REUSED');

    await setLinkVerifies(['ERASURE']);
    const verified = (await requestWithLink(token, RequestKind.REQUEST_KIND_ERASURE)).request!;
    const jti = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).jti as string;
    expect(RequestState[verified.state]).to.equal('REQUEST_STATE_VERIFIED');
    expect(verified.transitions.map((t) => [t.principal, RequestState[t.toState], t.note])).to.deep.equal([
      ['privacy-center', 'REQUEST_STATE_RECEIVED', `received via SELF_SERVICE with preference link ${jti}`],
      ['privacy-center', 'REQUEST_STATE_VERIFIED', `identity verified by SIGNED_LINK (preference link ${jti})`],
    ]);
    expect([verified.verificationMethod, verified.verifiedBy]).to.deep.equal(['SIGNED_LINK', `preference link ${jti}`]);

    const shown = await preferences(token);
    expect(shown.requestOptions.map((o) => o.linkVerifies)).to.deep.equal([false, false, true, true]);
    expect(shown.openRequests.map((r) => r.name).sort(), "created at the same instant: compared as a set").to.deep.equal([received.name, first.name, verified.name].sort());

    const before = await auditSize();
    for (const kind of [RequestKind.REQUEST_KIND_RESTRICTION, RequestKind.REQUEST_KIND_RECTIFICATION, RequestKind.REQUEST_KIND_UNSPECIFIED]) {
      const bad = await expectGrpcError(requestWithLink(token, kind), status.INVALID_ARGUMENT);
      expect(bad.fields).to.deep.equal(['kind']);
    }
    expect(await auditSize()).to.equal(before);
    await setLinkVerifies([]);
  });

  // Art. 21(3)-(5): the person objects on the page, by automated means, without proof of identity.
  it('CreateRequestWithLink OBJECTION: COMPLETED at once, whatever the link settings; marketing denied on every channel for the person and the persons linked to them (the token sees it), utility untouched; a retry records nothing twice', async function () {
    const number = phone('+4915122200501');
    const address = email('linked.objection@example.org');
    await optIn(T, number, 'newsletter', Channel.CHANNEL_WHATSAPP);
    await optIn(T, number, 'newsletter', Channel.CHANNEL_SMS);
    await optIn(T, number, 'orders', Channel.CHANNEL_WHATSAPP);
    await optIn(T, address, 'newsletter', Channel.CHANNEL_EMAIL);
    const identity = as(new IdentityServiceClient(s.address, credentials.createInsecure(), asBearer(await adminToken())));
    await call(identity, identity.linkIdentifiers, LinkIdentifiersRequest.fromPartial({ parent: `tenants/${T}`, first: number, second: address, method: 'ID_DOCUMENT', verifiedBy: 'dpo-anna', requestId: `link-${++counter}` }));
    // Warm the decision cache: the objection must reach a cached answer too.
    expect(await check(number, 'newsletter', Channel.CHANNEL_SMS)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(await check(address, 'newsletter', Channel.CHANNEL_EMAIL)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    await setLinkVerifies([]);
    const { token: numberToken } = await makeLink(number);
    s.clock.advance(1000);
    const requestId = `obj-link-${++counter}`;
    const made = await requestWithLink(numberToken, RequestKind.REQUEST_KIND_OBJECTION, { requestId });
    const r = made.request!;
    expect([RequestKind[r.kind], RequestState[r.state], ReceivedVia[r.receivedVia], r.verificationMethod]).to.deep.equal(['REQUEST_KIND_OBJECTION', 'REQUEST_STATE_COMPLETED', 'RECEIVED_VIA_SELF_SERVICE', '']);
    expect(r.transitions.map((t) => [t.principal, RequestState[t.toState]])).to.deep.equal([
      ['privacy-center', 'REQUEST_STATE_RECEIVED'],
      ['privacy-center', 'REQUEST_STATE_COMPLETED'],
    ]);
    expect(r.transitions[1].note).to.match(/^objection applied for 2 person\(s\)/);
    expect(made.consistencyToken).to.not.equal('');
    for (const [who, channel] of [[number, Channel.CHANNEL_SMS], [number, Channel.CHANNEL_WHATSAPP], [number, Channel.CHANNEL_EMAIL], [address, Channel.CHANNEL_EMAIL]] as const) {
      expect(await check(who, 'newsletter', channel, made.consistencyToken), `${Channel[channel]} with the token`).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
      expect(await check(who, 'newsletter', channel), `${Channel[channel]} from the cache`).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
    }
    expect(await check(number, 'orders', Channel.CHANNEL_WHATSAPP), 'a utility purpose').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    // The page shows the marketing scopes as withdrawn; no open request is left.
    const shown = await preferences(numberToken);
    expect(shown.preferences.filter((p) => p.purpose.endsWith('/newsletter')).map((p) => [ConsentEventKind[p.lastKind], p.granted])).to.deep.equal([
      ['CONSENT_EVENT_KIND_OPT_OUT', false],
      ['CONSENT_EVENT_KIND_OPT_OUT', false],
    ]);
    expect(shown.openRequests).to.deep.equal([]);
    const size = await auditSize();
    const again = await requestWithLink(numberToken, RequestKind.REQUEST_KIND_OBJECTION, { requestId });
    expect(again.request!.name).to.equal(r.name);
    expect(again.consistencyToken).to.not.equal('');
    expect(await auditSize(), 'a retry records nothing').to.equal(size);
    expect((await expectGrpcError(requestWithLink(numberToken, RequestKind.REQUEST_KIND_ACCESS, { requestId }), status.FAILED_PRECONDITION)).reason).to.equal('REQUEST_ID_REUSED');
    // The DPO sees it as the person's own request, completed.
    const listed = await call(rights, rights.getRequest, { name: r.name });
    expect(RequestState[listed.request!.state]).to.equal('REQUEST_STATE_COMPLETED');
    // Only a new opt-in of the person, after the objection, allows again (rule 1b).
    s.clock.advance(1000);
    await optIn(T, number, 'newsletter', Channel.CHANNEL_SMS);
    expect(await check(number, 'newsletter', Channel.CHANNEL_SMS)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(await check(number, 'newsletter', Channel.CHANNEL_WHATSAPP)).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
  });

  it('a token of another tenant, person or use, a tampered and an expired one are refused and change nothing', async function () {
    const otherPerson = phone(PLANTED.other);
    await optIn(OTHER, otherPerson, 'newsletter', Channel.CHANNEL_SMS);
    await optIn(T, otherPerson, 'orders', Channel.CHANNEL_SMS);
    const foreign = (await makeLink(otherPerson, OTHER)).token;
    const theirs = (await makeLink(otherPerson, T)).token;
    // Another person's link shows that person only.
    const shown = await preferences(theirs);
    expect(shown.subject).to.not.equal(subject);
    expect(shown.preferences.map((p) => p.purpose)).to.deep.equal([`tenants/${T}/purposes/orders`]);

    const subjectId = parseSubjectName(subject)!.subjectId;
    const wrongUse = (await new SelfServiceTokens(s.app.services.keys).issue(T, subjectId, 'signup-confirmation', T0, DAY)).token;
    const [h, p, sig] = token.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const tampered = [h, Buffer.from(JSON.stringify({ ...claims, exp: (claims.exp as number) + 1 })).toString('base64url'), sig].join('.');
    const before = await auditSize();
    for (const [name, bad] of [
      ['other tenant', foreign],
      ['other use', wrongUse],
      ['tampered', tampered],
      ['not a token', 'abc'],
      // Bytes appended to the signature, or another base64url spelling of it (node-jose checks an
      // ES256 signature's first 64 bytes only; found by an adversarial probe).
      ['signature + AA', `${token}AA`],
      ['signature + A', `${token}A`],
      ['signature + 16 zero bytes', `${token}${Buffer.alloc(16).toString('base64url')}`],
      ['signature + garbage!', `${h}.${p}.${Buffer.concat([Buffer.from(sig, 'base64url'), Buffer.from('garbage!')]).toString('base64url')}`],
    ]) {
      // One call at a time: a rejection is awaited as soon as it happens.
      for (const attempt of [() => preferences(bad), () => withdraw(bad, { all: true }), () => requestWithLink(bad, RequestKind.REQUEST_KIND_ACCESS)]) {
        const err = await expectGrpcError(attempt(), status.INVALID_ARGUMENT);
        expect(err.fields, name).to.deep.equal(['token']);
        expect(err.message, 'the token is never repeated').to.not.include(bad);
      }
    }
    s.clock.advance(30 * DAY);
    try {
      for (const attempt of [() => preferences(token), () => withdraw(token, { all: true }), () => requestWithLink(token, RequestKind.REQUEST_KIND_ACCESS)]) {
        expect((await expectGrpcError(attempt(), status.FAILED_PRECONDITION)).reason).to.equal('TOKEN_EXPIRED');
      }
    } finally {
      s.clock.set(T0);
    }
    expect(await auditSize()).to.equal(before);
  });

  it('an erased person: the link answers SUBJECT_ERASED, and no new link is made', async function () {
    const gone = phone(PLANTED.erased);
    await optIn(T, gone, 'newsletter', Channel.CHANNEL_WHATSAPP);
    const link = (await makeLink(gone)).token;
    const request = (await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: gone, receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'erase-pref' }))).request!;
    await call(rights, rights.verifyIdentity, { name: request.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo', identifierPositions: [] });
    await call(rights, rights.eraseSubject, { name: request.name });
    const before = await auditSize();
    for (const attempt of [() => preferences(link), () => withdraw(link, { all: true }), () => requestWithLink(link, RequestKind.REQUEST_KIND_ACCESS), () => makeLink(gone)]) {
      expect((await expectGrpcError(attempt(), status.FAILED_PRECONDITION)).reason).to.equal('SUBJECT_ERASED');
    }
    expect(await auditSize()).to.equal(before);
  });

  it('the methods are open to their roles only', async function () {
    expect((await expectGrpcError(call(recorderLinks, recorderLinks.getPreferences, { parent: `tenants/${T}`, token }), status.PERMISSION_DENIED)).reason).to.equal('ROLE_NOT_ALLOWED');
    expect((await expectGrpcError(call(center, center.createPreferenceLink, { parent: `tenants/${T}`, subjectIdentifier: person, ttl: undefined }), status.PERMISSION_DENIED)).reason).to.equal('ROLE_NOT_ALLOWED');
  });

  it('no planted personal data and no token in the logs', function () {
    const logs = s.logs();
    expect(logs.length).to.be.greaterThan(0);
    for (const value of [...Object.values(PLANTED), PLANTED.phone.slice(1), EVIDENCE.userAgent, EVIDENCE.sourceIp, token]) expect(logs, value).to.not.include(value);
  });

  it('e-mail identifiers are reported as such', async function () {
    const mail = email(PLANTED.email);
    await optIn(T, mail, 'newsletter', Channel.CHANNEL_EMAIL);
    const got = await preferences((await makeLink(mail)).token);
    expect(got.identifierKind).to.equal(IdentifierKind.IDENTIFIER_KIND_EMAIL);
    expect(got.preferences.map((p) => [Channel[p.channel], p.granted])).to.deep.equal([['CHANNEL_EMAIL', true]]);
  });
});
