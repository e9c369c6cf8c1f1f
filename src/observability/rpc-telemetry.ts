import { Metadata, status } from '@grpc/grpc-js';
import { RpcType, ServiceMetrics } from './metrics';
import type { Tracing } from './tracing';

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
    const metrics = this.metrics;
    const tracing = this.tracing;
    metrics?.rpcStarted(type, service, method);
    const started = process.hrtime.bigint();
    const traced = tracing?.startRpc(service, method, metadata);
    let ended = false;
    return {
      run: <T>(work: () => T): T => (traced && tracing ? tracing.runIn(traced.context, work) : work()),
      end(code: status) {
        if (ended) return;
        ended = true;
        const name = status[code] ?? String(code);
        metrics?.rpcHandled(type, service, method, name, Number(process.hrtime.bigint() - started) / 1e9);
        if (traced && tracing) tracing.endRpc(traced.span, code, name);
      },
    };
  }
}
