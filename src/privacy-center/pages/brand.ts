import type { FastifyInstance } from 'fastify';
import type { PrivacyCenterContext } from '../server';
import { TENANT_PARAM } from '../params';

/**
 * The tenant's look: /t/{tenant}/brand.css (the brand colour as custom properties; a stylesheet
 * because the CSP forbids inline styles) and /t/{tenant}/logo (the logo from the settings). Pages
 * link them with the content's hash in the query, so a change shows at once and the files may be
 * cached; each carries its ETag for revalidation.
 */
export function brandRoutes(app: FastifyInstance, ctx: PrivacyCenterContext): void {
  app.get('/t/:tenant/brand.css', { schema: { params: TENANT_PARAM } }, async (request, reply) => {
    const { tenant } = request.params as { tenant: string };
    const page = await ctx.tenants.get(tenant).catch(() => undefined);
    if (!page) return reply.code(404).type('text/css; charset=utf-8').header('cache-control', 'no-store').send('/* no such tenant */\n');
    const etag = `"${page.brandCssHash}"`;
    reply.header('etag', etag).header('cache-control', 'public, max-age=300');
    if (request.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.type('text/css; charset=utf-8').send(page.brandCss);
  });

  app.get('/t/:tenant/logo', { schema: { params: TENANT_PARAM } }, async (request, reply) => {
    const { tenant } = request.params as { tenant: string };
    const page = await ctx.tenants.get(tenant).catch(() => undefined);
    if (!page?.logo) return reply.code(404).type('text/plain; charset=utf-8').header('cache-control', 'no-store').send('no logo\n');
    // An SVG opened on its own is a document: no script, no requests, nothing it can do (the API
    // also refuses SVGs with scripts or external references). nosniff comes from helmet.
    reply
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; sandbox")
      .header('x-content-type-options', 'nosniff')
      .header('etag', `"${page.logo.hash}"`)
      .header('cache-control', 'public, max-age=300');
    if (request.headers['if-none-match'] === `"${page.logo.hash}"`) return reply.code(304).send();
    return reply.type(page.logo.contentType).send(page.logo.bytes);
  });
}
