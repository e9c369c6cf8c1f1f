import { ChildProcess, spawn } from 'node:child_process';
import { credentials, Metadata } from '@grpc/grpc-js';
import { HealthClient, HealthCheckResponse_ServingStatus } from '../../src/gen/grpc/health/v1/health';
import { TestDatabase } from './databases';
import { freePort, ROOT, TSX } from './processes';

/**
 * The service as its own process (`src/main.ts`, as `npm start` runs it), on a test database:
 * for tests where the process itself is under test (a crash must be seen as one, not caught by
 * mocha), several replicas, or signals.
 */
export interface ServerProcess {
  child: ChildProcess;
  port: number;
  address: string;
  /** Everything the process wrote to stdout and stderr so far (JSON log lines). */
  output(): string;
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  exited: Promise<number | string>;
  /** Whether the process has ended. */
  hasExited(): boolean;
  /** grpc.health.v1 Check of the whole server ('' service): SERVING, NOT_SERVING, or 'UNREACHABLE'. */
  health(timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface ServerProcessOptions {
  /** Extra environment, on top of the database's and the defaults below. */
  env?: Record<string, string>;
  /** Resolve only once health answers SERVING (default true); false returns at once. */
  waitForServing?: boolean;
  startTimeoutMs?: number;
  port?: number;
}

/**
 * The environment that points a server process at `db`. The development root key is made in (or
 * read from) its data folder; processes started at the same moment should get ROOT_KEYS_FILE.
 */
export function databaseEnv(db: TestDatabase): Record<string, string> {
  const env: Record<string, string> = { DATA_DIR: db.dataDir };
  if (db.config.kind === 'mysql') env.DATABASE_URL = db.config.url;
  else env.DATABASE_URL = `sqlite:${db.config.file}`;
  if (db.keyStore.kind === 'mysql') env.KEYSTORE_URL = db.keyStore.url;
  else env.KEYSTORE_URL = `sqlite:${db.keyStore.file}`;
  return env;
}

export async function startServerProcess(db: TestDatabase, options: ServerProcessOptions = {}): Promise<ServerProcess> {
  const port = options.port ?? (await freePort());
  const child = spawn(TSX[0], [TSX[1], 'src/main.ts'], {
    cwd: ROOT,
    // No drain period on SIGTERM unless a test asks for one (tests stop many servers).
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', SHUTDOWN_DRAIN_MS: '0', ...databaseEnv(db), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  child.stderr!.on('data', (c: Buffer) => chunks.push(c));
  let ended = false;
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      ended = true;
      resolve(code ?? signal ?? 'unknown');
    });
  });
  const address = `127.0.0.1:${port}`;
  const health = async (timeoutMs = 2000): Promise<string> => {
    const client = new HealthClient(address, credentials.createInsecure());
    try {
      return await new Promise<string>((resolve) => {
        client.check({ service: '' }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
          resolve(err ? 'UNREACHABLE' : HealthCheckResponse_ServingStatus[res.status]),
        );
      });
    } finally {
      client.close();
    }
  };
  const proc: ServerProcess = {
    child,
    port,
    address,
    output: () => Buffer.concat(chunks).toString('utf8'),
    exited,
    hasExited: () => ended,
    health,
    async stop(graceMs = 10_000) {
      if (ended) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  if (options.waitForServing === false) return proc;
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  for (;;) {
    if (ended) throw new Error(`the server process exited (${String(await exited)}) before serving:\n${proc.output().slice(-4000)}`);
    if ((await health(1000)) === 'SERVING') return proc;
    if (Date.now() > deadline) {
      await proc.stop(1000);
      throw new Error(`the server process did not serve within ${options.startTimeoutMs ?? 60_000} ms:\n${proc.output().slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
