import { status as GrpcStatus } from '@grpc/grpc-js';
import { Clients, createClients } from './clients';
import { healthCheckJob, JobFactory, JobFailure } from './generator-job';
import type { FromGenerator, GeneratorResult, ToGenerator } from './load-generators';
import { WRITE_JOBS } from './write-jobs';

/**
 * A load-generator process (forked by bench/load-generators.ts). It runs one job at a time in a
 * closed loop: `concurrency` workers, each starting its next call as soon as the previous one
 * answered, from the common start time until the window closes. Calls that finish inside the
 * window are counted with their latency; failed calls are counted by gRPC status, not retried.
 * A job that throws anything other than a gRPC status (an unexpected answer) fails the run.
 */

/** Every job kind a coordinator may ask for. The check-path benchmark adds its kinds here. */
const JOBS: Record<string, JobFactory> = {
  'health-check': healthCheckJob,
  ...WRITE_JOBS,
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
    await Promise.all(Array.from({ length: message.concurrency }, (_, i) => worker(i)));
    if (fatal !== null) throw fatal;
    return result;
  } finally {
    await job.close?.();
  }
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
