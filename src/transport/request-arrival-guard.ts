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
 * How long a stream answered while its client still sends may keep its HTTP/2 stream for the
 * status to go out (trailers wait for the data before them) before it is reset anyway.
 */
const ANSWERED_STREAM_GRACE_MS = 10_000;

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
 *
 * "Arrived" means the client ended its half of the stream (END_STREAM): grpc-js runs a unary or
 * server-streaming handler only then, so a call whose message is complete but whose client never
 * ends the stream is held, unanswered and unauthenticated, exactly like one whose message stops
 * half way (found by a probe: such calls ran the process out of memory).
 *
 * Every call answered while its client has not ended its half (any method, the streaming ones too:
 * a stream refused before its handler, UNAUTHENTICATED or over the stream limit, or one ended by the
 * server or by grpc-js's deadline) is reset once its status went out, or after
 * ANSWERED_STREAM_GRACE_MS (found by a probe: tens of thousands of refused, never-ended streams ran
 * the process out of memory without credentials).
 */
export function requestArrivalGuard(options: { maxPending: number; timeoutMs: number; events?: ArrivalGuardEvents }): RequestArrivalGuard {
  const waiting = new Set<Waiting>();
  /** Streams whose status was sent while their client had not ended its half, and since when. */
  const answered = new Map<ServerHttp2Stream, number>();
  const resetAnswered = (now: number) => {
    // A copy: closing a stream may answer its call (and come back here) before the loop ends.
    for (const [stream, since] of [...answered]) {
      if (stream.closed || stream.destroyed || clientEnded(stream)) answered.delete(stream);
      else if (stream.state?.localClose === 1 || now - since >= ANSWERED_STREAM_GRACE_MS) {
        answered.delete(stream);
        stream.close(http2.NGHTTP2_NO_ERROR);
      }
    }
  };
  // One sweep for all calls rather than a timer per call: every unary call passes through here.
  const sweep = setInterval(
    () => {
      const now = Date.now();
      const cutoff = now - options.timeoutMs;
      let ended = 0;
      for (const entry of waiting) {
        if (entry.since > cutoff) continue;
        waiting.delete(entry);
        ended++;
        endAndReset(entry.call, { code: status.DEADLINE_EXCEEDED, details: `the request message did not arrive within ${options.timeoutMs} ms of the call's start` });
      }
      if (ended > 0) options.events?.timedOut(ended);
      resetAnswered(now);
    },
    Math.max(50, Math.min(1000, Math.floor(options.timeoutMs / 4))),
  );
  sweep.unref();

  /** After a status: the stream is reset once the status went out if its client still has its half open. */
  const resetAfterStatus = (call: ServerInterceptingCallInterface) => {
    const stream = streamOf(call);
    if (!stream || answered.has(stream) || stream.closed || stream.destroyed || clientEnded(stream)) return;
    if (answered.size === 0) setImmediate(() => resetAnswered(Date.now()));
    answered.set(stream, Date.now());
  };

  const interceptor: ServerInterceptor = (method, call) => {
    if (method.requestStream || method.path.startsWith(HEALTH_PREFIX)) {
      // Client- and bidi-streaming calls reach their handler at once (the pipeline bounds them),
      // health checks are never refused; both are still reset when answered with their half open.
      return new ServerInterceptingCall(call, {
        sendStatus: (statusObject, nextStatus) => {
          nextStatus(statusObject);
          resetAfterStatus(call);
        },
      });
    }
    const entry: Waiting = { call, since: Date.now() };
    const arrived = () => waiting.delete(entry);
    // Known without asking HTTP/2 (a native call) on every answered call: the hot path.
    let halfClosed = false;
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
          onReceiveHalfClose: (nextHalfClose) => {
            halfClosed = true;
            arrived();
            nextHalfClose();
          },
          onCancel: arrived,
        });
      },
      sendStatus: (statusObject, nextStatus) => {
        arrived();
        nextStatus(statusObject);
        if (!halfClosed) resetAfterStatus(call);
      },
    });
  };
  return { interceptor, pending: () => waiting.size, stop: () => clearInterval(sweep) };
}

/** Whether the client ended its half of the stream (END_STREAM received): then it closes by itself once answered. */
function clientEnded(stream: ServerHttp2Stream): boolean {
  return stream.state?.remoteClose === 1;
}

const HEALTH_PREFIX = '/grpc.health.v1.Health/';

/**
 * Sends `statusObject` and resets the stream. grpc-js keeps the HTTP/2 stream in its innermost
 * call object (`stream`, not part of its typed API): this guard is the only interceptor, so `call`
 * is that object; test/e2e/request-arrival-guard.test.ts fails if a grpc-js update moves it.
 */
function endAndReset(call: ServerInterceptingCallInterface, statusObject: Partial<StatusObject> & { code: status; details: string }): void {
  call.sendStatus(statusObject);
  const stream = streamOf(call);
  if (stream && !stream.closed) stream.close(http2.NGHTTP2_NO_ERROR);
}

/** The HTTP/2 stream of grpc-js's innermost call (see endAndReset), if it has one. */
function streamOf(call: ServerInterceptingCallInterface): ServerHttp2Stream | undefined {
  const stream = (call as unknown as { stream?: ServerHttp2Stream }).stream;
  return stream && typeof stream.close === 'function' ? stream : undefined;
}
