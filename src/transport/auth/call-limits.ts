import { LRUCache } from 'lru-cache';
import { DomainError } from '../../shared/errors';

export interface CallLimitSettings {
  /** Calls a principal may start per second, sustained (0: unlimited). */
  ratePerSecond: number;
  /** Calls a principal may start at once after being idle. */
  burst: number;
  /** Streams a principal may hold open at once. */
  maxStreamsPerPrincipal: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Per-principal limits: a token bucket on call starts (RESOURCE_EXHAUSTED with RetryInfo saying
 * when a call would pass) and a count of open streams. Buckets of principals not seen for a while
 * are forgotten (LRU), which only ever gives them a full bucket again.
 */
export class CallLimits {
  private readonly buckets = new LRUCache<string, Bucket>({ max: 100_000 });
  private readonly streams = new Map<string, number>();

  constructor(private readonly settings: CallLimitSettings) {}

  /** Takes one call from the principal's bucket, or throws RESOURCE_EXHAUSTED. */
  admitCall(principalId: string, now: number): void {
    const { ratePerSecond, burst } = this.settings;
    if (ratePerSecond <= 0) return;
    // The bucket is changed in place: `get` already marks it recently used, so only a new one is set.
    let bucket = this.buckets.get(principalId);
    if (!bucket) this.buckets.set(principalId, (bucket = { tokens: burst, at: now }));
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * ratePerSecond);
    bucket.at = now;
    if (bucket.tokens < 1) {
      const waitMs = ((1 - bucket.tokens) / ratePerSecond) * 1000;
      throw new DomainError('RESOURCE_EXHAUSTED', 'RATE_LIMITED', `more than ${ratePerSecond} calls a second from this principal; retry later`, {}, [], waitMs);
    }
    bucket.tokens -= 1;
  }

  /** Opens a stream for the principal; the returned function closes it (idempotent). */
  openStream(principalId: string): () => void {
    const open = this.streams.get(principalId) ?? 0;
    if (open >= this.settings.maxStreamsPerPrincipal) {
      throw new DomainError('RESOURCE_EXHAUSTED', 'TOO_MANY_STREAMS', `at most ${this.settings.maxStreamsPerPrincipal} open streams per principal`, {}, [], 1000);
    }
    this.streams.set(principalId, open + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      const left = (this.streams.get(principalId) ?? 1) - 1;
      if (left <= 0) this.streams.delete(principalId);
      else this.streams.set(principalId, left);
    };
  }
}
