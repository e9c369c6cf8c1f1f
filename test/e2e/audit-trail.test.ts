import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { leafHash, verifyInclusion } from '../../src/audit/merkle';
import { Channel } from '../../src/gen/consent/v1/common';
import { RecordInboundMessageRequest } from '../../src/gen/consent/v1/consent';
import { CreateRequestRequest, LegalHoldGround, ReceivedVia, RequestKind, SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { TenantSettings } from '../../src/gen/consent/v1/tenant';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

/** Every state change appends its audit entry in the same transaction; entries hold no personal data. */
forEachDatabase('audit trail of state changes', (db) => {
  let s: TestServer;
  const T = 'audited';
  const PHONE = '+4915177770001';
  before(async function () {
    s = await startTestServer(db());
  });
  after(async () => s?.stop());

  it('records each change once, in order, verifiably, without personal data; a refused call records nothing', async function () {
    this.timeout(60_000);
    const rights = new SubjectRightsServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
    await call(s.tenants, s.tenants.updateTenantSettings, { settings: TenantSettings.fromPartial({ name: `tenants/${T}/settings`, serviceWindow: { seconds: 7200, nanos: 0 } }), updateMask: ['service_window'] });
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(PHONE), evidence: { sourceIp: '198.51.100.4', userAgent: 'Audit/1', pageUrl: '', inboundMessageId: '', freeText: '' } }));
    const sizeBefore = await s.app.services.audit.size(T);
    await expectGrpcError(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(PHONE), notice: `tenants/${T}/purposes/newsletter/notices/9` })), status.NOT_FOUND);
    expect(await s.app.services.audit.size(T), 'a refused call appends nothing').to.equal(sizeBefore);
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: phone(PHONE), channel: Channel.CHANNEL_SMS, text: 'STOP', requestId: 'audit-in' }));
    const { hold } = await call(rights, rights.placeLegalHold, { parent: `tenants/${T}`, subjectIdentifier: phone(PHONE), ground: LegalHoldGround.LEGAL_HOLD_GROUND_B_LEGAL_OBLIGATION, note: 'tax', requestId: 'audit-hold' });
    await call(rights, rights.releaseLegalHold, { name: hold!.name, note: 'done' });
    const { request } = await call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: phone(PHONE), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'audit-dsr' }));
    await call(rights, rights.verifyIdentity, { name: request!.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo', identifierPositions: [] });
    await call(rights, rights.eraseSubject, { name: request!.name });
    rights.close();

    const entries = await s.app.services.audit.entries(T, 0, 1000);
    const types = entries.map((e) => JSON.parse(e.entryJson).type);
    expect(types).to.deep.equal([
      'TENANT_CREATED',
      'PURPOSE_CREATED', 'NOTICE_PUBLISHED', 'PURPOSE_CREATED', 'NOTICE_PUBLISHED', 'PURPOSE_CREATED', 'NOTICE_PUBLISHED', 'PURPOSE_CREATED', 'NOTICE_PUBLISHED',
      'TENANT_SETTINGS_UPDATED',
      'CONSENT_EVENT_OPT_IN',
      'CONSENT_EVENT_INBOUND_MESSAGE', 'CONSENT_EVENT_OPT_OUT',
      'LEGAL_HOLD_PLACED', 'LEGAL_HOLD_RELEASED',
      'REQUEST_RECEIVED', 'REQUEST_VERIFIED', 'REQUEST_IN_PROGRESS', 'SUBJECT_ERASED', 'REQUEST_COMPLETED',
    ]);
    expect(entries.map((e) => e.seq)).to.deep.equal(entries.map((_, i) => i));
    const all = entries.map((e) => e.entryJson).join('\n');
    for (const planted of [PHONE, PHONE.slice(1), '198.51.100', 'Audit/1']) expect(all, `no ${planted} in the audit log`).to.not.include(planted);
    const optIn = JSON.parse(entries[10].entryJson);
    expect(optIn.payloadSha256, 'the evidence ciphertext is hashed, not copied').to.match(/^[0-9a-f]{64}$/);

    const size = entries.length;
    const root = await s.app.services.audit.root(T, size);
    for (const [i, e] of entries.entries()) {
      expect(leafHash(Buffer.from(e.entryJson, 'utf8')).toString('hex')).to.equal(e.leafHash);
      verifyInclusion(BigInt(i), BigInt(size), Buffer.from(e.leafHash, 'hex'), await s.app.services.audit.inclusionProof(T, i, size), root);
    }
  });
});
