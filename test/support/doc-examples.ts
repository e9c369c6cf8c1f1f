import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './processes';

/**
 * Shell examples of the docs, run as written. A fenced ```sh block is an example when the line
 * before it is a marker comment (invisible when the Markdown is rendered):
 *
 *   <!-- example: try-it -->                        run by a test, under this name
 *   <!-- example: tls, not run: needs your certificates -->   shown only, with the reason
 */
export interface DocExample {
  name: string;
  /** Why it is not run; undefined for an example that runs. */
  notRun?: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
}

const MARKER = /^<!-- example: ([a-z0-9-]+)(?:, not run: (.+?))? -->$/;

export interface DocBlocks {
  examples: DocExample[];
  /** Opening lines of ```sh blocks without a marker. */
  unmarked: number[];
}

/** The shell blocks of a Markdown file under ROOT: the marked examples and the unmarked blocks. */
export function docBlocks(file: string): DocBlocks {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const examples: DocExample[] = [];
  const unmarked: number[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash)\s*$/.test(lines[i])) {
      if (/^```/.test(lines[i])) {
        // Skip other fenced blocks whole, so their content is never taken for a fence.
        for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++);
      }
      continue;
    }
    const marker = MARKER.exec(lines[i - 1] ?? '');
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    if (!marker) unmarked.push(start + 1);
    else examples.push({ name: marker[1], notRun: marker[2], code: body.join('\n'), line: start + 1 });
  }
  return { examples, unmarked };
}

/** The named example of a file (it must exist and be marked to run). */
export function docExample(file: string, name: string): DocExample {
  const example = docBlocks(file).examples.find((e) => e.name === name);
  if (!example) throw new Error(`${file} has no example marked <!-- example: ${name} -->`);
  if (example.notRun) throw new Error(`${file}: example ${name} is marked not run`);
  return example;
}

/**
 * What the shell provides beyond the documented commands. `npm ci` and `npm run build` are done
 * by the test beforehand (builtCheckout); `npm start` starts `node dist/src/main.js` (what it runs
 * after building) in the background and returns once the port answers, as a reader would wait
 * for the "listening" line before the next command.
 */
const PRELUDE = `
set -e -o pipefail
__wait_for_server() {
  for __i in $(seq 1 300); do
    if ! kill -0 "$1" 2>/dev/null; then echo "the server exited before serving; its log:" >&2; tail -c 4000 "$SERVER_LOG" >&2; return 1; fi
    if node -e 'require("net").connect(+process.argv[1], "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))' "\${PORT:-50051}"; then return 0; fi
    sleep 0.2
  done
  echo "the server did not listen within 60 s" >&2
  return 1
}
npm() {
  case "$1 $2" in
    "ci "*) echo "(npm ci: dependencies installed by the test)" ;;
    "run build") echo "(npm run build: built by the test)" ;;
    "start "*)
      node dist/src/main.js >> "$SERVER_LOG" 2>&1 &
      echo $! >> "$SERVER_PIDS"
      __wait_for_server $! ;;
    "run consentctl") shift 2; if [ "$1" = "--" ]; then shift; fi; node dist/src/cli/consentctl.js "$@" ;;
    *) echo "npm $*: not available to doc examples" >&2; return 1 ;;
  esac
}
`;

export interface BlockResult {
  status: number;
  out: string;
  err: string;
}

/**
 * One bash session in which examples run one after another, as a reader pastes them into one
 * terminal: variables set by one block are seen by the next. `set -e -o pipefail`: a command
 * that fails ends the session, unless the example handles it (`|| echo ...`).
 */
export class ShellSession {
  private readonly bash: ChildProcessWithoutNullStreams;
  private out = '';
  private err = '';
  private exited: number | null = null;
  private readonly waiters: Array<() => void> = [];
  readonly serverLog: string;
  readonly serverPids: string;

  constructor(
    readonly cwd: string,
    env: Record<string, string>,
  ) {
    this.serverLog = path.join(cwd, 'tmp', 'server.log');
    this.serverPids = path.join(cwd, 'tmp', 'server.pids');
    this.bash = spawn('bash', ['--noprofile', '--norc'], { cwd, env: { ...env, SERVER_LOG: this.serverLog, SERVER_PIDS: this.serverPids } });
    this.bash.stdout.on('data', (c: Buffer) => {
      this.out += c.toString('utf8');
      this.wake();
    });
    this.bash.stderr.on('data', (c: Buffer) => {
      this.err += c.toString('utf8');
      this.wake();
    });
    this.bash.on('exit', (code) => {
      this.exited = code ?? 1;
      this.wake();
    });
    this.bash.stdin.write(PRELUDE + '\n');
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Runs one block; rejects with everything it printed when it fails or ends the session. */
  async run(code: string, label: string, timeoutMs = 180_000): Promise<BlockResult> {
    if (this.exited !== null) throw new Error(`the shell has ended (exit ${this.exited}) before ${label}`);
    const end = `__END_${randomBytes(6).toString('hex')}__`;
    const [outStart, errStart] = [this.out.length, this.err.length];
    this.bash.stdin.write(`${code}\necho "${end} $?"\necho "${end}" >&2\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = this.out.slice(outStart);
      const err = this.err.slice(errStart);
      const done = new RegExp(`${end} (\\d+)\\n`).exec(out);
      if (done && err.includes(`${end}\n`)) {
        return { status: Number(done[1]), out: out.slice(0, done.index), err: err.slice(0, err.indexOf(`${end}\n`)) };
      }
      if (this.exited !== null || Date.now() > deadline) {
        throw new Error(
          `example ${label} ${this.exited !== null ? `ended the shell (exit ${this.exited})` : `did not finish within ${timeoutMs} ms`}:\n` +
            `--- stdout ---\n${out}\n--- stderr ---\n${err}\n--- server log (last 3000 characters) ---\n${this.serverLogTail()}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 500);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Everything the servers `npm start` started have logged. */
  serverLogText(): string {
    try {
      return readFileSync(this.serverLog, 'utf8');
    } catch {
      return '';
    }
  }

  serverLogTail(): string {
    return this.serverLogText().slice(-3000) || '(none)';
  }

  /** Stops every server `npm start` started (SIGTERM, then SIGKILL), and waits until they are gone. */
  async stopServers(): Promise<void> {
    let pids: number[];
    try {
      pids = readFileSync(this.serverPids, 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return;
    }
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
  }

  async close(): Promise<void> {
    await this.stopServers();
    if (this.exited === null) {
      this.bash.stdin.end('exit 0\n');
      await new Promise<void>((resolve) => (this.exited !== null ? resolve() : this.bash.once('exit', () => resolve())));
    }
  }
}
