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
export const BLIND_INDEX_WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHmac } = require('node:crypto');
// A request that cannot be deserialised is lost: end, so that the service takes over its work.
parentPort.on('messageerror', () => process.exit(1));
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
parentPort.postMessage('ready');
`;

/** A bulk call below this many inputs is hashed on the calling thread: the round trip to a worker costs about as much. */
export const BLIND_INDEX_WORKER_MIN_INPUTS = 64;

/**
 * Inputs a worker may hold at once (~4 bulk calls of 1,000; ~12 ms of its work). Beyond it a call is
 * hashed on the calling thread, as before there were workers: that is the back-pressure (the event
 * loop takes no new call while it hashes), and it bounds how long a bulk call waits for its
 * hashes, i.e. how much older than its answer the moment it was asked at can be.
 */
export const BLIND_INDEX_WORKER_MAX_QUEUED_INPUTS = 4000;

/**
 * A worker that has not answered a request within this long is taken for stuck (a message lost
 * in deserialisation, a thread that hangs): it is ended, and what it held is hashed here.
 */
export const BLIND_INDEX_WORKER_REPLY_TIMEOUT_MS = 2000;

/** A worker that has not said it is ready within this long is given up (its start is not held against the reply timeout). */
export const BLIND_INDEX_WORKER_START_TIMEOUT_MS = 10_000;

interface Pending {
  key: KeyObject;
  inputs: string[];
  resolve: (digests: string[]) => void;
  reject: (err: unknown) => void;
  /** When the reply timeout starts counting for it (performance.now): when sent, or when the worker became ready. */
  sentAt: number;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  /** Inputs of the requests in `pending`. */
  queued: number;
  alive: boolean;
  /** The worker said it is ready ('ready'): the reply timeout counts from then, not from requests sent while it started. */
  online: boolean;
  /** Gives the worker up if it is not ready in time. */
  startTimer: NodeJS.Timeout | undefined;
  /** Ends the worker if the oldest request it holds (the first in `pending`) is not answered in time. */
  watchdog: NodeJS.Timeout | undefined;
}

/**
 * Keyed hashes (blind indexes) of many identifiers at once on worker threads, for bulk checks
 * (ConsentChecker.checkMany with BLIND_INDEX_WORKER_MIN_INPUTS questions or more: a
 * CheckConsentBatch call, a packed StreamCheckConsent message, consecutive questions of a stream
 * chunk): a blind index's HMAC is ~2 µs, about a quarter of a cached decision's time on the event
 * loop's thread, and node:crypto has no way to make it cheaper (the cost is setting up each HMAC).
 * Computed beside the event loop, a call's hashes leave it free to decide other calls meanwhile.
 *
 * Nothing here can change an answer: a worker computes the same function as the calling thread.
 * A worker that exits, fails, loses a message or does not answer in time is ended, logged, and
 * what it held and everything after is hashed on the calling thread; the service never waits on a
 * worker that is gone. Workers start with the first bulk call (a process that never makes one runs
 * none). Keys are cloned to the workers with each request (node:crypto KeyObjects can be posted
 * to another thread of the process) and never leave the process.
 */
export class BlindIndexWorkers {
  private readonly workers: Slot[] = [];
  private started = false;
  private nextId = 0;
  private nextWorker = 0;
  /**
   * Bulk requests answered by a worker; inputs of bulk calls hashed on the calling thread because
   * no worker could take them (none running, all full, or one failed them); workers lost.
   */
  readonly stats = { offloaded: 0, inline: 0, workerFailures: 0 };

  constructor(
    private readonly count: number,
    private readonly logger: BlindIndexWorkersLog,
    /** The workers' code; tests give one that fails, or never answers, to see the calling thread take over. */
    private readonly workerSource: string = BLIND_INDEX_WORKER_SOURCE,
    private readonly replyTimeoutMs: number = BLIND_INDEX_WORKER_REPLY_TIMEOUT_MS,
  ) {}

  /** Workers running now. */
  get running(): number {
    return this.workers.filter((w) => w.alive).length;
  }

  /**
   * HMAC-SHA-256 of each input under `key`, lower-case hex, in order: on a worker when there are
   * enough inputs and a worker can take them, otherwise here (an array, at once).
   */
  hmacHexAll(key: KeyObject, inputs: string[]): string[] | Promise<string[]> {
    if (inputs.length < BLIND_INDEX_WORKER_MIN_INPUTS) return inline(key, inputs);
    const slot = this.pickWorker(inputs.length);
    if (!slot) {
      this.stats.inline += inputs.length;
      return inline(key, inputs);
    }
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const request = { key, inputs, resolve, reject, sentAt: performance.now() };
      slot.pending.set(id, request);
      slot.queued += inputs.length;
      try {
        slot.worker.postMessage({ id, key, inputs });
      } catch {
        // A message that cannot be cloned (it never happens with strings and a KeyObject): hashed here.
        this.settle(slot, id);
        this.stats.inline += inputs.length;
        this.answerHere(request);
        return;
      }
      this.arm(slot);
    });
  }

  /** Stops the workers; requests still out are answered by the calling thread. */
  async stop(): Promise<void> {
    this.started = true; // none start after a stop
    await Promise.all(
      this.workers.map(async (slot) => {
        if (!slot.alive) return;
        slot.alive = false;
        clearTimeout(slot.watchdog);
        clearTimeout(slot.startTimer);
        const exited = new Promise<void>((resolve) => slot.worker.once('exit', () => resolve()));
        slot.worker.postMessage('stop');
        const force = setTimeout(() => void slot.worker.terminate(), 2000);
        await exited;
        clearTimeout(force);
        this.answerAllHere(slot);
      }),
    );
  }

  /** A running worker with room for `inputs` more, round robin; the workers start on first use. */
  private pickWorker(inputs: number): Slot | undefined {
    if (!this.started) {
      this.started = true;
      for (let i = 0; i < this.count; i++) this.startWorker();
    }
    for (let tries = 0; tries < this.workers.length; tries++) {
      const slot = this.workers[this.nextWorker++ % this.workers.length];
      if (slot.alive && slot.queued + inputs <= BLIND_INDEX_WORKER_MAX_QUEUED_INPUTS) return slot;
    }
    return undefined;
  }

  private startWorker(): void {
    let worker: Worker;
    try {
      // execArgv: [] — the code is plain CommonJS; the parent's flags (a TypeScript loader in tests) would only slow its start.
      worker = new Worker(this.workerSource, { eval: true, execArgv: [] });
    } catch (err) {
      // No thread to be had (a process or memory limit): the service runs, hashing inline.
      this.stats.workerFailures++;
      this.logger.warn('a blind-index worker could not be started; bulk checks hash on the main thread', { error: { name: (err as Error).name, message: (err as Error).message } });
      return;
    }
    // Never what keeps the process alive.
    worker.unref();
    const slot: Slot = { worker, pending: new Map(), queued: 0, alive: true, online: false, startTimer: undefined, watchdog: undefined };
    slot.startTimer = setTimeout(() => this.lose(slot, `a blind-index worker was not ready within ${BLIND_INDEX_WORKER_START_TIMEOUT_MS} ms`), BLIND_INDEX_WORKER_START_TIMEOUT_MS);
    slot.startTimer.unref();
    this.workers.push(slot);
    worker.on('message', (message: 'ready' | { id: number; digests?: ArrayBuffer; failed?: string }) => {
      if (message === 'ready') {
        // A thread's start can take long on a loaded machine (or under valgrind): the reply
        // timeout counts from now for the requests sent while it started.
        slot.online = true;
        clearTimeout(slot.startTimer);
        const now = performance.now();
        for (const request of slot.pending.values()) request.sentAt = now;
        this.arm(slot);
        return;
      }
      const request = slot.pending.get(message.id);
      if (!request) return;
      this.settle(slot, message.id);
      this.arm(slot);
      if (!message.digests) {
        this.stats.inline += request.inputs.length;
        this.answerHere(request);
        return;
      }
      this.stats.offloaded++;
      const digests = Buffer.from(message.digests);
      const hex = new Array<string>(request.inputs.length);
      for (let i = 0; i < hex.length; i++) hex[i] = digests.toString('hex', i * 32, i * 32 + 32);
      request.resolve(hex);
    });
    worker.on('error', (err: Error) => this.lose(slot, 'a blind-index worker failed', err));
    // A reply that cannot be deserialised would leave its request waiting: the worker is given up.
    worker.on('messageerror', (err: Error) => this.lose(slot, 'a blind-index worker\'s reply could not be read', err));
    worker.once('exit', () => this.lose(slot, 'a blind-index worker stopped'));
  }

  /** Takes a worker out of service (once): logged, ended, and what it held hashed here. */
  private lose(slot: Slot, what: string, err?: Error): void {
    if (!slot.alive) return;
    slot.alive = false;
    clearTimeout(slot.watchdog);
    clearTimeout(slot.startTimer);
    this.stats.workerFailures++;
    this.logger.warn(`${what}; its bulk checks, and later ones it would have taken, hash on the main thread`, { error: err ? { name: err.name, message: err.message } : undefined, running: this.running });
    void slot.worker.terminate();
    this.answerAllHere(slot);
  }

  /** Watches the oldest request the worker holds (none: the watch stops). */
  private arm(slot: Slot): void {
    clearTimeout(slot.watchdog);
    slot.watchdog = undefined;
    const oldest = slot.pending.values().next();
    if (oldest.done || !slot.alive || !slot.online) return;
    const left = Math.max(0, oldest.value.sentAt + this.replyTimeoutMs - performance.now());
    slot.watchdog = setTimeout(() => this.lose(slot, `a blind-index worker did not answer within ${this.replyTimeoutMs} ms`), left);
    slot.watchdog.unref();
  }

  private settle(slot: Slot, id: number): void {
    const request = slot.pending.get(id);
    if (!request) return;
    slot.pending.delete(id);
    slot.queued -= request.inputs.length;
  }

  /** Hashes what a worker did not answer on this thread; what cannot be hashed here either fails its call. */
  private answerHere(request: Pending): void {
    try {
      request.resolve(inline(request.key, request.inputs));
    } catch (err) {
      request.reject(err);
    }
  }

  private answerAllHere(slot: Slot): void {
    for (const [id, request] of [...slot.pending]) {
      this.settle(slot, id);
      this.stats.inline += request.inputs.length;
      this.answerHere(request);
    }
  }
}

function inline(key: KeyObject, inputs: string[]): string[] {
  const out = new Array<string>(inputs.length);
  for (let i = 0; i < inputs.length; i++) out[i] = hmacSha256Hex(key, inputs[i]);
  return out;
}
