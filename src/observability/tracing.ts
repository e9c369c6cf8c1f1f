import { Context, context, isSpanContextValid, Link, ROOT_CONTEXT, Span, SpanKind, SpanStatusCode, trace, Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { TracingExporter } from '../config/tracing-config';

/**
 * OpenTelemetry traces (docs/operations.md, "Tracing"): a server span per RPC, linked to the
 * caller's trace through the W3C `traceparent` of the gRPC metadata, a span per unit of database
 * work and per statement under it, and a span per group-commit batch. Off unless configured by the
 * standard environment variables: OTEL_TRACES_EXPORTER (otlp | console | none), or an OTLP
 * endpoint (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, read by the
 * exporter itself, with the headers, protocol and timeout variables); OTEL_SERVICE_NAME
 * (default consent-ledger); OTEL_TRACES_SAMPLER / _ARG (read by the SDK); OTEL_SDK_DISABLED=true
 * turns it off.
 *
 * No personal data in attributes: spans carry method names, status codes, tenant ids and SQL text
 * with placeholders (never parameter values); identifiers are never attributes.
 *
 * The provider is the service's own (not registered as the global one), so several servers in
 * one process (tests) each keep theirs; the context manager is global, as context propagation
 * needs it, and registered once.
 */
let contextManagerRegistered = false;

/** Reads W3C trace context from gRPC metadata (its keys are lower-case, values strings or buffers). */
const metadataGetter = {
  keys: (carrier: MetadataLike) => Object.keys(carrier.getMap()),
  get: (carrier: MetadataLike, key: string) => {
    const values = carrier.get(key).map((v) => (typeof v === 'string' ? v : v.toString('utf8')));
    return values.length === 0 ? undefined : values.length === 1 ? values[0] : values;
  },
};

interface MetadataLike {
  get(key: string): Array<string | Buffer>;
  getMap(): Record<string, unknown>;
}

export class Tracing {
  readonly tracer: Tracer;
  private readonly provider: NodeTracerProvider;
  private readonly propagator = new W3CTraceContextPropagator();

  /** `exporter`: a configured kind, or an exporter object (tests: an in-memory one, spans exported at once). */
  constructor(exporter: TracingExporter | SpanExporter, serviceName = process.env.OTEL_SERVICE_NAME || 'consent-ledger') {
    if (!contextManagerRegistered) {
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      contextManagerRegistered = true;
    }
    const processor =
      exporter === 'otlp' ? new BatchSpanProcessor(new OTLPTraceExporter()) : exporter === 'console' ? new BatchSpanProcessor(new ConsoleSpanExporter()) : new SimpleSpanProcessor(exporter);
    this.provider = new NodeTracerProvider({ resource: resourceFromAttributes({ 'service.name': serviceName }), spanProcessors: [processor] });
    this.tracer = this.provider.getTracer('consent-ledger');
  }

  /** The server span of an RPC, child of the caller's span when its metadata carries one. */
  startRpc(service: string, method: string, metadata: MetadataLike): { span: Span; context: Context } {
    const parent = this.propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
    const span = this.tracer.startSpan(
      `${service}/${method}`,
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method } },
      parent,
    );
    return { span, context: trace.setSpan(parent, span) };
  }

  /** Runs `work` with `ctx` as the active context (what spans started inside it are children of). */
  runIn<T>(ctx: Context, work: () => T): T {
    return context.with(ctx, work);
  }

  /** Ends an RPC's span with its gRPC status. */
  endRpc(span: Span, code: number, codeName: string): void {
    span.setAttribute('rpc.grpc.status_code', code);
    if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: codeName });
    span.end();
  }

  /** Runs `work` in a child span of the active one; the span records a failure's name only. */
  async inSpan<T>(name: string, attributes: Record<string, string | number | boolean>, work: () => Promise<T>): Promise<T> {
    const span = this.tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, context.active());
    try {
      return await context.with(trace.setSpan(context.active(), span), work);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as { name?: string })?.name ?? 'error' });
      throw err;
    } finally {
      span.end();
    }
  }

  /** The active context (a write's submitter: its RPC span), kept with the write until its batch commits. */
  current(): Context {
    return context.active();
  }

  /**
   * Runs the commit of a group-commit batch in a span of its own (`consent.commit_batch`): a child of
   * the span of the call whose write came first in it, linked to the spans of every call whose
   * writes it carries (span links), so each call's trace leads to the batch it waited for. Its
   * attributes: the tenant id, the number of writes and of calls; nothing of the writes themselves.
   */
  async inBatch<T>(tenantId: string, contexts: unknown[], work: () => Promise<T>): Promise<T> {
    const links: Link[] = [];
    const seen = new Set<string>();
    for (const c of contexts) {
      const linked = c ? trace.getSpanContext(c as Context) : undefined;
      if (!linked || !isSpanContextValid(linked) || seen.has(linked.spanId)) continue;
      seen.add(linked.spanId);
      links.push({ context: linked });
    }
    const parent = (contexts[0] as Context | undefined) ?? ROOT_CONTEXT;
    const span = this.tracer.startSpan(
      'consent.commit_batch',
      { kind: SpanKind.INTERNAL, attributes: { 'consent.tenant': tenantId, 'consent.batch.size': contexts.length, 'consent.batch.calls': links.length }, links },
      parent,
    );
    try {
      return await context.with(trace.setSpan(parent, span), work);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as { name?: string })?.name ?? 'error' });
      throw err;
    } finally {
      span.end();
    }
  }

  /** Sends what is buffered and stops. */
  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
