import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Fastify refuses some addresses in its router, before any hook runs (a path parameter over the
 * router's maxParamLength: 414; an undecodable URL: 400), and answered those with its own JSON
 * (`{"code":"FST_ERR_MAX_PARAM_LENGTH","message":"'/t/...' is exceeding..."}`): the whole path
 * repeated, which may hold a link's token, and none of the security headers the hooks set (found by
 * an adversarial probe). A front end passes this as Fastify's `frameworkErrors` with its own page.
 */
export function frameworkErrorPage(
  csp: Record<string, readonly string[]>,
  page: (request: FastifyRequest, reply: FastifyReply, status: number) => void,
): (error: { code?: string }, request: FastifyRequest, reply: FastifyReply) => void {
  const headers = {
    'content-security-policy': Object.entries(csp)
      .map(([name, values]) => `${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${values.join(' ')}`)
      .join('; '),
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  };
  return (error, request, reply) => {
    reply.headers(headers);
    page(request, reply, error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400);
  };
}
