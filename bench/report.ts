import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { formatCpu } from './cpu';
import { PROJECT_ROOT } from './server-process';
import { formatMs, formatRate } from './stats';
import { WorkloadResult } from './workloads';

/**
 * Turns results into the markdown the benchmark prints and writes with --out: machine info,
 * one table per database, and the issue's goals with where each database stands. Numbers
 * without the machine they were measured on are meaningless, so the two always travel together.
 */

/** The goals of the issue, as numbers. */
export const GOALS = {
  checkVsNoOp: 0.8,
  streamDecisionsPerSecond: 100_000,
  p99AtHalfLoadMs: 5,
} as const;

/** Everything measured on one database. */
export interface DatabaseReport {
  database: string;
  /** "SQLite 3.50.2 (better-sqlite3 12.11.1)", "MariaDB 10.11.19". */
  version: string;
  /** CPU the machine used while idle just before this database's run ("3% of one core"). */
  background: string;
  seed: WorkloadResult;
  noOp: WorkloadResult;
  check: WorkloadResult;
  batch: WorkloadResult;
  stream: WorkloadResult;
  halfLoad: WorkloadResult;
  /** The no-op RPC at the half-load rate: the latency floor of transport, load generator and machine. */
  control: WorkloadResult;
}

export function machineInfo(codeLabel: string | null = null): string[] {
  const cpus = os.cpus();
  const git = (args: string[]) => {
    const r = spawnSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : '';
  };
  const commit = git(['rev-parse', '--short', 'HEAD']);
  const dirty = git(['status', '--porcelain', '--', 'src', 'migrations']) !== '';
  return [
    `- CPU: ${cpus[0]?.model ?? 'unknown'}, ${cpus.length} logical cores`,
    `- Memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- OS: ${os.type()} ${os.release()} (${os.arch()})`,
    `- Node.js: ${process.version}`,
    `- Code: ${codeLabel ?? (commit ? `commit ${commit}${dirty ? ' with uncommitted changes in src/ or migrations/' : ''}` : 'not a git checkout')}`,
    `- Load generator, server and database run on this one machine and share its cores.`,
  ];
}

export function renderDatabase(report: DatabaseReport): string[] {
  const rows = [report.seed, report.noOp, report.check, report.batch, report.stream, report.halfLoad, report.control];
  const lines = [
    `### ${report.database}`,
    '',
    `${report.version}. Machine load just before the run (benchmark idle): ${report.background}.`,
    '',
    '| Workload | Load | Calls | Time | Throughput | p50 | p99 | Server CPU per op | CPU (% of one core) | Notes |',
    '|---|---|--:|--:|--:|--:|--:|--:|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${r.load} | ${r.calls.toLocaleString('en-US')} | ${r.seconds.toFixed(1)} s | ${formatRate(r.throughput)} ${r.unit} | ${
        r.latency ? formatMs(r.latency.p50Ms) : '–'
      } | ${r.latency ? formatMs(r.latency.p99Ms) : '–'} | ${formatServerCpuPerOp(r)} | ${formatCpu(r.cpu)} | ${r.notes.join('; ')} |`,
    );
  }
  const ratio = report.check.throughput / report.noOp.throughput;
  lines.push(
    '',
    `- CheckConsent / no-op RPC throughput: **${ratio.toFixed(2)}x** (goal >= ${GOALS.checkVsNoOp}x)`,
    `- CheckConsentBatch decisions/s / unary CheckConsent calls/s: ${(report.batch.throughput / report.check.throughput).toFixed(1)}x`,
    `- StreamCheckConsent decisions/s / unary CheckConsent calls/s: ${(report.stream.throughput / report.check.throughput).toFixed(1)}x`,
    '',
  );
  return lines;
}

/**
 * Server CPU time per operation (per write, call or decision), in microseconds: what the server
 * process spends on one, independent of how fast the load generator could drive it.
 */
export function serverCpuPerOpUs(r: WorkloadResult): number | null {
  if (!r.cpu || r.cpu.server === null || r.items === 0) return null;
  return ((r.cpu.server / 100) * r.seconds * 1e6) / r.items;
}

function formatServerCpuPerOp(r: WorkloadResult): string {
  const us = serverCpuPerOpUs(r);
  return us === null ? '–' : `${us < 10 ? us.toFixed(1) : Math.round(us)} µs`;
}

/** The issue's goals against every database that ran. */
export function renderGoals(reports: DatabaseReport[]): string[] {
  const verdict = (met: boolean) => (met ? 'met' : '**missed**');
  const header = `| Goal | Target | ${reports.map((r) => r.database).join(' | ')} |`;
  const rule = `|---|---|${reports.map(() => '---').join('|')}|`;
  const ratioRow = reports.map((r) => {
    const ratio = r.check.throughput / r.noOp.throughput;
    return `${ratio.toFixed(2)}x (${formatRate(r.check.throughput)} vs ${formatRate(r.noOp.throughput)} calls/s): ${verdict(ratio >= GOALS.checkVsNoOp)}`;
  });
  const streamRow = reports.map(
    (r) => `${formatRate(r.stream.throughput)}/s: ${verdict(r.stream.throughput >= GOALS.streamDecisionsPerSecond)}`,
  );
  const p99Row = reports.map((r) => {
    const p99 = r.halfLoad.latency?.p99Ms ?? NaN;
    const control = r.control.latency?.p99Ms ?? NaN;
    return `${formatMs(p99)} at ${formatRate(r.halfLoad.throughput)}/s (no-op at the same rate: ${formatMs(control)}): ${verdict(p99 < GOALS.p99AtHalfLoadMs)}`;
  });
  return [
    header,
    rule,
    `| CheckConsent throughput vs no-op RPC (unary, same concurrency) | >= ${GOALS.checkVsNoOp}x | ${ratioRow.join(' | ')} |`,
    `| StreamCheckConsent decisions/s | >= ${GOALS.streamDecisionsPerSecond.toLocaleString('en-US')} | ${streamRow.join(' | ')} |`,
    `| CheckConsent p99 at 50% of the measured unary maximum | < ${GOALS.p99AtHalfLoadMs} ms | ${p99Row.join(' | ')} |`,
    '',
  ];
}

export function renderReport(options: {
  reports: DatabaseReport[];
  skipped: string[];
  failed: string[];
  settings: string[];
  quick: boolean;
  codeLabel: string | null;
}): string {
  const lines = [
    `## Consent Ledger benchmark${options.quick ? ' (quick smoke run: small counts, not representative)' : ''}`,
    '',
    `Run ${new Date().toISOString()}.`,
    '',
    ...machineInfo(options.codeLabel),
    '',
    'Settings:',
    '',
    ...options.settings.map((s) => `- ${s}`),
    '',
  ];
  for (const report of options.reports) lines.push(...renderDatabase(report));
  if (options.reports.length > 0) lines.push('### Goals', '', ...renderGoals(options.reports));
  for (const s of options.skipped) lines.push(`- Skipped: ${s}`);
  for (const f of options.failed) lines.push(`- FAILED: ${f}`);
  return lines.join('\n') + '\n';
}

/** One row of a "measured against a baseline of the same run" table (bench:keys, bench:audit). */
export interface RatioRow {
  workload: string;
  baseline: string;
  measured: string;
  ratio: number;
  goal: string;
}
