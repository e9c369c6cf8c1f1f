import { Client, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { expect } from 'chai';
import { CheckConsentBatchResponse, ListConsentEventsRequest, StreamCheckConsentResponse } from '../../src/gen/consent/v1/consent';
import { BadRequest, ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { SelfServiceServiceClient } from '../../src/gen/consent/v1/self_service';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { call, errorDetails, startTestServer, TestServer } from '../support/test-server';
import { protoRegistry } from '../fuzz/support/catalog';
import { rawClient } from '../fuzz/support/invoke';

/**
 * Strict input over real gRPC: enum numbers a field does not define and times outside the
 * protobuf ranges are INVALID_ARGUMENT naming the field (no silent "unset"), and change nothing;
 * x-request-id is taken only in a safe form. Requests are built with @bufbuild/protobuf from the
 * descriptor set, since the generated ts-proto encoder cannot write such values.
 */
forEachDatabase('strict input', (db) => {
  let s: TestServer;
  let raw: Client;
  const T = 'strict';
  const parent = `tenants/${T}`;
  const who = { kind: { case: 'phoneNumber', value: '+4915112349999' } };

  before(async function () {
    s = await startTestServer(db());
    raw = rawClient(s.address);
    await seedTenant(s, T);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915112349999'), requestId: 'strict-seed' }));
  });
  after(async () => {
    raw?.close();
    await s?.stop();
  });

  /** Encodes `init` as the request message `type` and calls `method` of ConsentService (or `service`) with it. */
  function unary(method: string, type: string, init: Record<string, unknown>, metadata = new Metadata(), service = 'ConsentService'): Promise<{ err: ServiceError | null; headers: Metadata | null }> {
    const desc = protoRegistry().getMessage(`consent.v1.${type}`)!;
    const bytes = Buffer.from(toBinary(desc, create(desc, init as never)));
    return new Promise((resolve) => {
      let headers: Metadata | null = null;
      const c = raw.makeUnaryRequest(`/consent.v1.${service}/${method}`, (b: Buffer) => b, (b: Buffer) => b, bytes, metadata, {}, (err) => resolve({ err, headers }));
      c.on('metadata', (m: Metadata) => (headers = m));
    });
  }

  async function eventCount(): Promise<number> {
    return (await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent, pageSize: 1000 }))).consentEvents.length;
  }

  const recordInit = (extra: Record<string, unknown>) => ({
    parent,
    subjectIdentifier: who,
    purpose: `${parent}/purposes/newsletter`,
    channel: 1,
    kind: 1,
    method: 1,
    notice: `${parent}/purposes/newsletter/notices/1`,
    requestId: `strict-${Math.random()}`,
    ...extra,
  });

  it('an unknown lawful_basis is INVALID_ARGUMENT naming it, not stored as CONSENT', async function () {
    const before = await eventCount();
    const { err } = await unary('RecordConsent', 'RecordConsentRequest', recordInit({ lawfulBasis: 99 }));
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    const d = errorDetails(err!);
    expect(d.fields).to.deep.equal(['lawful_basis']);
    expect(d.reason).to.not.equal('INVALID_ARGUMENT');
    expect(await eventCount()).to.equal(before);
  });

  it('a sign-up choice with an unknown channel number is INVALID_ARGUMENT naming it, and records nothing', async function () {
    const before = await eventCount();
    const choice = (channel: number) => ({ purpose: `${parent}/purposes/newsletter`, channel, notice: `${parent}/purposes/newsletter/notices/1` });
    const init = { parent, subjectIdentifier: { kind: { case: 'email', value: 'strict.signup@example.org' } }, choices: [choice(3), choice(99)], language: 'en', requestId: 'strict-signup' };
    const { err } = await unary('SignUp', 'SignUpRequest', init, new Metadata(), 'SelfServiceService');
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(err!).fields).to.deep.equal(['choices[1].channel']);
    expect(await eventCount()).to.equal(before);
  });

  it('unknown channel and kind numbers are INVALID_ARGUMENT, all named at once', async function () {
    const { err } = await unary('RecordConsent', 'RecordConsentRequest', recordInit({ channel: 99, kind: -3 }));
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(err!).fields).to.have.members(['channel', 'kind']);
  });

  it('a channel filter that names no channel is refused, not dropped', async function () {
    const { err } = await unary('ListConsentEvents', 'ListConsentEventsRequest', { parent, channel: 99 });
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(err!).fields).to.deep.equal(['channel']);
  });

  it('a category that names no category is refused in a check', async function () {
    const { err } = await unary('CheckConsent', 'CheckConsentRequest', { parent, query: { subjectIdentifier: who, channel: 1, category: 99 } });
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(err!).fields).to.deep.equal(['query.category']);
  });

  it('timestamps outside the protobuf range are INVALID_ARGUMENT, not now and not INTERNAL', async function () {
    const before = await eventCount();
    for (const eventTime of [
      { seconds: 1_772_366_400n, nanos: -5 },
      { seconds: 1_772_366_400n, nanos: 1_000_000_000 },
      { seconds: 2_000_000_000n * 31_557_600n, nanos: 0 },
      { seconds: -62_135_596_801n, nanos: 0 },
    ]) {
      const { err } = await unary('RecordConsent', 'RecordConsentRequest', recordInit({ eventTime }));
      expect(err?.code, `${eventTime.seconds}s ${eventTime.nanos}ns`).to.equal(status.INVALID_ARGUMENT);
      expect(errorDetails(err!).fields).to.deep.equal(['event_time']);
    }
    const { err } = await unary('CheckConsent', 'CheckConsentRequest', { parent, query: { subjectIdentifier: who, channel: 1, purpose: `${parent}/purposes/newsletter`, at: { seconds: 1n, nanos: -1 } } });
    expect(errorDetails(err!).fields).to.deep.equal(['query.at']);
    expect(await eventCount()).to.equal(before);
  });

  it('a batch query with an unknown channel number fails alone, with the reason CheckConsent gives for it (UNKNOWN_ENUM_VALUE)', async function () {
    const q = { subjectIdentifier: who, purpose: `${parent}/purposes/newsletter` };
    const desc = protoRegistry().getMessage('consent.v1.CheckConsentBatchRequest')!;
    const bytes = Buffer.from(toBinary(desc, create(desc, { parent, queries: [{ ...q, channel: 77 }, { ...q, channel: 1 }, { ...q, channel: -5 }] } as never)));
    const response = await new Promise<CheckConsentBatchResponse>((resolve, reject) =>
      raw.makeUnaryRequest('/consent.v1.ConsentService/CheckConsentBatch', (b: Buffer) => b, (b: Buffer) => CheckConsentBatchResponse.decode(b), bytes, new Metadata(), {}, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    const single = await unary('CheckConsent', 'CheckConsentRequest', { parent, query: { ...q, channel: 77 } });
    const singleReason = errorDetails(single.err!).reason;
    expect(singleReason).to.equal('UNKNOWN_ENUM_VALUE');
    const itemError = (i: number) => {
      const st = response.results[i].error!;
      const info = st.details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
      const bad = st.details.find((d) => d.typeUrl.endsWith('google.rpc.BadRequest'));
      return { code: st.code, reason: info ? ErrorInfo.decode(info.value).reason : '', fields: bad ? BadRequest.decode(bad.value).fieldViolations.map((v) => v.field) : [] };
    };
    expect(itemError(0)).to.deep.equal({ code: status.INVALID_ARGUMENT, reason: singleReason, fields: ['queries[0].channel'] });
    expect(response.results[1].decision, 'its neighbour is answered').to.not.equal(undefined);
    expect(itemError(2)).to.deep.equal({ code: status.INVALID_ARGUMENT, reason: singleReason, fields: ['queries[2].channel'] });
  });

  it('a batch query whose time does not fit a number (seconds above 2^53) fails alone too (found by a probe: it failed the whole call)', async function () {
    const q = { subjectIdentifier: who, purpose: `${parent}/purposes/newsletter`, channel: 1 };
    const desc = protoRegistry().getMessage('consent.v1.CheckConsentBatchRequest')!;
    const bytes = Buffer.from(toBinary(desc, create(desc, { parent, queries: [q, { ...q, at: { seconds: 1n << 60n, nanos: 0 } }, q] } as never)));
    const response = await new Promise<CheckConsentBatchResponse>((resolve, reject) =>
      raw.makeUnaryRequest('/consent.v1.ConsentService/CheckConsentBatch', (b: Buffer) => b, (b: Buffer) => CheckConsentBatchResponse.decode(b), bytes, new Metadata(), {}, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    expect(response.results.map((r) => (r.decision ? 'decision' : r.error!.code))).to.deep.equal(['decision', status.INVALID_ARGUMENT, 'decision']);
    const bad = response.results[1].error!.details.find((d) => d.typeUrl.endsWith('google.rpc.BadRequest'))!;
    expect(BadRequest.decode(bad.value).fieldViolations.map((v) => `${v.field} ${v.reason}`)).to.deep.equal(['queries[1].at INVALID_TIMESTAMP']);
  });

  /** Sends raw StreamCheckConsent messages on one stream, half-closes, and returns the responses. */
  function streamChecks(messages: Buffer[]): Promise<StreamCheckConsentResponse[]> {
    return new Promise((resolve, reject) => {
      const got: StreamCheckConsentResponse[] = [];
      const stream = raw.makeBidiStreamRequest('/consent.v1.ConsentService/StreamCheckConsent', (b: Buffer) => b, (b: Buffer) => StreamCheckConsentResponse.decode(b), new Metadata(), {});
      stream.on('data', (r: StreamCheckConsentResponse) => got.push(r));
      stream.on('error', reject);
      stream.on('end', () => resolve(got));
      for (const m of messages) stream.write(m);
      stream.end();
    });
  }

  it('a streamed check with an unknown enum fails alone; its neighbours are answered', async function () {
    const desc = protoRegistry().getMessage('consent.v1.StreamCheckConsentRequest')!;
    const q = { subjectIdentifier: who, purpose: `${parent}/purposes/newsletter` };
    const items = [
      { parent, correlationId: 'a', query: { ...q, channel: 1 } },
      { parent, correlationId: 'b', query: { ...q, channel: 42 } },
      { parent, correlationId: 'c', query: { ...q, channel: 1 } },
    ].map((init) => Buffer.from(toBinary(desc, create(desc, init as never))));
    const answers = await streamChecks(items);
    expect(answers.map((a) => a.correlationId)).to.deep.equal(['a', 'b', 'c']);
    expect(answers[0].result!.decision).to.not.equal(undefined);
    expect(answers[1].result!.error!.code).to.equal(status.INVALID_ARGUMENT);
    expect(answers[2].result!.decision).to.not.equal(undefined);
  });

  it('a packed stream message: an item with an unknown enum or a time that does not fit a number fails alone, with its field named', async function () {
    const desc = protoRegistry().getMessage('consent.v1.StreamCheckConsentRequest')!;
    const q = { subjectIdentifier: who, purpose: `${parent}/purposes/newsletter`, channel: 1 };
    const packed = {
      parent,
      correlationId: 'm',
      items: [
        { correlationId: 'a', query: q },
        { correlationId: 'b', query: { ...q, channel: 42 } },
        { correlationId: `c${'-'.repeat(150)}`, query: { ...q, at: { seconds: 1n << 60n, nanos: 0 } } },
        { correlationId: 'd', query: q },
      ],
    };
    const messages = [packed, { parent, correlationId: 'after', query: q }].map((init) => Buffer.from(toBinary(desc, create(desc, init as never))));
    const answers = await streamChecks(messages);
    expect(answers.map((a) => a.correlationId)).to.deep.equal(['m', 'after']);
    const violations = (r: StreamCheckConsentResponse['answers'][number]) => {
      const bad = r.result!.error?.details.find((d) => d.typeUrl.endsWith('google.rpc.BadRequest'));
      return bad ? BadRequest.decode(bad.value).fieldViolations.map((v) => `${v.field} ${v.reason}`) : [];
    };
    // The items decoded as empty ones (a time the decoder cannot hold) keep their correlation ids.
    expect(answers[0].answers.map((a) => [a.correlationId, a.result!.decision ? 'decision' : a.result!.error!.code])).to.deep.equal([
      ['a', 'decision'],
      ['b', status.INVALID_ARGUMENT],
      [`c${'-'.repeat(150)}`, status.INVALID_ARGUMENT],
      ['d', 'decision'],
    ]);
    expect(violations(answers[0].answers[1])).to.deep.equal(['items[1].query.channel UNKNOWN_ENUM_VALUE']);
    expect(violations(answers[0].answers[2])).to.deep.equal(['items[2].query.at INVALID_TIMESTAMP']);
    expect(answers[1].result!.decision, 'the stream goes on').to.not.equal(undefined);
  });

  it('a one-question stream message with a value out of range is refused for that value alone, as before the packed form', async function () {
    const desc = protoRegistry().getMessage('consent.v1.StreamCheckConsentRequest')!;
    const q = { subjectIdentifier: who, purpose: `${parent}/purposes/newsletter`, channel: 1 };
    const messages = [
      { parent, correlationId: 'huge-at', query: { ...q, at: { seconds: 1n << 60n, nanos: 0 } } },
      { parent: 'not a name', correlationId: 'bad-parent-and-channel', query: { ...q, channel: 99 } },
    ].map((init) => Buffer.from(toBinary(desc, create(desc, init as never))));
    const answers = await streamChecks(messages);
    const named = (r: StreamCheckConsentResponse) => {
      const bad = r.result!.error!.details.find((d) => d.typeUrl.endsWith('google.rpc.BadRequest'))!;
      return BadRequest.decode(bad.value).fieldViolations.map((v) => `${v.field} ${v.reason}`);
    };
    expect(answers.map(named)).to.deep.equal([['query.at INVALID_TIMESTAMP'], ['query.channel UNKNOWN_ENUM_VALUE']]);
  });

  it('preference links: an unknown channel in a withdrawal scope and an unknown request kind are INVALID_ARGUMENT and change nothing', async function () {
    const selfService = new SelfServiceServiceClient(s.address, credentials.createInsecure());
    try {
      const { token } = await call(selfService, selfService.createPreferenceLink, { parent, subjectIdentifier: phone('+4915112349999'), ttl: undefined });
      const before = await eventCount();
      const withdrawn = await unary('WithdrawWithLink', 'WithdrawWithLinkRequest', { parent, token, scopes: [{ purpose: `${parent}/purposes/newsletter`, channel: 99 }], requestId: 'strict-wd' }, new Metadata(), 'SelfServiceService');
      expect(withdrawn.err?.code).to.equal(status.INVALID_ARGUMENT);
      expect(errorDetails(withdrawn.err!).fields).to.deep.equal(['scopes[0].channel']);
      const requested = await unary('CreateRequestWithLink', 'CreateRequestWithLinkRequest', { parent, token, kind: 42, requestId: 'strict-rq' }, new Metadata(), 'SelfServiceService');
      expect(requested.err?.code).to.equal(status.INVALID_ARGUMENT);
      expect(errorDetails(requested.err!).fields).to.deep.equal(['kind']);
      const ttl = await unary('CreatePreferenceLink', 'CreatePreferenceLinkRequest', { parent, subjectIdentifier: who, ttl: { seconds: 3600n, nanos: -1 } }, new Metadata(), 'SelfServiceService');
      expect(ttl.err?.code).to.equal(status.INVALID_ARGUMENT);
      expect(errorDetails(ttl.err!).fields).to.deep.equal(['ttl']);
      expect(await eventCount()).to.equal(before);
    } finally {
      selfService.close();
    }
  });

  describe('x-request-id', function () {
    async function idUsed(given: string): Promise<string> {
      const metadata = new Metadata();
      metadata.set('x-request-id', given);
      const { headers } = await unary('CheckConsent', 'CheckConsentRequest', { parent, query: { subjectIdentifier: who, channel: 1, purpose: `${parent}/purposes/newsletter` } }, metadata);
      return String(headers!.get('x-request-id')[0]);
    }

    it('a safe id is echoed and logged as given', async function () {
      for (const id of ['order-42.retry:1', '3f2a1c9e-0b1d-4c6e-9a7f-123456789012']) {
        expect(await idUsed(id)).to.equal(id);
        expect(s.logs()).to.include(`"request_id":"${id}"`);
      }
    });

    it('a phone number, an address or an over-long id is replaced and never logged or echoed', async function () {
      for (const id of ['4915112345678', '004915112345678', '015112345678', 'tel:4915112345678', '203.0.113.77', 'x'.repeat(65), 'caller@example.com']) {
        const used = await idUsed(id);
        expect(used, id).to.not.equal(id);
        expect(used).to.match(/^[0-9a-f-]{36}$/);
        expect(s.logs(), id).to.not.include(id);
      }
    });
  });
});
