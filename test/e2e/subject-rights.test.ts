import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  CreateRequestRequest,
  DataSubjectRequest,
  LegalHoldGround,
  ReceivedVia,
  RequestKind,
  RequestNoticeTopic,
  RequestState,
  SubjectRightsServiceClient,
} from '../../src/gen/consent/v1/subject_rights';
import { OperationsRepository } from '../../src/storage/repositories/operations-repository';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, T0, TestServer } from '../support/test-server';

const DAY = 24 * 3600_000;

forEachDatabase('SubjectRightsService', (db) => {
  let s: TestServer;
  let rights: SubjectRightsServiceClient;
  const T = 'dpo';
  before(async function () {
    s = await startTestServer(db());
    rights = new SubjectRightsServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('known@example.com') }));
  });
  after(async () => {
    rights?.close();
    await s?.stop();
  });

  let counter = 0;
  const create = (overrides: Partial<CreateRequestRequest> = {}) =>
    call(
      rights,
      rights.createRequest,
      CreateRequestRequest.fromPartial({
        parent: `tenants/${T}`,
        kind: RequestKind.REQUEST_KIND_ACCESS,
        subjectIdentifier: email('known@example.com'),
        receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL,
        requestId: `dsr-${++counter}`,
        ...overrides,
      }),
    ).then((r) => r.request!);

  it('registers a request with its one-month deadline and who did it; a retry returns it', async function () {
    s.clock.set(Date.UTC(2026, 0, 31, 10));
    const request = await create({ requestId: 'dsr-fixed' });
    expect(request.name).to.match(/^tenants\/dpo\/requests\/[0-9a-f]{32}$/);
    expect(request.state).to.equal(RequestState.REQUEST_STATE_RECEIVED);
    expect(request.subject).to.match(/^tenants\/dpo\/subjects\/[0-9a-f]{32}$/);
    expect(request.dueTime!.toISOString(), '31 January -> end of 28 February').to.equal('2026-03-01T00:00:00.000Z');
    expect(request.transitions.map((t) => [t.toState, t.principal])).to.deep.equal([[RequestState.REQUEST_STATE_RECEIVED, 'dev-admin']]);
    expect(await create({ requestId: 'dsr-fixed' })).to.deep.equal(request);
    const [row] = await s.app.dataSource.query('SELECT * FROM subject_requests WHERE id = ?', [request.name.split('/').pop()]);
    expect(JSON.stringify(row), 'no identifier in clear').to.not.include('known@example.com');
  });

  it('a receive_time up to 5 minutes ahead (clock skew) counts as now: the deadline is not a day late', async function () {
    // Four minutes before midnight UTC: a time 4 minutes ahead would be the next day.
    s.clock.set(Date.UTC(2026, 2, 14, 23, 56));
    const request = await create({ receiveTime: new Date(Date.UTC(2026, 2, 15, 0, 0)) });
    expect(request.receiveTime!.toISOString()).to.equal('2026-03-14T23:56:00.000Z');
    expect(request.dueTime!.toISOString(), '14 March -> end of 14 April').to.equal('2026-04-15T00:00:00.000Z');
    expect(request.dueDate).to.deep.equal({ year: 2026, month: 4, day: 14 });
    const ahead = await expectGrpcError(create({ receiveTime: new Date(s.clock.now() + 6 * 60_000) }), status.INVALID_ARGUMENT);
    expect([ahead.fields, ahead.reason]).to.deep.equal([['receive_time'], 'IN_THE_FUTURE']);
  });

  it('a request about someone the tenant never recorded is registered without a subject', async function () {
    const request = await create({ subjectIdentifier: email('stranger@example.com') });
    expect(request.subject).to.equal('');
  });

  it('refuses incomplete requests with the fields named', async function () {
    const err = await expectGrpcError(
      create({ kind: RequestKind.REQUEST_KIND_UNSPECIFIED, receivedVia: ReceivedVia.RECEIVED_VIA_UNSPECIFIED, requestId: '' }),
      status.INVALID_ARGUMENT,
    );
    expect(err.fields).to.have.members(['kind', 'received_via', 'request_id']);
    await expectGrpcError(create({ receiveTime: new Date(s.clock.now() + DAY) }), status.INVALID_ARGUMENT);
    // Before 2000 (as event times): year 1 would be due in 1901, 1970 would be overdue at once.
    const before = (await call(s.rights, s.rights.listRequests, { parent: `tenants/${T}`, state: 0, kind: 0, overdue: false, dueBefore: undefined, pageSize: 500, pageToken: '' })).requests.length;
    for (const receiveTime of [new Date(Date.UTC(1, 0, 1)), new Date(Date.UTC(99, 5, 15)), new Date(0), new Date(Date.UTC(1999, 11, 31, 23, 59, 59))]) {
      const old = await expectGrpcError(create({ receiveTime, requestId: `old-${receiveTime.getTime()}` }), status.INVALID_ARGUMENT);
      expect([old.fields, old.reason], receiveTime.toISOString()).to.deep.equal([['receive_time'], 'OUT_OF_RANGE']);
    }
    const after = (await call(s.rights, s.rights.listRequests, { parent: `tenants/${T}`, state: 0, kind: 0, overdue: false, dueBefore: undefined, pageSize: 500, pageToken: '' })).requests.length;
    expect(after, 'nothing registered').to.equal(before);
  });

  it('verify, extend once before the deadline, and reject follow the lifecycle', async function () {
    s.clock.set(T0);
    const request = await create();
    const { request: verified } = await call(rights, rights.verifyIdentity, { name: request.name, method: 'ID_DOCUMENT', verifiedBy: 'staff-7', identifierPositions: [] });
    expect(verified!.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    expect(verified!.verificationMethod).to.equal('ID_DOCUMENT');
    expect((await expectGrpcError(call(rights, rights.verifyIdentity, { name: request.name, method: 'ID_DOCUMENT', verifiedBy: 'staff-7', identifierPositions: [] }), status.FAILED_PRECONDITION)).reason).to.equal('INVALID_TRANSITION');

    expect((await expectGrpcError(call(rights, rights.extendDeadline, { name: request.name, months: 3, reason: 'x' }), status.INVALID_ARGUMENT)).fields).to.deep.equal(['months']);
    const { request: extended } = await call(rights, rights.extendDeadline, { name: request.name, months: 2, reason: 'many requests this month' });
    expect(extended!.dueTime!.toISOString(), '1 March + 3 months').to.equal('2026-06-02T00:00:00.000Z');
    expect(extended!.extensionReason).to.equal('many requests this month');
    expect((await expectGrpcError(call(rights, rights.extendDeadline, { name: request.name, months: 1, reason: 'again' }), status.FAILED_PRECONDITION)).reason).to.equal('ALREADY_EXTENDED');

    const { request: rejected } = await call(rights, rights.rejectRequest, { name: request.name, reason: 'identity documents forged' });
    expect(rejected!.state).to.equal(RequestState.REQUEST_STATE_REJECTED);
    expect(rejected!.transitions.map((t) => t.toState)).to.deep.equal([
      RequestState.REQUEST_STATE_RECEIVED,
      RequestState.REQUEST_STATE_VERIFIED,
      RequestState.REQUEST_STATE_VERIFIED,
      RequestState.REQUEST_STATE_REJECTED,
    ]);
    expect(rejected!.transitions.every((t) => t.principal === 'dev-admin')).to.equal(true);
    expect((await expectGrpcError(call(rights, rights.rejectRequest, { name: request.name, reason: 'again' }), status.FAILED_PRECONDITION)).reason).to.equal('INVALID_TRANSITION');
  });

  // Art. 12(3)-(4), found missing by a probe: the person must be told of an extension (with its
  // reasons, within the first month) and of a rejection (reasons, right to complain); the DPO records it.
  it('records that the person was told of the extension and of the rejection; every error path has its status and changes nothing', async function () {
    s.clock.set(T0);
    const request = await create();
    const notice = (topic: RequestNoticeTopic, method = 'LETTER', notifiedBy = 'staff-7', name = request.name) => call(rights, rights.recordRequestNotice, { name, topic, method, notifiedBy });
    const failed = async (p: Promise<unknown>, code: status) => {
      const e = await expectGrpcError(p, code);
      return code === status.INVALID_ARGUMENT ? e.fields.join(',') : e.reason;
    };
    const unchanged = async () => {
      const r = (await call(rights, rights.getRequest, { name: request.name })).request!;
      return [r.extensionNotice, r.rejectionNotice, r.transitions.length];
    };
    const before = await unchanged();
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION), status.FAILED_PRECONDITION), 'not extended yet').to.equal('NOT_EXTENDED');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_REJECTION), status.FAILED_PRECONDITION)).to.equal('NOT_REJECTED');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_UNSPECIFIED), status.INVALID_ARGUMENT)).to.equal('topic');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'by phone!'), status.INVALID_ARGUMENT)).to.equal('method');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'LETTER', ' '), status.INVALID_ARGUMENT)).to.equal('notified_by');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'LETTER', 'x'.repeat(129)), status.INVALID_ARGUMENT)).to.equal('notified_by');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'LETTER', 'staff-7', `tenants/${T}/requests/${'0'.repeat(32)}`), status.NOT_FOUND)).to.equal('REQUEST_NOT_FOUND');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'LETTER', 'staff-7', `tenants/nope/requests/${'0'.repeat(32)}`), status.NOT_FOUND)).to.equal('TENANT_NOT_FOUND');
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'LETTER', 'staff-7', 'requests/1'), status.INVALID_ARGUMENT)).to.equal('name');
    expect(await unchanged(), 'nothing changed').to.deep.equal(before);

    await call(rights, rights.extendDeadline, { name: request.name, months: 1, reason: 'many requests this month' });
    s.clock.advance(DAY);
    const told = (await notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'EMAIL', 'staff-7')).request!;
    expect(told.extensionNotice).to.deep.equal({ method: 'EMAIL', notifiedBy: 'staff-7', notifyTime: new Date(T0 + DAY) });
    expect(told.rejectionNotice).to.equal(undefined);
    expect(told.transitions[told.transitions.length - 1]).to.deep.include({ principal: 'dev-admin', note: 'person informed of the extension and its reasons (Art. 12(3)) by EMAIL' });
    expect((await notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'EMAIL', 'staff-7')).request, 'a retry answers the same').to.deep.equal(told);
    expect(await failed(notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'LETTER', 'staff-8'), status.FAILED_PRECONDITION), 'not rewritten').to.equal('ALREADY_NOTIFIED');

    await call(rights, rights.rejectRequest, { name: request.name, reason: 'identity could not be verified' });
    const rejected = (await notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_REJECTION, 'LETTER', 'staff-9')).request!;
    expect([rejected.state, rejected.rejectionNotice?.method, rejected.extensionNotice?.method]).to.deep.equal([RequestState.REQUEST_STATE_REJECTED, 'LETTER', 'EMAIL']);
    const entries = await s.app.services.audit.entries(T, 0, 100_000, { types: ['REQUEST_NOTICE_RECORDED'] });
    expect(entries.map((e) => (JSON.parse(e.entryJson) as { ref: string; principal: string }).ref).filter((ref) => ref === request.name)).to.have.length(2);

    // A staff reference of 128 characters that JSON escapes (found in review: too long for the column on MariaDB).
    const other = await create();
    await call(rights, rights.extendDeadline, { name: other.name, months: 1, reason: 'many requests' });
    const odd = '"\\'.repeat(64);
    expect((await notice(RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, 'LETTER', odd, other.name)).request!.extensionNotice!.notifiedBy).to.equal(odd);
  });

  // Found by a probe (Art. 12(3)): an extension stood, and the request was not overdue, also when
  // the person was never told of it, or told only after the first month.
  it('an extension holds only if the person was told of it before the first deadline: otherwise the first deadline stands (overdue, listed as overdue), also when told late', async function () {
    const tenant = 'dpo-ext';
    await seedTenant(s, tenant);
    s.clock.set(T0);
    const make = async () => (await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${tenant}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifier: email(`ext-${++counter}@example.org`), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `ext-${counter}` }))).request!;
    const untold = await make();
    const toldInTime = await make();
    const toldLate = await make();
    const first = untold.dueTime!.getTime();
    for (const r of [untold, toldInTime, toldLate]) await call(rights, rights.extendDeadline, { name: r.name, months: 2, reason: 'many requests this month' });
    const extended = (await call(rights, rights.getRequest, { name: untold.name })).request!.dueTime!.getTime();
    expect(extended).to.be.greaterThan(first + 50 * DAY);
    s.clock.set(T0 + 10 * DAY);
    await call(rights, rights.recordRequestNotice, { name: toldInTime.name, topic: RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, method: 'EMAIL', notifiedBy: 'staff-1' });
    const get = async (r: DataSubjectRequest) => (await call(rights, rights.getRequest, { name: r.name })).request!;
    // Before the first deadline every extension may still be told of: none is overdue.
    for (const r of [untold, toldInTime, toldLate]) expect([(await get(r)).overdue, (await get(r)).dueTime!.getTime()]).to.deep.equal([false, extended]);
    s.clock.set(first + 9 * DAY);
    const lateNotice = (await call(rights, rights.recordRequestNotice, { name: toldLate.name, topic: RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, method: 'LETTER', notifiedBy: 'staff-2' })).request!;
    expect(lateNotice.transitions[lateNotice.transitions.length - 1].note).to.include('after the first deadline, so the extension does not hold');
    expect([(await get(untold)).overdue, (await get(untold)).dueTime!.getTime()], 'never told').to.deep.equal([true, first]);
    expect([(await get(toldLate)).overdue, (await get(toldLate)).dueTime!.getTime()], 'told too late').to.deep.equal([true, first]);
    expect([(await get(toldInTime)).overdue, (await get(toldInTime)).dueTime!.getTime()], 'told in time').to.deep.equal([false, extended]);
    const overdue = (await call(rights, rights.listRequests, { parent: `tenants/${tenant}`, state: 0, kind: 0, overdue: true, dueBefore: undefined, pageSize: 50, pageToken: '' })).requests.map((r) => r.name);
    expect(overdue.sort()).to.deep.equal([untold.name, toldLate.name].sort());
    // The operations gauge (consent_subject_requests) agrees (found in review: it counted the raw due time).
    const gauge = (await s.app.services.tx.read((tx) => new OperationsRepository().openSubjectRequests(tx, s.clock.now()))).find((g) => g.tenant === tenant)!;
    expect([gauge.open, gauge.overdue, gauge.dueSoon]).to.deep.equal([3, 2, 0]);
    // Before the first deadline, a bound past it does not list an untold extension (it may still be told of).
    s.clock.set(first - 5 * DAY);
    const dueSoon = (await call(rights, rights.listRequests, { parent: `tenants/${tenant}`, state: 0, kind: 0, overdue: false, dueBefore: new Date(first + DAY), pageSize: 50, pageToken: '' })).requests.map((r) => r.name);
    expect(dueSoon).to.not.include(untold.name);
  });

  it('an extension after the first deadline is refused', async function () {
    s.clock.set(T0);
    const request = await create();
    s.clock.set(request.dueTime!.getTime());
    expect((await expectGrpcError(call(rights, rights.extendDeadline, { name: request.name, months: 1, reason: 'late' }), status.FAILED_PRECONDITION)).reason).to.equal('DEADLINE_PASSED');
  });

  it('lists overdue and due-soon requests, newest first, in pages', async function () {
    const tenant = 'dpo-list';
    await seedTenant(s, tenant);
    const made: DataSubjectRequest[] = [];
    for (let i = 0; i < 5; i++) {
      s.clock.set(Date.UTC(2026, 5, 1 + i * 10, 12)); // 1, 11, 21 June, 1, 11 July
      made.push((await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${tenant}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: email(`p${i}@example.com`), receivedVia: ReceivedVia.RECEIVED_VIA_WEB_FORM, requestId: `l-${i}` }))).request!);
    }
    await call(rights, rights.rejectRequest, { name: made[0].name, reason: 'withdrawn by the person' });
    s.clock.set(Date.UTC(2026, 6, 25, 12)); // 25 July: the 11 and 21 June requests are overdue
    const overdue = await call(rights, rights.listRequests, { parent: `tenants/${tenant}`, state: 0, kind: 0, overdue: true, dueBefore: undefined, pageSize: 0, pageToken: '' });
    expect(overdue.requests.map((r) => r.name)).to.deep.equal([made[2].name, made[1].name]);
    expect(overdue.requests.every((r) => r.overdue)).to.equal(true);
    const dueSoon = await call(rights, rights.listRequests, { parent: `tenants/${tenant}`, state: 0, kind: 0, overdue: false, dueBefore: new Date(Date.UTC(2026, 7, 5)), pageSize: 0, pageToken: '' });
    expect(dueSoon.requests.map((r) => r.name)).to.deep.equal([made[3].name, made[2].name, made[1].name]);
    const names: string[] = [];
    let pageToken = '';
    do {
      const page = await call(rights, rights.listRequests, { parent: `tenants/${tenant}`, state: 0, kind: RequestKind.REQUEST_KIND_ERASURE, overdue: false, dueBefore: undefined, pageSize: 2, pageToken });
      names.push(...page.requests.map((r) => r.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(names).to.deep.equal([...made].reverse().map((r) => r.name));
    const rejected = await call(rights, rights.listRequests, { parent: `tenants/${tenant}`, state: RequestState.REQUEST_STATE_REJECTED, kind: 0, overdue: false, dueBefore: undefined, pageSize: 0, pageToken: '' });
    expect(rejected.requests.map((r) => r.name)).to.deep.equal([made[0].name]);
  });

  it('places, lists and releases legal holds', async function () {
    const place = (requestId: string, who = 'known@example.com') =>
      call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email(who), ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS, note: 'case 2026-17', requestId });
    const { hold } = await place('hold-1');
    expect(hold!.name).to.match(/^tenants\/dpo\/legalHolds\/[0-9a-f]{32}$/);
    expect(hold!.placedBy).to.equal('dev-admin');
    expect((await place('hold-1')).hold, 'idempotent').to.deep.equal(hold);
    expect((await expectGrpcError(place('hold-2', 'nobody@example.com'), status.NOT_FOUND)).reason).to.equal('SUBJECT_NOT_FOUND');
    const open = await call(rights, rights.listLegalHolds, { parent: `tenants/${T}`, subjectIdentifier: email('known@example.com'), includeReleased: false, pageSize: 0, pageToken: '' });
    expect(open.holds.map((h) => h.name)).to.deep.equal([hold!.name]);
    const { hold: released } = await call(rights, rights.releaseLegalHold, { name: hold!.name, note: 'claim settled' });
    expect(released!.releaseTime).to.be.instanceOf(Date);
    expect((await expectGrpcError(call(rights, rights.releaseLegalHold, { name: hold!.name, note: 'again' }), status.FAILED_PRECONDITION)).reason).to.equal('HOLD_RELEASED');
    const after = await call(rights, rights.listLegalHolds, { parent: `tenants/${T}`, subjectIdentifier: undefined, includeReleased: false, pageSize: 0, pageToken: '' });
    expect(after.holds).to.deep.equal([]);
    const all = await call(rights, rights.listLegalHolds, { parent: `tenants/${T}`, subjectIdentifier: undefined, includeReleased: true, pageSize: 0, pageToken: '' });
    expect(all.holds.map((h) => h.name)).to.deep.equal([hold!.name]);
    expect((await expectGrpcError(call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email('known@example.com'), ground: 0, note: '', requestId: 'h3' }), status.INVALID_ARGUMENT)).fields).to.deep.equal(['ground']);
  });
});
