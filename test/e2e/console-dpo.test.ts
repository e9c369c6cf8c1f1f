import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
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
import { CreateRequestRequest, DataSubjectRequest, LegalHoldGround, ReceivedVia, RequestKind, RequestState } from '../../src/gen/consent/v1/subject_rights';
import { launchChromium, screenshots, seriousViolations } from '../support/browser';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER, TokenIssuer } from '../support/tokens';

/**
 * Issue 19 point 3: the console's DPO actions on people's data, in Chromium against a real
 * server: erasure behind a confirmation page (and a legal hold's refusal), the export download,
 * and the tenant's legal holds page. Same set-up as console.test.ts (proxy sign-in, one browser
 * context per person). Screenshots go to test-artefacts/console/<database>/.
 */

const HEADER = 'x-forwarded-access-token';
const TENANT = 'acme';
const PHONE_B = '+4915112340002';
const EMAIL_B = 'anna.schmidt@example.org';
const PHONE_C = '+4915112340004';
const PHONE_D = '+4915112340005';
const PERSONAL = [PHONE_B, EMAIL_B, PHONE_C, PHONE_D, '4915112340', 'anna.schmidt'];

forEachDatabase('Web console DPO actions in Chromium', (db, kind) => {
  let s: TestServer;
  let issuer: TokenIssuer;
  let web: RunningConsole;
  let base: string;
  let browser: Browser;
  const consoleLog: Buffer[] = [];
  const tokens: Record<string, string> = {};
  const made: Record<'erasure' | 'held' | 'access' | 'received', string> = { erasure: '', held: '', access: '', received: '' };
  const urls: string[] = [];
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
  const openHolds = async () => (await call(s.rights, s.rights.listLegalHolds, { parent: `tenants/${TENANT}`, subjectIdentifier: undefined, includeReleased: false, pageSize: 50, pageToken: '' }, as(tokens.dpo))).holds;

  async function pageAs(who: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, extraHTTPHeaders: { [HEADER]: tokens[who] }, acceptDownloads: true });
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
      ['dpo', ['dpo'], [TENANT]],
      ['auditor', ['auditor'], [TENANT]],
      ['sender', ['sender'], [TENANT]],
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
        purposeId: 'newsletter',
        purpose: { name: '', displayName: 'newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: '', createTime: undefined, allowedWhileRestricted: false },
        requestId: '',
      },
      setup,
    );
    await call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${TENANT}/purposes/newsletter`, language: 'en', text: 'Newsletter', requestId: 'n1' }, setup);
    for (const p of [PHONE_B, PHONE_C, PHONE_D]) await call(s.consent, s.consent.recordConsent, consentRequest(TENANT, { subjectIdentifier: phone(p) }), setup);
    const create = async (k: RequestKind, ids: ReturnType<typeof phone>[], requestId: string, verify = true) => {
      const r = (
        await call(
          s.rights,
          s.rights.createRequest,
          CreateRequestRequest.fromPartial({ parent: `tenants/${TENANT}`, kind: k, subjectIdentifiers: ids, receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId }),
          setup,
        )
      ).request!;
      if (verify) await call(s.rights, s.rights.verifyIdentity, { name: r.name, method: 'ID_DOCUMENT', verifiedBy: 'setup', identifierPositions: [] }, setup);
      return idOf(r.name);
    };
    made.erasure = await create(RequestKind.REQUEST_KIND_ERASURE, [phone(PHONE_B), email(EMAIL_B)], 'erasure-b');
    made.held = await create(RequestKind.REQUEST_KIND_ERASURE, [phone(PHONE_C)], 'erasure-c');
    made.access = await create(RequestKind.REQUEST_KIND_ACCESS, [phone(PHONE_D)], 'access-d');
    made.received = await create(RequestKind.REQUEST_KIND_ERASURE, [phone(PHONE_D)], 'erasure-d', false);
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

  it('erasure: the request page links to a confirmation page naming each identifier and what will happen; without the tick nothing is erased; with it the request page shows the outcomes and the signed receipt', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.erasure}`);
    expect(await page.locator('#export-form').count(), 'no export on an erasure request').to.equal(0);
    // Following the link does nothing but show the confirmation page.
    await Promise.all([page.waitForURL(/\/erase$/), page.click('#erase-action a')]);
    expect((await getRequest(made.erasure)).state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    const before = await getRequest(made.erasure);
    const rows = await page.locator('table.erase-plan tbody tr').evaluateAll((trs) => trs.map((tr) => Array.from(tr.children as ArrayLike<{ textContent: string | null }>).map((td) => td.textContent)));
    expect(rows).to.deep.equal([
      ['1', 'PHONE', before.identifiers[0].subject, 'the identifier itself'],
      ['2', 'EMAIL', 'nothing held', 'the identifier itself'],
    ]);
    const text = await page.locator('main').textContent();
    expect(text).to.include('crypto-shredding').and.include('irreversible').and.include('erasure receipt');
    for (const value of PERSONAL) expect(await page.content(), value).not.to.include(value);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'erase-confirm');

    // Sent without the tick: refused by the console, nothing erased.
    const [unconfirmed] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#erase-form button[type=submit]')]);
    expect(unconfirmed.status()).to.equal(400);
    expect(await page.locator('[role=alert]').textContent()).to.include('NOT_CONFIRMED').and.include('nothing was erased');
    expect((await getRequest(made.erasure)).state).to.equal(RequestState.REQUEST_STATE_VERIFIED);

    await page.check('#confirm');
    await Promise.all([page.waitForNavigation(), page.click('#erase-form button[type=submit]')]);
    const after = await getRequest(made.erasure);
    expect(after.state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
    expect(await page.locator('dd.state').textContent()).to.equal('completed');
    expect(await page.locator('#erasure-receipt').textContent()).to.equal(after.erasureReceipt);
    const receiptRows = await page.locator('table.receipt-subjects tbody tr').evaluateAll((trs) => trs.map((tr) => Array.from(tr.children as ArrayLike<{ textContent: string | null }>).map((td) => td.textContent)));
    expect(receiptRows.map((r) => r.slice(0, 4))).to.deep.equal(after.identifiers.map((i) => [String(i.position), i.kind, i.subject || 'nothing held', i.outcome]));
    expect(receiptRows[0][3]).to.match(/^erased/);
    expect(receiptRows.map((r) => r[4]), 'a key destroyed for the person found only').to.deep.equal(['yes', 'no']);
    expect(await page.locator('#erase-action').count(), 'no second erasure offered').to.equal(0);
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'request-erased');
  });

  it('legal holds: the DPO places a hold with the identifier in the POST body; the request page marks it; the erasure is refused with LEGAL_HOLD naming the hold; the hold is released with a note', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    // Reached from the queue.
    await page.goto(`${base}/tenants/${TENANT}/requests`);
    await Promise.all([page.waitForURL(/\/legal-holds$/), page.click('a[href$="/legal-holds"]')]);
    expect(await page.locator('table.holds tbody tr').textContent()).to.include('No legal holds');
    await page.selectOption('#id_kind', 'phone');
    await page.fill('#id_value', PHONE_C);
    await page.selectOption('#ground', 'e');
    await page.fill('#hold_note', 'case 2026-17');
    await Promise.all([page.waitForNavigation(), page.click('#place-hold-form button[type=submit]')]);
    const holds = await openHolds();
    expect(holds).to.have.length(1);
    expect(holds[0].ground).to.equal(LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS);
    expect(holds[0].placedBy).to.equal('dpo-person');
    const held = await getRequest(made.held);
    expect(holds[0].subject).to.equal(held.identifiers[0].subject);
    expect(await page.locator(`tr[data-hold="${idOf(holds[0].name)}"]`).textContent()).to.include('(e) legal claims').and.include('case 2026-17');
    expect(await seriousViolations(page)).to.deep.equal([]);
    await shot(page, 'legal-holds');

    // Bad input is shown with its status and changes nothing.
    await page.fill('#id_value', PHONE_C);
    await page.fill('#hold_note', 'x'.repeat(1000));
    await page.selectOption('#id_kind', 'email');
    const [bad] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#place-hold-form button[type=submit]')]);
    expect(bad.status()).to.be.oneOf([400, 404]);
    expect(await page.locator('[role=alert]').textContent()).to.match(/^\s*(INVALID_ARGUMENT|NOT_FOUND)/);
    expect(await openHolds()).to.have.length(1);

    // The held person's request page lists the hold; another request's does not.
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.held}`);
    expect(await page.locator('table.holds tbody tr').textContent()).to.include(holds[0].name);
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.access}`);
    expect(await page.locator('table.holds').count()).to.equal(0);

    await page.goto(`${base}/tenants/${TENANT}/requests/${made.held}/erase`);
    await page.check('#confirm');
    const [refused] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#erase-form button[type=submit]')]);
    expect(refused.status()).to.equal(409);
    const alert = await page.locator('[role=alert]').textContent();
    expect(alert).to.include('FAILED_PRECONDITION (LEGAL_HOLD)').and.include(holds[0].name);
    for (const value of PERSONAL) expect(alert, value).not.to.include(value);
    expect(await page.locator('#hold-blocks').textContent()).to.include('Nothing was erased');
    expect((await getRequest(made.held)).state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    await shot(page, 'erase-legal-hold');

    await page.goto(`${base}/tenants/${TENANT}/legal-holds`);
    const id = idOf(holds[0].name);
    await page.fill(`#release-note-${id}`, 'claim settled');
    await Promise.all([page.waitForNavigation(), page.click(`tr[data-hold="${id}"] button[type=submit]`)]);
    expect(await openHolds()).to.have.length(0);
    await page.goto(`${base}/tenants/${TENANT}/legal-holds?released=1`);
    expect(await page.locator(`tr[data-hold="${id}"]`).textContent()).to.include('claim settled').and.include('by dpo-person');
  });

  it('export: a POST downloads the JSON package as an attachment whose SHA-256 matches the signed manifest; the request is completed and can be exported again', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.access}`);
    expect(await page.locator('#erase-action').count()).to.equal(0);
    for (let round = 0; round < 2; round++) {
      const [download, response] = await Promise.all([
        page.waitForEvent('download'),
        page.waitForResponse((r) => r.url().endsWith('/export')),
        page.click('#export-form button[type=submit]'),
      ]);
      expect(response.request().method()).to.equal('POST');
      const headers = response.headers();
      expect(headers['content-type']).to.equal('application/json; charset=utf-8');
      expect(headers['content-disposition']).to.equal(`attachment; filename="export-${TENANT}-${made.access}.json"`);
      expect(download.suggestedFilename()).to.equal(`export-${TENANT}-${made.access}.json`);
      const body = readFileSync((await download.path())!);
      const sha = createHash('sha256').update(body).digest('hex');
      expect(headers['x-export-package-sha256']).to.equal(sha);
      const manifest = JSON.parse(Buffer.from(headers['x-export-signed-manifest'].split('.')[1], 'base64url').toString('utf8')) as Record<string, unknown>;
      expect(JSON.stringify(manifest)).to.include(sha);
      const pkg = JSON.parse(body.toString('utf8')) as { format: string };
      expect(pkg.format).to.equal('consent-ledger.export/v1');
      // The person's identifier is in the package (it is their export), never in an address.
      expect(body.toString('utf8')).to.include(PHONE_D);
      expect((await getRequest(made.access)).state).to.equal(RequestState.REQUEST_STATE_COMPLETED);
      if (round === 0) await page.reload();
    }
    expect(await page.locator('#export-form').count(), 'a completed request can be exported again').to.equal(1);
  });

  it('an export larger than the console holds is refused with 413 EXPORT_TOO_LARGE (consentctl export streams it), nothing downloaded', async function () {
    this.timeout(60_000);
    const small = await startConsole(
      { port: 0, bindAddress: '127.0.0.1', signIn: 'proxy', proxyHeader: HEADER },
      { api: new ApiClient({ address: s.address }), logger: createLogger('error', new PassThrough()), now: () => s.clock.now(), maxExportBytes: 64 },
    );
    try {
      const page = await pageAs('dpo');
      await page.goto(`http://127.0.0.1:${small.port}/tenants/${TENANT}/requests/${made.access}`);
      const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/export')), page.click('#export-form button[type=submit]')]);
      expect(response.status()).to.equal(413);
      expect(response.headers()['content-disposition']).to.equal(undefined);
      const text = await response.text();
      expect(text).to.include('EXPORT_TOO_LARGE').and.include('consentctl export').and.not.include(PHONE_D);
    } finally {
      await small.close();
    }
  });

  it('a received (unverified) erasure request offers neither erasure nor export; its confirmation page offers no form', async function () {
    this.timeout(30_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.received}`);
    expect(await page.locator('#erase-action').count()).to.equal(0);
    expect(await page.locator('#export-form').count()).to.equal(0);
    await page.goto(`${base}/tenants/${TENANT}/requests/${made.received}/erase`);
    expect(await page.locator('#erase-form').count()).to.equal(0);
    expect(await page.locator('main').textContent()).to.include('cannot be erased now');
  });

  it('the new forms refuse a POST without a CSRF token or with a forged one, and change nothing', async function () {
    this.timeout(60_000);
    const page = await pageAs('dpo');
    await page.goto(`${base}/tenants/${TENANT}/legal-holds`);
    const holdsBefore = (await call(s.rights, s.rights.listLegalHolds, { parent: `tenants/${TENANT}`, subjectIdentifier: undefined, includeReleased: true, pageSize: 50, pageToken: '' }, as(tokens.dpo))).holds.length;
    for (const [target, form] of [
      [`/tenants/${TENANT}/requests/${made.held}/erase`, { confirm: 'erase' }],
      [`/tenants/${TENANT}/requests/${made.access}/export`, {}],
      [`/tenants/${TENANT}/legal-holds`, { id_kind: 'phone', id_value: PHONE_C, ground: 'e', note: 'no token', request_id: 'csrf-1' }],
      [`/tenants/${TENANT}/legal-holds/anything/release`, { note: 'no token' }],
    ] as Array<[string, Record<string, string>]>) {
      for (const extra of [{}, { _csrf: 'forged-token' }] as Array<Record<string, string>>) {
        const r = await page.request.post(`${base}${target}`, { form: { ...form, ...extra }, maxRedirects: 0 });
        expect(r.status(), target).to.equal(403);
        expect(await r.text()).to.include('CSRF_CHECK_FAILED');
        expect(r.headers()['content-disposition'], 'no download').to.equal(undefined);
      }
    }
    expect((await getRequest(made.held)).state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    const holdsAfter = (await call(s.rights, s.rights.listLegalHolds, { parent: `tenants/${TENANT}`, subjectIdentifier: undefined, includeReleased: true, pageSize: 50, pageToken: '' }, as(tokens.dpo))).holds.length;
    expect(holdsAfter).to.equal(holdsBefore);
  });

  it('roles: the auditor sees the holds and the receipt but no action form (no CSRF token is even made for it); a sender gets nothing', async function () {
    this.timeout(60_000);
    const auditor = await pageAs('auditor');
    expect((await auditor.goto(`${base}/tenants/${TENANT}/requests/${made.access}`))!.status()).to.equal(200);
    expect(await auditor.locator('form').count(), 'no forms for the auditor').to.equal(0);
    expect((await auditor.goto(`${base}/tenants/${TENANT}/requests/${made.erasure}`))!.status()).to.equal(200);
    expect(await auditor.locator('#erasure-receipt').count()).to.equal(1);
    expect((await auditor.goto(`${base}/tenants/${TENANT}/requests/${made.held}/erase`))!.status()).to.equal(200);
    expect(await auditor.locator('form').count()).to.equal(0);
    expect((await auditor.goto(`${base}/tenants/${TENANT}/legal-holds?released=1`))!.status()).to.equal(200);
    expect(await auditor.locator('table.holds tbody tr').count()).to.be.greaterThan(0);
    expect(await auditor.locator('form').count(), 'no place or release forms').to.equal(0);
    expect(await seriousViolations(auditor)).to.deep.equal([]);
    await shot(auditor, 'legal-holds-auditor');

    const sender = await pageAs('sender');
    const holds = await sender.goto(`${base}/tenants/${TENANT}/legal-holds`);
    expect(holds!.status()).to.equal(403);
    expect(await sender.locator('[role=alert]').textContent()).to.match(/PERMISSION_DENIED \(ROLE_NOT_ALLOWED\)/);
    expect(await sender.locator('table.holds tbody tr td').first().textContent()).to.equal('No legal holds.');
    expect(await sender.locator('form').count()).to.equal(0);
    expect((await sender.goto(`${base}/tenants/${TENANT}/requests/${made.held}/erase`))!.status()).to.equal(403);
    expect(await sender.locator('form').count()).to.equal(0);
  });

  it('no phone number or e-mail address reached an address or a log line', function () {
    expect(urls.length).to.be.greaterThan(10);
    const log = Buffer.concat(consoleLog).toString('utf8');
    for (const value of PERSONAL) {
      for (const url of urls) expect(url, 'a URL').not.to.include(value);
      expect(log, 'the console log').not.to.include(value);
      expect(s.logs(), 'the server log').not.to.include(value);
    }
    expect(log).to.include('"route":"/tenants/:tenant/requests/:id/export"');
  });
});
