import { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { hmacSha256Hex } from './primitives';

/** Where the workers report trouble: the service's logger (crypto does not depend on logging). */
export interface BlindIndexWorkersLog {
  warn(message: string, fields: Record<string, unknown>): void;
}

/**
 * The worker's code, evaluated as CommonJS (as sqlite-checkpointer.ts: the service runs from
 * dist/ and, in tests, from TypeScript through tsx; a worker file would need a loader in one of
 * them). It computes exactly what primitives.ts's hmacSha256Hex does (HMAC-SHA-256 of the UTF-8
 * bytes of each input under the key, node:crypto), and answers with the raw 32-byte digests
 * back to back in one transferred buffer (hex is made on the way out: a string per digest cloned
 * across threads costs more than the encoding).
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHmac } = require('node:crypto');
parentPort.on('message', (message) => {
  if (message === 'stop') { parentPort.close(); return; }
  const { id, key, inputs } = message;
  try {
    const digests = Buffer.allocUnsafeSlow(inputs.length * 32);
    for (let i = 0; i < inputs.length; i++) createHmac('sha256', key).update(inputs[i]).digest().copy(digests, i * 32);
    parentPort.postMessage({ id, digests: digests.buffer }, [digests.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, failed: String(err && err.name) });
  }
});
`;

/** A bulk call below this many inputs is hashed on the calling thread: the round trip to a worker costs about as much. */
export const BLIND_INDEX_WORKER_MIN_INPUTS = 64;

interface Pending {
  key: KeyObject;
  inputs: string[];
  resolve: (digests: string[]) => void;
  reject: (err: unknown) => void;
}

/**
 * Keyed hashes (blind indexes) of many identifiers at once on worker threads, for the bulk check
 * calls (CheckConsentBatch, StreamCheckConsent): a blind index's HMAC is ~2 µs, about a quarter of
 * a cached decision's time on the event loop's thread, and node:crypto has no way to make it
 * cheaper (the cost is setting up each HMAC). Computed beside the event loop, a batch's hashes
 * leave it free to decide the previous batch meanwhile.
 *
 * Nothing here can change an answer: a worker computes the same function as the calling thread.
 * If a worker fails or stops, what it held and everything after is hashed on the calling thread
 * (logged once); the service never waits on a worker that is gone. Keys are cloned to the workers
 * with each request (node:crypto KeyObjects are transferable between threads of one process) and
 * never leave the process.
 */
export class BlindIndexWorkers {
  private readonly workers: Array<{ worker: Worker; pending: Map<number, Pending>; alive: boolean }> = [];
  private nextId = 0;
  private nextWorker = 0;
  /** Requests answered by a worker, and inputs hashed on the calling thread instead (bulk calls only). */
  readonly stats = { offloaded: 0, inline: 0, workerFailures: 0 };

  constructor(
    count: number,
    private readonly logger: BlindIndexWorkersLog,
    /** The workers' code; tests give one that fails, to see the calling thread take over. */
    private readonly workerSource: string = WORKER_SOURCE,
  ) {
    for (let i = 0; i < count; i++) this.startWorker();
  }

  /** Workers still running. */
  get running(): number {
    return this.workers.filter((w) => w.alive).length;
  }

  /**
   * HMAC-SHA-256 of each input under `key`, lower-case hex, in order: on a worker when there are
   * enough inputs and a worker runs, otherwise here.
   */
  hmacHexAll(key: KeyObject, inputs: string[]): string[] | Promise<string[]> {
    const slot = inputs.length >= BLIND_INDEX_WORKER_MIN_INPUTS ? this.pickWorker() : undefined;
    if (!slot) return inline(key, inputs);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const request = { key, inputs, resolve, reject };
      slot.pending.set(id, request);
      try {
        slot.worker.postMessage({ id, key, inputs });
      } catch {
        // A message that cannot be cloned (it never happens with strings and a KeyObject): hashed here.
        slot.pending.delete(id);
        this.answerHere(request);
      }
    });
  }

  /** Stops the workers; requests still out are answered by the calling thread. */
  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(async (slot) => {
        if (!slot.alive) return;
        slot.alive = false;
        const exited = new Promise<void>((resolve) => slot.worker.once('exit', () => resolve()));
        slot.worker.postMessage('stop');
        const force = setTimeout(() => void slot.worker.terminate(), 2000);
        await exited;
        clearTimeout(force);
        this.answerAllHere(slot.pending);
      }),
    );
  }

  private pickWorker() {
    for (let tries = 0; tries < this.workers.length; tries++) {
      const slot = this.workers[this.nextWorker++ % this.workers.length];
      if (slot.alive) return slot;
    }
    return undefined;
  }

  private startWorker(): void {
    let worker: Worker;
    try {
      worker = new Worker(this.workerSource, { eval: true });
    } catch (err) {
      // No thread to be had (a process or memory limit): the service runs, hashing inline.
      this.stats.workerFailures++;
      this.logger.warn('a blind-index worker could not be started; bulk checks hash on the main thread', { error: { name: (err as Error).name, message: (err as Error).message } });
      return;
    }
    // Never what keeps the process alive.
    worker.unref();
    const slot = { worker, pending: new Map<number, Pending>(), alive: true };
    this.workers.push(slot);
    worker.on('message', (message: { id: number; digests?: ArrayBuffer; failed?: string }) => {
      const request = slot.pending.get(message.id);
      if (!request) return;
      slot.pending.delete(message.id);
      if (!message.digests) {
        this.answerHere(request);
        return;
      }
      this.stats.offloaded++;
      const digests = Buffer.from(message.digests);
      const hex = new Array<string>(request.inputs.length);
      for (let i = 0; i < hex.length; i++) hex[i] = digests.toString('hex', i * 32, i * 32 + 32);
      request.resolve(hex);
    });
    const gone = (err?: Error) => {
      if (!slot.alive) return;
      slot.alive = false;
      this.stats.workerFailures++;
      this.logger.warn('a blind-index worker stopped; bulk checks hash on the main thread from now on', { error: err ? { name: err.name, message: err.message } : undefined });
      this.answerAllHere(slot.pending);
    };
    worker.on('error', gone);
    worker.once('exit', () => gone());
  }

  /** Hashes what a worker did not answer on this thread; what cannot be hashed here either fails its call. */
  private answerHere(request: Pending): void {
    this.stats.inline += request.inputs.length;
    try {
      request.resolve(inline(request.key, request.inputs));
    } catch (err) {
      request.reject(err);
    }
  }

  private answerAllHere(pending: Map<number, Pending>): void {
    for (const [id, request] of pending) {
      pending.delete(id);
      this.answerHere(request);
    }
  }
}

function inline(key: KeyObject, inputs: string[]): string[] {
  const out = new Array<string>(inputs.length);
  for (let i = 0; i < inputs.length; i++) out[i] = hmacSha256Hex(key, inputs[i]);
  return out;
}
