import { ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { BatchCheckParams, CheckTarget, StreamCheckParams, UnaryCheckParams } from './check-jobs';
import { backgroundLoad } from './cpu';
import { JobRequest, LoadGenerators, PhaseMeasurement } from './load-generators';
import { machineInfo } from './report';
import { formatMs, formatRate } from './stats';

/**
 * `npm run bench:grpc-floor [-- --quick] [--rounds N] [--out FILE]`
 *
 * What grpc-js, HTTP/2 and protobuf alone allow on this machine, measured the way bench:checks
 * measures the service: the same two load-generator processes and jobs (bench/check-jobs.ts, every
 * answer verified), the same loads (64 unary calls in flight; CheckConsentBatch of 1,000 queries,
 * 4 in flight; StreamCheckConsent on 4 streams with 2 chunks of 500 in flight each), against
 * bench/grpc-floor-server.ts: a server with the service's wire format (its check decoders and
 * encoders, and its stream writes) but none of its work. The table is the ceiling the service's
 * check path can reach here, and the unary check's cost against Health/Check on a server that does
 * nothing else: the part of issue 15's ratios that no service code can remove. Each round
 * (`--rounds`, default 3) runs Health/Check and CheckConsent closed loop, then both in open loop at
 * half that round's CheckConsent rate (as bench:checks); the median of the rounds' ratios is
 * reported: one pair's ratio moves by a third between runs on this shared machine.
 */

const quick = process.argv.includes('--quick');
const outIndex = process.argv.indexOf('--out');
const out = outIndex >= 0 ? process.argv[outIndex + 1] : null;
if (outIndex >= 0 && !out) {
  process.stderr.write('--out: a file name is required\n');
  process.exit(2);
}
const roundsIndex = process.argv.indexOf('--rounds');
const ROUNDS = roundsIndex >= 0 ? Number(process.argv[roundsIndex + 1]) : quick ? 1 : 3;
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1 && ROUNDS <= 20)) {
  process.stderr.write('--rounds: a whole number from 1 to 20\n');
  process.exit(2);
}
const WARMUP_MS = quick ? 1000 : 2000;
const WINDOW_MS = quick ? 2000 : 6000;
const CONCURRENCY = 64;
const TARGET: CheckTarget = { parent: 'tenants/floor', purpose: 'tenants/floor/purposes/newsletter', subjects: 20_000 };

interface Row {
  /** The unary pairs' round (1-based); batch and stream run once. */
  round?: number;
  /** Open loop at half the round's closed-loop CheckConsent rate (latency from each call's scheduled time). */
  open?: boolean;
  workload: string;
  load: string;
  unit: string;
  m: PhaseMeasurement;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function startFloorServer(): Promise<{ child: ChildProcess; address: string }> {
  // fork() reuses this process's execArgv, so the TypeScript loader (tsx) comes along.
  const child = fork(path.join(__dirname, 'grpc-floor-server.ts'), [], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the floor server did not listen within 30 s')), 30_000);
    let seen = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const m = /listening (\d+)/.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the floor server exited during start-up (code ${code})`));
    });
  });
  return { child, address: `127.0.0.1:${port}` };
}

function cpuPerOpUs(m: PhaseMeasurement, who: 'server' | 'generators'): number | null {
  const seconds = m.cpu[who];
  return seconds === null || m.items === 0 ? null : (seconds * 1e6) / m.items;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function pct(seconds: number | null, window: number): string {
  return seconds === null ? '?' : `${Math.round((seconds / window) * 100)}%`;
}

async function main(): Promise<void> {
  const load = await backgroundLoad(1000);
  const { child, address } = await startFloorServer();
  let generators: LoadGenerators | null = null;
  const rows: Row[] = [];
  try {
    generators = await LoadGenerators.start({ count: 2, address, serverPid: child.pid! });
    const measure = async (workload: string, loadText: string, unit: string, job: JobRequest, concurrency: number, round?: number, openRate?: number) => {
      log(`  ${workload}, ${loadText}${round ? `, round ${round}` : ''} ...`);
      const openLoop = openRate ? { rate: openRate, maxInFlight: Math.max(1000, openRate * 5) } : undefined;
      const m = await generators!.run(job, { concurrency, warmupMs: WARMUP_MS, durationMs: WINDOW_MS, openLoop });
      const failures = Object.entries(m.failed);
      if (failures.length > 0) throw new Error(`${workload}: failed calls ${JSON.stringify(m.failed)} ${JSON.stringify(m.failureMessages)}`);
      log(`    ${formatRate(m.rate)} ${unit}, server ${cpuPerOpUs(m, 'server')?.toFixed(1)} µs/op, generators ${cpuPerOpUs(m, 'generators')?.toFixed(1)} µs/op`);
      rows.push({ round, open: openRate !== undefined, workload, load: loadText, unit, m });
      return m;
    };
    const uniform = (seed: number) => ({ kind: 'uniform' as const, seed });
    for (let round = 1; round <= ROUNDS; round++) {
      const checkJob: JobRequest = { kind: 'check-unary', params: { target: TARGET, keys: uniform(round) } satisfies UnaryCheckParams };
      await measure('Health/Check (no-op RPC)', `${CONCURRENCY} in flight`, 'calls/s', { kind: 'health-check' }, CONCURRENCY, round);
      const check = await measure('CheckConsent', `${CONCURRENCY} in flight`, 'calls/s', checkJob, CONCURRENCY, round);
      // As bench:checks: both again in open loop at half the check's closed-loop rate.
      const rate = Math.max(10, Math.round(check.rate / 2));
      await measure('Health/Check (no-op RPC)', `open loop ${formatRate(rate)}/s`, 'calls/s', { kind: 'health-check' }, 1, round, rate);
      await measure('CheckConsent', `open loop ${formatRate(rate)}/s`, 'calls/s', checkJob, 1, round, rate);
    }
    await measure(
      'CheckConsentBatch (1,000 per call)',
      '4 calls in flight',
      'decisions/s',
      { kind: 'check-batch', params: { target: TARGET, keys: uniform(3), batchSize: 1000 } satisfies BatchCheckParams },
      4,
    );
    await measure(
      'StreamCheckConsent',
      '4 streams, 2 chunks of 500 in flight each',
      'decisions/s',
      { kind: 'check-stream', params: { target: TARGET, keys: uniform(4), chunk: 500, chunksPerStream: 2 } satisfies StreamCheckParams },
      8,
    );
  } finally {
    await generators?.stop();
    child.kill('SIGTERM');
    await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }

  // Each row against the no-op of its round and loop (batch and stream: the last closed-loop one).
  const noopOf = (r: Row) =>
    rows.filter((n) => n.workload.startsWith('Health/Check') && (r.round === undefined ? !n.open : n.round === r.round && n.open === r.open)).at(-1)!;
  const lines = [
    '## gRPC floor: the check methods on a server that does nothing else',
    '',
    `Run ${new Date().toISOString()}: \`npm run bench:grpc-floor -- ${process.argv.slice(2).join(' ')}\` (bench/grpc-floor.ts, bench/grpc-floor-server.ts).`,
    ...machineInfo(),
    `- Machine load before the run: ${load === null ? '?' : `${Math.round(load)}% of one core`}. 2 load-generator processes (the jobs of bench:checks, every answer verified); windows of ${WINDOW_MS / 1000} s after ${WARMUP_MS / 1000} s of warm-up.`,
    '',
    '| Round | Workload | Load | Rate | vs no-op | p50 | p99 | p99 vs no-op | Server CPU per op | vs no-op | Generators CPU per op | CPU, % of a core: generators / server | Notes |',
    '|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|',
  ];
  const cpuRatios: number[] = [];
  const rateRatios: number[] = [];
  const p99Ratios: number[] = [];
  for (const r of rows) {
    const noop = noopOf(r);
    const isNoop = r === noop;
    const server = cpuPerOpUs(r.m, 'server');
    const noopCpu = cpuPerOpUs(noop.m, 'server');
    const gen = cpuPerOpUs(r.m, 'generators');
    const unary = r.unit === 'calls/s';
    if (unary && !isNoop && !r.open && server !== null && noopCpu !== null) {
      cpuRatios.push(server / noopCpu);
      rateRatios.push(r.m.rate / noop.m.rate);
    }
    if (unary && !isNoop && r.open) p99Ratios.push(r.m.latency.p99Ms / noop.m.latency.p99Ms);
    lines.push(
      [
        '',
        r.round ?? '–',
        r.workload,
        r.load,
        `${formatRate(r.m.rate)} ${r.unit}`,
        isNoop || !unary || r.open ? '–' : `${(r.m.rate / noop.m.rate).toFixed(2)}x`,
        formatMs(r.m.latency.p50Ms),
        formatMs(r.m.latency.p99Ms),
        isNoop || !r.open ? '–' : `${(r.m.latency.p99Ms / noop.m.latency.p99Ms).toFixed(2)}x`,
        server === null ? '?' : `${server.toFixed(1)} µs`,
        isNoop || server === null || noopCpu === null ? '–' : `${(server / noopCpu).toFixed(2)}x`,
        gen === null ? '?' : `${gen.toFixed(1)} µs`,
        `${pct(r.m.cpu.generators, r.m.cpu.seconds)} / ${pct(r.m.cpu.server, r.m.cpu.seconds)}`,
        r.open ? `generators started calls late by at most ${(r.m.maxima.lateMs ?? 0).toFixed(1)} ms (${formatRate(r.m.counters.lateOver5ms ?? 0)} calls > 5 ms late)` : '',
        '',
      ].join(' | ').trim(),
    );
  }
  const range = (v: number[]) => `median ${median(v).toFixed(2)}x (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)}x over ${v.length} round${v.length === 1 ? '' : 's'})`;
  lines.push(
    '',
    `- Floor CheckConsent vs Health/Check: server CPU per call ${range(cpuRatios)}; rate ${range(rateRatios)}; p99 in open loop at half the check's rate ${range(p99Ratios)}.`,
  );
  lines.push(
    '',
    '- Server CPU per op: the floor server\'s CPU time over the window / calls (unary) or decisions (batch, stream) completed in it; generators likewise, summed over both processes.',
  );
  const report = `${lines.join('\n')}\n`;
  process.stdout.write(report);
  if (out) writeFileSync(out, report);
}

main().catch((err) => {
  log(`grpc-floor failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
