import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of the three processes involved (load generator, server, database), per workload.
 * On a small machine they compete for the same cores; without these figures a throughput number
 * cannot say whether the server, the database or the load generator was the limit.
 * Linux only (reads /proc); elsewhere the figures are simply absent.
 */

/** Busy CPU time so far per process, and of the whole machine, in seconds. */
export interface CpuSample {
  client: number;
  server: number | null;
  database: number | null;
  machine: number | null;
}

/** CPU use over an interval, in percent of one core (200% = two cores busy). */
export interface CpuUsage {
  client: number;
  server: number | null;
  database: number | null;
  /** Everything else on the machine (other people's builds and tests, the OS). */
  other: number | null;
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ; 100 on every mainstream Linux build.

export class CpuMeter {
  constructor(
    private readonly serverPid: number | undefined,
    private readonly databasePid: number | null,
  ) {}

  sample(): CpuSample {
    const own = process.cpuUsage();
    return {
      client: (own.user + own.system) / 1e6,
      server: this.serverPid === undefined ? null : procCpuSeconds(this.serverPid),
      database: this.databasePid === null ? null : procCpuSeconds(this.databasePid),
      machine: machineBusySeconds(),
    };
  }

  /** Usage between two samples taken `seconds` apart. */
  static usage(before: CpuSample, after: CpuSample, seconds: number): CpuUsage {
    const pct = (a: number | null, b: number | null) => (a === null || b === null || seconds <= 0 ? null : ((b - a) / seconds) * 100);
    const client = pct(before.client, after.client) ?? 0;
    const server = pct(before.server, after.server);
    const database = pct(before.database, after.database);
    const machine = pct(before.machine, after.machine);
    const other = machine === null ? null : Math.max(0, machine - client - (server ?? 0) - (database ?? 0));
    return { client, server, database, other };
  }
}

/** utime + stime of a process from /proc/<pid>/stat, in seconds; null if unreadable. */
export function procCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLOCK_TICKS_PER_SECOND : null;
  } catch {
    return null;
  }
}

/** The pid of the local MariaDB/MySQL server process, if one runs on this machine and /proc is readable. */
export function findDatabasePid(): number | null {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
        if (comm === 'mariadbd' || comm === 'mysqld') return Number(entry);
      } catch {
        // The process ended or is not ours to read.
      }
    }
  } catch {
    // No /proc.
  }
  return null;
}

export function formatCpu(usage: CpuUsage | undefined): string {
  if (!usage) return '';
  const parts = [`client ${Math.round(usage.client)}%`];
  if (usage.server !== null) parts.push(`server ${Math.round(usage.server)}%`);
  if (usage.database !== null) parts.push(`db ${Math.round(usage.database)}%`);
  if (usage.other !== null) parts.push(`other ${Math.round(usage.other)}%`);
  return parts.join(', ');
}

/** Busy time of all CPUs together from /proc/stat (everything but idle and iowait), in seconds. */
export function machineBusySeconds(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = ticks.reduce((a, b) => a + b, 0);
    return (total - ticks[3] - ticks[4]) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/**
 * CPU used by the whole machine over `ms` while the benchmark itself is idle, in percent of one
 * core; null without /proc. Other work on a small machine (a build, a test run) takes cores from
 * the server under test, so the report states how busy the machine was before each run.
 */
export async function backgroundLoad(ms: number): Promise<number | null> {
  const before = machineBusySeconds();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = machineBusySeconds();
  return before === null || after === null ? null : ((after - before) / (ms / 1000)) * 100;
}

/**
 * CPU of the processes of a multi-process benchmark: the server, the database server, any number
 * of load-generator processes, and the benchmark's own (coordinating) process; "other" is what
 * the rest of the machine used. Figures are CPU seconds over an interval, so a caller can divide
 * them by the operations completed (CPU per operation) or by the interval (share of a core).
 */
export interface ProcessGroupSample {
  /** process.hrtime in seconds, when the sample was taken. */
  at: number;
  own: number;
  server: number | null;
  database: number | null;
  generators: Array<number | null>;
  machine: number | null;
}

/** CPU seconds used by each party between two samples, and the interval's length. */
export interface ProcessGroupUsage {
  seconds: number;
  own: number;
  server: number | null;
  database: number | null;
  /** All load generators together; null if any of them could not be read. */
  generators: number | null;
  other: number | null;
}

export class ProcessGroupMeter {
  /** `server` and `database` may be several processes (replicas, cluster nodes): their CPU is summed. */
  constructor(private readonly pids: { server?: number | number[]; database?: number | number[] | null; generators: number[] }) {}

  sample(): ProcessGroupSample {
    const own = process.cpuUsage();
    return {
      at: Number(process.hrtime.bigint()) / 1e9,
      own: (own.user + own.system) / 1e6,
      server: summedCpuSeconds(this.pids.server),
      database: summedCpuSeconds(this.pids.database),
      generators: this.pids.generators.map(procCpuSeconds),
      machine: machineBusySeconds(),
    };
  }

  static usage(before: ProcessGroupSample, after: ProcessGroupSample): ProcessGroupUsage {
    const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : Math.max(0, b - a));
    const perGenerator = before.generators.map((b, i) => diff(b, after.generators[i] ?? null));
    const generators = perGenerator.some((g) => g === null) ? null : perGenerator.reduce<number>((sum, g) => sum + (g ?? 0), 0);
    const own = Math.max(0, after.own - before.own);
    const server = diff(before.server, after.server);
    const database = diff(before.database, after.database);
    const machine = diff(before.machine, after.machine);
    const other = machine === null ? null : Math.max(0, machine - own - (server ?? 0) - (database ?? 0) - (generators ?? 0));
    return { seconds: after.at - before.at, own, server, database, generators, other };
  }
}

/** CPU seconds of one process or the sum over several; null if none is given or any is unreadable. */
function summedCpuSeconds(pids: number | number[] | null | undefined): number | null {
  if (pids == null) return null;
  const all = typeof pids === 'number' ? [pids] : pids;
  if (all.length === 0) return null;
  let sum = 0;
  for (const pid of all) {
    const seconds = procCpuSeconds(pid);
    if (seconds === null) return null;
    sum += seconds;
  }
  return sum;
}
