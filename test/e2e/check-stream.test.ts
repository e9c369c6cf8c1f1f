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
