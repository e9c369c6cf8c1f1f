import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Browser, BrowserContext, Page } from 'playwright-core';
import { ApiClient } from '../../src/console/api-client';
import { RunningConsole, startConsole } from '../../src/console/server';
import { ConsoleConfig } from '../../src/config/config';
import { createLogger } from '../../src/logging/logger';
import { PurposeCategory } from '../../src/gen/consent/v1/common';
import { JobState, KeyEpochState } from '../../src/gen/consent/v1/key';
import { launchChromium, screenshots, seriousViolations } from '../support/browser';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER, TokenIssuer } from '../support/tokens';

/**
 * Issue 19 point 5: the console's tenant admin pages in Chromium against a real server: settings
 * (shown, changed, a refused value marked at its field), purposes (created through the form),
 * notice versions (published through the form, then shown with their text and SHA-256), the
 * tenant key (epochs, a rotation started behind a confirmation page and followed to its end),
 * what each role gets, and CSRF refusals. Same set-up as console-dpo.test.ts (proxy sign-in, one
 * browser context per person). Screenshots go to test-artefacts/console/<database>/admin-*.png.
 */

const HEADER = 'x-forwarded-access-token';
const TENANT = 'acme';
const PHONE_A = '+4915112340011';
const PHONE_B = '+4915112340012';
const PERSONAL = [PHONE_A, PHONE_B, '4915112340'];
const NOTICE_TEXT = 'We send you our newsletter twice a month.\nYou can unsubscribe at any time by replying STOP.';

forEachDatabase('Web console tenant admin pages in Chromium', (db, kind) => {
  let s: TestServer;
  let issuer: TokenIssuer;
  let web: RunningConsole;
  let base: string;
  let browser: Browser;
  const consoleLog: Buffer[] = [];
  const tokens: Record<string, string> = {};
  const urls: string[] = [];
  const contexts: BrowserContext[] = [];
  const { shot } = screenshots('console', kind);

  const as = (token: string) => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${token}`);
    return md;
  };
  const idOf = (name: string) => name.slice(name.lastIndexOf('/') + 1);
  const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
  const getSettings = async () => (await call(s.tenants, s.tenants.getTenant, { name: `tenants/${TENANT}` }, as(tokens.setup))).tenant!.settings!;
  const listPurposes = async () => (await call(s.purposes, s.purposes.listPurposes, { parent: `tenants/${TENANT}`, pageSize: 500, pageToken: '' }, as(tokens.setup))).purposes;
  const listNotices = async (purpose: string) =>
    (await call(s.purposes, s.purposes.listNotices, { parent: `tenants/${TENANT}/purposes/${purpose}`, pageSize: 500, pageToken: '' }, as(tokens.setup))).notices;
  const keyInfo = async () => (await call(s.keys, s.keys.getTenantKeyInfo, { name: `tenants/${TENANT}` }, as(tokens.setup))).epochs;
  const rowsOf = (page: Page, selector: string) =>
    page.locator(selector).evaluateAll((trs) => trs.map((tr) => Array.from(tr.children as ArrayLike<{ textContent: string | null }>).map((td) => (td.textContent ?? '').trim())));

  async function pageAs(who: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, extraHTTPHeaders: { [HEADER]: tokens[who] } });
    contexts.push(context);
    const page = await context.newPage();
    page.on('request', (r) => urls.push(r.url()));
    return page;
  }

  before(async function () {
    this.timeout(120_000);
    browser = await launchChromium();
    issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    writeFileSync(path.join(db().dataDir, 'jwks.json'), issuer.jwks);
    s = await startTestServer(db(), {
      authMode: 'authenticated',
      tokens: { jwksFile: path.join(db().dataDir, 'jwks.json'), issuer: TEST_ISSUER, audience: TEST_AUDIENCE, algorithms: ['ES256'], clockSkewMs: 60_000 },
    });
    s.clock.set(Date.now());
    for (const [who, roles, tenants] of [
      ['setup', ['admin', 'recorder', 'dpo'], '*'],
      ['admin', ['admin'], [TENANT]],
      ['dpo', ['dpo'], [TENANT]],
      ['auditor', ['auditor'], [TENANT]],
      ['sender', ['sender'], [TENANT]],
      ['stranger', ['admin'], ['other']],
    ] as const) {
      tokens[who] = await issuer.sign({ sub: `${who}-person`, roles: [...roles], tenants: tenants === '*' ? '*' : [...tenants] });
    }
    const setup = as(tokens.setup);
    await call(s.tenants, s.tenants.createTenant, { tenantId: TENANT, displayName: 'ACME', requestId: '', settings: undefined }, setup);
    await call(
      s.purposes,
      s.purposes.createPurpose,
      {
        parent: `tenants/${TENANT}`,
        purposeId: 'order-updates',
        purpose: { name: '', displayName: 'Order updates', category: PurposeCategory.PURPOSE_CATEGORY_UTILITY, description: 'Delivery news', createTime: undefined, allowedWhileRestricted: false },
        requestId: '',
      },
      setup,
    );
    await call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${TENANT}/purposes/order-updates`, language: 'de', text: 'Lieferstatus per SMS.', requestId: 'n1' }, setup);
    // People with keys, so a rotation has subject keys to re-wrap.
    for (const p of [PHONE_A, PHONE_B]) await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(p), purpose: `tenants/${TENANT}/purposes/order-updates`, notice: `tenants/${TENANT}/purposes/order-updates/notices/1` }), setup);
    const logStream = new PassThrough();
    logStream.on('data', (c: Buffer) => consoleLog.push(c));
    const config: ConsoleConfig = { port: 0, bindAddress: '127.0.0.1', signIn: 'proxy', proxyHeader: HEADER };
    web = await startConsole(config, { api: new ApiClient({ address: s.address }), logger: createLogger('debug', logStream), now: () => s.clock.now() });
    base = `http://127.0.0.1:${web.port}`;
  });

  after(async function () {
    this.timeout(30_000);
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await web?.close();
    await s?.stop();
  });

  it('the tenant page, reached from the header, shows the settings as GetTenant has them and the purposes; an admin gets the forms', async function () {
    this.timeout(60_000);
    const page = await pageAs('admin');
    await page.goto(`${base}/tenants/${TENANT}/requests`);
    const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/admin')), page.click(`header a[href="/tenants/${TENANT}/admin"]`)]);
    expect(response.status()).to.equal(200);
    const settings = await getSettings();
    expect(await page.locator('#fact-service-window').textContent()).to.equal('1d');
    expect(settings.serviceWindow!.seconds).to.equal(86_400);
    expect(await page.locator('#fact-opt-out').textContent()).to.equal(settings.optOutKeywords.join(' '));
    expect(await page.locator('#fact-opt-in').textContent()).to.equal(settings.optInKeywords.join(' '));
    expect(await page.locator('#fact-default-validity').textContent()).to.equal('no expiry');
    expect(await rowsOf(page, 'table.purposes tbody tr')).to.deep.equal([['order-updates', 'Order updates', 'utility', 'denied', 'Delivery news', (await listPurposes())[0].createTime!.toISOString().slice(0, 16).replace('T', ' ') + ' UTC']]);
    expect(await page.locator('#settings-form').count()).to.equal(1);
    expect(await page.locator('#purpose-form').count()).to.equal(1);
    expect(await page.locator('#service_window').inputValue()).to.equal('1d');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'admin-tenant');
  });

  it('create a purpose through the form, then publish its notice: the page shows the published text and the SHA-256 the service computed (and the console checked)', async function () {
    this.timeout(60_000);
    const page = await pageAs('admin');
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    await page.fill('#purpose_id', 'newsletter');
    await page.fill('#display_name', 'Newsletter');
    await page.selectOption('#category', 'marketing');
    await page.fill('#description', 'Monthly offers');
    await Promise.all([page.waitForURL(/\/admin\/purposes\/newsletter$/), page.click('#purpose-form button[type=submit]')]);
    const created = (await listPurposes()).find((p) => idOf(p.name) === 'newsletter')!;
    expect(created.category).to.equal(PurposeCategory.PURPOSE_CATEGORY_MARKETING);
    expect(created.displayName).to.equal('Newsletter');
    expect(await page.locator('[role=status]').first().textContent()).to.include('The purpose was created');
    expect(await page.locator('table.notices tbody tr').textContent()).to.include('No notice published yet');

    await page.fill('#language', 'en');
    await page.fill('#text', NOTICE_TEXT);
    await Promise.all([page.waitForURL(/\/admin\/purposes\/newsletter\?published=1$/), page.click('#notice-form button[type=submit]')]);
    const notices = await listNotices('newsletter');
    expect(notices).to.have.length(1);
    // The browser sent CRLF line breaks; the console published the text with LF, as typed.
    expect(notices[0].text).to.equal(NOTICE_TEXT);
    expect(notices[0].textSha256).to.equal(sha256(NOTICE_TEXT));
    expect(await page.locator('#published-heading').textContent()).to.equal('Published: version 1 (en)');
    expect(await page.locator('#published-text').textContent()).to.equal(NOTICE_TEXT);
    expect(await page.locator('#published-sha256').textContent()).to.equal(sha256(NOTICE_TEXT));
    expect(await page.locator('#published-check').textContent()).to.include('The console computed the same SHA-256');
    expect(await rowsOf(page, 'table.notices tbody tr')).to.deep.equal([['1', 'en', NOTICE_TEXT, sha256(NOTICE_TEXT), notices[0].createTime!.toISOString().slice(0, 16).replace('T', ' ') + ' UTC']]);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'admin-notice-published');

    // A second version: newest first, both listed with their own hashes.
    await page.fill('#language', 'de');
    await page.fill('#text', 'Unser Newsletter.');
    await Promise.all([page.waitForURL(/published=2$/), page.click('#notice-form button[type=submit]')]);
    expect((await rowsOf(page, 'table.notices tbody tr')).map((r) => r.slice(0, 4))).to.deep.equal([
      ['2', 'de', 'Unser Newsletter.', sha256('Unser Newsletter.')],
      ['1', 'en', NOTICE_TEXT, sha256(NOTICE_TEXT)],
    ]);

    // A refused version: the API's field violation is shown at the field, the text is kept, nothing published.
    await page.fill('#language', 'not a language!');
    await page.fill('#text', 'Kept text');
    const [refused] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#notice-form button[type=submit]')]);
    expect(refused.status()).to.equal(400);
    expect(await page.locator('[role=alert]').textContent()).to.match(/INVALID_ARGUMENT \(INVALID_LANGUAGE\)/);
    expect(await page.locator('#language-error').textContent()).to.include('language: must be a BCP 47 tag');
    expect(await page.locator('#language').getAttribute('aria-invalid')).to.equal('true');
    expect(await page.locator('#text').inputValue()).to.equal('Kept text');
    expect(await page.locator('#published').count()).to.equal(0);
    expect(await listNotices('newsletter')).to.have.length(2);
    expect(await seriousViolations(page)).to.deep.equal([]);

    // A purpose id that is taken: 409 ALREADY_EXISTS on the tenant page, the form keeps its values.
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    await page.fill('#purpose_id', 'newsletter');
    await page.fill('#display_name', 'Again');
    const [taken] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#purpose-form button[type=submit]')]);
    expect(taken.status()).to.equal(409);
    expect(await page.locator('[role=alert]').textContent()).to.include('ALREADY_EXISTS (PURPOSE_ALREADY_EXISTS)');
    expect(await page.locator('#display_name').inputValue()).to.equal('Again');
    expect(await listPurposes()).to.have.length(2);
  });

  it('settings: only the changed fields are sent; a value the service refuses is marked at its field and nothing changes; an unreadable one is not sent', async function () {
    this.timeout(60_000);
    const page = await pageAs('admin');
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    // Someone else changes the opt-out keywords after the form was opened: the form must not undo it.
    await call(s.tenants, s.tenants.updateTenantSettings, { settings: { ...(await getSettings()), optOutKeywords: ['STOP', 'HALT'] }, updateMask: ['opt_out_keywords'] }, as(tokens.setup));
    await page.fill('#service_window', '48h');
    await page.fill('#opt_in_keywords', 'START YES UNSTOP GO');
    await page.fill('#default_validity', '24mo');
    await page.fill('#purpose_validity', 'newsletter 730d');
    await Promise.all([page.waitForNavigation(), page.click('#settings-form button[type=submit]')]);
    let settings = await getSettings();
    expect(settings.serviceWindow!.seconds).to.equal(172_800);
    expect(settings.optInKeywords).to.deep.equal(['START', 'YES', 'UNSTOP', 'GO']);
    expect(settings.defaultConsentValidityMonths).to.equal(24);
    expect(settings.purposeConsentValidity).to.deep.equal({ newsletter: { seconds: 730 * 86_400, nanos: 0 } });
    expect(settings.optOutKeywords, 'the field changed meanwhile is kept').to.deep.equal(['STOP', 'HALT']);
    expect(await page.locator('[role=status]').textContent()).to.include('The settings were saved');
    expect(await page.locator('#fact-service-window').textContent()).to.equal('2d');
    expect(await page.locator('#fact-default-validity').textContent()).to.equal('24mo');
    expect(await page.locator('#fact-purpose-validity').textContent()).to.equal('newsletter 730d');

    // Out of range (8 days): the API's violation next to the field, the typed value kept, nothing changed.
    const before = JSON.stringify(await getSettings());
    await page.fill('#service_window', '8d');
    const [refused] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#settings-form button[type=submit]')]);
    expect(refused.status()).to.equal(400);
    expect(await page.locator('[role=alert]').textContent()).to.match(/INVALID_ARGUMENT \(OUT_OF_RANGE\)/);
    expect(await page.locator('#service_window-error').textContent()).to.equal('settings.service_window: must be between 1 minute and 7 days');
    expect(await page.locator('#service_window').getAttribute('aria-invalid')).to.equal('true');
    expect(await page.locator('#service_window').inputValue()).to.equal('8d');
    expect(JSON.stringify(await getSettings())).to.equal(before);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'admin-settings-refused');

    // A validity for a purpose the tenant does not have: refused at the per-purpose field.
    await page.fill('#service_window', '2d');
    await page.fill('#purpose_validity', 'no-such-purpose 12mo');
    const [unknown] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#settings-form button[type=submit]')]);
    expect(unknown.status()).to.equal(400);
    expect(await page.locator('#purpose_validity-error').textContent()).to.include('no-such-purpose');
    expect(await page.locator('#service_window-error').count()).to.equal(0);
    expect(JSON.stringify(await getSettings())).to.equal(before);

    // Not a duration at all: the console does not send it.
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    await page.fill('#service_window', 'soon');
    const [unreadable] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#settings-form button[type=submit]')]);
    expect(unreadable.status()).to.equal(400);
    expect(await page.locator('[role=alert]').textContent()).to.include('INVALID_ARGUMENT (UNREADABLE_VALUE)');
    expect(await page.locator('#service_window-error').textContent()).to.include('24h');
    expect(JSON.stringify(await getSettings())).to.equal(before);

    // The form sent unchanged changes nothing.
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    await Promise.all([page.waitForNavigation(), page.click('#settings-form button[type=submit]')]);
    settings = await getSettings();
    expect(JSON.stringify(settings)).to.equal(before);
  });

  it('privacy-center settings: set through the same form (only the changed fields), a colour white text is unreadable on refused at its field', async function () {
    this.timeout(60_000);
    const page = await pageAs('admin');
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    expect(await page.locator('#privacy-center-settings').textContent()).to.equal('Privacy center');
    await page.fill('#pc_brand_color', '#2a6041');
    await page.fill('#pc_whatsapp_number', '+49 30 1234567');
    await page.fill('#pc_link_verifies', 'ACCESS');
    await page.fill('#pc_embed_origins', 'https://shop.example');
    await Promise.all([page.waitForNavigation(), page.click('#settings-form button[type=submit]')]);
    const saved = (await getSettings()).selfService!;
    expect(saved.brandColor).to.equal('#2a6041');
    expect(saved.whatsappNumber).to.equal('+49301234567');
    expect(saved.linkVerifies).to.deep.equal(['ACCESS']);
    expect(saved.embedOrigins).to.deep.equal(['https://shop.example']);
    expect(saved.languages, 'a field not changed keeps its value').to.deep.equal(['en', 'de']);
    expect(await page.locator('#fact-privacy-center').textContent()).to.match(/#2a6041, languages en de; channels offered: e-mail, WhatsApp; no logo; links verify: ACCESS/);

    const before = JSON.stringify(await getSettings());
    await page.fill('#pc_brand_color', '#ffff00');
    const [refused] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#settings-form button[type=submit]')]);
    expect(refused.status()).to.equal(400);
    expect(await page.locator('#pc_brand_color-error').textContent()).to.match(/^settings\.self_service\.brand_color: white text on it has contrast 1\.07:1/);
    expect(await page.locator('#pc_brand_color').inputValue()).to.equal('#ffff00');
    expect(JSON.stringify(await getSettings())).to.equal(before);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'admin-privacy-center-refused');
  });

  it('key: the epochs as GetTenantKeyInfo has them; a rotation behind a confirmation page (nothing without the tick), followed until it ends; the key page then shows the new epoch', async function () {
    this.timeout(90_000);
    const page = await pageAs('admin');
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    await Promise.all([page.waitForURL(/\/admin\/keys$/), page.click(`a[href="/tenants/${TENANT}/admin/keys"]`)]);
    const epochs = await keyInfo();
    expect(epochs).to.have.length(1);
    expect(await page.locator('#current-epoch').textContent()).to.match(/^epoch 1, created /);
    expect(await page.locator('#rotation-status').textContent()).to.equal('none running');
    expect(await page.locator('#last-rotation').textContent()).to.equal('never rotated');
    expect((await rowsOf(page, 'table.epochs tbody tr')).map((r) => [r[0], r[1], r[2], r[5]])).to.deep.equal([['1', 'active', epochs[0].rootKeyId, String(epochs[0].subjectKeys)]]);
    expect(epochs[0].subjectKeys).to.equal(2);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'admin-keys');

    await Promise.all([page.waitForURL(/\/keys\/rotate$/), page.click('#rotate-action a')]);
    expect(await page.locator('main').textContent()).to.include('cannot be undone');
    expect(await seriousViolations(page)).to.deep.equal([]);
    const [unconfirmed] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#rotate-form button[type=submit]')]);
    expect(unconfirmed.status()).to.equal(400);
    expect(await page.locator('[role=alert]').textContent()).to.include('NOT_CONFIRMED');
    expect(await keyInfo()).to.have.length(1);

    await page.check('#confirm');
    await Promise.all([page.waitForURL(/\/keys\/rotations\/[A-Za-z0-9_-]+$/), page.click('#rotate-form button[type=submit]')]);
    const rotationId = new URL(page.url()).pathname.split('/').pop()!;
    const name = `tenants/${TENANT}/keyRotations/${rotationId}`;
    expect(await page.locator('[role=status]').textContent()).to.include('The rotation was started');
    const deadline = Date.now() + 30_000;
    let job = (await call(s.keys, s.keys.getKeyRotation, { name }, as(tokens.setup))).rotation!;
    while (job.state === JobState.JOB_STATE_RUNNING && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      job = (await call(s.keys, s.keys.getKeyRotation, { name }, as(tokens.setup))).rotation!;
    }
    expect(job.state).to.equal(JobState.JOB_STATE_SUCCEEDED);
    await page.reload();
    expect(await page.locator('#rotation-state').textContent()).to.equal('succeeded');
    expect(await page.locator('#rotation-progress').textContent()).to.equal(`${job.subjectKeysDone} of ${job.subjectKeysTotal} subject keys re-wrapped (100%)`);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'admin-rotation');

    await page.goto(`${base}/tenants/${TENANT}/admin/keys`);
    const after = await keyInfo();
    expect(after.map((e) => e.state)).to.deep.equal([KeyEpochState.KEY_EPOCH_STATE_DESTROYED, KeyEpochState.KEY_EPOCH_STATE_ACTIVE]);
    expect(await page.locator('#current-epoch').textContent()).to.match(/^epoch 2, created /);
    expect(await page.locator('#last-rotation').textContent()).to.match(/^to epoch 2, started /);
    expect((await rowsOf(page, 'table.epochs tbody tr')).map((r) => r[1])).to.deep.equal(['destroyed', 'active']);

    // The lookup form finds the rotation by id; an unknown id is the API's 404.
    await page.fill('#rotation', rotationId);
    await Promise.all([page.waitForURL(new RegExp(`/keys/rotations/${rotationId}$`)), page.click('#rotation-lookup button[type=submit]')]);
    expect(await page.locator('#rotation-state').textContent()).to.equal('succeeded');
    const missing = await page.goto(`${base}/tenants/${TENANT}/admin/keys/rotations/nosuchrotation`);
    expect(missing!.status()).to.equal(404);
    expect(await page.locator('[role=alert]').textContent()).to.include('NOT_FOUND (KEY_ROTATION_NOT_FOUND)');
    // ShredTenant is not offered anywhere.
    for (const url of [`/tenants/${TENANT}/admin`, `/tenants/${TENANT}/admin/keys`, `/tenants/${TENANT}/admin/keys/rotate`]) {
      await page.goto(`${base}${url}`);
      expect((await page.content()).toLowerCase(), url).not.to.include('shred');
    }
  });

  it('roles: a DPO and an auditor read the tenant, purposes and notices without any form, and get 403 for the key; a sender and an admin of another tenant get nothing', async function () {
    this.timeout(60_000);
    for (const who of ['dpo', 'auditor']) {
      const page = await pageAs(who);
      expect((await page.goto(`${base}/tenants/${TENANT}/admin`))!.status(), who).to.equal(200);
      expect(await page.locator('#fact-service-window').textContent()).to.equal('2d');
      expect(await page.locator('table.purposes tbody tr').count()).to.equal(2);
      expect(await page.locator('form').count(), `${who}: no forms`).to.equal(0);
      expect(await page.locator('input[name=_csrf]').count()).to.equal(0);
      expect(await seriousViolations(page)).to.deep.equal([]);
      if (who === 'auditor') await shot(page, 'admin-tenant-auditor');
      expect((await page.goto(`${base}/tenants/${TENANT}/admin/purposes/newsletter`))!.status()).to.equal(200);
      expect(await page.locator('table.notices tbody tr').count()).to.equal(2);
      expect(await page.locator('form').count()).to.equal(0);
      for (const url of [`/tenants/${TENANT}/admin/keys`, `/tenants/${TENANT}/admin/keys/rotate`]) {
        expect((await page.goto(`${base}${url}`))!.status(), `${who} ${url}`).to.equal(403);
        expect(await page.locator('[role=alert]').textContent()).to.match(/PERMISSION_DENIED \(ROLE_NOT_ALLOWED\)/);
        expect(await page.locator('form').count()).to.equal(0);
        expect(await page.locator('table.epochs').count()).to.equal(0);
      }
    }

    const sender = await pageAs('sender');
    for (const url of [`/tenants/${TENANT}/admin`, `/tenants/${TENANT}/admin/purposes/newsletter`, `/tenants/${TENANT}/admin/keys`, `/tenants/${TENANT}/admin/keys/rotate`]) {
      expect((await sender.goto(`${base}${url}`))!.status(), url).to.equal(403);
      expect(await sender.locator('[role=alert]').textContent()).to.match(/PERMISSION_DENIED \(ROLE_NOT_ALLOWED\)/);
      expect(await sender.locator('form').count()).to.equal(0);
      expect(await sender.locator('table').count()).to.equal(0);
      expect(await sender.content()).not.to.include(NOTICE_TEXT.slice(0, 20));
    }
    expect(await seriousViolations(sender)).to.deep.equal([]);
    await shot(sender, 'admin-sender-refused');

    // The admin role on another tenant: this tenant answers as one that does not exist.
    const stranger = await pageAs('stranger');
    for (const url of [`/tenants/${TENANT}/admin`, `/tenants/${TENANT}/admin/keys`]) {
      expect((await stranger.goto(`${base}${url}`))!.status(), url).to.equal(404);
      expect(await stranger.locator('[role=alert]').textContent()).to.include('NOT_FOUND (TENANT_NOT_FOUND)');
      expect(await stranger.locator('form').count()).to.equal(0);
    }
  });

  it('the admin forms refuse a POST without a CSRF token or with a forged one, and change nothing', async function () {
    this.timeout(60_000);
    const page = await pageAs('admin');
    await page.goto(`${base}/tenants/${TENANT}/admin`);
    const settingsBefore = JSON.stringify(await getSettings());
    const purposesBefore = (await listPurposes()).length;
    const noticesBefore = (await listNotices('newsletter')).length;
    const epochsBefore = (await keyInfo()).length;
    for (const [target, form] of [
      [`/tenants/${TENANT}/admin/settings`, { service_window: '3h', orig_service_window: '2d' }],
      [`/tenants/${TENANT}/admin/purposes`, { purpose_id: 'csrf-purpose', category: 'marketing', request_id: 'csrf-1' }],
      [`/tenants/${TENANT}/admin/purposes/newsletter/notices`, { language: 'en', text: 'no token', request_id: 'csrf-2' }],
      [`/tenants/${TENANT}/admin/keys/rotate`, { confirm: 'rotate', request_id: 'csrf-3' }],
    ] as Array<[string, Record<string, string>]>) {
      for (const extra of [{}, { _csrf: 'forged-token' }] as Array<Record<string, string>>) {
        const r = await page.request.post(`${base}${target}`, { form: { ...form, ...extra }, maxRedirects: 0 });
        expect(r.status(), target).to.equal(403);
        expect(await r.text()).to.include('CSRF_CHECK_FAILED');
      }
    }
    expect(JSON.stringify(await getSettings())).to.equal(settingsBefore);
    expect(await listPurposes()).to.have.length(purposesBefore);
    expect(await listNotices('newsletter')).to.have.length(noticesBefore);
    expect(await keyInfo()).to.have.length(epochsBefore);
  });

  it('no phone number reached an address or a log line; the console logs route patterns', function () {
    expect(urls.length).to.be.greaterThan(10);
    const log = Buffer.concat(consoleLog).toString('utf8');
    for (const value of PERSONAL) {
      for (const url of urls) expect(url, 'a URL').not.to.include(value);
      expect(log, 'the console log').not.to.include(value);
      expect(s.logs(), 'the server log').not.to.include(value);
    }
    expect(log).to.include('"route":"/tenants/:tenant/admin/settings"');
    expect(log).to.include('"route":"/tenants/:tenant/admin/keys/rotations/:rotation"');
    expect(log).not.to.include(NOTICE_TEXT.slice(0, 20));
  });
});
