import { DomainError } from '../shared/errors';
import { ItemOutcome } from './commit-queue';
import { ConsentWriter, PreparedWrite, WriteResult } from './consent-writer';

/** Rows of an import committed in one transaction. */
export const IMPORT_BATCH = 1000;
/**
 * Batches of one import committing at once. Two: while one batch's transaction runs in the
 * database, the next one does its reads, makes its people's keys (in the key store) and seals its
 * evidence, so the database and the service work at the same time. A batch that names a person
 * of a batch before it waits for that batch to commit: one person's rows are recorded in the
 * file's order.
 */
const COMMITTING = 2;
/**
 * Batches of one import in the pipeline at once (being prepared, waiting, committing). Together
 * with the rows of the batch being filled this bounds what an import holds in memory, whatever the
 * size of the call: the caller stops reading its stream while `add` waits.
 */
const BATCHES_IN_FLIGHT = COMMITTING + 1;

/** A batch in the pipeline: its people, and when it started and finished committing. */
interface Batch {
  people: Set<string>;
  /** Its rows' request ids: a later batch that reuses one waits, so the file's first row with it is the one recorded. */
  requestIds: Set<string>;
  started: Promise<void>;
  done: Promise<void>;
}

/** One row handed to an import, with the caller's tag (its line) for the answer. */
export interface ImportItem<T> {
  tag: T;
  prepare(): Promise<PreparedWrite>;
}

/**
 * An import in progress (ImportConsents): rows are added as they arrive, prepared (validated,
 * normalised, hashed) on the way and committed to the ConsentWriter in batches of IMPORT_BATCH
 * while later rows are still arriving: batches start committing in the order received, two at a
 * time, and one person's rows commit in the order received. Each row's outcome is
 * reported as soon as its batch is durable. A batch that committed stays committed if the import
 * ends early (the caller cancelled, the stream failed): rows are idempotent by request_id, so
 * sending them again records nothing twice.
 *
 * A row that cannot be recorded fails alone (its outcome is the error); an error that says
 * nothing about one row (the database unavailable, a bug) ends the whole import.
 */
export class ConsentImport<T> {
  private pending: Array<ImportItem<T>> = [];
  /** Batches dispatched and not finished, in order. */
  private readonly unfinished = new Set<Batch>();
  /** Every batch dispatched so far has finished when this resolves. */
  private finished: Promise<void> = Promise.resolve();
  private committing = 0;
  /** Batches waiting for a commit slot. */
  private readonly commitSlot: Array<() => void> = [];
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
    await this.finished;
    this.throwIfFailed();
  }

  /**
   * Ends the import early: batches not yet committing are dropped. Resolves once the batches
   * already committing have finished (committed or failed), so that after it nothing of this
   * import is written any more: the caller's answer (and a retry of the same rows) comes after
   * the last commit, not beside it, and a retry does not wait behind it for the tenant's lock.
   */
  stop(): Promise<void> {
    this.stopped = true;
    this.pending = [];
    return this.finished;
  }

  private dispatch(): void {
    const items = this.pending;
    this.pending = [];
    this.inFlight++;
    // Prepared at once, concurrently with the commits of the batches before.
    const prepared = this.prepare(items);
    const earlier = [...this.unfinished];
    let markStarted!: () => void;
    const batch: Batch = { people: new Set(), requestIds: new Set(), started: new Promise<void>((resolve) => (markStarted = resolve)), done: Promise.resolve() };
    this.unfinished.add(batch);
    batch.done = (async () => {
      try {
        const ready = await prepared;
        for (const write of ready.writes) {
          batch.people.add(`${write.index.kind}:${write.index.blindIndex}`);
          batch.requestIds.add(write.requestId);
        }
        // Batches start committing in order; one that shares a person or a request id with an
        // earlier one waits for it (the same request_id twice: the file's first row wins, the
        // later one is REQUEST_ID_REUSED, never the other way round).
        if (earlier.length > 0) await earlier[earlier.length - 1].started;
        for (const other of earlier) if (shares(other.people, batch.people) || shares(other.requestIds, batch.requestIds)) await other.done;
        while (this.committing >= COMMITTING) await new Promise<void>((resolve) => this.commitSlot.push(resolve));
        markStarted();
        if (this.stopped || this.failure) return;
        this.committing++;
        let outcomes: Array<ItemOutcome<WriteResult>>;
        try {
          outcomes = ready.writes.length > 0 ? await this.writer.commit(this.tenantId, ready.writes) : [];
        } finally {
          this.committing--;
          this.commitSlot.shift()?.();
        }
        for (const { tag, outcome } of ready.failed) this.report(tag, outcome);
        outcomes.forEach((outcome, i) => {
          if ('error' in outcome && !isRowError(outcome.error)) throw outcome.error;
          this.report(ready.tags[i], outcome);
        });
      } finally {
        markStarted();
      }
    })()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => {
        this.unfinished.delete(batch);
        this.inFlight--;
        const wake = this.wakeAdder;
        this.wakeAdder = null;
        wake?.();
      });
    this.finished = Promise.all([this.finished, batch.done]).then(() => undefined);
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

function shares(a: Set<string>, b: Set<string>): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const key of small) if (large.has(key)) return true;
  return false;
}
