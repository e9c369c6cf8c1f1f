/**
 * Latency bookkeeping for the benchmark. Every figure comes from recorded per-call latencies
 * (process.hrtime.bigint), never from averages, so p99 means "99% of the calls we made were at
 * least this fast".
 */

/** Collects latencies in nanoseconds into a growable typed array (no per-sample allocation). */
export class LatencyRecorder {
  private samples = new Float64Array(4096);
  private size = 0;

  /** Records the time since `startedNs` (a value of process.hrtime.bigint()). */
  recordSince(startedNs: bigint): void {
    this.record(Number(process.hrtime.bigint() - startedNs));
  }

  record(ns: number): void {
    if (this.size === this.samples.length) {
      const bigger = new Float64Array(this.samples.length * 2);
      bigger.set(this.samples);
      this.samples = bigger;
    }
    this.samples[this.size++] = ns;
  }

  get count(): number {
    return this.size;
  }

  /** p50/p99/max in milliseconds, nearest-rank on the sorted samples. */
  summary(): LatencySummary {
    if (this.size === 0) return { count: 0, p50Ms: NaN, p99Ms: NaN, maxMs: NaN };
    const sorted = this.samples.slice(0, this.size).sort();
    return {
      count: this.size,
      p50Ms: percentile(sorted, 50) / 1e6,
      p99Ms: percentile(sorted, 99) / 1e6,
      maxMs: sorted[sorted.length - 1] / 1e6,
    };
  }
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentile of ascending samples: the smallest value with >= p% of samples at or below it. */
export function percentile(sorted: Float64Array, p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Seconds elapsed since `startedNs`. */
export function secondsSince(startedNs: bigint): number {
  return Number(process.hrtime.bigint() - startedNs) / 1e9;
}

/**
 * A small deterministic PRNG (mulberry32): the same subjects are queried in the same order on
 * every run and on both databases, so the two columns of the report compare like with like.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 12345.6 -> "12,346"; small numbers keep one decimal. */
export function formatRate(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
}

/** Milliseconds with a precision that suits the magnitude. */
export function formatMs(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (value < 1) return `${value.toFixed(3)} ms`;
  if (value < 100) return `${value.toFixed(2)} ms`;
  return `${Math.round(value)} ms`;
}
