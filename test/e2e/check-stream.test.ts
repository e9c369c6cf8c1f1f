import { once } from 'node:events';
import { ClientDuplexStream } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import { DecisionReason, StreamCheckConsentRequest, StreamCheckConsentResponse, Verdict } from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('StreamCheckConsent', (db) => {
  let s: TestServer;
  const T = 'stream';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915120000001') }));
  });
  after(async () => s?.stop());

  const request = (i: number): StreamCheckConsentRequest => ({
    parent: `tenants/${T}`,
    correlationId: `q${i}`,
    query: query(T, { subjectIdentifier: phone(i % 2 === 0 ? '+4915120000001' : '+4915120000002') }),
    items: [],
  });

  it('answers every query in order, each independently', async function () {
    const stream = s.consent.streamCheckConsent();
    const answers: StreamCheckConsentResponse[] = [];
    stream.on('data', (r: StreamCheckConsentResponse) => answers.push(r));
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const req = i === 7 ? { ...request(i), query: query(T, { channel: Channel.CHANNEL_ANY }) } : request(i);
      if (!stream.write(req)) await once(stream, 'drain');
    }
    stream.end();
    await once(stream, 'end');
    expect(answers).to.have.length(n);
    answers.forEach((a, i) => expect(a.correlationId).to.equal(`q${i}`));
    expect(answers[0].result!.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect(answers[1].result!.decision!.reason).to.equal(DecisionReason.DECISION_REASON_UNKNOWN_SUBJECT);
    expect(answers[7].result!.error!.code, 'a bad query fails alone').to.equal(3);
    expect(answers[8].result!.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
  });

  it('a query for an unknown tenant fails alone, the stream goes on', async function () {
    const stream = s.consent.streamCheckConsent();
    const answers: StreamCheckConsentResponse[] = [];
    stream.on('data', (r: StreamCheckConsentResponse) => answers.push(r));
    stream.write(request(0));
    stream.write({ ...request(1), parent: 'tenants/ghost' });
    stream.write({ ...request(2), parent: 'not a name' });
    stream.write(request(3));
    stream.end();
    await once(stream, 'end');
    expect(answers.map((a) => a.result!.error?.code ?? 0)).to.deep.equal([0, 5, 3, 0]);
  });

  it('consistency per message: a token, full consistency and the default answer; a bad or foreign token fails its message alone', async function () {
    const written = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915120000001'), requestId: 'stream-token' }));
    const stream = s.consent.streamCheckConsent();
    const answers: StreamCheckConsentResponse[] = [];
    stream.on('data', (r: StreamCheckConsentResponse) => answers.push(r));
    const foreign = `ct1.${Buffer.from('other:1').toString('base64url')}`;
    const asks = [
      { requirement: { $case: 'atLeastAsFresh' as const, value: written.consistencyToken } },
      { requirement: { $case: 'atLeastAsFresh' as const, value: 'not-a-token' } },
      { requirement: { $case: 'fullyConsistent' as const, value: true } },
      { requirement: { $case: 'atLeastAsFresh' as const, value: foreign } },
      undefined,
    ];
    asks.forEach((consistency, i) => stream.write({ ...request(i * 2), consistency }));
    stream.end();
    await once(stream, 'end');
    expect(answers.map((a) => a.correlationId)).to.deep.equal(['q0', 'q2', 'q4', 'q6', 'q8']);
    expect(answers.map((a) => a.result!.error?.code ?? a.result!.decision!.verdict)).to.deep.equal([Verdict.VERDICT_ALLOW, 3, Verdict.VERDICT_ALLOW, 3, Verdict.VERDICT_ALLOW]);
    expect(answers[1].result!.error!.message).to.include('consistency.at_least_as_fresh');
    expect(answers[3].result!.error!.message).to.include("another tenant's");
  });

  /** Writes `messages`, half-closes, and returns the responses. */
  async function exchange(messages: StreamCheckConsentRequest[]): Promise<StreamCheckConsentResponse[]> {
    const stream = s.consent.streamCheckConsent();
    const answers: StreamCheckConsentResponse[] = [];
    stream.on('data', (r: StreamCheckConsentResponse) => answers.push(r));
    for (const m of messages) if (!stream.write(m)) await once(stream, 'drain');
    stream.end();
    await once(stream, 'end');
    return answers;
  }

  const packed = (correlationId: string, from: number, count: number, extra: Partial<StreamCheckConsentRequest> = {}): StreamCheckConsentRequest => ({
    parent: `tenants/${T}`,
    correlationId,
    query: undefined,
    consistency: undefined,
    items: Array.from({ length: count }, (_, k) => ({ correlationId: `q${from + k}`, query: request(from + k).query })),
    ...extra,
  });

  /** An answer as "verdict" or "error code", for comparing many at once. */
  const outcome = (r: { result?: { decision?: { verdict: number }; error?: { code: number } } }) => (r.result?.error ? `error ${r.result.error.code}` : `verdict ${r.result?.decision?.verdict}`);

  it('packed messages: one response per message carries every item\'s answer in order, beside one-question messages', async function () {
    const messages = [packed('m0', 0, 1000), request(1000), packed('', 1001, 3), packed('m2', 1004, 600)];
    messages[3].items[5].query = query(T, { channel: Channel.CHANNEL_ANY }); // one bad item fails alone
    const answers = await exchange(messages);
    expect(answers.map((a) => [a.correlationId, a.answers.length])).to.deep.equal([['m0', 1000], ['q1000', 0], ['', 3], ['m2', 600]]);
    expect(answers[0].result, 'a packed message has no result of its own').to.equal(undefined);
    expect(answers[0].answers.map((a) => a.correlationId)).to.deep.equal(Array.from({ length: 1000 }, (_, k) => `q${k}`));
    // Even numbers are the opted-in person, odd ones nobody known.
    const expected = (n: number) => (n % 2 === 0 ? `verdict ${Verdict.VERDICT_ALLOW}` : `verdict ${Verdict.VERDICT_DENY}`);
    expect(answers[0].answers.map(outcome)).to.deep.equal(Array.from({ length: 1000 }, (_, k) => expected(k)));
    expect(answers[0].answers[1].result!.decision!.reason).to.equal(DecisionReason.DECISION_REASON_UNKNOWN_SUBJECT);
    expect(outcome(answers[1])).to.equal(expected(1000));
    expect(answers[2].answers.map(outcome)).to.deep.equal([1001, 1002, 1003].map(expected));
    expect(answers[3].answers.map(outcome)).to.deep.equal(Array.from({ length: 600 }, (_, k) => (k === 5 ? 'error 3' : expected(1004 + k))));
    const bad = answers[3].answers[5].result!.error!;
    expect(bad.message).to.include('items[5].query.channel');
  });

  it('a packed message wrong as a whole is refused whole, in result.error, and the stream goes on', async function () {
    const written = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915120000001'), requestId: 'packed-token' }));
    const answers = await exchange([
      packed('both', 0, 2, { query: query(T) }),
      packed('too-many', 0, 1001),
      // Far more than the limit: refused on the wire, before an object is made of each item.
      { ...packed('', 0, 1), items: Array.from({ length: 20_000 }, (_, k) => ({ correlationId: `w${k}`, query: undefined })) },
      packed('ghost', 0, 2, { parent: 'tenants/ghost' }),
      packed('not-a-name', 0, 2, { parent: 'not a name' }),
      packed('bad-token', 0, 2, { consistency: { requirement: { $case: 'atLeastAsFresh', value: 'not-a-token' } } }),
      // Too many items and a query beside them: both named, though the items were never decoded.
      { ...packed('many-and-query', 0, 1001), query: query(T) },
      // Every answer echoes its id: ids over 256 bytes are refused (a huge message id is not echoed).
      { ...packed('x'.repeat(257), 0, 2) },
      { ...packed('long-item-ids', 0, 3), items: packed('', 0, 3).items.map((item, k) => ({ ...item, correlationId: k === 1 ? 'y'.repeat(300) : item.correlationId })) },
      packed('fresh', 0, 2, { consistency: { requirement: { $case: 'atLeastAsFresh', value: written.consistencyToken } } }),
      packed('full', 2, 2, { consistency: { requirement: { $case: 'fullyConsistent', value: true } } }),
    ]);
    expect(answers.map((a) => [a.correlationId, a.answers.length, a.result?.error?.code ?? null])).to.deep.equal([
      ['both', 0, 3],
      ['too-many', 0, 3],
      ['', 0, 3],
      ['ghost', 0, 5],
      ['not-a-name', 0, 3],
      ['bad-token', 0, 3],
      ['many-and-query', 0, 3],
      ['', 0, 3],
      ['long-item-ids', 0, 3],
      ['fresh', 2, null],
      ['full', 2, null],
    ]);
    expect(answers[0].result!.error!.message).to.include('items');
    expect(answers[1].result!.error!.message).to.include('items').and.include('1000');
    expect(answers[2].result!.error!.message, 'the same reason on the wire').to.include('items').and.include('1000');
    expect(answers[5].result!.error!.message).to.include('consistency.at_least_as_fresh');
    const fields = (r: StreamCheckConsentResponse) => r.result!.error!.message;
    expect(fields(answers[6])).to.include('items: set either query').and.include('items: must hold 1 to 1000 items');
    expect(fields(answers[7])).to.include('correlation_id: at most 256 bytes');
    expect(fields(answers[8])).to.include('items[1].correlation_id: at most 256 bytes').and.not.include('items[0]');
    expect(answers[9].answers.map(outcome)).to.deep.equal([`verdict ${Verdict.VERDICT_ALLOW}`, `verdict ${Verdict.VERDICT_DENY}`]);
    expect(answers[10].answers.map(outcome)).to.deep.equal([`verdict ${Verdict.VERDICT_ALLOW}`, `verdict ${Verdict.VERDICT_DENY}`]);
  });

  it('an item the decoder refuses (an enum number the schema lacks, a time out of range) fails alone; the other items are answered', async function () {
    const m = packed('wire', 0, 4);
    m.items[1].query = query(T, { channel: 99 as Channel });
    m.items[2].query = query(T, { at: new Date(Date.UTC(10000, 0, 2)) });
    const answers = await exchange([m, request(4)]);
    expect(answers.map((a) => a.answers.length)).to.deep.equal([4, 0]);
    expect(answers[0].answers.map(outcome)).to.deep.equal([`verdict ${Verdict.VERDICT_ALLOW}`, 'error 3', 'error 3', `verdict ${Verdict.VERDICT_DENY}`]);
    expect(answers[0].answers[1].result!.error!.message).to.include('items[1].query.channel');
    expect(answers[0].answers[2].result!.error!.message).to.include('items[2].query.at');
    expect(answers[0].answers.map((a) => a.correlationId)).to.deep.equal(['q0', 'q1', 'q2', 'q3']);
    expect(outcome(answers[1])).to.equal(`verdict ${Verdict.VERDICT_ALLOW}`);
  });

  it('a client that stops reading packed answers stops the server from reading, then completes', async function () {
    this.timeout(60_000);
    const stream: ClientDuplexStream<StreamCheckConsentRequest, StreamCheckConsentResponse> = s.consent.streamCheckConsent();
    let received = 0;
    stream.on('data', (r: StreamCheckConsentResponse) => (received += r.answers.length));
    stream.pause();
    const before = s.app.services.decisionCache!.stats;
    const decidedBefore = before.hits + before.misses + before.stale;
    const limit = 2_000;
    let written = 0;
    let stalled = false;
    // Every question about another person nobody recorded: each is one lookup of the decision
    // cache, which counts the questions the server decided.
    const distinct = (m: number): StreamCheckConsentRequest => ({
      ...packed(`m${m}`, 0, 0),
      items: Array.from({ length: 1000 }, (_, k) => ({ correlationId: `q${k}`, query: query(T, { subjectIdentifier: phone(`+49151${30_000_000 + m * 1000 + k}`) }) })),
    });
    while (written < limit) {
      if (!stream.write(distinct(written))) {
        written++;
        const drained = await Promise.race([once(stream, 'drain').then(() => true), delay(1500).then(() => false)]);
        if (!drained) {
          stalled = true;
          break;
        }
      } else written++;
    }
    expect(stalled, 'the server stopped reading while the client did not read').to.equal(true);
    expect(written).to.be.below(limit);
    // How far the server got ahead of the reader. The grpc-js client itself reads 16 answer
    // messages ahead of a paused reader (its stream buffer) and HTTP/2's window holds a few more
    // (20 messages in all, measured); the server writes a chunk's answers before it reads on, so
    // it holds none of its own, not the 16 more its stream buffer would take (35 before the fix).
    const cache = s.app.services.decisionCache!.stats;
    const decided = cache.hits + cache.misses + cache.stale - decidedBefore;
    expect(decided, 'questions decided while the client did not read').to.be.at.most(25_000);
    stream.resume();
    await once(stream, 'drain');
    stream.end();
    await once(stream, 'end');
    expect(received).to.equal(written * 1000);
  });

  it('a client that stops reading stops the server from reading (bounded memory), then completes', async function () {
    this.timeout(60_000);
    const stream: ClientDuplexStream<StreamCheckConsentRequest, StreamCheckConsentResponse> = s.consent.streamCheckConsent();
    let received = 0;
    const onData = () => received++;
    stream.on('data', onData);
    stream.pause(); // a slow reader: answers pile up on the client's side of the connection
    const limit = 200_000;
    let written = 0;
    let stalled = false;
    while (written < limit) {
      if (!stream.write(request(written++))) {
        const drained = await Promise.race([once(stream, 'drain').then(() => true), delay(1500).then(() => false)]);
        if (!drained) {
          stalled = true;
          break;
        }
      }
    }
    expect(stalled, 'the server stopped reading while the client did not read').to.equal(true);
    expect(written).to.be.below(limit);
    // Reading again lets everything through, in order.
    stream.resume();
    await once(stream, 'drain');
    stream.end();
    await once(stream, 'end');
    expect(received).to.equal(written);
  });
});

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
