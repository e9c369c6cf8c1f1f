import { DomainError } from '../shared/errors';
import { ItemOutcome } from './commit-queue';
import { ConsentWriter, PreparedWrite, WriteResult } from './consent-writer';

/** Rows of an import committed in one transaction. */
export const IMPORT_BATCH = 1000;
/**
 * Batches of one import in the pipeline at once: one committing while the next is validated,
 * normalised and hashed (and, on MySQL, while the server waits for the database). Together with
 * the rows of the batch being filled this bounds what an import holds in memory, whatever the
 * size of the call: the caller stops reading its stream while `add` waits.
 */
const BATCHES_IN_FLIGHT = 2;

/** One row handed to an import, with the caller's tag (its line) for the answer. */
export interface ImportItem<T> {
  tag: T;
  prepare(): Promise<PreparedWrite>;
}

/**
 * An import in progress (ImportConsents): rows are added as they arrive, prepared (validated,
 * normalised, hashed) on the way and committed to the ConsentWriter in batches of IMPORT_BATCH,
 * strictly in the order received, while later rows are still arriving. Each row's outcome is
 * reported as soon as its batch is durable. A batch that committed stays committed if the import
 * ends early (the caller cancelled, the stream failed): rows are idempotent by request_id, so
 * sending them again records nothing twice.
 *
 * A row that cannot be recorded fails alone (its outcome is the error); an error that says
 * nothing about one row (the database unavailable, a bug) ends the whole import.
 */
export class ConsentImport<T> {
  private pending: Array<ImportItem<T>> = [];
  /** The last batch's commit: each batch commits after the one before it. */
  private committed: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private failure: { error: unknown } | null = null;
  private stopped = false;
  private wakeAdder: (() => void) | null = null;

  constructor(
    private readonly writer: ConsentWriter,
    private readonly tenantId: string,
    private readonly report: (tag: T, outcome: ItemOutcome<WriteResult>) => void,
  ) {}

  /** Adds rows; resolves once the pipeline has room for more (the caller reads on only then). */
  async add(items: Array<ImportItem<T>>): Promise<void> {
    this.throwIfFailed();
    for (const item of items) {
      this.pending.push(item);
      if (this.pending.length >= IMPORT_BATCH) this.dispatch();
    }
    while (this.inFlight >= BATCHES_IN_FLIGHT && !this.failure) await new Promise<void>((resolve) => (this.wakeAdder = resolve));
    this.throwIfFailed();
  }

  /** Commits the rows still pending; resolves when every row added is durable or rejected. */
  async finish(): Promise<void> {
    if (this.pending.length > 0) this.dispatch();
    await this.committed;
    this.throwIfFailed();
  }

  /** Ends the import early: batches not yet committing are dropped; one already committing ends by itself. */
  stop(): void {
    this.stopped = true;
    this.pending = [];
  }

  private dispatch(): void {
    const batch = this.pending;
    this.pending = [];
    this.inFlight++;
    // Prepared at once, concurrently with the commit of the batch before.
    const prepared = this.prepare(batch);
    const previous = this.committed;
    this.committed = (async () => {
      const ready = await prepared;
      await previous;
      if (this.stopped || this.failure) return;
      const outcomes = ready.writes.length > 0 ? await this.writer.commit(this.tenantId, ready.writes) : [];
      for (const { tag, outcome } of ready.failed) this.report(tag, outcome);
      outcomes.forEach((outcome, i) => {
        if ('error' in outcome && !isRowError(outcome.error)) throw outcome.error;
        this.report(ready.tags[i], outcome);
      });
    })()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => {
        this.inFlight--;
        const wake = this.wakeAdder;
        this.wakeAdder = null;
        wake?.();
      });
  }

  /** Prepares a batch's rows; a row whose checks fail is answered with its error and not written. */
  private async prepare(batch: Array<ImportItem<T>>): Promise<{ writes: PreparedWrite[]; tags: T[]; failed: Array<{ tag: T; outcome: ItemOutcome<WriteResult> }> }> {
    const writes: PreparedWrite[] = [];
    const tags: T[] = [];
    const failed: Array<{ tag: T; outcome: ItemOutcome<WriteResult> }> = [];
    for (const item of batch) {
      try {
        writes.push(await item.prepare());
        tags.push(item.tag);
      } catch (error) {
        if (!isRowError(error)) throw error;
        failed.push({ tag: item.tag, outcome: { error } });
      }
    }
    return { writes, tags, failed };
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }
}

/** An error that is one row's own (its content, its person): the others go on. */
function isRowError(error: unknown): boolean {
  return error instanceof DomainError && error.kind !== 'UNAVAILABLE';
}
