import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Browser, BrowserContext, Page } from 'playwright-core';
import { ApiClient } from '../../src/console/api-client';
import { RunningConsole, startConsole } from '../../src/console/server';
import { ConsoleConfig } from '../../src/config/config';
import { createLogger } from '../../src/logging/logger';
import { CreateRequestRequest, ReceivedVia, RequestKind, RequestState } from '../../src/gen/consent/v1/subject_rights';
import { launchChromium, screenshots } from '../support/browser';
import { forEachDatabase } from '../support/databases';
import { phone } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';
import { startTestIdp, TestIdp } from '../support/test-idp';
import { createTokenIssuer } from '../support/tokens';

/**
 * Issue 19 point 2: CONSOLE_SIGN_IN=oidc. Chromium against the console, a real API that verifies
 * the provider's JWT access tokens (JWT_JWKS_FILE is the provider's key set), and a real OpenID
 * Connect provider (oidc-provider, test/support/test-idp.ts) on another site (localhost vs
 * 127.0.0.1). The storage does not matter to sign-in; the suite runs on each database only because
 * it is cheap. Screenshots go to test-artefacts/console/<database>/.
 */

const TENANT = 'acme';
const CLIENT_ID = 'consent-console';
const CLIENT_SECRET = 'console-client-secret-for-tests';
const SECURE_ORIGIN = 'https://console.example.test';
/** The API as a resource server: a resource indicator is an absolute URI (RFC 8707). */
const TEST_AUDIENCE = 'https://consent-ledger.test/api';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

forEachDatabase('Web console OIDC sign-in in Chromium', (db, kind) => {
  let s: TestServer;
  let idp: TestIdp;
  let web: RunningConsole;
  let secureWeb: RunningConsole;
  let base: string;
  let browser: Browser;
  let requestId = '';
  const consoleLog: Buffer[] = [];
  const contexts: BrowserContext[] = [];
  /** Everything that must never be logged: codes, states and tokens seen in the tests. */
  const secrets: string[] = [];
  const consoleUrls: string[] = [];
  const { shot } = screenshots('console', kind);

  const idOf = (name: string) => name.slice(name.lastIndexOf('/') + 1);
  let setupToken = '';
  const as = (token: string) => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${token}`);
    return md;
  };
  const getRequest = async (id: string) => (await call(s.rights, s.rights.getRequest, { name: `tenants/${TENANT}/requests/${id}` }, as(setupToken))).request!;

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    page.on('request', (r) => {
      if (r.url().startsWith(base)) consoleUrls.push(r.url());
    });
    return page;
  }

  /** At the provider's login page: sign in as `login` and consent; ends back on the console. */
  async function signInAtIdp(page: Page, login: string): Promise<void> {
    expect(page.url().startsWith(`${idp.issuer}/`), `at the provider: ${page.url()}`).to.equal(true);
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    // The consent page (first sign-in of this person to this client).
    if (page.url().startsWith(idp.issuer)) await Promise.all([page.waitForURL((u) => u.href.startsWith(base)), page.click('button[type=submit]')]);
    expect(page.url().startsWith(base), `back on the console: ${page.url()}`).to.equal(true);
  }

  const sessionCookie = async (page: Page) => (await page.context().cookies(base)).find((c) => c.name === 'console-session');

  before(async function () {
    this.timeout(120_000);
    browser = await launchChromium();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    idp = await startTestIdp({
      consoleOrigins: [base, SECURE_ORIGIN],
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      audience: TEST_AUDIENCE,
      accounts: { 'dpo-person': { roles: ['dpo'], tenants: [TENANT] }, 'sender-person': { roles: ['sender'], tenants: [TENANT] } },
    });
    // The set-up's own token (tenant, purposes) is signed by a second key under the provider's issuer name.
    const setupIssuer = await createTokenIssuer({ issuer: idp.issuer, audience: TEST_AUDIENCE });
    const jwksFile = path.join(db().dataDir, 'idp-jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [...JSON.parse(idp.jwks).keys, ...JSON.parse(setupIssuer.jwks).keys] }));
    s = await startTestServer(db(), { authMode: 'authenticated', tokens: { jwksFile, issuer: idp.issuer, audience: TEST_AUDIENCE, algorithms: ['ES256'], clockSkewMs: 60_000 } });
    s.clock.set(Date.now());
    setupToken = await setupIssuer.sign({ sub: 'setup', roles: ['admin', 'dpo'], tenants: '*' });
    await call(s.tenants, s.tenants.createTenant, { tenantId: TENANT, displayName: 'ACME', requestId: '', settings: undefined }, as(setupToken));
    const created = await call(
      s.rights,
      s.rights.createRequest,
      CreateRequestRequest.fromPartial({ parent: `tenants/${TENANT}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifiers: [phone('+4915112340009')], receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: 'oidc-1' }),
      as(setupToken),
    );
    requestId = idOf(created.request!.name);

    const logStream = new PassThrough();
    logStream.on('data', (c: Buffer) => consoleLog.push(c));
    const oidc = { issuer: idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, scopes: ['openid', 'api'], forwardToken: 'access_token' as const };
    const config: ConsoleConfig = { port, bindAddress: '127.0.0.1', signIn: 'oidc', proxyHeader: 'x-forwarded-access-token', oidc: { ...oidc, publicUrl: base } };
    web = await startConsole(config, { api: new ApiClient({ address: s.address }), logger: createLogger('debug', logStream), now: () => s.clock.now() });
    // The same behind TLS (its public address is https): only its cookies are looked at.
    secureWeb = await startConsole(
      { ...config, port: 0, oidc: { ...oidc, publicUrl: SECURE_ORIGIN } },
      { api: new ApiClient({ address: s.address }), logger: createLogger('debug', logStream), now: () => s.clock.now() },
    );
  });

  after(async function () {
    this.timeout(30_000);
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await web?.close();
    await secureWeb?.close();
    await s?.stop();
    await idp?.close();
  });

  it('an unsigned visit goes to the provider and back to the page asked for; the API acts as the person who signed in; the session cookie is HttpOnly and SameSite=Lax', async function () {
    this.timeout(60_000);
    const page = await newPage();
    let code = '';
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname === '/oidc/callback') {
        code = url.searchParams.get('code') ?? '';
        secrets.push(code, url.searchParams.get('state') ?? '');
      }
    });
    const authorizations: string[] = [];
    page.on('request', (r) => {
      if (r.url().startsWith(`${idp.issuer}/auth?`)) authorizations.push(r.url());
    });
    await page.goto(`${base}/tenants/${TENANT}/requests?state=all`);
    expect(authorizations).to.have.length(1);
    const authorize = new URL(authorizations[0]);
    expect(authorize.origin).to.equal(idp.issuer);
    // Authorization code flow with PKCE (S256), state and nonce; back to the console's callback.
    expect(authorize.searchParams.get('response_type')).to.equal('code');
    expect(authorize.searchParams.get('code_challenge_method')).to.equal('S256');
    expect(authorize.searchParams.get('state')).to.have.length.greaterThan(20);
    expect(authorize.searchParams.get('nonce')).to.have.length.greaterThan(20);
    expect(authorize.searchParams.get('redirect_uri')).to.equal(`${base}/oidc/callback`);
    await signInAtIdp(page, 'dpo-person');
    expect(code).to.have.length.greaterThan(10);
    expect(page.url()).to.equal(`${base}/tenants/${TENANT}/requests?state=all`);
    expect(await page.locator('table.queue tbody tr').count()).to.equal(1);
    expect(await page.locator('p.who strong').textContent()).to.equal('dpo-person');
    await shot(page, 'oidc-signed-in');

    const cookies = await page.context().cookies(base);
    const session = cookies.find((c) => c.name === 'console-session')!;
    expect([session.httpOnly, session.sameSite, session.path, session.secure], 'plain http on loopback: not Secure').to.deep.equal([true, 'Lax', '/', false]);
    expect(session.expires, 'a browser-session cookie').to.equal(-1);
    const token = web.app.decodeSecureSession(decodeURIComponent(session.value))!.get('signedIn')!.token;
    secrets.push(token, token.split('.')[2]);

    // The person acts with their own token: the API records their sub.
    await page.goto(`${base}/tenants/${TENANT}/requests/${requestId}`);
    await page.selectOption('#method', 'ID_DOCUMENT');
    await page.fill('#verified_by', 'dpo-anna');
    await Promise.all([page.waitForNavigation(), page.click('#verify-form button[type=submit]')]);
    const after = await getRequest(requestId);
    expect(after.state).to.equal(RequestState.REQUEST_STATE_VERIFIED);
    expect(after.transitions.at(-1)!.principal).to.equal('dpo-person');
  });

  it('a tampered or unknown session cookie is no session: the page sends the browser to sign in again', async function () {
    this.timeout(60_000);
    const page = await newPage();
    await page.goto(`${base}/`);
    await signInAtIdp(page, 'dpo-person');
    const good = (await sessionCookie(page))!.value;
    const raw = Buffer.from(decodeURIComponent(good), 'base64');
    raw[raw.length - 5] ^= 0x01;
    for (const value of [encodeURIComponent(raw.toString('base64')), 'bm90IGEgc2Vzc2lvbg%3D%3D', 'x']) {
      const answer = await fetch(`${base}/tenants/${TENANT}/requests`, { redirect: 'manual', headers: { cookie: `console-session=${value}` } });
      expect(answer.status, value).to.equal(302);
      expect(answer.headers.get('location')!.startsWith(`${idp.issuer}/`)).to.equal(true);
    }
    const ok = await fetch(`${base}/tenants/${TENANT}/requests`, { redirect: 'manual', headers: { cookie: `console-session=${good}` } });
    expect(ok.status, 'the untouched cookie still works').to.equal(200);
  });

  it('a callback whose state does not match the sign-in begun here is refused with 400 and makes no session', async function () {
    this.timeout(60_000);
    // Another browser's callback address (its code and state), opened where a different sign-in
    // is in progress: the login-CSRF attack state prevents.
    const other = await newPage();
    const callbacks: string[] = [];
    other.on('request', (r) => {
      if (r.url().startsWith(`${base}/oidc/callback?`)) callbacks.push(r.url());
    });
    await other.goto(`${base}/`);
    await signInAtIdp(other, 'dpo-person');
    expect(callbacks).to.have.length(1);
    const foreign = new URL(callbacks[0]);
    secrets.push(foreign.searchParams.get('code')!, foreign.searchParams.get('state')!);

    const page = await newPage();
    await page.goto(`${base}/tenants/${TENANT}/requests`);
    expect(page.url().startsWith(idp.issuer), 'a sign-in of its own is in progress').to.equal(true);
    const logBefore = Buffer.concat(consoleLog).length;
    const answer = await page.goto(foreign.href);
    expect(answer!.status()).to.equal(400);
    expect(await page.locator('[role=alert]').textContent()).to.include('SIGN_IN_FAILED').and.include('did not match');
    // Refused for its state, before the code was sent anywhere.
    expect(Buffer.concat(consoleLog).subarray(logBefore).toString('utf8')).to.include('"code":"OAUTH_INVALID_RESPONSE"');
    const cookie = (await sessionCookie(page))?.value ?? '';
    expect(cookie === '' || !web.app.decodeSecureSession(decodeURIComponent(cookie))?.get('signedIn'), 'no session').to.equal(true);
    const response = await page.request.get(`${base}/tenants/${TENANT}/requests`, { maxRedirects: 0 });
    expect(response.status(), 'the next page asks for a sign-in').to.equal(302);
    // A callback with nothing begun at all.
    const stray = await fetch(`${base}/oidc/callback?code=made-up&state=made-up`, { redirect: 'manual' });
    expect(stray.status).to.equal(400);
  });

  it('signing out (a CSRF-protected POST) ends the session here and at the provider; the old cookie is refused', async function () {
    this.timeout(60_000);
    const page = await newPage();
    await page.goto(`${base}/`);
    await signInAtIdp(page, 'dpo-person');
    const old = (await sessionCookie(page))!.value;
    await Promise.all([page.waitForURL(`${base}/oidc/sign-out`), page.click('#sign-out')]);
    // Without the form's CSRF token the POST is refused.
    const forged = await page.request.post(`${base}/oidc/sign-out`, { form: {}, maxRedirects: 0 });
    expect(forged.status()).to.equal(403);
    await page.click('#sign-out-form button[type=submit]');
    // The provider's RP-initiated logout asks for confirmation, then returns to the console.
    await page.waitForURL((u) => u.href.startsWith(idp.issuer));
    await Promise.all([page.waitForURL(`${base}/oidc/signed-out`), page.click('button[name=logout]')]);
    expect(await page.locator('p.done').textContent()).to.equal('You are signed out of the console.');
    expect(await sessionCookie(page)).to.equal(undefined);
    const replay = await fetch(`${base}/tenants/${TENANT}/requests`, { redirect: 'manual', headers: { cookie: `console-session=${old}` } });
    expect(replay.status, 'a copy of the signed-out cookie').to.equal(302);
    // Signed out at the provider too: signing in asks for the login again.
    await page.click('#sign-in-again');
    await page.waitForURL((u) => u.href.startsWith(idp.issuer));
    expect(await page.locator('input[name=login]').count()).to.equal(1);
  });

  it('a person whose token has the role sender sees 403 on the queue', async function () {
    this.timeout(60_000);
    const page = await newPage();
    await page.goto(`${base}/tenants/${TENANT}/requests`);
    await signInAtIdp(page, 'sender-person');
    expect(await page.locator('[role=alert]').textContent()).to.match(/PERMISSION_DENIED \(ROLE_NOT_ALLOWED\)/);
    expect((await page.goto(`${base}/tenants/${TENANT}/requests`))!.status()).to.equal(403);
    expect(await page.locator('table.queue').count()).to.equal(0);
  });

  it('behind https the session and CSRF cookies are Secure with the __Host- prefix, and the redirect names the public address', async () => {
    const secureBase = `http://127.0.0.1:${secureWeb.port}`;
    const answer = await fetch(`${secureBase}/tenants/${TENANT}/requests`, { redirect: 'manual' });
    expect(answer.status).to.equal(302);
    expect(new URL(answer.headers.get('location')!).searchParams.get('redirect_uri')).to.equal(`${SECURE_ORIGIN}/oidc/callback`);
    const setCookie = answer.headers.getSetCookie().find((c) => c.startsWith('__Host-console-session='))!;
    const attributes = setCookie.split(';').slice(1).map((a) => a.trim().toLowerCase());
    expect(attributes).to.include.members(['path=/', 'httponly', 'secure', 'samesite=lax']);
    expect(attributes.some((a) => a.startsWith('domain='))).to.equal(false);
    // A session of that console (made with its key), on a page with a form: the CSRF cookie too.
    const session = secureWeb.app.createSecureSession({ signedIn: { sid: 'test-sid', token: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJkcG8tcGVyc29uIn0.c2ln', exp: Date.now() + 60_000 } });
    const page = await fetch(`${secureBase}/oidc/sign-out`, { headers: { cookie: `__Host-console-session=${encodeURIComponent(secureWeb.app.encodeSecureSession(session))}` } });
    expect(page.status).to.equal(200);
    const csrf = page.headers.getSetCookie().find((c) => c.startsWith('__Host-console-csrf='))!;
    expect(csrf.split(';').slice(1).map((a) => a.trim().toLowerCase())).to.include.members(['path=/', 'httponly', 'secure', 'samesite=strict']);
  });

  it('with CONSOLE_SESSION_KEY_FILE a session and its forms work on another console process (a restart, a replica); without it they do not', async function () {
    this.timeout(30_000);
    const keyFile = path.join(db().dataDir, 'session.key');
    writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`);
    const oidc = { issuer: idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, scopes: ['openid'], forwardToken: 'access_token' as const, publicUrl: base, sessionKeyFile: keyFile };
    const start = (settings: typeof oidc | Omit<typeof oidc, 'sessionKeyFile'>) =>
      startConsole({ port: 0, bindAddress: '127.0.0.1', signIn: 'oidc', proxyHeader: 'x-forwarded-access-token', oidc: settings }, { api: new ApiClient({ address: s.address }), logger: createLogger('debug', new PassThrough()) });
    const [one, two] = [await start(oidc), await start(oidc)];
    const { sessionKeyFile: _none, ...withoutKey } = oidc;
    const other = await start(withoutKey);
    try {
      const cookie = `console-session=${encodeURIComponent(one.app.encodeSecureSession(one.app.createSecureSession({ signedIn: { sid: 'replica-sid', token: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJkcG8tcGVyc29uIn0.c2ln', exp: Date.now() + 60_000 } })))}`;
      const form = await fetch(`http://127.0.0.1:${one.port}/oidc/sign-out`, { headers: { cookie } });
      expect(form.status).to.equal(200);
      const csrfCookie = form.headers.getSetCookie().find((c) => c.startsWith('console-csrf='))!.split(';')[0];
      const token = /name="_csrf" value="([^"]+)"/.exec(await form.text())![1];
      const signOut = await fetch(`http://127.0.0.1:${two.port}/oidc/sign-out`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: `${cookie}; ${csrfCookie}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: token }).toString(),
      });
      expect(signOut.status, "the other process opens the session and accepts the first one's form").to.equal(303);
      expect((await fetch(`http://127.0.0.1:${other.port}/oidc/sign-out`, { headers: { cookie }, redirect: 'manual' })).status, 'another key: no session').to.equal(302);
    } finally {
      for (const c of [one, two, other]) await c.close();
    }
  });

  it('no code, state or token is in the console log or the API log, and no console address carries one; the log names the callback route only', () => {
    const logs = Buffer.concat(consoleLog).toString('utf8') + s.logs();
    expect(secrets.filter(Boolean).length).to.be.greaterThan(4);
    for (const secret of secrets.filter(Boolean)) expect(logs, 'a secret in the logs').not.to.include(secret);
    expect(logs).to.include('"route":"/oidc/callback"');
    expect(logs).not.to.include('code=');
    for (const url of consoleUrls.filter((u) => !u.includes('/oidc/callback'))) {
      for (const secret of secrets.filter(Boolean)) expect(url).not.to.include(secret);
    }
  });
});
