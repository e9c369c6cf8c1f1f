import { readFileSync } from 'node:fs';
import path from 'node:path';
import Fastify, { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler, RouteShorthandOptions } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import fastifyHelmet from '@fastify/helmet';
import fastifyRateLimit from '@fastify/rate-limit';
import { status } from '@grpc/grpc-js';
import type { PrivacyCenterConfig } from '../config/config';
import type { Logger } from '../logging/logger';
import { Evidence } from '../gen/consent/v1/consent';
import { ApiClient, ApiError, httpStatusOf } from './api-client';
import { chooseLanguage, Language, STRINGS, Strings } from './i18n';
import { TenantPage, TenantPages } from './tenant-page';
import { LanguageSwitch, Views } from './views';
import { TENANT_PATTERN } from './params';
import { brandRoutes } from './pages/brand';
import { signupPages } from './pages/signup';
import { confirmPages } from './pages/confirm';
import { preferencePages } from './pages/preferences';
import { boundedHttpServer } from '../web/bounded-http-server';
import { frameworkErrorPage } from '../web/framework-errors';

/** What every page module gets. */
export interface PrivacyCenterContext {
  api: ApiClient;
  views: Views;
  tenants: TenantPages;
  config: PrivacyCenterConfig;
  now: () => number;
  /** preHandler of every POST: refuses it without a valid CSRF token. */
  csrf: preHandlerHookHandler;
  /** Route options of every POST: the per-IP limit. */
  post: RouteShorthandOptions;
  /** The page language for this request and tenant. */
  language(request: FastifyRequest, page?: TenantPage): Language;
  /** The evidence of a person's click: IP (as the API stores it, truncated there), user agent, the page's address without query or token. */
  evidence(request: FastifyRequest, pagePath: string): Evidence;
  /** A failure page with its HTTP status. */
  fail(reply: FastifyReply, code: number, frame: { lang: Language; tenant?: TenantPage; languageSwitch?: LanguageSwitch }, message: string, detail?: string): FastifyReply;
  /** Lets the tenant's embed_origins frame this answer (the sign-up pages). */
  embeddable(reply: FastifyReply, tenant: TenantPage): void;
  /**
   * The address's tenant (its page model) and the page language; undefined once the failure page
   * is sent (404 for a tenant the API does not know), and the handler then returns `reply`.
   */
  tenantOrFailure(request: FastifyRequest, reply: FastifyReply): Promise<{ page: TenantPage; lang: Language } | undefined>;
  /**
   * The result of `call` (an API call); undefined once the failure page of its refusal is sent
   * (its reason decides the words and the status), and the handler then returns `reply`. Anything
   * but an API refusal is thrown on, to the error handler.
   */
  callOrFailure<T extends object>(reply: FastifyReply, frame: { lang: Language; tenant?: TenantPage }, call: () => Promise<T>): Promise<T | undefined>;
}

export interface PrivacyCenterOptions {
  api: ApiClient;
  logger: Logger;
  /** How long a tenant's page model is kept (default 10 s; tests pass 0). */
  tenantCacheMs?: number;
  now?: () => number;
  /** How long a whole request (headers and body) may take to arrive (default HTTP_REQUEST_TIMEOUT_MS, src/web/bounded-http-server.ts). */
  requestTimeoutMs?: number;
}

export interface RunningPrivacyCenter {
  port: number;
  app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * The strict Content-Security-Policy of every answer: one script and stylesheets of the privacy
 * center itself, no inline code or style, nothing from another origin, forms post only back here,
 * not framable (the sign-up pages replace frame-ancestors with the tenant's embed_origins).
 */
export const CONTENT_SECURITY_POLICY = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
  objectSrc: ["'none'"],
};

/** The CSP header value with frame-ancestors set to `ancestors` ('none' when empty). */
export function cspWithFrameAncestors(ancestors: readonly string[]): string {
  const directives: Record<string, string[]> = { ...CONTENT_SECURITY_POLICY, frameAncestors: ancestors.length ? [...ancestors] : ["'none'"] };
  return Object.entries(directives)
    .map(([k, v]) => `${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${v.join(' ')}`)
    .join('; ');
}

/** Builds the privacy center's Fastify app (not listening yet). */
export async function buildPrivacyCenter(config: PrivacyCenterConfig, options: PrivacyCenterOptions): Promise<FastifyInstance> {
  const { logger } = options;
  const now = options.now ?? Date.now;
  // No Fastify request log (it would write every address, tokens included): onResponse logs route patterns.
  // trustProxy: only the configured proxies' X-Forwarded-For is believed for the person's IP.
  // maxParamLength: a link's token (a signed JWS, about 400 characters) may be a path segment
  // (`/t/{tenant}/preferences/{token}`, for pages opened without JavaScript); Fastify's default is 100.
  // serverFactory: a request whose body trickles in is ended (408) after HTTP_REQUEST_TIMEOUT_MS.
  const app = Fastify({
    logger: false,
    bodyLimit: 16 * 1024,
    serverFactory: boundedHttpServer(options.requestTimeoutMs),
    // An address Fastify's router refuses (too long a token, undecodable): the failure page, with the headers.
    frameworkErrors: frameworkErrorPage(CONTENT_SECURITY_POLICY, (request, reply, code) => {
      const lang = chooseLanguage(['en', 'de'], undefined, request.headers['accept-language']);
      logger.info('privacy center request', { method: request.method, route: 'refused address', status: code });
      fail(reply, code, { lang }, STRINGS[lang].failNotFound);
    }),
    routerOptions: { maxParamLength: 4096 },
    trustProxy: config.trustProxy.length ? config.trustProxy : false,
  });
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CONTENT_SECURITY_POLICY },
    // Addresses hold tokens: they must not leave with a Referer (the WhatsApp link, the tenant's site).
    referrerPolicy: { policy: 'no-referrer' },
    frameguard: { action: 'deny' },
  });
  await app.register(fastifyCookie);
  await app.register(fastifyFormbody);
  // Behind https (PRIVACY_CENTER_PUBLIC_URL): the CSRF cookie must also reach the sign-up page
  // inside a frame on the tenant's site, a third-party context: SameSite=None needs Secure, and
  // Partitioned (CHIPS) keeps it working where third-party cookies are blocked, in a jar of its
  // own per embedding site. The token in the form is what protects; the cookie only holds its secret.
  const secure = config.publicUrl.startsWith('https://');
  await app.register(fastifyCsrf, {
    cookieKey: secure ? '__Host-pc-csrf' : 'pc-csrf',
    cookieOpts: secure ? { path: '/', httpOnly: true, sameSite: 'none', secure: true, partitioned: true } : { path: '/', httpOnly: true, sameSite: 'lax', secure: false },
  });
  await app.register(fastifyRateLimit, {
    global: false,
    keyGenerator: (request) => request.ip,
    // Thrown, so the error handler renders the page (with the tenant's look when it can).
    errorResponseBuilder: (_request, context) => Object.assign(new Error('rate limited'), { statusCode: context.statusCode, code: 'PC_RATE_LIMITED' }),
  });

  const assets: Record<string, { type: string; body: Buffer }> = {
    '/assets/privacy-center.css': { type: 'text/css; charset=utf-8', body: readFileSync(path.join(__dirname, 'assets', 'privacy-center.css')) },
    '/assets/privacy-center.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(path.join(__dirname, 'assets', 'privacy-center.js')) },
  };
  for (const [url, asset] of Object.entries(assets)) {
    app.get(url, async (_request, reply) => reply.type(asset.type).header('cache-control', 'public, max-age=3600').send(asset.body));
  }

  app.addHook('onSend', async (_request, reply) => {
    // Pages are personal: never stored by a browser or proxy cache (assets set their own).
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern (/t/:tenant/preferences/:token), never the address: it may hold a token.
    logger.info('privacy center request', { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: reply.statusCode, duration_ms: Math.round(reply.elapsedTime) });
  });

  const views = new Views();
  const tenants = new TenantPages(options.api, options.tenantCacheMs ?? 10_000, now);
  const language = (request: FastifyRequest, page?: TenantPage): Language => {
    const body = request.body as Record<string, unknown> | undefined;
    const asked = (request.query as Record<string, unknown> | undefined)?.lang ?? (typeof body === 'object' && body ? body.lang : undefined);
    return chooseLanguage(page?.languages ?? ['en', 'de'], asked, request.headers['accept-language']);
  };
  const fail: PrivacyCenterContext['fail'] = (reply, code, frame, message, detail) =>
    reply.code(code).type('text/html').send(views.page('failure', { ...frame, title: STRINGS[frame.lang].failTitle }, { message, detail: detail ?? '', back: '' }));
  /** The failure page of a refused or failed API call: its reason decides the words and the status. */
  const apiFailure = (reply: FastifyReply, error: unknown, frame: { lang: Language; tenant?: TenantPage }): FastifyReply => {
    const s = STRINGS[frame.lang];
    if (!(error instanceof ApiError)) throw error;
    const [code, message] = failureOf(error, s);
    if (code >= 500) logger.warn('privacy center: API call failed', { status: error.statusName, reason: error.reason, route: reply.request.routeOptions.url ?? 'unmatched' });
    return fail(reply, code, frame, message);
  };
  /** The answer to a tenant the API does not know (or a failure reading it). */
  const tenantFailure = (request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply => {
    const lang = language(request);
    if (error instanceof ApiError && (error.code === status.NOT_FOUND || error.code === status.INVALID_ARGUMENT)) return fail(reply, 404, { lang }, STRINGS[lang].failNotFound);
    return apiFailure(reply, error, { lang });
  };
  const ctx: PrivacyCenterContext = {
    api: options.api,
    views,
    tenants,
    config,
    now,
    csrf: app.csrfProtection,
    post: { config: { rateLimit: { max: config.postsPerMinute, timeWindow: 60_000 } } },
    language,
    evidence: (request, pagePath) => {
      const base = config.publicUrl || `${request.protocol}://${request.host}`;
      const ua = request.headers['user-agent'] ?? '';
      return {
        // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; the API stores a.b.c.0.
        sourceIp: request.ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1'),
        userAgent: ua.slice(0, 512),
        pageUrl: `${base}${pagePath}`,
        inboundMessageId: '',
        freeText: '',
      };
    },
    fail,
    embeddable,
    tenantOrFailure: async (request, reply) => {
      const { tenant } = request.params as { tenant: string };
      let page: TenantPage;
      try {
        page = await tenants.get(tenant);
      } catch (err) {
        tenantFailure(request, reply, err);
        return undefined;
      }
      return { page, lang: language(request, page) };
    },
    callOrFailure: async (reply, frame, call) => {
      try {
        return await call();
      } catch (err) {
        apiFailure(reply, err, frame);
        return undefined;
      }
    },
  };

  app.setNotFoundHandler(async (request, reply) => {
    const lang = language(request);
    return fail(reply, 404, { lang }, STRINGS[lang].failNotFound);
  });
  app.setErrorHandler(async (error: Error & { code?: string; statusCode?: number; validation?: unknown }, request, reply) => {
    const params = request.params as { tenant?: string } | undefined;
    let tenant: TenantPage | undefined;
    if (params?.tenant && new RegExp(TENANT_PATTERN).test(params.tenant)) tenant = await tenants.get(params.tenant).catch(() => undefined);
    const lang = language(request, tenant);
    const s = STRINGS[lang];
    // A refusal on the sign-up page is shown inside the tenant's frame too.
    if (tenant && request.routeOptions.url?.endsWith('/signup')) embeddable(reply, tenant);
    if (error.code === 'PC_RATE_LIMITED') return fail(reply, 429, { lang, tenant }, s.failRateLimited);
    if (error.code?.startsWith('FST_CSRF_')) return fail(reply, 403, { lang, tenant }, s.failCsrf);
    if (error.validation) return fail(reply, 404, { lang, tenant }, s.failNotFound);
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) return fail(reply, error.statusCode, { lang, tenant }, s.failBadRequest);
    logger.error('privacy center: unexpected error', { route: request.routeOptions.url ?? 'unmatched', error: { name: error.name, message: error.message } });
    return fail(reply, 500, { lang, tenant }, s.failGeneric);
  });

  app.get('/', async (request, reply) => {
    const lang = language(request);
    return fail(reply, 404, { lang }, STRINGS[lang].failNotFound);
  });
  brandRoutes(app, ctx);
  signupPages(app, ctx);
  confirmPages(app, ctx);
  preferencePages(app, ctx);
  return app;
}

/**
 * Lets the tenant's own sites (self_service.embed_origins) frame this answer: frame-ancestors
 * names them (or 'none'), and X-Frame-Options, which cannot name origins, is dropped when there are some.
 */
export function embeddable(reply: FastifyReply, tenant: TenantPage): void {
  reply.header('content-security-policy', cspWithFrameAncestors(tenant.embedOrigins));
  if (tenant.embedOrigins.length) reply.removeHeader('x-frame-options');
}

/** The HTTP status and the words for a refused or failed API call. */
export function failureOf(error: ApiError, s: Strings): [number, string] {
  switch (error.reason) {
    case 'TOKEN_INVALID':
    case 'TOKEN_MISMATCH':
      return [404, s.failInvalid];
    case 'TOKEN_EXPIRED':
      return [410, s.failExpired];
    case 'TOKEN_USED':
      return [409, s.failUsed];
    case 'SUBJECT_ERASED':
      return [410, s.failErased];
    case 'SIGNUP_SUPERSEDED':
      return [410, s.failSuperseded];
    case 'NO_IDENTIFIER':
      return [410, s.failNoIdentifier];
    case 'NOTICE_OUTDATED':
      return [409, s.failOutdated];
    case 'RATE_LIMITED':
      return [429, s.failRateLimited];
  }
  if (error.code === status.INVALID_ARGUMENT && /token/i.test(error.message)) return [404, s.failInvalid];
  if (error.code === status.UNAVAILABLE || error.code === status.DEADLINE_EXCEEDED) return [503, s.failUnavailable];
  if (error.code === status.RESOURCE_EXHAUSTED) return [429, s.failRateLimited];
  const code = httpStatusOf(error);
  return [code, code === 400 ? s.failBadRequest : s.failGeneric];
}

/** Builds the privacy center and listens on its port. */
export async function startPrivacyCenter(config: PrivacyCenterConfig, options: PrivacyCenterOptions): Promise<RunningPrivacyCenter> {
  const app = await buildPrivacyCenter(config, options);
  await app.listen({ port: config.port, host: config.bindAddress });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  options.logger.info('privacy center listening', { address: config.bindAddress, port, credential: config.apiTokenFile ? 'token file' : 'none (development)' });
  return {
    port,
    app,
    async close() {
      await app.close();
      options.api.close();
    },
  };
}
