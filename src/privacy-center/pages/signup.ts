import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Channel, SubjectIdentifier } from '../../gen/consent/v1/common';
import { ConfirmationMethod, SignUpChoice } from '../../gen/consent/v1/self_service';
import { ApiError } from '../../web/grpc-errors';
import { Language, STRINGS } from '../i18n';
import type { PrivacyCenterContext } from '../server';
import { TENANT_PARAM } from '../params';
import { offeredChannels, TenantPage } from '../tenant-page';

/** One purpose on the form: its current notice in the page language and the channels offered. */
interface Offer {
  id: string;
  displayName: string;
  notice: { name: string; version: number; text: string; textSha256: string };
  channels: Array<{ value: number; label: string }>;
}

/** What the person may tick: purposes with a notice in the page language (the API checks the same), on the tenant's channels. */
function offersOf(page: TenantPage, lang: Language): Offer[] {
  const channels = offeredChannels(page).map((c) => ({ value: c, label: STRINGS[lang].channelLabels[c] }));
  return page.purposes.filter((p) => p.notices[lang]).map((p) => ({ id: p.id, displayName: p.displayName, notice: p.notices[lang], channels }));
}

const PHONE_CHANNELS = new Set<number>([Channel.CHANNEL_WHATSAPP, Channel.CHANNEL_SMS]);

/** The typed identifier: an e-mail address (has an @) or a phone number in international format. */
export function parseIdentifier(raw: string): SubjectIdentifier | undefined {
  const value = raw.trim();
  if (value.includes('@')) {
    return value.length <= 254 && /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value) ? { kind: { $case: 'email', value }, defaultRegion: '' } : undefined;
  }
  const compact = value.replace(/[\s().\-/]/g, '').replace(/^00/, '+');
  return /^\+[1-9][0-9]{5,14}$/.test(compact) ? { kind: { $case: 'phoneNumber', value: compact }, defaultRegion: '' } : undefined;
}

const asList = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : []);
export const requestIdOf = (v: unknown): string => (typeof v === 'string' && /^[A-Za-z0-9_-]{8,64}$/.test(v) ? v : randomUUID());

/**
 * The sign-up page, /t/{tenant}/signup: the identifier, each purpose with its current notice
 * (version and SHA-256 shown) and a box per channel, nothing ticked; embeddable in the tenant's
 * sites. The POST calls SignUp with the page's evidence and answers with the way to confirm: a
 * click-to-chat link with the code for a phone number, "check your mailbox" for an e-mail address.
 * The answer is the same whether the identifier was known or not (the API's answer is, too).
 */
export function signupPages(app: FastifyInstance, ctx: PrivacyCenterContext): void {
  const form = (reply: FastifyReply, page: TenantPage, lang: Language, code: number, data: { identifier: string; ticked: string[]; errors: string[] }) => {
    ctx.embeddable(reply, page);
    return reply
      .code(code)
      .type('text/html')
      .send(
        ctx.views.page('signup', { lang, tenant: page, title: STRINGS[lang].signupTitle, languageSwitch: { kind: 'links' } }, {
          ...data,
          offers: offersOf(page, lang),
          csrf: reply.generateCsrf(),
          requestId: randomUUID(),
        }),
      );
  };

  app.get('/t/:tenant/signup', { schema: { params: TENANT_PARAM } }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    return form(reply, t.page, t.lang, 200, { identifier: '', ticked: [], errors: [] });
  });

  app.post('/t/:tenant/signup', { ...ctx.post, schema: { params: TENANT_PARAM }, preHandler: ctx.csrf }, async (request, reply) => {
    const t = await ctx.tenantOrFailure(request, reply);
    if (!t) return reply;
    const { page, lang } = t;
    const tenant = page.id;
    ctx.embeddable(reply, page);
    const s = STRINGS[lang];
    const body = (request.body ?? {}) as Record<string, unknown>;
    const typed = typeof body.identifier === 'string' ? body.identifier.slice(0, 254) : '';
    const identifier = parseIdentifier(typed);
    const offers = offersOf(page, lang);
    const offered = new Set(offeredChannels(page));
    const errors: string[] = [];
    const ticked: string[] = [];
    const choices: SignUpChoice[] = [];
    let outdated = false;
    for (const raw of asList(body.choice).slice(0, 200)) {
      const [purposeId, channelText, versionText] = raw.split('|');
      const channel = Number(channelText);
      const offer = offers.find((o) => o.id === purposeId);
      if (!offer || !offered.has(channel)) continue; // not something this page offers: ignored, as a browser would never send it
      ticked.push(`${purposeId}|${channel}`);
      // The person saw another text than the current one: they must read it again.
      if (Number(versionText) !== offer.notice.version) outdated = true;
      choices.push({ purpose: `tenants/${tenant}/purposes/${purposeId}`, channel, notice: offer.notice.name });
    }
    if (!identifier) errors.push(s.errIdentifier);
    if (choices.length === 0) errors.push(s.errNothingTicked);
    if (identifier?.kind?.$case === 'email' && choices.some((c) => PHONE_CHANNELS.has(c.channel))) errors.push(s.errPhoneChannels);
    if (identifier?.kind?.$case === 'phoneNumber' && choices.some((c) => c.channel === Channel.CHANNEL_EMAIL)) errors.push(s.errEmailChannel);
    if (errors.length) return form(reply, page, lang, 400, { identifier: typed, ticked, errors });
    if (outdated) return ctx.fail(reply, 409, { lang, tenant: page, languageSwitch: { kind: 'links' } }, s.failOutdated);

    const outcome = await ctx.callOrFailure(reply, { lang, tenant: page }, async () => {
      try {
        return {
          res: await ctx.api.call(ctx.api.selfService, ctx.api.selfService.signUp, {
            parent: `tenants/${tenant}`,
            subjectIdentifier: identifier,
            choices,
            evidence: ctx.evidence(request, `/t/${tenant}/signup`),
            language: lang,
            requestId: requestIdOf(body.request_id),
          }),
        };
      } catch (err) {
        // An address no confirmation can be mailed to (the API's rule): the form again, with what was typed.
        if (err instanceof ApiError && err.violations.some((v) => v.field === 'subject_identifier.email')) return { res: null };
        throw err;
      }
    });
    if (!outcome) return reply;
    if (!outcome.res) return form(reply, page, lang, 400, { identifier: typed, ticked, errors: [s.errIdentifier] });
    const res = outcome.res;
    const frame = { lang, tenant: page, title: '' };
    if (res.method === ConfirmationMethod.CONFIRMATION_METHOD_INBOUND_CODE) {
      const chose = (c: Channel) => choices.some((x) => x.channel === c);
      // The code must arrive on WhatsApp when any choice is WhatsApp (the API's rule): then SMS is
      // not offered, or a person who texted it would confirm nothing and not be told.
      const bySms = chose(Channel.CHANNEL_SMS) && !chose(Channel.CHANNEL_WHATSAPP);
      const text = res.confirmationText;
      return reply.type('text/html').send(
        ctx.views.page('signup-phone', { ...frame, title: s.phoneResultTitle }, {
          code: res.confirmationCode,
          text,
          expires: res.expireTime,
          whatsappLink: chose(Channel.CHANNEL_WHATSAPP) && page.whatsappNumber ? `https://wa.me/${page.whatsappNumber.replace(/^\+/, '')}?text=${encodeURIComponent(text)}` : '',
          smsLink: bySms && page.smsNumber ? `sms:${page.smsNumber}?body=${encodeURIComponent(text)}` : '',
          smsNumber: bySms ? page.smsNumber : '',
        }),
      );
    }
    return reply.type('text/html').send(ctx.views.page('signup-email', { ...frame, title: s.emailResultTitle }, { expires: res.expireTime }));
  });
}
