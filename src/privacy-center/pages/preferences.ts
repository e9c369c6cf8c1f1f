import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ConsentEventKind } from '../../gen/consent/v1/consent';
import { WithdrawScope } from '../../gen/consent/v1/self_service';
import { RequestKind } from '../../gen/consent/v1/subject_rights';
import { fill, formatTime, Language, STRINGS } from '../i18n';
import type { PrivacyCenterContext } from '../server';
import { TENANT_PARAM, TOKEN_PARAMS, TOKEN_PATTERN } from '../params';
import type { TenantPage } from '../tenant-page';
import { requestIdOf } from './signup';

const KIND_IDS: Record<number, string> = {
  [RequestKind.REQUEST_KIND_ACCESS]: 'access',
  [RequestKind.REQUEST_KIND_PORTABILITY]: 'portability',
  [RequestKind.REQUEST_KIND_ERASURE]: 'erasure',
  [RequestKind.REQUEST_KIND_OBJECTION]: 'objection',
};
/** A Map, not an object: a form's `kind` of "__proto__" or "toString" must find nothing (an object literal inherits them). */
const KINDS: ReadonlyMap<string, RequestKind> = new Map([
  ['access', RequestKind.REQUEST_KIND_ACCESS],
  ['portability', RequestKind.REQUEST_KIND_PORTABILITY],
  ['erasure', RequestKind.REQUEST_KIND_ERASURE],
  ['objection', RequestKind.REQUEST_KIND_OBJECTION],
]);

/**
 * The preference page of a preference link: /t/{tenant}/preferences#token=... (the token in the
 * fragment, posted by the page's script) or /t/{tenant}/preferences/{token}. It shows per purpose
 * and channel what the person agreed to, when, and the notice they saw; withdrawing one or all is
 * one POST each (WithdrawWithLink); access, portability and erasure requests (CreateRequestWithLink),
 * erasure behind a confirmation step; the objection to direct marketing (Art. 21), in a section of
 * its own, one POST that takes effect at once. Every form carries the token in its body, never in an address.
 */
export function preferencePages(app: FastifyInstance, ctx: PrivacyCenterContext): void {
  const tokenOf = (request: FastifyRequest): string => {
    const body = (request.body ?? {}) as Record<string, unknown>;
    const token = typeof body.token === 'string' ? body.token.trim() : '';
    return token.length <= 4096 && TOKEN_PATTERN.test(token) ? token : '';
  };

  /** Reads the person's preferences and renders the page (with a banner after an action). */
  const render = async (reply: FastifyReply, page: TenantPage, lang: Language, token: string, banner = '', code = 200) => {
    const s = STRINGS[lang];
    const prefs = await ctx.callOrFailure(reply, { lang, tenant: page }, () => ctx.api.call(ctx.api.selfService, ctx.api.selfService.getPreferences, { parent: `tenants/${page.id}`, token }));
    if (!prefs) return reply;
    const now = ctx.now();
    const label = (purpose: string, given: string) => given || page.purposes.find((p) => p.name === purpose)?.displayName || purpose.slice(purpose.lastIndexOf('/') + 1);
    const rows = prefs.preferences.map((p) => {
      // A sign-up whose confirmation time passed confirms nothing any more: it is not waiting.
      const lapsed = p.lastKind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING && p.expireTime !== undefined && p.expireTime.getTime() <= ctx.now();
      const pending = p.lastKind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING && !lapsed;
      // What the person agreed to, not whether a message may be sent now: a consent given and
      // not withdrawn stays "agreed" (and can be withdrawn, Art. 7(3)) also while it allows
      // nothing for a moment (a restriction, a SERVICE purpose outside its service window).
      const consented = p.lastKind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN || p.lastKind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED;
      const expired = p.expireTime !== undefined && p.expireTime.getTime() <= now;
      const when = formatTime(lang, p.eventTime);
      let status = s.statusNotGranted;
      if (pending) status = fill(s.statusPending, { time: when });
      else if (lapsed) status = fill(s.statusPendingLapsed, { time: formatTime(lang, p.expireTime!) });
      else if (p.lastKind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT) status = fill(s.statusWithdrawn, { time: when });
      else if (consented && expired) status = fill(s.statusExpired, { time: formatTime(lang, p.expireTime!) });
      else if (consented || p.granted) status = fill(s.statusGranted, { time: when });
      const agreed = !pending && !lapsed && ((consented && !expired) || p.granted);
      return {
        purposeLabel: label(p.purpose, p.purposeDisplayName),
        channelLabel: s.channelLabels[p.channel] ?? '',
        status,
        granted: agreed,
        pending,
        withdrawable: agreed || pending,
        notice: p.notice,
        noticeText: p.noticeText,
        scope: `${p.purpose.slice(p.purpose.lastIndexOf('/') + 1)}|${p.channel}`,
        requestId: randomUUID(),
      };
    });
    // The objection is offered apart from the requests, as Art. 21(4) asks ("clearly and separately").
    const requestOptions = prefs.requestOptions
      .filter((o) => KIND_IDS[o.kind] && o.kind !== RequestKind.REQUEST_KIND_OBJECTION)
      .map((o) => ({ id: KIND_IDS[o.kind], label: s.requestKind[o.kind], verifies: o.linkVerifies, requestId: randomUUID() }));
    const objection = prefs.requestOptions.some((o) => o.kind === RequestKind.REQUEST_KIND_OBJECTION) ? { requestId: randomUUID() } : null;
    const openRequests = prefs.openRequests.map((r) => ({ kind: s.requestKindName[r.kind] ?? '', state: s.requestStates[r.state] ?? '' }));
    const csrf = reply.generateCsrf();
    return reply
      .code(code)
      .type('text/html')
      .send(
        ctx.views.page('preferences', { lang, tenant: page, title: s.prefsTitle, languageSwitch: { kind: 'form', action: `/t/${page.id}/preferences/view`, token, csrf } }, {
          rows,
          anyWithdrawable: rows.some((r) => r.withdrawable),
          allRequestId: randomUUID(),
          requestOptions,
          objection,
          openRequests,
          banner,
          token,
          csrf,
          expires: prefs.expireTime,
        }),
      );
  };

  app.get('/t/:tenant/preferences', { schema: { params: TENANT_PARAM } }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    return reply.type('text/html').send(ctx.views.page('preferences-open', { lang: t.lang, tenant: t.page, title: STRINGS[t.lang].prefsTitle, languageSwitch: { kind: 'links' } }, { csrf: reply.generateCsrf() }));
  });

  // Opening a link by its address asks the API too: limited like the form submissions.
  app.get('/t/:tenant/preferences/:token', { ...ctx.post, schema: { params: TOKEN_PARAMS } }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    const { token } = request.params as { token: string };
    if (!TOKEN_PATTERN.test(token)) return ctx.fail(reply, 404, { lang: t.lang, tenant: t.page }, STRINGS[t.lang].failInvalid);
    return render(reply, t.page, t.lang, token);
  });

  // Opening by the fragment's token, and the language switch of the page.
  app.post('/t/:tenant/preferences/view', { ...ctx.post, schema: { params: TENANT_PARAM }, preHandler: ctx.csrf }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    const token = tokenOf(request);
    // No code at all came with the form: the page's script did not run to read it from the link
    // (JavaScript off), which is not an invalid link.
    const body = request.body as Record<string, unknown> | undefined;
    if (!token && (body?.token === undefined || body.token === '') && body?.script !== '1') return ctx.fail(reply, 400, { lang: t.lang, tenant: t.page }, STRINGS[t.lang].prefsNoScript);
    if (!token) return ctx.fail(reply, 404, { lang: t.lang, tenant: t.page }, STRINGS[t.lang].failInvalid);
    return render(reply, t.page, t.lang, token);
  });

  app.post('/t/:tenant/preferences/withdraw', { ...ctx.post, schema: { params: TENANT_PARAM }, preHandler: ctx.csrf }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    const s = STRINGS[t.lang];
    const token = tokenOf(request);
    if (!token) return ctx.fail(reply, 404, { lang: t.lang, tenant: t.page }, s.failInvalid);
    const body = (request.body ?? {}) as Record<string, unknown>;
    const all = body.all === '1';
    const scopes: WithdrawScope[] = [];
    if (!all) {
      const [purposeId, channelText] = typeof body.scope === 'string' ? body.scope.split('|') : [];
      if (!purposeId || !/^[a-z][a-z0-9-]{0,62}$/.test(purposeId) || !/^[1-9]$/.test(channelText ?? '')) return ctx.fail(reply, 400, { lang: t.lang, tenant: t.page }, s.failBadRequest);
      scopes.push({ purpose: `tenants/${t.page.id}/purposes/${purposeId}`, channel: Number(channelText) });
    }
    const withdrawn = await ctx.callOrFailure(reply, { lang: t.lang, tenant: t.page }, () =>
      ctx.api.call(ctx.api.selfService, ctx.api.selfService.withdrawWithLink, {
        parent: `tenants/${t.page.id}`,
        token,
        scopes,
        all,
        evidence: ctx.evidence(request, `/t/${t.page.id}/preferences`),
        requestId: requestIdOf(body.request_id),
      }),
    );
    if (!withdrawn) return reply;
    return render(reply, t.page, t.lang, token, fill(all ? s.withdrawnAllBanner : s.withdrawnBanner, { brand: t.page.brandName }));
  });

  app.post('/t/:tenant/preferences/request', { ...ctx.post, schema: { params: TENANT_PARAM }, preHandler: ctx.csrf }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    const s = STRINGS[t.lang];
    const token = tokenOf(request);
    if (!token) return ctx.fail(reply, 404, { lang: t.lang, tenant: t.page }, s.failInvalid);
    const body = (request.body ?? {}) as Record<string, unknown>;
    const kind = typeof body.kind === 'string' ? KINDS.get(body.kind) : undefined;
    if (!kind) return ctx.fail(reply, 400, { lang: t.lang, tenant: t.page }, s.failBadRequest);
    if (kind === RequestKind.REQUEST_KIND_ERASURE && body.confirm !== 'erase') {
      // Erasure is irreversible: first a page saying so, with a box to tick; nothing is asked yet.
      const notTicked = body.step === 'confirm';
      const csrf = reply.generateCsrf();
      return reply
        .code(notTicked ? 400 : 200)
        .type('text/html')
        .send(ctx.views.page('erase-confirm', { lang: t.lang, tenant: t.page, title: s.eraseTitle }, { token, csrf, requestId: requestIdOf(body.request_id), notTicked }));
    }
    const created = await ctx.callOrFailure(reply, { lang: t.lang, tenant: t.page }, () =>
      ctx.api.call(ctx.api.selfService, ctx.api.selfService.createRequestWithLink, {
        parent: `tenants/${t.page.id}`,
        token,
        kind,
        evidence: ctx.evidence(request, `/t/${t.page.id}/preferences`),
        requestId: requestIdOf(body.request_id),
      }),
    );
    if (!created) return reply;
    const r = created.request!;
    if (r.kind === RequestKind.REQUEST_KIND_OBJECTION) return render(reply, t.page, t.lang, token, fill(s.objectedBanner, { brand: t.page.brandName }));
    const due = r.dueTime ? formatTime(t.lang, new Date(r.dueTime.getTime() - 1)) : '';
    const banner = fill(s.requestCreated, { kind: s.requestKindName[r.kind] ?? '', state: s.requestStates[r.state] ?? '', due });
    return render(reply, t.page, t.lang, token, banner);
  });
}
