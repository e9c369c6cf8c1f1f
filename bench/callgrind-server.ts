import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT, startFlags } from './server-process';

/** Instructions a server executed in one window: all threads, and the main thread's (0 unless counted apart). */
export interface InstructionCount {
  all: number;
  main: number;
}

/**
 * The built server (`root`/dist/src/main.js) under valgrind's callgrind, and how to cut its
 * instruction count at the edges of a window (`callgrind_control --dump`), for
 * bench/check-instructions.ts and bench/write-instructions.ts.
 */
export class CountedServer {
  private dumps = 0;
  private readonly child: ChildProcess;

  /**
   * `separateThreads`: count each thread apart (the main thread runs the JavaScript and the
   * scavenges it waits for; V8's helper threads vary more from run to run), so `main` is known.
   */
  constructor(
    readonly address: string,
    private readonly outFile: string,
    root: string,
    env: NodeJS.ProcessEnv,
    private readonly separateThreads = false,
  ) {
    const args = ['--tool=callgrind', ...(separateThreads ? ['--separate-threads=yes'] : []), `--callgrind-out-file=${outFile}`, process.execPath, ...startFlags(PROJECT_ROOT), path.join(root, 'dist', 'src', 'main.js')];
    this.child = spawn('valgrind', args, { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr?.on('data', () => undefined);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Instructions executed since the previous cut; the window's files are copied to `keep` as NAME[-thread].callgrind. */
  cut(keep?: { dir: string; name: string }): InstructionCount {
    const r = spawnSync('callgrind_control', ['--dump', String(this.pid)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`callgrind_control failed: ${r.stderr}`);
    this.dumps++;
    const dir = path.dirname(this.outFile);
    const base = `${path.basename(this.outFile)}.${this.dumps}`;
    // One file per dump, or with separate threads one per thread: BASE-01 (the main thread), BASE-02, ...
    const files = this.separateThreads ? readdirSync(dir).filter((f) => f.startsWith(`${base}-`)) : [base];
    let all = 0;
    let main = 0;
    for (const file of files) {
      const summary = /^summary: (\d+)/m.exec(readFileSync(path.join(dir, file), 'utf8'));
      if (!summary) continue;
      all += Number(summary[1]);
      if (file.endsWith('-01')) main = Number(summary[1]);
      if (keep) copyFileSync(path.join(dir, file), path.join(keep.dir, `${keep.name}${file.slice(base.length)}.callgrind`));
    }
    if (all === 0) throw new Error(`no counts for dump ${this.dumps}`);
    return { all, main };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill('SIGTERM');
    await new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 60_000);
      this.child.once('exit', () => resolve(clearTimeout(timer)));
    });
  }
}

/** Runs `call` `total` times with `inFlight` at once; the window's length in ms. */
export async function runCalls(total: number, inFlight: number, call: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: Math.min(inFlight, total) }, async () => {
      while (next < total) await call(next++);
    }),
  );
  return Date.now() - started;
}
