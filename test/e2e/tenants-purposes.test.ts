import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { PurposeCategory } from '../../src/gen/consent/v1/common';
import { CreatePurposeRequest, PublishNoticeRequest } from '../../src/gen/consent/v1/purpose';
import { CreateTenantRequest, TenantSettings } from '../../src/gen/consent/v1/tenant';
import { forEachDatabase } from '../support/databases';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('TenantService and PurposeService over gRPC', (db) => {
  let s: TestServer;
  before(async function () {
    s = await startTestServer(db());
  });
  after(async () => s?.stop());

  const createTenant = (fields: Partial<CreateTenantRequest>) =>
    call(s.tenants, s.tenants.createTenant, CreateTenantRequest.fromPartial({ displayName: 'x', ...fields }));
  const createPurpose = (tenant: string, purposeId: string, category = PurposeCategory.PURPOSE_CATEGORY_MARKETING, requestId = '') =>
    call(s.purposes, s.purposes.createPurpose, CreatePurposeRequest.fromPartial({ parent: `tenants/${tenant}`, purposeId, purpose: { category }, requestId }));

  it('creates a tenant with default settings', async function () {
    const { tenant } = await createTenant({ tenantId: 'alpha', displayName: 'Alpha GmbH' });
    expect(tenant!.name).to.equal('tenants/alpha');
    expect(tenant!.settings!.serviceWindow).to.deep.equal({ seconds: 86400, nanos: 0 });
    expect(tenant!.settings!.optOutKeywords).to.include.members(['STOP', 'STOPP', 'ABMELDEN', 'UNSUBSCRIBE']);
    expect(tenant!.settings!.optInKeywords).to.have.members(['START', 'UNSTOP']);
    const got = await call(s.tenants, s.tenants.getTenant, { name: 'tenants/alpha' });
    expect(got.tenant).to.deep.equal(tenant);
  });

  it('a repeated create with the same request_id returns the tenant; another is ALREADY_EXISTS', async function () {
    const first = await createTenant({ tenantId: 'beta', requestId: 'create-beta' });
    expect(await createTenant({ tenantId: 'beta', requestId: 'create-beta' })).to.deep.equal(first);
    const err = await expectGrpcError(createTenant({ tenantId: 'beta', requestId: 'other' }), status.ALREADY_EXISTS);
    expect(err.reason).to.equal('TENANT_ALREADY_EXISTS');
  });

  it('refuses bad tenant ids and settings, and creates nothing', async function () {
    for (const tenantId of ['', 'A', 'ab', 'Upper', '1abc', 'has space', 'x'.repeat(64)]) {
      const err = await expectGrpcError(createTenant({ tenantId }), status.INVALID_ARGUMENT);
      expect(err.fields).to.deep.equal(['tenant_id']);
    }
    const err = await expectGrpcError(
      createTenant({ tenantId: 'gamma', settings: TenantSettings.fromPartial({ serviceWindow: { seconds: 10, nanos: 0 }, optInKeywords: ['STOP'] }) }),
      status.INVALID_ARGUMENT,
    );
    expect(err.fields).to.have.members(['settings.service_window', 'settings.opt_in_keywords']);
    await expectGrpcError(call(s.tenants, s.tenants.getTenant, { name: 'tenants/gamma' }), status.NOT_FOUND);
  });

  it('GetTenant: malformed name is INVALID_ARGUMENT, unknown is NOT_FOUND', async function () {
    expect((await expectGrpcError(call(s.tenants, s.tenants.getTenant, { name: 'alpha' }), status.INVALID_ARGUMENT)).fields).to.deep.equal(['name']);
    expect((await expectGrpcError(call(s.tenants, s.tenants.getTenant, { name: 'tenants/nobody' }), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
  });

  it('UpdateTenantSettings changes only the masked fields', async function () {
    await createTenant({ tenantId: 'delta' });
    const { settings } = await call(s.tenants, s.tenants.updateTenantSettings, {
      settings: TenantSettings.fromPartial({ name: 'tenants/delta/settings', serviceWindow: { seconds: 3600, nanos: 0 }, optInKeywords: [] }),
      updateMask: ['service_window', 'opt_in_keywords'],
    });
    expect(settings!.serviceWindow).to.deep.equal({ seconds: 3600, nanos: 0 });
    expect(settings!.optInKeywords, 'an empty list in the mask clears it').to.deep.equal([]);
    expect(settings!.optOutKeywords).to.include('STOP');

    const noStop = await expectGrpcError(
      call(s.tenants, s.tenants.updateTenantSettings, { settings: TenantSettings.fromPartial({ name: 'tenants/delta/settings' }), updateMask: ['opt_out_keywords'] }),
      status.INVALID_ARGUMENT,
    );
    expect(noStop.fields, 'withdrawal by keyword cannot be switched off').to.deep.equal(['settings.opt_out_keywords']);

    const typo = await expectGrpcError(
      call(s.tenants, s.tenants.updateTenantSettings, {
        settings: TenantSettings.fromPartial({ name: 'tenants/delta/settings', purposeConsentValidity: { newsleter: { seconds: 730 * 86400, nanos: 0 } } }),
        updateMask: [],
      }),
      status.INVALID_ARGUMENT,
    );
    expect(typo.reason, 'a validity key that names no purpose would mean consent that never expires').to.equal('PURPOSE_NOT_FOUND');
    expect(typo.fields).to.deep.equal(['settings.purpose_consent_validity["newsleter"]']);
    await call(s.purposes, s.purposes.createPurpose, { parent: 'tenants/delta', purposeId: 'newsletter', purpose: { name: '', displayName: 'News', category: 1, description: '', createTime: undefined, allowedWhileRestricted: false }, requestId: '' });

    const implicit = await call(s.tenants, s.tenants.updateTenantSettings, {
      settings: TenantSettings.fromPartial({ name: 'tenants/delta/settings', optOutKeywords: [' halt ', 'Stop'], purposeConsentValidity: { newsletter: { seconds: 730 * 86400, nanos: 0 } } }),
      updateMask: [],
    });
    expect(implicit.settings!.optOutKeywords).to.deep.equal(['HALT', 'STOP']);
    expect(implicit.settings!.serviceWindow, 'unpopulated fields are kept without a mask').to.deep.equal({ seconds: 3600, nanos: 0 });
    expect(implicit.settings!.purposeConsentValidity.newsletter).to.deep.equal({ seconds: 730 * 86400, nanos: 0 });

    const bad = await expectGrpcError(
      call(s.tenants, s.tenants.updateTenantSettings, { settings: TenantSettings.fromPartial({ name: 'tenants/delta/settings' }), updateMask: ['display_name'] }),
      status.INVALID_ARGUMENT,
    );
    expect(bad.fields).to.deep.equal(['update_mask']);
    const after = await call(s.tenants, s.tenants.getTenant, { name: 'tenants/delta' });
    expect(after.tenant!.settings!.optOutKeywords).to.deep.equal(['HALT', 'STOP']);

    const reset = await call(s.tenants, s.tenants.updateTenantSettings, { settings: TenantSettings.fromPartial({ name: 'tenants/delta/settings' }), updateMask: ['service_window'] });
    expect(reset.settings!.serviceWindow, 'a masked field without a value goes back to its default').to.deep.equal({ seconds: 86400, nanos: 0 });
  });

  it('creates purposes, refuses duplicates and missing categories, lists them in pages', async function () {
    await createTenant({ tenantId: 'eps' });
    for (const id of ['p-a', 'p-b', 'p-c', 'p-d', 'p-e']) await createPurpose('eps', id);
    expect((await expectGrpcError(createPurpose('eps', 'p-a'), status.ALREADY_EXISTS)).reason).to.equal('PURPOSE_ALREADY_EXISTS');
    const again = await createPurpose('eps', 'p-z', PurposeCategory.PURPOSE_CATEGORY_UTILITY, 'rz');
    expect(await createPurpose('eps', 'p-z', PurposeCategory.PURPOSE_CATEGORY_UTILITY, 'rz')).to.deep.equal(again);
    expect((await expectGrpcError(createPurpose('eps', 'p-f', PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED), status.INVALID_ARGUMENT)).fields).to.deep.equal(['purpose.category']);
    expect((await expectGrpcError(createPurpose('eps', 'Bad_Id'), status.INVALID_ARGUMENT)).fields).to.deep.equal(['purpose_id']);
    expect((await expectGrpcError(createPurpose('nobody', 'p-a'), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');

    const names: string[] = [];
    let pageToken = '';
    do {
      const page = await call(s.purposes, s.purposes.listPurposes, { parent: 'tenants/eps', pageSize: 2, pageToken });
      expect(page.purposes.length).to.be.at.most(2);
      names.push(...page.purposes.map((p) => p.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(names).to.deep.equal(['p-a', 'p-b', 'p-c', 'p-d', 'p-e', 'p-z'].map((p) => `tenants/eps/purposes/${p}`));
  });

  it('publishes immutable notice versions with the SHA-256 of their text', async function () {
    await createTenant({ tenantId: 'zeta' });
    await createPurpose('zeta', 'news');
    const publish = (text: string, requestId: string, language = 'de') =>
      call(s.purposes, s.purposes.publishNotice, PublishNoticeRequest.fromPartial({ parent: 'tenants/zeta/purposes/news', language, text, requestId }));
    const v1 = await publish('Ja, ich möchte den Newsletter.', 'n1');
    expect(v1.notice!.version).to.equal(1);
    expect(v1.notice!.textSha256).to.equal(createHash('sha256').update('Ja, ich möchte den Newsletter.', 'utf8').digest('hex'));
    const v2 = await publish('Version zwei', 'n2', 'en-GB');
    expect(v2.notice!.version).to.equal(2);
    expect(await publish('Version zwei', 'n2', 'en-GB'), 'a retry returns the same version').to.deep.equal(v2);
    expect((await expectGrpcError(publish('Version drei', 'n2', 'en-GB'), status.FAILED_PRECONDITION)).reason, 'a reused request_id').to.equal('REQUEST_ID_REUSED');
    const list = await call(s.purposes, s.purposes.listNotices, { parent: 'tenants/zeta/purposes/news', pageSize: 0, pageToken: '' });
    expect(list.notices.map((n) => n.version)).to.deep.equal([2, 1]);
    expect((await expectGrpcError(publish('', 'n3'), status.INVALID_ARGUMENT)).fields).to.deep.equal(['text']);
    expect((await expectGrpcError(publish('x', 'n4', 'not a tag'), status.INVALID_ARGUMENT)).fields).to.deep.equal(['language']);
    expect((await expectGrpcError(publish('x', ''), status.INVALID_ARGUMENT)).fields).to.deep.equal(['request_id']);
    await expectGrpcError(
      call(s.purposes, s.purposes.publishNotice, PublishNoticeRequest.fromPartial({ parent: 'tenants/zeta/purposes/none', language: 'de', text: 'x', requestId: 'n5' })),
      status.NOT_FOUND,
    );
  });
});
