import { credentials, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { ChangeKind, CollectionMethod, ConsentEventKind, ConsentServiceClient, DecisionReason, ListConsentEventsRequest, StreamChangesResponse, Verdict } from '../../src/gen/consent/v1/consent';
import { ConfirmationMethod, SelfServiceServiceClient, SignUpRequest, SignUpResponse, WithdrawWithLinkRequest } from '../../src/gen/consent/v1/self_service';
import { SelfServiceSettings, TenantSettings } from '../../src/gen/consent/v1/tenant';
import { RetryInfo } from '../../src/gen/google/rpc/error_details';
import { Status } from '../../src/gen/google/rpc/status';
import { SelfServiceTokens } from '../../src/domain/self-service-tokens';
import { managerOf } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, T0, TestServer } from '../support/test-server';

/**
 * Sign-up with double opt-in (issue 20), over a real server: SignUp records OPT_IN_PENDING with the
 * page's evidence; a phone sign-up is confirmed by the one-time code arriving through
 * RecordInboundMessage, an e-mail sign-up by ConfirmSignUp with the link's token that
 * ListConfirmationDeliveries hands the tenant's mailer. Refusals change nothing; no identifier,
 * code or token reaches a log line.
 */
const T = 'signup';
const OTHER = 'signup-other';
const WA = '+4930123456';
/** Planted personal data. */
const P = { phone: '+4915112399001', phone2: '+4915112399002', phone3: '+4915112399003', phone4: '+4915112399004', email: 'signup.person@example.org', email2: 'second.person@example.org' };
const EVIDENCE = { sourceIp: '203.0.113.77', userAgent: 'Mozilla/5.0 signup-test', pageUrl: 'https://privacy.example/t/signup', inboundMessageId: '', freeText: '' };
const HOUR = 3_600_000;

forEachDatabase('Self-service sign-up with double opt-in', (db) => {
  let s: TestServer;
  let self: SelfServiceServiceClient;
  let consent: ConsentServiceClient;
  let counter = 0;

  before(async function () {
    this.timeout(60_000);
    s = await startTestServer(db(), { privacyCenterPublicUrl: 'https://privacy.example' });
    self = new SelfServiceServiceClient(s.address, credentials.createInsecure());
    consent = s.consent;
    for (const t of [T, OTHER]) {
      await seedTenant(s, t);
      await call(s.tenants, s.tenants.updateTenantSettings, {
        settings: TenantSettings.fromPartial({ name: `tenants/${t}/settings`, selfService: SelfServiceSettings.fromPartial({ whatsappNumber: WA }) }),
        updateMask: ['self_service.whatsapp_number'],
      });
      await call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${t}/purposes/newsletter`, language: 'de', text: 'Newsletter, deutsch', requestId: `de-${t}` });
    }
  });
  after(async () => {
    self?.close();
    await s?.stop();
  });
  beforeEach(() => s.clock.set(T0 + ++counter * 2 * HOUR));

  const choice = (channel: Channel, purpose = 'newsletter', version = 1) => ({ purpose: `tenants/${T}/purposes/${purpose}`, channel, notice: `tenants/${T}/purposes/${purpose}/notices/${version}` });
  const signUpReq = (who: SubjectIdentifier, more: Partial<SignUpRequest> = {}) =>
    SignUpRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: who, choices: [choice(who.kind?.$case === 'email' ? Channel.CHANNEL_EMAIL : Channel.CHANNEL_WHATSAPP)], evidence: EVIDENCE, language: 'en', requestId: `su-${Math.random()}`, ...more });
  const signUp = (req: SignUpRequest) => call(self, self.signUp, req);
  const inbound = (who: SubjectIdentifier, text: string, channel = Channel.CHANNEL_WHATSAPP, tenant = T) =>
    call(consent, consent.recordInboundMessage, { parent: `tenants/${tenant}`, subjectIdentifier: who, channel, text, messageId: `wamid-${Math.random()}`, requestId: `in-${Math.random()}`, eventTime: undefined });
  const check = async (who: SubjectIdentifier, channel = Channel.CHANNEL_WHATSAPP) => {
    const r = await call(consent, consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/newsletter`, channel }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
    return `${Verdict[r.decision!.verdict]} ${DecisionReason[r.decision!.reason]}`;
  };
  const events = async (who: SubjectIdentifier) =>
    (await call(consent, consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: who, pageSize: 100 }))).consentEvents;
  const deliveries = async (tenant = T) => (await call(self, self.listConfirmationDeliveries, { parent: `tenants/${tenant}`, pageSize: 0, pageToken: '' })).deliveries;
  const tokenOf = (link: string) => /#token=(.+)$/.exec(link)![1];
  const confirm = (token: string, tenant = T) => call(self, self.confirmSignUp, { parent: `tenants/${tenant}`, token, evidence: { ...EVIDENCE, userAgent: 'click-agent' } });
  const tableCounts = async () => {
    const q = (sql: string) => s.app.services.tx.read(async (tx) => Number(((await managerOf(tx).query(sql)) as Array<{ n: unknown }>)[0].n));
    return { events: await q('SELECT COUNT(*) AS n FROM consent_events'), confirmations: await q('SELECT COUNT(*) AS n FROM signup_confirmations'), deliveries: await q('SELECT COUNT(*) AS n FROM confirmation_deliveries') };
  };

  it('phone: SignUp -> code -> RecordInboundMessage with the text -> OPT_IN_CONFIRMED with its evidence -> CheckConsent ALLOW', async function () {
    const who = phone(P.phone);
    const r = await signUp(signUpReq(who));
    expect(r.method).to.equal(ConfirmationMethod.CONFIRMATION_METHOD_INBOUND_CODE);
    expect(r.confirmationCode).to.match(/^[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}$/);
    expect(r.confirmationText).to.include(r.confirmationCode);
    expect(r.expireTime!.getTime()).to.equal(s.clock.now() + 24 * HOUR);
    expect(await check(who)).to.equal('VERDICT_DENY DECISION_REASON_CONFIRMATION_PENDING');
    const pending = (await events(who)).find((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING)!;
    expect(pending.method).to.equal(CollectionMethod.COLLECTION_METHOD_WEB_FORM);
    expect(pending.evidence).to.deep.include({ sourceIp: '203.0.113.0', userAgent: EVIDENCE.userAgent, pageUrl: EVIDENCE.pageUrl });
    expect(pending.notice).to.equal(`tenants/${T}/purposes/newsletter/notices/1`);

    s.clock.advance(60_000);
    const got = await inbound(who, r.confirmationText.toLowerCase());
    expect(got.confirmedEvents).to.have.length(1);
    const confirmed = got.confirmedEvents[0];
    expect(confirmed.kind).to.equal(ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED);
    expect(confirmed.method).to.equal(CollectionMethod.COLLECTION_METHOD_CHAT_MESSAGE);
    expect(confirmed.evidence!.inboundMessageId).to.equal(got.inboundEvent!.evidence!.inboundMessageId);
    const listed = (await events(who)).find((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED)!;
    expect(listed.name).to.equal(confirmed.name);
    expect(listed.evidence!.inboundMessageId).to.match(/^wamid-/);
    expect(await check(who)).to.match(/^VERDICT_ALLOW /);

    // Used: the same code again confirms nothing (and the message is still recorded).
    const again = await inbound(who, r.confirmationText);
    expect(again.confirmedEvents).to.have.length(0);
    expect(again.inboundEvent!.kind).to.equal(ConsentEventKind.CONSENT_EVENT_KIND_INBOUND_MESSAGE);
    expect((await events(who)).filter((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED)).to.have.length(1);
  });

  // Found by a probe (Art. 7(3)): a sign-up withdrawn on the preference page while pending was
  // confirmed anyway when the code or the link arrived afterwards (ALLOW OPTED_IN).
  it('a sign-up withdrawn before its confirmation stays withdrawn: the code, the link and an API confirmation confirm nothing', async function () {
    const withdraw = async (who: SubjectIdentifier, all: boolean, channel: Channel) => {
      const { token } = await call(self, self.createPreferenceLink, { parent: `tenants/${T}`, subjectIdentifier: who, ttl: undefined });
      s.clock.advance(1000);
      await call(self, self.withdrawWithLink, WithdrawWithLinkRequest.fromPartial({ parent: `tenants/${T}`, token, all, scopes: all ? [] : [{ purpose: `tenants/${T}/purposes/newsletter`, channel }], evidence: EVIDENCE, requestId: `wd-${Math.random()}` }));
      s.clock.advance(1000);
    };
    for (const [number, all] of [['+4915112399010', false], ['+4915112399011', true]] as const) {
      const who = phone(number);
      const r = await signUp(signUpReq(who));
      await withdraw(who, all, Channel.CHANNEL_WHATSAPP);
      expect(await check(who)).to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
      const got = await inbound(who, r.confirmationText);
      expect(got.confirmedEvents, all ? 'withdrawn everything' : 'withdrawn the scope').to.have.length(0);
      expect(await check(who), 'still withdrawn').to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    }
    const mail = email('withdrawn.before.confirming@example.org');
    await signUp(signUpReq(mail));
    const link = (await deliveries()).find((d) => d.email === 'withdrawn.before.confirming@example.org')!.link;
    await withdraw(mail, false, Channel.CHANNEL_EMAIL);
    const clicked = await confirm(tokenOf(link));
    expect(clicked.events, 'the link confirms nothing').to.deep.equal([]);
    expect(await check(mail, Channel.CHANNEL_EMAIL)).to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    // The same rule for a confirmation recorded through the API.
    const refused = await expectGrpcError(
      call(consent, consent.recordConsent, {
        parent: `tenants/${T}`, subjectIdentifier: mail, purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_EMAIL, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED,
        method: CollectionMethod.COLLECTION_METHOD_WEB_FORM, notice: '', eventTime: undefined, expireTime: undefined, evidence: undefined, lawfulBasis: 0, jurisdiction: '', requestId: `api-confirm-${Math.random()}`, issueReceipt: false,
      } as never),
      status.FAILED_PRECONDITION,
    );
    expect(refused.reason).to.equal('PENDING_OPT_IN_WITHDRAWN');
    // A new sign-up (with its notice) consents again.
    const again = await signUp(signUpReq(phone('+4915112399010')));
    expect((await inbound(phone('+4915112399010'), again.confirmationText)).confirmedEvents).to.have.length(1);
    expect(await check(phone('+4915112399010'))).to.match(/^VERDICT_ALLOW /);
  });

  it('a retried SignUp answers the same code and records nothing twice; the same request_id with another body is refused', async function () {
    const req = signUpReq(phone(P.phone2));
    const first = await signUp(req);
    const before = await tableCounts();
    expect(await signUp(req)).to.deep.equal(first);
    expect(await tableCounts()).to.deep.equal(before);
    const e = await expectGrpcError(signUp({ ...req, language: 'de' }), status.FAILED_PRECONDITION);
    expect(e.reason).to.equal('REQUEST_ID_REUSED');
  });

  it('a code from another number, on another channel, or after expiry confirms nothing', async function () {
    const who = phone(P.phone3);
    const r = await signUp(signUpReq(who));
    expect((await inbound(phone(P.phone4), r.confirmationText)).confirmedEvents, 'another number').to.have.length(0);
    expect((await inbound(who, r.confirmationText, Channel.CHANNEL_SMS)).confirmedEvents, 'another channel').to.have.length(0);
    // The pending opt-ins lapse with the sign-up: by any path (the API's too), and the preference page can say so.
    const pendingEvents = (await events(who)).filter((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING);
    expect(pendingEvents.map((e) => e.expireTime?.getTime())).to.deep.equal(pendingEvents.map(() => r.expireTime!.getTime()));
    s.clock.advance(24 * HOUR + 1);
    expect((await inbound(who, r.confirmationText)).confirmedEvents, 'expired').to.have.length(0);
    expect(await check(who)).to.equal('VERDICT_DENY DECISION_REASON_CONFIRMATION_PENDING');
    const late = await expectGrpcError(call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: who, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED, notice: '' })), status.FAILED_PRECONDITION);
    expect(late.reason).to.equal('PENDING_OPT_IN_EXPIRED');
  });

  it('e-mail: the delivery is announced on the change feed and listed with the link; ConfirmSignUp confirms; a second click is TOKEN_USED', async function () {
    const who = email(P.email);
    const feed: StreamChangesResponse[] = [];
    const stream = consent.streamChanges({ parent: `tenants/${T}`, cursor: '' });
    stream.on('data', (c: StreamChangesResponse) => feed.push(c));
    stream.on('error', () => undefined);
    const r = await signUp(signUpReq(who));
    expect(r).to.deep.include({ method: ConfirmationMethod.CONFIRMATION_METHOD_EMAIL_LINK, confirmationCode: '', confirmationText: '' });
    const listed = (await deliveries()).find((d) => d.email === P.email)!;
    expect(listed.link).to.match(/^https:\/\/privacy\.example\/t\/signup\/confirm#token=/);
    expect(listed.language).to.equal('en');
    for (let i = 0; i < 50 && !feed.some((c) => c.kind === ChangeKind.CHANGE_KIND_CONFIRMATION_REQUESTED && c.confirmationDelivery === listed.name); i++) await new Promise((res) => setTimeout(res, 50));
    stream.cancel();
    const change = feed.find((c) => c.confirmationDelivery === listed.name)!;
    expect(change.kind).to.equal(ChangeKind.CHANGE_KIND_CONFIRMATION_REQUESTED);
    expect(JSON.stringify(StreamChangesResponse.toJSON(change))).not.to.include(P.email);
    expect(await check(who, Channel.CHANNEL_EMAIL)).to.equal('VERDICT_DENY DECISION_REASON_CONFIRMATION_PENDING');

    const token = tokenOf(listed.link);
    // Concurrent double click: one wins, the other is TOKEN_USED; one set of events.
    const outcomes = await Promise.allSettled([confirm(token), confirm(token)]);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    expect(won, 'exactly one click confirms').to.have.length(1);
    const lost = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect((lost.reason as ServiceError).code).to.equal(status.FAILED_PRECONDITION);
    expect((lost.reason as ServiceError).details).to.include('used already');
    const confirmedEvents = (won[0] as PromiseFulfilledResult<{ events: Array<{ kind: number; method: number; evidence?: { userAgent: string } }> }>).value.events;
    expect(confirmedEvents).to.have.length(1);
    expect(confirmedEvents[0]).to.deep.include({ kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED, method: CollectionMethod.COLLECTION_METHOD_WEB_FORM });
    expect(confirmedEvents[0].evidence!.userAgent).to.equal('click-agent');
    expect((await events(who)).filter((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED)).to.have.length(1);
    expect(await check(who, Channel.CHANNEL_EMAIL)).to.match(/^VERDICT_ALLOW /);
    const e = await expectGrpcError(confirm(token), status.FAILED_PRECONDITION);
    expect(e.reason).to.equal('TOKEN_USED');

    // The confirmation settled the delivery (listed, never acknowledged: say the tenant's mailer sent
    // it and crashed): no longer listed, so it is not mailed again; acknowledging it counts nothing.
    expect((await deliveries()).map((d) => d.name)).not.to.include(listed.name);
    expect((await call(self, self.acknowledgeConfirmationDeliveries, { parent: `tenants/${T}`, names: [listed.name] })).acknowledged).to.equal(0);
  });

  it('an acknowledged delivery is no longer listed; a second acknowledgement counts nothing; the link still confirms', async function () {
    const who = email('acknowledged@example.org');
    await signUp(signUpReq(who));
    const listed = (await deliveries()).find((d) => d.email === 'acknowledged@example.org')!;
    const ack = await call(self, self.acknowledgeConfirmationDeliveries, { parent: `tenants/${T}`, names: [listed.name] });
    expect(ack.acknowledged).to.equal(1);
    expect((await deliveries()).map((d) => d.name)).not.to.include(listed.name);
    expect((await call(self, self.acknowledgeConfirmationDeliveries, { parent: `tenants/${T}`, names: [listed.name] })).acknowledged).to.equal(0);
    const confirmed = await confirm(tokenOf(listed.link));
    expect(confirmed.events.map((e) => e.kind)).to.deep.equal([ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED]);
  });

  it('an expired link is TOKEN_EXPIRED, a foreign tenant\'s token or garbage TOKEN_INVALID; nothing is confirmed', async function () {
    const who = email(P.email2);
    await signUp(signUpReq(who));
    const token = tokenOf((await deliveries()).find((d) => d.email === P.email2)!.link);
    const before = await tableCounts();
    expect((await expectGrpcError(confirm(token, OTHER), status.INVALID_ARGUMENT)).reason).to.equal('TOKEN_INVALID');
    expect((await expectGrpcError(confirm('not.a.token'), status.INVALID_ARGUMENT)).reason).to.equal('TOKEN_INVALID');
    expect((await expectGrpcError(confirm(''), status.INVALID_ARGUMENT)).fields).to.deep.equal(['token']);
    // A token of the right tenant for another use (a preference link) is not a confirmation.
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { sub: string };
    const preference = await new SelfServiceTokens(s.app.services.keys).issue(T, claims.sub, 'preference-link', s.clock.now(), HOUR);
    expect((await expectGrpcError(confirm(preference.token), status.INVALID_ARGUMENT)).reason).to.equal('TOKEN_INVALID');
    s.clock.advance(24 * HOUR + 1000);
    expect((await expectGrpcError(confirm(token), status.FAILED_PRECONDITION)).reason).to.equal('TOKEN_EXPIRED');
    expect((await deliveries()).map((d) => d.email), 'expired deliveries are not listed').not.to.include(P.email2);
    expect(await tableCounts()).to.deep.equal(before);
  });

  it('an erased person\'s link is SUBJECT_ERASED and their deliveries are gone', async function () {
    const who = email('erase.me@example.org');
    await signUp(signUpReq(who));
    const listed = (await deliveries()).find((d) => d.email === 'erase.me@example.org')!;
    const claims = JSON.parse(Buffer.from(tokenOf(listed.link).split('.')[1], 'base64url').toString()) as { sub: string };
    const erased = await s.app.services.subjectEraser.erase(T, claims.sub);
    expect(erased.counts.signUps, 'the confirmation and its delivery').to.equal(2);
    expect((await deliveries()).map((d) => d.name)).not.to.include(listed.name);
    expect((await expectGrpcError(confirm(tokenOf(listed.link)), status.FAILED_PRECONDITION)).reason).to.equal('SUBJECT_ERASED');
  });

  it('a sign-up whose address was reported reassigned: its mail is not sent any more, its link is SIGNUP_SUPERSEDED, the new holder\'s own sign-up stays pending', async function () {
    const address = 'shared.box@example.org';
    const who = email(address);
    await signUp(signUpReq(who));
    const first = (await deliveries()).find((d) => d.email === address)!;
    await call(consent, consent.reportReassignedIdentifier, { parent: `tenants/${T}`, subjectIdentifier: who, reassignTime: undefined, source: 'CARRIER_NOTICE', requestId: `rr-${Math.random()}` } as never);
    // Not handed out yet: the former holder's mail is not listed any more (it would reach the new holder).
    expect((await deliveries()).map((d) => d.name)).not.to.include(first.name);
    s.clock.advance(60_000);
    // The address's new holder signs up; only the former holder's old link is clicked.
    await signUp(signUpReq(who));
    expect(await check(who, Channel.CHANNEL_EMAIL)).to.equal('VERDICT_DENY DECISION_REASON_CONFIRMATION_PENDING');
    const before = await tableCounts();
    expect((await expectGrpcError(confirm(tokenOf(first.link)), status.FAILED_PRECONDITION)).reason).to.equal('SIGNUP_SUPERSEDED');
    expect(await check(who, Channel.CHANNEL_EMAIL), 'nothing confirmed for the new holder').to.equal('VERDICT_DENY DECISION_REASON_CONFIRMATION_PENDING');
    expect((await events(who)).map((e) => ConsentEventKind[e.kind])).to.deep.equal(['CONSENT_EVENT_KIND_OPT_IN_PENDING']);
    expect(await tableCounts(), 'nothing recorded').to.deep.equal(before);
    // The new holder's own link confirms.
    const second = (await deliveries()).find((d) => d.email === address && d.name !== first.name)!;
    expect((await confirm(tokenOf(second.link))).events).to.have.length(1);
    expect(await check(who, Channel.CHANNEL_EMAIL)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
  });

  it('refusals: outdated notice, channel not offered, channel of another kind, language, identifier kind, choices; nothing changes', async function () {
    const who = phone('+4915112399010');
    const before = await tableCounts();
    await call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${T}/purposes/orders`, language: 'en', text: 'Orders, v2', requestId: 'orders-v2' });
    const cases: Array<[Partial<SignUpRequest>, number, string]> = [
      [{ choices: [choice(Channel.CHANNEL_WHATSAPP, 'orders', 1)] }, status.FAILED_PRECONDITION, 'NOTICE_OUTDATED'],
      [{ choices: [choice(Channel.CHANNEL_WHATSAPP, 'newsletter', 1)], language: 'de' }, status.FAILED_PRECONDITION, 'NOTICE_OUTDATED'],
      [{ choices: [choice(Channel.CHANNEL_SMS)] }, status.FAILED_PRECONDITION, 'CHANNEL_NOT_OFFERED'],
      [{ choices: [choice(Channel.CHANNEL_EMAIL)] }, status.INVALID_ARGUMENT, 'CHANNEL_MISMATCH'],
      [{ choices: [choice(Channel.CHANNEL_WHATSAPP, 'nosuch')] }, status.NOT_FOUND, 'PURPOSE_NOT_FOUND'],
      [{ choices: [choice(Channel.CHANNEL_WHATSAPP, 'newsletter', 9)] }, status.NOT_FOUND, 'NOTICE_NOT_FOUND'],
      [{ choices: [] }, status.INVALID_ARGUMENT, 'REQUIRED'],
      [{ choices: [choice(Channel.CHANNEL_WHATSAPP), choice(Channel.CHANNEL_WHATSAPP)] }, status.INVALID_ARGUMENT, 'DUPLICATE_CHOICE'],
      [{ language: 'fr' }, status.INVALID_ARGUMENT, 'LANGUAGE_NOT_OFFERED'],
      [{ subjectIdentifier: { kind: { $case: 'customerId', value: 'C-1' }, defaultRegion: '' } }, status.INVALID_ARGUMENT, 'IDENTIFIER_KIND_NOT_OFFERED'],
      [{ evidence: { ...EVIDENCE, sourceIp: 'not-an-ip' } }, status.INVALID_ARGUMENT, 'INVALID_IP_ADDRESS'],
      [{ requestId: '' }, status.INVALID_ARGUMENT, 'REQUIRED'],
      [{ parent: 'tenants/nosuch', choices: [{ purpose: 'tenants/nosuch/purposes/newsletter', channel: Channel.CHANNEL_WHATSAPP, notice: 'tenants/nosuch/purposes/newsletter/notices/1' }] }, status.NOT_FOUND, 'TENANT_NOT_FOUND'],
    ];
    for (const [more, code, reason] of cases) {
      const e = await expectGrpcError(signUp(signUpReq(who, more)), code);
      expect(e.reason, JSON.stringify(more)).to.equal(reason);
      expect(e.message).not.to.include(P.phone);
    }
    expect(await tableCounts()).to.deep.equal(before);
  });

  it('at most 5 sign-ups per identifier and hour: RESOURCE_EXHAUSTED RATE_LIMITED with RetryInfo; known and unknown identifiers get the same answer shape', async function () {
    const known = phone(P.phone);
    const unknown = phone('+4915112399077');
    const a = await signUp(signUpReq(known));
    const b = await signUp(signUpReq(unknown));
    const shape = (r: SignUpResponse) => ({ method: r.method, code: r.confirmationCode.replace(/[^-]/g, 'x'), text: r.confirmationText.replace(/[2-9A-Z]{4}-[2-9A-Z]{4}/, 'CODE'), expire: r.expireTime!.getTime() });
    expect(shape(a)).to.deep.equal(shape(b));
    for (let i = 0; i < 4; i++) await signUp(signUpReq(unknown));
    const before = await tableCounts();
    try {
      await signUp(signUpReq(unknown));
      expect.fail('the sixth sign-up must be refused');
    } catch (err) {
      const e = err as ServiceError;
      expect(e.code).to.equal(status.RESOURCE_EXHAUSTED);
      const st = Status.decode(e.metadata.get('grpc-status-details-bin')[0] as Buffer);
      const retry = st.details.find((d) => d.typeUrl.endsWith('google.rpc.RetryInfo'));
      expect(retry, 'RetryInfo').to.not.equal(undefined);
      expect(RetryInfo.decode(retry!.value).retryDelay!.seconds).to.be.within(3590, 3600);
      expect(e.details).not.to.include('+49');
    }
    expect(await tableCounts()).to.deep.equal(before);
    s.clock.advance(HOUR + 1);
    await signUp(signUpReq(unknown));
  });

  it("an e-mail address's sub-addresses share the mailbox's 5 sign-ups an hour; forms no mail can be sent to are INVALID_ARGUMENT and queue nothing", async function () {
    const mailsBefore = (await deliveries()).length;
    // Five through sub-addresses and the address itself: the sixth, in any spelling of the mailbox, is refused.
    for (const address of ['mailbox.owner+1@example.org', 'mailbox.owner+2@example.org', 'Mailbox.Owner@example.org', 'mailbox.owner+news@example.org', 'mailbox.owner+x+y@example.org']) {
      await signUp(signUpReq(email(address), { choices: [choice(Channel.CHANNEL_EMAIL)] }));
    }
    for (const address of ['mailbox.owner+6@example.org', 'mailbox.owner@example.org', 'mailbox.owner@EXAMPLE.org.']) {
      const e = await expectGrpcError(signUp(signUpReq(email(address), { choices: [choice(Channel.CHANNEL_EMAIL)] })), status.RESOURCE_EXHAUSTED);
      expect(e.reason).to.equal('RATE_LIMITED');
      expect(e.message).not.to.include('mailbox.owner');
    }
    // Another mailbox of the same domain is not affected.
    await signUp(signUpReq(email('other.owner+1@example.org'), { choices: [choice(Channel.CHANNEL_EMAIL)] }));
    expect((await deliveries()).length).to.equal(mailsBefore + 6);

    const before = await tableCounts();
    for (const address of ['"a"<mailbox.victim@example.org>', 'mailbox..victim@example.org', '.mailbox.victim@example.org', 'mailbox.victim@-example.org', 'mailbox.victim@example.123', 'mailbox victim@example.org']) {
      const e = await expectGrpcError(signUp(signUpReq(email(address), { choices: [choice(Channel.CHANNEL_EMAIL)] })), status.INVALID_ARGUMENT);
      expect(e.fields, address).to.include('subject_identifier.email');
      expect(e.message).not.to.include('victim');
    }
    expect(await tableCounts()).to.deep.equal(before);
    expect((await deliveries()).length).to.equal(mailsBefore + 6);
    // Internationalised addresses are mail addresses too.
    await signUp(signUpReq(email('jürgen.müller@bücher.example'), { choices: [choice(Channel.CHANNEL_EMAIL)] }));
  });

  it('ListConfirmationDeliveries pages; AcknowledgeConfirmationDeliveries checks names', async function () {
    for (let i = 0; i < 3; i++) await signUp(signUpReq(email(`page${i}@example.org`)));
    const all = await deliveries();
    const first = await call(self, self.listConfirmationDeliveries, { parent: `tenants/${T}`, pageSize: 2, pageToken: '' });
    expect(first.deliveries).to.have.length(2);
    const rest = await call(self, self.listConfirmationDeliveries, { parent: `tenants/${T}`, pageSize: 100, pageToken: first.nextPageToken });
    expect([...first.deliveries, ...rest.deliveries].map((d) => d.name)).to.deep.equal(all.map((d) => d.name));
    expect((await expectGrpcError(call(self, self.acknowledgeConfirmationDeliveries, { parent: `tenants/${T}`, names: [] }), status.INVALID_ARGUMENT)).fields).to.deep.equal(['names']);
    expect((await expectGrpcError(call(self, self.acknowledgeConfirmationDeliveries, { parent: `tenants/${T}`, names: [all[0].name.replace(`tenants/${T}/`, `tenants/${OTHER}/`)] }), status.INVALID_ARGUMENT)).reason).to.equal('OTHER_TENANT');
    expect((await deliveries(OTHER)).length).to.equal(0);
  });

  it('no identifier, code or token in the server log', async function () {
    const r = await signUp(signUpReq(phone('+4915112399088')));
    const logs = s.logs();
    for (const planted of [...Object.values(P), '+4915112399088', '203.0.113.77', r.confirmationCode]) expect(logs, planted).not.to.include(planted);
    for (const d of await deliveries()) expect(logs).not.to.include(tokenOf(d.link));
  });
});
