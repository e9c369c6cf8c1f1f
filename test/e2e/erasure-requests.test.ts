import { spawn } from 'node:child_process';
import path from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { verifyReceipt } from '../../src/cli/verify-receipt';
import { DomainError } from '../../src/shared/errors';
import { CollectionMethod, DecisionReason } from '../../src/gen/consent/v1/consent';
import { KeyServiceClient } from '../../src/gen/consent/v1/key';
import {
  CreateRequestRequest,
  LegalHoldGround,
  ReceivedVia,
  RequestKind,
  RequestState,
  SubjectRightsServiceClient,
} from '../../src/gen/consent/v1/subject_rights';
import { TypeormSubjectRightsRepository } from '../../src/storage/repositories/subject-rights-repository';
import { forEachDatabase, TestDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { freePort, ROOT, TSX } from '../support/processes';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('erasure requests', (db) => {
  let s: TestServer;
  let rights: SubjectRightsServiceClient;
  let keys: KeyServiceClient;
  const T = 'erasure';
  before(async function () {
    s = await startTestServer(db());
    rights = new SubjectRightsServiceClient(s.address, credentials.createInsecure());
    keys = new KeyServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
  });
  after(async () => {
    rights?.close();
    keys?.close();
    await s?.stop();
  });

  let n = 0;
  async function verifiedErasure(who: string, kind = RequestKind.REQUEST_KIND_ERASURE) {
    const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifier: email(who), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
    const { request: verified } = await call(rights, rights.verifyIdentity, { name: request!.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-1', identifierPositions: [] });
    return verified!;
  }

  it('erases a verified request, returns a signed receipt, and the person is suppressed afterwards', async function () {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('gone@example.com') }));
    const request = await verifiedErasure('gone@example.com');
    const { request: done, erasureReceipt } = await call(rights, rights.eraseSubject, { name: request.name });
    expect(done!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(done!.transitions.map((t) => t.toState)).to.deep.equal([RequestState.REQUEST_STATE_RECEIVED, RequestState.REQUEST_STATE_VERIFIED, RequestState.REQUEST_STATE_IN_PROGRESS, RequestState.REQUEST_STATE_COMPLETED]);
    const jwks = (await call(keys, keys.getPublicKeys, { name: `tenants/${T}` })).jwks;
    const verified = await verifyReceipt(erasureReceipt, jwks);
    expect(verified.payload).to.include({ request: request.name, subjectKnown: true, sub: request.subject });
    expect(verified.payload.keyIdsDestroyed).to.deep.equal([`${request.subject}/key`]);
    expect(verified.payload.counts).to.deep.equal({ identifiers: 1, eventsRetained: 1, links: 0, signUps: 0 });
    expect(JSON.stringify(verified.payload)).to.not.include('gone@example.com');

    const again = await call(rights, rights.eraseSubject, { name: request.name });
    expect(again.erasureReceipt, 'idempotent').to.equal(erasureReceipt);
    expect(again.consistencyToken, 'a consistency token, also for the repeat').to.match(/^ct2\./);
    // The token makes a check see the erasure, fully consistent or from the cache.
    for (const consistency of [{ requirement: { $case: 'atLeastAsFresh' as const, value: again.consistencyToken } }, undefined]) {
      const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email('gone@example.com') }), consistency });
      expect(check.decision!.reason).to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
    }
    const imported = await expectGrpcError(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('gone@example.com'), method: CollectionMethod.COLLECTION_METHOD_IMPORT })), status.FAILED_PRECONDITION);
    expect(imported.reason).to.equal('SUBJECT_SUPPRESSED');
  });

  it('after the erasure nothing is reachable by the identifier: a new access request exports nothing of the person, a new sign-up starts an unlinked history', async function () {
    const who = 'reachable@example.com';
    const first = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    const erasure = await verifiedErasure(who);
    await call(rights, rights.eraseSubject, { name: erasure.name });
    // In the database too (found by a probe): the tombstone's blind index is paired with no
    // subject by any other row (the request and its identifier kept it next to the subject id).
    const erasedId = first.event!.subject.split('/').pop();
    const [tombstone] = (await s.app.dataSource.query('SELECT blind_index FROM suppressions WHERE tenant_id = ? ORDER BY erased_at DESC', [T])) as Array<{ blind_index: string }>;
    for (const [table, column] of [['subject_requests', 'blind_index'], ['subject_requests', 'rectified_blind_index'], ['subject_request_identifiers', 'blind_index'], ['identifier_reassignments', 'blind_index']]) {
      const rows = (await s.app.dataSource.query(`SELECT subject_id FROM ${table === 'identifier_reassignments' ? `(SELECT old_subject_id AS subject_id, ${column} FROM ${table} UNION ALL SELECT new_subject_id, ${column} FROM ${table}) t` : table} WHERE ${column} = ?`, [tombstone.blind_index])) as unknown[];
      expect(rows, `${table}.${column}`).to.deep.equal([]);
    }
    const kept = (await s.app.dataSource.query('SELECT subject_id FROM subject_requests WHERE id = ?', [erasure.name.split('/').pop()])) as Array<{ subject_id: string }>;
    expect(kept.map((r) => r.subject_id), 'the request still names whom it erased').to.deep.equal([erasedId]);
    // A retry of the request's creation is still recognised as the same request.
    const retried = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: email(who), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${n}` }));
    expect(retried.request!.name).to.equal(erasure.name);

    const access = await verifiedErasure(who, RequestKind.REQUEST_KIND_ACCESS);
    expect(access.subject, 'the request finds no subject').to.equal('');
    const exported = await exportPackage(access.name);
    expect(exported.consentEvents, 'not even how many events there were').to.deep.equal([]);
    expect(JSON.stringify(exported)).to.not.include(first.event!.subject);

    const fresh = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who), kind: 1 }));
    expect(fresh.event!.subject).to.not.equal(first.event!.subject);
    const again = await verifiedErasure(who, RequestKind.REQUEST_KIND_ACCESS);
    expect(again.subject).to.equal(fresh.event!.subject);
    const events = (await exportPackage(again.name)).consentEvents as Array<{ name: string }>;
    expect(events.map((e) => e.name), 'only the new history').to.deep.equal([fresh.event!.name]);
  });

  it("an erasure also seals the request's identifiers under which nothing was held: a person recorded later under one cannot be joined to the erased person", async function () {
    const held = 'seal-held@example.com';
    const unheld = 'seal-unheld@example.com';
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(held) }));
    const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifiers: [email(held), email(unheld)], receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
    await call(rights, rights.verifyIdentity, { name: request!.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-1', identifierPositions: [] });
    const erasedId = request!.subject.split('/').pop()!;
    const rowsOf = () => s.app.dataSource.query('SELECT position, blind_index, subject_id FROM subject_request_identifiers WHERE request_id = ? ORDER BY position', [request!.name.split('/').pop()]) as Promise<Array<{ position: unknown; blind_index: string; subject_id: string | null }>>;
    const before = await rowsOf();
    expect(before.map((r) => r.subject_id)).to.deep.equal([erasedId, null]);
    await call(rights, rights.eraseSubject, { name: request!.name });

    const later = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(unheld) }));
    const laterId = later.event!.subject.split('/').pop()!;
    const joined = (await s.app.dataSource.query(
      'SELECT r.subject_id AS erased FROM subject_identifiers i JOIN subject_request_identifiers q ON q.tenant_id = i.tenant_id AND q.blind_index = i.blind_index JOIN subject_requests r ON r.id = q.request_id WHERE i.tenant_id = ? AND i.subject_id = ?',
      [T, laterId],
    )) as Array<{ erased: string }>;
    expect(joined, 'the later person joins no request of the erased one').to.deep.equal([]);
    const after = await rowsOf();
    const changed = after.map((r) => r.blind_index !== before.find((b) => Number(b.position) === Number(r.position))!.blind_index);
    expect(changed, 'every row of the request sealed').to.deep.equal([true, true]);
  });

  it("another request's erasure of one of its persons leaves an open request's other identifiers resolvable: a person recorded since under one is erased or exported by it", async function () {
    const who = 'seal-open@example.com';
    const ph = phone('+4915140777044');
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    const open = async (kind: RequestKind) => {
      const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifiers: [email(who), ph], receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
      return (await call(rights, rights.verifyIdentity, { name: request!.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-1', identifierPositions: [] })).request!;
    };
    const erasure = await open(RequestKind.REQUEST_KIND_ERASURE);
    const access = await open(RequestKind.REQUEST_KIND_ACCESS);
    await call(rights, rights.eraseSubject, { name: (await verifiedErasure(who)).name });
    s.clock.advance(1000);
    const later = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: ph }));
    const exported = await exportPackage(access.name);
    expect((exported.consentEvents as Array<{ name: string }>).map((e) => e.name), 'the access request reaches the person recorded since').to.deep.equal([later.event!.name]);
    await call(rights, rights.eraseSubject, { name: erasure.name });
    const state = await expectGrpcError(call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: ph }), status.FAILED_PRECONDITION);
    expect(state.reason, 'the erasure request erased them').to.equal('SUBJECT_ERASED');
  });

  it("an open request naming an erased person seals its unreached identifiers when it is closed (rejected)", async function () {
    const held = 'seal-close@example.com';
    const unheld = 'seal-close-unheld@example.com';
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(held) }));
    const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifiers: [email(held), email(unheld)], receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
    await call(rights, rights.eraseSubject, { name: (await verifiedErasure(held)).name });
    await call(rights, rights.rejectRequest, { name: request!.name, reason: 'the person was erased meanwhile' });
    const later = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(unheld) }));
    const joined = (await s.app.dataSource.query(
      'SELECT r.id FROM subject_identifiers i JOIN subject_request_identifiers q ON q.tenant_id = i.tenant_id AND q.blind_index = i.blind_index JOIN subject_requests r ON r.id = q.request_id WHERE i.tenant_id = ? AND i.subject_id = ?',
      [T, later.event!.subject.split('/').pop()],
    )) as Array<{ id: string }>;
    expect(joined, 'the later person joins no request of the erased one').to.deep.equal([]);
  });

  it("the reasons and notes staff wrote about the person's requests and holds (extension, rejection, hold, release) are erased with the person: they are plaintext and may name them", async function () {
    const who = 'reasons@example.com';
    const planted = { extension: 'Jane Reasonable is in hospital, +4915199887766', rejection: 'duplicate of the call from +4915199887766', release: 'claim of Jane Reasonable settled', hold: 'claim of Jane Reasonable, case 18' };
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    const access = await verifiedErasure(who, RequestKind.REQUEST_KIND_ACCESS);
    await call(rights, rights.extendDeadline, { name: access.name, months: 2, reason: planted.extension });
    const { request: dup } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifier: email(who), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
    await call(rights, rights.rejectRequest, { name: dup!.name, reason: planted.rejection });
    const { hold } = await call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email(who), ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS, note: planted.hold, requestId: 'hold-reasons' });
    await call(rights, rights.releaseLegalHold, { name: hold!.name, note: planted.release });
    expect((await call(rights, rights.getRequest, { name: access.name })).request!.extensionReason).to.equal(planted.extension);

    const stillOpen = await verifiedErasure(who, RequestKind.REQUEST_KIND_ACCESS);
    await call(rights, rights.eraseSubject, { name: (await verifiedErasure(who)).name });
    expect((await call(rights, rights.getRequest, { name: access.name })).request!.extensionReason).to.equal('(erased with the person)');
    // A reason written about the erased person afterwards goes the same way.
    await call(rights, rights.rejectRequest, { name: stillOpen.name, reason: planted.rejection });
    expect((await call(rights, rights.getRequest, { name: stillOpen.name })).request!.rejectionReason, 'written after the erasure').to.equal('(erased with the person)');
    expect((await call(rights, rights.getRequest, { name: dup!.name })).request!.rejectionReason).to.equal('(erased with the person)');
    const dump = JSON.stringify([
      await s.app.dataSource.query('SELECT * FROM subject_requests WHERE tenant_id = ?', [T]),
      await s.app.dataSource.query('SELECT * FROM legal_holds WHERE tenant_id = ?', [T]),
      await s.app.dataSource.query('SELECT * FROM subject_request_transitions'),
    ]);
    for (const text of Object.values(planted)) expect(dump, text).to.not.include(text);
    expect(dump).to.not.include('Jane Reasonable').and.not.include('4915199887766');
  });

  it('erasing the new owner of a reassigned number seals the reassignment report\'s blind index too', async function () {
    const who = 'passed-on@example.com';
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    const reported = await call(s.consent, s.consent.reportReassignedIdentifier, { parent: `tenants/${T}`, subjectIdentifier: email(who), reassignTime: undefined, source: 'CARRIER_NOTICE', requestId: `ra-${++n}` } as never);
    const fresh = (reported as unknown as { subject: string }).subject.split('/').pop();
    const report = () => s.app.dataSource.query('SELECT blind_index FROM identifier_reassignments WHERE tenant_id = ? AND new_subject_id = ?', [T, fresh]) as Promise<Array<{ blind_index: string }>>;
    const [before] = await report();
    await call(rights, rights.eraseSubject, { name: (await verifiedErasure(who)).name });
    const tombstones = (await s.app.dataSource.query('SELECT blind_index FROM suppressions WHERE tenant_id = ?', [T])) as Array<{ blind_index: string }>;
    expect(tombstones.map((t) => t.blind_index), 'the tombstone carries the number\'s blind index').to.include(before.blind_index);
    const [after] = await report();
    expect(after.blind_index, 'sealed: it no longer joins the tombstone').to.not.equal(before.blind_index);
    expect(tombstones.map((t) => t.blind_index)).to.not.include(after.blind_index);
  });

  /** The JSON package of an export, reassembled from its chunks. */
  function exportPackage(name: string): Promise<{ consentEvents: unknown[] }> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = rights.exportSubjectData({ name });
      stream.on('data', (p: { part?: { $case: string; value: unknown } }) => {
        if (p.part?.$case === 'packageChunk') chunks.push(p.part.value as Buffer);
      });
      stream.on('error', reject);
      stream.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { consentEvents: unknown[] }));
    });
  }

  it('an open legal hold blocks the erasure with its ground; released, the erasure goes through', async function () {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('held@example.com') }));
    const { hold } = await call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email('held@example.com'), ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS, note: 'case 17', requestId: 'hold-held' });
    const request = await verifiedErasure('held@example.com');
    const blocked = await expectGrpcError(call(rights, rights.eraseSubject, { name: request.name }), status.FAILED_PRECONDITION);
    expect(blocked.reason).to.equal('LEGAL_HOLD');
    expect(blocked.message).to.include('17(3)(e)');
    const stillThere = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email('held@example.com') }) });
    expect(stillThere.decision!.reason, 'nothing was erased').to.equal(DecisionReason.DECISION_REASON_OPTED_IN);
    await call(rights, rights.releaseLegalHold, { name: hold!.name, note: 'claim settled' });
    const { request: done } = await call(rights, rights.eraseSubject, { name: request.name });
    expect(done!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
  });

  it('a hold request_id reused for another hold is refused; a hold on an erased identifier is FAILED_PRECONDITION SUBJECT_ERASED', async function () {
    for (const who of ['hold-first@example.com', 'hold-second@example.com']) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    const place = (who: string, note: string, requestId: string) =>
      call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email(who), ground: LegalHoldGround.LEGAL_HOLD_GROUND_B_LEGAL_OBLIGATION, note, requestId });
    const { hold } = await place('hold-first@example.com', 'case 1', 'hold-reuse');
    expect((await place('hold-first@example.com', 'case 1', 'hold-reuse')).hold!.name, 'a retry answers the first hold').to.equal(hold!.name);
    for (const [who, note] of [
      ['hold-second@example.com', 'case 1'],
      ['hold-first@example.com', 'another note'],
    ]) {
      const reused = await expectGrpcError(place(who, note, 'hold-reuse'), status.FAILED_PRECONDITION);
      expect(reused.reason).to.equal('REQUEST_ID_REUSED');
    }
    const held = await call(rights, rights.listLegalHolds, { parent: `tenants/${T}`, subjectIdentifier: email('hold-second@example.com'), includeReleased: true, pageSize: 0, pageToken: '' });
    expect(held.holds, 'no hold was placed on the second person').to.deep.equal([]);
    await call(rights, rights.releaseLegalHold, { name: hold!.name, note: 'done' });

    const erased = await verifiedErasure('hold-second@example.com');
    await call(rights, rights.eraseSubject, { name: erased.name });
    const refused = await expectGrpcError(place('hold-second@example.com', 'too late', 'hold-after-erasure'), status.FAILED_PRECONDITION);
    expect(refused.reason).to.equal('SUBJECT_ERASED');
    expect(refused.message).to.not.include('hold-second');
  });

  it('a hold cannot be placed once an erasure of the person has started; racing an erasure, a hold either blocks it or is refused', async function () {
    this.timeout(60_000);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('started@example.com') }));
    const started = await verifiedErasure('started@example.com');
    // The state a process leaves between its two steps (the request IN_PROGRESS, the person not shredded yet).
    const id = started.name.split('/').pop()!;
    await s.app.services.tx.write((tx) => new TypeormSubjectRightsRepository().updateRequest(tx, id, { state: 'IN_PROGRESS' }));
    const refused = await expectGrpcError(
      call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email('started@example.com'), ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS, note: 'late', requestId: 'hold-started' }),
      status.FAILED_PRECONDITION,
    );
    expect([refused.reason, refused.message]).to.deep.equal(['SUBJECT_ERASED', 'an erasure of this subject is under way (its request is IN_PROGRESS); a hold can no longer stop it']);
    await call(rights, rights.eraseSubject, { name: started.name });

    for (let i = 0; i < 8; i++) {
      const who = `race-${i}@example.com`;
      await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
      const request = await verifiedErasure(who);
      const [erasure, hold] = await Promise.all([
        call(rights, rights.eraseSubject, { name: request.name }).then(
          (r) => ({ ok: true as const, state: r.request!.state }),
          (e: { code: number; details: string }) => ({ ok: false as const, code: e.code, details: e.details }),
        ),
        new Promise((r) => setTimeout(r, i)).then(() =>
          call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: email(who), ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS, note: 'race', requestId: `hold-race-${i}` }).then(
            (r) => ({ ok: true as const, hold: r.hold! }),
            (e: { code: number }) => ({ ok: false as const, code: e.code }),
          ),
        ),
      ]);
      if (hold.ok) {
        expect(erasure, 'a hold that was placed blocks the erasure').to.deep.include({ ok: false, code: status.FAILED_PRECONDITION });
        const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email(who) }) });
        expect(check.decision!.reason, 'nothing was erased under the hold').to.equal(DecisionReason.DECISION_REASON_OPTED_IN);
        await call(rights, rights.releaseLegalHold, { name: hold.hold.name, note: 'race over' });
      } else {
        expect(hold.code, 'a refused hold is FAILED_PRECONDITION').to.equal(status.FAILED_PRECONDITION);
        expect(erasure).to.deep.include({ ok: true, state: RequestState.REQUEST_STATE_COMPLETED });
      }
    }
  });

  it('refuses unverified and non-erasure requests; an unknown person completes with nothing to destroy', async function () {
    const { request: unverified } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: email('x@example.com'), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'er-unverified' }));
    expect((await expectGrpcError(call(rights, rights.eraseSubject, { name: unverified!.name }), status.FAILED_PRECONDITION)).reason).to.equal('IDENTITY_NOT_VERIFIED');
    const access = await verifiedErasure('x@example.com', RequestKind.REQUEST_KIND_ACCESS);
    expect((await expectGrpcError(call(rights, rights.eraseSubject, { name: access.name }), status.FAILED_PRECONDITION)).reason).to.equal('NOT_AN_ERASURE');
    const unknown = await verifiedErasure('never-recorded@example.com');
    const { erasureReceipt } = await call(rights, rights.eraseSubject, { name: unknown.name });
    const verified = await verifyReceipt(erasureReceipt, (await call(keys, keys.getPublicKeys, { name: `tenants/${T}` })).jwks);
    expect(verified.payload).to.include({ subjectKnown: false });
  });

  it('a server killed half-way through an erasure finishes it at its next start', async function () {
    this.timeout(120_000);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('crash@example.com') }));
    const request = await verifiedErasure('crash@example.com');
    const port = await freePort();
    const child = spawn(TSX[0], [TSX[1], 'src/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, ...childEnv(db(), port), CONSENT_FAILPOINT: 'erasure.started' },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ? -1 : code)));
    const other = new SubjectRightsServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      for (let i = 0; ; i++) {
        const ready = await call(other, other.getRequest, { name: request.name }).then(() => true, () => false);
        if (ready) break;
        if (i > 300) throw new Error('child server did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
      const lost = await call(other, other.eraseSubject, { name: request.name }).then(() => null, (e: { code: number }) => e);
      expect(lost?.code, 'the call died with the process').to.equal(status.UNAVAILABLE);
      expect([-1, 137], 'killed at the failpoint').to.include(await exited);
    } finally {
      other.close();
      child.kill('SIGKILL');
    }
    const halfway = await call(rights, rights.getRequest, { name: request.name });
    expect(halfway.request!.state, 'left in progress by the killed process').to.equal(RequestState.REQUEST_STATE_IN_PROGRESS);

    const restarted = await startTestServer(db());
    try {
      const restartedRights = new SubjectRightsServiceClient(restarted.address, credentials.createInsecure());
      const { request: done } = await call(restartedRights, restartedRights.getRequest, { name: request.name });
      restartedRights.close();
      expect(done!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
      expect(done!.erasureReceipt).to.match(/^ey/);
      const check = await call(restarted.consent, restarted.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email('crash@example.com') }) });
      expect(check.decision!.reason).to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
    } finally {
      await restarted.stop();
    }
  });

  // Found by a fault probe: the receipt of a request finished after an interruption said "erased
  // earlier" with every count 0 for the persons its first attempt had erased.
  it('a request interrupted after erasing its first person is finished with the receipt an uninterrupted one gives, naming who erased them', async function () {
    this.timeout(120_000);
    const people = ['first-of-two@example.com', 'second-of-two@example.com'];
    for (const [i, who] of people.entries()) {
      for (let k = 0; k <= i; k++) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    }
    const { request: created } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifiers: people.map(email), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
    await call(rights, rights.verifyIdentity, { name: created!.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-1', identifierPositions: [] });
    await eraseUntilKilled(db(), 'erasure.subject-erased', created!.name);
    const halfway = await call(rights, rights.getRequest, { name: created!.name });
    expect(halfway.request!.state).to.equal(RequestState.REQUEST_STATE_IN_PROGRESS);

    // Finished by a retry here (the next start would do the same: resumeErasures).
    const { request: done, erasureReceipt } = await call(rights, rights.eraseSubject, { name: created!.name });
    expect(done!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    const payload = (await verifyReceipt(erasureReceipt, (await call(keys, keys.getPublicKeys, { name: `tenants/${T}` })).jwks)).payload as {
      counts: Record<string, number>;
      subjects: Array<{ outcome: string; counts: Record<string, number> }>;
    };
    expect(payload.counts).to.deep.equal({ identifiers: 2, eventsRetained: 3, links: 0, signUps: 0 });
    expect(payload.subjects.map((x) => [x.outcome, x.counts.eventsRetained])).to.deep.equal([
      ['erased: subject key destroyed', 1],
      ['erased: subject key destroyed', 2],
    ]);
    expect(done!.identifiers.map((i) => i.outcome)).to.deep.equal(['erased: subject key destroyed', 'erased: subject key destroyed']);
    const erasedBy = await s.app.services.audit.entries(T, 0, 100_000, { types: ['SUBJECT_ERASED'] });
    const subjects = done!.identifiers.map((i) => i.subject.split('/').pop());
    const byWhom = erasedBy.map((e) => JSON.parse(e.entryJson) as { subject: string; principal: string }).filter((e) => subjects.includes(e.subject));
    expect(byWhom.map((e) => e.principal), 'the principal who erased them, in the killed process and in the retry').to.deep.equal(['dev-admin', 'dev-admin']);
  });

  // Found by a fault probe: a request left half done (some persons erased, others not) by a call
  // that failed stayed so until someone retried it or a process restarted.
  it('a running server finishes by itself an erasure request another process left half done', async function () {
    this.timeout(120_000);
    const people = ['left-half-1@example.com', 'left-half-2@example.com'];
    for (const who of people) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
    const { request: created } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifiers: people.map(email), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
    await call(rights, rights.verifyIdentity, { name: created!.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-1', identifierPositions: [] });
    const check = (srv: TestServer, who: string) =>
      call(srv.consent, srv.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email(who) }), consistency: { requirement: { $case: 'fullyConsistent', value: true } } }).then((r) => DecisionReason[r.decision!.reason]);
    // A server running all along (its start-time resume found nothing to do), its clock at the
    // killed process's time: it must not need a restart to finish what that process left.
    const sweeping = await startTestServer(db(), {}, { erasureSweep: { intervalMs: 100, stalledMs: 30_000 } });
    try {
      sweeping.clock.set(Date.now());
      await eraseUntilKilled(db(), 'erasure.subject-erased', created!.name);
      expect([await check(s, people[0]), await check(s, people[1])], 'half done').to.deep.equal(['DECISION_REASON_SUBJECT_ERASED', 'DECISION_REASON_OPTED_IN']);
      const sweepRights = new SubjectRightsServiceClient(sweeping.address, credentials.createInsecure());
      await new Promise((r) => setTimeout(r, 500));
      expect((await call(sweepRights, sweepRights.getRequest, { name: created!.name })).request!.state, 'not stalled long enough yet').to.equal(RequestState.REQUEST_STATE_IN_PROGRESS);
      sweeping.clock.advance(60_000);
      let state = RequestState.REQUEST_STATE_IN_PROGRESS;
      for (let i = 0; i < 100 && state !== RequestState.REQUEST_STATE_COMPLETED; i++) {
        await new Promise((r) => setTimeout(r, 100));
        state = (await call(sweepRights, sweepRights.getRequest, { name: created!.name })).request!.state;
      }
      sweepRights.close();
      expect(state, 'finished without a retry or a restart').to.equal(RequestState.REQUEST_STATE_COMPLETED);
      expect([await check(sweeping, people[0]), await check(sweeping, people[1])]).to.deep.equal(['DECISION_REASON_SUBJECT_ERASED', 'DECISION_REASON_SUBJECT_ERASED']);
      expect(sweeping.logs()).to.include('erasure requests left half done by a failed call were finished');
    } finally {
      await sweeping.stop();
    }
  });

  // Found in review: the sweep went through the stalled requests one after another, and one that
  // kept failing kept every one after it from being finished (and a failure at start stopped the start).
  it('an erasure request that cannot be finished does not hold up the others', async function () {
    this.timeout(120_000);
    const eraser = s.app.services.subjectEraser;
    const erase = eraser.erase.bind(eraser);
    const refused = new Set<string>();
    // The database refuses these people's erasure, for now (a lock held elsewhere, a broken row...).
    eraser.erase = (tenantId, subjectId, by) => (refused.has(subjectId) ? Promise.reject(new DomainError('UNAVAILABLE', 'DATABASE_UNAVAILABLE', 'refused')) : erase(tenantId, subjectId, by));
    // Two EraseSubject calls that fail half-way: each request durably IN_PROGRESS, its person not erased.
    const stalled = async (who: string) => {
      const first = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(who) }));
      const subjectId = first.event!.subject.split('/').pop()!;
      refused.add(subjectId);
      const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: email(who), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: `er-${++n}` }));
      await call(rights, rights.verifyIdentity, { name: request!.name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-1', identifierPositions: [] });
      await expectGrpcError(call(rights, rights.eraseSubject, { name: request!.name }), status.UNAVAILABLE);
      return { name: request!.name, subjectId };
    };
    const doomed = await stalled('cannot-be-finished@example.com');
    const fine = await stalled('waiting-behind@example.com');
    refused.delete(fine.subjectId);
    try {
      expect(await s.app.services.subjectRights.resumeStalledErasures(null)).to.deep.equal({ finished: 1, failed: 1, reason: 'DATABASE_UNAVAILABLE' });
    } finally {
      eraser.erase = erase;
    }
    expect((await call(rights, rights.getRequest, { name: fine.name })).request!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect((await call(rights, rights.getRequest, { name: doomed.name })).request!.state).to.equal(RequestState.REQUEST_STATE_IN_PROGRESS);
    expect(await s.app.services.subjectRights.resumeStalledErasures(null), 'tried again later').to.deep.equal({ finished: 1, failed: 0, reason: undefined });
    expect((await call(rights, rights.getRequest, { name: doomed.name })).request!.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
  });
});

/** Runs a server process with CONSENT_FAILPOINT=`failpoint`, asks it to erase `name` and waits until the failpoint kills it. */
async function eraseUntilKilled(db: TestDatabase, failpoint: string, name: string): Promise<void> {
  const port = await freePort();
  const child = spawn(TSX[0], [TSX[1], 'src/main.ts'], { cwd: ROOT, env: { ...process.env, ...childEnv(db, port), CONSENT_FAILPOINT: failpoint }, stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ? -1 : code)));
  const other = new SubjectRightsServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    for (let i = 0; ; i++) {
      if (await call(other, other.getRequest, { name }).then(() => true, () => false)) break;
      if (i > 300) throw new Error('child server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const lost = await call(other, other.eraseSubject, { name }).then(() => null, (e: { code: number }) => e);
    expect(lost?.code, 'the call died with the process').to.equal(status.UNAVAILABLE);
    expect([-1, 137], 'killed at the failpoint').to.include(await exited);
  } finally {
    other.close();
    child.kill('SIGKILL');
  }
}

function childEnv(db: TestDatabase, port: number): Record<string, string> {
  const url = (c: TestDatabase['config']) => (c.kind === 'sqlite' ? `sqlite:${c.file}` : c.url);
  return {
    PORT: String(port),
    LOG_LEVEL: 'warn',
    DATA_DIR: db.dataDir,
    DATABASE_URL: url(db.config),
    KEYSTORE_URL: url(db.keyStore),
    ROOT_KEYS_FILE: path.join(db.dataDir, 'root-keys.dev.json'),
  };
}

