import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
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
import { CreateRequestRequest, DataSubjectRequest, ListRequestsRequest, ReceivedVia, RequestKind, RequestState } from '../../src/gen/consent/v1/subject_rights';
import { launchChromium, screenshots, seriousViolations } from '../support/browser';
import { builtCheckout, cleanEnv } from '../support/built-checkout';
import { forEachDatabase } from '../support/databases';
import { ROOT } from '../support/processes';
import { consentRequest, email, phone } from '../support/fixtures';
import { call, startTestServer, T0, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER, TokenIssuer } from '../support/tokens';

/**
 * Issue 19 (foundation): the web console in a real browser (Debian's chromium driven by
 * playwright-core) against a real server with real data. The console runs in proxy sign-in mode:
 * each browser context plays one person, whose bearer token the "auth proxy" (the context's extra
 * header) hands the console; the API's role table decides what each sees and may do.
 * Screenshots go to test-artefacts/console/<database>/ (git-ignored).
 */

const HEADER = 'x-forwarded-access-token';
const TENANT = 'acme';
const PHONE_A = '+4915112340001';
const PHONE_B = '+4915112340002';
const EMAIL_B = 'anna.schmidt@example.org';
const PHONE_NEW = '+4915112340003';
const DAY = 86_400_000;
const PERSONAL = [PHONE_A, PHONE_B, EMAIL_B, PHONE_NEW, '4915112340', 'anna.schmidt', encodeURIComponent(PHONE_NEW)];

forEachDatabase('Web console in Chromium', (db, kind) => {
  let s: TestServer;
  let issuer: TokenIssuer;
  let web: RunningConsole;
  let base: string;
  let browser: Browser;
  const consoleLog: Buffer[] = [];
  const tokens: Record<string, string> = {};
  const made: Record<'overdue' | 'erasure' | 'rejected' | 'soon', string> = { overdue: '', erasure: '', rejected: '', soon: '' };
  /** Every address the browsers asked for and every console message they printed. */
  const urls: string[] = [];
  const browserMessages: string[] = [];
  const contexts: BrowserContext[] = [];
  const { shot } = screenshots('console', kind);

  const as = (token: string) => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${token}`);
    return md;
  };
  const idOf = (name: string) => name.slice(name.lastIndexOf('/') + 1);
  const getRequest = async (id: string): Promise<DataSubjectRequest> =>
    (await call(s.rights, s.rights.getRequest, { name: `tenants/${TENANT}/requests/${id}` }, as(tokens.dpo))).request!;

  /** A browser page signed in as `who` (a token of `tokens`), or with no sign-in at all. */
  async function pageAs(who: string | null): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, extraHTTPHeaders: who ? { [HEADER]: tokens[who] } : {} });
    contexts.push(context);
    const page = await context.newPage();
    page.on('request', (r) => urls.push(r.url()));
    page.on('console', (m) => browserMessages.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => browserMessages.push(`pageerror: ${e.message}`));
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
    // The server's clock stands still at today's time: deadlines and "days left" are counted on it.
    s.clock.set(Date.now());
    for (const [who, roles, tenants] of [
      ['setup', ['admin', 'recorder', 'dpo'], '*'],
      ['dpo', ['dpo'], [TENANT]],
      ['dpo2', ['dpo'], [TENANT]],
      ['auditor', ['auditor'], [TENANT]],
      ['sender', ['sender'], [TENANT]],
      ['otherDpo', ['dpo'], ['other-tenant']],
    ] as const) {
      tokens[who] = await issuer.sign({ sub: `${who}-person`, roles: [...roles], tenants: tenants === '*' ? '*' : [...tenants] });
    }
    // A token the API must refuse: signed by a key it does not know.
    tokens.forged = await issuer.sign({ sub: 'forger', roles: ['dpo'], tenants: '*' }, { forgery: 'unknown-kid' });
    const setup = as(tokens.setup);
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
    // Person B is known to the tenant (an opt-in under the phone number); A is not.
    await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(PHONE_B) }), setup);
    // Requests are registered as received some days ago, so the queue has overdue, due-soon and closed ones.
    const now = s.clock.now();
    const create = async (kindOf: RequestKind, ids: ReturnType<typeof phone>[], receivedDaysAgo: number, requestId: string) =>
      (
        await call(
          s.rights,
          s.rights.createRequest,
          CreateRequestRequest.fromPartial({ parent: `tenants/${TENANT}`, kind: kindOf, subjectIdentifiers: ids, receiveTime: new Date(now - receivedDaysAgo * DAY), receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId }),
          setup,
        )
      ).request!;
    made.overdue = idOf((await create(RequestKind.REQUEST_KIND_ACCESS, [phone(PHONE_A)], 45, 'overdue-1')).name);
    made.erasure = idOf((await create(RequestKind.REQUEST_KIND_ERASURE, [phone(PHONE_B), email(EMAIL_B)], 3, 'erasure-1')).name);
    made.rejected = idOf((await create(RequestKind.REQUEST_KIND_ACCESS, [phone(PHONE_A)], 10, 'rejected-1')).name);
    made.soon = idOf((await create(RequestKind.REQUEST_KIND_PORTABILITY, [phone(PHONE_B)], 26, 'soon-1')).name);
    await call(s.rights, s.rights.rejectRequest, { name: `tenants/${TENANT}/requests/${made.rejected}`, reason: 'identity could not be verified' }, setup);

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

  it('the DPO queue shows open requests overdue first, then by due date, with due dates and days left; the page has a strict CSP and no serious accessibility violations', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    const response = await page.goto(`${base}/tenants/${TENANT}/requests`);
    expect(response!.status()).to.equal(200);
    const csp = response!.headers()['content-security-policy'];
    expect(csp).to.include("default-src 'none'").and.include("script-src 'self'").and.include("style-src 'self'").and.include("frame-ancestors 'none'").and.include("form-action 'self'");
    expect(csp).not.to.include('unsafe-inline');
    expect(csp).not.to.include('unsafe-eval');
    const rows = page.locator('table.queue tbody tr');
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-request')))).to.deep.equal([made.overdue, made.soon, made.erasure]);
    // Days left as the API's due dates say, counted from today (UTC).
    const today = Math.floor(s.clock.now() / DAY);
    for (const id of [made.overdue, made.soon, made.erasure]) {
      const r = await getRequest(id);
      const due = Date.UTC(r.dueDate!.year, r.dueDate!.month - 1, r.dueDate!.day) / DAY;
      const days = due - today;
      const row = page.locator(`tr[data-request="${id}"]`);
      const cells = await row.locator('td').allTextContents();
      expect(cells[4]).to.equal(`${r.dueDate!.year}-${String(r.dueDate!.month).padStart(2, '0')}-${String(r.dueDate!.day).padStart(2, '0')}`);
      expect(cells[5]).to.equal(days < 0 ? `overdue by ${-days} day${days === -1 ? '' : 's'}` : `${days} day${days === 1 ? '' : 's'} left`);
      expect(await row.getAttribute('class')).to.equal(r.overdue ? 'overdue' : 'open');
    }
    expect((await getRequest(made.overdue)).overdue).to.equal(true);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'queue');
  });

  it('the queue filters by state and kind (htmx swaps the table and keeps the address in step), and by overdue', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests`);
    const ids = () => page.locator('table.queue tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-request')));
    await page.selectOption('#state', 'all');
    await page.waitForURL(/state=all/);
    await page.waitForFunction(`document.querySelectorAll('table.queue tbody tr').length === 4`);
    expect(await ids()).to.deep.equal([made.overdue, made.soon, made.erasure, made.rejected]);
    expect(await page.locator(`tr[data-request="${made.rejected}"] td.deadline`).textContent()).to.equal('closed');
    await page.selectOption('#kind', 'erasure');
    await page.waitForURL(/kind=erasure/);
    await page.waitForFunction(`document.querySelectorAll('table.queue tbody tr').length === 1`);
    expect(await ids()).to.deep.equal([made.erasure]);
    await page.selectOption('#state', 'rejected');
    await page.waitForURL(/state=rejected/);
    await page.waitForSelector('p.empty');
    expect(await page.locator('p.empty').textContent()).to.equal('No requests match these filters.');
    // The same filters from the address alone (a bookmark, or no JavaScript).
    await page.goto(`${base}/tenants/${TENANT}/requests?state=open&kind=all&overdue=on`);
    expect(await ids()).to.deep.equal([made.overdue]);
    expect(await page.locator('#overdue').isChecked()).to.equal(true);
  });

  it('rectification requests (Art. 16) are listed and filtered with their kind', async function () {
    this.timeout(60_000);
    const rectification = (
      await call(
        s.rights,
        s.rights.createRequest,
        CreateRequestRequest.fromPartial({
          parent: `tenants/${TENANT}`,
          kind: RequestKind.REQUEST_KIND_RECTIFICATION,
          subjectIdentifiers: [phone(PHONE_B)],
          rectifiedIdentifier: phone(PHONE_NEW),
          receivedVia: ReceivedVia.RECEIVED_VIA_LETTER,
          requestId: 'rectify-1',
        }),
        as(tokens.setup),
      )
    ).request!;
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests?state=all&kind=rectification`);
    const rows = await page.locator('table.queue tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-request')));
    expect(rows).to.deep.equal([idOf(rectification.name)]);
    expect(await page.locator('table.queue tbody tr td').nth(1).textContent()).to.equal('rectification (Art. 16)');
    // Rejected here so that the other tests' queues stay as they were.
    await call(s.rights, s.rights.rejectRequest, { name: rectification.name, reason: 'test request' }, as(tokens.setup));
  });

  it("a request's page shows its identifiers (kinds and opaque person names, never the values) and history; the DPO verifies the identity with a CSRF-protected form", async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.erasure}`);
    expect(await page.locator('h1').textContent()).to.equal(`Request ${made.erasure}`);
    const before = await getRequest(made.erasure);
    const identifierRows = await page.locator('table.identifiers tbody tr').evaluateAll((trs) => trs.map((tr) => Array.from(tr.children as ArrayLike<{ textContent: string | null }>).map((td) => td.textContent)));
    expect(identifierRows.map((r) => r.slice(0, 4))).to.deep.equal([
      ['1', 'PHONE', before.identifiers[0].subject, 'not verified'],
      ['2', 'EMAIL', 'nothing held under it', 'not verified'],
    ]);
    expect(before.identifiers[0].subject).to.match(/^tenants\/acme\/subjects\//);
    expect(await page.locator('table.transitions tbody tr').count()).to.equal(1);
    expect(await page.locator('table.transitions tbody tr td').nth(4).textContent()).to.equal(before.transitions[0].note);
    const html = await page.content();
    for (const value of PERSONAL) expect(html, value).not.to.include(value);
    expect(await page.locator('#verify-form input[name=_csrf]').inputValue()).to.have.length.greaterThan(20);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'request');

    await page.selectOption('#method', 'ID_DOCUMENT');
    await page.fill('#verified_by', 'dpo-anna');
    await Promise.all([page.waitForNavigation(), page.click('#verify-form button[type=submit]')]);
    expect(await page.locator('p.done').textContent()).to.equal('The verification was recorded.');
    expect(await page.locator('dd.state').textContent()).to.equal('verified');
    const after = await getRequest(made.erasure);
    expect(after.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    expect(after.identifiers.map((i) => [i.verificationMethod, i.verifiedBy])).to.deep.equal([
      ['ID_DOCUMENT', 'dpo-anna'],
      ['ID_DOCUMENT', 'dpo-anna'],
    ]);
    // The API recorded the person who signed in, not a console identity.
    expect(after.transitions.at(-1)!.principal).to.equal('dpo-person');
    expect(await page.locator('table.transitions tbody tr').count()).to.equal(2);
    expect(await page.locator('#verify-form').count(), 'nothing left to verify').to.equal(0);
  });

  it('the DPO extends a deadline once with a reason: the due date moves, the reason is shown, the form is gone', async function () {
    this.timeout(60_000);
    const before = await getRequest(made.erasure);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.erasure}`);
    await page.selectOption('#months', '2');
    await page.fill('#extend_reason', 'several identifiers to search in archived systems');
    await Promise.all([page.waitForNavigation(), page.click('#extend-form button[type=submit]')]);
    expect(await page.locator('p.done').textContent()).to.equal('The deadline was extended.');
    const after = await getRequest(made.erasure);
    expect(after.extensionReason).to.equal('several identifiers to search in archived systems');
    expect(after.dueTime!.getTime()).to.be.greaterThan(before.dueTime!.getTime() + 55 * DAY);
    expect(await page.locator('dl.facts').textContent()).to.include('several identifiers to search in archived systems');
    expect(await page.locator('#extend-form').count(), 'one extension only').to.equal(0);
    // Art. 12(3): that the person was told of it is recorded from the same page.
    expect(await page.locator('dd.extension-notice').textContent()).to.equal('not recorded yet');
    await page.selectOption('#notice_method', 'LETTER');
    await page.fill('#notified_by', 'dpo-desk-2');
    await Promise.all([page.waitForNavigation(), page.click('#notice-form button[type=submit]')]);
    expect(await page.locator('p.done').textContent()).to.equal('The notice to the person was recorded.');
    const noticed = await getRequest(made.erasure);
    expect(noticed.extensionNotice).to.deep.include({ method: 'LETTER', notifiedBy: 'dpo-desk-2' });
    expect(await page.locator('dd.extension-notice').textContent()).to.include('by LETTER (dpo-desk-2)');
    expect(await page.locator('#notice-form').count(), 'recorded once').to.equal(0);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'request-extension-notice');
  });

  it('the DPO verifies one identifier of several: the ticked one only, and the request stays received until all are', async function () {
    this.timeout(60_000);
    const two = (
      await call(
        s.rights,
        s.rights.createRequest,
        CreateRequestRequest.fromPartial({ parent: `tenants/${TENANT}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifiers: [phone(PHONE_A), email(EMAIL_B)], receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'two-1' }),
        as(tokens.setup),
      )
    ).request!;
    const id = idOf(two.name);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${id}`);
    await page.check('#position-2');
    await page.selectOption('#method', 'EMAIL_CONFIRMATION');
    await page.fill('#verified_by', 'dpo-ben');
    await Promise.all([page.waitForNavigation(), page.click('#verify-form button[type=submit]')]);
    const after = await getRequest(id);
    expect(after.state).to.equal(RequestState.REQUEST_STATE_RECEIVED);
    expect(after.identifiers.map((i) => i.verificationMethod)).to.deep.equal(['', 'EMAIL_CONFIRMATION']);
    expect(await page.locator('tr[data-position="2"] td').nth(3).textContent()).to.equal('EMAIL_CONFIRMATION');
    expect(await page.locator('tr[data-position="1"] td').nth(3).textContent()).to.equal('not verified');
    // One identifier left: the form stays, without a choice of identifiers.
    expect(await page.locator('#verify-form').count()).to.equal(1);
    expect(await page.locator('#verify-form input[name=positions]').count()).to.equal(0);
  });

  it('the DPO rejects a request with a reason; a second rejection is refused by the API and the refusal is shown with its status and reason', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.overdue}`);
    await page.fill('#reason', 'no reply to our identity check');
    // A second tab still shows the form: its rejection comes second.
    const stale = await page.context().newPage();
    await stale.goto(`${base}/tenants/${TENANT}/requests/${made.overdue}`);
    await Promise.all([page.waitForNavigation(), page.click('#reject-form button[type=submit]')]);
    expect(await page.locator('dd.state').textContent()).to.equal('rejected');
    expect(await page.locator('dd.rejection').textContent()).to.equal('no reply to our identity check');
    expect((await getRequest(made.overdue)).state).to.equal(RequestState.REQUEST_STATE_REJECTED);

    await stale.fill('#reason', 'again');
    const [answer] = await Promise.all([stale.waitForResponse((r) => r.url().endsWith('/reject')), stale.click('#reject-form button[type=submit]')]);
    expect(answer.status()).to.equal(409);
    const alert = await stale.locator('[role=alert]').textContent();
    expect(alert).to.match(/FAILED_PRECONDITION \([A-Z_]+\): /);
    expect((await getRequest(made.overdue)).rejectionReason).to.equal('no reply to our identity check');
    await stale.close();
  });

  it('the DPO registers a request: identifiers go in the POST body only; bad input is shown as INVALID_ARGUMENT and registers nothing', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/new`);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'new-request');
    const count = async () => (await call(s.rights, s.rights.listRequests, ListRequestsRequest.fromPartial({ parent: `tenants/${TENANT}`, pageSize: 500 }), as(tokens.dpo))).requests.length;
    const before = await count();

    await page.selectOption('#kind', 'access');
    await page.selectOption('#received_via', 'email');
    await page.selectOption('#id_kind_1', 'phone');
    await page.fill('#id_value_1', '12');
    const [refused] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#create-form button[type=submit]')]);
    expect(refused.status()).to.equal(400);
    expect(await page.locator('[role=alert]').textContent()).to.match(/INVALID_ARGUMENT/);
    expect(await count()).to.equal(before);

    await page.selectOption('#id_kind_1', 'phone');
    await page.fill('#id_value_1', PHONE_NEW);
    await Promise.all([page.waitForNavigation(), page.click('#create-form button[type=submit]')]);
    expect(await page.locator('p.done').textContent()).to.equal('The request was registered.');
    expect(await page.locator('dd.state').textContent()).to.equal('received');
    expect(await count()).to.equal(before + 1);
    const id = page.url().split('/').at(-1)!.split('?')[0];
    const created = await getRequest(id);
    expect(created.kind).to.equal(RequestKind.REQUEST_KIND_ACCESS);
    expect(created.receivedVia).to.equal(ReceivedVia.RECEIVED_VIA_EMAIL);
    expect(created.transitions[0].principal).to.equal('dpo-person');
  });

  it('a POST without a CSRF token, with a forged one, or with another person\'s is refused and changes nothing', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.soon}`);
    const token = await page.locator('#reject-form input[name=_csrf]').inputValue();
    const target = `${base}/tenants/${TENANT}/requests/${made.soon}/reject`;
    const without = await page.request.post(target, { form: { reason: 'no token' }, maxRedirects: 0 });
    expect(without.status()).to.equal(403);
    expect(await without.text()).to.include('CSRF_CHECK_FAILED');
    const forged = await page.request.post(target, { form: { reason: 'forged', _csrf: 'forged-token' }, maxRedirects: 0 });
    expect(forged.status()).to.equal(403);
    // The DPO's cookie and token, sent with another person's sign-in: bound to the first person.
    const cookies = await page.context().cookies(base);
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite])).to.deep.equal([['__Host-console-csrf', true, 'Strict']]);
    expect(cookies[0].secure, 'Secure behind the proxy').to.equal(true);
    const stolen = await fetch(target, {
      method: 'POST',
      redirect: 'manual',
      headers: { [HEADER]: tokens.dpo2, cookie: `${cookies[0].name}=${cookies[0].value}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ reason: 'cross-person', _csrf: token }).toString(),
    });
    expect(stolen.status).to.equal(403);
    expect((await getRequest(made.soon)).state).to.equal(RequestState.REQUEST_STATE_RECEIVED);
    // The same token from the person it was made for passes.
    const ok = await page.request.post(target, { form: { reason: 'duplicate of another request', _csrf: token }, maxRedirects: 0 });
    expect(ok.status()).to.equal(303);
    expect((await getRequest(made.soon)).state).to.equal(RequestState.REQUEST_STATE_REJECTED);
  });

  it('each role sees only what the API lets it: the auditor reads without actions, a sender gets nothing, another tenant\'s DPO finds nothing, a forged token is refused, no sign-in is asked to sign in', async function () {
    this.timeout(60_000);
    const auditor = await pageAs('auditor');
    expect((await auditor.goto(`${base}/tenants/${TENANT}/requests?state=all`))!.status()).to.equal(200);
    expect(await auditor.locator('table.queue tbody tr').count()).to.be.greaterThan(3);
    expect((await auditor.goto(`${base}/tenants/${TENANT}/requests/${made.erasure}`))!.status()).to.equal(200);
    expect(await auditor.locator('form.action').count(), 'no action forms for the auditor').to.equal(0);
    // The create form is a page like any other; the API refuses the auditor's CreateRequest.
    await auditor.goto(`${base}/tenants/${TENANT}/requests/new`);
    await auditor.fill('#id_value_1', PHONE_NEW);
    const [refused] = await Promise.all([auditor.waitForResponse((r) => r.request().method() === 'POST'), auditor.click('#create-form button[type=submit]')]);
    expect(refused.status()).to.equal(403);
    expect(await auditor.locator('[role=alert]').textContent()).to.match(/PERMISSION_DENIED \(ROLE_NOT_ALLOWED\): consent\.v1\.SubjectRightsService\/CreateRequest needs one of the roles dpo/);

    const sender = await pageAs('sender');
    const senderQueue = await sender.goto(`${base}/tenants/${TENANT}/requests`);
    expect(senderQueue!.status()).to.equal(403);
    expect(await sender.locator('[role=alert]').textContent()).to.match(/PERMISSION_DENIED \(ROLE_NOT_ALLOWED\)/);
    expect(await sender.locator('table.queue').count()).to.equal(0);
    expect(await seriousViolations(sender)).to.deep.equal([]);
    await shot(sender, 'sender-refused');
    expect((await sender.goto(`${base}/tenants/${TENANT}/requests/${made.erasure}`))!.status()).to.equal(403);
    expect(await sender.locator('table.identifiers').count()).to.equal(0);

    const other = await pageAs('otherDpo');
    expect((await other.goto(`${base}/tenants/${TENANT}/requests`))!.status()).to.equal(404);
    expect(await other.locator('[role=alert]').textContent()).to.match(/NOT_FOUND \(TENANT_NOT_FOUND\)/);

    const nobody = await pageAs(null);
    expect((await nobody.goto(`${base}/tenants/${TENANT}/requests`))!.status()).to.equal(401);
    expect(await nobody.locator('[role=alert]').textContent()).to.include('UNAUTHENTICATED');
    // A forged token in the header: the console forwards it, the API refuses it.
    const forger = await pageAs('forged');
    expect((await forger.goto(`${base}/tenants/${TENANT}/requests`))!.status()).to.equal(401);
    expect(await forger.locator('[role=alert]').textContent()).to.match(/UNAUTHENTICATED \([A-Z_]+\)/);
    expect(await forger.locator('table.queue').count()).to.equal(0);
    // Assets need no sign-in and are served by the console itself.
    expect((await nobody.goto(`${base}/assets/htmx.min.js`))!.status()).to.equal(200);
  });

  it('no phone number or e-mail address reached an address, a browser console message or a log line; the pages broke no CSP rule', function () {
    expect(urls.length).to.be.greaterThan(20);
    for (const value of PERSONAL) {
      for (const url of urls) expect(url, 'a URL').not.to.include(value);
      for (const m of browserMessages) expect(m, 'a browser console message').not.to.include(value);
      expect(Buffer.concat(consoleLog).toString('utf8'), 'the console log').not.to.include(value);
      expect(s.logs(), 'the server log').not.to.include(value);
    }
    expect(Buffer.concat(consoleLog).toString('utf8')).to.include('"route":"/tenants/:tenant/requests/:id"');
    // Nothing but the expected refusals (4xx answers Chromium reports as failed loads).
    const unexpected = browserMessages.filter((m) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(m));
    expect(unexpected, 'browser console').to.deep.equal([]);
  });
});

forEachDatabase('Web console in development mode', (db) => {
  let s: TestServer;
  let web: RunningConsole;
  const consoleLog = new PassThrough();
  const consoleErrors: string[] = [];
  before(async function () {
    s = await startTestServer(db());
    await call(s.tenants, s.tenants.createTenant, { tenantId: TENANT, displayName: 'ACME', requestId: '', settings: undefined });
    consoleLog.on('data', (c: Buffer) => consoleErrors.push(c.toString('utf8')));
    web = await startConsole({ port: 0, bindAddress: '127.0.0.1', signIn: 'development', proxyHeader: HEADER }, { api: new ApiClient({ address: s.address }), logger: createLogger('error', consoleLog), now: () => T0 });
  });
  after(async () => {
    await web?.close();
    await s?.stop();
  });

  it('an API that cannot be reached is shown as UNAVAILABLE (503), not as an empty queue', async () => {
    const lost = await startConsole({ port: 0, bindAddress: '127.0.0.1', signIn: 'development', proxyHeader: HEADER }, { api: new ApiClient({ address: '127.0.0.1:1' }), logger: createLogger('error', new PassThrough()) });
    try {
      const answer = await fetch(`http://127.0.0.1:${lost.port}/tenants/${TENANT}/requests`);
      expect(answer.status).to.equal(503);
      const html = await answer.text();
      expect(html).to.include('<strong>UNAVAILABLE</strong>');
      expect(html).not.to.include('No requests match');
    } finally {
      await lost.close();
    }
  });

  it('needs no sign-in on loopback: the API\'s development principal applies; its CSRF cookie is HttpOnly and SameSite=Strict over plain http', async () => {
    const base = `http://127.0.0.1:${web.port}`;
    const queue = await fetch(`${base}/tenants/${TENANT}/requests`);
    expect(queue.status).to.equal(200);
    const html = await queue.text();
    expect(html).to.include('Signed in as <strong>development</strong>');
    expect(html).to.include('No requests match these filters.');
    const form = await fetch(`${base}/tenants/${TENANT}/requests/new`);
    const cookie = form.headers.get('set-cookie')!;
    expect(cookie).to.match(/^console-csrf=/).and.include('HttpOnly').and.include('SameSite=Strict');
    expect(cookie).not.to.include('Secure');
    const token = /name="_csrf" value="([^"]+)"/.exec(await form.text())![1];
    const created = await fetch(`${base}/tenants/${TENANT}/requests`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookie.split(';')[0], 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: token, kind: 'objection', received_via: 'phone', request_id: 'dev-1', id_kind_1: 'phone', id_value_1: PHONE_A }).toString(),
    });
    expect(created.status).to.equal(303);
    const location = created.headers.get('location')!;
    expect(location).to.match(/^\/tenants\/acme\/requests\/[A-Za-z0-9_-]+$/);
    // The confirmation travels in a one-minute cookie the action sets, shown once (found by a
    // probe: "?done=erased" in a hand-written link showed a success nobody had had).
    const flash = (created.headers.getSetCookie?.() ?? []).find((c) => c.startsWith('console-done='))!;
    expect(flash).to.match(/^console-done=created(@|%40)[^;]+;.*HttpOnly/i).and.match(/SameSite=Strict/i);
    const elsewhere = await fetch(`${base}/tenants/${TENANT}/requests`, { headers: { cookie: flash.split(';')[0] } });
    expect(await elsewhere.text(), 'another page leaves it').to.not.include('The request was registered.');
    expect(elsewhere.headers.get('set-cookie') ?? '').to.not.match(/console-done=;/);
    const page = await fetch(`${base}${location}`, { headers: { cookie: flash.split(';')[0] } });
    const shown = await page.text();
    expect(shown).to.include('<dd class="state">completed</dd>').and.include('The request was registered.');
    expect(page.headers.get('set-cookie'), 'shown once: cleared').to.match(/console-done=;/);
    for (const forged of ['erased', 'verified', 'rejected', 'extended', 'created']) {
      const byLink = await (await fetch(`${base}${location}?done=${forged}`)).text();
      expect(byLink, forged).to.not.include('The erasure was carried out').and.not.include('The verification was recorded').and.not.include('The request was rejected').and.not.include('The deadline was extended').and.not.include('The request was registered');
    }
    const unknown = await (await fetch(`${base}${location}`, { headers: { cookie: 'console-done=constructor' } })).text();
    expect(unknown).to.not.include('function Object');
    expect((await call(s.rights, s.rights.getRequest, { name: location.split('?')[0].slice(1) })).request!.transitions[0].principal).to.equal('dev-admin');
  });

  it('a request body it cannot read is a 4xx page, not a 500 logged as its own fault', async () => {
    const base = `http://127.0.0.1:${web.port}`;
    const before = (await call(s.rights, s.rights.listRequests, { parent: `tenants/${TENANT}`, state: 0, kind: 0, overdue: false, dueBefore: undefined, pageSize: 500, pageToken: '' })).requests.length;
    const sent: Array<[string, string, string]> = [
      ['application/json', 'broken JSON', '{"a":'],
      ['application/x-www-form-urlencoded', 'a body over the limit', `a=${'x'.repeat(200 * 1024)}`],
      ['multipart/form-data; boundary=x', 'multipart', '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--\r\n'],
      ['text/xml', 'XML', '<a/>'],
    ];
    for (const [type, what, body] of sent) {
      const answer = await fetch(`${base}/tenants/${TENANT}/requests`, { method: 'POST', headers: { 'content-type': type }, body });
      expect(answer.status, what).to.be.within(400, 499);
      expect(await answer.text(), what).to.include('Request refused');
    }
    const after = (await call(s.rights, s.rights.listRequests, { parent: `tenants/${TENANT}`, state: 0, kind: 0, overdue: false, dueBefore: undefined, pageSize: 500, pageToken: '' })).requests.length;
    expect(after).to.equal(before);
  });

  it('a form field sent twice, or a JSON body whose field is not text, is a 400 page, not a 500 logged as its own fault', async () => {
    const base = `http://127.0.0.1:${web.port}`;
    const errorsBefore = consoleErrors.length;
    // With a valid CSRF token, as a signed-in auditor's browser (or script) sends it.
    const form = await fetch(`${base}/tenants/${TENANT}/audit`);
    const cookie = form.headers.get('set-cookie')!.split(';')[0];
    const token = /name="_csrf" value="([^"]+)"/.exec(await form.text())![1];
    const sent: Array<[string, string, string, string]> = [
      ['/audit/find', 'application/x-www-form-urlencoded', 'identifier twice', `_csrf=${token}&kind=phone&identifier=%2B4915112345678&identifier=%2B4915112345679`],
      ['/audit/find', 'application/json', 'identifier as an object', JSON.stringify({ _csrf: token, kind: 'phone', identifier: { a: 1 } })],
      ['/audit/find', 'application/json', 'kind as a number', JSON.stringify({ _csrf: token, kind: 7, identifier: '+4915112345678' })],
      ['/requests', 'application/x-www-form-urlencoded', 'kind twice', `_csrf=${token}&kind=objection&kind=erasure`],
    ];
    for (const [route, type, what, body] of sent) {
      const answer = await fetch(`${base}/tenants/${TENANT}${route}`, { method: 'POST', headers: { 'content-type': type, cookie }, body });
      expect(answer.status, what).to.equal(400);
      const html = await answer.text();
      expect(html, what).to.include('Request refused');
      expect(html, what).to.not.include('4915112345678');
    }
    expect(consoleErrors.slice(errorsBefore).join(''), 'console error log').to.equal('');
  });
});

describe('Web console from the build (npm start with CONSOLE_PORT)', () => {
  it("npm run build copies every file the console reads at run time, and the built service serves the console's pages and assets", async function () {
    this.timeout(120_000);
    // The build script copies the console's non-TypeScript folders; the test checkout does the same.
    const build = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.build as string;
    const folders = readdirSync(path.join(ROOT, 'src', 'console'), { withFileTypes: true }).filter((d) => d.isDirectory() && readdirSync(path.join(ROOT, 'src', 'console', d.name)).some((f) => !f.endsWith('.ts')));
    expect(folders.map((d) => d.name).sort()).to.deep.equal(['assets', 'views']);
    // The same loop copies the privacy center's folders: the console must be among the apps it copies.
    expect(build).to.include("for(const a of ['console','privacy-center'])for(const d of ['views','assets'])fs.cpSync('src/'+a+'/'+d,'dist/src/'+a+'/'+d,{recursive:true})");

    const checkout = builtCheckout();
    const child = spawn(process.execPath, ['dist/src/main.js'], { cwd: checkout.dir, env: cleanEnv({ PORT: '0', CONSOLE_PORT: '0', SHUTDOWN_DRAIN_MS: '0' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    try {
      let port = 0;
      for (let i = 0; i < 300 && !port; i++) {
        const line = out.split('\n').find((l) => l.includes('"console listening"'));
        if (line) port = JSON.parse(line).port;
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(port, `console listening (output: ${out.slice(-2000)})`).to.be.greaterThan(0);
      const base = `http://127.0.0.1:${port}`;
      const home = await fetch(`${base}/`);
      expect(home.status).to.equal(200);
      expect(await home.text()).to.include('<link rel="stylesheet" href="/assets/console.css">');
      const css = await fetch(`${base}/assets/console.css`);
      expect([css.status, css.headers.get('content-type')]).to.deep.equal([200, 'text/css; charset=utf-8']);
      const htmx = await fetch(`${base}/assets/htmx.min.js`);
      expect(htmx.status).to.equal(200);
      expect(await htmx.text()).to.include('htmx');
      expect((await fetch(`${base}/tenants/${TENANT}/requests`)).status, 'the API answers: the tenant does not exist').to.equal(404);
    } finally {
      const closed = new Promise((r) => child.once('close', r));
      child.kill('SIGTERM');
      await closed;
      checkout.remove();
    }
  });
});
