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
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('close', done);
      call.off('error', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    call.on('close', done);
    call.on('error', done);
    signal.addEventListener('abort', done);
  });
}
