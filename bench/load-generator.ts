import { status as GrpcStatus } from '@grpc/grpc-js';
import { Clients, createClients } from './clients';
import { GeneratorJob, healthCheckJob, JobFactory, JobFailure } from './generator-job';
import type { FromGenerator, GeneratorResult, ToGenerator } from './load-generators';
import { CHECK_JOBS } from './check-jobs';
import { WRITE_JOBS } from './write-jobs';

/**
 * A load-generator process (forked by bench/load-generators.ts). It runs one job at a time in a
 * closed loop: `concurrency` workers, each starting its next call as soon as the previous one
 * answered, from the common start time until the window closes. Calls that finish inside the
 * window are counted with their latency; failed calls are counted by gRPC status, not retried.
 * A job that throws anything other than a gRPC status (an unexpected answer) fails the run.
 * In open loop (message.openLoop) calls start on a fixed schedule instead, whatever the server's
 * state; a call counts if its scheduled time is inside the window, and its latency runs from
 * that scheduled time (a late start is the server's or the machine's delay, not to be omitted).
 */

/** Every job kind a coordinator may ask for. The check-path benchmark adds its kinds here. */
const JOBS: Record<string, JobFactory> = {
  'health-check': healthCheckJob,
  ...WRITE_JOBS,
  ...CHECK_JOBS,
};

const generator = Number(process.env.BENCH_GENERATOR_INDEX ?? '0');
const target = process.env.BENCH_TARGET ?? '';
let clients: Clients | null = null;
const getClients = () => (clients ??= createClients(target));

const STATUS_NAMES = new Map<number, string>(Object.entries(GrpcStatus).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]));

/** "UNAVAILABLE" for a gRPC error; null for anything else. */
function grpcStatusName(err: unknown): string | null {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' && STATUS_NAMES.has(code) ? STATUS_NAMES.get(code)! : null;
}

async function runJob(message: ToGenerator & { type: 'run' }): Promise<GeneratorResult> {
  const factory = JOBS[message.job.kind];
  if (!factory) throw new JobFailure(`unknown job kind "${message.job.kind}" (known: ${Object.keys(JOBS).join(', ')})`);
  const job = await factory(message.job.params, { generator, concurrency: message.concurrency, deadlineMs: message.deadlineMs, clients: getClients });
  const result: GeneratorResult = { completed: 0, items: 0, failed: {}, failureMessages: {}, failedOutside: 0, latenciesNs: [], issued: 0, okTotal: 0, failedTotal: 0 };
  try {
    const wait = message.startAt - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    let fatal: unknown = null;
    const worker = async (index: number) => {
      while (fatal === null && Date.now() < message.measureUntil) {
        result.issued++;
        const t0 = process.hrtime.bigint();
        try {
          const items = await job.call(index);
          result.okTotal++;
          const now = Date.now();
          if (now >= message.measureFrom && now <= message.measureUntil) {
            result.completed++;
            result.items += items;
            result.latenciesNs.push(Number(process.hrtime.bigint() - t0));
          }
        } catch (err) {
          const name = grpcStatusName(err);
          if (name === null) {
            fatal ??= err;
            return;
          }
          result.failedTotal++;
          const now = Date.now();
          if (now >= message.measureFrom && now <= message.measureUntil) {
            result.failed[name] = (result.failed[name] ?? 0) + 1;
            result.failureMessages[name] ??= String((err as { details?: string }).details ?? (err as Error).message).slice(0, 200);
          } else {
            result.failedOutside++;
          }
        }
      }
    };
    if (message.openLoop) {
      fatal = await openLoop(message, job, result);
    } else {
      await Promise.all(Array.from({ length: message.concurrency }, (_, i) => worker(i)));
    }
    if (fatal !== null) throw fatal;
    const own = job.report?.();
    result.counters = { ...result.counters, ...own?.counters };
    result.maxima = { ...result.maxima, ...own?.maxima };
    return result;
  } finally {
    await job.close?.();
  }
}

/**
 * Open loop: call k is due at startAt + offsetMs + k / rate. A timer wakes the loop about every
 * millisecond and it starts every call that has come due (a busy-wait would take a core from the
 * server). Lateness (actual start - scheduled start) is part of the latency and also reported on
 * its own (maxima.lateMs, counters.lateOver5ms), so a load generator that cannot keep up shows.
 * With maxInFlight calls outstanding the generator stops sending for the rest of the window
 * (counters.overloaded, counters.notSent): the server does not keep up with the rate.
 */
async function openLoop(message: ToGenerator & { type: 'run' }, job: GeneratorJob, result: GeneratorResult): Promise<unknown> {
  const { rate, offsetMs, maxInFlight } = message.openLoop!;
  const intervalNs = 1e9 / rate;
  // One clock: hrtime, anchored at the common start time.
  const baseNs = process.hrtime.bigint() + BigInt(Math.round((message.startAt + offsetMs - Date.now()) * 1e6));
  const untilNs = Number(BigInt(Math.round((message.measureUntil - message.startAt - offsetMs) * 1e6)));
  const fromNs = Number(BigInt(Math.round((message.measureFrom - message.startAt - offsetMs) * 1e6)));
  let fatal: unknown = null;
  let inFlight = 0;
  let next = 0;
  let lateMs = 0;
  let lateOver5ms = 0;
  let overloaded = false;
  const pending = new Set<Promise<void>>();
  const launch = (k: number, scheduledNs: number) => {
    inFlight++;
    result.issued++;
    const counted = scheduledNs >= fromNs && scheduledNs <= untilNs;
    const p = job.call(k).then(
      (items) => {
        result.okTotal++;
        if (counted) {
          result.completed++;
          result.items += items;
          result.latenciesNs.push(Number(process.hrtime.bigint() - baseNs) - scheduledNs);
        }
      },
      (err: unknown) => {
        const name = grpcStatusName(err);
        if (name === null) {
          fatal ??= err;
          return;
        }
        result.failedTotal++;
        if (counted) {
          result.failed[name] = (result.failed[name] ?? 0) + 1;
          result.failureMessages[name] ??= String((err as { details?: string }).details ?? (err as Error).message).slice(0, 200);
        } else {
          result.failedOutside++;
        }
      },
    );
    const tracked = p.finally(() => {
      inFlight--;
      pending.delete(tracked);
    });
    pending.add(tracked);
  };
  for (;;) {
    const nowNs = Number(process.hrtime.bigint() - baseNs);
    if (fatal !== null || overloaded || nowNs > untilNs) break;
    while (next * intervalNs <= nowNs && next * intervalNs <= untilNs) {
      if (inFlight >= maxInFlight) {
        // The server fell this far behind: sending more would only grow the queue. Stop, and
        // report what was never sent, so the latencies read as the lower bound they now are.
        overloaded = true;
        break;
      }
      const scheduledNs = next * intervalNs;
      if (scheduledNs >= fromNs) {
        const late = (nowNs - scheduledNs) / 1e6;
        if (late > 5) lateOver5ms++;
        lateMs = Math.max(lateMs, late);
      }
      launch(next++, scheduledNs);
    }
    if (fatal !== null || overloaded) break;
    const dueInMs = (next * intervalNs - Number(process.hrtime.bigint() - baseNs)) / 1e6;
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.floor(dueInMs))));
  }
  await Promise.all([...pending]);
  const due = Math.floor(untilNs / intervalNs) + 1;
  result.counters = { ...result.counters, scheduled: next, lateOver5ms, notSent: Math.max(0, due - next), overloaded: overloaded ? 1 : 0 };
  result.maxima = { ...result.maxima, lateMs };
  return fatal;
}

function send(message: FromGenerator): void {
  process.send?.(message);
}

process.on('message', (message: ToGenerator) => {
  if (message.type === 'exit') {
    clients?.close();
    process.disconnect?.();
    // Let pending output flush, then leave even if a handle (a stray socket) stays open.
    setTimeout(() => process.exit(0), 100).unref();
    return;
  }
  runJob(message).then(
    (result) => send({ type: 'result', id: message.id, result }),
    (err: unknown) => send({ type: 'failed', id: message.id, message: `load generator ${generator}: ${err instanceof Error ? err.message : String(err)}` }),
  );
});

// The coordinator went away (crashed, killed): nothing left to do.
process.on('disconnect', () => process.exit(0));

send({ type: 'ready', pid: process.pid });
