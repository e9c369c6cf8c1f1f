import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, PurposeCategory } from '../../src/gen/consent/v1/common';
import {
  CheckConsentBatchRequest,
  CollectionMethod,
  ConsentEventKind,
  ConsentStatus,
  DecisionReason,
  LawfulBasis,
  ListConsentEventsRequest,
  RecordInboundMessageRequest,
  Verdict,
} from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('ConsentService over gRPC', (db) => {
  let s: TestServer;
  const T = 'shop';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());

  const eventCount = async (identifier = phone('+4915112345678')) => {
    let n = 0;
    let pageToken = '';
    do {
      const page = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: identifier, pageSize: 500, pageToken }));
      n += page.consentEvents.length;
      pageToken = page.nextPageToken;
    } while (pageToken);
    return n;
  };

  it('records an opt-in with its provenance and returns it decrypted', async function () {
    const res = await call(s.consent, s.consent.recordConsent, consentRequest(T, {
      subjectIdentifier: phone('+49 (0)151 1234 5678'.replace('(0)', '')),
      evidence: { sourceIp: '203.0.113.77', userAgent: 'Mozilla/5.0', pageUrl: 'https://shop.example/signup', inboundMessageId: '', freeText: '' },
      collectedBy: 'staff-17',
      jurisdiction: 'DE',
      requestId: 'provenance-1',
    }));
    const e = res.event!;
    expect(e.name).to.match(/^tenants\/shop\/subjects\/[0-9a-f]{32}\/consentEvents\/[0-9a-f]{32}$/);
    expect(e.kind).to.equal(ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN);
    expect(e.notice).to.equal(`tenants/${T}/purposes/newsletter/notices/1`);
    expect(e.noticeTextSha256).to.match(/^[0-9a-f]{64}$/);
    expect(e.noticeLanguage).to.equal('en');
    expect(e.evidence!.sourceIp, 'IPv4 truncated to /24').to.equal('203.0.113.0');
    expect(e.evidence!.userAgent).to.equal('Mozilla/5.0');
    expect(e.collectedBy).to.equal('staff-17');
    expect(e.lawfulBasis).to.equal(LawfulBasis.LAWFUL_BASIS_CONSENT);
    expect(e.principal).to.equal('dev-admin');
    expect(e.recordTime!.getTime()).to.equal(s.clock.now());
  });

  it('finds the same person however the number is written', async function () {
    const res = await call(s.consent, s.consent.checkConsent, {
      parent: `tenants/${T}`,
      query: query(T, { subjectIdentifier: { kind: { $case: 'phoneNumber', value: '0151 12345678' }, defaultRegion: 'DE' } }),
    });
    expect(res.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
  });

  it('a retried write returns the first event and stores nothing twice', async function () {
    const request = consentRequest(T, { subjectIdentifier: email('Retry@Example.com'), requestId: 'retry-1' });
    const first = await call(s.consent, s.consent.recordConsent, request);
    s.clock.advance(1000);
    const second = await call(s.consent, s.consent.recordConsent, request);
    expect(second.event).to.deep.equal(first.event);
    expect(await eventCount(email('retry@example.com'))).to.equal(1);
  });

  it('concurrent identical writes with one request_id store one event', async function () {
    const request = consentRequest(T, { subjectIdentifier: email('race@example.com'), requestId: 'race-1' });
    const results = await Promise.all(Array.from({ length: 8 }, () => call(s.consent, s.consent.recordConsent, request)));
    const names = new Set(results.map((r) => r.event!.name));
    expect(names.size).to.equal(1);
    expect(await eventCount(email('race@example.com'))).to.equal(1);
  });

  it('concurrent first writes for a new person create one subject', async function () {
    const person = email('newcomer@example.com');
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, requestId: `newcomer-${i}` }))),
    );
    expect(new Set(results.map((r) => r.event!.subject)).size).to.equal(1);
    expect(await eventCount(person)).to.equal(6);
  });

  it('a request_id reused for a different request is refused and changes nothing', async function () {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('reuse@example.com'), requestId: 'reuse-1' }));
    const err = await expectGrpcError(
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('reuse@example.com'), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '', requestId: 'reuse-1' })),
      status.FAILED_PRECONDITION,
    );
    expect(err.reason).to.equal('REQUEST_ID_REUSED');
    expect(await eventCount(email('reuse@example.com'))).to.equal(1);
  });

  describe('bad input gets a precise status and changes nothing', function () {
    const cases: Array<[string, Partial<Parameters<typeof consentRequest>[1]>, number, string, string[]]> = [
      ['malformed phone number', { subjectIdentifier: phone('+49 12') }, status.INVALID_ARGUMENT, 'INVALID_PHONE_NUMBER', ['subject_identifier.phone_number']],
      ['national number without region', { subjectIdentifier: phone('015112345678') }, status.INVALID_ARGUMENT, 'INVALID_PHONE_NUMBER', ['subject_identifier.phone_number']],
      ['malformed e-mail', { subjectIdentifier: email('not-an-email') }, status.INVALID_ARGUMENT, 'INVALID_EMAIL', ['subject_identifier.email']],
      ['no identifier', { subjectIdentifier: undefined }, status.INVALID_ARGUMENT, 'REQUIRED', ['subject_identifier']],
      ['missing kind', { kind: ConsentEventKind.CONSENT_EVENT_KIND_UNSPECIFIED }, status.INVALID_ARGUMENT, 'REQUIRED', ['kind']],
      ['inbound kind via RecordConsent', { kind: ConsentEventKind.CONSENT_EVENT_KIND_INBOUND_MESSAGE }, status.INVALID_ARGUMENT, 'REQUIRED', ['kind']],
      ['missing channel and method', { channel: Channel.CHANNEL_UNSPECIFIED, method: CollectionMethod.COLLECTION_METHOD_UNSPECIFIED }, status.INVALID_ARGUMENT, 'REQUIRED', ['channel', 'method']],
      ['KEYWORD method is reserved', { method: CollectionMethod.COLLECTION_METHOD_KEYWORD }, status.INVALID_ARGUMENT, 'RESERVED_METHOD', ['method']],
      ['opt-in without notice', { notice: '' }, status.INVALID_ARGUMENT, 'REQUIRED', ['notice']],
      ['opt-in for all purposes', { purpose: 'tenants/shop/purposes/-', notice: '' }, status.INVALID_ARGUMENT, 'SPECIFIC_PURPOSE_REQUIRED', ['purpose', 'notice']],
      ['notice of another purpose', { notice: 'tenants/shop/purposes/orders/notices/1' }, status.INVALID_ARGUMENT, 'NOTICE_OF_OTHER_PURPOSE', ['notice']],
      ['event 6 minutes in the future', { eventTimeOffset: 6 * 60_000 } as never, status.INVALID_ARGUMENT, 'IN_THE_FUTURE', ['event_time']],
      ['invalid source IP', { evidence: { sourceIp: '999.1.1.1', userAgent: '', pageUrl: '', inboundMessageId: '', freeText: '' } }, status.INVALID_ARGUMENT, 'INVALID_IP_ADDRESS', ['evidence.source_ip']],
      ['missing request_id', { requestId: '' }, status.INVALID_ARGUMENT, 'REQUIRED', ['request_id']],
      ['purpose of another tenant', { purpose: 'tenants/other/purposes/newsletter' }, status.INVALID_ARGUMENT, 'INVALID_PURPOSE_NAME', ['purpose']],
      ['unknown purpose', { purpose: 'tenants/shop/purposes/nope', notice: 'tenants/shop/purposes/nope/notices/1' }, status.NOT_FOUND, 'PURPOSE_NOT_FOUND', []],
      ['unknown notice version', { notice: 'tenants/shop/purposes/newsletter/notices/9' }, status.NOT_FOUND, 'NOTICE_NOT_FOUND', []],
      ['unknown tenant', { parent: 'tenants/nobody', purpose: 'tenants/nobody/purposes/newsletter', notice: 'tenants/nobody/purposes/newsletter/notices/1' }, status.NOT_FOUND, 'TENANT_NOT_FOUND', []],
      ['confirmation without pending opt-in', { kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED }, status.FAILED_PRECONDITION, 'NO_PENDING_OPT_IN', []],
      ['lawful basis on an opt-out', { kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '', lawfulBasis: LawfulBasis.LAWFUL_BASIS_CONTRACT }, status.INVALID_ARGUMENT, 'NOT_AN_OPT_IN', ['lawful_basis']],
      ['expiry on an opt-out', { kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '', expireTime: new Date(Date.UTC(2030, 0, 1)) }, status.INVALID_ARGUMENT, 'INVALID_EXPIRY', ['expire_time']],
    ];
    for (const [name, overrides, code, reason, fields] of cases) {
      it(name, async function () {
        const person = email(`bad-${name.replace(/\W+/g, '-')}@example.com`);
        const { eventTimeOffset, ...rest } = overrides as { eventTimeOffset?: number };
        const request = consentRequest(T, {
          subjectIdentifier: person,
          ...(eventTimeOffset ? { eventTime: new Date(s.clock.now() + eventTimeOffset) } : {}),
          ...rest,
        });
        const err = await expectGrpcError(call(s.consent, s.consent.recordConsent, request), code);
        expect(err.reason).to.equal(reason);
        expect(err.domain).to.equal('consent-ledger');
        expect(err.fields).to.have.members(fields);
        if (request.subjectIdentifier?.kind) {
          expect(err.message).to.not.include(request.subjectIdentifier.kind.value);
          const state = call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: person });
          // Nothing was written: the person stays unknown.
          if (fields.every((f) => !f.startsWith('subject_identifier'))) await expectGrpcError(state, status.NOT_FOUND);
        }
      });
    }

    it('an event 4 minutes in the future is accepted (clock skew) and recorded at receipt: a withdrawal right after it takes effect at once', async function () {
      const person = email('skew@example.com');
      const ahead = consentRequest(T, { subjectIdentifier: person, eventTime: new Date(s.clock.now() + 4 * 60_000) });
      const first = await call(s.consent, s.consent.recordConsent, ahead);
      expect(first.event!.eventTime!.getTime(), 'recorded as the time it was received').to.equal(s.clock.now());
      expect((await call(s.consent, s.consent.recordConsent, ahead)).event, 'a retry as sent is recognised').to.deep.equal(first.event);
      const check = () => call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person, channel: Channel.CHANNEL_WHATSAPP }) }).then((r) => r.decision!);
      expect((await check()).reason).to.equal(DecisionReason.DECISION_REASON_OPTED_IN);
      // A withdrawal recorded a second later, dated by the server (Art. 7(3)), and the same by STOP on the channel.
      s.clock.advance(1000);
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
      expect((await check()).reason).to.equal(DecisionReason.DECISION_REASON_OPTED_OUT);
      s.clock.advance(4 * 60_000);
      expect((await check()).reason, 'also once the time it was dated has passed').to.equal(DecisionReason.DECISION_REASON_OPTED_OUT);

      const texter = phone('+4915112349917');
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: texter, eventTime: new Date(s.clock.now() + 4 * 60_000) }));
      s.clock.advance(1000);
      const stop = await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({
        parent: `tenants/${T}`, subjectIdentifier: texter, channel: Channel.CHANNEL_WHATSAPP, text: 'STOP', requestId: `skew-stop-${process.pid}`, eventTime: new Date(s.clock.now() + 4 * 60_000),
      }));
      expect(stop.inboundEvent!.eventTime!.getTime()).to.equal(s.clock.now());
      expect(stop.serviceWindowExpireTime!.getTime(), 'the window runs from receipt').to.equal(s.clock.now() + 24 * 3600_000);
      const checked = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: texter }) });
      expect(checked.decision!.reason).to.equal(DecisionReason.DECISION_REASON_OPTED_OUT);
    });
  });

  it('RecordInboundMessage opens the window and records STOP as an opt-out with method KEYWORD', async function () {
    const person = phone('+4915199990000');
    const res = await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({
      parent: `tenants/${T}`, subjectIdentifier: person, channel: Channel.CHANNEL_SMS, text: 'Stop', messageId: 'sms-1', requestId: 'in-stop-1',
    }));
    expect(res.inboundEvent!.kind).to.equal(ConsentEventKind.CONSENT_EVENT_KIND_INBOUND_MESSAGE);
    expect(res.keywordEvent!.kind).to.equal(ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT);
    expect(res.keywordEvent!.method).to.equal(CollectionMethod.COLLECTION_METHOD_KEYWORD);
    expect(res.keywordEvent!.purpose).to.equal(`tenants/${T}/purposes/-`);
    expect(res.keywordEvent!.channel).to.equal(Channel.CHANNEL_SMS);
    expect(res.keywordEvent!.evidence!.inboundMessageId).to.equal('sms-1');
    expect(res.serviceWindowExpireTime!.getTime()).to.equal(s.clock.now() + 24 * 3600_000);
    const retry = await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({
      parent: `tenants/${T}`, subjectIdentifier: person, channel: Channel.CHANNEL_SMS, text: 'Stop', messageId: 'sms-1', requestId: 'in-stop-1',
    }));
    expect(retry).to.deep.equal(res);
    expect(await eventCount(person)).to.equal(2);
  });

  it('a confirmation dated before its pending opt-in is refused', async function () {
    const person = email('doi-early@example.com');
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING }));
    const err = await expectGrpcError(
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED, eventTime: new Date(s.clock.now() - 60_000) })),
      status.FAILED_PRECONDITION,
    );
    expect(err.reason).to.equal('BEFORE_PENDING_OPT_IN');
  });

  it('a confirmation dated at or after its pending opt-in expired is PENDING_OPT_IN_EXPIRED and changes nothing', async function () {
    const person = email('doi-lapsed@example.com');
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING, expireTime: new Date(s.clock.now() + 1000) }));
    s.clock.advance(2000);
    const before = await eventCount(person);
    const err = await expectGrpcError(
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED })),
      status.FAILED_PRECONDITION,
    );
    expect(err.reason).to.equal('PENDING_OPT_IN_EXPIRED');
    expect(await eventCount(person)).to.equal(before);
    const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
    expect(check.decision!.verdict).to.equal(Verdict.VERDICT_DENY);
    // Dated before the expiry (recorded late), the confirmation counts.
    const other = email('doi-in-time@example.com');
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: other, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING, expireTime: new Date(s.clock.now() + 1000) }));
    const pendingAt = s.clock.now();
    s.clock.advance(5000);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: other, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED, eventTime: new Date(pendingAt + 500) }));
  });

  it("a confirmation that names no notice carries its pending opt-in's notice: the event that decides checks proves what the person was shown (Art. 7(1))", async function () {
    const person = email('doi-notice@example.com');
    const pending = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING }));
    expect(pending.event!.notice).to.equal(`tenants/${T}/purposes/newsletter/notices/1`);
    s.clock.advance(1000);
    const confirmed = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED, notice: '' }));
    expect(confirmed.event!.notice).to.equal(pending.event!.notice);
    expect(confirmed.event!.noticeTextSha256).to.equal(pending.event!.noticeTextSha256).and.to.have.length(64);
    expect(confirmed.event!.noticeLanguage).to.equal(pending.event!.noticeLanguage);
    const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
    expect(check.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect(check.decision!.decidingEvent).to.equal(confirmed.event!.name);
    const listed = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person }));
    expect(listed.consentEvents.find((e) => e.name === confirmed.event!.name)!.notice, 'as stored').to.equal(pending.event!.notice);
  });

  it('an opt-out under another Unicode spelling of the same address withdraws the opt-in (NFD, A-label domain, trailing dot): one person, not two', async function () {
    const spellings: Array<[string, string]> = [
      ['josé@example.com', 'jose\u0301@example.com'],
      ['anna@bücher.example', 'anna@xn--bcher-kva.example'],
      ['ben@example.org', 'Ben@Example.org.'],
    ];
    for (const [given, withdrawn] of spellings) {
      const optIn = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(given) }));
      s.clock.advance(1000);
      const optOut = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(withdrawn), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT }));
      expect(optOut.event!.subject, `${given} / ${withdrawn}`).to.equal(optIn.event!.subject);
      const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email(given) }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
      expect(check.decision!.verdict, given).to.equal(Verdict.VERDICT_DENY);
      expect(check.decision!.reason, given).to.equal(DecisionReason.DECISION_REASON_OPTED_OUT);
    }
  });

  it("a withdrawal dated by the server's clock wins over every opt-in recorded before it, also when that clock is behind the one that dated the opt-in (a replica's, or one stepped back)", async function () {
    const person = phone('+4915199990071');
    const optIn = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person }));
    const checkNow = async () => (await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } })).decision!;
    expect((await checkNow()).verdict).to.equal(Verdict.VERDICT_ALLOW);
    const ahead = s.clock.now();
    s.clock.set(ahead - 10 * 60_000);
    try {
      const optOut = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT }));
      expect(optOut.event!.eventTime!.getTime(), 'dated at the opt-in it withdraws').to.equal(optIn.event!.eventTime!.getTime());
      expect((await checkNow()).reason).to.equal(DecisionReason.DECISION_REASON_OPTED_OUT);
      // The person consents again a minute later, dated by the same slow clock: it comes after the withdrawal.
      s.clock.advance(60_000);
      const again = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person }));
      expect(again.event!.eventTime!.getTime()).to.equal(optOut.event!.eventTime!.getTime() + 1);
      expect((await checkNow()).verdict, 'the new consent applies').to.equal(Verdict.VERDICT_ALLOW);
      // A STOP by message, dated by the server: the same.
      const other = phone('+4915199990072');
      s.clock.set(ahead);
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: other, channel: Channel.CHANNEL_SMS }));
      s.clock.set(ahead - 10 * 60_000);
      await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: other, channel: Channel.CHANNEL_SMS, text: 'STOP', requestId: `late-stop-${Date.now()}` }));
      const stopped = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: other, channel: Channel.CHANNEL_SMS }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
      expect(stopped.decision!.reason).to.equal(DecisionReason.DECISION_REASON_OPTED_OUT);
      // A withdrawal the caller dates before an opt-in still loses to it: the person acted in that order.
      const third = phone('+4915199990073');
      s.clock.set(ahead);
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: third }));
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: third, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, eventTime: new Date(ahead - 60_000) }));
      const dated = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: third }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
      expect(dated.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
    } finally {
      s.clock.set(ahead + 1000);
    }
  });

  it('RecordInboundMessage names the message_id field when it is too long', async function () {
    const err = await expectGrpcError(call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({
      parent: `tenants/${T}`, subjectIdentifier: phone('+4915199990009'), channel: Channel.CHANNEL_SMS, text: 'hi', messageId: 'm'.repeat(300), requestId: 'in-long',
    })), status.INVALID_ARGUMENT);
    expect(err.fields).to.deep.equal(['message_id']);
  });

  it('RecordInboundMessage refuses CHANNEL_ANY', async function () {
    const err = await expectGrpcError(call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({
      parent: `tenants/${T}`, subjectIdentifier: phone('+4915199990001'), channel: Channel.CHANNEL_ANY, text: 'hi', requestId: 'in-any',
    })), status.INVALID_ARGUMENT);
    expect(err.fields).to.deep.equal(['channel']);
  });

  it('GetConsentState shows each scope and the service windows', async function () {
    const person = phone('+4915199990002');
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person }));
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person, channel: Channel.CHANNEL_WHATSAPP, text: 'hello', requestId: 'state-in-1' }));
    const state = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: person });
    expect(state.subject).to.match(/^tenants\/shop\/subjects\/[0-9a-f]{32}$/);
    expect(state.entries).to.have.length(1);
    expect(state.entries[0].purpose).to.equal(`tenants/${T}/purposes/newsletter`);
    expect(state.entries[0].status).to.equal(ConsentStatus.CONSENT_STATUS_OPTED_IN);
    expect(state.serviceWindows).to.have.length(1);
    expect(state.serviceWindows[0].open).to.equal(true);
  });

  it('ListConsentEvents filters and paginates without gaps or repeats', async function () {
    const person = phone('+4915199990003');
    for (let i = 0; i < 7; i++) {
      s.clock.advance(1000);
      await call(s.consent, s.consent.recordConsent, consentRequest(T, {
        subjectIdentifier: person,
        kind: i % 2 === 0 ? ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN : ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT,
        notice: i % 2 === 0 ? `tenants/${T}/purposes/newsletter/notices/1` : '',
        channel: i < 4 ? Channel.CHANNEL_WHATSAPP : Channel.CHANNEL_EMAIL,
      }));
    }
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person, pageSize: 3, pageToken }));
      expect(page.consentEvents.length).to.be.at.most(3);
      seen.push(...page.consentEvents.map((e) => e.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).to.have.length(7);
    expect(new Set(seen).size).to.equal(7);

    const email_ = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person, channel: Channel.CHANNEL_EMAIL }));
    expect(email_.consentEvents).to.have.length(3);
    const times = email_.consentEvents.map((e) => e.eventTime!.getTime());
    const ranged = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({
      parent: `tenants/${T}`, subjectIdentifier: person, channel: Channel.CHANNEL_EMAIL, startTime: new Date(times[1]), endTime: new Date(times[2]),
    }));
    expect(ranged.consentEvents.map((e) => e.eventTime!.getTime())).to.deep.equal([times[1]]);
  });

  it('list pagination: negative page size and foreign tokens are INVALID_ARGUMENT', async function () {
    const neg = await expectGrpcError(call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, pageSize: -1 })), status.INVALID_ARGUMENT);
    expect(neg.fields).to.deep.equal(['page_size']);
    const page = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, pageSize: 1 }));
    expect(page.nextPageToken).to.not.equal('');
    const other = await expectGrpcError(call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, channel: Channel.CHANNEL_SMS, pageSize: 1, pageToken: page.nextPageToken })), status.INVALID_ARGUMENT);
    expect(other.fields).to.deep.equal(['page_token']);
    await expectGrpcError(call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, pageToken: 'garbage' })), status.INVALID_ARGUMENT);
  });

  it('CheckConsentBatch answers each query independently and in order', async function () {
    const req = CheckConsentBatchRequest.fromPartial({
      parent: `tenants/${T}`,
      queries: [
        query(T),
        query(T, { subjectIdentifier: phone('+49 12') }),
        query(T, { subjectIdentifier: phone('+4915100000999') }),
        query(T, { purpose: `tenants/${T}/purposes/missing` }),
        query(T, { channel: Channel.CHANNEL_ANY }),
        query(T, { purpose: '', category: PurposeCategory.PURPOSE_CATEGORY_SERVICE }),
      ],
    });
    const res = await call(s.consent, s.consent.checkConsentBatch, req);
    expect(res.results).to.have.length(6);
    expect(res.results[0].decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect(res.results[1].error!.code).to.equal(status.INVALID_ARGUMENT);
    expect(res.results[2].decision!.reason).to.equal(DecisionReason.DECISION_REASON_UNKNOWN_SUBJECT);
    expect(res.results[3].error!.code).to.equal(status.NOT_FOUND);
    expect(res.results[4].error!.code).to.equal(status.INVALID_ARGUMENT);
    expect(res.results[5].decision!.reason).to.equal(DecisionReason.DECISION_REASON_SERVICE_WINDOW_CLOSED);
  });

  it('CheckConsentBatch refuses an empty or oversized batch', async function () {
    await expectGrpcError(call(s.consent, s.consent.checkConsentBatch, { parent: `tenants/${T}`, queries: [] }), status.INVALID_ARGUMENT);
    const big = Array.from({ length: 1001 }, () => query(T));
    const err = await expectGrpcError(call(s.consent, s.consent.checkConsentBatch, { parent: `tenants/${T}`, queries: big }), status.INVALID_ARGUMENT);
    expect(err.fields).to.deep.equal(['queries']);
  });

  it('evidence ciphertext copied to another event is refused with DATA_LOSS, never returned', async function () {
    const person = email('copied@example.com');
    const evidence = { sourceIp: '192.0.2.1', userAgent: 'UA', pageUrl: '', inboundMessageId: '', freeText: '' };
    const a = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, evidence }));
    const b = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, evidence: { ...evidence, userAgent: 'Other' } }));
    const id = (name: string) => name.split('/').pop();
    const ds = s.app.dataSource;
    const [row] = await ds.query('SELECT evidence_ciphertext FROM consent_events WHERE id = ?', [id(a.event!.name)]);
    await ds.query('UPDATE consent_events SET evidence_ciphertext = ? WHERE id = ?', [row.evidence_ciphertext, id(b.event!.name)]);
    const err = await expectGrpcError(call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person })), status.DATA_LOSS);
    expect(err.reason).to.equal('CIPHERTEXT_INVALID');
  });

  it('CheckConsent on an unknown tenant is NOT_FOUND', async function () {
    const err = await expectGrpcError(call(s.consent, s.consent.checkConsent, { parent: 'tenants/ghost', query: query('ghost') }), status.NOT_FOUND);
    expect(err.reason).to.equal('TENANT_NOT_FOUND');
  });
});
