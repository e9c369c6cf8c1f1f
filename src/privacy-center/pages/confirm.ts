import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STRINGS } from '../i18n';
import type { PrivacyCenterContext } from '../server';
import { TENANT_PARAM, TOKEN_PARAMS, TOKEN_PATTERN } from '../params';

/**
 * The e-mail confirmation, /t/{tenant}/confirm#token=... (the link the API hands out; the token
 * in the fragment never reaches a server) or /t/{tenant}/confirm/{token}. A GET only shows a
 * button: mail scanners that fetch links confirm nothing. The POST calls ConfirmSignUp with the
 * click's evidence; an expired, used or invalid link gets its own page and status.
 */
export function confirmPages(app: FastifyInstance, ctx: PrivacyCenterContext): void {
  const show = async (request: FastifyRequest, reply: FastifyReply, token: string) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    const { page, lang } = t;
    if (token && !TOKEN_PATTERN.test(token)) return ctx.fail(reply, 404, { lang, tenant: page }, STRINGS[lang].failInvalid);
    return reply.type('text/html').send(ctx.views.page('confirm', { lang, tenant: page, title: STRINGS[lang].confirmTitle, languageSwitch: { kind: 'links' } }, { csrf: reply.generateCsrf(), token }));
  };
  app.get('/t/:tenant/confirm', { schema: { params: TENANT_PARAM } }, async (request, reply) => show(request, reply, ''));
  app.get('/t/:tenant/confirm/:token', { schema: { params: TOKEN_PARAMS } }, async (request, reply) => show(request, reply, (request.params as { token: string }).token));

  app.post('/t/:tenant/confirm', { ...ctx.post, schema: { params: TENANT_PARAM }, preHandler: ctx.csrf }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    const { page, lang } = t;
    const tenant = page.id;
    const s = STRINGS[lang];
    const body = (request.body ?? {}) as Record<string, unknown>;
    const token = typeof body.token === 'string' ? body.token.trim() : '';
    if (!TOKEN_PATTERN.test(token) || token.length > 4096) return ctx.fail(reply, 404, { lang, tenant: page }, s.failInvalid);
    const res = await ctx.callOrFailure(reply, { lang, tenant: page }, () =>
      ctx.api.call(ctx.api.selfService, ctx.api.selfService.confirmSignUp, { parent: `tenants/${tenant}`, token, evidence: ctx.evidence(request, `/t/${tenant}/confirm`) }),
    );
    if (!res) return reply;
    const label = (purpose: string) => page.purposes.find((p) => p.name === purpose)?.displayName ?? purpose.slice(purpose.lastIndexOf('/') + 1);
    const items = res.events.map((e) => ({ purpose: label(e.purpose), channel: s.channelLabels[e.channel] ?? '' }));
    // Nothing confirmed: every scope of the sign-up was withdrawn before the click (Art. 7(3)).
    return reply.type('text/html').send(ctx.views.page('confirmed', { lang, tenant: page, title: items.length > 0 ? s.confirmedTitle : s.confirmedNothingTitle }, { items }));
  });
}
