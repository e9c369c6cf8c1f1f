import { randomUUID } from 'node:crypto';
import {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  sendUnaryData,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  status,
} from '@grpc/grpc-js';
import { PeerCertificate } from 'node:tls';
import { Principal } from '../domain/principal';
import { logCallLine, Logger, redactString } from '../logging/logger';
import { MethodPolicy, methodPolicy } from './auth/access-policy';
import { Authenticator } from './auth/authenticator';
import { CallLimits } from './auth/call-limits';
import { toGrpcError } from './error-mapper';
import { DomainError } from '../shared/errors';
import { refusalOf } from './server';
import { CallBudget, withCallBudget } from '../shared/call-budget';
import { RpcType } from '../observability/metrics';
import { RpcObservation, RpcTelemetry } from '../observability/rpc-telemetry';

/** What every handler gets besides its request: who is calling, and the call's correlation id. */
export interface CallContext {
  principal: Principal;
  requestId: string;
  method: string;
  /** Aborted when the client cancels the call or its deadline passes: long work stops there. */
  signal: AbortSignal;
}

/**
 * A caller's x-request-id is taken only in a safe form: these characters, and nothing that reads
 * as personal data (callers have sent phone numbers as request ids; the id is logged and echoed):
 * no part between separators that is 7 to 15 digits (a phone number without its '+'; a UUID's
 * groups are hex and taken as they are), nothing the log's redaction would replace (a number
 * starting 0 or 00, an IP address). Anything else is replaced by a new UUID; the response's
 * x-request-id header says which id the call ran under.
 */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PHONE_LIKE_PART = /(?:^|[._:-])\d{7,15}(?:$|[._:-])/;

/** The caller's request id if it is safe to log and echo, else a new one. */
function requestIdOf(metadata: Metadata): string {
  const given = metadata.get('x-request-id')[0];
  if (typeof given !== 'string' || !REQUEST_ID.test(given)) return randomUUID();
  if (UUID.test(given)) return given;
  return !PHONE_LIKE_PART.test(given) && redactString(given) === given ? given : randomUUID();
}

/** What every call kind offers the pipeline. */
interface AnyCall {
  metadata: Metadata;
  /** grpc-js: the TLS peer certificate of the connection, if any. */
  getAuthContext?(): { sslPeerCertificate?: PeerCertificate };
  getDeadline(): Date | number;
  /** grpc-js sets it before it emits 'cancelled'. */
  readonly cancelled?: boolean;
  once(event: 'cancelled', listener: () => void): unknown;
  removeListener(event: 'cancelled', listener: () => void): unknown;
}

/** What both streaming call kinds offer the pipeline. */
interface StreamCall extends AnyCall {
  sendMetadata(metadata: Metadata): void;
  emit(event: 'error', error: unknown): boolean;
  end(): unknown;
}

/**
 * What the pipeline knows of one call besides grpc-js's object. grpc-js emits 'cancelled'
 * whenever the call's HTTP/2 stream closes, after an answer too; only a call not answered yet was
 * cancelled (by the client, or by its deadline). Work that outlives an answered call on purpose (a
 * background job it started) must not be stopped by it.
 */
class CallState {
  /** The answer (status) is sent or on its way: the stream closing is no cancellation. */
  answered = false;
  /** The call was cancelled before it was answered. */
  cancelledFirst = false;
  /**
   * Made when someone asks for the signal (streams, database work), not for every call: a check
   * answered from the cache never does. The 'cancelled' listener is added then too; a
   * cancellation before that shows in `call.cancelled` (or, once answered, in cancelledFirst).
   */
  private controller: AbortController | undefined;

  constructor(private readonly call: AnyCall) {}

  /** Notes that the call is being answered (its stream closing is then no cancellation). */
  answer(): void {
    if (this.answered) return;
    if (this.call.cancelled === true) this.cancelledFirst = true;
    this.answered = true;
  }

  /** Stops the work of a call the server ended itself (shutdown): its signal aborts. */
  abortWork(): void {
    (this.controller ??= new AbortController()).abort();
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      if (this.cancelledFirst || (this.call.cancelled === true && !this.answered)) controller.abort();
      else {
        this.call.once('cancelled', () => {
          if (this.answered) return;
          this.cancelledFirst = true;
          controller.abort();
        });
      }
    }
    return this.controller.signal;
  }
}

/**
 * Runs `answer` once the client's part is known: at once, unless the handler returned because the
 * client's input ended. A cancelling grpc-js client ends its input (END_STREAM) and resets the
 * stream (RST_STREAM) right after, so the reader sees 'end' first and 'cancelled' a moment later;
 * a client that simply finished sending waits for the answer. `answer` learns whether the client
 * ended the call, for the log line and the metrics (the client saw CANCELLED, not OK).
 */
function afterClientInput(
  call: { cancelled?: boolean; readableEnded?: boolean; once(event: 'cancelled', listener: () => void): unknown; removeListener(event: 'cancelled', listener: () => void): unknown },
  answer: (endedByClient: boolean) => void,
): void {
  if (call.cancelled === true || call.readableEnded !== true) {
    answer(call.cancelled === true);
    return;
  }
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    call.removeListener('cancelled', finish);
    answer(call.cancelled === true);
  };
  const timer = setTimeout(finish, RESET_GRACE_MS);
  call.once('cancelled', finish);
}

/** How long a stream whose client finished sending waits for a reset that may follow (afterClientInput). */
const RESET_GRACE_MS = 25;

/** `answer`, noting first that the call was answered. */
function answering<Res>(state: CallState, answer: sendUnaryData<Res>): sendUnaryData<Res> {
  return (err, response) => {
    state.answer();
    answer(err, response);
  };
}

/**
 * Cross-cutting concerns for every RPC of one service, in one place (the nice-grpc middleware
 * idea): authenticate the caller, check its role against the access policy, apply its rate and
 * stream limits, assign a correlation id, time the call, log one line, and map errors to
 * statuses. Handlers are plain async functions of (request, context) and never see a call that
 * failed any of this.
 */
export class CallPipeline {
  constructor(
    private readonly logger: Logger,
    private readonly authenticator: Authenticator,
    private readonly limits: CallLimits,
    /** Full service name, e.g. "consent.v1.ConsentService": the access policy's key prefix. */
    private readonly service: string,
    /** Metrics and traces of each call, when either is on (src/observability). */
    private readonly telemetry?: RpcTelemetry,
    /**
     * The server-streaming and bidi calls open now, each as a function that ends it (shutdown:
     * endOpenStreams). Shared by the pipelines of all services.
     */
    private readonly openStreams?: Set<() => void>,
  ) {}

  /** The call's observation when telemetry is on; its end is reported with the call's status. */
  private observe(type: RpcType, method: string, call: AnyCall): RpcObservation | undefined {
    return this.telemetry?.enabled ? this.telemetry.begin(type, this.service, method, call.metadata) : undefined;
  }

  unary<Req, Res>(method: string, handler: (request: Req, ctx: CallContext) => Promise<Res>): handleUnaryCall<Req, Res> {
    const policy = methodPolicy(`${this.service}/${method}`);
    return (call: ServerUnaryCall<Req, Res>, answer: sendUnaryData<Res>) => {
      const state = new CallState(call);
      const observed = this.observe('unary', method, call);
      const callback = answering(state, observed ? observedAnswer(observed, answer) : answer);
      const started = process.hrtime.bigint();
      const proceed = (ctx: CallContext) => {
        // The response headers go with the answer, not before the work: a client's retry policy
        // may retry a call only while it has received nothing, so a replica that dies mid-call
        // (before answering) leaves a call that the client retries on another replica.
        const refused = refusalOf(call.request);
        if (refused) {
          call.sendMetadata(requestIdHeader(ctx.requestId));
          this.fail(method, ctx.requestId, started, refused, callback, ctx);
          return;
        }
        const run = () => withCallBudget(budgetOf(call, ctx), () => handler(call.request, ctx));
        (observed ? observed.run(run) : run()).then(
          (response) => {
            this.logAnswered(method, ctx, started, call.cancelled === true);
            call.sendMetadata(requestIdHeader(ctx.requestId));
            callback(null, response);
          },
          (err: unknown) => {
            call.sendMetadata(requestIdHeader(ctx.requestId));
            this.fail(method, ctx.requestId, started, err, callback, ctx);
          },
        );
      };
      this.withContext(method, policy, call, state, proceed, (err, requestId) => {
        call.sendMetadata(requestIdHeader(requestId));
        this.fail(method, requestId, started, err, callback);
      });
    };
  }

  /**
   * A client-streaming call: the handler reads the stream and returns the one response. It
   * counts as an open stream of the principal (limits) until it is answered; every message the
   * decoder refused is the handler's to answer (refusalOf / itemViolationsOf in server.ts).
   */
  clientStream<Req, Res>(method: string, handler: (call: ServerReadableStream<Req, Res>, ctx: CallContext) => Promise<Res>): handleClientStreamingCall<Req, Res> {
    const policy = methodPolicy(`${this.service}/${method}`);
    return (call: ServerReadableStream<Req, Res>, answer: sendUnaryData<Res>) => {
      const state = new CallState(call);
      const observed = this.observe('client_stream', method, call);
      const callback = answering(state, observed ? observedAnswer(observed, answer) : answer);
      const started = process.hrtime.bigint();
      const proceed = (ctx: CallContext) => {
        let close: () => void;
        try {
          close = this.limits.openStream(ctx.principal.id);
        } catch (err) {
          this.fail(method, ctx.requestId, started, err, callback, ctx);
          return;
        }
        call.sendMetadata(requestIdHeader(ctx.requestId));
        ctx.signal.addEventListener('abort', close);
        const run = () => withCallBudget(budgetOf(call, ctx), () => handler(call, ctx));
        (observed ? observed.run(run) : run()).then(
          (response) => {
            close();
            afterClientInput(call, (cancelled) => {
              this.logAnswered(method, ctx, started, cancelled);
              callback(null, response);
            });
          },
          (err: unknown) => {
            close();
            this.fail(method, ctx.requestId, started, err, callback, ctx);
          },
        );
      };
      this.withContext(method, policy, call, state, proceed, (err, requestId) => {
        call.sendMetadata(requestIdHeader(requestId));
        this.fail(method, requestId, started, err, callback);
      });
    };
  }

  serverStream<Req, Res>(
    method: string,
    handler: (call: ServerWritableStream<Req, Res>, ctx: CallContext) => Promise<void>,
  ): handleServerStreamingCall<Req, Res> {
    const policy = methodPolicy(`${this.service}/${method}`);
    return (call: ServerWritableStream<Req, Res>) => this.runStream('server_stream', method, policy, call, handler);
  }

  bidi<Req, Res>(
    method: string,
    handler: (call: ServerDuplexStream<Req, Res>, ctx: CallContext) => Promise<void>,
  ): handleBidiStreamingCall<Req, Res> {
    const policy = methodPolicy(`${this.service}/${method}`);
    return (call: ServerDuplexStream<Req, Res>) => this.runStream('bidi_stream', method, policy, call, handler);
  }

  /** The per-call concerns of both streaming kinds: the handler writes; errors end the stream with a status. */
  private runStream<C extends StreamCall>(
    type: RpcType,
    method: string,
    policy: MethodPolicy,
    call: C,
    handler: (call: C, ctx: CallContext) => Promise<void>,
  ): void {
    const state = new CallState(call);
    const observed = this.observe(type, method, call);
    const started = process.hrtime.bigint();
    const endWith = (err: unknown) => {
      const e = toGrpcError(err);
      observed?.end(e.code);
      state.answer();
      call.emit('error', { code: e.code, details: e.details, metadata: e.metadata });
      return e;
    };
    const proceed = (ctx: CallContext) => {
      let close: () => void;
      try {
        close = this.limits.openStream(ctx.principal.id);
      } catch (err) {
        const e = endWith(err);
        this.logError(method, ctx.requestId, started, e.code, e.reason, err, ctx);
        return;
      }
      call.sendMetadata(requestIdHeader(ctx.requestId));
      ctx.signal.addEventListener('abort', close);
      const refused = refusalOf((call as { request?: unknown }).request);
      if (refused) {
        close();
        const e = endWith(refused);
        this.logError(method, ctx.requestId, started, e.code, e.reason, refused, ctx);
        return;
      }
      // A stream stays open until its client goes; at shutdown it is ended with a status the
      // client retries (UNAVAILABLE), and its work stopped, instead of being cut with CANCELLED.
      let endedByServer = false;
      const endForShutdown = () => {
        if (state.answered || endedByServer) return;
        endedByServer = true;
        const e = endWith(new DomainError('UNAVAILABLE', 'SHUTTING_DOWN', 'the server is shutting down: connect again (another replica serves) and resume', {}, [], 1000));
        this.logError(method, ctx.requestId, started, e.code, e.reason, null, ctx);
        state.abortWork();
      };
      this.openStreams?.add(endForShutdown);
      const run = () => withCallBudget(budgetOf(call, ctx), () => handler(call, ctx));
      (observed ? observed.run(run) : run()).then(
        () => {
          close();
          this.openStreams?.delete(endForShutdown);
          if (endedByServer) return;
          // A handler that returns because the client cancelled (or its deadline passed) ended a
          // call the client saw end with CANCELLED / DEADLINE_EXCEEDED, not OK.
          afterClientInput(call, (cancelled) => {
            state.answer();
            const endedByClient = cancelled || state.cancelledFirst;
            this.logAnswered(method, ctx, started, endedByClient);
            observed?.end(endedByClient ? status.CANCELLED : status.OK);
            call.end();
          });
        },
        (err: unknown) => {
          close();
          this.openStreams?.delete(endForShutdown);
          if (endedByServer) return;
          const e = endWith(err);
          this.logError(method, ctx.requestId, started, e.code, e.reason, err, ctx);
        },
      );
    };
    this.withContext(method, policy, call, state, proceed, (err, requestId) => {
      call.sendMetadata(requestIdHeader(requestId));
      const e = endWith(err);
      this.logError(method, requestId, started, e.code, e.reason, err);
    });
  }

  /**
   * Runs `proceed` with the call's context, or `refuse` with the reason there is none. At once
   * when the authenticator answers at once (no credentials to verify, or a client certificate);
   * after the verification when it takes a turn of the event loop (a bearer token).
   */
  private withContext(
    method: string,
    policy: MethodPolicy,
    call: AnyCall,
    state: CallState,
    proceed: (ctx: CallContext) => void,
    refuse: (err: unknown, requestId: string) => void,
  ): void {
    // The call's id also for a refusal (unauthenticated, no role, over a limit): echoed and logged.
    const requestId = requestIdOf(call.metadata);
    let ctx: CallContext | Promise<CallContext>;
    try {
      ctx = this.context(method, policy, call, state, requestId);
    } catch (err) {
      refuse(err, requestId);
      return;
    }
    if (ctx instanceof Promise) ctx.then(proceed, (err: unknown) => refuse(err, requestId));
    else proceed(ctx);
  }

  /** Who is calling, whether it may call this method, and whether it is within its limits (throws if not). */
  private context(method: string, policy: MethodPolicy, call: AnyCall, state: CallState, requestId: string): CallContext | Promise<CallContext> {
    const now = Date.now();
    // The peer certificate is looked up only by an authenticator that reads it: grpc-js finds it
    // through the HTTP/2 session's socket proxy, a cost every call would otherwise pay.
    const principal = this.authenticator.authenticate({ metadata: call.metadata, peerCertificate: () => call.getAuthContext?.()?.sslPeerCertificate }, now);
    if (principal instanceof Promise) return principal.then((p) => this.admit(method, policy, p, requestId, now, state));
    return this.admit(method, policy, principal, requestId, now, state);
  }

  private admit(method: string, policy: MethodPolicy, principal: Principal, requestId: string, now: number, state: CallState): CallContext {
    policy.authorize(principal);
    this.limits.admitCall(principal.id, now);
    return new PipelineContext(principal, requestId, method, state);
  }

  private fail<Res>(
    method: string,
    requestId: string,
    started: bigint,
    err: unknown,
    callback: sendUnaryData<Res>,
    ctx?: CallContext,
  ): void {
    const e = toGrpcError(err);
    this.logError(method, requestId, started, e.code, e.reason, err, ctx);
    callback({ code: e.code, details: e.details, metadata: e.metadata }, null);
  }

  /** Whether info lines are written, as of the logger's level `infoLevel` (see log()). */
  private infoEnabled = false;
  private infoLevel: string | undefined;

  /** A handler's success: logged as OK, or as the client saw it when it had ended the call first. */
  private logAnswered(method: string, ctx: CallContext, started: bigint, endedByClient: boolean): void {
    if (endedByClient) this.log(method, ctx, started, status.CANCELLED, 'CALL_ENDED_BY_CLIENT');
    else this.log(method, ctx, started, status.OK, 'OK');
  }

  /** Whether the logger writes info lines. */
  private infoOn(): boolean {
    // isInfoEnabled() walks the transports (~1% of a cached check): asked again only when the
    // level changes (the service's transports have no levels of their own).
    if (this.logger.level !== this.infoLevel) {
      this.infoLevel = this.logger.level;
      this.infoEnabled = this.logger.isInfoEnabled();
    }
    return this.infoEnabled;
  }

  private log(method: string, ctx: CallContext, started: bigint, code: status, reason: string): void {
    if (!this.infoOn()) return;
    logCallLine(this.logger, {
      method,
      code: status[code],
      reason,
      duration_ms: elapsedMs(started),
      request_id: ctx.requestId,
      principal: ctx.principal.id,
    });
  }

  private logError(
    method: string,
    requestId: string,
    started: bigint,
    code: status,
    reason: string,
    err: unknown,
    ctx?: CallContext,
  ): void {
    // A call the client cancelled (or whose deadline passed) ended with that status on the
    // client's side, whatever the work it stopped threw: log what the client saw.
    const ended = ctx?.signal.aborted === true;
    const fields = {
      method,
      code: ended ? 'CANCELLED' : status[code],
      reason: ended ? 'CALL_ENDED_BY_CLIENT' : reason,
      duration_ms: elapsedMs(started),
      request_id: requestId,
      principal: ctx?.principal.id,
    };
    if (!ended && (code === status.INTERNAL || code === status.UNAVAILABLE)) {
      // Driver errors carry SQL and codes, not plaintext personal data: every personal value is
      // stored encrypted or as a blind index. Query parameters are deliberately left out.
      const e = err as { name?: string; code?: string; message?: string; stack?: string };
      this.logger.error('rpc failed', { ...fields, error: { name: e?.name, code: e?.code, message: e?.message, stack: e?.stack } });
    } else if (this.infoOn()) {
      logCallLine(this.logger, fields);
    }
  }
}

/** A call's context; its signal is made on first use (CallState). A class for the reason PipelineBudget is one. */
class PipelineContext implements CallContext {
  constructor(
    readonly principal: Principal,
    readonly requestId: string,
    readonly method: string,
    private readonly state: CallState,
  ) {}

  get signal(): AbortSignal {
    return this.state.signal;
  }
}

/** An answer callback that first reports the call's status to its observation. */
function observedAnswer<Res>(observed: RpcObservation, answer: sendUnaryData<Res>): sendUnaryData<Res> {
  return (err, response) => {
    observed.end(err ? ((err as { code?: status }).code ?? status.UNKNOWN) : status.OK);
    answer(err, response);
  };
}

function requestIdHeader(requestId: string): Metadata {
  const metadata = new Metadata();
  metadata.set('x-request-id', requestId);
  return metadata;
}

function elapsedMs(started: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100;
}

/** The call's deadline and cancellation, which bound every unit of database work it starts (shared/call-budget.ts). */
function budgetOf(call: AnyCall, ctx: CallContext): CallBudget {
  const given = call.getDeadline();
  const deadline = given instanceof Date ? given.getTime() : Number(given);
  return new PipelineBudget(Number.isNaN(deadline) ? Infinity : deadline, ctx);
}

/**
 * A call's budget; its signal is read only when the budget is (CallContext.signal is made on
 * first use). A class, not an object literal with a getter: V8 gives every such literal a map of
 * its own (~1.3 µs each, and garbage that lives long enough to be promoted: measured, it doubled
 * the collector's work per cached check).
 */
class PipelineBudget implements CallBudget {
  constructor(
    readonly deadline: number,
    private readonly ctx: CallContext,
  ) {}

  get signal(): AbortSignal {
    return this.ctx.signal;
  }
}
