import { hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify';
import fastifySecureSession from '@fastify/secure-session';
import { LRUCache } from 'lru-cache';
import type { ConsoleOidcConfig } from '../config/config';
import { readSessionKeys } from '../config/config';
import type { Logger } from '../logging/logger';
import { Credential, credentialFromToken, SignInRequired } from './principal';
import type { Views } from './views';

/**
 * openid-client 6 is ESM-only; this package is CommonJS. It is loaded with a dynamic import(),
 * which every Node 20 supports (require() of ES modules only from 20.19), and typed from its
 * declarations.
 */
type OidcLibrary = typeof import('openid-client');
type OidcConfiguration = import('openid-client').Configuration;

/** Where the provider sends the browser back to, under the console's public origin. */
export const CALLBACK_PATH = '/oidc/callback';
export const SIGN_OUT_PATH = '/oidc/sign-out';
export const SIGNED_OUT_PATH = '/oidc/signed-out';

/** How long a sign-in begun at the provider may take before its state is thrown away. */
const LOGIN_TTL_MS = 10 * 60_000;
/** A session never outlives its token, and never this either (secure-session's own expiry, seconds). */
const SESSION_MAX_SECONDS = 12 * 3600;
/**
 * Browsers keep cookies up to 4096 bytes (name, value and attributes). The session is encrypted
 * (24-byte nonce, 16-byte tag) and base64-encoded; a token too large for that is refused with a
 * clear page instead of a cookie the browser silently drops.
 */
const MAX_COOKIE_VALUE = 3900;

/** The sign-in in progress, between the redirect to the provider and its callback. */
interface PendingLogin {
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  startedAt: number;
}

/** A signed-in session: the forwarded token, its expiry and an id sign-out can revoke. */
interface SignedIn {
  sid: string;
  token: string;
  /** Milliseconds since the epoch: the token's exp. */
  exp: number;
}

declare module '@fastify/secure-session' {
  interface SessionData {
    login: PendingLogin;
    signedIn: SignedIn;
  }
}

export interface OidcSignInOptions {
  logger: Logger;
  views: Views;
}

/**
 * CONSOLE_SIGN_IN=oidc (docs/console.md, "Signing in"): the authorization code flow with PKCE,
 * state and nonce against the organisation's OpenID Connect provider, through openid-client.
 * The session lives in an encrypted cookie (@fastify/secure-session, libsodium secretbox): no
 * server-side store, so it survives restarts and works across replicas when they share
 * CONSOLE_SESSION_KEY_FILE. It holds the token the console forwards to the API, which verifies it
 * on every call: the console itself grants nothing.
 */
export class OidcSignIn {
  private configuration?: Promise<OidcConfiguration>;
  private library?: Promise<OidcLibrary>;
  private endSessionOrigin?: string;
  /** Sessions signed out in this process, until their token would have expired anyway. */
  private readonly revoked = new LRUCache<string, true>({ max: 100_000, ttlAutopurge: false, ttl: SESSION_MAX_SECONDS * 1000 });
  readonly secure: boolean;
  private readonly keys: Buffer[];

  constructor(
    private readonly settings: ConsoleOidcConfig,
    private readonly options: OidcSignInOptions,
  ) {
    // Plain http only for a console on loopback (the configuration allows nothing else).
    this.secure = new URL(settings.publicUrl).protocol === 'https:';
    this.keys = settings.sessionKeyFile ? readSessionKeys(settings.sessionKeyFile) : [randomBytes(32)];
  }

  /**
   * The key CSRF tokens are bound to the person with: derived from the session key when it comes
   * from CONSOLE_SESSION_KEY_FILE, so forms keep working across restarts and replicas like the
   * session does; random per process otherwise.
   */
  csrfHmacKey(): string | undefined {
    if (!this.settings.sessionKeyFile) return undefined;
    return Buffer.from(hkdfSync('sha256', this.keys[0], Buffer.alloc(0), 'consent-ledger console csrf', 32)).toString('base64url');
  }

  /** The session cookie, and the routes of the flow (none of which needs a sign-in). */
  async register(app: FastifyInstance, csrf: preHandlerHookHandler, credentialOf: (request: FastifyRequest) => Credential): Promise<void> {
    await app.register(fastifySecureSession, {
      key: this.keys,
      // __Host-: Secure, path=/, no Domain: no other host or path can set or read it.
      cookieName: this.secure ? '__Host-console-session' : 'console-session',
      // Lax, not Strict: the provider's redirect back is a cross-site top-level GET that must carry it.
      cookie: { path: '/', httpOnly: true, secure: this.secure, sameSite: 'lax' },
      expiry: SESSION_MAX_SECONDS,
    });
    app.get(CALLBACK_PATH, async (request, reply) => this.callback(request, reply));
    // A page with the sign-out form (a POST with a CSRF token, so no other site can sign people out).
    app.get(SIGN_OUT_PATH, async (request, reply) => {
      const credential = credentialOf(request);
      const csrfToken = reply.generateCsrf({ userInfo: credential.who });
      return reply.type('text/html').send(this.options.views.page('sign-out', credential, { title: 'Sign out', csrf: csrfToken, atProvider: this.endSessionOrigin !== undefined }));
    });
    app.post(SIGN_OUT_PATH, { preHandler: csrf }, async (request, reply) => this.signOut(request, reply));
    app.get(SIGNED_OUT_PATH, async (_request, reply) =>
      reply.type('text/html').send(this.options.views.page('signed-out', { who: 'nobody (signed out)', roles: [] }, { title: 'Signed out', heading: 'Signed out' })),
    );
  }

  /** The person signed in on this request; SignInRequired when there is no valid session. */
  credential(request: FastifyRequest): Credential {
    const session = request.session.get('signedIn') as SignedIn | undefined;
    if (!session || typeof session.token !== 'string' || typeof session.sid !== 'string' || typeof session.exp !== 'number') throw new SignInRequired('not signed in');
    if (Date.now() >= session.exp) throw new SignInRequired('the sign-in has expired');
    if (this.revoked.has(session.sid)) throw new SignInRequired('signed out');
    return { ...credentialFromToken(session.token), signOut: true };
  }

  /** The origin forms may post to beyond the console: the provider's sign-out (after sign-out's redirect). */
  formActionOrigin(): string {
    return this.endSessionOrigin ?? new URL(this.settings.issuer).origin;
  }

  /**
   * A page asked for without a session: start the sign-in at the provider and come back to it.
   * Only a plain page GET is redirected; an htmx request reloads its page (which then does), and
   * a form POST gets the 401 page (its data cannot survive the round trip anyway).
   */
  async challenge(request: FastifyRequest, reply: FastifyReply, unauthenticatedPage: () => FastifyReply): Promise<FastifyReply> {
    if (request.method !== 'GET' && request.method !== 'HEAD') return unauthenticatedPage();
    if (request.headers['hx-request'] === 'true') return unauthenticatedPage().header('hx-refresh', 'true');
    let config: OidcConfiguration;
    let lib: OidcLibrary;
    try {
      [config, lib] = await Promise.all([this.discover(), this.load()]);
    } catch (err) {
      return this.unavailable(reply, err);
    }
    const login: PendingLogin = {
      state: lib.randomState(),
      nonce: lib.randomNonce(),
      verifier: lib.randomPKCECodeVerifier(),
      returnTo: sameOriginPath(request.url),
      startedAt: Date.now(),
    };
    // A fresh session: whatever was in the cookie (an expired or revoked sign-in) goes.
    request.session.regenerate();
    request.session.set('login', login);
    const url = lib.buildAuthorizationUrl(config, {
      redirect_uri: this.callbackUrl(),
      scope: this.settings.scopes.join(' '),
      state: login.state,
      nonce: login.nonce,
      code_challenge: await lib.calculatePKCECodeChallenge(login.verifier),
      code_challenge_method: 'S256',
    });
    return reply.redirect(url.href, 302);
  }

  private async callback(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const login = request.session.get('login') as PendingLogin | undefined;
    // Whatever happens next, this state is used up: a replayed callback finds none.
    request.session.set('login', undefined);
    if (!login || typeof login.state !== 'string' || typeof login.startedAt !== 'number' || Date.now() - login.startedAt > LOGIN_TTL_MS) {
      this.options.logger.warn('console: sign-in callback without a sign-in in progress');
      return this.failed(reply, 400, 'This sign-in was not started here, or took longer than ten minutes. Open the console again to sign in.');
    }
    let config: OidcConfiguration;
    let lib: OidcLibrary;
    try {
      [config, lib] = await Promise.all([this.discover(), this.load()]);
    } catch (err) {
      return this.unavailable(reply, err);
    }
    // The address the provider redirected to, as the provider saw it (the public origin, not the
    // listener's): openid-client takes code and state from it and sends it as redirect_uri.
    const current = new URL(request.url, this.settings.publicUrl);
    let tokens: Awaited<ReturnType<OidcLibrary['authorizationCodeGrant']>>;
    try {
      tokens = await lib.authorizationCodeGrant(config, current, { pkceCodeVerifier: login.verifier, expectedState: login.state, expectedNonce: login.nonce, idTokenExpected: true });
    } catch (err) {
      // Codes only: the provider's error text and the library's message may quote what it was sent.
      const e = err as { name?: string; code?: string; error?: string };
      this.options.logger.warn('console: sign-in refused', { error: { name: e.name ?? 'Error', code: e.code ?? '', oauth_error: typeof e.error === 'string' ? e.error : '' } });
      const reason = e.code === 'OAUTH_INVALID_RESPONSE' || /state/i.test(String((err as Error).message)) ? 'The answer from the sign-in service did not match the sign-in begun here.' : 'The sign-in service refused the sign-in.';
      return this.failed(reply, 400, `${reason} Open the console again to sign in.`);
    }
    const token = this.settings.forwardToken === 'id_token' ? tokens.id_token : tokens.access_token;
    if (!token || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
      this.options.logger.error('console: the provider issued no JWT to forward', { forward_token: this.settings.forwardToken });
      return this.failed(reply, 502, `The sign-in service issued no JWT ${this.settings.forwardToken === 'id_token' ? 'ID token' : 'access token'} that the API could verify. An administrator must configure it to issue JWT access tokens for the API (docs/console.md).`);
    }
    const claims = credentialFromToken(token).claims;
    const expSeconds = typeof claims.exp === 'number' ? claims.exp : tokens.expires_in ? Math.floor(Date.now() / 1000) + tokens.expires_in : undefined;
    if (expSeconds === undefined) return this.failed(reply, 502, 'The sign-in service issued a token without an expiry; the console keeps no session that never ends.');
    const signedIn: SignedIn = { sid: randomBytes(16).toString('base64url'), token, exp: expSeconds * 1000 };
    request.session.regenerate();
    request.session.set('signedIn', signedIn);
    const estimate = Math.ceil(((JSON.stringify({ signedIn }).length + 64) * 4) / 3);
    if (estimate > MAX_COOKIE_VALUE) {
      request.session.delete();
      this.options.logger.error('console: the token is too large for the session cookie', { bytes: token.length });
      return this.failed(reply, 502, `The sign-in service's token (${token.length} bytes) is too large to keep in the session cookie. An administrator can leave claims out of it (docs/console.md).`);
    }
    this.options.logger.info('console: signed in');
    return reply.redirect(sameOriginPath(login.returnTo), 303);
  }

  private async signOut(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const session = request.session.get('signedIn') as SignedIn | undefined;
    if (session?.sid) this.revoked.set(session.sid, true, { ttl: Math.max(1, Math.min(session.exp - Date.now(), SESSION_MAX_SECONDS * 1000)) });
    request.session.delete();
    let target = SIGNED_OUT_PATH;
    try {
      const [config, lib] = await Promise.all([this.discover(), this.load()]);
      // RP-initiated logout, when the provider offers it: the provider's own session ends too.
      if (config.serverMetadata().end_session_endpoint) target = lib.buildEndSessionUrl(config, { post_logout_redirect_uri: `${this.settings.publicUrl}${SIGNED_OUT_PATH}` }).href;
    } catch (err) {
      this.options.logger.warn('console: provider sign-out skipped (provider unreachable)', { error: { name: (err as Error).name } });
    }
    return reply.redirect(target, 303);
  }

  private callbackUrl(): string {
    return `${this.settings.publicUrl}${CALLBACK_PATH}`;
  }

  private load(): Promise<OidcLibrary> {
    this.library ??= import('openid-client');
    return this.library;
  }

  /** The provider's discovery document, fetched on first use and kept; retried after a failure. */
  private discover(): Promise<OidcConfiguration> {
    if (!this.configuration) {
      this.configuration = (async () => {
        const lib = await this.load();
        const secret = this.settings.clientSecretFile ? readFileSync(this.settings.clientSecretFile, 'utf8').trim() : this.settings.clientSecret;
        const config = await lib.discovery(new URL(this.settings.issuer), this.settings.clientId, secret, secret ? lib.ClientSecretPost(secret) : lib.None(), {
          timeout: 10,
          // Plain http only to a provider on loopback (the configuration refuses any other).
          ...(new URL(this.settings.issuer).protocol === 'http:' ? { execute: [lib.allowInsecureRequests] } : {}),
        });
        const endSession = config.serverMetadata().end_session_endpoint;
        this.endSessionOrigin = endSession ? new URL(endSession).origin : undefined;
        return config;
      })();
      this.configuration.catch(() => {
        this.configuration = undefined;
      });
    }
    return this.configuration;
  }

  private unavailable(reply: FastifyReply, err: unknown): FastifyReply {
    this.options.logger.error('console: the sign-in service is unreachable', { error: { name: (err as Error).name, code: (err as { code?: string }).code ?? '' } });
    return this.failed(reply, 503, 'The sign-in service cannot be reached. Try again in a moment; if it persists, tell an administrator.');
  }

  private failed(reply: FastifyReply, code: number, message: string): FastifyReply {
    const statusName = code === 400 ? 'SIGN_IN_FAILED' : code === 503 ? 'UNAVAILABLE' : 'SIGN_IN_MISCONFIGURED';
    return reply
      .code(code)
      .type('text/html')
      .send(this.options.views.page('error', { who: 'nobody (not signed in)', roles: [] }, { title: 'Sign-in failed', heading: 'Sign-in failed', error: { statusName, reason: '', message } }));
  }
}

/** A path on this console to return to: never another origin (//host, /\\host) nor the flow's own routes. */
export function sameOriginPath(candidate: string): string {
  if (!candidate.startsWith('/')) return '/';
  let path: string;
  try {
    const parsed = new URL(candidate, 'http://console.invalid');
    if (parsed.origin !== 'http://console.invalid') return '/';
    path = `${parsed.pathname}${parsed.search}`;
  } catch {
    return '/';
  }
  // Checked after normalising: "/a/../..//host" resolves to "//host", which a browser reads as another origin.
  if (path.startsWith('//') || path.startsWith('/\\') || path.startsWith('/oidc/')) return '/';
  return path;
}
