/** What a grpc-js server stream offers for flow control. */
export interface WritableCall<Res> {
  write(message: Res): boolean;
  on(event: 'drain' | 'close' | 'error', listener: (...args: unknown[]) => void): unknown;
  off(event: 'drain' | 'close' | 'error', listener: (...args: unknown[]) => void): unknown;
}

/**
 * Writes one message and, when the transport's buffer is full, waits until the client has read
 * it (back-pressure: a slow reader slows the stream instead of growing the server's buffers) or
 * the call is over (cancelled, past its deadline, closed or failed).
 *
 * Never rejects. `events.once` would: its promise rejects when the stream emits 'error', which
 * is how the call pipeline ends a stream with a status, and a promise nobody awaits any more
 * (one that lost a race) then rejects unhandled and ends the whole process.
 */
export async function writeWithBackpressure<Res>(call: WritableCall<Res>, message: Res, signal: AbortSignal): Promise<void> {
  if (!call.write(message)) await drained(call, signal);
}

/** Resolves when the client has read what was buffered, or the call is over; never rejects. */
export function drained(call: WritableCall<unknown>, signal: AbortSignal): Promise<void> {
  return untilOver(call, signal, (done) => call.on('drain', done), (done) => call.off('drain', done));
}

/**
 * Resolves when `start` calls its `done`, or the call is over (closed, failed, aborted), once;
 * never rejects. `stop` removes what `start` set up.
 */
function untilOver(call: WritableCall<unknown>, signal: AbortSignal, start: (done: () => void) => void, stop: (done: () => void) => void = () => undefined): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      stop(done);
      call.off('close', done);
      call.off('error', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.on('close', done);
    call.on('error', done);
    signal.addEventListener('abort', done);
    start(done);
  });
}

/** The part of a grpc-js server stream (a Node.js Writable in object mode) that batched writes use. */
export interface CorkableCall<Res> extends WritableCall<Res> {
  write(message: Res, callback?: (error?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
}

type WriteCallback = (error?: Error | null) => void;
interface WritevTarget {
  _write(chunk: unknown, encoding: string, callback: WriteCallback): void;
  _writev?: null | ((chunks: Array<{ chunk: unknown }>, callback: WriteCallback) => void);
}

/**
 * Hands every message of `chunks` to the transport at once. grpc-js's server stream defines only
 * `_write`, and its write completes when HTTP/2 has taken the data, so a Writable without
 * `_writev` passes the transport one message per turn of the event loop: each answer of a stream
 * became its own HTTP/2 write, DATA frame and socket write. Passing them together lets the HTTP/2
 * stream (which has `_writev`) send a chunk's answers in one write. The callback runs once
 * every message is written, or with the first error.
 *
 * Handing grpc-js several messages at once is safe here: its server call (no server interceptors
 * are installed) serialises each message and writes it to the HTTP/2 stream at once, which
 * buffers in order. (With interceptors, grpc-js holds a single pending message while response
 * metadata is being processed; the call pipeline sends the metadata before a handler writes.)
 * test/unit/stream-flow.test.ts notices if grpc-js starts defining `_writev` itself.
 */
function writevEach(this: WritevTarget, chunks: Array<{ chunk: unknown }>, callback: WriteCallback): void {
  let pending = chunks.length;
  let settled = false;
  const done: WriteCallback = (error) => {
    if (settled) return;
    if (error) {
      settled = true;
      callback(error);
    } else if (--pending === 0) {
      settled = true;
      callback();
    }
  };
  for (const { chunk } of chunks) this._write(chunk, 'buffer', done);
}

/**
 * Writes `messages` in order as one batch (see `writevEach`) and returns whether the stream's
 * buffer still has room (false: wait for `drained` before writing more).
 */
export function writeBatch<Res>(call: CorkableCall<Res>, messages: readonly Res[], written?: () => void): boolean {
  if (messages.length === 0) {
    written?.();
    return true;
  }
  const target = call as unknown as WritevTarget;
  if (typeof target._writev !== 'function') target._writev = writevEach;
  call.cork();
  let room = true;
  messages.forEach((message, i) => {
    room = (i === messages.length - 1 && written ? call.write(message, () => written()) : call.write(message)) && room;
  });
  call.uncork();
  return room;
}

/**
 * Writes `messages` as one batch (writeBatch) and resolves once the transport has taken all of
 * them, or the call is over; never rejects. The stream's own buffer counts messages, not their
 * size (16 before `write` says false), so a reader that waited only for that could have many
 * large messages outstanding; waiting for the batch bounds what is written ahead of a client that
 * does not read to one batch (and what HTTP/2 flow control lets through).
 */
export function writeBatchAndWait<Res>(call: CorkableCall<Res>, messages: readonly Res[], signal: AbortSignal): Promise<void> {
  return untilOver(call, signal, (done) => writeBatch(call, messages, done));
}
