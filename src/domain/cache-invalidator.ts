import { DecisionCache } from './decision-cache';
import { DecisionStateRepository } from './ports';
import { TransactionRunner } from '../shared/unit-of-work';

/** Entries read per statement while catching up with a tenant that wrote a lot. */
const PAGE = 2000;

export interface CacheInvalidatorOptions {
  /** Pause between catch-ups. A fraction of the staleness bound, so a late one does not lapse it. */
  intervalMs: number;
  /** Monotonic milliseconds (the cache's freshness is measured on it). */
  monotonic: () => number;
  /** Told when a catch-up failed (the database is unreachable, or slow): the cache lapses after B. */
  onError: (err: unknown) => void;
}

/**
 * Keeps the decision cache in step with the database by tailing every followed tenant's audit
 * log, which orders all of a tenant's writes in commit order: the head row's size is committed
 * with the rows, so every entry below it is final and no slow transaction can slip in below a
 * position already read (the pitfall of AUTO_INCREMENT ids, which are assigned before commit).
 *
 * One catch-up: note the time, read the heads of all followed tenants (one statement), read the
 * entries each tenant gained (subject and type only), apply them to the cache, and then declare
 * the cache caught up as of the noted time. If any read fails nothing is declared, so the cache
 * stops answering once B has passed since the last success; checks then read the database (and
 * fail UNAVAILABLE when it is gone).
 */
export class CacheInvalidator {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Catch-ups completed and failed since start (tests, metrics). */
  readonly stats = { catchUps: 0, failures: 0, applied: 0 };

  constructor(
    private readonly tx: TransactionRunner,
    private readonly repo: DecisionStateRepository,
    private readonly cache: DecisionCache,
    private readonly options: CacheInvalidatorOptions,
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One catch-up now (or joins the one running). */
  catchUp(): Promise<void> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.catchUp()
        .catch((err: unknown) => {
          this.stats.failures++;
          this.options.onError(err);
        })
        .finally(() => this.schedule(this.options.intervalMs));
    }, ms);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    const startedAt = this.options.monotonic();
    const tenants = this.cache.followedTenants();
    if (tenants.length > 0) {
      // The heads prove the cache fresh as of now: on a cluster the read is causal (every unit
      // of work is), so a node that fell behind or was cut off cannot vouch for old state.
      const heads = await this.tx.read((tx) => this.repo.heads(tx, tenants));
      for (const tenantId of tenants) {
        const from = this.cache.position(tenantId);
        const to = heads.get(tenantId) ?? 0;
        if (from === undefined || to <= from) continue;
        const changes = [];
        for (let next = from; next < to; ) {
          const page = await this.tx.read((tx) => this.repo.changes(tx, tenantId, next, to, PAGE));
          changes.push(...page);
          if (page.length < PAGE) break;
          next = page[page.length - 1].seq + 1;
        }
        // Applied in one synchronous step with the new position (DecisionCache.apply).
        this.cache.apply(tenantId, changes, to);
        this.stats.applied += changes.length;
      }
    }
    this.cache.caughtUp(tenants, startedAt);
    this.stats.catchUps++;
  }
}
