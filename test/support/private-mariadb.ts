import { ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { freePort } from './processes';

/**
 * A MariaDB server of the test's own, in a temporary directory on a free loopback port: for tests
 * that do to the server what must not happen to the shared one (stop it with SIGSTOP, kill it).
 * Root has no password and reaches it over TCP only on 127.0.0.1.
 */
export interface PrivateMariaDb {
  port: number;
  /** mysql://root@127.0.0.1:<port> (append /<database>). */
  url: string;
  /** Creates a database with the binary collation the service expects. */
  createDatabase(name: string): Promise<void>;
  /** SIGSTOP: the server keeps its sockets open and answers nothing, like a hung host. */
  pause(): void;
  /** SIGCONT: the server carries on where it stopped. */
  resume(): void;
  /** Stops the server (resuming it first if paused) and removes its directory. */
  stop(): Promise<void>;
}

const running = new Set<{ child: ChildProcess; dir: string }>();

// Whatever happens to the test run, no paused or orphaned server and no data directory stays behind.
process.on('exit', () => {
  for (const server of running) {
    server.child.kill('SIGCONT');
    server.child.kill('SIGKILL');
    rmSync(server.dir, { recursive: true, force: true });
  }
});

function binary(...names: string[]): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/usr/local/mysql/bin']) {
    for (const name of names) if (existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  throw new Error(`none of ${names.join(', ')} is installed: the private MariaDB server needs the MariaDB server package`);
}

function run(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${path.basename(file)} failed: ${err.message}\n${stdout}\n${stderr}`)) : resolve(),
    );
  });
}

export async function startPrivateMariaDb(): Promise<PrivateMariaDb> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'consent-private-mariadb-'));
  const datadir = path.join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  // mariadbd refuses to run as root unless told to; as another user it runs as that user.
  const user = asRoot ? ['--user=root'] : [];
  try {
    await run(binary('mariadb-install-db', 'mysql_install_db'), [
      '--no-defaults',
      `--datadir=${datadir}`,
      ...user,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--skip-name-resolve',
      '--force',
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const port = await freePort();
  const child = spawn(
    binary('mariadbd', 'mysqld'),
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      `--socket=${path.join(dir, 'mariadb.sock')}`,
      `--pid-file=${path.join(dir, 'mariadb.pid')}`,
      `--log-error=${path.join(dir, 'error.log')}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      ...user,
      '--skip-name-resolve',
      '--skip-log-bin',
      '--innodb-buffer-pool-size=32M',
      '--max-connections=200',
    ],
    { stdio: 'ignore' },
  );
  const entry = { child, dir };
  running.add(entry);
  let exited = false;
  const gone = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const url = `mysql://root@127.0.0.1:${port}`;

  const stop = async () => {
    if (!exited) {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(kill);
    }
    running.delete(entry);
    rmSync(dir, { recursive: true, force: true });
  };

  const started = Date.now();
  for (;;) {
    try {
      const connection = await mysql.createConnection({ uri: url, connectTimeout: 1000 });
      await connection.end();
      break;
    } catch (err) {
      if (exited || Date.now() - started > 30_000) {
        let log = '';
        try {
          log = readFileSync(path.join(dir, 'error.log'), 'utf8').slice(-3000);
        } catch {
          // no log written
        }
        await stop();
        throw new Error(`the private MariaDB server did not start: ${(err as Error).message}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  return {
    port,
    url,
    async createDatabase(name: string) {
      const connection = await mysql.createConnection(url);
      try {
        await connection.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
      } finally {
        await connection.end();
      }
    },
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    stop,
  };
}
