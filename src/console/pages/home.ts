import type { FastifyInstance } from 'fastify';
import type { ConsolePageContext } from '../server';

/** The start page: which tenant to work on (the console lists no tenants: there is no such RPC). */
export function homePage(app: FastifyInstance, ctx: ConsolePageContext): void {
  app.get('/', async (request, reply) => reply.type('text/html').send(ctx.views.page('home', ctx.credential(request), { title: 'Start' })));
}
