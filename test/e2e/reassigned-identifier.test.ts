import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, PurposeCategory, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, DecisionReason, ListConsentEventsRequest, ReportReassignedIdentifierRequest, Verdict } from '../../src/gen/consent/v1/consent';
import { CreateRequestRequest, ReceivedVia, RequestKind } from '../../src/gen/consent/v1/subject_rights';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, T0, TestServer } from '../support/test-server';

const MINUTE = 60_000;

forEachDatabase('Reassigned identifiers (ReportReassignedIdentifier)', (db) => {
  let s: TestServer;
  const T = 'reassigning';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => {
    await s?.stop();
  });
  beforeEach(() => s.clock.set(T0));

  let counter = 0;
  const report = (who: SubjectIdentifier | undefined, over: Partial<ReportReassignedIdentifierRequest> = {}) =>
    call(s.consent, s.consent.reportReassignedIdentifier, ReportReassignedIdentifierRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: who, source: 'CARRIER_NOTICE', requestId: `rr-${++counter}`, ...over }));
  const check = (who: SubjectIdentifier, purpose: string | null = 'newsletter', channel = Channel.CHANNEL_WHATSAPP, at?: Date) =>
    call(s.consent, s.consent.checkConsent, {
      parent: `tenants/${T}`,
      query: purpose ? query(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/${purpose}`, channel, at }) : query(T, { subjectIdentifier: who, purpose: '', category: PurposeCategory.PURPOSE_CATEGORY_SERVICE, channel, at }),
    } as never).then((r) => (r as unknown as { decision: { verdict: Verdict; reason: DecisionReason } }).decision);
  const said = async (who: SubjectIdentifier, purpose: string | null = 'newsletter') => {
    const d = await check(who, purpose);
    return `${Verdict[d.verdict]} ${DecisionReason[d.reason]}`;
  };
  const optIn = (who: SubjectIdentifier, purpose = 'newsletter', eventTime?: Date, kind = ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN, method = CollectionMethod.COLLECTION_METHOD_WEB_FORM) =>
    call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/${purpose}`, notice: `tenants/${T}/purposes/${purpose}/notices/1`, eventTime, kind, method }));
  const inbound = (who: SubjectIdentifier) =>
    call(s.consent, s.consent.recordInboundMessage, { parent: `tenants/${T}`, subjectIdentifier: who, channel: Channel.CHANNEL_WHATSAPP, text: 'hello', eventTime: undefined, messageId: '', requestId: `in-${++counter}` } as never);

  it('ends the old owner\'s consents and windows at the reported time; the new owner is DENY IDENTIFIER_REASSIGNED until they opt in', async function () {
    const number = phone('+4915112360001');
    const mail = email('old-owner@example.com');
    // The old owner: a phone number and an e-mail address, consents and an open service window.
    const first = await optIn(number, 'newsletter');
    await optIn(mail, 'orders');
    await inbound(number);
    const oldSubject = first.event!.name.split('/consentEvents/')[0];
    // Both identifiers name the old owner only if recorded together; here each is its own person.
    expect([await said(number), await said(number, null)]).to.deep.equal(['VERDICT_ALLOW DECISION_REASON_OPTED_IN', 'VERDICT_ALLOW DECISION_REASON_SERVICE_WINDOW_OPEN']);

    s.clock.advance(10 * MINUTE);
    const reassignTime = new Date(T0 + 5 * MINUTE);
    const done = await report(number, { reassignTime, source: 'REASSIGNED_NUMBERS_DB' });
    expect(done.subject).to.match(/^tenants\/reassigning\/subjects\/[0-9a-f]{32}$/);
    expect(done.subject).to.not.equal(oldSubject);
    expect(done.consistencyToken).to.not.equal('');

    // At once in this process, for every purpose and the service window.
    for (const purpose of ['newsletter', 'orders', 'otp', null]) {
      const d = await check(number, purpose);
      expect([Verdict[d.verdict], DecisionReason[d.reason]], String(purpose)).to.deep.equal(['VERDICT_DENY', 'DECISION_REASON_IDENTIFIER_REASSIGNED']);
    }
    const fresh = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: number }), consistency: { atLeastAsFresh: done.consistencyToken } } as never);
    expect((fresh as { decision: { reason: DecisionReason } }).decision.reason).to.equal(DecisionReason.DECISION_REASON_IDENTIFIER_REASSIGNED);
    // The other person's identifier is untouched.
    expect(await said(mail, 'orders')).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');

    // The old owner's history shows why their consent ended: an OPT_OUT at the reported time
    // (recorded now, by the reporter); the fresh subject has no history at all.
    const records = (await call(s.audit, s.audit.listConsentRecords, { parent: `tenants/${T}`, pageSize: 500, pageToken: '' })).records;
    const ofOld = records.filter((r) => r.name.startsWith(`${oldSubject}/`));
    expect(ofOld.map((r) => ConsentEventKind[r.kind])).to.deep.equal(['CONSENT_EVENT_KIND_OPT_IN', 'CONSENT_EVENT_KIND_INBOUND_MESSAGE', 'CONSENT_EVENT_KIND_OPT_OUT']);
    expect([ofOld[2].purpose, ofOld[2].eventTime!.getTime(), ofOld[2].recordTime!.getTime()]).to.deep.equal([`tenants/${T}/purposes/newsletter`, reassignTime.getTime(), T0 + 10 * MINUTE]);
    expect(records.filter((r) => r.name.startsWith(`${done.subject}/`))).to.deep.equal([]);

    // A late import of the old owner's opt-in (earlier event time) never allows.
    s.clock.advance(MINUTE);
    await optIn(number, 'newsletter', new Date(T0 + MINUTE), ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN, CollectionMethod.COLLECTION_METHOD_IMPORT);
    expect(await said(number)).to.equal('VERDICT_DENY DECISION_REASON_IDENTIFIER_REASSIGNED');
    // The new owner opts in: allowed for that purpose; other purposes follow the normal rules.
    await optIn(number, 'newsletter');
    expect(await said(number)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(await said(number, 'orders')).to.equal('VERDICT_DENY DECISION_REASON_NO_CONSENT');
    expect(await said(number, null)).to.equal('VERDICT_DENY DECISION_REASON_SERVICE_WINDOW_CLOSED');
    await inbound(number);
    expect(await said(number, null)).to.equal('VERDICT_ALLOW DECISION_REASON_SERVICE_WINDOW_OPEN');

    // Audit: an entry for each subject, naming neither the other.
    const entries = await auditEntries(s, T, ['IDENTIFIER_REASSIGNED']);
    expect(entries.map((e) => [e.subject, e.principal])).to.deep.equal([
      [oldSubject.split('/').pop(), 'dev-admin'],
      [done.subject.split('/').pop(), 'dev-admin'],
    ]);
    // ExplainDecision names the reason and shows the fresh subject's reassignment entry, proven.
    s.clock.advance(MINUTE);
    const stranger = phone('+4915112360009');
    await report(stranger);
    const explained = await call(s.audit, s.audit.explainDecision, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: stranger }) } as never);
    const ex = explained as unknown as { decision: { reason: DecisionReason }; entries: Array<{ entry?: { entryJson: string }; inclusionProof: string[] }> };
    expect(ex.decision.reason).to.equal(DecisionReason.DECISION_REASON_IDENTIFIER_REASSIGNED);
    expect(ex.entries.map((e) => (JSON.parse(e.entry!.entryJson) as { type: string }).type)).to.deep.equal(['IDENTIFIER_REASSIGNED']);
    expect(s.logs(), 'no identifier in the logs').to.not.include('4915112360001');
    expect(s.logs()).to.not.include('old-owner@');
  });

  // Found by an adversarial probe: the new owner's STOP, written before the carrier's late report,
  // stayed with the old owner, and the new owner's next message opened a window that allowed.
  it('a late report carries the withdrawals dated after the reassignment to the new owner: their STOP counts', async function () {
    const number = phone('+4915112360021');
    const H = 3_600_000;
    s.clock.set(T0 + 72 * H);
    await optIn(number, 'newsletter', new Date(T0));
    await optIn(number, 'orders', new Date(T0));
    // Before the reassignment: the old owner withdrew one purpose (stays theirs).
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: number, purpose: `tenants/${T}/purposes/orders`, notice: '', kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, eventTime: new Date(T0 + 12 * H) }));
    // After it (48 h ago), but before anyone knew: STOP by SMS from the number, 24 h ago.
    await call(s.consent, s.consent.recordInboundMessage, { parent: `tenants/${T}`, subjectIdentifier: number, channel: Channel.CHANNEL_SMS, text: 'STOP', eventTime: new Date(T0 + 48 * H), messageId: 'sms-stop-1', requestId: `in-${++counter}` } as never);
    const done = await report(number, { reassignTime: new Date(T0 + 24 * H) });
    const fresh = done.subject;
    // The new owner writes: the service window opens, but their STOP on SMS stands.
    await call(s.consent, s.consent.recordInboundMessage, { parent: `tenants/${T}`, subjectIdentifier: number, channel: Channel.CHANNEL_SMS, text: 'where is my parcel?', eventTime: undefined, messageId: '', requestId: `in-${++counter}` } as never);
    for (const purpose of [null, 'orders']) {
      const d = await check(number, purpose, Channel.CHANNEL_SMS);
      expect(`${Verdict[d.verdict]} ${DecisionReason[d.reason]}`, String(purpose)).to.equal('VERDICT_DENY DECISION_REASON_OPTED_OUT');
    }
    // Marketing on WhatsApp: the new owner has written (rule 1c is passed) but never consented.
    expect(await said(number)).to.equal('VERDICT_DENY DECISION_REASON_NO_CONSENT');
    // The fresh subject's history: the carried STOP (method KEYWORD, no evidence), not the old owner's earlier opt-out.
    const history = (await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: number, pageSize: 500 }))).consentEvents;
    expect(history.every((e) => e.name.startsWith(`${fresh}/`)), 'the number shows the fresh subject only').to.equal(true);
    const carried = history.filter((r) => r.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT);
    expect(carried.map((r) => [r.purpose, r.channel, CollectionMethod[r.method], r.eventTime!.getTime()])).to.deep.equal([
      [`tenants/${T}/purposes/-`, Channel.CHANNEL_SMS, 'COLLECTION_METHOD_KEYWORD', T0 + 48 * H],
    ]);
    expect(carried[0].requestId).to.match(/^reassigned:[0-9a-f]{32}#carried:[0-9a-f]{32}$/);
    expect(carried[0].evidence?.inboundMessageId ?? '', 'the evidence stays the old owner\'s').to.equal('');
  });

  it('a reassignment is answered as it was by a retry; another body under the same request_id is refused', async function () {
    const number = phone('+4915112360002');
    await optIn(number);
    const body = { requestId: 'same-report', reassignTime: new Date(T0 - MINUTE) };
    const a = await report(number, body);
    const b = await report(number, body);
    expect(b.subject).to.equal(a.subject);
    expect((await expectGrpcError(report(number, { ...body, source: 'NEW_OWNER' }), status.FAILED_PRECONDITION)).reason).to.equal('REQUEST_ID_REUSED');
    // Reported again (a new request): yet another fresh subject, the first new owner's consents end.
    await optIn(number);
    expect(await said(number)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    s.clock.advance(MINUTE);
    const c = await report(number);
    expect(c.subject).to.not.equal(a.subject);
    expect(await said(number)).to.equal('VERDICT_DENY DECISION_REASON_IDENTIFIER_REASSIGNED');
  });

  it('an identifier nobody holds becomes a fresh subject that is denied until its owner opts in', async function () {
    const number = phone('+4915112360003');
    expect(await said(number)).to.equal('VERDICT_DENY DECISION_REASON_UNKNOWN_SUBJECT');
    const done = await report(number);
    expect(await said(number)).to.equal('VERDICT_DENY DECISION_REASON_IDENTIFIER_REASSIGNED');
    s.clock.advance(MINUTE);
    const recorded = await optIn(number);
    expect(recorded.event!.name.startsWith(`${done.subject}/`), 'recorded for the fresh subject').to.equal(true);
    expect((await check(number)).verdict).to.equal(Verdict.VERDICT_ALLOW);
  });

  it('consent writes racing a reassignment never land on the person the number no longer names', async function () {
    const number = phone('+4915112360020');
    await optIn(number);
    for (let round = 0; round < 8; round++) {
      s.clock.advance(MINUTE);
      const writes = Array.from({ length: 24 }, (_, i) => optIn(number, i % 2 ? 'newsletter' : 'orders'));
      await Promise.all([...writes.slice(0, 12), report(number), ...writes.slice(12)]);
    }
    const entries = (await call(s.audit, s.audit.listAuditEntries, { parent: `tenants/${T}`, startIndex: 0, pageSize: 1000, subjectIdentifier: undefined, subject: '', purpose: '', entryTypes: ['IDENTIFIER_REASSIGNED', 'CONSENT_EVENT_OPT_IN'], principal: '', startTime: undefined, endTime: undefined })).entries.map(
      (e) => JSON.parse(e.entryJson) as { seq: number; type: string; subject: string; ref: string },
    );
    // Each report's first entry names the subject the number moved off; nothing is recorded for it after.
    const movedOff = new Map<string, number>();
    const seenRefs = new Set<string>();
    for (const e of entries) {
      if (e.type !== 'IDENTIFIER_REASSIGNED' || seenRefs.has(e.ref)) continue;
      seenRefs.add(e.ref);
      if (entries.some((f) => f.ref === e.ref && f.seq > e.seq)) movedOff.set(e.subject, e.seq);
    }
    expect(movedOff.size).to.be.greaterThan(0);
    const late = entries.filter((e) => e.type === 'CONSENT_EVENT_OPT_IN' && movedOff.has(e.subject) && e.seq > movedOff.get(e.subject)!);
    expect(late, 'opt-ins recorded for a person after the number moved off them').to.deep.equal([]);
  });

  it('every error path has a precise status, and bad input changes nothing', async function () {
    const number = phone('+4915112360004');
    await optIn(number);
    const fields = async (over: Partial<ReportReassignedIdentifierRequest>, who: SubjectIdentifier | null = number) => (await expectGrpcError(report(who ?? undefined, over), status.INVALID_ARGUMENT)).fields;
    expect(await fields({}, null)).to.deep.equal(['subject_identifier']);
    expect(await fields({}, phone('12'))).to.deep.equal(['subject_identifier.phone_number']);
    expect(await fields({}, { kind: { $case: 'customerId', value: 'c-1' }, defaultRegion: '' })).to.deep.equal(['subject_identifier']);
    expect(await fields({ source: '' })).to.deep.equal(['source']);
    expect(await fields({ source: 'carrier notice!' })).to.deep.equal(['source']);
    expect(await fields({ source: 'x'.repeat(65) })).to.deep.equal(['source']);
    expect(await fields({ requestId: '' })).to.deep.equal(['request_id']);
    expect(await fields({ reassignTime: new Date(T0 + 10 * MINUTE) })).to.deep.equal(['reassign_time']);
    expect(await fields({ reassignTime: new Date(Date.UTC(1, 0, 1)) }), 'before 2000').to.deep.equal(['reassign_time']);
    expect(await fields({ parent: 'tenant/x' })).to.deep.equal(['parent']);
    expect((await expectGrpcError(report(number, { parent: 'tenants/nobody' }), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
    // An erased person's identifier: every check denies it already; nothing is recorded.
    const gone = phone('+4915112360005');
    await optIn(gone);
    const { request } = await call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: gone, receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: 'erase-gone' }));
    await call(s.rights, s.rights.verifyIdentity, { name: request!.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-anna', identifierPositions: [] });
    await call(s.rights, s.rights.eraseSubject, { name: request!.name });
    const erased = await expectGrpcError(report(gone), status.FAILED_PRECONDITION);
    expect(erased.reason).to.equal('IDENTIFIER_ERASED');
    expect(erased.message).to.not.include('4915112360005');
    expect(await said(gone)).to.equal('VERDICT_DENY DECISION_REASON_SUBJECT_ERASED');
    expect(await said(number), 'nothing changed').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(s.logs()).to.not.include('4915112360004');
  });
});

async function auditEntries(s: TestServer, tenantId: string, types: string[]): Promise<Array<{ type: string; principal: string; subject: string; ref: string }>> {
  const r = await call(s.audit, s.audit.listAuditEntries, { parent: `tenants/${tenantId}`, startIndex: 0, pageSize: 1000, subjectIdentifier: undefined, subject: '', purpose: '', entryTypes: types, principal: '', startTime: undefined, endTime: undefined });
  return r.entries.map((e) => JSON.parse(e.entryJson) as { type: string; principal: string; subject: string; ref: string });
}
