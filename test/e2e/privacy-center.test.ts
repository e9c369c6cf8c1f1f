import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { credentials, Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Browser, BrowserContext, Page } from 'playwright-core';
import { PrivacyCenterConfig } from '../../src/config/config';
import { Channel, PurposeCategory } from '../../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, DecisionReason, Verdict } from '../../src/gen/consent/v1/consent';
import { SelfServiceServiceClient } from '../../src/gen/consent/v1/self_service';
import { CreateRequestRequest, ReceivedVia, RequestKind, RequestState } from '../../src/gen/consent/v1/subject_rights';
import { SelfServiceSettings, TenantSettings } from '../../src/gen/consent/v1/tenant';
import { createLogger } from '../../src/logging/logger';
import { ApiClient } from '../../src/privacy-center/api-client';
import { RunningPrivacyCenter, startPrivacyCenter } from '../../src/privacy-center/server';
import { launchChromium, screenshots, seriousViolations } from '../support/browser';
import { createTestDatabase, forEachDatabase } from '../support/databases';
import { email, phone } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER } from '../support/tokens';

/**
 * Issue 20: the privacy center in Chromium against a real server. The API runs with bearer tokens;
 * the privacy center calls it with its own token (role self_service) from a file, like in
 * production. Sign-up by WhatsApp (confirmed by the inbound message) and by e-mail (confirmed by
 * the link), the preference page (withdraw one, withdraw all, a check answering DENY right after,
 * the OPT_OUT with evidence), requests by link, failure pages, German and English, branding,
 * embedding, axe-core on every page, and no personal data in any log line or address.
 * Screenshots: test-artefacts/privacy-center/<database>/.
 */

const TENANT = 'acme';
const PLAIN = 'plain';
const WA_NUMBER = '+4930123456';
const SMS_NUMBER = '+4930123457';
const PHONE_A = '+4915112340101';
const PHONE_B = '+4915112340102';
const PHONE_LIMIT = '+4915112340103';
const PHONE_R = '+4915112340105';
const PHONE_O = '+4915112340106';
const EMAIL_A = 'erika.mustermann@example.org';
const EMAIL_B = 'max.muster@example.org';
const PERSONAL = ['203.0.113.77', PHONE_A, PHONE_B, PHONE_LIMIT, PHONE_R, PHONE_O, EMAIL_A, EMAIL_B, '15112340', 'erika.mustermann', 'max.muster', encodeURIComponent(EMAIL_A)];
const LOGO = Buffer.from(
  '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="36" viewBox="0 0 120 36"><rect width="120" height="36" rx="6" fill="#8a1538"/><circle cx="18" cy="18" r="10" fill="#ffffff"/><rect x="36" y="12" width="72" height="12" rx="3" fill="#ffffff"/></svg>',
);
const BRAND = '#8a1538';

forEachDatabase('Privacy center in Chromium', (db, kind) => {
  let s: TestServer;
  let selfService: SelfServiceServiceClient;
  let pc: RunningPrivacyCenter;
  let pcLimited: RunningPrivacyCenter;
  let pcProxied: RunningPrivacyCenter;
  let base: string;
  let browser: Browser;
  const pcLog: Buffer[] = [];
  const tokens: Record<string, string> = {};
  const urls: string[] = [];
  const contexts: BrowserContext[] = [];
  const { shot } = screenshots('privacy-center', kind);

  const as = (who: string) => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${tokens[who]}`);
    return md;
  };
  const purpose = (id: string, tenant = TENANT) => `tenants/${tenant}/purposes/${id}`;
  const check = async (identifier: ReturnType<typeof phone>, purposeId: string, channel: Channel, consistencyToken?: string) =>
    (
      await call(
        s.consent,
        s.consent.checkConsent,
        {
          parent: `tenants/${TENANT}`,
          query: { subjectIdentifier: identifier, purpose: purpose(purposeId), category: 0, channel, at: undefined },
          consistency: { requirement: consistencyToken ? { $case: 'atLeastAsFresh', value: consistencyToken } : { $case: 'fullyConsistent', value: true } },
        },
        as('sender'),
      )
    ).decision!;
  const events = async (identifier: ReturnType<typeof phone>) =>
    (await call(s.consent, s.consent.listConsentEvents, { parent: `tenants/${TENANT}`, subjectIdentifier: identifier, purpose: '', channel: 0, startTime: undefined, endTime: undefined, pageSize: 100, pageToken: '' }, as('dpo'))).consentEvents;
  const preferenceLink = async (identifier: ReturnType<typeof phone>, ttlSeconds?: number) => {
    const res = await call(selfService, selfService.createPreferenceLink, { parent: `tenants/${TENANT}`, subjectIdentifier: identifier, ttl: ttlSeconds ? { seconds: ttlSeconds, nanos: 0 } : undefined }, as('recorder'));
    return absolute(res.link);
  };
  // Without PRIVACY_CENTER_PUBLIC_URL the API hands out the path: the tenant's system prefixes it.
  const absolute = (link: string) => (link.startsWith('http') ? link : `${base}${link}`);

  async function newPage(options: { locale?: string; userAgent?: string; javaScriptEnabled?: boolean } = {}): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1000, height: 900 }, locale: options.locale ?? 'en-GB', userAgent: options.userAgent, javaScriptEnabled: options.javaScriptEnabled });
    contexts.push(context);
    const page = await context.newPage();
    page.on('request', (r) => urls.push(r.url()));
    page.on('framenavigated', (f) => urls.push(f.url()));
    return page;
  }
  const style = (page: Page, selector: string, property: string) =>
    page.locator(selector).evaluate((e, p) => (globalThis as unknown as { getComputedStyle(e: unknown): Record<string, string> }).getComputedStyle(e)[p], property);
  const submit = async (page: Page, selector: string) => {
    const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click(selector)]);
    await page.waitForLoadState();
    return response;
  };
  const signUp = async (page: Page, identifier: string, boxes: string[]) => {
    await page.fill('#identifier', identifier);
    for (const b of boxes) await page.check(`#c-${b}`);
    return submit(page, '#signup-form button[type=submit]');
  };

  before(async function () {
    this.timeout(180_000);
    browser = await launchChromium();
    const issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    writeFileSync(path.join(db().dataDir, 'jwks.json'), issuer.jwks);
    s = await startTestServer(db(), {
      authMode: 'authenticated',
      tokens: { jwksFile: path.join(db().dataDir, 'jwks.json'), issuer: TEST_ISSUER, audience: TEST_AUDIENCE, algorithms: ['ES256'], clockSkewMs: 60_000 },
    });
    s.clock.set(Date.now());
    for (const [who, roles] of [
      ['admin', ['admin']],
      ['recorder', ['recorder']],
      ['sender', ['sender']],
      ['dpo', ['dpo']],
      ['pc', ['self_service']],
    ] as const) {
      tokens[who] = await issuer.sign({ sub: `${who}-svc`, roles: [...roles], tenants: who === 'pc' || who === 'admin' ? '*' : [TENANT], exp: Math.floor(Date.now() / 1000) + 3600 });
    }
    // The privacy center's own credential, refused by the API: signed by a key it does not know.
    tokens.forged = await issuer.sign({ sub: 'pc-svc', roles: ['self_service'], tenants: '*', exp: Math.floor(Date.now() / 1000) + 3600 }, { forgery: 'unknown-kid' });
    selfService = new SelfServiceServiceClient(s.address, credentials.createInsecure());
    const settings = SelfServiceSettings.fromPartial({
      brandName: 'ACME Shop',
      brandColor: BRAND,
      logo: LOGO,
      logoContentType: 'image/svg+xml',
      languages: ['en', 'de'],
      whatsappNumber: WA_NUMBER,
      smsNumber: SMS_NUMBER,
      linkVerifies: ['ACCESS'],
      embedOrigins: ['https://shop.example'],
    });
    await call(s.tenants, s.tenants.createTenant, { tenantId: TENANT, displayName: 'ACME GmbH', requestId: '', settings: TenantSettings.fromPartial({ selfService: settings }) }, as('admin'));
    await call(s.tenants, s.tenants.createTenant, { tenantId: PLAIN, displayName: 'Plain Ltd', requestId: '', settings: undefined }, as('admin'));
    for (const [tenant, id, label] of [
      [TENANT, 'newsletter', 'Newsletter'],
      [TENANT, 'offers', 'Special offers'],
      [PLAIN, 'newsletter', 'News'],
    ] as const) {
      await call(s.purposes, s.purposes.createPurpose, { parent: `tenants/${tenant}`, purposeId: id, purpose: { name: '', displayName: label, category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: '', createTime: undefined, allowedWhileRestricted: false }, requestId: '' }, as('admin'));
      await call(s.purposes, s.purposes.publishNotice, { parent: purpose(id, tenant), language: 'en', text: `${label}: at most one message a week. Withdraw any time.`, requestId: `${tenant}-${id}-en` }, as('admin'));
      await call(s.purposes, s.purposes.publishNotice, { parent: purpose(id, tenant), language: 'de', text: `${label}: höchstens eine Nachricht pro Woche. Jederzeit widerrufbar.`, requestId: `${tenant}-${id}-de` }, as('admin'));
    }
    const tokenFile = path.join(db().dataDir, 'privacy-center.jwt');
    writeFileSync(tokenFile, `${tokens.pc}\n`);
    const logStream = new PassThrough();
    logStream.on('data', (c: Buffer) => pcLog.push(c));
    const config: PrivacyCenterConfig = { port: 0, bindAddress: '127.0.0.1', publicUrl: '', trustProxy: [], postsPerMinute: 1000, apiTokenFile: tokenFile };
    const logger = createLogger('debug', logStream);
    pc = await startPrivacyCenter(config, { api: ApiClient.fromFiles(s.address, undefined, undefined, tokenFile), logger, tenantCacheMs: 0, now: () => s.clock.now() });
    pcLimited = await startPrivacyCenter({ ...config, postsPerMinute: 2 }, { api: ApiClient.fromFiles(s.address, undefined, undefined, tokenFile), logger, tenantCacheMs: 0 });
    pcProxied = await startPrivacyCenter({ ...config, trustProxy: ['loopback'], publicUrl: 'https://privacy.example.com' }, { api: ApiClient.fromFiles(s.address, undefined, undefined, tokenFile), logger, tenantCacheMs: 0 });
    base = `http://127.0.0.1:${pc.port}`;
  });

  after(async function () {
    this.timeout(30_000);
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await pc?.close();
    await pcLimited?.close();
    await pcProxied?.close();
    selfService?.close();
    await s?.stop();
  });

  it('the sign-up page, in English and German: each purpose with its current notice, version and SHA-256, a box per offered channel, nothing ticked; branded; no serious axe violations', async function () {
    this.timeout(60_000);
    const notices = (await call(s.purposes, s.purposes.listNotices, { parent: purpose('newsletter'), pageSize: 50, pageToken: '' }, as('admin'))).notices;
    for (const [locale, lang, heading] of [
      ['en-GB', 'en', 'Stay in touch'],
      ['de-DE', 'de', 'In Kontakt bleiben'],
    ] as const) {
      const page = await newPage({ locale });
      const response = await page.goto(`${base}/t/${TENANT}/signup`);
      expect(response!.status()).to.equal(200);
      expect(await page.getAttribute('html', 'lang')).to.equal(lang);
      expect(await page.textContent('h1')).to.equal(heading);
      const notice = notices.find((n) => n.language === lang)!;
      const box = page.locator('#purpose-newsletter');
      expect(await box.locator('.notice-text').textContent()).to.equal(notice.text);
      const meta = await box.locator('.notice-meta').textContent();
      expect(meta).to.include(String(notice.version)).and.include(notice.textSha256);
      expect(await box.locator('input[type=checkbox]').evaluateAll((els) => els.map((e) => (e as unknown as { value: string }).value))).to.deep.equal(
        [Channel.CHANNEL_WHATSAPP, Channel.CHANNEL_SMS, Channel.CHANNEL_EMAIL].map((c) => `newsletter|${c}|${notice.version}`),
      );
      expect(await page.locator('input[type=checkbox]:checked').count(), 'nothing pre-ticked').to.equal(0);
      // Branding: the tenant's colour through brand.css (no inline style), its name and logo.
      expect(await style(page, '.brand-bar', 'backgroundColor')).to.equal('rgb(138, 21, 56)');
      expect(await style(page, 'h1', 'color')).to.equal('rgb(138, 21, 56)');
      expect(await page.textContent('.brand-name')).to.equal('ACME Shop');
      expect(await page.locator('img.logo').evaluate((img) => (img as unknown as { complete: boolean; naturalWidth: number }).complete && (img as unknown as { naturalWidth: number }).naturalWidth)).to.equal(120);
      expect(await page.locator('[style]').count(), 'no inline style').to.equal(0);
      expect(await seriousViolations(page)).to.deep.equal([]);
      await shot(page, `signup-${lang}`);
    }
    // ?lang= wins over Accept-Language, and the switch links to the other language.
    const page = await newPage({ locale: 'de-DE' });
    await page.goto(`${base}/t/${TENANT}/signup?lang=en`);
    expect(await page.textContent('h1')).to.equal('Stay in touch');
    await Promise.all([page.waitForURL(/lang=de/), page.click('nav.languages a[hreflang=de]')]);
    expect(await page.textContent('h1')).to.equal('In Kontakt bleiben');
    // A tenant without numbers offers e-mail only.
    await page.goto(`${base}/t/${PLAIN}/signup?lang=en`);
    expect(await page.locator('input[type=checkbox]').evaluateAll((els) => els.map((e) => (e as unknown as { value: string }).value.split('|')[1]))).to.deep.equal([String(Channel.CHANNEL_EMAIL)]);
    expect(await page.textContent('.brand-name')).to.equal('Plain Ltd');
    expect(await style(page, '.brand-bar', 'backgroundColor')).to.equal('rgb(31, 78, 121)');
  });

  it('brand.css and the logo: ETag and revalidation, the logo sandboxed and nosniff; embedding allowed only from the tenant\'s embed_origins', async function () {
    const page = await fetch(`${base}/t/${TENANT}/signup`);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).to.include('frame-ancestors https://shop.example').and.include("script-src 'self'").and.include("style-src 'self'").and.include("default-src 'none'");
    expect(page.headers.get('x-frame-options'), 'X-Frame-Options cannot name origins').to.equal(null);
    expect(page.headers.get('referrer-policy')).to.equal('no-referrer');
    const plain = await fetch(`${base}/t/${PLAIN}/signup`);
    expect(plain.headers.get('content-security-policy')).to.include("frame-ancestors 'none'");
    for (const other of [`/t/${TENANT}/confirm`, `/t/${TENANT}/preferences`]) {
      const r = await fetch(`${base}${other}`);
      expect(r.headers.get('content-security-policy'), other).to.include("frame-ancestors 'none'");
      expect(r.headers.get('x-frame-options'), other).to.equal('DENY');
    }
    const css = await fetch(`${base}/t/${TENANT}/brand.css`);
    expect(css.headers.get('content-type')).to.match(/^text\/css/);
    expect(await css.text()).to.include(`--brand: ${BRAND}`);
    const etag = css.headers.get('etag')!;
    expect(etag).to.match(/^"[0-9a-f]{16}"$/);
    expect((await fetch(`${base}/t/${TENANT}/brand.css`, { headers: { 'if-none-match': etag } })).status).to.equal(304);
    const logo = await fetch(`${base}/t/${TENANT}/logo`);
    expect(logo.status).to.equal(200);
    expect(logo.headers.get('content-type')).to.equal('image/svg+xml');
    expect(logo.headers.get('content-security-policy')).to.equal("default-src 'none'; style-src 'unsafe-inline'; sandbox");
    expect(logo.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(Buffer.from(await logo.arrayBuffer()).equals(LOGO)).to.equal(true);
    expect((await fetch(`${base}/t/${PLAIN}/logo`)).status).to.equal(404);
    expect((await fetch(`${base}/t/nosuchtenant/signup`)).status).to.equal(404);
  });

  it('sign-up by WhatsApp: the result page offers the click-to-chat link with the code; the inbound message with that text confirms it, and the check answers ALLOW; the evidence is the page\'s', async function () {
    this.timeout(60_000);
    const page = await newPage({ locale: 'en-GB', userAgent: 'PrivacyCenterTest/1.0 (Chromium)' });
    await page.goto(`${base}/t/${TENANT}/signup`);
    const response = await signUp(page, PHONE_A, [`newsletter-${Channel.CHANNEL_WHATSAPP}`, `offers-${Channel.CHANNEL_WHATSAPP}`]);
    expect(response.status()).to.equal(200);
    expect(await page.textContent('h1')).to.equal('One more step: confirm from your phone');
    const text = (await page.textContent('#confirmation-text'))!.trim();
    const code = (await page.textContent('#confirmation-code'))!.trim();
    expect(text).to.include(code);
    expect(await page.getAttribute('#whatsapp-link', 'href')).to.equal(`https://wa.me/${WA_NUMBER.slice(1)}?text=${encodeURIComponent(text)}`);
    expect(await page.locator('#sms-link').count(), 'no SMS link when SMS was not chosen').to.equal(0);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'whatsapp-confirmation');

    expect((await check(phone(PHONE_A), 'newsletter', Channel.CHANNEL_WHATSAPP)).verdict, 'pending until confirmed').to.equal(Verdict.VERDICT_DENY);
    const pending = (await events(phone(PHONE_A))).filter((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING);
    expect(pending).to.have.length(2);
    for (const e of pending) {
      expect(e.evidence!.pageUrl).to.equal(`${base}/t/${TENANT}/signup`);
      expect(e.evidence!.userAgent).to.equal('PrivacyCenterTest/1.0 (Chromium)');
      expect(e.evidence!.sourceIp).to.equal('127.0.0.0');
      expect(e.noticeLanguage).to.equal('en');
      expect(e.method).to.equal(CollectionMethod.COLLECTION_METHOD_WEB_FORM);
    }
    const inbound = await call(
      s.consent,
      s.consent.recordInboundMessage,
      { parent: `tenants/${TENANT}`, subjectIdentifier: phone(PHONE_A), channel: Channel.CHANNEL_WHATSAPP, eventTime: new Date(s.clock.now()), text, messageId: 'wamid.pc-1', requestId: 'pc-inbound-1' },
      as('recorder'),
    );
    expect((await check(phone(PHONE_A), 'newsletter', Channel.CHANNEL_WHATSAPP, inbound.consistencyToken)).verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect((await check(phone(PHONE_A), 'offers', Channel.CHANNEL_WHATSAPP)).verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect((await events(phone(PHONE_A))).filter((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED)).to.have.length(2);
  });

  it('sign-up in German with SMS: the German confirmation text and an sms: link; the form refuses a mismatch of identifier and channel and a form without ticks (400, nothing recorded)', async function () {
    this.timeout(60_000);
    const page = await newPage({ locale: 'de-DE' });
    await page.goto(`${base}/t/${TENANT}/signup`);
    let response = await signUp(page, EMAIL_B, [`newsletter-${Channel.CHANNEL_SMS}`]);
    expect(response.status()).to.equal(400);
    expect(await page.textContent('#form-errors')).to.include('WhatsApp und SMS brauchen eine Mobilnummer');
    expect(await page.isChecked(`#c-newsletter-${Channel.CHANNEL_SMS}`), 'ticks kept').to.equal(true);
    await page.uncheck(`#c-newsletter-${Channel.CHANNEL_SMS}`);
    response = await signUp(page, PHONE_B, []);
    expect(response.status()).to.equal(400);
    expect(await page.textContent('#form-errors')).to.include('mindestens ein');
    expect(await events(phone(PHONE_B)).catch(() => [])).to.deep.equal([]);
    // An address no confirmation can be mailed to (display name): the form again, the address kept, nothing recorded.
    await page.uncheck(`#c-newsletter-${Channel.CHANNEL_SMS}`);
    response = await signUp(page, '"x"<someone.else@example.org>', [`newsletter-${Channel.CHANNEL_EMAIL}`]);
    expect(response.status()).to.equal(400);
    expect(await page.textContent('#form-errors')).to.include('E-Mail-Adresse');
    expect(await page.inputValue('#identifier')).to.equal('"x"<someone.else@example.org>');
    expect(await events(email('someone.else@example.org')).catch(() => [])).to.deep.equal([]);
    await page.uncheck(`#c-newsletter-${Channel.CHANNEL_EMAIL}`);
    response = await signUp(page, PHONE_B.replace('+49', '0049 '), [`newsletter-${Channel.CHANNEL_SMS}`]);
    expect(response.status()).to.equal(200);
    const text = (await page.textContent('#confirmation-text'))!.trim();
    expect(text).to.match(/^Ja, ich möchte/);
    expect(await page.getAttribute('#sms-link', 'href')).to.equal(`sms:${SMS_NUMBER}?body=${encodeURIComponent(text)}`);
    expect(await page.locator('#whatsapp-link').count()).to.equal(0);
    expect(await seriousViolations(page)).to.deep.equal([]);
  });

  it('sign-up by e-mail: "check your mailbox"; the delivery\'s link opens a confirm page (a GET confirms nothing); the button confirms, the check answers ALLOW; the link used again gets a clear 409 page', async function () {
    this.timeout(60_000);
    const page = await newPage();
    await page.goto(`${base}/t/${TENANT}/signup`);
    let response = await signUp(page, EMAIL_A, [`newsletter-${Channel.CHANNEL_EMAIL}`]);
    expect(response.status()).to.equal(200);
    expect(await page.textContent('h1')).to.equal('Please check your mailbox');
    expect(await seriousViolations(page)).to.deep.equal([]);
    const known = await page.textContent('h1');
    const deliveries = (await call(selfService, selfService.listConfirmationDeliveries, { parent: `tenants/${TENANT}`, pageSize: 100, pageToken: '' }, as('recorder'))).deliveries;
    const delivery = deliveries.find((d) => d.email === EMAIL_A)!;
    expect(delivery.language).to.equal('en');
    const link = absolute(delivery.link);
    expect(link, 'the token never in the path').to.match(new RegExp(`/t/${TENANT}/confirm#token=`));

    // A mail scanner fetching the link confirms nothing.
    expect((await fetch(link)).status).to.equal(200);
    expect((await check(email(EMAIL_A), 'newsletter', Channel.CHANNEL_EMAIL)).verdict).to.equal(Verdict.VERDICT_DENY);
    await page.goto(link);
    expect(await page.textContent('h1')).to.equal('Confirm your sign-up');
    expect(await seriousViolations(page)).to.deep.equal([]);
    response = await submit(page, '#confirm-form button[type=submit]');
    expect(response.status()).to.equal(200);
    expect(await page.textContent('h1')).to.equal('Thank you, your sign-up is confirmed');
    expect(await page.textContent('#confirmed-list')).to.include('Newsletter: E-mail');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'email-confirmed');
    expect((await check(email(EMAIL_A), 'newsletter', Channel.CHANNEL_EMAIL)).verdict).to.equal(Verdict.VERDICT_ALLOW);
    const confirmed = (await events(email(EMAIL_A))).find((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED)!;
    expect(confirmed.evidence!.pageUrl, 'the page without the token').to.equal(`${base}/t/${TENANT}/confirm`);

    // Used again (opened afresh, as from the mail: the same address plus a fragment would not reload): refused, nothing confirmed twice.
    await page.goto('about:blank');
    await page.goto(link);
    response = await submit(page, '#confirm-form button[type=submit]');
    expect(response.status()).to.equal(409);
    expect(await page.textContent('#failure')).to.include('already used');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'failure-used');
    expect((await events(email(EMAIL_A))).filter((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED)).to.have.length(1);

    // The same answer for an address signed up before and one never seen.
    await page.goto(`${base}/t/${TENANT}/signup`);
    response = await signUp(page, EMAIL_B, [`offers-${Channel.CHANNEL_EMAIL}`]);
    expect(response.status()).to.equal(200);
    expect(await page.textContent('h1')).to.equal(known);
  });

  it('the preference page from a link: what the person agreed to; withdrawing one scope is recorded as OPT_OUT with evidence and the check answers DENY right after; then everything', async function () {
    this.timeout(60_000);
    const page = await newPage({ userAgent: 'PrivacyCenterTest/2.0' });
    const link = await preferenceLink(phone(PHONE_A));
    expect(link).to.match(new RegExp(`/t/${TENANT}/preferences#token=`));
    // Without JavaScript the link's code (in the fragment) cannot reach the server: the page says
    // so, and does not claim that the link is invalid.
    const noScript = await newPage({ javaScriptEnabled: false });
    await noScript.goto(link);
    const [opened] = await Promise.all([noScript.waitForResponse((r) => r.request().method() === 'POST'), noScript.click('#open-form button[type=submit]')]);
    expect(opened.status()).to.equal(400);
    expect(await noScript.content()).to.include('needs JavaScript').and.not.include('not valid');
    // With JavaScript on, a link cut short (no token in it) is an invalid link, not a missing script.
    await page.goto(link.split('#')[0]);
    const [cut] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#open-form button[type=submit]')]);
    expect(cut.status()).to.equal(404);
    expect(await page.content()).to.include('not valid').and.not.include('needs JavaScript');
    await page.goto(link);
    await page.waitForSelector('table.prefs');
    expect(await page.textContent('h1')).to.equal('Your privacy preferences');
    const rows = await page.locator('table.prefs tbody tr').evaluateAll((trs) =>
      trs.map((tr) => [tr.querySelector('.purpose-label')?.textContent, tr.querySelector('.channel')?.textContent, tr.querySelector('.status')?.textContent].map((t) => (t ?? '').trim())),
    );
    expect(rows.map((r) => [r[0], r[1]])).to.deep.include.members([
      ['Newsletter', 'WhatsApp'],
      ['Special offers', 'WhatsApp'],
    ]);
    for (const r of rows) expect(r[2]).to.match(/^agreed on /);
    expect(await page.locator('details .notice-text').first().textContent()).to.include('at most one message a week');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'preferences');
    // The same link with the token as a path segment (for mail clients and pages without JavaScript).
    const byPath = await fetch(link.replace('/preferences#token=', '/preferences/'));
    expect(byPath.status, 'a token of a JWS\'s length fits a path segment').to.equal(200);
    expect(await byPath.text()).to.include('Your privacy preferences');

    await submit(page, `tr[data-scope="newsletter|${Channel.CHANNEL_WHATSAPP}"] button.withdraw`);
    expect(await page.textContent('#banner')).to.include('Withdrawn');
    expect((await check(phone(PHONE_A), 'newsletter', Channel.CHANNEL_WHATSAPP)).verdict, 'DENY right after').to.equal(Verdict.VERDICT_DENY);
    expect((await check(phone(PHONE_A), 'offers', Channel.CHANNEL_WHATSAPP)).verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect(await page.textContent(`tr[data-scope="newsletter|${Channel.CHANNEL_WHATSAPP}"] .status`)).to.match(/^withdrawn on /);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'withdrawn');
    const optOut = (await events(phone(PHONE_A))).find((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT)!;
    expect(optOut.purpose).to.equal(purpose('newsletter'));
    expect(optOut.method).to.equal(CollectionMethod.COLLECTION_METHOD_WEB_FORM);
    expect(optOut.evidence!.pageUrl).to.equal(`${base}/t/${TENANT}/preferences`);
    expect(optOut.evidence!.userAgent).to.equal('PrivacyCenterTest/2.0');
    expect(optOut.evidence!.sourceIp).to.equal('127.0.0.0');

    await submit(page, '#withdraw-all-form button[type=submit]');
    expect(await page.textContent('#banner')).to.include('Everything is withdrawn');
    expect((await check(phone(PHONE_A), 'offers', Channel.CHANNEL_WHATSAPP)).verdict).to.equal(Verdict.VERDICT_DENY);
    expect(await page.locator('#withdraw-all-form').count(), 'nothing left to withdraw').to.equal(0);
  });

  // Found by a probe (Art. 7(3)): while a restriction held every message back, the page said "not
  // agreed" and offered no way to withdraw a consent that applies again once the restriction ends.
  it('a consent held back by a restriction still shows as agreed, with its Withdraw button; withdrawn then, it stays withdrawn after the lifting', async function () {
    this.timeout(60_000);
    const who = phone(PHONE_R);
    for (const id of ['newsletter', 'offers']) {
      await call(s.consent, s.consent.recordConsent, {
        parent: `tenants/${TENANT}`, subjectIdentifier: who, purpose: purpose(id), channel: Channel.CHANNEL_WHATSAPP, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
        method: CollectionMethod.COLLECTION_METHOD_WEB_FORM, notice: `${purpose(id)}/notices/1`, eventTime: undefined, expireTime: undefined, evidence: undefined, lawfulBasis: 0, jurisdiction: '', requestId: `pc-r-${id}`, issueReceipt: false,
      } as never, as('recorder'));
    }
    const created = await call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${TENANT}`, kind: RequestKind.REQUEST_KIND_RESTRICTION, subjectIdentifier: who, receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: 'pc-restrict-1' }), as('dpo'));
    await call(s.rights, s.rights.verifyIdentity, { name: created.request!.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-1', identifierPositions: [] }, as('dpo'));
    const restricted = await call(s.rights, s.rights.restrictProcessing, { name: created.request!.name, ground: 1, note: 'accuracy contested' }, as('dpo'));
    expect((await check(who, 'newsletter', Channel.CHANNEL_WHATSAPP)).verdict, 'held back').to.equal(Verdict.VERDICT_DENY);

    const page = await newPage();
    await page.goto(await preferenceLink(who));
    await page.waitForSelector('table.prefs');
    const statuses = await page.locator('table.prefs tbody tr .status').allTextContents();
    expect(statuses.map((t) => t.trim())).to.satisfy((all: string[]) => all.length === 2 && all.every((t) => /^agreed on /.test(t)));
    expect(await page.locator('table.prefs tbody tr button.withdraw').count(), 'each can be withdrawn').to.equal(2);
    expect(await page.locator('#withdraw-all-form').count()).to.equal(1);
    await shot(page, 'preferences-restricted');
    await submit(page, `tr[data-scope="newsletter|${Channel.CHANNEL_WHATSAPP}"] button.withdraw`);
    expect(await page.textContent(`tr[data-scope="newsletter|${Channel.CHANNEL_WHATSAPP}"] .status`)).to.match(/^withdrawn on /);

    await call(s.rights, s.rights.recordRestrictionNotice, { name: restricted.restriction!.name, method: 'LETTER', notifiedBy: 'dpo-1' }, as('dpo'));
    await call(s.rights, s.rights.liftRestriction, { name: restricted.restriction!.name, reason: 'checked: accurate' }, as('dpo'));
    expect((await check(who, 'newsletter', Channel.CHANNEL_WHATSAPP)).verdict, 'the withdrawal stands').to.equal(Verdict.VERDICT_DENY);
    expect((await check(who, 'offers', Channel.CHANNEL_WHATSAPP)).verdict, 'the other consent applies again').to.equal(Verdict.VERDICT_ALLOW);
  });

  // Art. 21(4)-(5): the right to object is shown clearly and separately, and exercised by one click.
  it('the objection to direct marketing, in a section of its own: one click, no proof of identity; every marketing check of the person denies (OBJECTED) right after, and the page shows the consents withdrawn', async function () {
    this.timeout(60_000);
    const who = phone(PHONE_O);
    for (const id of ['newsletter', 'offers']) {
      await call(s.consent, s.consent.recordConsent, {
        parent: `tenants/${TENANT}`, subjectIdentifier: who, purpose: purpose(id), channel: Channel.CHANNEL_WHATSAPP, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
        method: CollectionMethod.COLLECTION_METHOD_WEB_FORM, notice: `${purpose(id)}/notices/1`, eventTime: undefined, expireTime: undefined, evidence: undefined, lawfulBasis: 0, jurisdiction: '', requestId: `pc-o-${id}`, issueReceipt: false,
      } as never, as('recorder'));
    }
    s.clock.advance(1000);
    const page = await newPage();
    await page.goto(await preferenceLink(who));
    await page.waitForSelector('#objection');
    expect(await page.textContent('#objection-heading')).to.equal('Your right to object to direct marketing');
    expect(await page.textContent('#objection')).to.include('Art. 21 GDPR').and.include('no proof of identity is needed');
    expect(await page.locator('.requests #request-objection').count(), 'apart from the requests').to.equal(0);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'objection-offered');
    const response = await submit(page, '#request-objection button[type=submit]');
    expect(response.status()).to.equal(200);
    expect(await page.textContent('#banner')).to.include('Your objection is recorded');
    for (const id of ['newsletter', 'offers']) {
      for (const channel of [Channel.CHANNEL_WHATSAPP, Channel.CHANNEL_SMS]) {
        const d = await check(who, id, channel);
        expect([Verdict[d.verdict], DecisionReason[d.reason]], `${id} ${Channel[channel]}`).to.deep.equal(['VERDICT_DENY', 'DECISION_REASON_OBJECTED']);
      }
    }
    const statuses = await page.locator('table.prefs tbody tr .status').allTextContents();
    expect(statuses.map((t) => t.trim())).to.satisfy((all: string[]) => all.length === 2 && all.every((t) => /^withdrawn on /.test(t)));
    expect(await page.locator('#withdraw-all-form').count(), 'nothing left to withdraw').to.equal(0);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'objection-recorded');
    const objection = (await call(s.rights, s.rights.listRequests, { parent: `tenants/${TENANT}`, state: 0, kind: RequestKind.REQUEST_KIND_OBJECTION, overdue: false, dueBefore: undefined, pageSize: 100, pageToken: '' }, as('dpo'))).requests;
    expect(objection.map((r) => [RequestState[r.state], ReceivedVia[r.receivedVia]])).to.deep.equal([['REQUEST_STATE_COMPLETED', 'RECEIVED_VIA_SELF_SERVICE']]);
  });

  it('requests by link: a copy of my data is verified by the link (tenant allows ACCESS); erasure needs the confirmation step and then waits for the DPO', async function () {
    this.timeout(60_000);
    const page = await newPage({ locale: 'de-DE' });
    await page.goto(await preferenceLink(email(EMAIL_A)));
    await page.waitForSelector('#request-access');
    expect(await page.textContent('h1')).to.equal('Ihre Datenschutz-Einstellungen');
    await submit(page, '#request-access button[type=submit]');
    expect(await page.textContent('#banner')).to.include('durch Ihren Link bestätigt');
    const requests = async () => (await call(s.rights, s.rights.listRequests, { parent: `tenants/${TENANT}`, state: 0, kind: 0, overdue: false, dueBefore: undefined, pageSize: 100, pageToken: '' }, as('dpo'))).requests;
    const access = (await requests()).find((r) => r.kind === RequestKind.REQUEST_KIND_ACCESS)!;
    expect(access.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    expect(access.verificationMethod).to.equal('SIGNED_LINK');

    let response = await submit(page, '#request-erasure button[type=submit]');
    expect(response.status()).to.equal(200);
    expect(await page.textContent('h1')).to.equal('Ihre Daten löschen?');
    expect((await requests()).some((r) => r.kind === RequestKind.REQUEST_KIND_ERASURE), 'nothing asked before the confirmation').to.equal(false);
    expect(await seriousViolations(page)).to.deep.equal([]);
    response = await submit(page, '#erase-form button[type=submit]');
    expect(response.status()).to.equal(400);
    expect((await requests()).some((r) => r.kind === RequestKind.REQUEST_KIND_ERASURE)).to.equal(false);
    await page.check('#confirm');
    response = await submit(page, '#erase-form button[type=submit]');
    expect(response.status()).to.equal(200);
    expect(await page.textContent('#banner')).to.include('Datenschutzbeauftragte');
    const erasure = (await requests()).find((r) => r.kind === RequestKind.REQUEST_KIND_ERASURE)!;
    expect(erasure.state).to.equal(RequestState.REQUEST_STATE_RECEIVED);
    expect(await page.textContent('#open-requests')).to.include('Löschung');
  });

  it('failure pages: an invalid link (404), a form without CSRF token (403), too many POSTs from one IP (429), the API\'s per-identifier limit (429); German and English', async function () {
    this.timeout(90_000);
    const page = await newPage();
    const [opened] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.goto(`${base}/t/${TENANT}/preferences#token=eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJl`)]);
    expect(opened.status()).to.equal(404);
    await page.waitForSelector('#failure');
    expect(await page.textContent('#failure')).to.include('This link is not valid');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'failure-invalid');
    const invalid = await fetch(`${base}/t/${TENANT}/confirm/not-a-token`);
    expect(invalid.status).to.equal(404);

    const noCsrf = await fetch(`${base}/t/${TENANT}/signup`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'accept-language': 'de' }, body: `identifier=${encodeURIComponent(PHONE_B)}&choice=newsletter%7C1%7C2` });
    expect(noCsrf.status).to.equal(403);
    expect(await noCsrf.text()).to.include('Das Formular ist abgelaufen');

    // Per IP: the limited privacy center allows 2 POSTs a minute.
    const limited = await newPage();
    const limitedBase = `http://127.0.0.1:${pcLimited.port}`;
    let last;
    for (let i = 0; i < 3; i++) {
      await limited.goto(`${limitedBase}/t/${TENANT}/signup`);
      last = await signUp(limited, 'not an identifier', []);
    }
    expect(last!.status()).to.equal(429);
    expect(await limited.textContent('#failure')).to.include('Too many attempts');
    expect(await seriousViolations(limited)).to.deep.equal([]);
    // Opening a preference link by its address counts too (each asks the API): 2, then 429.
    const linkOpenings: number[] = [];
    for (let i = 0; i < 3; i++) linkOpenings.push((await fetch(`${limitedBase}/t/${TENANT}/preferences/eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln${i}`)).status);
    expect(linkOpenings).to.deep.equal([404, 404, 429]);

    // Per identifier (the API): 5 sign-ups an hour, the 6th refused with the same page.
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      await page.goto(`${base}/t/${TENANT}/signup`);
      statuses.push((await signUp(page, PHONE_LIMIT, [`newsletter-${Channel.CHANNEL_WHATSAPP}`])).status());
    }
    expect(statuses).to.deep.equal([200, 200, 200, 200, 200, 429]);
    expect(await page.textContent('#failure')).to.include('Too many attempts');
    await shot(page, 'failure-rate-limited');
  });

  it('a request kind the form does not offer ("__proto__", "constructor", "toString") is a 400 page, not a 502', async function () {
    const link = await preferenceLink(email(EMAIL_A));
    const token = link.split('#token=')[1];
    const form = await fetch(`${base}/t/${TENANT}/preferences?lang=en`);
    const cookie = form.headers.get('set-cookie')!.split(';')[0];
    const csrf = /name="_csrf" value="([^"]+)"/.exec(await form.text())![1];
    for (const kind of ['__proto__', 'constructor', 'toString', 'nonsense']) {
      const posted = await fetch(`${base}/t/${TENANT}/preferences/request`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: new URLSearchParams({ _csrf: csrf, token, kind, lang: 'en' }),
      });
      expect(posted.status, kind).to.equal(400);
    }
  });

  it('an expired preference link and an erased person get their own pages (410)', async function () {
    this.timeout(60_000);
    const page = await newPage();
    const expiring = await preferenceLink(email(EMAIL_B), 3600);
    s.clock.set(s.clock.now() + 2 * 3600_000);
    const [opened] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.goto(expiring)]);
    expect(opened.status()).to.equal(410);
    await page.waitForSelector('#failure');
    expect(await page.textContent('#failure')).to.include('expired');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'failure-expired');

    // A link made before the person was erased.
    const erasedLink = await preferenceLink(phone(PHONE_B));
    const dpo = as('dpo');
    const request = (
      await call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${TENANT}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifiers: [phone(PHONE_B)], receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: 'pc-erase-b' }), dpo)
    ).request!;
    await call(s.rights, s.rights.verifyIdentity, { name: request.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-desk', identifierPositions: [] }, dpo);
    await call(s.rights, s.rights.eraseSubject, { name: request.name }, dpo);
    await page.goto('about:blank');
    const [erased] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.goto(erasedLink)]);
    expect(erased.status()).to.equal(410);
    await page.waitForSelector('#failure');
    expect(await page.textContent('#failure')).to.include('has been erased');
  });

  it('behind a trusted proxy: the person\'s IP from X-Forwarded-For, the public address in the evidence, the CSRF cookie Secure, SameSite=None, Partitioned', async function () {
    const proxied = `http://127.0.0.1:${pcProxied.port}`;
    const form = await fetch(`${proxied}/t/${TENANT}/signup?lang=en`, { headers: { 'x-forwarded-for': '203.0.113.77' } });
    const cookie = form.headers.get('set-cookie')!;
    expect(cookie).to.match(/^__Host-pc-csrf=/).and.include('Secure').and.include('HttpOnly').and.include('SameSite=None').and.include('Partitioned');
    const html = await form.text();
    const field = (name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)![1];
    const notice = /value="newsletter\|3\|(\d+)"/.exec(html)![1];
    const body = new URLSearchParams({ _csrf: field('_csrf'), request_id: field('request_id'), lang: 'en', identifier: EMAIL_B, choice: `newsletter|3|${notice}` });
    const posted = await fetch(`${proxied}/t/${TENANT}/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookie.split(';')[0], 'x-forwarded-for': '203.0.113.77', 'user-agent': 'ProxiedBrowser/1.0' },
      body,
    });
    expect(posted.status).to.equal(200);
    const pending = (await events(email(EMAIL_B))).find((e) => e.kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING && e.purpose === purpose('newsletter'))!;
    expect(pending.evidence!.sourceIp).to.equal('203.0.113.0');
    expect(pending.evidence!.pageUrl).to.equal(`https://privacy.example.com/t/${TENANT}/signup`);
    expect(pending.evidence!.userAgent).to.equal('ProxiedBrowser/1.0');
  });

  it("the API refusing the privacy center's own token answers 502 (its operator's problem, not the visitor's), an unreachable API 503; the warning names status and route only", async function () {
    this.timeout(30_000);
    const forgedFile = path.join(db().dataDir, 'privacy-center-forged.jwt');
    writeFileSync(forgedFile, `${tokens.forged}\n`);
    const log: Buffer[] = [];
    const logStream = new PassThrough();
    logStream.on('data', (c: Buffer) => log.push(c));
    const config: PrivacyCenterConfig = { port: 0, bindAddress: '127.0.0.1', publicUrl: '', trustProxy: [], postsPerMinute: 1000, apiTokenFile: forgedFile };
    const refused = await startPrivacyCenter(config, { api: ApiClient.fromFiles(s.address, undefined, undefined, forgedFile), logger: createLogger('debug', logStream), tenantCacheMs: 0 });
    // Nothing listens on port 1: the channel fails at once with UNAVAILABLE.
    const unreachable = await startPrivacyCenter({ ...config, apiTokenFile: undefined }, { api: new ApiClient({ address: '127.0.0.1:1' }), logger: createLogger('debug', logStream), tenantCacheMs: 0 });
    try {
      const page = await fetch(`http://127.0.0.1:${refused.port}/t/${TENANT}/signup?lang=en`);
      expect(page.status).to.equal(502);
      expect(await page.text()).to.include('Something went wrong');
      const down = await fetch(`http://127.0.0.1:${unreachable.port}/t/${TENANT}/signup?lang=de`);
      expect(down.status).to.equal(503);
      expect(await down.text()).to.include('Der Dienst ist gerade nicht erreichbar');
    } finally {
      await refused.close();
      await unreachable.close();
    }
    const lines = Buffer.concat(log).toString('utf8');
    expect(lines).to.include('privacy center: API call failed').and.include('UNAUTHENTICATED').and.include('UNAVAILABLE').and.include('/t/:tenant/signup');
    expect(lines, 'never the token').not.to.include(tokens.forged.split('.')[2]);
  });

  it('a sign-up not confirmed in time shows as such on the preference page, not as waiting, and has no Withdraw button', async function () {
    this.timeout(60_000);
    const who = '+4915112399555';
    const page = await newPage();
    await page.goto(`${base}/t/${TENANT}/signup`);
    expect((await signUp(page, who, [`newsletter-${Channel.CHANNEL_WHATSAPP}`, `newsletter-${Channel.CHANNEL_SMS}`])).status()).to.equal(200);
    // WhatsApp and SMS ticked: the code must arrive on WhatsApp, so SMS is not offered to send it.
    expect(await page.locator('#whatsapp-link').count()).to.equal(1);
    expect(await page.locator('#sms-link').count(), 'no SMS path that would confirm nothing').to.equal(0);
    const link = await preferenceLink(phone(who));
    const row = () => page.locator('table.prefs tbody tr', { hasText: 'Newsletter' }).first();
    await page.goto(link);
    await page.waitForSelector('table.prefs');
    expect((await row().locator('.status').textContent())!.trim()).to.match(/^waiting for your confirmation/);
    s.clock.advance(25 * 3_600_000);
    await page.goto('about:blank');
    await page.goto(link);
    await page.waitForSelector('table.prefs');
    expect((await row().locator('.status').textContent())!.trim()).to.match(/^not confirmed in time/);
    expect(await row().locator('button').count(), 'nothing to withdraw').to.equal(0);
    await shot(page, 'preferences-lapsed-signup');
  });

  it('no phone number or e-mail address in any log line of the server or the privacy center, or in any address the browser visited', function () {
    const logs = `${s.logs()}\n${Buffer.concat(pcLog).toString('utf8')}`;
    expect(logs).to.include('privacy center request');
    expect(logs, 'route patterns only').to.include('/t/:tenant/signup');
    for (const value of PERSONAL) {
      expect(logs, value).not.to.include(value);
      for (const url of urls) expect(url, value).not.to.include(value);
    }
    // Tokens are never in a logged route.
    expect(Buffer.concat(pcLog).toString('utf8')).not.to.match(/eyJ[A-Za-z0-9_-]{10,}/);
  });
});

describe('Privacy center in development mode (no credential, API in development mode)', function () {
  let s: TestServer;
  let pc: RunningPrivacyCenter;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  before(async function () {
    this.timeout(60_000);
    db = await createTestDatabase('sqlite');
    s = await startTestServer(db);
    await call(s.tenants, s.tenants.createTenant, { tenantId: 'devshop', displayName: 'Dev Shop', requestId: '', settings: undefined });
    await call(s.purposes, s.purposes.createPurpose, { parent: 'tenants/devshop', purposeId: 'news', purpose: { name: '', displayName: 'News', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: '', createTime: undefined, allowedWhileRestricted: false }, requestId: '' });
    await call(s.purposes, s.purposes.publishNotice, { parent: 'tenants/devshop/purposes/news', language: 'en', text: 'News now and then.', requestId: 'dev-n' });
    pc = await startPrivacyCenter({ port: 0, bindAddress: '127.0.0.1', publicUrl: '', trustProxy: [], postsPerMinute: 20 }, { api: new ApiClient({ address: s.address }), logger: createLogger('error', new PassThrough()) });
  });
  after(async () => {
    await pc?.close();
    await s?.stop();
    await db?.drop();
  });

  it('serves the sign-up page and signs up an e-mail address as the development principal', async function () {
    const base = `http://127.0.0.1:${pc.port}`;
    const form = await fetch(`${base}/t/devshop/signup`);
    expect(form.status).to.equal(200);
    const cookie = form.headers.get('set-cookie')!;
    expect(cookie).to.match(/^pc-csrf=/).and.include('HttpOnly').and.include('SameSite=Lax');
    const html = await form.text();
    const field = (name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)![1];
    const posted = await fetch(`${base}/t/devshop/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookie.split(';')[0] },
      body: new URLSearchParams({ _csrf: field('_csrf'), request_id: field('request_id'), lang: 'en', identifier: 'dev.person@example.org', choice: `news|${Channel.CHANNEL_EMAIL}|1` }),
    });
    expect(posted.status).to.equal(200);
    expect(await posted.text()).to.include('Please check your mailbox');
  });
});
