/**
 * The double-opt-in confirmation mail the service sends itself when SMTP is configured
 * (src/jobs/confirmation-mailer.ts, docs/privacy-center.md "Confirmation mails").
 *
 * Plain text and a simple HTML part with the same words: the link, what it does, until when it
 * works, and that nothing happens without a click. No images, no remote style sheets or fonts,
 * no tracking pixel and no redirecting or tagged links: the mail fetches nothing when opened, and
 * the link is the one the sign-up made, unchanged.
 */
export interface ConfirmationMailInput {
  /** The sign-up page's language ('de', 'en'); any other is answered in English. */
  language: string;
  /** The tenant's brand name as its pages show it. */
  brandName: string;
  /** The confirmation link (it holds the one-time token). */
  link: string;
  /** When the link stops working (ms since the epoch). */
  expireTime: number;
}

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

interface Texts {
  locale: string;
  subject: (brand: string) => string;
  greeting: string;
  intro: (brand: string) => string;
  action: string;
  expiry: (when: string) => string;
  ignore: string;
}

const TEXTS: Record<'de' | 'en', Texts> = {
  en: {
    locale: 'en-GB',
    subject: (brand) => `Please confirm your sign-up with ${brand}`,
    greeting: 'Hello,',
    intro: (brand) => `You (or someone using your address) signed up for messages from ${brand}. Please confirm that this address is yours and that you want them:`,
    action: 'Confirm my sign-up',
    expiry: (when) => `The link works until ${when}.`,
    ignore: 'If you did not sign up, ignore this mail: nothing is sent to you without your confirmation.',
  },
  de: {
    locale: 'de-DE',
    subject: (brand) => `Bitte bestätigen Sie Ihre Anmeldung bei ${brand}`,
    greeting: 'Guten Tag,',
    intro: (brand) => `Sie (oder jemand mit Ihrer Adresse) haben sich für Nachrichten von ${brand} angemeldet. Bitte bestätigen Sie, dass diese Adresse Ihnen gehört und Sie die Nachrichten erhalten möchten:`,
    action: 'Anmeldung bestätigen',
    expiry: (when) => `Der Link ist gültig bis ${when}.`,
    ignore: 'Wenn Sie sich nicht angemeldet haben, ignorieren Sie diese E-Mail: ohne Ihre Bestätigung erhalten Sie nichts.',
  },
};

export function renderConfirmationMail(input: ConfirmationMailInput): RenderedMail {
  const t = input.language === 'de' ? TEXTS.de : TEXTS.en;
  const brand = oneLine(input.brandName);
  const when = formatExpiry(input.expireTime, t.locale);
  const text = [t.greeting, '', t.intro(brand), '', input.link, '', t.expiry(when), '', t.ignore, '', `-- ${brand}`, ''].join('\n');
  const e = escapeHtml;
  const html = [
    '<!DOCTYPE html>',
    `<html lang="${input.language === 'de' ? 'de' : 'en'}"><head><meta charset="utf-8"><title>${e(t.subject(brand))}</title></head>`,
    '<body style="font-family: sans-serif; line-height: 1.5; color: #222;">',
    `<p>${e(t.greeting)}</p>`,
    `<p>${e(t.intro(brand))}</p>`,
    `<p><a href="${e(input.link)}">${e(t.action)}</a></p>`,
    `<p style="font-size: 0.9em; word-break: break-all;">${e(input.link)}</p>`,
    `<p>${e(t.expiry(when))}</p>`,
    `<p>${e(t.ignore)}</p>`,
    `<p>${e(brand)}</p>`,
    '</body></html>',
    '',
  ].join('\n');
  return { subject: t.subject(brand), text, html };
}

/** "2 March 2026, 12:00 UTC" / "2. März 2026, 12:00 UTC": a reader anywhere knows the time zone. */
function formatExpiry(ms: number, locale: string): string {
  const f = new Intl.DateTimeFormat(locale, { timeZone: 'UTC', day: 'numeric', month: 'long', year: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false });
  const parts = Object.fromEntries(f.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const day = locale === 'de-DE' ? `${parts.day}.` : parts.day;
  return `${day} ${parts.month} ${parts.year}, ${parts.hour}:${parts.minute} UTC`;
}

/** One line of header text: a brand name with a line break must not start a second header line. */
export function oneLine(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').trim();
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}
