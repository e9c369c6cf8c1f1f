import path from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ConsentEventKind, ConsentServiceClient, DecisionReason, Verdict } from '../../src/gen/consent/v1/consent';
import { countStatements } from '../support/statement-count';
import { createTestDatabase, forEachDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { ServerProcess, startServerProcess } from '../support/server-process';
import { waitUntil } from '../support/wait';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';
import { SqlDecisionStateRepository } from '../../src/storage/repositories/decision-state-repository';

/**
 * The decision cache (docs/architecture.md, "The decision cache"): what a check reads, read your
 * writes, consistency tokens and the staleness bound across two processes, the cache's bound.
 */
forEachDatabase('decision cache', (db, kind) => {
  let s: TestServer;
  const T = 'cache';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());

  const person = (n: number) => phone(`+49151555${String(n).padStart(5, '0')}`);
  const checkOn = (server: TestServer, n: number, consistency?: object) =>
    call(server.consent, server.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(n) }), consistency } as never) as Promise<{ decision: { verdict: Verdict; reason: DecisionReason } }>;
  const check = (n: number, consistency?: object) => checkOn(s, n, consistency);

  it('a miss reads the identifier, its person, scopes and windows in one statement; a hit reads nothing', async function () {
    // Its own server with B at its largest (60 s), so that every hit below is of a cache proven
    // fresh whatever the machine's load: with B = 1 s, a catch-up of the audit logs delayed past B
    // makes a check read the database, as it must (the test of B below), and a hit would count one.
    const own = await createTestDatabase(kind);
    const fresh = await startTestServer(own, { decisionCache: { ...s.app.config.decisionCache, stalenessMs: 60_000 } });
    try {
      await seedTenant(fresh, T);
      await call(fresh.consent, fresh.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(1) }));
      await call(fresh.consent, fresh.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(2) }));
      await checkOn(fresh, 1); // tenant, purpose and keys cached
      const miss = await countStatements(fresh, () => checkOn(fresh, 2));
      expect(miss.result.decision.verdict).to.equal(Verdict.VERDICT_ALLOW);
      expect(miss.count, `statements of a miss: ${JSON.stringify(miss.statements)}`).to.equal(1);
      const hit = await countStatements(fresh, () => checkOn(fresh, 2));
      expect(hit.result.decision.verdict).to.equal(Verdict.VERDICT_ALLOW);
      expect(hit.count, `statements of a hit: ${JSON.stringify(hit.statements)}`).to.equal(0);
      const unknown = await countStatements(fresh, () => checkOn(fresh, 3));
      expect(unknown.result.decision.reason).to.equal(DecisionReason.DECISION_REASON_UNKNOWN_SUBJECT);
      expect(unknown.count, `statements of an unknown identifier's miss: ${JSON.stringify(unknown.statements)}`).to.equal(1);
      const unknownHit = await countStatements(fresh, () => checkOn(fresh, 3));
      expect(unknownHit.count, `statements of an unknown identifier's hit: ${JSON.stringify(unknownHit.statements)}`).to.equal(0);
    } finally {
      await fresh.stop();
      await own.drop();
    }
  });

  it('a batch of misses of both identifier kinds, of several shapes, is read in one statement each and answered as stored', async function () {
    const optIn = (id: ReturnType<typeof phone>) => call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: id }));
    const optOut = (id: ReturnType<typeof phone>) => call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: id, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
    const batch = async (ids: Array<ReturnType<typeof phone>>) => {
      const asked = await countStatements(s, () => call(s.consent, s.consent.checkConsentBatch, { parent: `tenants/${T}`, queries: ids.map((id) => query(T, { subjectIdentifier: id })) }));
      expect(asked.count, `statements of one batch of misses: ${JSON.stringify(asked.statements)}`).to.equal(1);
      return asked.result.results.map((r) => (r.decision!.verdict === Verdict.VERDICT_ALLOW ? 'ALLOW' : DecisionReason[r.decision!.reason]));
    };
    await optIn(person(70));
    await optIn(email('shape-b@example.com'));
    await optIn(email('shape-c@example.com'));
    await optOut(email('shape-d@example.com'));
    await optIn(person(71));
    await optIn(email('shape-g@example.com'));
    await optIn(person(72));
    await optOut(person(72));
    s.clock.advance(1000);
    // Phones and e-mails mixed, known and unknown, an identifier twice.
    expect(await batch([person(70), email('shape-b@example.com'), person(73), email('shape-unknown@example.com'), email('shape-b@example.com'), person(70)])).to.deep.equal([
      'ALLOW',
      'ALLOW',
      'DECISION_REASON_UNKNOWN_SUBJECT',
      'DECISION_REASON_UNKNOWN_SUBJECT',
      'ALLOW',
      'ALLOW',
    ]);
    // Another shape (e-mails first), then the same shape with other people: its statement is reused.
    expect(await batch([email('shape-c@example.com'), email('shape-d@example.com'), person(71)])).to.deep.equal(['ALLOW', 'DECISION_REASON_OPTED_OUT', 'ALLOW']);
    expect(await batch([email('shape-f@example.com'), email('shape-g@example.com'), person(72)])).to.deep.equal(['DECISION_REASON_UNKNOWN_SUBJECT', 'ALLOW', 'DECISION_REASON_OPTED_OUT']);
  });

  it('reads its own writes at once: opt-in, opt-out, a new person, an erasure', async function () {
    expect((await check(10)).decision.reason).to.equal(DecisionReason.DECISION_REASON_UNKNOWN_SUBJECT); // cached as nobody
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(10) }));
    expect((await check(10)).decision.verdict).to.equal(Verdict.VERDICT_ALLOW);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(10), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
    expect((await check(10)).decision.verdict).to.equal(Verdict.VERDICT_DENY);
    s.clock.advance(1000); // an opt-in at the same moment as the opt-out does not override it
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(10) }));
    expect((await check(10)).decision.verdict).to.equal(Verdict.VERDICT_ALLOW);
    const state = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: person(10) });
    await s.app.services.subjectEraser.erase(T, state.subject.split('/').pop()!);
    const erased = await check(10);
    expect(erased.decision.reason, JSON.stringify(erased.decision)).to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
  });

  it('writes return consistency tokens; a check takes one, or asks to be fully consistent; bad tokens are INVALID_ARGUMENT', async function () {
    const written = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(20) }));
    expect(written.consistencyToken).to.match(/^ct2\./);
    expect((await check(20, { requirement: { $case: 'atLeastAsFresh', value: written.consistencyToken } })).decision.verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect((await check(20, { requirement: { $case: 'fullyConsistent', value: true } })).decision.verdict).to.equal(Verdict.VERDICT_ALLOW);
    const full = await countStatements(s, () => check(20, { requirement: { $case: 'fullyConsistent', value: true } }));
    expect(full.count, 'a fully consistent check reads the database').to.be.at.least(1);
    const inbound = await call(s.consent, s.consent.recordInboundMessage, {
      parent: `tenants/${T}`, subjectIdentifier: person(20), channel: 1, eventTime: undefined, text: 'hello', messageId: 'm-20', requestId: 'in-20',
    });
    expect(inbound.consistencyToken > written.consistencyToken || inbound.consistencyToken !== written.consistencyToken).to.equal(true);
    // Found by a probe: a token cut short ("t:206" read as "t:20") was accepted and answered from stale state.
    const cut = written.consistencyToken.slice(0, -2);
    const altered = written.consistencyToken.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    for (const bad of ['garbage', 'ct1.', 'ct2.', cut, altered, `${written.consistencyToken}=`, `ct1.${Buffer.from('other:5').toString('base64url')}`, `ct1.${Buffer.from(`${T}:x`).toString('base64url')}`, `ct1.${Buffer.from(`${T}:007`).toString('base64url')}`]) {
      const err = await expectGrpcError(check(20, { requirement: { $case: 'atLeastAsFresh', value: bad } }), status.INVALID_ARGUMENT);
      expect(err.fields).to.deep.equal(['consistency.at_least_as_fresh']);
    }
    const batch = (consistency: object) => call(s.consent, s.consent.checkConsentBatch, { parent: `tenants/${T}`, queries: [query(T, { subjectIdentifier: person(20) })], consistency } as never) as Promise<{ results: Array<{ decision?: { verdict: Verdict } }> }>;
    expect((await batch({ requirement: { $case: 'atLeastAsFresh', value: inbound.consistencyToken } })).results[0].decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
    const badBatch = await expectGrpcError(batch({ requirement: { $case: 'atLeastAsFresh', value: 'garbage' } }), status.INVALID_ARGUMENT);
    expect(badBatch.fields, 'a batch shares one consistency: the call is refused').to.deep.equal(['consistency.at_least_as_fresh']);
    // A token from beyond the log (forged, or from a database this one has not caught up with): never a stale answer.
    const ahead = `ct1.${Buffer.from(`${T}:99999999`).toString('base64url')}`;
    const err = await expectGrpcError(check(20, { requirement: { $case: 'atLeastAsFresh', value: ahead } }), status.UNAVAILABLE);
    expect(err.reason).to.equal('BEHIND_CONSISTENCY_TOKEN');
  });

  it('when the audit logs cannot be followed but rows can be read, checks read the database once B has passed, and the cache returns after', async function () {
    const bound = s.app.config.decisionCache.stalenessMs;
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(40) }));
    expect((await check(40)).decision.verdict).to.equal(Verdict.VERDICT_ALLOW);
    const repo = SqlDecisionStateRepository.prototype;
    const { heads, changes } = repo;
    const writer = s.app.services.writer;
    const observer = writer.observer;
    repo.heads = () => Promise.reject(new Error('the change sequence cannot be read'));
    repo.changes = repo.heads as never;
    // From here no catch-up succeeds: the last one that did started before this moment.
    const followedUntil = performance.now();
    // A change this process's cache is not told about (as if recorded by another replica).
    writer.observer = undefined;
    try {
      s.clock.advance(1000);
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(40), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
      const since = performance.now();
      // Within B the cache may still answer ALLOW; once B has passed every check reads the database.
      await waitUntil(async () => (await check(40)).decision.verdict === Verdict.VERDICT_DENY, 5_000);
      expect(performance.now() - since, "answered from state older than B").to.be.at.most(bound + 500);
      // DENY may come before B has passed: a catch-up that applied the opt-in of person 40 after
      // the ALLOW above was stored drops that entry, and a miss within B reads the opt-out and keeps
      // it. Only once B has passed since the last catch-up must every check read the database.
      const lapse = followedUntil + bound + 20 - performance.now();
      if (lapse > 0) await new Promise((resolve) => setTimeout(resolve, lapse));
      const reads = await countStatements(s, () => check(40));
      expect(reads.result.decision.verdict).to.equal(Verdict.VERDICT_DENY);
      expect(reads.count, `a check reads the database while the cache cannot follow: ${JSON.stringify(reads.statements)}`).to.equal(1);
    } finally {
      repo.heads = heads;
      repo.changes = changes;
      writer.observer = observer;
    }
    await s.app.services.invalidator!.catchUp();
    await check(40);
    const cached = await countStatements(s, () => check(40));
    expect(cached.result.decision.verdict).to.equal(Verdict.VERDICT_DENY);
    expect(cached.count, 'answered from the cache again').to.equal(0);
  });

  it('stays within its bound of entries and answers correctly beyond it', async function () {
    const own = await createTestDatabase(kind);
    const small = await startTestServer(own, { decisionCache: { entries: 5, stalenessMs: 1000 } });
    await seedTenant(small, T);
    try {
      for (let n = 30; n < 40; n++) if (n % 2 === 0) await call(small.consent, small.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n) }));
      for (let round = 0; round < 2; round++) {
        for (let n = 30; n < 40; n++) {
          const answer = await call(small.consent, small.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(n) }) });
          expect(answer.decision!.verdict, `person ${n}`).to.equal(n % 2 === 0 ? Verdict.VERDICT_ALLOW : Verdict.VERDICT_DENY);
        }
      }
      expect(small.app.services.decisionCache!.size).to.be.at.most(5);
      expect(small.app.services.decisionCache!.stats.evictions).to.be.at.least(10);
    } finally {
      await small.stop();
      await own.drop();
    }
  });
});

/** Two processes on one MariaDB: what one records, the other honours within the staleness bound. */
if (testDatabaseKinds().includes('mariadb')) describe('decision cache across two server processes on one MariaDB', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let a: TestServer;
  let b: ServerProcess;
  let bConsent: ConsentServiceClient;
  const T = 'cache2';
  const BOUND_MS = 1000;
  const person = (n: number) => phone(`+49151666${String(n).padStart(5, '0')}`);
  const checkOnB = (n: number, consistency?: object) =>
    call(bConsent, bConsent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(n) }), consistency } as never) as Promise<{ decision: { verdict: Verdict; reason: DecisionReason } }>;

  before(async function () {
    db = await createTestDatabase('mariadb');
    a = await startTestServer(db);
    await seedTenant(a, T);
    // The second process shares the first one's database and development root key.
    b = await startServerProcess(db, { env: { LOG_LEVEL: 'warn', ROOT_KEYS_FILE: path.join(db.dataDir, 'root-keys.dev.json'), DECISION_CACHE_STALENESS_MS: String(BOUND_MS) } });
    bConsent = new ConsentServiceClient(b.address, credentials.createInsecure());
    await waitUntil(() => checkOnB(0).then(() => true, () => false), 30_000);
  });
  after(async function () {
    bConsent?.close();
    await b?.stop();
    await a?.stop();
    await db?.drop();
  });

  it('an opt-out through one process is honoured by the other within B (measured 20 times, worst case reported)', async function () {
    const delays: number[] = [];
    for (let n = 1; n <= 20; n++) {
      await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n) }));
      // B holds the opt-in (its first check after the write may still see nobody, within B).
      await waitUntil(async () => (await checkOnB(n)).decision.verdict === Verdict.VERDICT_ALLOW, 5_000);
      await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
      const acknowledged = performance.now();
      delays.push(await waitUntil(async () => (await checkOnB(n)).decision.verdict === Verdict.VERDICT_DENY, 5_000, acknowledged));
    }
    const worst = Math.max(...delays);
    console.log(`      opt-out honoured by the other process after ${Math.round(worst)} ms at worst (median ${Math.round(delays.sort((x, y) => x - y)[10])} ms, B = ${BOUND_MS} ms)`);
    expect(worst).to.be.at.most(BOUND_MS);
  });

  it('an erasure through one process is honoured by the other within B', async function () {
    await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(50) }));
    await waitUntil(async () => (await checkOnB(50)).decision.verdict === Verdict.VERDICT_ALLOW, 5_000);
    const state = await call(a.consent, a.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: person(50) });
    await a.app.services.subjectEraser.erase(T, state.subject.split('/').pop()!);
    const acknowledged = performance.now();
    const delay = await waitUntil(async () => (await checkOnB(50)).decision.reason === DecisionReason.DECISION_REASON_SUBJECT_ERASED, 5_000, acknowledged);
    console.log(`      erasure honoured by the other process after ${Math.round(delay)} ms (B = ${BOUND_MS} ms)`);
    expect(delay).to.be.at.most(BOUND_MS);
  });

  it("a write's consistency token makes a check on the other process at least that fresh, at once", async function () {
    for (let n = 60; n < 70; n++) {
      await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n) }));
      await waitUntil(async () => (await checkOnB(n)).decision.verdict === Verdict.VERDICT_ALLOW, 5_000);
      const out = await call(a.consent, a.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(n), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
      const answer = await checkOnB(n, { requirement: { $case: 'atLeastAsFresh', value: out.consistencyToken } });
      expect(answer.decision.verdict, `person ${n}`).to.equal(Verdict.VERDICT_DENY);
    }
  });
});
