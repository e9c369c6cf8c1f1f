import { constants as http2, ServerHttp2Stream } from 'node:http2';
import { ServerInterceptingCall, ServerInterceptingCallInterface, ServerInterceptor, status, StatusObject } from '@grpc/grpc-js';

/** What the guard reports (logged by the caller, rate-limited; no peer address: it is personal data). */
export interface ArrivalGuardEvents {
  refused(pending: number): void;
  timedOut(count: number): void;
}

export interface RequestArrivalGuard {
  /** The grpc-js server interceptor (pass in the Server's `interceptors` option). */
  interceptor: ServerInterceptor;
  /** Calls whose request message has not arrived yet. */
  pending(): number;
  /** Stops the sweep timer (server shutdown). */
  stop(): void;
}

interface Waiting {
  call: ServerInterceptingCallInterface;
  since: number;
}

/**
 * Bounds the calls the server holds before their request message has arrived. grpc-js runs the
 * handler of a unary or server-streaming call only once the whole request message is in; until
 * then the call costs memory (its stream, its metadata, the partial message) and nothing else
 * looks at it: a client that opens streams and never finishes their messages (slow loris) could
 * hold them until the process runs out of memory, without credentials, since a token is checked
 * with the message. So at most `maxPending` such calls are held at once (the next ones end at once
 * with RESOURCE_EXHAUSTED), and one whose message has not arrived `timeoutMs` after the call
 * started ends with DEADLINE_EXCEEDED. Client- and bidi-streaming calls reach their handler at
 * once; the call pipeline bounds those (MAX_STREAMS_PER_PRINCIPAL). Health checks are never
 * refused: probes must still see a live process.
 *
 * A call ended here is also reset (RST_STREAM NO_ERROR after its status): grpc-js ends only its own
 * half of the stream, and a client that never ends its half would keep the stream, and the call's
 * memory, for as long as the connection lives.
 */
export function requestArrivalGuard(options: { maxPending: number; timeoutMs: number; events?: ArrivalGuardEvents }): RequestArrivalGuard {
  const waiting = new Set<Waiting>();
  // One sweep for all calls rather than a timer per call: every unary call passes through here.
  const sweep = setInterval(
    () => {
      const cutoff = Date.now() - options.timeoutMs;
      let ended = 0;
      for (const entry of waiting) {
        if (entry.since > cutoff) continue;
        waiting.delete(entry);
        ended++;
        endAndReset(entry.call, { code: status.DEADLINE_EXCEEDED, details: `the request message did not arrive within ${options.timeoutMs} ms of the call's start` });
      }
      if (ended > 0) options.events?.timedOut(ended);
    },
    Math.max(50, Math.min(1000, Math.floor(options.timeoutMs / 4))),
  );
  sweep.unref();

  const interceptor: ServerInterceptor = (method, call) => {
    if (method.requestStream || method.path.startsWith(HEALTH_PREFIX)) return call as ServerInterceptingCall;
    const entry: Waiting = { call, since: Date.now() };
    const arrived = () => waiting.delete(entry);
    return new ServerInterceptingCall(call, {
      start: (next) => {
        if (waiting.size >= options.maxPending) {
          options.events?.refused(waiting.size);
          next({});
          endAndReset(call, { code: status.RESOURCE_EXHAUSTED, details: 'the server holds too many calls whose request has not arrived yet; retry shortly' });
          return;
        }
        waiting.add(entry);
        next({
          onReceiveMessage: (message, nextMessage) => {
            arrived();
            nextMessage(message);
          },
          onCancel: arrived,
        });
      },
      sendStatus: (statusObject, nextStatus) => {
        arrived();
        nextStatus(statusObject);
      },
    });
  };
  return { interceptor, pending: () => waiting.size, stop: () => clearInterval(sweep) };
}

const HEALTH_PREFIX = '/grpc.health.v1.Health/';

/**
 * Sends `statusObject` and resets the stream. grpc-js keeps the HTTP/2 stream in its innermost
 * call object (`stream`, not part of its typed API): this guard is the only interceptor, so `call`
 * is that object; test/e2e/request-arrival-guard.test.ts fails if a grpc-js update moves it.
 */
function endAndReset(call: ServerInterceptingCallInterface, statusObject: Partial<StatusObject> & { code: status; details: string }): void {
  call.sendStatus(statusObject);
  const stream = (call as unknown as { stream?: ServerHttp2Stream }).stream;
  if (stream && typeof stream.close === 'function' && !stream.closed) stream.close(http2.NGHTTP2_NO_ERROR);
}
