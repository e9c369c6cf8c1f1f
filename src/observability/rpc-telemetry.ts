import { Metadata, status } from '@grpc/grpc-js';
import { RpcType, ServiceMetrics } from './metrics';
import type { Tracing } from './tracing';
import type { Context, Span } from '@opentelemetry/api';

/** One call as metrics and traces see it: what it runs in, and how it ended. */
export interface RpcObservation {
  /** Runs the handler inside the call's trace context (its database spans become children). */
  run<T>(work: () => T): T;
  /** The call's final status; called once. */
  end(code: status): void;
}

/**
 * What the call pipeline reports about each RPC: the go-grpc-prometheus metrics and an
 * OpenTelemetry server span, either, both or neither (then the pipeline does no work for them).
 */
export class RpcTelemetry {
  constructor(
    private readonly metrics: ServiceMetrics | undefined,
    private readonly tracing: Tracing | undefined,
  ) {}

  get enabled(): boolean {
    return this.metrics !== undefined || this.tracing !== undefined;
  }

  begin(type: RpcType, service: string, method: string, metadata: Metadata): RpcObservation {
    this.metrics?.rpcStarted(type, service, method);
    return new Observation(this.metrics, this.tracing, type, service, method, this.tracing?.startRpc(service, method, metadata));
  }
}

/** One call's observation: an instance of one class (no closures per call), its start as a plain number. */
class Observation implements RpcObservation {
  private readonly started = performance.now();
  private ended = false;

  constructor(
    private readonly metrics: ServiceMetrics | undefined,
    private readonly tracing: Tracing | undefined,
    private readonly type: RpcType,
    private readonly service: string,
    private readonly method: string,
    private readonly traced: { span: Span; context: Context } | undefined,
  ) {}

  run<T>(work: () => T): T {
    return this.traced && this.tracing ? this.tracing.runIn(this.traced.context, work) : work();
  }

  end(code: status): void {
    if (this.ended) return;
    this.ended = true;
    const name = status[code] ?? String(code);
    this.metrics?.rpcHandled(this.type, this.service, this.method, name, (performance.now() - this.started) / 1000);
    if (this.traced && this.tracing) this.tracing.endRpc(this.traced.span, code, name);
  }
}
