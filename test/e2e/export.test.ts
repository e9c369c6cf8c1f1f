import { createHash } from 'node:crypto';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { verifyReceipt } from '../../src/cli/verify-receipt';
import { DEVELOPMENT_PRINCIPAL } from '../../src/domain/principal';
import { Channel, PurposeCategory } from '../../src/gen/consent/v1/common';
import { RecordInboundMessageRequest } from '../../src/gen/consent/v1/consent';
import { KeyServiceClient } from '../../src/gen/consent/v1/key';
import { CreateRequestRequest, ExportSubjectDataResponse, ReceivedVia, RequestKind, RequestState, SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('ExportSubjectData', (db) => {
  let s: TestServer;
  let rights: SubjectRightsServiceClient;
  let keys: KeyServiceClient;
  const T = 'export';
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
  async function verifiedRequest(identifier: ReturnType<typeof phone>, kind = RequestKind.REQUEST_KIND_ACCESS, verify = true) {
    const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifier: identifier, receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: `ex-${++n}` }));
    if (!verify) return request!;
    return (await call(rights, rights.verifyIdentity, { name: request!.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-2', identifierPositions: [] })).request!;
  }

  function exportAll(name: string): Promise<ExportSubjectDataResponse[]> {
    return new Promise((resolve, reject) => {
      const parts: ExportSubjectDataResponse[] = [];
      const stream = rights.exportSubjectData({ name });
      stream.on('data', (p: ExportSubjectDataResponse) => parts.push(p));
      stream.on('error', reject);
      stream.on('end', () => resolve(parts));
    });
  }

  it('an erasure that commits while an export runs stops it (no more of the person goes out, not recorded as done); exported again, the request is completed with nothing left', async function () {
    this.timeout(60_000);
    const person = phone('+4915190000077');
    const evidence = { sourceIp: '203.0.113.9', userAgent: 'race/1.0', pageUrl: '', inboundMessageId: '', freeText: '' };
    for (let i = 0; i < 1200; i++) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, evidence, requestId: `ex-race-${i}` }));
    const request = await verifiedRequest(person);
    const requestId = request.name.split('/').pop()!;
    const subjectId = request.subject.split('/').pop()!;
    // The erasure commits after the first page of events went out (the sink is awaited between pages).
    let erased = false;
    let chunksAfterErasure = 0;
    const sink = {
      async write(part: { kind: string; done?: number }) {
        if (erased && part.kind !== 'progress') chunksAfterErasure++;
        if (!erased && part.kind === 'progress' && (part.done ?? 0) >= 500) {
          await s.app.services.subjectEraser.erase(T, subjectId);
          erased = true;
        }
      },
    };
    let failure: unknown;
    await s.app.services.subjectExporter.export(DEVELOPMENT_PRINCIPAL, T, requestId, sink as never).catch((err: unknown) => (failure = err));
    expect(erased, 'the erasure ran during the export').to.equal(true);
    expect((failure as { reason?: string })?.reason).to.equal('SUBJECT_ERASED');
    expect(chunksAfterErasure, 'at most what was buffered before the erasure').to.be.at.most(1);
    const after = (await call(rights, rights.getRequest, { name: request.name })).request!;
    expect(after.state, 'not recorded as done').to.equal(RequestState.REQUEST_STATE_IN_PROGRESS);
    const exported = await s.app.services.audit.entries(T, 0, 100_000, { types: ['SUBJECT_EXPORTED'], subjectId });
    expect(exported, 'no SUBJECT_EXPORTED entry').to.deep.equal([]);

    // Exported again: every person it reached is erased; the request is closed, not left in progress for good.
    const again = await expectGrpcError(exportAll(request.name), status.FAILED_PRECONDITION);
    expect(again.reason).to.equal('SUBJECT_ERASED');
    const closed = (await call(rights, rights.getRequest, { name: request.name })).request!;
    expect(closed.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(closed.transitions[closed.transitions.length - 1].note).to.include('nothing left to export');
    const third = await expectGrpcError(exportAll(request.name), status.FAILED_PRECONDITION);
    expect(third.reason).to.equal('SUBJECT_ERASED');
    expect((await call(rights, rights.getRequest, { name: request.name })).request!.transitions, 'completed once').to.have.length(closed.transitions.length);
  });

  it('streams a JSON package and an HTML rendering with a signed manifest of their hashes', async function () {
    this.timeout(60_000);
    const person = phone('+4915190000001');
    const evidence = { sourceIp: '203.0.113.9', userAgent: '<script>alert(1)</script>', pageUrl: '', inboundMessageId: '', freeText: '' };
    for (let i = 0; i < 600; i++) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, evidence, requestId: `ex-ev-${i}` }));
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person, channel: Channel.CHANNEL_WHATSAPP, text: 'hello', messageId: 'wamid.x', requestId: 'ex-in' }));
    const request = await verifiedRequest(person);

    const parts = await exportAll(request.name);
    const kinds = parts.map((p) => p.part!.$case);
    expect(kinds[0]).to.equal('progress');
    expect(kinds[kinds.length - 1]).to.equal('manifest');
    const pkg = Buffer.concat(parts.filter((p) => p.part!.$case === 'packageChunk').map((p) => p.part!.value as Buffer));
    const html = Buffer.concat(parts.filter((p) => p.part!.$case === 'htmlChunk').map((p) => p.part!.value as Buffer));
    const manifest = parts[parts.length - 1].part!.value as { packageSha256: string; htmlSha256: string; events: number; signedManifest: string };

    const doc = JSON.parse(pkg.toString('utf8'));
    expect(doc.format).to.equal('consent-ledger.export/v1');
    expect(doc.identifiers).to.deep.equal([{ subject: doc.subject, kind: 'PHONE', value: '+4915190000001' }]);
    expect(doc.parts).to.deep.equal([{ position: 1, label: 'identifier 1 (PHONE)', identifierKind: 'PHONE', subject: doc.subject, viaLink: null, outcome: 'exported' }]);
    expect(doc.consentEvents.every((e: { foundBy: number }) => e.foundBy === 1)).to.equal(true);
    expect(doc.consentEvents).to.have.length(601);
    expect(doc.consentEvents[0].evidence.userAgent).to.equal('<script>alert(1)</script>');
    expect(doc.serviceWindows).to.have.length(1);
    expect(doc.requests.map((r: { name: string }) => r.name)).to.include(request.name);
    // Art. 15(1) (found missing by a probe): the request's steps and each event's request id.
    const own = doc.requests.find((r: { name: string }) => r.name === request.name) as { history: Array<{ state: string; note: string }>; extensionReason: unknown; rejectionReason: unknown };
    expect(own.history.map((h) => h.state)).to.deep.equal(['RECEIVED', 'VERIFIED', 'IN_PROGRESS']);
    expect(own.history[1].note).to.match(/identity verified/);
    expect(JSON.stringify(own.history), 'staff are not named').to.not.include('dev-admin');
    expect([own.extensionReason, own.rejectionReason]).to.deep.equal([null, null]);
    expect(doc.consentEvents[0].requestId).to.equal('ex-ev-0');
    expect(manifest.events).to.equal(601);
    expect(createHash('sha256').update(pkg).digest('hex')).to.equal(manifest.packageSha256);
    expect(createHash('sha256').update(html).digest('hex')).to.equal(manifest.htmlSha256);
    expect(html.toString('utf8')).to.include('&lt;script&gt;alert(1)&lt;/script&gt;').and.not.include('<script>alert');

    const signed = await verifyReceipt(manifest.signedManifest, (await call(keys, keys.getPublicKeys, { name: `tenants/${T}` })).jwks);
    expect(signed.payload).to.include({ packageSha256: manifest.packageSha256, htmlSha256: manifest.htmlSha256, request: request.name });

    const after = (await call(rights, rights.getRequest, { name: request.name })).request!;
    expect(after.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    const last = after.transitions[after.transitions.length - 1];
    expect(last.note).to.match(/^exported 601 events/);
    expect(last.principal, 'who read what').to.equal('dev-admin');
  });

  it('Art. 15(1): the package names the purposes with their description, and the HTML shows everything the JSON holds', async function () {
    await call(s.purposes, s.purposes.createPurpose, {
      parent: `tenants/${T}`,
      purposeId: 'weekly',
      purpose: { name: '', displayName: 'Weekly newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: 'Offers of the week, every Monday', createTime: undefined, allowedWhileRestricted: false },
      requestId: '',
    });
    await call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${T}/purposes/weekly`, language: 'en', text: 'Weekly offers', requestId: 'notice-weekly' });
    const person = phone('+4915190000077');
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, purpose: `tenants/${T}/purposes/weekly`, notice: `tenants/${T}/purposes/weekly/notices/1` }));
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person, purpose: `tenants/${T}/purposes/orders`, notice: `tenants/${T}/purposes/orders/notices/1` }));
    const request = await verifiedRequest(person);
    const parts = await exportAll(request.name);
    const doc = JSON.parse(Buffer.concat(parts.filter((p) => p.part!.$case === 'packageChunk').map((p) => p.part!.value as Buffer)).toString('utf8'));
    expect(doc.purposes).to.deep.equal([
      { name: `tenants/${T}/purposes/orders`, displayName: 'orders', category: 'UTILITY', description: '', allowedWhileRestricted: false },
      { name: `tenants/${T}/purposes/weekly`, displayName: 'Weekly newsletter', category: 'MARKETING', description: 'Offers of the week, every Monday', allowedWhileRestricted: false },
    ]);
    expect(Object.keys(doc).pop(), 'the events stay the last member').to.equal('consentEvents');
    const html = Buffer.concat(parts.filter((p) => p.part!.$case === 'htmlChunk').map((p) => p.part!.value as Buffer)).toString('utf8');
    for (const text of ['What your data is used for', 'Weekly newsletter', 'Offers of the week, every Monday', 'Your consents now', 'OPTED_IN', 'Your requests', request.name, 'Restrictions of processing', 'Your objection to direct marketing']) {
      expect(html, text).to.include(text);
    }
  });

  it('refuses unverified and erasure requests; a stranger gets an empty package', async function () {
    const unverified = await verifiedRequest(email('nv@example.com'), RequestKind.REQUEST_KIND_ACCESS, false);
    expect((await expectGrpcError(exportAll(unverified.name), status.FAILED_PRECONDITION)).reason).to.equal('IDENTITY_NOT_VERIFIED');
    const erasure = await verifiedRequest(email('nv@example.com'), RequestKind.REQUEST_KIND_ERASURE);
    expect((await expectGrpcError(exportAll(erasure.name), status.FAILED_PRECONDITION)).reason).to.equal('NOT_AN_EXPORT');
    const stranger = await verifiedRequest(email('stranger@example.com'), RequestKind.REQUEST_KIND_PORTABILITY);
    const parts = await exportAll(stranger.name);
    const doc = JSON.parse(Buffer.concat(parts.filter((p) => p.part!.$case === 'packageChunk').map((p) => p.part!.value as Buffer)).toString('utf8'));
    expect(doc.subject).to.equal(null);
    expect(doc.consentEvents).to.deep.equal([]);
  });
});
