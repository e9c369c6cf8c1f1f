import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Fastify, { FastifyInstance, FastifyRequest, preHandlerHookHandler } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import fastifyHelmet from '@fastify/helmet';
import type { ConsoleConfig } from '../config/config';
import type { Logger } from '../logging/logger';
import { ApiClient } from './api-client';
import { Credential, credentialOf, SignInRequired } from './principal';
import { Views } from './views';
import { homePage } from './pages/home';
import { requestPages } from './pages/requests';
import { dpoActionPages, MAX_EXPORT_BYTES } from './pages/dpo-actions';
import { auditorPages } from './pages/auditor';
import { adminPages } from './pages/admin';
import { OidcSignIn } from './oidc';
import { boundedHttpServer } from '../web/bounded-http-server';
import { frameworkErrorPage } from '../web/framework-errors';
import { Confirmations } from './confirmations';

/** What every page module gets: the API, the templates, the clock, the caller's credential, the CSRF check. */
export interface ConsolePageContext {
  api: ApiClient;
  views: Views;
  now: () => number;
  credential(request: FastifyRequest): Credential;
  /** preHandler of every state-changing route: refuses a POST without a valid CSRF token. */
  csrf: preHandlerHookHandler;
  /** The largest export package the console downloads (MAX_EXPORT_BYTES unless a test sets less). */
  maxExportBytes: number;
  /** The confirmation an action's redirect carries to the page it leads to. */
  confirmations: Confirmations;
}

export interface ConsoleOptions {
  /** Where the gRPC API is (host:port), with its CA when it serves TLS. */
  api: ApiClient;
  logger: Logger;
  /** The clock "days left" is counted on (tests pass the server's). */
  now?: () => number;
  /** The largest export package downloaded (default MAX_EXPORT_BYTES). */
  maxExportBytes?: number;
  /** How long a whole request (headers and body) may take to arrive (default HTTP_REQUEST_TIMEOUT_MS, src/web/bounded-http-server.ts). */
  requestTimeoutMs?: number;
}


/** The CSP of a console: with OIDC sign-in, the sign-out form's redirect may go on to the provider's sign-out. */
function contentSecurityPolicy(oidc: OidcSignIn | undefined) {
  if (!oidc) return CONTENT_SECURITY_POLICY;
  // Chromium applies form-action to the redirects that follow a form's POST.
  return { ...CONTENT_SECURITY_POLICY, formAction: ["'self'", () => oidc.formActionOrigin()] };
}

export interface RunningConsole {
  port: number;
  app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * The strict Content-Security-Policy of every answer: scripts and styles from the console
 * itself only (htmx and one stylesheet, both served below), no inline code, no other origin,
 * not framable, forms post only back here.
 */
export const CONTENT_SECURITY_POLICY = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
  objectSrc: ["'none'"],
};

/** Builds the console's Fastify app (not listening yet). */
export async function buildConsole(config: ConsoleConfig, options: ConsoleOptions): Promise<FastifyInstance> {
  const { logger } = options;
  const now = options.now ?? Date.now;
  // No Fastify request log (it would write every URL): the onResponse hook below logs route patterns instead.
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    serverFactory: boundedHttpServer(options.requestTimeoutMs),
    // An address Fastify's router refuses (too long, undecodable): the console's error page, with the headers.
    frameworkErrors: frameworkErrorPage(CONTENT_SECURITY_POLICY, (request, reply, code) => {
      logger.info('console request', { method: request.method, route: 'refused address', status: code });
      reply.code(code).type('text/html').send(views.page('error', safeCredential(request), { title: 'Bad address', heading: 'Bad address', error: { statusName: 'INVALID_ARGUMENT', reason: '', message: 'The address is malformed or too long.' } }));
    }),
  });
  const views = new Views();
  const oidc = config.signIn === 'oidc' && config.oidc ? new OidcSignIn(config.oidc, { logger, views }) : undefined;
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: { useDefaults: false, directives: contentSecurityPolicy(oidc) },
    // Nothing the console sends may be cached by a shared cache or leak its address onwards.
    referrerPolicy: { policy: 'no-referrer' },
  });
  await app.register(fastifyCookie);
  await app.register(fastifyFormbody);
  // Secure cookies behind the (TLS-terminating) proxy and with OIDC on https; plain http on loopback only.
  const secureCookies = config.signIn === 'proxy' || (oidc?.secure ?? false);
  await app.register(fastifyCsrf, {
    // The CSRF secret lives in a cookie of its own: HttpOnly, SameSite=Strict, and Secure with the
    // __Host- prefix when served over https. Plain http on loopback in development.
    cookieKey: secureCookies ? '__Host-console-csrf' : 'console-csrf',
    cookieOpts: { path: '/', httpOnly: true, sameSite: 'strict', secure: secureCookies },
    // Tokens are bound to the signed-in person, so a token of one person is no use to another.
    getUserInfo: (request) => credentialFor(request).who,
    csrfOpts: { userInfo: true, hmacKey: oidc?.csrfHmacKey() ?? randomBytes(32).toString('base64url') },
  });

  const credentials = new WeakMap<FastifyRequest, Credential>();
  const credentialFor = (request: FastifyRequest): Credential => {
    let credential = credentials.get(request);
    if (!credential) {
      credential = oidc ? oidc.credential(request) : credentialOf(request, config);
      credentials.set(request, credential);
    }
    return credential;
  };

  const assets = {
    '/assets/console.css': { type: 'text/css; charset=utf-8', body: readFileSync(path.join(__dirname, 'assets', 'console.css')) },
    // Bundled from the htmx.org package: nothing is fetched from another origin at run time.
    '/assets/htmx.min.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(require.resolve('htmx.org/dist/htmx.min.js')) },
  };
  for (const [url, asset] of Object.entries(assets)) {
    app.get(url, async (_request, reply) => reply.type(asset.type).header('cache-control', 'public, max-age=3600').send(asset.body));
  }

  // A form's fields are single strings (a JSON body too), but for the few fields a form repeats
  // on purpose: a field sent twice or as an object is refused here (400) instead of reaching a
  // page's code as an array (a lookup answered 500 and logged an error for it).
  app.addHook('preValidation', async (request) => {
    const problem = formBodyProblem(request.body);
    if (problem) throw Object.assign(new Error(problem), { statusCode: 400 });
  });

  // Pages are personal: never stored by a browser or proxy cache.
  app.addHook('onSend', async (request, reply) => {
    if (!request.url.startsWith('/assets/')) reply.header('cache-control', 'no-store');
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the address itself (which could carry a query string).
    logger.info('console request', { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: reply.statusCode, duration_ms: Math.round(reply.elapsedTime) });
  });

  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).type('text/html').send(views.page('error', safeCredential(request), { title: 'Not found', heading: 'Not found', error: { statusName: 'NOT_FOUND', reason: '', message: 'There is no page at this address.' } })),
  );
  const safeCredential = (request: FastifyRequest): Credential => {
    try {
      return credentialFor(request);
    } catch {
      return { who: 'nobody (not signed in)', roles: [] };
    }
  };
  app.setErrorHandler(async (error: Error & { code?: string; statusCode?: number; validation?: unknown }, request, reply) => {
    const page = (code: number, heading: string, statusName: string, message: string) =>
      reply.code(code).type('text/html').send(views.page('error', safeCredential(request), { title: heading, heading, error: { statusName, reason: '', message } }));
    if (error instanceof SignInRequired && oidc) return oidc.challenge(request, reply, () => page(401, 'Sign-in required', 'UNAUTHENTICATED', 'You are not signed in (or your sign-in has ended). Open the console again to sign in.'));
    if (error instanceof SignInRequired) return page(401, 'Sign-in required', 'UNAUTHENTICATED', `${error.message}. Open the console through the organisation's sign-in.`);
    if (error.code?.startsWith('FST_CSRF_')) {
      return page(403, 'Form refused', 'CSRF_CHECK_FAILED', 'This form did not come from the console page you are signed in to (its CSRF token is missing or invalid). Go back, reload the page and send it again.');
    }
    if (error.validation) return page(400, 'Bad address', 'INVALID_ARGUMENT', 'The address names no valid tenant or request.');
    // A request the browser (or a client) got wrong: broken or too large a body, an unsupported
    // content type. Its status as Fastify set it, not a 500 logged as the console's fault.
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return page(error.statusCode, 'Request refused', 'INVALID_ARGUMENT', 'The console could not read this request (its body is malformed, too large or of a type the console does not take). Go back and send the form again.');
    }
    logger.error('console: unexpected error', { route: request.routeOptions.url ?? 'unmatched', error: { name: error.name, message: error.message } });
    return page(500, 'Something went wrong', 'INTERNAL', 'The console failed to show this page; the error was logged.');
  });

  // The OIDC flow's routes: the callback and the signed-out page need no sign-in; sign-out needs CSRF.
  if (oidc) await oidc.register(app, app.csrfProtection, credentialFor);
  const ctx: ConsolePageContext = {
    api: options.api,
    views,
    now,
    credential: credentialFor,
    csrf: app.csrfProtection,
    maxExportBytes: options.maxExportBytes ?? MAX_EXPORT_BYTES,
    confirmations: new Confirmations(secureCookies),
  };
  // Every page and action needs a sign-in (in proxy mode); assets do not.
  await app.register(async (pages) => {
    pages.addHook('onRequest', async (request) => {
      credentialFor(request);
    });
    homePage(pages, ctx);
    requestPages(pages, ctx);
    dpoActionPages(pages, ctx);
    auditorPages(pages, ctx);
    adminPages(pages, ctx);
  });
  return app;
}

/** Builds the console and listens on its port. */
export async function startConsole(config: ConsoleConfig, options: ConsoleOptions): Promise<RunningConsole> {
  const app = await buildConsole(config, options);
  await app.listen({ port: config.port, host: config.bindAddress });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  options.logger.info('console listening', { address: config.bindAddress, port, sign_in: config.signIn });
  return {
    port,
    app,
    async close() {
      await app.close();
      options.api.close();
    },
  };
}

/** Fields a console form sends more than once on purpose (a request's identifiers to act on). */
const REPEATABLE_FIELDS = new Set(['positions']);

/** Why a request body is not a console form's (a field that is not a string, or repeated), or null. */
export function formBodyProblem(body: unknown): string | null {
  if (body === undefined || body === null || typeof body !== 'object' || Buffer.isBuffer(body)) return null;
  if (Array.isArray(body)) return 'the body is not a form';
  for (const [name, value] of Object.entries(body)) {
    if (typeof value === 'string') continue;
    if (REPEATABLE_FIELDS.has(name) && Array.isArray(value) && value.every((v) => typeof v === 'string')) continue;
    return 'a form field is repeated or not text';
  }
  return null;
}
