import { ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import { ProcessGroupMeter, ProcessGroupSample, ProcessGroupUsage } from './cpu';
import { LatencyRecorder, LatencySummary } from './stats';

/**
 * Load generators as processes of their own. On two vCPUs a single Node.js process driving a
 * cheap RPC saturates its core before the server does, so the benchmark coordinator (this
 * process) only schedules: it forks N generator processes (bench/load-generator.ts), hands each
 * a share of the calls in flight, and they all run the same job in the same measurement window.
 * The coordinator samples CPU (server, database, generators) exactly at the window's edges, so
 * "server CPU per operation" covers the same interval as the operations counted.
 *
 * A job is a kind registered in bench/load-generator.ts plus JSON parameters; the write benchmark
 * registers its jobs in bench/write-jobs.ts, and other benchmarks (the check path) add theirs the
 * same way.
 */

/** What the coordinator asks a generator to do. */
export interface JobRequest {
  /** A kind registered in bench/load-generator.ts ('health-check', 'record-consent', ...). */
  kind: string;
  /** Parameters of that kind, as JSON. */
  params?: unknown;
}

/** Coordinator -> generator. Times are Date.now() milliseconds (one clock: same machine). */
export type ToGenerator =
  | {
      type: 'run';
      id: number;
      job: JobRequest;
      concurrency: number;
      startAt: number;
      measureFrom: number;
      measureUntil: number;
      deadlineMs: number;
      /** Open loop: this generator starts `rate` calls per second on a fixed schedule (from startAt + offsetMs) instead of `concurrency` closed-loop workers. */
      openLoop?: { rate: number; offsetMs: number; maxInFlight: number };
    }
  | { type: 'exit' };

/** What one generator measured in the window. */
export interface GeneratorResult {
  /** Calls that succeeded and finished inside the window. */
  completed: number;
  /** Items those calls completed (e.g. decisions of a batch call); usually = completed. */
  items: number;
  /** Failed calls that finished inside the window, by gRPC status name (or "error"). */
  failed: Record<string, number>;
  /** The first message seen per failure kind (the service puts no personal data in messages). */
  failureMessages: Record<string, string>;
  /** Failed calls outside the window (warm-up, drain). */
  failedOutside: number;
  /** Latency in nanoseconds of each call counted in `completed`. */
  latenciesNs: number[];
  /** Calls started in total (warm-up and window). */
  issued: number;
  /** Calls that succeeded, in total (warm-up, window and drain): e.g. every acknowledged write. */
  okTotal: number;
  /** Calls that failed, in total. */
  failedTotal: number;
  /** The job's own figures (GeneratorJob.report) and, in open loop, the generator's lateness. */
  counters?: Record<string, number>;
  maxima?: Record<string, number>;
}

/** Generator -> coordinator. */
export type FromGenerator =
  | { type: 'ready'; pid: number }
  | { type: 'result'; id: number; result: GeneratorResult }
  | { type: 'failed'; id: number; message: string };

/** One job measured across every generator: what the report needs. */
export interface PhaseMeasurement {
  /** Length of the measurement window in seconds. */
  seconds: number;
  completed: number;
  items: number;
  /** items per second in the window. */
  rate: number;
  failed: Record<string, number>;
  failureMessages: Record<string, string>;
  failedOutside: number;
  /** Calls that succeeded in total, warm-up and drain included (every acknowledged write). */
  okTotal: number;
  failedTotal: number;
  latency: LatencySummary;
  cpu: ProcessGroupUsage;
  /** The window in process.hrtime microseconds (the clock of V8 CPU profiles of the same machine). */
  windowUs: { from: number; to: number };
  /** Generators used and calls in flight on each. */
  split: number[];
  /** The jobs' own figures, summed over generators (counters) or the largest (maxima). */
  counters: Record<string, number>;
  maxima: Record<string, number>;
}

/** Thrown when a generator fails a job (an unexpected answer, a crash): the benchmark stops. */
export class GeneratorFailure extends Error {}

const GENERATOR_JS = path.join(__dirname, 'load-generator.ts');
/** Time from the coordinator's request to the common start: enough for IPC and a busy event loop. */
const START_DELAY_MS = 150;

interface Child {
  process: ChildProcess;
  pid: number;
  exited: Promise<void>;
}

export class LoadGenerators {
  private nextId = 1;

  private constructor(
    private readonly children: Child[],
    private readonly serverPid: number | number[] | undefined,
    private readonly databasePid: number | number[] | null,
  ) {}

  /**
   * Forks `count` generators that will drive `address`, and waits until each is ready. Several
   * addresses (replicas of the service): generator i drives address[i % n]. Several server or
   * database pids (replicas, cluster nodes): their CPU is summed.
   */
  static async start(options: { count: number; address: string | string[]; serverPid?: number | number[]; databasePid?: number | number[] | null }): Promise<LoadGenerators> {
    const addresses = typeof options.address === 'string' ? [options.address] : options.address;
    if (addresses.length === 0) throw new GeneratorFailure('load generators need at least one address');
    const children: Child[] = [];
    try {
      for (let index = 0; index < options.count; index++) {
        // fork() reuses this process's execArgv, so the TypeScript loader (tsx) comes along.
        const child = fork(GENERATOR_JS, [], {
          env: { ...process.env, BENCH_TARGET: addresses[index % addresses.length], BENCH_GENERATOR_INDEX: String(index) },
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        liveGenerators.add(child);
        const exited = new Promise<void>((resolve) => child.once('exit', () => (liveGenerators.delete(child), resolve())));
        const pid = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new GeneratorFailure('a load generator did not start within 30 s')), 30_000);
          child.once('message', (m: FromGenerator) => {
            clearTimeout(timer);
            if (m.type === 'ready') resolve(m.pid);
            else reject(new GeneratorFailure(`load generator sent ${m.type} instead of ready`));
          });
          child.once('exit', (code, signal) => {
            clearTimeout(timer);
            reject(new GeneratorFailure(`load generator exited during start-up (code ${code}, signal ${signal})`));
          });
        });
        children.push({ process: child, pid, exited });
      }
    } catch (err) {
      for (const c of children) c.process.kill('SIGKILL');
      throw err;
    }
    return new LoadGenerators(children, options.serverPid, options.databasePid ?? null);
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid);
  }

  get count(): number {
    return this.children.length;
  }

  /** A meter over the server, the database and every generator (the window's CPU is measured with it). */
  meter(): ProcessGroupMeter {
    return new ProcessGroupMeter({ server: this.serverPid, database: this.databasePid, generators: this.pids });
  }

  /**
   * Runs `job` with `concurrency` calls in flight, spread as evenly as possible over the
   * generators (1 in flight uses one generator): warm-up for `warmupMs`, then a window of
   * `durationMs` in which calls are counted, latencies kept and CPU measured. After the window no
   * new calls start; those still in flight are awaited but not counted. `generators` limits how
   * many generators take part (a job that must run in one process, e.g. one SQLite connection).
   * With `openLoop`, calls start on a fixed schedule at `rate` per second in total instead
   * (latency counted from each call's scheduled time, so a stalled server cannot hide its
   * backlog: no coordinated omission); more than `maxInFlight` outstanding stops the run.
   */
  async run(
    job: JobRequest,
    options: { concurrency: number; warmupMs: number; durationMs: number; deadlineMs?: number; generators?: number; openLoop?: { rate: number; maxInFlight: number } },
  ): Promise<PhaseMeasurement> {
    const split = spread(options.concurrency, Math.min(options.generators ?? this.children.length, this.children.length));
    while (split.length < this.children.length) split.push(0);
    const startAt = Date.now() + START_DELAY_MS;
    const measureFrom = startAt + options.warmupMs;
    const measureUntil = measureFrom + options.durationMs;
    const id = this.nextId++;
    const deadlineMs = options.deadlineMs ?? 30_000;
    const meter = this.meter();

    // CPU samples at the window's edges, taken by timers of this otherwise idle process.
    let before: ProcessGroupSample | null = null;
    let after: ProcessGroupSample | null = null;
    let fromUs = 0;
    let toUs = 0;
    const edges = new Promise<void>((resolve) => {
      setTimeout(() => {
        fromUs = Number(process.hrtime.bigint() / 1000n);
        before = meter.sample();
        setTimeout(() => {
          toUs = Number(process.hrtime.bigint() / 1000n);
          after = meter.sample();
          resolve();
        }, Math.max(0, measureUntil - Date.now()));
      }, Math.max(0, measureFrom - Date.now()));
    });

    // Open loop: the rate is shared evenly by the generators taking part, their schedules interleaved.
    const used = split.filter((share) => share > 0).length;
    const openLoop = (index: number) =>
      options.openLoop ? { rate: options.openLoop.rate / used, offsetMs: (index * 1000) / options.openLoop.rate, maxInFlight: Math.ceil(options.openLoop.maxInFlight / used) } : undefined;
    const results = await Promise.all(
      split.map((share, index) =>
        share === 0
          ? null
          : this.ask(this.children[index], { type: 'run', id, job, concurrency: share, startAt, measureFrom, measureUntil, deadlineMs, openLoop: openLoop(index) }, measureUntil + deadlineMs + 30_000),
      ),
    );
    await edges;
    const answered = results.filter((r): r is GeneratorResult => r !== null);
    const latency = new LatencyRecorder();
    const failed: Record<string, number> = {};
    const failureMessages: Record<string, string> = {};
    const counters: Record<string, number> = {};
    const maxima: Record<string, number> = {};
    for (const r of answered) {
      for (const [k, v] of Object.entries(r.counters ?? {})) counters[k] = (counters[k] ?? 0) + v;
      for (const [k, v] of Object.entries(r.maxima ?? {})) maxima[k] = Math.max(maxima[k] ?? -Infinity, v);
      for (const ns of r.latenciesNs) latency.record(ns);
      for (const [code, n] of Object.entries(r.failed)) failed[code] = (failed[code] ?? 0) + n;
      for (const [code, message] of Object.entries(r.failureMessages)) failureMessages[code] ??= message;
    }
    const completed = answered.reduce((sum, r) => sum + r.completed, 0);
    const items = answered.reduce((sum, r) => sum + r.items, 0);
    const seconds = options.durationMs / 1000;
    return {
      seconds,
      completed,
      items,
      rate: items / seconds,
      failed,
      failureMessages,
      failedOutside: answered.reduce((sum, r) => sum + r.failedOutside, 0),
      okTotal: answered.reduce((sum, r) => sum + r.okTotal, 0),
      failedTotal: answered.reduce((sum, r) => sum + r.failedTotal, 0),
      latency: latency.summary(),
      cpu: ProcessGroupMeter.usage(before!, after!),
      windowUs: { from: fromUs, to: toUs },
      split: split.filter((s) => s > 0),
      counters,
      maxima,
    };
  }

  private ask(child: Child, message: ToGenerator & { type: 'run' }, giveUpAt: number): Promise<GeneratorResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new GeneratorFailure(`load generator ${child.pid} did not report within ${Math.round((giveUpAt - Date.now()) / 1000)} s of its window's end`)), Math.max(1000, giveUpAt - Date.now()));
      const onMessage = (m: FromGenerator) => {
        if (m.type === 'result' && m.id === message.id) done(null, m.result);
        else if (m.type === 'failed' && m.id === message.id) done(new GeneratorFailure(m.message));
      };
      const onExit = (code: number | null, signal: string | null) => done(new GeneratorFailure(`load generator ${child.pid} exited (code ${code}, signal ${signal})`));
      const done = (err: Error | null, result?: GeneratorResult) => {
        clearTimeout(timer);
        child.process.off('message', onMessage);
        child.process.off('exit', onExit);
        if (err) reject(err);
        else resolve(result!);
      };
      child.process.on('message', onMessage);
      child.process.once('exit', onExit);
      child.process.send(message);
    });
  }

  /** Asks every generator to exit; kills those that have not after 5 s. */
  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (c) => {
        if (c.process.exitCode !== null || c.process.signalCode !== null) return;
        try {
          c.process.send({ type: 'exit' } satisfies ToGenerator);
        } catch {
          // The channel is gone already.
        }
        const timer = setTimeout(() => c.process.kill('SIGKILL'), 5000);
        await c.exited;
        clearTimeout(timer);
      }),
    );
  }
}

/** `total` calls in flight over `generators` processes: [8, 8] for 16 over 2, [1, 0] for 1. */
export function spread(total: number, generators: number): number[] {
  const base = Math.floor(total / generators);
  return Array.from({ length: generators }, (_, i) => base + (i < total % generators ? 1 : 0));
}

/** Generators still running; killed synchronously if the coordinator exits abruptly. */
const liveGenerators = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveGenerators) child.kill('SIGKILL');
});
