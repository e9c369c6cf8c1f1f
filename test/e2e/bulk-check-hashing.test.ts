import { expect } from 'chai';
import { Metadata } from '@grpc/grpc-js';
import { ConsentEventKind, ConsentQuery, DecisionReason, StreamCheckConsentResponse, Verdict } from '../../src/gen/consent/v1/consent';
import { createTestDatabase, forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';
import { BLIND_INDEX_WORKER_SOURCE } from '../../src/crypto/blind-index-workers';

/**
 * Bulk checks (CheckConsentBatch, packed StreamCheckConsent messages) hash their blind indexes on
 * worker threads (BLIND_INDEX_WORKERS, crypto/blind-index-workers.ts), single checks on the event
 * loop's thread. Over real gRPC: every kind of question a batch can hold gets, position by
 * position, the answer CheckConsent gives it alone, with the workers, without them, and after the
 * worker has gone.
 */
forEachDatabase('bulk checks hashed on worker threads', (db, kind) => {
  const T = 'bulkhash';
  let s: TestServer;
  before(async () => {
    s = await startTestServer(db());
    await seedTenant(s, T);
    // Opted in, opted out, and a non-ASCII e-mail address (hashed from its UTF-8 bytes on both threads).
    for (let n = 0; n < 30; n++) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n) }));
    for (let n = 30; n < 40; n++) {
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n) }));
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT }));
    }
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('jürgen@müller.example') }));
  });
  after(async () => s?.stop());

  function person(n: number) {
    return phone(`+49151777${String(n).padStart(5, '0')}`);
  }

  /** 200 questions: known people (some twice), strangers, a non-ASCII e-mail, bad numbers, an unknown purpose. */
  function questions(): ConsentQuery[] {
    const q: ConsentQuery[] = [];
    for (let i = 0; i < 200; i++) {
      if (i % 17 === 5) q.push(query(T, { subjectIdentifier: phone('not a number') }));
      else if (i % 23 === 7) q.push(query(T, { subjectIdentifier: person(i % 40), purpose: `tenants/${T}/purposes/nope` }));
      else if (i % 29 === 3) q.push(query(T, { subjectIdentifier: email('JÜRGEN@müller.example') }));
      else q.push(query(T, { subjectIdentifier: person(i % 60) }));
    }
    return q;
  }

  /** What CheckConsent answers each question alone (hashed on the event loop's thread), as the batch's result shape. */
  async function aloneAnswers(server: TestServer, qs: ConsentQuery[]) {
    return Promise.all(
      qs.map((q) =>
        call(server.consent, server.consent.checkConsent, { parent: `tenants/${T}`, query: q, consistency: undefined }).then(
          (r) => ({ decision: r.decision, error: undefined }),
          (err: { code: number; details: string }) => ({ decision: undefined, error: { code: err.code, message: err.details } }),
        ),
      ),
    );
  }

  /** Answers position by position; an error's field named as CheckConsent names it (`queries[5].x`, `items[5].query.x` -> `query.x`). */
  function comparable(results: Array<{ decision?: { verdict: number; reason: number; subject?: string; decidingEvent?: string }; error?: { code: number; message: string } }>) {
    return results.map((r) => (r.error ? { code: r.error.code, message: r.error.message.replace(/\b(?:queries|items)\[\d+\]\.(?:query\.)?/g, 'query.') } : { verdict: r.decision!.verdict, reason: r.decision!.reason, subject: r.decision!.subject, decidingEvent: r.decision!.decidingEvent }));
  }

  async function batchAnswers(server: TestServer, qs: ConsentQuery[]) {
    const r = await call(server.consent, server.consent.checkConsentBatch, { parent: `tenants/${T}`, queries: qs, consistency: undefined });
    return comparable(r.results);
  }

  async function packedAnswers(server: TestServer, qs: ConsentQuery[]) {
    const stream = server.consent.streamCheckConsent(new Metadata());
    const answer = new Promise<StreamCheckConsentResponse>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    stream.write({ parent: `tenants/${T}`, query: undefined, correlationId: 'm1', consistency: undefined, items: qs.map((q, i) => ({ query: q, correlationId: `q${i}` })) });
    const r = await answer;
    stream.end();
    expect(r.answers.map((a) => a.correlationId)).to.deep.equal(qs.map((_, i) => `q${i}`));
    return comparable(r.answers.map((a) => a.result!));
  }

  it('a batch and a packed stream message answer every question as CheckConsent does alone, the hashes made on a worker', async () => {
    const qs = questions();
    const alone = comparable(await aloneAnswers(s, qs));
    // The mix is what the test is about: allowed, denied (opted out, stranger), refused (bad number, unknown purpose).
    const kinds = new Set(alone.map((a) => ('code' in a ? `error ${a.code}` : `reason ${a.reason}`)));
    expect(kinds.size, JSON.stringify([...kinds])).to.be.at.least(5);
    const workers = s.app.blindIndexWorkers!;
    const before = workers.stats.offloaded;
    expect(await batchAnswers(s, qs)).to.deep.equal(alone);
    expect(await packedAnswers(s, qs)).to.deep.equal(alone);
    expect(workers.running, 'started by the first bulk call').to.equal(1);
    expect(workers.stats.offloaded - before, 'both bulk calls hashed on the worker').to.equal(2);
  });

  it('answers the same with BLIND_INDEX_WORKERS=0, and after the worker has gone', async () => {
    const qs = questions();
    const expected = comparable(await aloneAnswers(s, qs));
    const own = await createTestDatabase(kind);
    const none = await startTestServer(own, { blindIndexWorkers: 0 });
    try {
      expect(none.app.blindIndexWorkers).to.equal(undefined);
      await seedTenant(none, T);
      // The same people on a second database under another key: the answers' ids differ, so
      // compare with that server's own single checks.
      for (let n = 0; n < 30; n++) await call(none.consent, none.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n) }));
      const alone = comparable(await aloneAnswers(none, qs));
      expect(await batchAnswers(none, qs)).to.deep.equal(alone);
      expect(await packedAnswers(none, qs)).to.deep.equal(alone);
    } finally {
      await none.stop();
      await own.drop();
    }
    // The first server's worker stopped (as if it had failed): the calling thread takes over.
    await s.app.blindIndexWorkers!.stop();
    expect(s.app.blindIndexWorkers!.running).to.equal(0);
    expect(await batchAnswers(s, qs)).to.deep.equal(expected);
    expect(await packedAnswers(s, qs)).to.deep.equal(expected);
  });

  it('an opt-out recorded while a bulk call waits for its hashes is honoured by that call (the cache is read after the wait)', async () => {
    // The real worker, answering 1.5 s late.
    const late = BLIND_INDEX_WORKER_SOURCE.replace('parentPort.postMessage({ id, digests: digests.buffer }, [digests.buffer]);', 'setTimeout(() => parentPort.postMessage({ id, digests: digests.buffer }, [digests.buffer]), 1500);');
    expect(late, 'the delay was put in').to.not.equal(BLIND_INDEX_WORKER_SOURCE);
    const own = await createTestDatabase(kind);
    const slow = await startTestServer(own, {}, { blindIndexWorkerSource: late });
    try {
      await seedTenant(slow, T);
      for (let n = 0; n < 70; n++) await call(slow.consent, slow.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n) }));
      const qs = Array.from({ length: 70 }, (_, n) => query(T, { subjectIdentifier: person(n) }));
      // Everyone opted in, and cached.
      const first = await call(slow.consent, slow.consent.checkConsentBatch, { parent: `tenants/${T}`, queries: qs, consistency: undefined });
      expect(first.results.every((r) => r.decision?.verdict === Verdict.VERDICT_ALLOW)).to.equal(true);
      let answered = false;
      const waiting = call(slow.consent, slow.consent.checkConsentBatch, { parent: `tenants/${T}`, queries: qs, consistency: undefined }).then((r) => {
        answered = true;
        return r;
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      await call(slow.consent, slow.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(5), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT }));
      expect(answered, 'the batch was still waiting for its hashes when the opt-out was answered').to.equal(false);
      const r = await waiting;
      expect(r.results[5].decision?.verdict).to.equal(Verdict.VERDICT_DENY);
      expect(r.results[5].decision?.reason).to.equal(DecisionReason.DECISION_REASON_OPTED_OUT);
      expect(r.results.filter((x) => x.decision?.verdict === Verdict.VERDICT_ALLOW)).to.have.length(69);
    } finally {
      await slow.stop();
      await own.drop();
    }
  });
});
