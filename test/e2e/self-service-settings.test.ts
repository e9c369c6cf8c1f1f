import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreateTenantRequest, SelfServiceSettings, TenantSettings } from '../../src/gen/consent/v1/tenant';
import { forEachDatabase } from '../support/databases';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

const PNG_1PX = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
const SVG = Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10" fill="#1f4e79"/></svg>');
const DAY = 86_400;

/** TenantSettings.self_service (issue 20): defaults, masks, validation, older stored settings. */
forEachDatabase('Tenant settings for the privacy center (self_service)', (db) => {
  let s: TestServer;
  before(async function () {
    s = await startTestServer(db());
    await call(s.tenants, s.tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId: 'shop', displayName: 'Shop GmbH' }));
  });
  after(async () => s?.stop());

  const get = async () => (await call(s.tenants, s.tenants.getTenant, { name: 'tenants/shop' })).tenant!.settings!.selfService!;
  const update = (selfService: Partial<SelfServiceSettings>, updateMask: string[] = []) =>
    call(s.tenants, s.tenants.updateTenantSettings, {
      settings: TenantSettings.fromPartial({ name: 'tenants/shop/settings', selfService: SelfServiceSettings.fromPartial(selfService) }),
      updateMask,
    });

  it('a new tenant has the documented defaults', async function () {
    const got = await get();
    expect(got).to.deep.include({ brandName: '', brandColor: '#1f4e79', logoContentType: '', whatsappNumber: '', smsNumber: '' });
    expect(got.languages).to.deep.equal(['en', 'de']);
    expect(got.confirmationTtl).to.deep.equal({ seconds: DAY, nanos: 0 });
    expect(got.maxPreferenceLinkTtl).to.deep.equal({ seconds: 30 * DAY, nanos: 0 });
    expect(got.linkVerifies).to.deep.equal([]);
    expect(got.embedOrigins).to.deep.equal([]);
    expect(got.logo.length).to.equal(0);
  });

  it('without a mask sets the populated fields one by one, normalised; the others stay', async function () {
    await update({ whatsappNumber: '+4930123456' });
    const { settings } = await update({ brandColor: '#1F4E79', languages: ['de', 'en'], linkVerifies: ['ACCESS', 'PORTABILITY'], embedOrigins: ['https://Shop.Example', 'https://shop.example/'] });
    const got = settings!.selfService!;
    expect(got.brandColor).to.equal('#1f4e79');
    expect(got.languages).to.deep.equal(['de', 'en']);
    expect(got.linkVerifies).to.deep.equal(['ACCESS', 'PORTABILITY']);
    expect(got.embedOrigins, 'canonical origins, duplicates dropped').to.deep.equal(['https://shop.example']);
    expect(got.whatsappNumber, 'a field the call did not populate').to.equal('+4930123456');
    expect(await get()).to.deep.equal(got);
  });

  it('stores a PNG or SVG logo with its type; a masked field without a value goes back to its default', async function () {
    await update({ logo: PNG_1PX, logoContentType: 'image/png', brandName: 'Shop' });
    let got = await get();
    expect(Buffer.from(got.logo).equals(PNG_1PX)).to.equal(true);
    expect(got.logoContentType).to.equal('image/png');
    await update({ logo: SVG, logoContentType: 'image/svg+xml' }, ['self_service.logo']);
    got = await get();
    expect(Buffer.from(got.logo).toString()).to.equal(SVG.toString());
    await update({}, ['self_service.logo_content_type', 'self_service.brand_name']);
    got = await get();
    expect(got.logo.length, 'either path clears the logo and its type together').to.equal(0);
    expect(got.logoContentType).to.equal('');
    expect(got.brandName).to.equal('');
    expect(got.whatsappNumber).to.equal('+4930123456');
  });

  it('the mask "self_service" replaces the whole group (unset fields take their defaults)', async function () {
    await update({ smsNumber: '+4915112345678', confirmationTtl: { seconds: 3600, nanos: 0 } });
    const { settings } = await update({ maxPreferenceLinkTtl: { seconds: 7 * DAY, nanos: 0 } }, ['self_service']);
    const got = settings!.selfService!;
    expect(got.maxPreferenceLinkTtl).to.deep.equal({ seconds: 7 * DAY, nanos: 0 });
    expect(got.smsNumber).to.equal('');
    expect(got.whatsappNumber).to.equal('');
    expect(got.confirmationTtl).to.deep.equal({ seconds: DAY, nanos: 0 });
    expect(got.languages).to.deep.equal(['en', 'de']);
  });

  it('refuses invalid values naming each field, and changes nothing', async function () {
    await update({ brandName: 'Before' });
    const before = await get();
    const cases: Array<[Partial<SelfServiceSettings>, string, string]> = [
      [{ brandColor: '#ffff00' }, 'settings.self_service.brand_color', 'LOW_CONTRAST'],
      [{ brandColor: 'navy' }, 'settings.self_service.brand_color', 'INVALID_COLOR'],
      [{ brandName: 'x'.repeat(101) }, 'settings.self_service.brand_name', 'INVALID_NAME'],
      [{ logo: SVG, logoContentType: 'image/png' }, 'settings.self_service.logo', 'NOT_PNG'],
      [{ logo: PNG_1PX, logoContentType: 'image/gif' }, 'settings.self_service.logo_content_type', 'UNSUPPORTED_TYPE'],
      [{ logo: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'), logoContentType: 'image/svg+xml' }, 'settings.self_service.logo', 'ACTIVE_CONTENT'],
      [{ logo: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" onload="x()"></svg>'), logoContentType: 'image/svg+xml' }, 'settings.self_service.logo', 'ACTIVE_CONTENT'],
      [{ logo: Buffer.from('<svg><image href="https://tracker.example/p.png"/></svg>'), logoContentType: 'image/svg+xml' }, 'settings.self_service.logo', 'ACTIVE_CONTENT'],
      [{ logo: Buffer.concat([PNG_1PX, Buffer.alloc(33 * 1024)]), logoContentType: 'image/png' }, 'settings.self_service.logo', 'TOO_LARGE'],
      [{ languages: ['en', 'fr'] }, 'settings.self_service.languages', 'UNSUPPORTED_LANGUAGE'],
      [{ languages: ['de', 'de'] }, 'settings.self_service.languages', 'UNSUPPORTED_LANGUAGE'],
      [{ whatsappNumber: '030 123456' }, 'settings.self_service.whatsapp_number', 'INVALID_PHONE_NUMBER'],
      [{ smsNumber: '+0123' }, 'settings.self_service.sms_number', 'INVALID_PHONE_NUMBER'],
      [{ confirmationTtl: { seconds: 60, nanos: 0 } }, 'settings.self_service.confirmation_ttl', 'OUT_OF_RANGE'],
      [{ confirmationTtl: { seconds: 8 * DAY, nanos: 0 } }, 'settings.self_service.confirmation_ttl', 'OUT_OF_RANGE'],
      [{ linkVerifies: ['RECTIFICATION'] }, 'settings.self_service.link_verifies', 'INVALID_KIND'],
      [{ maxPreferenceLinkTtl: { seconds: 91 * DAY, nanos: 0 } }, 'settings.self_service.max_preference_link_ttl', 'OUT_OF_RANGE'],
      [{ embedOrigins: ['http://shop.example'] }, 'settings.self_service.embed_origins[0]', 'INVALID_ORIGIN'],
      [{ embedOrigins: ['https://shop.example', 'https://shop.example/page'] }, 'settings.self_service.embed_origins[1]', 'INVALID_ORIGIN'],
      [{ embedOrigins: ['https://*.example'] }, 'settings.self_service.embed_origins[0]', 'INVALID_ORIGIN'],
      [{ embedOrigins: Array.from({ length: 11 }, (_, i) => `https://s${i}.example`) }, 'settings.self_service.embed_origins', 'TOO_MANY'],
    ];
    for (const [value, field, reason] of cases) {
      const err = await expectGrpcError(update(value), status.INVALID_ARGUMENT);
      expect(err.fields, JSON.stringify(value).slice(0, 80)).to.include(field);
      expect(err.reason, field).to.equal(reason);
    }
    const unknown = await expectGrpcError(update({ brandName: 'x' }, ['self_service.nope']), status.INVALID_ARGUMENT);
    expect(unknown.fields).to.deep.equal(['update_mask']);
    expect(await get()).to.deep.equal(before);
  });

  it('CreateTenant takes self-service settings and checks them', async function () {
    const { tenant } = await call(
      s.tenants,
      s.tenants.createTenant,
      CreateTenantRequest.fromPartial({ tenantId: 'cafe', settings: TenantSettings.fromPartial({ selfService: { whatsappNumber: '+4930999999', languages: ['de'] } }) }),
    );
    expect(tenant!.settings!.selfService!.whatsappNumber).to.equal('+4930999999');
    expect(tenant!.settings!.selfService!.languages).to.deep.equal(['de']);
    expect(tenant!.settings!.selfService!.brandColor, 'unset fields default').to.equal('#1f4e79');
    const err = await expectGrpcError(
      call(s.tenants, s.tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId: 'bar', settings: TenantSettings.fromPartial({ selfService: { brandColor: '#eeeeee' } }) })),
      status.INVALID_ARGUMENT,
    );
    expect(err.fields).to.deep.equal(['settings.self_service.brand_color']);
    await expectGrpcError(call(s.tenants, s.tenants.getTenant, { name: 'tenants/bar' }), status.NOT_FOUND);
  });

  it('settings stored before self_service existed read with its defaults', async function () {
    await call(s.tenants, s.tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId: 'legacy' }));
    const rows: Array<{ settings_json: string }> = await s.app.dataSource.query("SELECT settings_json FROM tenants WHERE id = 'legacy'");
    const stored = JSON.parse(rows[0].settings_json) as Record<string, unknown>;
    delete stored.selfService;
    await s.app.dataSource.query("UPDATE tenants SET settings_json = ? WHERE id = 'legacy'", [JSON.stringify(stored)]);
    s.app.services.tenants.evict('legacy');
    const got = (await call(s.tenants, s.tenants.getTenant, { name: 'tenants/legacy' })).tenant!.settings!.selfService!;
    expect(got.brandColor).to.equal('#1f4e79');
    expect(got.languages).to.deep.equal(['en', 'de']);
  });
});
