import { ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import { ConsentEventKind, DecisionReason, RecordConsentResponse, RecordInboundMessageRequest } from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { runConsentctl } from '../support/processes';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { call, errorDetails, startTestServer, TestServer } from '../support/test-server';

const evidence = { sourceIp: '203.0.113.5', userAgent: 'GroupCommit/1', pageUrl: '', inboundMessageId: '', freeText: '' };

/**
 * Group commit (docs/architecture.md, "The write path"): concurrent writes of a tenant share a
 * transaction, and within a batch every write still gets its own answer: a bad one fails alone,
 * a request_id twice gets the first write's event, a reused request_id with another body is
 * refused; everything acknowledged is there, readable and in the audit log.
 */
forEachDatabase('group commit', (db) => {
  let s: TestServer;
  const T = 'groupcommit';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());

  const outcome = (p: Promise<RecordConsentResponse>) =>
    p.then(
      (r) => ({ ok: r }),
      (err: ServiceError) => ({ error: err }),
    );

  it('concurrent writes of a tenant commit in shared transactions, each answered with its own event', async function () {
    this.timeout(60_000);
    const before = { ...s.app.services.writer.stats };
    const n = 120;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        i % 5 === 4
          ? call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: phone(`+49151800${String(i % 40).padStart(5, '0')}`), channel: Channel.CHANNEL_WHATSAPP, text: 'hi', messageId: `gc-m-${i}`, requestId: `gc-in-${i}` })).then((r) => r.inboundEvent!.name)
          : call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`+49151800${String(i % 40).padStart(5, '0')}`), evidence, requestId: `gc-${i}` })).then((r) => r.event!.name),
      ),
    );
    expect(new Set(results).size, 'one event each').to.equal(n);
    const after = s.app.services.writer.stats;
    const batches = after.batches - before.batches;
    console.log(`      ${n} concurrent writes in ${batches} batches (largest ${after.largestBatch})`);
    expect(after.writes - before.writes).to.equal(n);
    expect(batches, 'writes were committed together').to.be.below(n);
    const [rows] = (await s.app.dataSource.query('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ?', [T])) as Array<{ n: number }>;
    expect(Number(rows.n)).to.equal(n);
  });

  it('a bad write fails alone; its batch mates are recorded', async function () {
    this.timeout(60_000);
    // Recorded first, so that a retry of it with another body is a reused request_id.
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915180100001'), requestId: 'gc-taken' }));
    const erasedPerson = phone('+4915180100002');
    const erasedFirst = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: erasedPerson, requestId: 'gc-erased-1' }));
    await s.app.services.subjectEraser.erase(T, erasedFirst.event!.subject.split('/').pop()!);

    const good = (i: number) => outcome(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`+491518020${String(i).padStart(4, '0')}`), evidence, requestId: `gc-good-${i}` })));
    const attempts = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => good(i)),
      // No pending opt-in to confirm: FAILED_PRECONDITION.
      outcome(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915180100003'), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED, notice: '', requestId: 'gc-confirm' }))),
      // The request id of another request.
      outcome(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915180100004'), requestId: 'gc-taken' }))),
      // A retry of a write recorded before its person was erased.
      outcome(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: erasedPerson, requestId: 'gc-erased-1' }))),
      ...Array.from({ length: 10 }, (_, i) => good(10 + i)),
    ]);
    const reasons = attempts.map((a) => ('error' in a ? `${status[a.error.code]} ${errorDetails(a.error).reason}` : 'OK'));
    expect(reasons).to.deep.equal([
      ...Array(10).fill('OK'),
      'FAILED_PRECONDITION NO_PENDING_OPT_IN',
      'FAILED_PRECONDITION REQUEST_ID_REUSED',
      'FAILED_PRECONDITION SUBJECT_ERASED',
      ...Array(10).fill('OK'),
    ]);
    // The refused confirmation left no person behind (no identifier stored for a failed write).
    const state = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: phone('+4915180100003') }).catch((e: ServiceError) => e);
    expect((state as ServiceError).code).to.equal(status.NOT_FOUND);
    for (const i of [0, 19]) {
      const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(`+491518020${String(i).padStart(4, '0')}`) }) });
      expect(check.decision!.reason, `good write ${i}`).to.equal(DecisionReason.DECISION_REASON_OPTED_IN);
    }
  });

  it('the same request twice at once: both answered with the first write, recorded once; another body is refused', async function () {
    this.timeout(60_000);
    const request = consentRequest(T, { subjectIdentifier: phone('+4915180300001'), evidence, requestId: 'gc-twice' });
    const [a, b, c] = await Promise.all([
      outcome(call(s.consent, s.consent.recordConsent, request)),
      outcome(call(s.consent, s.consent.recordConsent, request)),
      outcome(call(s.consent, s.consent.recordConsent, { ...request, channel: Channel.CHANNEL_SMS })),
    ]);
    expect('ok' in a && 'ok' in b, 'both copies answered').to.equal(true);
    expect((a as { ok: RecordConsentResponse }).ok.event!.name).to.equal((b as { ok: RecordConsentResponse }).ok.event!.name);
    expect('error' in c && errorDetails(c.error).reason).to.equal('REQUEST_ID_REUSED');
    const [rows] = (await s.app.dataSource.query('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ? AND request_id = ?', [T, 'gc-twice'])) as Array<{ n: number }>;
    expect(Number(rows.n)).to.equal(1);
    // A later retry gets the same event, with its evidence.
    const retried = await call(s.consent, s.consent.recordConsent, request);
    expect(retried.event!.name).to.equal((a as { ok: RecordConsentResponse }).ok.event!.name);
    expect(retried.event!.evidence!.userAgent).to.equal('GroupCommit/1');
  });

  it('new people written at once in one batch: one subject per identifier, each with its own key', async function () {
    this.timeout(60_000);
    const person = phone('+4915180400001');
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, evidence, requestId: `gc-new-${i}`, kind: i % 2 === 0 ? ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN : ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, ...(i % 2 === 0 ? {} : { notice: '' }) }))),
    );
    const subjects = new Set(results.map((r) => r.event!.subject));
    expect(subjects.size, 'one person').to.equal(1);
    const events = await call(s.consent, s.consent.listConsentEvents, { parent: `tenants/${T}`, subjectIdentifier: person, purpose: '', channel: 0, startTime: undefined, endTime: undefined, pageSize: 50, pageToken: '' });
    expect(events.consentEvents).to.have.length(8);
    expect(events.consentEvents.every((e) => e.evidence!.userAgent === 'GroupCommit/1'), 'all readable under the one key').to.equal(true);
  });

  it('the audit log and the rows agree after batches: audit verify --records is clean', async function () {
    this.timeout(120_000);
    const verified = await runConsentctl(s.address, 'audit', 'verify', '--tenant', T, '--records');
    expect(verified.code, verified.err).to.equal(0);
  });
});
