/**
 * Whether traces are exported, and how, from the standard OpenTelemetry environment variables
 * (docs/operations.md, "Tracing"). Kept apart from tracing.ts so that reading the configuration
 * does not load the SDK: with tracing off, none of it is loaded.
 */
export type TracingExporter = 'otlp' | 'console';

/** OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none: off; otlp or console: that; unset: otlp when an OTLP endpoint is set, else off. */
export function tracingFromEnv(env: Record<string, string | undefined>): TracingExporter | undefined {
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return undefined;
  const exporter = (env.OTEL_TRACES_EXPORTER ?? '').trim().toLowerCase();
  if (exporter === 'none') return undefined;
  if (exporter === 'otlp' || exporter === 'console') return exporter;
  if (exporter !== '') throw new Error(`OTEL_TRACES_EXPORTER must be otlp, console or none (got "${exporter}")`);
  return env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? 'otlp' : undefined;
}
