import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { loadConfig, SmtpConfig } from '../../src/config/config';
import { Channel, PurposeCategory, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { ConsentEventKind, ListConsentEventsRequest } from '../../src/gen/consent/v1/consent';
import { SelfServiceServiceClient, SignUpRequest } from '../../src/gen/consent/v1/self_service';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { SelfServiceSettings, TenantServiceClient, TenantSettings } from '../../src/gen/consent/v1/tenant';
import { smtpSender } from '../../src/jobs/confirmation-mailer';
import { managerOf } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';
import { email, seedTenant } from '../support/fixtures';
import { freePort } from '../support/processes';
import { ServerProcess, startServerProcess } from '../support/server-process';
import { call, startTestServer, TestServer } from '../support/test-server';
import { waitUntil } from '../support/wait';

/**
 * The service mails the e-mail confirmations itself when SMTP_URL is set (issue 20,
 * docs/privacy-center.md "Confirmation mails"): real servers, a real SMTP server in this process
 * (smtp-server, with authentication, on 127.0.0.1), the mails parsed as a mail client would
 * (mailparser). A sign-up's mail arrives once, in the page's language, with the tenant's brand,
 * and its link confirms; an SMTP server that is down delays the mail, a 550 ends it, an expired
 * or erased delivery is never sent, two servers on one database send each mail once. The
 * address, the link, the token and the SMTP password never reach the server's log.
 */
const T = 'smtp-shop';
const BRAND = 'Kiezladen Müller';
const PASSWORD = 'pl4nted-SMTP-secret';
const USER = 'ledger-mailer';
const EVIDENCE = { sourceIp: '203.0.113.9', userAgent: 'Mozilla/5.0 smtp-test', pageUrl: 'https://privacy.example/t/smtp-shop', inboundMessageId: '', freeText: '' };
const HOUR = 3_600_000;

/** An SMTP server on 127.0.0.1 that needs the configured login, collects mails and refuses the recipients it is told to. */
class TestMailServer {
  readonly mails: ParsedMail[] = [];
  readonly refused = new Set<string>();
  /** Failed logins seen (the password is checked here, so a wrong one shows). */
  badLogins = 0;
  private server: SMTPServer | null = null;

  constructor(readonly port: number) {}

  async start(): Promise<void> {
    const server = new SMTPServer({
      logger: false,
      // Plain text on loopback, as SMTP_REQUIRE_TLS's loopback default has it.
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth: (auth, _session, cb) => {
        if (auth.username === USER && auth.password === PASSWORD) return cb(null, { user: USER });
        this.badLogins++;
        cb(Object.assign(new Error('Invalid login'), { responseCode: 535 }));
      },
      onRcptTo: (address, _session, cb) => {
        if (this.refused.has(address.address)) return cb(Object.assign(new Error('5.1.1 mailbox unavailable'), { responseCode: 550 }));
        cb();
      },
      onData: (stream, _session, cb) => {
        simpleParser(stream).then(
          (mail) => {
            this.mails.push(mail);
            cb();
          },
          (err: Error) => cb(err),
        );
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  to(address: string): ParsedMail[] {
    return this.mails.filter((m) => (Array.isArray(m.to) ? m.to : m.to ? [m.to] : []).some((a) => a.value.some((v) => v.address === address)));
  }
}

function smtpConfig(port: number, passwordFile: string): SmtpConfig {
  return loadConfig({
    SMTP_URL: `smtp://127.0.0.1:${port}`,
    SMTP_FROM: 'noreply@ledger.example',
    SMTP_USER: USER,
    SMTP_PASSWORD_FILE: passwordFile,
    SMTP_POLL_INTERVAL_MS: '50',
    PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example',
  }).smtp!;
}

forEachDatabase('Confirmation mails over SMTP', (db) => {
  let mail: TestMailServer;
  let s: TestServer;
  let self: SelfServiceServiceClient;
  let smtp: SmtpConfig;
  let counter = 0;
  const passwordFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'smtp-pw-')), 'password');
  writeFileSync(passwordFile, `${PASSWORD}\n`);

  before(async function () {
    this.timeout(60_000);
    mail = new TestMailServer(await freePort());
    await mail.start();
    smtp = smtpConfig(mail.port, passwordFile);
    s = await startTestServer(db(), { privacyCenterPublicUrl: 'https://privacy.example', smtp, metrics: { port: 0, bindAddress: '127.0.0.1', maxTenants: 10 } });
    self = new SelfServiceServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
    await call(s.tenants, s.tenants.updateTenantSettings, {
      settings: TenantSettings.fromPartial({ name: `tenants/${T}/settings`, selfService: SelfServiceSettings.fromPartial({ brandName: BRAND }) }),
      updateMask: ['self_service.brand_name'],
    });
    await call(s.purposes, s.purposes.publishNotice, { parent: `tenants/${T}/purposes/newsletter`, language: 'de', text: 'Newsletter, deutsch', requestId: 'de-notice' });
  });
  after(async () => {
    self?.close();
    await s?.stop();
    await mail?.stop();
  });
  // Two days a test, more than any test moves the clock: time never runs backwards, so what expired stays expired.
  beforeEach(() => s.clock.set(Date.UTC(2026, 2, 1, 12) + ++counter * 48 * HOUR));

  const signUp = (address: string, language = 'en', server = s, client = self) =>
    call(
      client,
      client.signUp,
      SignUpRequest.fromPartial({
        parent: `tenants/${T}`,
        subjectIdentifier: email(address),
        choices: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_EMAIL, notice: `tenants/${T}/purposes/newsletter/notices/${language === 'de' ? 2 : 1}` }],
        evidence: EVIDENCE,
        language,
        requestId: `smtp-${Math.random()}`,
      }),
    ).then((r) => (void server, r));
  const listed = async () => (await call(self, self.listConfirmationDeliveries, { parent: `tenants/${T}`, pageSize: 0, pageToken: '' })).deliveries;
  /** The delivery row of the sign-up made for `address`: found as the newest of the tenant (addresses are encrypted). */
  const rows = (server: TestServer = s) =>
    server.app.services.tx.read(
      async (tx) =>
        (await managerOf(tx).query('SELECT id, acknowledged_at, mail_state, mail_attempts, mail_next_attempt_at, mail_lease_owner, mail_last_error FROM confirmation_deliveries ORDER BY created_at, id')) as Array<{
          id: string;
          acknowledged_at: unknown;
          mail_state: string | null;
          mail_attempts: unknown;
          mail_next_attempt_at: unknown;
          mail_lease_owner: string | null;
          mail_last_error: string | null;
        }>,
    );
  const newestRow = async () => (await rows()).at(-1)!;
  const linkIn = (m: ParsedMail) => /https:\/\/privacy\.example\/t\/smtp-shop\/confirm#token=[A-Za-z0-9._~-]+/.exec(m.text ?? '')![0];
  const settle = () => new Promise((r) => setTimeout(r, 400));
  const eventsOf = async (who: SubjectIdentifier) =>
    (await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: who, pageSize: 100 }))).consentEvents;
  const planted: string[] = [];
  /** Addresses no mail may ever reach. */
  const never: string[] = [];

  it('e-mail sign-up: exactly one mail, German, with the brand; its link confirms; the delivery is sent, not listed', async function () {
    const address = 'anna.schmidt@example.org';
    planted.push(address);
    await signUp(address, 'de');
    await waitUntil(async () => mail.to(address).length > 0, 10_000);
    await settle();
    const got = mail.to(address);
    expect(got, 'one mail').to.have.length(1);
    const m = got[0];
    expect(m.subject).to.equal(`Bitte bestätigen Sie Ihre Anmeldung bei ${BRAND}`);
    expect(m.from!.value[0]).to.deep.include({ address: 'noreply@ledger.example', name: BRAND });
    expect(m.text).to.include(`Nachrichten von ${BRAND}`);
    expect(m.text).to.match(/Der Link ist gültig bis \d+\. \S+ 2026, \d\d:\d\d UTC\./);
    expect(String(m.html)).to.include('Anmeldung bestätigen</a>');
    // Nothing fetched from elsewhere when the mail is opened: no attachments, images or remote styles.
    expect(m.attachments).to.have.length(0);
    expect(String(m.html)).to.not.match(/<img|<link|url\(/i);
    const link = linkIn(m);
    planted.push(link, link.split('#token=')[1]);
    expect(String(m.html)).to.include(link);

    const row = await newestRow();
    expect(row).to.deep.include({ mail_state: 'SENT', mail_lease_owner: null, mail_last_error: null });
    expect(Number(row.mail_attempts)).to.equal(1);
    expect(Number(row.acknowledged_at)).to.equal(s.clock.now());
    // Sent by the service: not handed to the tenant's system as well.
    expect((await listed()).map((d) => d.name)).to.not.include(`tenants/${T}/confirmationDeliveries/${row.id}`);

    // The link's click (the privacy center's confirm page calls ConfirmSignUp with its token).
    const token = link.split('#token=')[1];
    const confirmed = await call(self, self.confirmSignUp, { parent: `tenants/${T}`, token, evidence: EVIDENCE });
    expect(confirmed.events.map((e) => e.kind)).to.deep.equal([ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED]);
    expect((await eventsOf(email(address))).map((e) => e.kind)).to.include(ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED);
  });

  it('English for a sign-up page in English', async function () {
    const address = 'john.smith@example.org';
    planted.push(address);
    await signUp(address, 'en');
    await waitUntil(async () => mail.to(address).length > 0, 10_000);
    const m = mail.to(address)[0];
    expect(m.subject).to.equal(`Please confirm your sign-up with ${BRAND}`);
    expect(m.text).to.match(/The link works until \d+ \S+ 2026, \d\d:\d\d UTC\./);
    planted.push(linkIn(m));
  });

  it('SMTP server down: retried with backoff, the mail arrives once after it is back', async function () {
    this.timeout(30_000);
    const address = 'down.then.up@example.org';
    planted.push(address);
    await mail.stop();
    try {
      await signUp(address);
      await waitUntil(async () => (await newestRow()).mail_last_error !== null, 10_000);
      const failed = await newestRow();
      expect(failed).to.deep.include({ mail_state: null, acknowledged_at: null, mail_lease_owner: null });
      expect(failed.mail_last_error).to.match(/^E[A-Z]+$/);
      expect(Number(failed.mail_next_attempt_at)).to.be.above(s.clock.now());
      // Not before its retry time: nothing is tried while the clock stands.
      await settle();
      expect(Number((await newestRow()).mail_attempts)).to.equal(1);
    } finally {
      await mail.start();
    }
    await settle();
    expect(mail.to(address), 'not before the retry time').to.have.length(0);
    s.clock.advance(HOUR);
    await waitUntil(async () => mail.to(address).length > 0, 10_000);
    await settle();
    expect(mail.to(address)).to.have.length(1);
    const row = await newestRow();
    expect(row).to.deep.include({ mail_state: 'SENT', mail_last_error: null });
    expect(Number(row.mail_attempts)).to.equal(2);
    planted.push(linkIn(mail.to(address)[0]));
  });

  it('a permanent 550 is recorded FAILED and not retried; the tenant\'s system then gets the delivery', async function () {
    const address = 'no.such.user@example.org';
    planted.push(address);
    never.push(address);
    mail.refused.add(address);
    await signUp(address);
    await waitUntil(async () => (await newestRow()).mail_state === 'FAILED', 10_000);
    const row = await newestRow();
    expect(row).to.deep.include({ mail_state: 'FAILED', mail_last_error: 'EENVELOPE 550', acknowledged_at: null, mail_lease_owner: null });
    s.clock.advance(3 * HOUR);
    await settle();
    expect(Number((await newestRow()).mail_attempts), 'not tried again').to.equal(1);
    expect(mail.to(address)).to.have.length(0);
    // Given up on: ListConfirmationDeliveries hands it out (the only ones it lists while SMTP is on).
    const handedOut = await listed();
    expect(handedOut.map((d) => d.email)).to.deep.equal([address]);
    planted.push(handedOut[0].link);
  });

  it('an expired delivery is not sent; an erased person\'s delivery is removed and not sent', async function () {
    this.timeout(30_000);
    const expiring = 'expires.first@example.org';
    const erased = 'erased.person@example.org';
    planted.push(expiring, erased);
    never.push(expiring, erased);
    await mail.stop();
    try {
      await signUp(expiring);
      await waitUntil(async () => (await newestRow()).mail_last_error !== null, 10_000);
      const expiringId = (await newestRow()).id;
      await signUp(erased);
      await waitUntil(async () => (await newestRow()).mail_last_error !== null, 10_000);
      const state = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: email(erased) });
      await s.app.services.subjectEraser.erase(T, state.subject.split('/').pop()!);
      expect((await rows()).map((r) => r.id), 'the erased person\'s delivery is gone').to.have.length((await rows()).length).and.include(expiringId);
      expect((await rows()).at(-1)!.id).to.equal(expiringId);
    } finally {
      await mail.start();
    }
    s.clock.advance(25 * HOUR);
    await settle();
    await settle();
    expect(mail.to(expiring)).to.have.length(0);
    expect(mail.to(erased)).to.have.length(0);
    const row = await newestRow();
    expect(Number(row.mail_attempts)).to.equal(1);
    // Marked, so that the mailer's scan from the oldest open delivery passes it by from now on.
    expect(row).to.deep.include({ mail_state: 'EXPIRED', acknowledged_at: null, mail_lease_owner: null });
  });

  it('STARTTLS required but not offered: not sent in clear, retried', async function () {
    const sender = smtpSender({ host: '127.0.0.1', port: mail.port, implicitTls: false, requireTls: true, ignoreTls: false, user: USER, password: PASSWORD });
    try {
      const err = (await sender.send({ from: { name: 'x', address: 'noreply@ledger.example' }, to: 'tls.test@example.org', subject: 's', text: 't', html: '<p>t</p>' }).then(
        () => null,
        (e: unknown) => e,
      )) as { code?: string } | null;
      expect(err?.code).to.equal('ETLS');
    } finally {
      sender.close();
    }
    expect(mail.to('tls.test@example.org')).to.have.length(0);
  });

  it('two servers on one database send each mail once', async function () {
    this.timeout(60_000);
    const second = await startTestServer(db(), { privacyCenterPublicUrl: 'https://privacy.example', smtp });
    const secondSelf = new SelfServiceServiceClient(second.address, credentials.createInsecure());
    try {
      second.clock.set(s.clock.now());
      const addresses = Array.from({ length: 24 }, (_, i) => `twice.${i}@example.org`);
      planted.push(...addresses);
      // Sign-ups through both, so that each server's mailer finds work as soon as it looks.
      await Promise.all(addresses.map((a, i) => (i % 2 ? signUp(a, 'en', second, secondSelf) : signUp(a))));
      await waitUntil(async () => addresses.every((a) => mail.to(a).length > 0), 20_000);
      await settle();
      await settle();
      for (const a of addresses) expect(mail.to(a), a).to.have.length(1);
      const sentBy = (server: TestServer) => (server.logs().match(/confirmation mail sent/g) ?? []).length;
      console.log(`      mails sent by the first server: ${sentBy(s)}, by the second: ${sentBy(second)}`);
      expect((await rows()).filter((r) => r.mail_state === 'SENT').length).to.be.at.least(addresses.length);
      expect(second.logs()).to.not.include(PASSWORD);
      for (const a of addresses) expect(second.logs()).to.not.include(a);
    } finally {
      secondSelf.close();
      await second.stop();
    }
  });

  it('deliveries made before SMTP and the public address were set: a bare link is mailed with the public address; one confirmed meanwhile is not mailed or listed', async function () {
    this.timeout(60_000);
    // A server as the service ran before: no SMTP, no PRIVACY_CENTER_PUBLIC_URL (links are paths),
    // the tenant's own system fetching the deliveries.
    const before = await startTestServer(db());
    const beforeSelf = new SelfServiceServiceClient(before.address, credentials.createInsecure());
    const relative = 'relative.link@example.org';
    const confirmedMeanwhile = 'confirmed.meanwhile@example.org';
    planted.push(relative, confirmedMeanwhile);
    never.push(confirmedMeanwhile);
    await mail.stop();
    try {
      before.clock.set(s.clock.now());
      await signUp(confirmedMeanwhile, 'en', before, beforeSelf);
      await signUp(relative, 'en', before, beforeSelf);
      // Listed by the server without SMTP, with bare links; the first is mailed by the tenant's system
      // (not acknowledged: it crashed), and the person confirms.
      const open = (await call(beforeSelf, beforeSelf.listConfirmationDeliveries, { parent: `tenants/${T}`, pageSize: 0, pageToken: '' })).deliveries;
      const first = open.find((d) => d.email === confirmedMeanwhile)!;
      expect(first.link).to.match(/^\/t\/smtp-shop\/confirm#token=/);
      planted.push(...open.map((d) => d.link));
      await call(beforeSelf, beforeSelf.confirmSignUp, { parent: `tenants/${T}`, token: first.link.split('#token=')[1], evidence: EVIDENCE });
      const listedAfter = (await call(beforeSelf, beforeSelf.listConfirmationDeliveries, { parent: `tenants/${T}`, pageSize: 0, pageToken: '' })).deliveries;
      expect(listedAfter.map((d) => d.email), 'a confirmed sign-up\'s delivery is no longer listed').to.not.include(confirmedMeanwhile);
      expect(listedAfter.map((d) => d.email)).to.include(relative);
      const settled = (await rows()).find((r) => r.id === first.name.split('/').pop())!;
      expect(settled).to.deep.include({ mail_state: 'OBSOLETE', mail_lease_owner: null });
      expect(Number(settled.acknowledged_at)).to.equal(before.clock.now());
    } finally {
      beforeSelf.close();
      await before.stop();
      await mail.start();
    }
    // Now the service with SMTP and the public address mails what is open: once its retry time
    // has come (an attempt that failed while the SMTP server was down may be recorded only now,
    // its retry time counted from now: the clock is moved on to it, never past the expiry).
    await settle();
    s.clock.advance(HOUR);
    await waitUntil(async () => {
      if (mail.to(relative).length > 0) return true;
      const due = Math.max(...(await rows()).filter((r) => r.mail_state === null && r.mail_next_attempt_at !== null).map((r) => Number(r.mail_next_attempt_at)));
      if (Number.isFinite(due) && due > s.clock.now()) s.clock.set(due);
      return false;
    }, 10_000);
    await settle();
    expect(mail.to(relative)).to.have.length(1);
    const link = linkIn(mail.to(relative)[0]);
    expect(mail.to(relative)[0].text).to.not.match(/^\/t\//m);
    planted.push(link);
    expect(mail.to(confirmedMeanwhile), 'no mail for a sign-up already confirmed').to.have.length(0);
    // The mailed link works: it confirms the sign-up.
    const confirmed = await call(self, self.confirmSignUp, { parent: `tenants/${T}`, token: link.split('#token=')[1], evidence: EVIDENCE });
    expect(confirmed.events.map((e) => e.kind)).to.deep.equal([ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED]);
  });

  it('a delivery of a tenant shredded before it went out: never sent, given up at once (FAILED TENANT_ERASED), not retried', async function () {
    this.timeout(30_000);
    const shredded = 'smtp-shredded';
    const address = 'shredded.tenant@example.org';
    planted.push(address);
    never.push(address);
    await seedTenant(s, shredded);
    await mail.stop();
    let id: string;
    try {
      await call(self, self.signUp, SignUpRequest.fromPartial({
        parent: `tenants/${shredded}`,
        subjectIdentifier: email(address),
        choices: [{ purpose: `tenants/${shredded}/purposes/newsletter`, channel: Channel.CHANNEL_EMAIL, notice: `tenants/${shredded}/purposes/newsletter/notices/1` }],
        evidence: EVIDENCE,
        language: 'en',
        requestId: 'shredded-signup',
      }));
      await waitUntil(async () => (await newestRow()).mail_last_error !== null, 10_000);
      id = (await newestRow()).id;
      await call(s.keys, s.keys.shredTenant, { name: `tenants/${shredded}`, confirmTenantId: shredded, requestId: '' });
    } finally {
      await mail.start();
    }
    s.clock.advance(HOUR);
    // The shred's purge deletes the tenant's rows in the background; until it has, the mailer
    // finds the delivery unreadable for good and gives it up at once.
    const row = async () => (await rows()).find((r) => r.id === id);
    await waitUntil(async () => {
      const r = await row();
      return r === undefined || r.mail_state === 'FAILED';
    }, 10_000);
    const left = await row();
    if (left) expect(left).to.deep.include({ mail_state: 'FAILED', mail_last_error: 'TENANT_ERASED', acknowledged_at: null, mail_lease_owner: null });
    s.clock.advance(3 * HOUR);
    await settle();
    const later = await row();
    if (later) expect(Number(later.mail_attempts), 'not tried again').to.equal(2);
    expect(mail.to(address)).to.have.length(0);
  });

  it('in all: one mail per sign-up, none to an expired, erased or refused delivery; the SMTP login worked; no address, link, token or the password in the log', function () {
    expect(mail.badLogins).to.equal(0);
    for (const a of never) expect(mail.to(a), a).to.have.length(0);
    const recipients = mail.mails.map((m) => (Array.isArray(m.to) ? m.to[0] : m.to)!.value[0].address);
    expect(new Set(recipients).size, 'no address mailed twice').to.equal(recipients.length);
    const logs = s.logs();
    expect(logs).to.include('confirmation mail sent');
    expect(logs).to.include('confirmation mail refused by the SMTP server; not retried');
    expect(planted.length).to.be.at.least(10);
    for (const p of [...planted, PASSWORD]) expect(logs, p).to.not.include(p);
  });

  it('metrics: mails by result, and the age of the oldest delivery still to be sent', async function () {
    const metric = async (name: string) => (await s.app.metrics!.registry.getSingleMetric(name)!.get()).values;
    const mails = Object.fromEntries((await metric('consent_confirmation_mails_total')).map((v) => [String(v.labels.result), v.value]));
    // This server: German, English, down-then-up (one retry, then sent), the 550, the expired and
    // the erased one's retries, its share of the 24 of the two-server test.
    expect(mails.failed).to.equal(1);
    expect(mails.retry).to.be.at.least(3);
    expect(mails.sent).to.be.at.least(3);
    expect(mails.sent).to.equal((s.logs().match(/"confirmation mail sent"/g) ?? []).length);
    expect((await metric('consent_confirmation_delivery_oldest_seconds'))[0].value, 'none waiting').to.equal(0);
    await mail.stop();
    try {
      await signUp('waiting.person@example.org');
      s.clock.advance(90_000);
      expect((await metric('consent_confirmation_delivery_oldest_seconds'))[0].value).to.equal(90);
    } finally {
      await mail.start();
    }
    expect(s.logs()).to.not.include('waiting.person@example.org');
  });
});

forEachDatabase('Confirmation mails from two server processes on one database', (db) => {
  let mail: TestMailServer;
  const processes: ServerProcess[] = [];
  const passwordFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'smtp-pw-')), 'password');
  writeFileSync(passwordFile, `${PASSWORD}\n`);

  after(async () => {
    for (const p of processes) await p.stop();
    await mail?.stop();
  });

  it('each mail is sent once, by one of them; neither logs an address, a link or the password', async function () {
    this.timeout(120_000);
    mail = new TestMailServer(await freePort());
    await mail.start();
    const env = {
      SMTP_URL: `smtp://127.0.0.1:${mail.port}`,
      SMTP_FROM: 'noreply@ledger.example',
      SMTP_USER: USER,
      SMTP_PASSWORD_FILE: passwordFile,
      SMTP_POLL_INTERVAL_MS: '50',
      PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example',
    };
    // The first makes the development root key in the data folder; the second reads it.
    processes.push(await startServerProcess(db(), { env }));
    processes.push(await startServerProcess(db(), { env: { ...env, ROOT_KEYS_FILE: path.join(db().dataDir, 'root-keys.dev.json') } }));
    const clients = processes.map((p) => ({
      tenants: new TenantServiceClient(p.address, credentials.createInsecure()),
      purposes: new PurposeServiceClient(p.address, credentials.createInsecure()),
      self: new SelfServiceServiceClient(p.address, credentials.createInsecure()),
    }));
    try {
      const { tenants, purposes } = clients[0];
      await call(tenants, tenants.createTenant, { tenantId: T, displayName: 'Shop', requestId: '', settings: undefined });
      await call(purposes, purposes.createPurpose, {
        parent: `tenants/${T}`,
        purposeId: 'newsletter',
        purpose: { name: '', displayName: 'newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: '', createTime: undefined, allowedWhileRestricted: false },
        requestId: '',
      });
      await call(purposes, purposes.publishNotice, { parent: `tenants/${T}/purposes/newsletter`, language: 'en', text: 'Newsletter', requestId: 'notice-en' });
      const addresses = Array.from({ length: 30 }, (_, i) => `process.${i}@example.org`);
      // Through both processes, alternately, so that both mailers find work at once.
      // Two processes writing one SQLite file may be told UNAVAILABLE (busy; "retry"): retried with
      // the same request_id, as a client does (idempotent).
      const retried = async <T,>(work: () => Promise<T>): Promise<T> => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await work();
          } catch (err) {
            if ((err as { code?: number }).code !== status.UNAVAILABLE || attempt >= 5) throw err;
            await new Promise((r) => setTimeout(r, 200 * attempt));
          }
        }
      };
      await Promise.all(
        addresses.map((address, i) => {
          const { self } = clients[i % 2];
          return retried(() => call(
            self,
            self.signUp,
            SignUpRequest.fromPartial({
              parent: `tenants/${T}`,
              subjectIdentifier: email(address),
              choices: [{ purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_EMAIL, notice: `tenants/${T}/purposes/newsletter/notices/1` }],
              evidence: EVIDENCE,
              language: 'en',
              requestId: `proc-${i}`,
            }),
          ));
        }),
      );
      await waitUntil(async () => addresses.every((a) => mail.to(a).length > 0), 30_000, performance.now(), 20);
      await new Promise((r) => setTimeout(r, 1000));
      for (const a of addresses) expect(mail.to(a), a).to.have.length(1);
      expect(mail.mails).to.have.length(addresses.length);
      const sent = processes.map((p) => (p.output().match(/"confirmation mail sent"/g) ?? []).length);
      console.log(`      mails sent by the first process: ${sent[0]}, by the second: ${sent[1]}`);
      expect(sent[0] + sent[1]).to.equal(addresses.length);
      for (const p of processes) {
        const out = p.output();
        expect(out).to.not.include(PASSWORD);
        expect(out).to.not.include('#token=');
        for (const a of addresses) expect(out, a).to.not.include(a);
      }
    } finally {
      for (const c of clients) for (const client of Object.values(c)) client.close();
    }
  });
});

describe('SMTP settings refused at start', function () {
  this.timeout(60_000);
  const secret = 'hunter2-planted';
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['credentials in SMTP_URL', { SMTP_URL: `smtp://mailer:${secret}@127.0.0.1:2525`, SMTP_FROM: 'noreply@example.org', PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example' }, /SMTP_URL must not hold credentials/],
    ['SMTP_FROM missing', { SMTP_URL: 'smtp://127.0.0.1:2525', PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example' }, /SMTP_URL needs SMTP_FROM/],
    ['SMTP_PASSWORD in the environment', { SMTP_URL: 'smtp://127.0.0.1:2525', SMTP_FROM: 'noreply@example.org', SMTP_PASSWORD: secret, PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example' }, /SMTP_PASSWORD is not read/],
  ];
  for (const [title, env, expected] of cases) {
    it(`${title}: exit code 2, the variable named, the password not printed`, async function () {
      const dataDir = mkdtempSync(path.join(os.tmpdir(), 'smtp-start-'));
      const db = { label: 'sqlite' as const, config: { kind: 'sqlite' as const, file: path.join(dataDir, 'l.sqlite') }, keyStore: { kind: 'sqlite' as const, file: path.join(dataDir, 'k.sqlite') }, dataDir, drop: async () => undefined };
      const p = await startServerProcess(db, { env, waitForServing: false });
      expect(await p.exited).to.equal(2);
      expect(p.output()).to.match(expected);
      expect(p.output()).to.not.include(secret);
    });
  }
});
