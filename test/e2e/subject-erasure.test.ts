import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, DecisionReason, ListConsentEventsRequest, RecordInboundMessageRequest, Verdict } from '../../src/gen/consent/v1/consent';
import { createDataSource } from '../../src/storage/data-source';
import { forEachDatabase } from '../support/databases';
import { dropRestored, dumpDatabase } from '../support/dumps';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

const evidence = { sourceIp: '198.51.100.9', userAgent: 'EraseTest/2.0', pageUrl: 'https://x.example/', inboundMessageId: '', freeText: 'planted note' };
const person = (i: number) => phone(`+4915140${String(i).padStart(6, '0')}`);

/** The subject-shredding primitive (used by erasure requests), driven in-process against a real server. */
forEachDatabase('subject erasure by key destruction', (db) => {
  let s: TestServer;
  const T = 'erase';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());

  const subjectIdOf = async (i: number) => {
    const state = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: person(i) });
    return state.subject.split('/').pop()!;
  };

  it('erased: checks deny SUBJECT_ERASED, retried writes are refused, nothing is reachable by the identifier, others untouched', async function () {
    const written = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(1), evidence, requestId: 'erase-retry-1' }));
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(2), evidence }));
    const subjectId = await subjectIdOf(1);
    const listedBefore = (await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, pageSize: 1000 }))).consentEvents.length;
    const first = await s.app.services.subjectEraser.erase(T, subjectId);
    expect(first).to.include({ keyDestroyed: true, alreadyErased: false });
    const again = await s.app.services.subjectEraser.erase(T, subjectId);
    expect(again, 'idempotent').to.include({ keyDestroyed: false, alreadyErased: true });

    const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(1) }) });
    expect(check.decision!.verdict).to.equal(Verdict.VERDICT_DENY);
    expect(check.decision!.reason).to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
    expect((await expectGrpcError(call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: person(1) }), status.FAILED_PRECONDITION)).reason).to.equal('SUBJECT_ERASED');
    const [identifiers] = await s.app.dataSource.query('SELECT COUNT(*) AS n FROM subject_identifiers WHERE subject_id = ?', [subjectId]);
    expect(Number(identifiers.n), 'the identifier ciphertext is gone, a tombstone stays').to.equal(0);
    const [tombstone] = await s.app.dataSource.query('SELECT * FROM suppressions WHERE tenant_id = ?', [T]);
    expect(Object.values(tombstone as object), 'the tombstone names no subject').to.not.include(subjectId);
    const [state] = await s.app.dataSource.query('SELECT COUNT(*) AS n FROM consent_state WHERE subject_id = ?', [subjectId]);
    expect(Number(state.n), 'the derived state is gone').to.equal(0);
    // Nothing reachable by the identifier reveals the erased person's events, or how many.
    const history = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(1) }));
    expect(history.consentEvents).to.deep.equal([]);
    const all = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, pageSize: 1000 }));
    expect(all.consentEvents.map((e) => e.subject), 'not in the tenant-wide history either').to.not.include(written.event!.subject);
    expect(all.consentEvents).to.have.length(listedBefore - 1);
    // A retry of the write recorded before the erasure is refused for good, not UNAVAILABLE.
    const retried = await expectGrpcError(
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(1), evidence, requestId: 'erase-retry-1' })),
      status.FAILED_PRECONDITION,
    );
    expect(retried.reason).to.equal('SUBJECT_ERASED');
    const stored = await s.app.keyDataSource.query('SELECT COUNT(*) AS n FROM subject_keys WHERE subject_id = ?', [subjectId]);
    expect(Number(stored[0].n), 'the key is gone from the key store').to.equal(0);

    const other = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(2) }));
    expect(other.consentEvents[0].evidence!.userAgent).to.equal('EraseTest/2.0');
  });

  it('after an erasure a re-import is refused, while a new opt-in by the person starts a fresh subject', async function () {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(3), evidence }));
    const erasedId = await subjectIdOf(3);
    await s.app.services.subjectEraser.erase(T, erasedId);
    const imported = await expectGrpcError(
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(3), method: CollectionMethod.COLLECTION_METHOD_IMPORT })),
      status.FAILED_PRECONDITION,
    );
    expect(imported.reason).to.equal('SUBJECT_SUPPRESSED');
    const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(3) }) });
    expect(check.decision!.reason, 'still denied after the refused import').to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);

    const fresh = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(3), method: CollectionMethod.COLLECTION_METHOD_WEB_FORM, evidence }));
    expect(fresh.event!.subject).to.not.equal(`tenants/${T}/subjects/${erasedId}`);
    const after = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(3) }) });
    expect(after.decision!.verdict, 'the new consent counts').to.equal(Verdict.VERDICT_ALLOW);
    const keys = await s.app.keyDataSource.query('SELECT COUNT(*) AS n FROM subject_keys WHERE subject_id = ?', [erasedId]);
    expect(Number(keys[0].n), 'the erased key was not recreated').to.equal(0);
  });

  it("a consent dated before the erasure, sent again by any method (paper, web form, an inbound message), is SUBJECT_SUPPRESSED: it would bring the erased person's consent back; a withdrawal is still taken", async function () {
    const now = s.clock.now();
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(4), evidence, eventTime: new Date(now - 365 * 86_400_000) }));
    await s.app.services.subjectEraser.erase(T, await subjectIdOf(4));
    const yearAgo = new Date(now - 365 * 86_400_000);
    for (const [what, method, kind] of [
      ['paper opt-in', CollectionMethod.COLLECTION_METHOD_PAPER, ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN],
      ['web-form opt-in', CollectionMethod.COLLECTION_METHOD_WEB_FORM, ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN],
      ['pending opt-in', CollectionMethod.COLLECTION_METHOD_WEB_FORM, ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING],
    ] as const) {
      const refused = await expectGrpcError(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(4), method, kind, eventTime: yearAgo, evidence })), status.FAILED_PRECONDITION);
      expect(refused.reason, what).to.equal('SUBJECT_SUPPRESSED');
      expect(refused.message, what).to.not.include('+49');
    }
    const inbound = await expectGrpcError(
      call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(4), channel: Channel.CHANNEL_WHATSAPP, text: 'hello', eventTime: new Date(s.clock.now() - 60_000), requestId: 'erased-inbound-1' })),
      status.FAILED_PRECONDITION,
    );
    expect(inbound.reason, 'an inbound message dated before the erasure').to.equal('SUBJECT_SUPPRESSED');
    const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(4) }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
    expect(check.decision!.reason, 'still erased').to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
    // A STOP sent before the erasure and delivered after it withdraws: taken.
    const stop = await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(4), channel: Channel.CHANNEL_WHATSAPP, text: 'STOP', eventTime: new Date(s.clock.now() - 60_000), requestId: 'erased-inbound-stop' }));
    expect(stop.keywordEvent!.kind, 'a late STOP').to.equal(ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT);
    // A withdrawal dated before the erasure restricts only: taken.
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(4), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, eventTime: yearAgo }));
    // The person's own new consent, dated after the erasure, counts.
    s.clock.advance(1000);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(4), evidence }));
    const after = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(4) }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } });
    expect(after.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
  });

  it('a dump taken before the erasure, restored next to the current key store, decrypts nothing of the erased subject', async function () {
    this.timeout(60_000);
    for (const i of [10, 11]) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(i), evidence }));
    const erasedId = await subjectIdOf(10);
    const backup = await dumpDatabase(db().config, s.app.dataSource, 'before_erasure');
    await s.app.services.subjectEraser.erase(T, erasedId);

    const restored = await backup.restore();
    // The restored copy still holds the ciphertext of the erased subject, and nothing decrypts it:
    // its key is gone from the key store.
    const copy = await createDataSource(restored);
    await copy.initialize();
    const [row] = await copy.query('SELECT value_ciphertext FROM subject_identifiers WHERE subject_id = ?', [erasedId]);
    await copy.destroy();
    expect(row.value_ciphertext).to.match(/^ey/);
    const keysLeft = await s.app.keyDataSource.query('SELECT COUNT(*) AS n FROM subject_keys WHERE subject_id = ?', [erasedId]);
    expect(Number(keysLeft[0].n), 'no key to decrypt it with').to.equal(0);

    const fromBackup = await startTestServer({ ...db(), config: restored });
    try {
      // At start the service replayed the key store's erasure ledger onto the restored data.
      const check = await call(fromBackup.consent, fromBackup.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(10) }) });
      expect(check.decision!.reason, 'the restored backup still knows the person is erased').to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
      expect(fromBackup.logs()).to.include('erasures replayed onto the data');
      const after = await fromBackup.app.dataSource.query('SELECT value_ciphertext FROM subject_identifiers WHERE subject_id = ?', [erasedId]);
      expect(after, 'the identifier ciphertext is removed again').to.have.length(0);
      const history = await call(fromBackup.consent, fromBackup.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(10) }));
      expect(history.consentEvents, 'nothing reachable by the erased identifier').to.deep.equal([]);
      const kept = await call(fromBackup.consent, fromBackup.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(11) }));
      expect(kept.consentEvents[0].evidence!.freeText).to.equal('planted note');
      // The restored log predates the erasure; the replay writes its entry again (Art. 5(2)).
      const entries = await fromBackup.app.services.audit.entries(T, 0, 100_000, { types: ['SUBJECT_ERASED'], subjectId: erasedId });
      expect(entries.map((e) => JSON.parse(e.entryJson).principal), 'the erasure is in the restored log').to.deep.equal(['system:erasure-replay']);
    } finally {
      await fromBackup.stop();
      await dropRestored(restored);
    }
  });

  it('a write racing an erasure never recreates the key or stores data for the erased subject', async function () {
    this.timeout(60_000);
    for (let round = 0; round < 5; round++) {
      const i = 100 + round;
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(i), evidence }));
      const subjectId = await subjectIdOf(i);
      const writes = Array.from({ length: 4 }, () =>
        call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(i), evidence })).then(
          (r) => (r.event!.subject.endsWith(subjectId) ? 'written' : 'fresh subject'),
          (err: { code: number }) => err.code,
        ),
      );
      const [, ...outcomes] = await Promise.all([s.app.services.subjectEraser.erase(T, subjectId), ...writes]);
      // Each write either landed before the erasure, was refused because it waited for the
      // erasure's lock, or came after it and started a fresh subject.
      for (const outcome of outcomes) expect(['written', 'fresh subject', status.FAILED_PRECONDITION]).to.include(outcome);
      const keys = await s.app.keyDataSource.query('SELECT COUNT(*) AS n FROM subject_keys WHERE subject_id = ?', [subjectId]);
      expect(Number(keys[0].n), 'no key after the erasure').to.equal(0);
      const events = await s.app.dataSource.query('SELECT COUNT(*) AS n FROM consent_events WHERE subject_id = ?', [subjectId]);
      expect(Number(events[0].n), 'exactly the writes that won the race are stored').to.equal(1 + outcomes.filter((o) => o === 'written').length);
      // After the erasure nothing more reaches the erased subject: a new write starts a fresh one.
      const fresh = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(i), evidence }));
      expect(fresh.event!.subject).to.not.equal(`tenants/${T}/subjects/${subjectId}`);
      const stillOne = await s.app.dataSource.query('SELECT COUNT(*) AS n FROM consent_events WHERE subject_id = ?', [subjectId]);
      expect(Number(stillOne[0].n)).to.equal(1 + outcomes.filter((o) => o === 'written').length);
    }
  });
});
