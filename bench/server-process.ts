import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { createClients, healthCheck } from './clients';

/**
 * The server under test as a separate OS process (`node dist/src/main.js`), so the load
 * generator and the server do not share an event loop or a garbage collector: what is measured
 * is what a real client on the same host would see.
 */

export const PROJECT_ROOT = path.resolve(__dirname, '..');
const MAIN_JS = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');

/** The Node.js flags `npm start` runs the server with (package.json "start"): the bench measures that server. */
export function startFlags(root = PROJECT_ROOT): string[] {
  const start: string = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).scripts.start;
  const words = start.trim().split(/\s+/);
  if (words[0] !== 'node' || words[words.length - 1] !== 'dist/src/main.js') throw new Error(`unexpected start script: ${start}`);
  return words.slice(1, -1);
}
const HOST = '127.0.0.1';

/**
 * The benchmarked server's LOG_LEVEL: `warn` unless BENCH_SERVER_LOG_LEVEL says otherwise. At
 * `info` (the service's default) every call writes a log line; `BENCH_SERVER_LOG_LEVEL=info`
 * measures the service as `npm start` runs it.
 */
export const SERVER_LOG_LEVEL = serverLogLevel(process.env.BENCH_SERVER_LOG_LEVEL);

function serverLogLevel(given: string | undefined): string {
  if (given === undefined || given === '') return 'warn';
  if (!['error', 'warn', 'info', 'debug'].includes(given)) {
    process.stderr.write(`bench: BENCH_SERVER_LOG_LEVEL must be error, warn, info or debug (got "${given}")\n`);
    process.exit(2);
  }
  return given;
}

export type DatabaseKind = 'sqlite' | 'mariadb';

/**
 * MariaDB of the benchmark: local root without password, a database of its own that is dropped
 * and recreated. The service keeps wrapped keys in a second database, `<name>_keys` (created at
 * start): it is dropped too, or keys from an earlier run (wrapped under that run's development
 * root key) would make every call of this run fail UNAVAILABLE.
 */
export const MARIADB = { host: HOST, port: 3306, user: 'root', database: 'consent_bench', keyDatabase: 'consent_bench_keys' } as const;
const MARIADB_URL = `mysql://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}/${MARIADB.database}`;

/** The URL of a benchmark database on the local MariaDB (a benchmark of its own may use its own name). */
export function mariadbUrl(database: string = MARIADB.database): string {
  return `mysql://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}/${database}`;
}

/** Raised when a database cannot be prepared; the caller skips that database. */
export class DatabaseUnavailableError extends Error {}

/**
 * Builds dist/ when dist/src/main.js is missing or older than any source it is compiled from.
 * tsc rewrites every output on each build, so main.js's mtime is the time of the last build.
 */
export function ensureBuilt(log: (line: string) => void): void {
  const built = mtimeOrZero(MAIN_JS);
  const newest = Math.max(
    newestMtime(path.join(PROJECT_ROOT, 'src')),
    newestMtime(path.join(PROJECT_ROOT, 'migrations')),
    mtimeOrZero(path.join(PROJECT_ROOT, 'tsconfig.build.json')),
  );
  if (built > 0 && built >= newest) {
    log('dist/ is up to date, not rebuilding');
    return;
  }
  log(built === 0 ? 'dist/src/main.js missing: running npm run build' : 'sources changed since the last build: running npm run build');
  const result = spawnSync('npm', ['run', 'build'], { cwd: PROJECT_ROOT, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`npm run build failed (exit ${result.status ?? result.signal})`);
}

function mtimeOrZero(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function newestMtime(dir: string): number {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(full));
    else if (/\.(ts|binpb|json)$/.test(entry.name)) newest = Math.max(newest, mtimeOrZero(full));
  }
  return newest;
}

/** A free TCP port on 127.0.0.1: bind port 0, read what the OS chose, release it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, HOST, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

/**
 * Drops and recreates the benchmark database (and drops its key store, `<name>_keys`), so every
 * run starts from empty schemas. `database` lets a benchmark use a name of its own.
 */
export async function resetMariaDb(database: string = MARIADB.database): Promise<void> {
  let connection;
  try {
    connection = await mysql.createConnection({ host: MARIADB.host, port: MARIADB.port, user: MARIADB.user, connectTimeout: 3000 });
  } catch (err) {
    throw new DatabaseUnavailableError(`MariaDB at ${MARIADB.host}:${MARIADB.port} is not reachable as ${MARIADB.user}: ${(err as Error).message}`);
  }
  try {
    await connection.query(`DROP DATABASE IF EXISTS \`${database}_keys\``);
    await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
    await connection.query(`CREATE DATABASE \`${database}\``);
  } catch (err) {
    throw new DatabaseUnavailableError(`cannot recreate database ${database}: ${(err as Error).message}`);
  } finally {
    await connection.end().catch(() => undefined);
  }
}

/** Drops the benchmark database and its key store (after a run, unless --keep). */
export async function dropMariaDb(database: string = MARIADB.database): Promise<void> {
  const connection = await mysql.createConnection({ host: MARIADB.host, port: MARIADB.port, user: MARIADB.user, connectTimeout: 3000 });
  try {
    await connection.query(`DROP DATABASE IF EXISTS \`${database}_keys\``);
    await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
  } finally {
    await connection.end().catch(() => undefined);
  }
}

/** Children still running; killed synchronously if the benchmark process exits abruptly. */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export interface ServerProcess {
  address: string;
  pid: number | undefined;
  dataDir: string;
  /** The last lines the server wrote (for error messages). */
  recentOutput(): string;
  /** How the server exited, or null while it runs. */
  exitStatus(): string | null;
  /** SIGTERM, then SIGKILL if it has not exited after a grace period; removes the data folder unless kept. */
  stop(options?: { keepData?: boolean }): Promise<void>;
}

export interface StartOptions {
  database: DatabaseKind;
  /** Echo the server's output. */
  verbose: boolean;
  /** Write a V8 CPU profile of the server to this folder when it exits (slows the server down). */
  profileDir?: string;
  startTimeoutMs?: number;
  /** The MariaDB database to use instead of MARIADB.database (its key store is `<name>_keys`). */
  mariadbDatabase?: string;
  /** Extra environment for the server (e.g. DATABASE_POOL_SIZE). */
  env?: NodeJS.ProcessEnv;
  /** Use this data folder (e.g. one seeded by an earlier run) instead of a fresh one; stop() never removes it. */
  dataDir?: string;
  /** Run the build in this checkout (ROOT/dist/src/main.js) instead of this one's, e.g. a snapshot of a commit. */
  root?: string;
  /** File name of the CPU profile (default server-<database>.cpuprofile). */
  profileName?: string;
}

/** Starts the server on a free port with a fresh data folder and waits until it answers health checks. */
export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const port = await freePort();
  const dataDir = options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), `consent-bench-${options.database}-`));
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Nothing from the caller's environment may point the server at another database or key set.
  for (const key of ['CONFIG_FILE', 'DATABASE_URL', 'KEYSTORE_URL', 'ROOT_KEYS_JSON', 'ROOT_KEYS_FILE', 'RUN_MIGRATIONS', 'AUTH_MODE']) delete env[key];
  Object.assign(env, { PORT: String(port), BIND_ADDRESS: HOST, DATA_DIR: dataDir, LOG_LEVEL: SERVER_LOG_LEVEL });
  if (options.database === 'mariadb') env.DATABASE_URL = options.mariadbDatabase ? mariadbUrl(options.mariadbDatabase) : MARIADB_URL;
  Object.assign(env, options.env ?? {});

  const nodeArgs = options.profileDir
    ? ['--cpu-prof', '--cpu-prof-dir', options.profileDir, '--cpu-prof-name', options.profileName ?? `server-${options.database}.cpuprofile`]
    : [];
  const root = options.root ?? PROJECT_ROOT;
  const child = spawn(process.execPath, [...startFlags(PROJECT_ROOT), ...nodeArgs, path.join(root, 'dist', 'src', 'main.js')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  const output: string[] = [];
  const capture = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      output.push(line);
      if (output.length > 100) output.shift();
      if (options.verbose) process.stderr.write(`  [server] ${line}\n`);
    }
  };
  child.stdout?.on('data', capture);
  child.stderr?.on('data', capture);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      liveChildren.delete(child);
      resolve();
    });
  });

  const address = `${HOST}:${port}`;
  const server: ServerProcess = {
    address,
    pid: child.pid,
    dataDir,
    recentOutput: () => output.slice(-30).join('\n'),
    exitStatus: () => (exit ? `exit code ${exit.code}, signal ${exit.signal}` : null),
    async stop(stopOptions = {}) {
      if (!exit) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
        await exited;
        clearTimeout(timer);
      }
      if (!stopOptions.keepData && !options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };

  try {
    await waitForHealth(address, () => exit, options.startTimeoutMs ?? 60_000);
  } catch (err) {
    await server.stop();
    throw new Error(`${(err as Error).message}\n--- server output ---\n${server.recentOutput()}`);
  }
  return server;
}

/** Polls grpc.health.v1.Health/Check until SERVING; fails early if the child exits. */
async function waitForHealth(
  address: string,
  exitStatus: () => { code: number | null; signal: NodeJS.Signals | null } | null,
  timeoutMs: number,
): Promise<void> {
  const clients = createClients(address);
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const exit = exitStatus();
      if (exit) throw new Error(`the server exited during start-up (code ${exit.code}, signal ${exit.signal})`);
      try {
        if (await healthCheck(clients.health, 1000)) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`the server did not answer health checks within ${timeoutMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    clients.close();
  }
}
