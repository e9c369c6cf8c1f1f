import { Logger } from '../logging/logger';
import { withoutCallBudget } from '../shared/call-budget';

/**
 * Runs work after the RPC that asked for it has answered (key re-wrapping, tenant purges).
 * Every job's state is durable in the database and resumed at start, so losing the process
 * mid-job loses nothing; this class only tracks the running promises so shutdown can wait.
 */
export class BackgroundJobs {
  private readonly running = new Set<Promise<void>>();
  private stopping = false;

  constructor(private readonly logger: Logger) {}

  /** Starts `work` unless shutting down. Failures are logged with the job's name (no personal data). */
  start(name: string, work: () => Promise<void>): void {
    if (this.stopping) return;
    // Outside the starting RPC's time budget: the job runs on after that call has answered.
    const job = withoutCallBudget(work).catch((err: unknown) => {
      const e = err as { name?: string; code?: string; reason?: string; message?: string };
      this.logger.error('background job failed', { job: name, error: { name: e?.name, code: e?.code, reason: e?.reason, message: e?.message } });
    });
    this.running.add(job);
    void job.finally(() => this.running.delete(job));
  }

  /** True once shutdown began: long jobs check it between batches and stop early. */
  get shuttingDown(): boolean {
    return this.stopping;
  }

  /** Waits for running jobs (they stop at their next batch boundary). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.running]);
  }
}
