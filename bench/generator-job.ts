import { Clients, healthCheck } from './clients';

/**
 * What a job of a load-generator process (bench/load-generator.ts) is: a way to make one call at
 * a time per worker. Job kinds live in modules of their own (bench/write-jobs.ts) and are
 * registered by name in bench/load-generator.ts, so a benchmark asks for them with JSON.
 */

/** What a job kind provides: one call at a time per worker. */
export interface GeneratorJob {
  /**
   * Makes one call; resolves with the items it completed (1 for a unary call). Rejects with a
   * gRPC ServiceError (counted as a failed call) or with anything else (the run stops).
   */
  call(worker: number): Promise<number>;
  close?(): Promise<void>;
  /** Figures of the job's own, reported with the result: counters are summed over generators, maxima max'ed. */
  report?(): { counters?: Record<string, number>; maxima?: Record<string, number> };
}

/** The environment a job is created in. */
export interface JobContext {
  /** This generator's position (0, 1, ...): jobs use it to keep ids and subjects distinct across generators. */
  generator: number;
  /** Calls in flight on this generator. */
  concurrency: number;
  /** Per-call deadline in milliseconds. */
  deadlineMs: number;
  /** gRPC clients of the server under test (one channel per generator, created once). */
  clients(): Clients;
}

export type JobFactory = (params: unknown, context: JobContext) => Promise<GeneratorJob>;

/** An answer a job did not expect: stops the benchmark (a benchmark that measures errors is worthless). */
export class JobFailure extends Error {}

/** grpc.health.v1.Health/Check, the cheapest RPC the server has: the yardstick for every other. */
export const healthCheckJob: JobFactory = async (_params, context) => ({
  async call() {
    if (!(await healthCheck(context.clients().health, context.deadlineMs))) throw new JobFailure('Health/Check did not answer SERVING');
    return 1;
  },
});
