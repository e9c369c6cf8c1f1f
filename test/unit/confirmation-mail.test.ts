import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../src/config/config';
import { oneLine, renderConfirmationMail } from '../../src/jobs/confirmation-mail';
import { classifySendError, ConfirmationMailer, MailQueue, MailSender, retryDelayMs, UnreadableJob } from '../../src/jobs/confirmation-mailer';
import { Logger } from '../../src/logging/logger';

/** The confirmation mail (src/jobs/confirmation-mail.ts) and the SMTP_* settings (docs/privacy-center.md, "Confirmation mails"). */
describe('confirmation mail rendering', () => {
  const link = 'https://privacy.example/t/shop/confirm#token=eyJ.a&b<c>';
  const expireTime = Date.UTC(2026, 2, 2, 12, 5);

  it('German: subject, text and HTML with the brand, the link and its expiry in UTC', () => {
    const m = renderConfirmationMail({ language: 'de', brandName: 'Kiezladen Müller', link, expireTime });
    expect(m.subject).to.equal('Bitte bestätigen Sie Ihre Anmeldung bei Kiezladen Müller');
    expect(m.text).to.include('Nachrichten von Kiezladen Müller');
    expect(m.text).to.include(`\n${link}\n`);
    expect(m.text).to.include('Der Link ist gültig bis 2. März 2026, 12:05 UTC.');
    expect(m.html).to.include('<html lang="de">');
    expect(m.html).to.include('href="https://privacy.example/t/shop/confirm#token=eyJ.a&amp;b&lt;c&gt;"');
    expect(m.html).to.include('Anmeldung bestätigen</a>');
  });

  it('English, and English for a language it has no words for', () => {
    for (const language of ['en', 'fr']) {
      const m = renderConfirmationMail({ language, brandName: 'Corner Shop', link, expireTime });
      expect(m.subject, language).to.equal('Please confirm your sign-up with Corner Shop');
      expect(m.text, language).to.include('The link works until 2 March 2026, 12:05 UTC.');
      expect(m.html, language).to.include('<html lang="en">');
    }
  });

  it('escapes the brand in HTML and keeps it on one line in the subject; fetches nothing (no remote resources)', () => {
    const m = renderConfirmationMail({ language: 'en', brandName: 'Evil <img src=x>\r\nBcc: a@b', link, expireTime });
    expect(m.subject).to.not.match(/[\r\n]/);
    // The sender's display name is the brand as well.
    expect(oneLine(' Shop\r\nBcc: a@b\t ')).to.equal('Shop Bcc: a@b');
    expect(m.html).to.not.include('<img');
    expect(m.html).to.include('Evil &lt;img src=x&gt; Bcc: a@b');
    // The only URL in the mail is the link itself: no images, styles, fonts or tracking.
    const urls = (m.html.match(/https?:\/\/[^"<\s]+/g) ?? []).map((u) => u.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>'));
    expect(new Set(urls)).to.deep.equal(new Set([link]));
    expect(m.html).to.not.match(/<(img|link|script|iframe|object)\b/i);
    expect(m.html).to.not.match(/url\(/i);
  });
});

describe('SMTP send failures', () => {
  it('only a 5xx refusal of the recipient or the message is permanent; the error holds class and code, never the reply text', () => {
    expect(classifySendError(Object.assign(new Error('550 5.1.1 <who@example.org>: no such user'), { code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 <who@example.org>' }))).to.deep.equal({ permanent: true, error: 'EENVELOPE 550' });
    expect(classifySendError(Object.assign(new Error('x'), { code: 'EMESSAGE', responseCode: 554 }))).to.deep.equal({ permanent: true, error: 'EMESSAGE 554' });
    expect(classifySendError(Object.assign(new Error('x'), { code: 'EENVELOPE', responseCode: 450 }))).to.deep.equal({ permanent: false, error: 'EENVELOPE 450' });
    // Authentication refused: the configuration, not the mail; retried until the operator fixes it.
    expect(classifySendError(Object.assign(new Error('x'), { code: 'EAUTH', responseCode: 535 }))).to.deep.equal({ permanent: false, error: 'EAUTH 535' });
    expect(classifySendError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ESOCKET' }))).to.deep.equal({ permanent: false, error: 'ESOCKET' });
    expect(classifySendError(Object.assign(new Error('x'), { code: 'who@example.org' }))).to.deep.equal({ permanent: false, error: 'ERROR' });
    expect(classifySendError(undefined)).to.deep.equal({ permanent: false, error: 'ERROR' });
  });

  it('retries after 10 s, doubling up to 30 min, with at most 20 % jitter', () => {
    expect(retryDelayMs(1, () => 0)).to.equal(10_000);
    expect(retryDelayMs(2, () => 0)).to.equal(20_000);
    expect(retryDelayMs(4, () => 0)).to.equal(80_000);
    expect(retryDelayMs(50, () => 0)).to.equal(30 * 60_000);
    expect(retryDelayMs(1, () => 0.999)).to.be.below(12_001);
  });
});

describe('SMTP configuration', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smtp-config-'));
  const secret = 'pl4nted-smtp-Passw0rd';
  const passwordFile = path.join(dir, 'smtp-password');
  writeFileSync(passwordFile, `${secret}\n`);
  const empty = path.join(dir, 'empty');
  writeFileSync(empty, '\n');
  const base = { SMTP_URL: 'smtp://mail.example.org', SMTP_FROM: 'noreply@example.org', PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example.org' };

  function problems(env: Record<string, string>): string[] {
    try {
      loadConfig(env, dir);
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      const p = (err as ConfigError).problems;
      // No message quotes a password, from the URL or the file.
      expect(p.join('\n')).to.not.include(secret);
      expect(p.join('\n')).to.not.include('hunter2');
      return p;
    }
    expect.fail('expected a ConfigError');
  }

  it('is off without SMTP_URL; its other settings alone are refused', () => {
    expect(loadConfig({}, dir).smtp).to.equal(undefined);
    expect(problems({ SMTP_FROM: 'noreply@example.org', SMTP_POLL_INTERVAL_MS: '100' })).to.deep.equal(['SMTP_FROM, SMTP_POLL_INTERVAL_MS are only read with SMTP_URL (the service sends no mail)']);
  });

  it('smtp:// defaults to port 587 with STARTTLS required; smtps:// to 465; the poll interval to 1 s', () => {
    expect(loadConfig(base, dir).smtp).to.deep.equal({ host: 'mail.example.org', port: 587, implicitTls: false, requireTls: true, ignoreTls: false, from: 'noreply@example.org', pollIntervalMs: 1000 });
    expect(loadConfig({ ...base, SMTP_URL: 'smtps://mail.example.org' }, dir).smtp).to.deep.include({ port: 465, implicitTls: true });
    expect(loadConfig({ ...base, SMTP_URL: 'smtp://mail.example.org:2525', SMTP_POLL_INTERVAL_MS: '250' }, dir).smtp).to.deep.include({ port: 2525, pollIntervalMs: 250 });
  });

  it('a relay on loopback: TLS not required by default (plain text kept); SMTP_REQUIRE_TLS=true requires it', () => {
    expect(loadConfig({ ...base, SMTP_URL: 'smtp://127.0.0.1:25' }, dir).smtp).to.deep.include({ host: '127.0.0.1', port: 25, requireTls: false, ignoreTls: true });
    expect(loadConfig({ ...base, SMTP_URL: 'smtp://localhost:25', SMTP_REQUIRE_TLS: 'true' }, dir).smtp).to.deep.include({ requireTls: true, ignoreTls: false });
    // Elsewhere without required TLS: STARTTLS still used whenever offered.
    expect(loadConfig({ ...base, SMTP_REQUIRE_TLS: 'false' }, dir).smtp).to.deep.include({ requireTls: false, ignoreTls: false });
  });

  it('user and password file; the password is read from the file, not kept in the configuration', () => {
    const c = loadConfig({ ...base, SMTP_USER: 'mailer', SMTP_PASSWORD_FILE: passwordFile }, dir).smtp!;
    expect(c).to.deep.include({ user: 'mailer', passwordFile });
    expect(JSON.stringify(c)).to.not.include(secret);
  });

  it('refuses bad values, naming the variable and never printing the password', () => {
    expect(problems({ ...base, SMTP_URL: 'smtp://mailer:hunter2@mail.example.org' })).to.deep.equal(['SMTP_URL must not hold credentials: set SMTP_USER and SMTP_PASSWORD_FILE']);
    expect(problems({ ...base, SMTP_URL: 'http://mail.example.org' })).to.deep.equal(['SMTP_URL scheme must be smtp: (STARTTLS) or smtps: (TLS) (got "http:")']);
    expect(problems({ ...base, SMTP_URL: 'not a url hunter2' })).to.deep.equal(['SMTP_URL is not a URL (expected smtp://host:port or smtps://host:port)']);
    expect(problems({ ...base, SMTP_URL: 'smtp://mail.example.org/x?y' })).to.deep.equal(['SMTP_URL must be smtp://host:port or smtps://host:port, without path, query or fragment']);
    expect(problems({ ...base, SMTP_FROM: '' })).to.deep.equal(['SMTP_URL needs SMTP_FROM, the sender address of the confirmation mails (e.g. noreply@example.org)']);
    for (const from of ['Shop <noreply@example.org>', 'noreply', 'a b@example.org', 'noreply@example.org\r\nBcc: x@y.z']) {
      expect(problems({ ...base, SMTP_FROM: from }), from).to.deep.equal(["SMTP_FROM must be a plain e-mail address such as noreply@example.org (no display name: the tenant's brand name is used)"]);
    }
    expect(problems({ ...base, SMTP_PASSWORD: 'hunter2' })).to.deep.equal(['SMTP_PASSWORD is not read: put the password in a file readable by the service and name it in SMTP_PASSWORD_FILE']);
    expect(problems({ SMTP_PASSWORD: 'hunter2' })).to.deep.equal(['SMTP_PASSWORD is not read: put the password in a file readable by the service and name it in SMTP_PASSWORD_FILE']);
    expect(problems({ ...base, SMTP_USER: 'mailer' })).to.deep.equal(['SMTP_USER needs SMTP_PASSWORD_FILE, a file holding the password']);
    expect(problems({ ...base, SMTP_PASSWORD_FILE: passwordFile })).to.deep.equal(['SMTP_PASSWORD_FILE is only read with SMTP_USER']);
    expect(problems({ ...base, SMTP_USER: 'mailer', SMTP_PASSWORD_FILE: path.join(dir, 'missing') })).to.deep.equal([`SMTP_PASSWORD_FILE ${path.join(dir, 'missing')} does not exist`]);
    expect(problems({ ...base, SMTP_USER: 'mailer', SMTP_PASSWORD_FILE: empty })).to.deep.equal([`SMTP_PASSWORD_FILE ${empty} is empty (the password is its first line)`]);
    expect(problems({ ...base, SMTP_USER: 'mailer', SMTP_PASSWORD_FILE: passwordFile, SMTP_REQUIRE_TLS: 'false' })).to.deep.equal([
      'SMTP_USER over smtp:// without SMTP_REQUIRE_TLS would send the password in clear: use smtps:// or SMTP_REQUIRE_TLS=true',
    ]);
    expect(problems({ ...base, SMTP_REQUIRE_TLS: 'maybe' })).to.deep.equal(['SMTP_REQUIRE_TLS must be true or false (got "maybe")']);
    expect(problems({ ...base, SMTP_POLL_INTERVAL_MS: '10' })).to.deep.equal(['SMTP_POLL_INTERVAL_MS must be an integer from 50 to 3600000 (got "10")']);
    expect(problems({ SMTP_URL: base.SMTP_URL, SMTP_FROM: base.SMTP_FROM })).to.deep.equal([
      'SMTP_URL needs PRIVACY_CENTER_PUBLIC_URL: the mailed links must be absolute (https://privacy.example.com/t/...)',
    ]);
  });
});

describe('ConfirmationMailer: what becomes of a delivery it cannot read', () => {
  /** The queue's side recorded in memory: what the mailer decided for each leased delivery. */
  function queueWith(unreadable: UnreadableJob[]) {
    const outcomes: string[] = [];
    const queue: MailQueue = {
      lease: async () => ({ jobs: [], unreadable: unreadable.splice(0) }),
      sent: async () => true,
      retry: async (job, delayMs, error) => void outcomes.push(`${job.id} retry ${error} ${delayMs > 0}`),
      failed: async (job, error) => void outcomes.push(`${job.id} failed ${error}`),
      release: async (job) => void outcomes.push(`${job.id} released`),
    };
    return { queue, outcomes };
  }
  const sender: MailSender = { send: async () => undefined, close: () => undefined };
  const logged: string[] = [];
  const logger = { info: (m: string) => logged.push(m), warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) } as unknown as Logger;

  it('its tenant gone (permanent): given up at once as FAILED; its keys unreadable just now: retried later', async () => {
    const { queue, outcomes } = queueWith([
      { id: 'd1', tenantId: 't', leaseOwner: 'o', attempts: 1, error: 'TENANT_ERASED', permanent: true },
      { id: 'd2', tenantId: 't', leaseOwner: 'o', attempts: 1, error: 'SUBJECT_KEY_UNAVAILABLE', permanent: false },
    ]);
    const mailer = new ConfirmationMailer(queue, sender, { from: 'noreply@ledger.example', pollIntervalMs: 1000 }, logger);
    expect(await mailer.runOnce()).to.equal(2);
    expect(outcomes).to.deep.equal(['d1 failed TENANT_ERASED', 'd2 retry SUBJECT_KEY_UNAVAILABLE true']);
    expect(logged).to.include('confirmation mail not sent: its delivery can never be read (the tenant is gone); not retried');
  });
});
