/** What one item of a committed batch came to: a result, or an error that is this item's alone. */
export type ItemOutcome<R> = { ok: R } | { error: unknown };

interface Waiting<I, R> {
  item: I;
  /** The submitter's trace context, when batches are traced. */
  context: unknown;
  resolve(result: R): void;
  reject(err: unknown): void;
}

/** How long a submitter waits for its batch at most, and what it is told then. */
export interface WaitLimit {
  ms: number;
  error(): unknown;
}

/**
 * Traces the batches (src/observability/tracing.ts implements it; absent when tracing is off):
 * each batch runs in a span of its own, linked to the calls whose items it carries.
 */
export interface BatchTracing {
  /** The submitter's trace context at submit time (opaque here). */
  current(): unknown;
  /** Runs the commit of a batch of `key` whose items were submitted in `contexts` (same order), in its span. */
  inBatch<T>(key: string, contexts: unknown[], work: () => Promise<T>): Promise<T>;
}

/**
 * Group commit: items submitted under the same key (a tenant) are committed together, one batch
 * at a time per key. There is no timer: the first item of an idle key starts a batch after one
 * turn of the event loop, and what arrives while that batch commits forms the next one (the way
 * database group commit shares a log flush). Under light load every item commits alone with no
 * added delay; under heavy load batches grow by themselves, up to `maxBatch`.
 *
 * `commit` answers every item of a batch (same order); an item's error rejects only its own
 * submitter. When `commit` itself throws, every item of that batch gets the error.
 */
export class CommitQueue<I, R> {
  private readonly queues = new Map<string, Array<Waiting<I, R>>>();
  /** Set when tracing is on: a span per batch. */
  tracing?: BatchTracing;

  constructor(
    private readonly commit: (key: string, items: I[]) => Promise<Array<ItemOutcome<R>>>,
    private readonly maxBatch: number,
  ) {}

  /**
   * Queues `item` for the key's next batch. With `limit`, the submitter stops waiting after
   * `limit.ms` (its batch goes on: an idempotent write may still commit, and a retry finds it),
   * so a database that stopped answering fails every caller in bounded time, however many
   * batches are queued before its own.
   */
  submit(key: string, item: I, limit?: WaitLimit): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let settled = false;
      const timer = limit
        ? setTimeout(() => {
            settled = true;
            reject(limit.error());
          }, limit.ms)
        : undefined;
      const waiting: Waiting<I, R> = {
        item,
        context: this.tracing?.current(),
        resolve: (r) => {
          clearTimeout(timer);
          if (!settled) resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          if (!settled) reject(e);
        },
      };
      const queue = this.queues.get(key);
      if (queue) {
        queue.push(waiting);
        return;
      }
      const fresh = [waiting];
      this.queues.set(key, fresh);
      void this.drain(key, fresh);
    });
  }

  /** Commits the key's queue batch by batch until it is empty, then forgets the key. */
  private async drain(key: string, queue: Array<Waiting<I, R>>): Promise<void> {
    while (queue.length > 0) {
      // One turn of the event loop first: requests that arrived meanwhile can join. Without it a
      // database that answers without waiting for I/O (SQLite) would commit every item alone.
      await new Promise((resolve) => setImmediate(resolve));
      const batch = queue.splice(0, this.maxBatch);
      let outcomes: Array<ItemOutcome<R>>;
      try {
        const items = batch.map((w) => w.item);
        const tracing = this.tracing;
        outcomes = await (tracing
          ? tracing.inBatch(
              key,
              batch.map((w) => w.context),
              () => this.commit(key, items),
            )
          : this.commit(key, items));
      } catch (err) {
        for (const w of batch) w.reject(err);
        continue;
      }
      batch.forEach((w, i) => {
        const outcome = outcomes[i];
        if (outcome && 'ok' in outcome) w.resolve(outcome.ok);
        else w.reject(outcome ? outcome.error : new Error('the batch gave no answer for this item'));
      });
    }
    this.queues.delete(key);
  }
}
