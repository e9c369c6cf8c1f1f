import { KeyManager } from '../crypto/key-manager';
import { MailJob, MailQueue, UnreadableJob } from '../jobs/confirmation-mailer';
import { DomainError } from '../shared/errors';
import { TransactionRunner } from '../shared/unit-of-work';
import { Clock } from './clock';
import { openDelivery, SignUpRepository } from './self-service-signup';
import { TenantService } from './tenant-service';

/** How often (service clock) deliveries that expired unsent are marked EXPIRED. */
const EXPIRY_SWEEP_MS = 60_000;

/**
 * The confirmation deliveries as the service's mailer sees them (src/jobs/confirmation-mailer.ts):
 * leased across all tenants, oldest first, decrypted with the same code ListConfirmationDeliveries
 * uses (openDelivery), with the tenant's brand name; outcomes recorded under the lease. Times come
 * from the service's clock, the one sign-ups and expiry use.
 */
export class ConfirmationMailQueue implements MailQueue {
  private lastExpiry = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly tx: TransactionRunner,
    private readonly repo: SignUpRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    /** PRIVACY_CENTER_PUBLIC_URL (required with SMTP): no mail carries a bare path (openDelivery). */
    private readonly publicUrl: string,
  ) {}

  async lease(owner: string, limit: number, leaseMs: number): Promise<{ jobs: MailJob[]; unreadable: UnreadableJob[] }> {
    const now = this.clock.now();
    // Once a minute: deliveries that expired unsent leave the scan's way (they are never sent).
    if (now - this.lastExpiry >= EXPIRY_SWEEP_MS) {
      this.lastExpiry = now;
      await this.tx.write((tx) => this.repo.expireUnmailed(tx, now));
    }
    const candidates = await this.tx.read((tx) => this.repo.mailCandidates(tx, now, limit));
    if (candidates.length === 0) return { jobs: [], unreadable: [] };
    const leased = await this.tx.write((tx) => this.repo.leaseForMail(tx, candidates, owner, now, now + leaseMs));
    const jobs: MailJob[] = [];
    const unreadable: UnreadableJob[] = [];
    const brands = new Map<string, string>();
    for (const { delivery, attempts } of leased) {
      try {
        let brandName = brands.get(delivery.tenantId);
        if (brandName === undefined) {
          const tenant = await this.tx.read((tx) => this.tenants.require(tx, delivery.tenantId, true));
          // As the tenant's pages show it: the brand name, else the display name.
          brandName = tenant.settings.selfService.brandName || tenant.displayName || tenant.id;
          brands.set(delivery.tenantId, brandName);
        }
        const view = await openDelivery(this.keys, delivery, this.publicUrl);
        jobs.push({ id: view.id, tenantId: view.tenantId, leaseOwner: owner, email: view.email, link: view.link, language: view.language, expireTime: view.expireTime, brandName, attempts });
      } catch (err) {
        // A tenant shredded (TENANT_ERASED) or gone never becomes readable again; anything else
        // (UNAVAILABLE: the key store or database just now) may pass.
        const permanent = err instanceof DomainError && (err.kind === 'FAILED_PRECONDITION' || err.kind === 'NOT_FOUND');
        unreadable.push({ id: delivery.id, tenantId: delivery.tenantId, leaseOwner: owner, attempts, permanent, error: err instanceof DomainError ? err.reason.slice(0, 40) : ((err as Error)?.name ?? 'Error').slice(0, 40) });
      }
    }
    return { jobs, unreadable };
  }

  sent(job: { id: string; leaseOwner: string }): Promise<boolean> {
    return this.tx.write((tx) => this.repo.finishMail(tx, job.id, job.leaseOwner, { kind: 'SENT', at: this.clock.now() }));
  }

  async retry(job: { id: string; leaseOwner: string }, delayMs: number, error: string): Promise<void> {
    await this.tx.write((tx) => this.repo.finishMail(tx, job.id, job.leaseOwner, { kind: 'RETRY', nextAttemptAt: this.clock.now() + delayMs, error }));
  }

  async failed(job: { id: string; leaseOwner: string }, error: string): Promise<void> {
    await this.tx.write((tx) => this.repo.finishMail(tx, job.id, job.leaseOwner, { kind: 'FAILED', error }));
  }

  async release(job: { id: string; leaseOwner: string }): Promise<void> {
    await this.tx.write((tx) => this.repo.finishMail(tx, job.id, job.leaseOwner, { kind: 'RELEASED' }));
  }

  /** Age of the oldest delivery still to be mailed (ms), or null: for the metrics. */
  async oldestOpenAgeMs(): Promise<number | null> {
    const now = this.clock.now();
    const oldest = await this.tx.read((tx) => this.repo.oldestMailable(tx, now));
    return oldest === null ? null : Math.max(0, now - oldest);
  }
}
