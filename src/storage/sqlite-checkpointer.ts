import { Worker } from 'node:worker_threads';

/** Where the checkpointer reports trouble: the service's logger (storage does not depend on logging). */
export interface CheckpointerLog {
  warn(message: string, fields: Record<string, unknown>): void;
}

/** How often the checkpointer copies committed WAL pages into the database file. */
export const SQLITE_CHECKPOINT_INTERVAL_MS = 200;

/**
 * The main connection's own automatic checkpoint, in WAL pages (4 KiB each: ~40 MiB), set on every
 * SQLite connection (data-source.ts). SQLite's default, 1,000 pages, made the commit that crossed
 * it copy the WAL into the database file and sync it, inside that COMMIT on the event loop's
 * thread: ~60% of a bulk import's COMMIT time (docs/benchmarks.md, "Import"). With the
 * checkpointer running, the WAL rarely holds this many pages; without it (it failed, or a
 * process without one: migrations, consentctl), the connection still bounds the WAL itself.
 */
export const SQLITE_AUTOCHECKPOINT_FALLBACK_PAGES = 10_000;

/** What the checkpointer has done, for tests and the logs. */
export interface CheckpointStats {
  /** Checkpoints run. */
  runs: number;
  /** Pages in the WAL at the latest run, and how many of them were in the database file after it. */
  walFrames: number;
  checkpointedFrames: number;
  /** Runs that found another connection checkpointing (another process on the same file): harmless. */
  busy: number;
  /** Runs that failed, and whether the worker stopped. */
  failures: number;
  running: boolean;
}

/**
 * The worker's code, evaluated as CommonJS (the service runs from dist/ and, in tests, from
 * TypeScript through tsx: a worker file would need a loader in one of them). Its own connection to
 * the file runs `wal_checkpoint(PASSIVE)` on a timer: PASSIVE never waits for a lock and never
 * blocks readers or the writer; it copies what no reader still needs and syncs as the connection's
 * `synchronous` says (NORMAL, as the service's connection).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
const timer = setInterval(() => {
  try {
    const row = db.pragma('wal_checkpoint(PASSIVE)')[0];
    parentPort.postMessage({ type: 'ran', busy: row.busy, log: row.log, checkpointed: row.checkpointed });
  } catch (err) {
    parentPort.postMessage({ type: 'failed', name: String(err && err.name), code: String(err && err.code), message: String(err && err.message) });
  }
}, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  try { db.close(); } finally { parentPort.close(); }
});
`;

/** A failure is logged at once, then at most this often while it repeats. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * Checkpoints a SQLite database in WAL mode from a worker thread, so that copying committed pages
 * into the database file, and syncing it, happens beside the event loop rather than inside a
 * COMMIT on it (SQLite's automatic checkpoint, which stays as a fallback at a higher threshold:
 * SQLITE_AUTOCHECKPOINT_FALLBACK_PAGES). If the worker cannot open the file or stops, the service
 * goes on and the fallback bounds the WAL; the failure is logged (SQLite's messages name files and
 * error codes, never row values).
 */
export class SqliteCheckpointer {
  readonly stats: CheckpointStats = { runs: 0, walFrames: 0, checkpointedFrames: 0, busy: 0, failures: 0, running: true };
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private stopping = false;
  private lastFailureLoggedAt = -Infinity;

  constructor(
    private readonly file: string,
    private readonly logger: CheckpointerLog,
    intervalMs: number = SQLITE_CHECKPOINT_INTERVAL_MS,
  ) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, driver: require.resolve('better-sqlite3'), intervalMs } });
    // Never what keeps the process alive.
    this.worker.unref();
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.on('message', (message: { type: 'ran'; busy: number; log: number; checkpointed: number } | { type: 'failed'; name: string; code: string; message: string }) => {
      if (message.type === 'ran') {
        this.stats.runs++;
        this.stats.walFrames = message.log;
        this.stats.checkpointedFrames = message.checkpointed;
        if (message.busy) this.stats.busy++;
      } else {
        this.failed(message);
      }
    });
    this.worker.on('error', (err: Error & { code?: string }) => this.failed({ name: err.name, code: String(err.code), message: err.message }));
    this.worker.once('exit', () => {
      this.stats.running = false;
      if (!this.stopping) this.logger.warn('the SQLite checkpointer stopped; the connection checkpoints the WAL itself from now on', { file: this.file });
    });
  }

  /** Stops the worker (its connection closed); resolves when it has exited. */
  async stop(): Promise<void> {
    if (!this.stats.running) return;
    this.stopping = true;
    this.worker.postMessage('stop');
    // A checkpoint in progress finishes first; one that hangs (a stuck disk) does not hold up the stop.
    const force = setTimeout(() => void this.worker.terminate(), 5000);
    await this.exited;
    clearTimeout(force);
  }

  private failed(error: { name: string; code: string; message: string }): void {
    this.stats.failures++;
    const now = Date.now();
    if (now - this.lastFailureLoggedAt < FAILURE_LOG_INTERVAL_MS) return;
    this.lastFailureLoggedAt = now;
    this.logger.warn('SQLite checkpoint failed', { file: this.file, failures: this.stats.failures, error });
  }
}
