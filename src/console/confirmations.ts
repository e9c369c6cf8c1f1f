import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * The confirmation a page shows after an action ("The erasure was carried out"), carried from the
 * POST to the page it redirects to in a short-lived cookie the POST sets, read and cleared once by
 * that page. Not in the address: a link anyone can write (?done=erased) showed the message for an
 * action nobody took (found by a probe). HttpOnly, SameSite=Strict, one minute.
 */
export class Confirmations {
  private readonly name: string;

  constructor(private readonly secure: boolean) {
    this.name = secure ? '__Host-console-done' : 'console-done';
  }

  /** Redirects (303) to `url` with `done` waiting for the page there (and no other: the cookie names the page). */
  redirect(reply: FastifyReply, url: string, done: string): FastifyReply {
    reply.setCookie(this.name, `${done}@${url}`, { path: '/', httpOnly: true, sameSite: 'strict', secure: this.secure, maxAge: 60 });
    return reply.redirect(url, 303);
  }

  /** The message of the confirmation waiting for this page (one of `messages`), if any; shown once. */
  take(request: FastifyRequest, reply: FastifyReply, messages: Readonly<Record<string, string>>): string | undefined {
    const value = request.cookies[this.name];
    if (value === undefined) return undefined;
    const at = value.indexOf('@');
    const done = value.slice(0, at);
    const page = value.slice(at + 1);
    // Another page (another tab, a redirect target that failed first) leaves it for its own.
    if (at < 1 || page !== request.url.split('?')[0]) return undefined;
    reply.clearCookie(this.name, { path: '/', httpOnly: true, sameSite: 'strict', secure: this.secure });
    return Object.hasOwn(messages, done) ? messages[done] : undefined;
  }
}
