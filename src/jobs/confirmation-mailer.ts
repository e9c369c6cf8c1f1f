import { randomBytes } from 'node:crypto';
import { createTransport } from 'nodemailer';
import { Logger } from '../logging/logger';
import { oneLine, renderConfirmationMail } from './confirmation-mail';

/**
 * Sends the e-mail double-opt-in confirmations itself when SMTP_URL is set (issue 20,
 * docs/privacy-center.md "Confirmation mails"). Without it nothing here runs and the tenant's
 * system fetches the deliveries with ListConfirmationDeliveries, as before.
 *
 * The loop: lease a batch of open deliveries of all tenants, oldest first (the queue decrypts
 * address and link through the key layer, the way ListConfirmationDeliveries does); render; send;
 * record the outcome. The lease is held in the database, so two replicas on one database never
 * both send a delivery while its lease runs (LEASE_MS, longer than the SMTP timeouts of all mails
 * of a batch). A transient failure (SMTP unreachable, TLS, authentication, a 4xx reply) is tried
 * again after a growing delay; a 5xx reply to the recipient or the message is permanent and
 * recorded as FAILED; an expired delivery is never taken. Log lines name the delivery and the
 * tenant, never the address, the link (it holds the token) or the SMTP credentials.
 */

/** A leased delivery, decrypted: what one mail needs. */
export interface MailJob {
  id: string;
  tenantId: string;
  /** The lease this process holds on the row; outcomes are recorded only under it. */
  leaseOwner: string;
  email: string;
  link: string;
  language: string;
  expireTime: number;
  brandName: string;
  /** Attempts including this one. */
  attempts: number;
}

/** A leased delivery that could not be prepared (its keys unreadable just now, say). */
export interface UnreadableJob {
  id: string;
  tenantId: string;
  leaseOwner: string;
  attempts: number;
  /** An error class or reason, no data. */
  error: string;
  /** It will never be readable (its tenant was shredded): given up at once, not retried. */
  permanent: boolean;
}

/** The deliveries' side of the mailer (implemented by the domain: src/domain/confirmation-mail-queue.ts). */
export interface MailQueue {
  /** Leases up to `limit` open deliveries of all tenants, oldest first, for `leaseMs` under `owner`. */
  lease(owner: string, limit: number, leaseMs: number): Promise<{ jobs: MailJob[]; unreadable: UnreadableJob[] }>;
  /** Sent: acknowledged, no longer listed or mailed. False when the lease was lost meanwhile. */
  sent(job: { id: string; leaseOwner: string }): Promise<boolean>;
  retry(job: { id: string; leaseOwner: string }, delayMs: number, error: string): Promise<void>;
  failed(job: { id: string; leaseOwner: string }, error: string): Promise<void>;
  /** Not attempted after all (shutdown): the lease is given back, the attempt not counted. */
  release(job: { id: string; leaseOwner: string }): Promise<void>;
}

export interface OutgoingMail {
  from: { name: string; address: string };
  to: string;
  subject: string;
  text: string;
  html: string;
}

/** Hands a mail to the SMTP server; throws what nodemailer throws (code, responseCode). */
export interface MailSender {
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

export interface SmtpSettings {
  host: string;
  port: number;
  /** smtps://: TLS from the first byte. */
  implicitTls: boolean;
  /** smtp://: refuse to send unless the server offers STARTTLS (and the upgrade succeeds). */
  requireTls: boolean;
  /**
   * smtp:// without requireTls: stay in plain text even when STARTTLS is offered. Set for a relay
   * on loopback (its STARTTLS certificate is rarely one anyone could check); elsewhere STARTTLS is
   * used whenever offered.
   */
  ignoreTls: boolean;
  user?: string;
  /** Read from SMTP_PASSWORD_FILE at start; never logged. */
  password?: string;
}

export type MailResult = 'sent' | 'retry' | 'failed';

export interface MailerOptions {
  /** SMTP_FROM: the sender address; the display name is the tenant's brand. */
  from: string;
  /** SMTP_POLL_INTERVAL_MS: how long an idle mailer waits before looking again. */
  pollIntervalMs: number;
  batchSize?: number;
  leaseMs?: number;
  /** Transient failures of one delivery before it is given up as FAILED. */
  maxAttempts?: number;
  /** Counts each outcome (metrics). */
  onResult?: (result: MailResult) => void;
}

/** Per mail: connecting, the greeting, and any wait for the server. The lease covers a whole batch of these. */
const CONNECTION_TIMEOUT_MS = 10_000;
const GREETING_TIMEOUT_MS = 10_000;
const SOCKET_TIMEOUT_MS = 30_000;
const DEFAULT_BATCH = 10;
const DEFAULT_LEASE_MS = 15 * 60_000;
const DEFAULT_MAX_ATTEMPTS = 20;
/** Retry delays: 10 s, 20 s, 40 s ... at most 30 min (deliveries expire with the sign-up anyway). */
const FIRST_RETRY_MS = 10_000;
const MAX_RETRY_MS = 30 * 60_000;

/** The nodemailer SMTP transport: one connection per mail, no pool (a pool would hold connections open between sign-ups). */
export function smtpSender(settings: SmtpSettings): MailSender {
  const transport = createTransport({
    host: settings.host,
    port: settings.port,
    secure: settings.implicitTls,
    requireTLS: !settings.implicitTls && settings.requireTls,
    ignoreTLS: !settings.implicitTls && !settings.requireTls && settings.ignoreTls,
    auth: settings.user ? { user: settings.user, pass: settings.password ?? '' } : undefined,
    connectionTimeout: CONNECTION_TIMEOUT_MS,
    greetingTimeout: GREETING_TIMEOUT_MS,
    socketTimeout: SOCKET_TIMEOUT_MS,
    // The mail is built from our strings only: no file or URL is ever read into it.
    disableFileAccess: true,
    disableUrlAccess: true,
    // nodemailer's own logger would print the envelope (addresses) and the conversation.
    logger: false,
    debug: false,
  });
  return {
    async send(mail) {
      await transport.sendMail({ ...mail, disableFileAccess: true, disableUrlAccess: true });
    },
    close() {
      transport.close();
    },
  };
}

/**
 * What a send failure means: permanent only when the server refused this recipient or this message
 * with a 5xx reply; everything else (no connection, TLS, authentication, 4xx) may pass and is retried.
 * `error` is the class and the reply code, never the server's text (it may repeat the address).
 */
export function classifySendError(err: unknown): { permanent: boolean; error: string } {
  const e = err as { code?: unknown; responseCode?: unknown };
  const code = typeof e?.code === 'string' && /^[A-Z_]{1,24}$/.test(e.code) ? e.code : 'ERROR';
  const reply = typeof e?.responseCode === 'number' && Number.isInteger(e.responseCode) ? e.responseCode : null;
  const permanent = reply !== null && reply >= 500 && reply < 600 && (code === 'EENVELOPE' || code === 'EMESSAGE');
  return { permanent, error: reply === null ? code : `${code} ${reply}` };
}

/** The delay before attempt `attempts + 1`: doubling from FIRST_RETRY_MS, capped, with up to 20 % jitter so replicas do not retry in step. */
export function retryDelayMs(attempts: number, random = Math.random): number {
  const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(20, Math.max(0, attempts - 1)));
  return Math.round(base * (1 + 0.2 * random()));
}

export class ConfirmationMailer {
  private stopping = false;
  private wake: (() => void) | null = null;
  private running: Promise<void> | null = null;
  private lastLoopWarning = 0;
  private readonly batchSize: number;
  private readonly leaseMs: number;
  private readonly maxAttempts: number;

  constructor(
    private readonly queue: MailQueue,
    private readonly sender: MailSender,
    private readonly options: MailerOptions,
    private readonly logger: Logger,
  ) {
    this.batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  }

  /** Starts the loop (through BackgroundJobs, so shutdown waits for it). */
  start(run: (name: string, work: () => Promise<void>) => void): void {
    run('confirmation-mailer', () => (this.running = this.loop()));
  }

  /** Ends the loop after the mail in hand; leases not yet used are given back. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running;
    this.sender.close();
  }

  /** One round: lease, send, record. Returns how many deliveries it leased (tests call it directly). */
  async runOnce(): Promise<number> {
    const owner = `${process.pid}-${randomBytes(12).toString('hex')}`.slice(0, 64);
    const { jobs, unreadable } = await this.queue.lease(owner, this.batchSize, this.leaseMs);
    for (const u of unreadable) {
      // Keys unreadable just now (a database hiccup), or for good (the tenant shredded; an erased
      // person's rows go with the erasure).
      await this.afterFailure(u, { permanent: u.permanent, error: u.error, why: 'confirmation mail not sent: its delivery can never be read (the tenant is gone); not retried' });
    }
    for (const job of jobs) {
      if (this.stopping) {
        await this.queue.release(job);
        continue;
      }
      await this.sendOne(job);
    }
    return jobs.length + unreadable.length;
  }

  private async loop(): Promise<void> {
    this.logger.info('confirmation mailer started', { poll_interval_ms: this.options.pollIntervalMs });
    while (!this.stopping) {
      let leased = 0;
      try {
        leased = await this.runOnce();
      } catch (err) {
        // The database down, say: said at most once a minute, tried again at the next interval.
        if (Date.now() - this.lastLoopWarning > 60_000) {
          this.lastLoopWarning = Date.now();
          this.logger.warn('confirmation mailer could not read its deliveries; trying again', { error: errorName(err) });
        }
      }
      // A full batch: more may wait, go on at once. Otherwise wait for the next interval.
      if (leased < this.batchSize && !this.stopping) await this.sleep(this.options.pollIntervalMs);
    }
    this.logger.info('confirmation mailer stopped');
  }

  private async sendOne(job: MailJob): Promise<void> {
    const mail = renderConfirmationMail({ language: job.language, brandName: job.brandName, link: job.link, expireTime: job.expireTime });
    const started = performance.now();
    try {
      await this.sender.send({ from: { name: oneLine(job.brandName), address: this.options.from }, to: job.email, ...mail });
    } catch (err) {
      await this.afterFailure(job, classifySendError(err));
      return;
    }
    const recorded = await this.queue.sent(job);
    this.options.onResult?.('sent');
    const fields = { delivery: job.id, tenant: job.tenantId, attempts: job.attempts, ms: Math.round(performance.now() - started) };
    if (recorded) this.logger.info('confirmation mail sent', fields);
    // The lease ran out during the send and another replica may send it too (or the person was erased meanwhile).
    else this.logger.warn('confirmation mail sent, but the delivery was no longer leased by this process', fields);
  }

  private async afterFailure(job: { id: string; tenantId: string; leaseOwner: string; attempts: number }, failure: { permanent: boolean; error: string; why?: string }): Promise<void> {
    const fields = { delivery: job.id, tenant: job.tenantId, attempts: job.attempts, error: failure.error };
    if (failure.permanent || job.attempts >= this.maxAttempts) {
      await this.queue.failed(job, failure.permanent ? failure.error : `GAVE_UP ${failure.error}`.slice(0, 64));
      this.options.onResult?.('failed');
      this.logger.warn(failure.permanent ? (failure.why ?? 'confirmation mail refused by the SMTP server; not retried') : 'confirmation mail failed too often; not retried', fields);
      return;
    }
    const delay = retryDelayMs(job.attempts);
    await this.queue.retry(job, delay, failure.error);
    this.options.onResult?.('retry');
    this.logger.warn('confirmation mail not sent; retried later', { ...fields, retry_in_ms: delay });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }
}

function errorName(err: unknown): string {
  const e = err as { name?: unknown; code?: unknown; reason?: unknown };
  return [e?.name, e?.reason ?? e?.code].filter((x) => typeof x === 'string').join(' ') || 'Error';
}
