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
import { Channel, PurposeCategory } from '../../src/gen/consent/v1/common';
import { ConsentEventKind, ListConsentEventsRequest, RecordInboundMessageRequest } from '../../src/gen/consent/v1/consent';
import { TenantSettings } from '../../src/gen/consent/v1/tenant';
import { CreateRequestRequest, ReceivedVia, RequestKind, RestrictionGround } from '../../src/gen/consent/v1/subject_rights';
import { launchChromium, screenshots, seriousViolations } from '../support/browser';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER, TokenIssuer } from '../support/tokens';

/**
 * Issue 19 point 4: the auditor's read-only console pages in Chromium against a real server with
 * real data (opt-in with evidence, inbound message, opt-out, another person erased): find a
 * person by a POSTed identifier, the timeline (SVG and table, with provenance), ExplainDecision
 * verified with consentctl's verifier, checkpoints verified and a consistency check. The
 * identifier never appears in an address, a browser message or a console log line. A person's
 * page is drawn from their audit entries without a lookup too; person D (opt-in, inbound message,
 * opt-out, restriction, objection, then erased through an erasure request) is reached from the
 * request's page and shows the erasure across the timeline, their events' contents shredded.
 * Screenshots go to test-artefacts/console/<database>/auditor-*.png (git-ignored).
 */

const HEADER = 'x-forwarded-access-token';
const TENANT = 'acme';
const PHONE_B = '+4915112340002';
const PHONE_C = '+4915112340009';
const PHONE_D = '+4915112340004';
const DAY = 86_400_000;
const PERSONAL = [PHONE_B, PHONE_C, PHONE_D, '4915112340', encodeURIComponent(PHONE_B), encodeURIComponent(PHONE_D)];

forEachDatabase('Web console: auditor pages in Chromium', (db, kind) => {
  let s: TestServer;
  let issuer: TokenIssuer;
  let web: RunningConsole;
  let base: string;
  let browser: Browser;
  let subjectB = '';
  let optInTime = 0;
  let optOutTime = 0;
  let subjectD = '';
  let erasureD = '';
  let erasedAtD = 0;
  const consoleLog: Buffer[] = [];
  const tokens: Record<string, string> = {};
  const urls: string[] = [];
  const browserMessages: string[] = [];
  const contexts: BrowserContext[] = [];
  const { shot } = screenshots('console', kind);

  const as = (token: string) => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${token}`);
    return md;
  };

  async function pageAs(who: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, extraHTTPHeaders: { [HEADER]: tokens[who] } });
    contexts.push(context);
    const page = await context.newPage();
    page.on('request', (r) => urls.push(r.url()));
    page.on('console', (m) => browserMessages.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => browserMessages.push(`pageerror: ${e.message}`));
    return page;
  }

  /** Looks person B up through the form; ends on their timeline. */
  async function findB(page: Page): Promise<void> {
    await page.goto(`${base}/tenants/${TENANT}/audit`);
    await page.selectOption('#kind', 'phone');
    await page.fill('#identifier', PHONE_B);
    await Promise.all([page.waitForURL(new RegExp(`/tenants/${TENANT}/subjects/[0-9a-f]{32}$`)), page.click('button[type=submit]')]);
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
    for (const [who, roles] of [
      ['setup', ['admin', 'recorder', 'dpo']],
      ['auditor', ['auditor']],
      ['auditor2', ['auditor']],
      ['dpo', ['dpo']],
      ['sender', ['sender']],
    ] as const) {
      tokens[who] = await issuer.sign({ sub: `${who}-person`, roles: [...roles], tenants: [TENANT] });
    }
    const setup = as(tokens.setup);
    const now = Date.now();
    s.clock.set(now - 30 * DAY);
    await call(s.tenants, s.tenants.createTenant, { tenantId: TENANT, displayName: 'ACME', requestId: '', settings: undefined }, setup);
    await call(
      s.purposes,
      s.purposes.createPurpose,
      {
        parent: `tenants/${TENANT}`,
        purposeId: 'newsletter',
        purpose: { name: '', displayName: 'newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: '', createTime: undefined, allowedWhileRestricted: false },
        requestId: '',
      },
      setup,
    );
    await call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${TENANT}/purposes/newsletter`, language: 'en', text: 'Newsletter', requestId: 'n1' }, setup);
    // B opts in on WhatsApp by a web form (with evidence), 20 days ago.
    s.clock.set(now - 20 * DAY);
    optInTime = s.clock.now();
    await call(
      s.consent,
      s.consent.recordConsent,
      consentRequest(TENANT, { subjectIdentifier: phone(PHONE_B), evidence: { sourceIp: '198.51.100.7', userAgent: 'AuditTest/1.0', pageUrl: 'https://acme.example/signup', inboundMessageId: '', freeText: '' } }),
      setup,
    );
    // D opts in the same way (evidence included); D is erased later through a request.
    await call(
      s.consent,
      s.consent.recordConsent,
      consentRequest(TENANT, { subjectIdentifier: phone(PHONE_D), evidence: { sourceIp: '203.0.113.9', userAgent: 'ErasedTest/2.0', pageUrl: 'https://acme.example/d', inboundMessageId: '', freeText: '' } }),
      setup,
    );
    // C opts in too; C is erased later.
    await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(PHONE_C) }), setup);
    s.clock.set(now - 10 * DAY);
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${TENANT}`, subjectIdentifier: phone(PHONE_B), channel: Channel.CHANNEL_SMS, text: 'hello', requestId: 'in-1' }), setup);
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${TENANT}`, subjectIdentifier: phone(PHONE_D), channel: Channel.CHANNEL_SMS, text: 'hi there', requestId: 'in-d' }), setup);
    await s.app.services.auditService.checkpointAll();
    s.clock.set(now - 5 * DAY);
    optOutTime = s.clock.now();
    await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(PHONE_B), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, requestId: 'out-1' }), setup);
    await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(PHONE_D), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, requestId: 'out-d' }), setup);
    const request = async (kind: RequestKind, requestId: string) => {
      const made = (await call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${TENANT}`, kind, subjectIdentifiers: [phone(PHONE_D)], receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId }), setup)).request!;
      if (kind !== RequestKind.REQUEST_KIND_OBJECTION) await call(s.rights, s.rights.verifyIdentity, { name: made.name, method: 'ID_DOCUMENT', verifiedBy: 'setup', identifierPositions: [] }, setup);
      return made.name;
    };
    // D has processing restricted (Art. 18), then objects to direct marketing (Art. 21).
    s.clock.set(now - 4 * DAY);
    await call(s.rights, s.rights.restrictProcessing, { name: await request(RequestKind.REQUEST_KIND_RESTRICTION, 'restrict-d'), ground: RestrictionGround.RESTRICTION_GROUND_A_ACCURACY_CONTESTED, note: 'case 18' }, setup);
    s.clock.set(now - 3 * DAY);
    await request(RequestKind.REQUEST_KIND_OBJECTION, 'object-d');
    const dEvents = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${TENANT}`, subjectIdentifier: phone(PHONE_D), pageSize: 1 }), setup);
    subjectD = dEvents.consentEvents[0].subject.split('/').pop()!;
    const cEvents = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${TENANT}`, subjectIdentifier: phone(PHONE_C), pageSize: 1 }), setup);
    s.clock.set(now - 2 * DAY);
    await s.app.services.subjectEraser.erase(TENANT, cEvents.consentEvents[0].subject.split('/').pop()!);
    // D is erased through an erasure request, as a DPO does it.
    s.clock.set(now - DAY);
    erasedAtD = s.clock.now();
    const erasure = await request(RequestKind.REQUEST_KIND_ERASURE, 'erase-d');
    await call(s.rights, s.rights.eraseSubject, { name: erasure }, setup);
    erasureD = erasure.split('/').pop()!;
    s.clock.set(now);
    await s.app.services.auditService.checkpointAll();
    const bEvents = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${TENANT}`, subjectIdentifier: phone(PHONE_B), pageSize: 1 }), setup);
    subjectB = bEvents.consentEvents[0].subject.split('/').pop()!;

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

  it('finds a person by a POSTed identifier and shows their timeline by opaque subject id: SVG lanes and an accessible table with provenance', async function () {
    this.timeout(60_000);
    const page = await pageAs('auditor');
    await findB(page);
    expect(page.url()).to.equal(`${base}/tenants/${TENANT}/subjects/${subjectB}`);
    const html = await page.content();
    for (const p of PERSONAL) expect(html, 'no identifier in the page').not.to.include(p);
    // The picture: one lane per purpose and channel, each event marked.
    const lanes = await page.locator('svg.timeline text.lane-label').allTextContents();
    expect(lanes).to.deep.equal(['all purposes · sms', 'newsletter · whatsapp']);
    expect(await page.locator('svg.timeline circle.opt-in').count()).to.equal(1);
    expect(await page.locator('svg.timeline rect.opt-out').count()).to.equal(1);
    expect(await page.locator('svg.timeline circle.inbound-message').count()).to.equal(1);
    expect(await page.locator('svg.timeline rect.window').count(), 'the inbound message opens a service window').to.equal(1);
    // The table: the same events, oldest first, with their provenance.
    const kinds = await page.locator('table.events tbody tr td:nth-child(2)').allTextContents();
    expect(kinds).to.deep.equal(['opt in', 'inbound message', 'opt out']);
    const optIn = await page.locator('table.events tbody tr').first().textContent();
    // Evidence as stored: the address truncated by the service when it was recorded.
    expect(optIn).to.include('web form').and.include('setup-person').and.include('198.51.100.0').and.include('AuditTest/1.0').and.include(`tenants/${TENANT}/purposes/newsletter/notices/1`);
    expect(await page.locator('table.events tbody tr').first().locator('blockquote.notice-text').textContent(), 'the notice text').to.equal('Newsletter');
    expect(optIn).to.match(/Notice text SHA-256\s*[0-9a-f]{64}/);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'auditor-timeline');
  });

  it('an unknown identifier finds nobody (not echoed); without a lookup of ones own the page is drawn from the audit log, without provenance', async function () {
    this.timeout(60_000);
    const page = await pageAs('auditor');
    await page.goto(`${base}/tenants/${TENANT}/audit`);
    await page.fill('#identifier', PHONE_C);
    const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('button[type=submit]')]);
    expect(response.status()).to.equal(404);
    expect(await page.locator('[role=alert]').textContent()).to.include('No person');
    expect(await page.locator('#identifier').inputValue(), 'not echoed back').to.equal('');
    expect(await page.content()).not.to.include(PHONE_C);
    // Another auditor's lookup is not this one's: the page comes from B's audit entries alone.
    await findB(await pageAs('auditor'));
    const other = await pageAs('auditor2');
    const direct = await other.goto(`${base}/tenants/${TENANT}/subjects/${subjectB}`);
    expect(direct!.status()).to.equal(200);
    expect(await other.locator('p.source-note').textContent()).to.include('find the person by an identifier');
    expect(await other.locator('table.events tbody tr td:nth-child(2)').allTextContents()).to.deep.equal(['opt in', 'inbound message', 'opt out']);
    expect(await other.locator('svg.timeline text.lane-label').allTextContents()).to.deep.equal(['all purposes · sms', 'newsletter · whatsapp']);
    const optIn = other.locator('table.events tbody tr').first();
    // The notice found by the text hash in the audit entry; the evidence (in the event row, by identifier only) is not shown.
    expect(await optIn.locator('blockquote.notice-text').textContent()).to.equal('Newsletter');
    expect(await optIn.textContent()).to.match(/Audit entry\s*\d+, leaf [0-9a-f]{64}/);
    expect(await optIn.textContent()).not.to.include('198.51.100').and.not.include('web form');
    expect(await other.locator('form[action$="/explain#explain"]').count(), 'ExplainDecision needs a lookup').to.equal(0);
    // An unknown subject id: no audit entry names it.
    const unknown = await other.goto(`${base}/tenants/${TENANT}/subjects/${'0'.repeat(32)}`);
    expect(unknown!.status()).to.equal(404);
    expect(await other.locator('[role=alert]').textContent()).to.include('No audit entry names this subject');
  });

  it('an erased person is reached from the erasure request\'s page: the erasure across the timeline, contents shredded, restriction and objection shown, no personal data', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${erasureD}`);
    const link = page.locator('table.identifiers a').first();
    expect(await link.textContent()).to.equal(`tenants/${TENANT}/subjects/${subjectD}`);
    await Promise.all([page.waitForURL(`${base}/tenants/${TENANT}/subjects/${subjectD}`), link.click()]);
    const html = await page.content();
    for (const p of PERSONAL) expect(html, 'no identifier in the page').not.to.include(p);
    expect(html, 'no evidence').not.to.include('203.0.113').and.not.include('ErasedTest').and.not.include('acme.example/d');
    // The erasure: one bar across all lanes, labelled with its date; every event before it shredded.
    const day = new Date(erasedAtD).toISOString().slice(0, 10);
    expect(await page.locator('svg.timeline g.erasure').count()).to.equal(1);
    expect(await page.locator('svg.timeline text.erasure-label').textContent()).to.equal(`erased ${day}`);
    expect(await page.locator('dd.erased').textContent()).to.include(new Date(erasedAtD).toISOString());
    expect(await page.locator('p.erased-note').textContent()).to.include(`erased on ${day}`);
    const kinds = await page.locator('table.events tbody tr td:nth-child(2)').allTextContents();
    expect(kinds.slice(0, 3)).to.deep.equal(['opt in', 'inbound message', 'opt out']);
    const events = await page.locator('table.events tbody tr').count();
    expect(await page.locator('table.events tbody tr.shredded').count()).to.equal(events);
    expect(await page.locator('svg.timeline .event.shredded').count()).to.equal(events);
    for (const t of await page.locator('table.events tbody tr').allTextContents()) expect(t).to.include('content shredded');
    // The inbound message's service window, with the length the tenant had then (unchanged since).
    expect(await page.locator('svg.timeline rect.window').count()).to.equal(1);
    expect(await page.locator('p.window-note').textContent()).to.include('24 h').and.include('have not changed');
    // Restriction (never lifted) and objection, from the log.
    expect(await page.locator('svg.timeline rect.restriction').count()).to.equal(1);
    expect(await page.locator('svg.timeline line.objection').count()).to.equal(1);
    expect(await page.locator('table.rights tr.restriction-row').textContent()).to.include('not lifted before the erasure');
    expect(await page.locator('table.rights tr.objection-row').count()).to.equal(1);
    expect(await page.locator('form[action$="/explain#explain"]').count(), 'an erased person has no identifier to explain by').to.equal(0);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'auditor-erased-timeline');
    // The lookup cannot find them: their identifiers are gone.
    await page.goto(`${base}/tenants/${TENANT}/audit`);
    await page.fill('#identifier', PHONE_D);
    const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('button[type=submit]')]);
    expect(response.status()).to.equal(404);
  });

  it('explains a decision at a time and verifies the proof with consentctl audit explain\'s verifier', async function () {
    this.timeout(60_000);
    const page = await pageAs('auditor');
    await findB(page);
    const ask = async (at: number) => {
      await page.fill('#purpose', 'newsletter');
      await page.selectOption('#channel', 'whatsapp');
      await page.fill('#at', new Date(at).toISOString().slice(0, 16));
      await Promise.all([page.waitForResponse((r) => r.url().endsWith('/explain')), page.click('form[action$="/explain#explain"] button')]);
    };
    await ask(optInTime + DAY);
    expect(await page.locator('.verdict-ok').textContent()).to.match(/^Proof verified/);
    expect(await page.locator('dd.decision').textContent()).to.equal('ALLOW');
    expect(await page.locator('table.entries tbody tr').count()).to.be.at.least(1);
    expect(await page.locator('table.entries').textContent()).to.include('(deciding)');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'auditor-explain-allow');
    await ask(optOutTime + DAY);
    expect(await page.locator('.verdict-ok').textContent()).to.match(/^Proof verified/);
    expect(await page.locator('dd.decision').textContent()).to.equal('DENY');
    expect(await page.locator('dd.reason').textContent()).to.match(/OPT/);
    await shot(page, 'auditor-explain-deny');
    expect(page.url()).not.to.include('4915');
    for (const p of PERSONAL) expect(await page.content()).not.to.include(p);
  });

  it('a consent event row rewritten behind the service: the explanation says VERIFICATION FAILED with the reason', async function () {
    this.timeout(60_000);
    const page = await pageAs('auditor');
    await findB(page);
    const optInId = await page.locator('table.events tbody tr').first().getAttribute('data-event');
    const q = (sql: string, params: unknown[]) => s.app.dataSource.query(sql, params);
    await q('UPDATE consent_events SET method = ? WHERE id = ?', ['PAPER', optInId]);
    try {
      await page.fill('#purpose', 'newsletter');
      await page.selectOption('#channel', 'whatsapp');
      await page.fill('#at', new Date(optInTime + DAY).toISOString().slice(0, 16));
      await Promise.all([page.waitForResponse((r) => r.url().endsWith('/explain')), page.click('form[action$="/explain#explain"] button')]);
      const failed = await page.locator('.verdict-bad').textContent();
      expect(failed).to.match(/^VERIFICATION FAILED: consent event .* does not match audit entry \d+ \(stored row \(record hash\)\): the row was rewritten/);
      expect(await page.locator('.verdict-ok').count()).to.equal(0);
      await shot(page, 'auditor-explain-failed');
    } finally {
      await q('UPDATE consent_events SET method = ? WHERE id = ?', ['WEB_FORM', optInId]);
    }
  });

  it('lists the checkpoints with signatures verified and checks consistency between two', async function () {
    this.timeout(60_000);
    const page = await pageAs('auditor');
    await page.goto(`${base}/tenants/${TENANT}/checkpoints`);
    const signatures = await page.locator('table.checkpoints td.signature').allTextContents();
    expect(signatures.length).to.be.at.least(2);
    for (const v of signatures) expect(v).to.match(/^verified \(key /);
    const sizes = (await page.locator('table.checkpoints tbody tr').evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute('data-size'))))).sort((a, b) => a - b);
    await page.selectOption('#first', String(sizes[0]));
    await page.selectOption('#second', String(sizes[sizes.length - 1]));
    await Promise.all([page.waitForURL(/first=/), page.click('form.inline button')]);
    expect(await page.locator('.verdict-ok').textContent()).to.match(/^Consistency proof verified/);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'auditor-checkpoints');
    // The larger tree first: a clear failure, not a crash.
    await page.goto(`${base}/tenants/${TENANT}/checkpoints?first=${sizes[sizes.length - 1]}&second=${sizes[0]}`);
    expect(await page.locator('.verdict-bad').textContent()).to.match(/^VERIFICATION FAILED/);
  });

  it('a DPO sees the same pages: timeline and checkpoints', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await findB(page);
    expect(await page.locator('table.events tbody tr').count()).to.equal(3);
    expect(await page.locator('svg.timeline text.lane-label').count()).to.equal(2);
    await page.goto(`${base}/tenants/${TENANT}/checkpoints`);
    for (const v of await page.locator('table.checkpoints td.signature').allTextContents()) expect(v).to.match(/^verified \(key /);
  });

  it('a sender gets nothing: the lookup, a subject, and the checkpoints are refused by the API', async function () {
    this.timeout(60_000);
    const page = await pageAs('sender');
    await page.goto(`${base}/tenants/${TENANT}/audit`);
    await page.fill('#identifier', PHONE_B);
    const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('button[type=submit]')]);
    expect(response.status()).to.equal(403);
    expect(await page.locator('[role=alert]').textContent()).to.include('PERMISSION_DENIED');
    expect(await page.content()).not.to.include(subjectB);
    // The subject page needs no lookup now: the API refuses the sender the audit entries.
    const timeline = await page.goto(`${base}/tenants/${TENANT}/subjects/${subjectD}`);
    expect(timeline!.status()).to.equal(403);
    expect(await page.locator('svg.timeline').count()).to.equal(0);
    const checkpoints = await page.goto(`${base}/tenants/${TENANT}/checkpoints`);
    expect(checkpoints!.status()).to.equal(403);
    expect(await page.locator('table.checkpoints').count()).to.equal(0);
  });

  // Last but one: it changes the tenant's window length, which the pages above read unchanged.
  it("after the tenant's window length changes, the page says the windows are drawn with today's length, not the one in force then", async function () {
    this.timeout(60_000);
    await call(s.tenants, s.tenants.updateTenantSettings, { settings: TenantSettings.fromPartial({ name: `tenants/${TENANT}/settings`, serviceWindow: { seconds: 48 * 3600, nanos: 0 } }), updateMask: ['service_window'] }, as(tokens.setup));
    const page = await pageAs('auditor2');
    await page.goto(`${base}/tenants/${TENANT}/subjects/${subjectB}`);
    expect(await page.locator('p.window-note').textContent()).to.include('48 h').and.include('changed 1 time(s)');
    const inbound = page.locator('table.events tbody tr', { hasText: 'inbound message' });
    expect(await inbound.locator('td:nth-child(5)').textContent()).to.include("48 h, today's setting");
    expect(await seriousViolations(page)).to.deep.equal([]);
  });

  it("a person looked up by a number reported reassigned since: the explanation, which would be about the number's new holder, is not shown on their page", async function () {
    this.timeout(60_000);
    const number = '+4915112340077';
    await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(number) }), as(tokens.setup));
    const page = await pageAs('auditor');
    await page.goto(`${base}/tenants/${TENANT}/audit`);
    await page.selectOption('#kind', 'phone');
    await page.fill('#identifier', number);
    await Promise.all([page.waitForURL(new RegExp(`/tenants/${TENANT}/subjects/[0-9a-f]{32}$`)), page.click('button[type=submit]')]);
    const formerHolder = page.url().split('/').pop()!;
    await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(number), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT }), as(tokens.setup));
    await call(s.consent, s.consent.reportReassignedIdentifier, { parent: `tenants/${TENANT}`, subjectIdentifier: phone(number), reassignTime: undefined, source: 'CARRIER_NOTICE', requestId: 'console-reassigned-1' } as never, as(tokens.setup));
    s.clock.advance(60_000);
    await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(number) }), as(tokens.setup));
    await page.fill('#purpose', 'newsletter');
    await page.selectOption('#channel', 'whatsapp');
    await page.fill('#at', new Date(s.clock.now()).toISOString().slice(0, 16));
    await Promise.all([page.waitForResponse((r) => r.url().endsWith('/explain')), page.click('form[action$="/explain#explain"] button')]);
    expect(page.url()).to.include(formerHolder);
    expect(await page.locator('.verdict-ok').count(), 'no verified answer about someone else').to.equal(0);
    expect(await page.locator('div.error[role=alert]', { hasText: 'no longer names them' }).count(), 'says why').to.equal(1);
    await shot(page, 'auditor-explain-reassigned');
  });

  it('no identifier in any address the browsers asked for, any browser message, or the console log', function () {
    expect(urls.length).to.be.greaterThan(10);
    const log = Buffer.concat(consoleLog).toString('utf8');
    for (const p of PERSONAL) {
      for (const u of urls) expect(u, 'address').not.to.include(p);
      for (const m of browserMessages) expect(m, 'browser message').not.to.include(p);
      expect(log, 'console log').not.to.include(p);
      expect(s.logs(), 'server log').not.to.include(p);
    }
    expect(browserMessages.filter((m) => /Content Security Policy|pageerror/.test(m)), 'no CSP violations or page errors').to.deep.equal([]);
  });
});
