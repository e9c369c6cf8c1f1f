import { context, SpanKind, SpanStatusCode, trace, Tracer } from '@opentelemetry/api';
import { DataSource } from 'typeorm';

type Query = (this: unknown, ...args: unknown[]) => Promise<unknown>;

/** The query runner classes already wrapped, and the tracer their statements report to. */
const wrapped = new WeakMap<object, { tracer: Tracer | undefined }>();

/** Longest SQL text kept in a span: statements are written with placeholders, so no values. */
const MAX_STATEMENT = 2000;

/**
 * A span per SQL statement, child of the span active when it was sent (an RPC's unit of database
 * work), on the query runner class of `dataSource`'s driver (TypeORM sends every statement of
 * both drivers through `QueryRunner.query`). Only statements made while a span is active get one:
 * background work outside any traced call adds none. Parameters are never recorded: they hold
 * blind indexes and ciphertexts, and statements are written with placeholders.
 *
 * The wrap is made once per runner class; the tracer is the latest one given (one traced server
 * per process is the supported case).
 */
export function traceStatements(dataSource: DataSource, tracer: Tracer): void {
  const runner = dataSource.createQueryRunner();
  const proto = Object.getPrototypeOf(runner) as { query: Query };
  void runner.release();
  const existing = wrapped.get(proto);
  if (existing) {
    existing.tracer = tracer;
    return;
  }
  const state: { tracer: Tracer | undefined } = { tracer };
  wrapped.set(proto, state);
  const system = dataSource.options.type === 'better-sqlite3' ? 'sqlite' : 'mysql';
  const original = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const active = context.active();
    if (!state.tracer || !trace.getSpan(active)?.isRecording()) return original.apply(this, args);
    const sql = String(args[0]).trim();
    const span = state.tracer.startSpan(
      `db ${sql.split(/\s+/, 1)[0].toUpperCase()}`,
      { kind: SpanKind.CLIENT, attributes: { 'db.system': system, 'db.statement': sql.slice(0, MAX_STATEMENT) } },
      active,
    );
    return original.apply(this, args).then(
      (result) => {
        span.end();
        return result;
      },
      (err: unknown) => {
        span.setStatus({ code: SpanStatusCode.ERROR, message: String((err as { code?: unknown })?.code ?? (err as { name?: unknown })?.name ?? 'error') });
        span.end();
        throw err;
      },
    );
  };
}
