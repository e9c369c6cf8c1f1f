import { credentials, status } from '@grpc/grpc-js';
import { IdentityServiceClient } from '../../src/gen/consent/v1/identity';
import { SelfServiceServiceClient, WithdrawWithLinkRequest } from '../../src/gen/consent/v1/self_service';
import { Channel } from '../../src/gen/consent/v1/common';
import { expect } from 'chai';
import { ListConsentEventsRequest } from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

/**
 * A well-formed name of something that does not exist is NOT_FOUND with the specific reason, and
 * the message names what was looked for (never an id that may hold personal data); a malformed
 * name is INVALID_ARGUMENT naming the field.
 */
forEachDatabase('missing resources are NOT_FOUND', (db) => {
  let s: TestServer;
  const T = 'notfound';
  const missingId = '0123456789abcdef0123456789abcdef';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());
  const rights = () => s.rights;
  const keys = () => s.keys;
  let identityClient: IdentityServiceClient | undefined;
  const identity = () => (identityClient ??= new IdentityServiceClient(s.address, credentials.createInsecure()));
  after(() => identityClient?.close());
  let selfClient: SelfServiceServiceClient | undefined;
  const self = () => (selfClient ??= new SelfServiceServiceClient(s.address, credentials.createInsecure()));
  after(() => selfClient?.close());
  const signUp = (tenant: string, purpose: string, version: number) =>
    call(self(), self().signUp, {
      parent: `tenants/${tenant}`,
      subjectIdentifier: { kind: { $case: 'email', value: 'nf.person@example.org' }, defaultRegion: '' },
      choices: [{ purpose: `tenants/${tenant}/purposes/${purpose}`, channel: Channel.CHANNEL_EMAIL, notice: `tenants/${tenant}/purposes/${purpose}/notices/${version}` }],
      evidence: undefined,
      language: 'en',
      requestId: `nf-su-${Math.random()}`,
    });
  const selfService = self;
  /** A preference link of a person recorded for it. */
  const preferenceToken = async () => {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915170009990'), requestId: 'nf-pref' }));
    return (await call(selfService(), selfService().createPreferenceLink, { parent: `tenants/${T}`, subjectIdentifier: phone('+4915170009990'), ttl: undefined })).token;
  };

  const cases: Array<[string, () => Promise<unknown>, string, string]> = [
    ['RecordConsent for a purpose that does not exist', () => call(s.consent, s.consent.recordConsent, consentRequest(T, { purpose: `tenants/${T}/purposes/nope`, notice: `tenants/${T}/purposes/nope/notices/1` })), 'PURPOSE_NOT_FOUND', `tenants/${T}/purposes/nope`],
    ['RecordConsent opting out of a purpose that does not exist', () => call(s.consent, s.consent.recordConsent, consentRequest(T, { purpose: `tenants/${T}/purposes/nope`, kind: 2, notice: '' })), 'PURPOSE_NOT_FOUND', `tenants/${T}/purposes/nope`],
    ['RecordConsent naming a notice version never published', () => call(s.consent, s.consent.recordConsent, consentRequest(T, { notice: `tenants/${T}/purposes/newsletter/notices/7` })), 'NOTICE_NOT_FOUND', `tenants/${T}/purposes/newsletter/notices/7`],
    ['RecordConsent in a tenant that does not exist', () => call(s.consent, s.consent.recordConsent, consentRequest('ghost', {})), 'TENANT_NOT_FOUND', 'tenants/ghost'],
    ['CheckConsent for a purpose that does not exist', () => call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { purpose: `tenants/${T}/purposes/nope` }) }), 'PURPOSE_NOT_FOUND', `tenants/${T}/purposes/nope`],
    ['ListConsentEvents filtered by a purpose that does not exist', () => call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, purpose: `tenants/${T}/purposes/nope` })), 'PURPOSE_NOT_FOUND', `tenants/${T}/purposes/nope`],
    ['PublishNotice for a purpose that does not exist', () => call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${T}/purposes/nope`, language: 'en', text: 'x', requestId: 'nf-1' }), 'PURPOSE_NOT_FOUND', `tenants/${T}/purposes/nope`],
    ['GetTenant of a tenant that does not exist', () => call(s.tenants, s.tenants.getTenant, { name: 'tenants/ghost' }), 'TENANT_NOT_FOUND', 'tenants/ghost'],
    ['GetConsentState of a person never recorded', () => call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: phone('+4915170009999') }), 'SUBJECT_NOT_FOUND', ''],
    ['GetRequest of an unknown request id', () => call(rights(), rights().getRequest, { name: `tenants/${T}/requests/${missingId}` }), 'REQUEST_NOT_FOUND', `tenants/${T}/requests/${missingId}`],
    ['GetRequest of an id the service never assigns', () => call(rights(), rights().getRequest, { name: `tenants/${T}/requests/req-2026-001` }), 'REQUEST_NOT_FOUND', `tenants/${T}/requests`],
    ['VerifyIdentity of an unknown request', () => call(rights(), rights().verifyIdentity, { name: `tenants/${T}/requests/${missingId}`, method: 'ID', verifiedBy: 'dpo', identifierPositions: [] }), 'REQUEST_NOT_FOUND', `tenants/${T}/requests/${missingId}`],
    ['EraseSubject of an unknown request', () => call(rights(), rights().eraseSubject, { name: `tenants/${T}/requests/${missingId}` }), 'REQUEST_NOT_FOUND', `tenants/${T}/requests/${missingId}`],
    ['ReleaseLegalHold of an unknown hold', () => call(rights(), rights().releaseLegalHold, { name: `tenants/${T}/legalHolds/${missingId}`, note: 'claim settled' }), 'LEGAL_HOLD_NOT_FOUND', `tenants/${T}/legalHolds/${missingId}`],
    ['UnlinkIdentifiers of an unknown link', () => call(identity(), identity().unlinkIdentifiers, { name: `tenants/${T}/identityLinks/${missingId}`, reason: 'not the same person' }), 'IDENTITY_LINK_NOT_FOUND', `tenants/${T}/identityLinks/${missingId}`],
    ['UnlinkIdentifiers of an id the service never assigns', () => call(identity(), identity().unlinkIdentifiers, { name: `tenants/${T}/identityLinks/link-1`, reason: 'x' }), 'IDENTITY_LINK_NOT_FOUND', `tenants/${T}/identityLinks`],
    ['LinkIdentifiers with a request that does not exist', () => call(identity(), identity().linkIdentifiers, { parent: `tenants/${T}`, first: phone('+4915170009998'), second: phone('+4915170009997'), method: '', verifiedBy: '', request: `tenants/${T}/requests/${missingId}`, requestId: 'nf-link' }), 'REQUEST_NOT_FOUND', `tenants/${T}/requests/${missingId}`],
    ['SignUp for a purpose that does not exist', () => signUp(T, 'nope', 1), 'PURPOSE_NOT_FOUND', `tenants/${T}/purposes/nope`],
    ['SignUp naming a notice version never published', () => signUp(T, 'newsletter', 7), 'NOTICE_NOT_FOUND', `tenants/${T}/purposes/newsletter/notices/7`],
    ['SignUp in a tenant that does not exist', () => signUp('ghost', 'newsletter', 1), 'TENANT_NOT_FOUND', 'tenants/ghost'],
    ['ConfirmSignUp in a tenant that does not exist', () => call(self(), self().confirmSignUp, { parent: 'tenants/ghost', token: 'x.y.z', evidence: undefined }), 'TENANT_NOT_FOUND', 'tenants/ghost'],
    ['ListConfirmationDeliveries of a tenant that does not exist', () => call(self(), self().listConfirmationDeliveries, { parent: 'tenants/ghost', pageSize: 0, pageToken: '' }), 'TENANT_NOT_FOUND', 'tenants/ghost'],
    ['AcknowledgeConfirmationDeliveries of an id the service never assigns', () => call(self(), self().acknowledgeConfirmationDeliveries, { parent: `tenants/${T}`, names: [`tenants/${T}/confirmationDeliveries/d-1`] }), 'CONFIRMATION_DELIVERY_NOT_FOUND', `tenants/${T}/confirmationDeliveries`],
    ['CreatePreferenceLink for a person never recorded', () => call(selfService(), selfService().createPreferenceLink, { parent: `tenants/${T}`, subjectIdentifier: phone('+4915170009996'), ttl: undefined }), 'SUBJECT_NOT_FOUND', ''],
    ['CreatePreferenceLink in a tenant that does not exist', () => call(selfService(), selfService().createPreferenceLink, { parent: 'tenants/ghost', subjectIdentifier: phone('+4915170009996'), ttl: undefined }), 'TENANT_NOT_FOUND', 'tenants/ghost'],
    ['GetPreferences in a tenant that does not exist', () => call(selfService(), selfService().getPreferences, { parent: 'tenants/ghost', token: 'a.b.c' }), 'TENANT_NOT_FOUND', 'tenants/ghost'],
    [
      'WithdrawWithLink of a purpose that does not exist',
      async () => call(selfService(), selfService().withdrawWithLink, WithdrawWithLinkRequest.fromPartial({ parent: `tenants/${T}`, token: await preferenceToken(), scopes: [{ purpose: `tenants/${T}/purposes/nope`, channel: 1 }], requestId: 'nf-wd' })),
      'PURPOSE_NOT_FOUND',
      `tenants/${T}/purposes/nope`,
    ],
    ['GetKeyRotation of an unknown rotation', () => call(keys(), keys().getKeyRotation, { name: `tenants/${T}/keyRotations/${missingId}` }), 'KEY_ROTATION_NOT_FOUND', `tenants/${T}/keyRotations/${missingId}`],
  ];
  for (const [name, run, reason, resource] of cases) {
    it(name, async function () {
      const err = await expectGrpcError(run(), status.NOT_FOUND);
      expect(err.reason).to.equal(reason);
      if (resource) expect(err.message, 'the message names what was looked for').to.include(resource);
    });
  }

  it('an id that holds personal data is not echoed', async function () {
    const err = await expectGrpcError(call(rights(), rights().getRequest, { name: `tenants/${T}/requests/+4915112345678` }), status.NOT_FOUND);
    expect(err.message).to.not.include('4915112345678');
  });

  it('a malformed name is INVALID_ARGUMENT naming the field', async function () {
    for (const bad of ['requests/x', `tenants/${T}/requests`, `tenants/${T}/requests/a/b`, `tenants/BAD/requests/${missingId}`]) {
      const err = await expectGrpcError(call(rights(), rights().getRequest, { name: bad }), status.INVALID_ARGUMENT);
      expect(err.fields, bad).to.deep.equal(['name']);
    }
  });
});
