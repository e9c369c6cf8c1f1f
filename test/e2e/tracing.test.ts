import { Metadata } from '@grpc/grpc-js';
import { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { expect } from 'chai';
import { tracingFromEnv } from '../../src/config/tracing-config';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';

describe('tracing configuration (OTEL_* variables)', function () {
  it('off unless an exporter or an OTLP endpoint is configured; OTEL_SDK_DISABLED and none turn it off; nonsense is refused', function () {
    expect(tracingFromEnv({})).to.equal(undefined);
    expect(tracingFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).to.equal('otlp');
    expect(tracingFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' })).to.equal('otlp');
    expect(tracingFromEnv({ OTEL_TRACES_EXPORTER: 'console' })).to.equal('console');
    expect(tracingFromEnv({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' })).to.equal(undefined);
    expect(tracingFromEnv({ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' })).to.equal(undefined);
    expect(() => tracingFromEnv({ OTEL_TRACES_EXPORTER: 'jaeger' })).to.throw(/OTEL_TRACES_EXPORTER/);
  });
});

/**
 * Spans (issue 17 point 2), into an in-memory exporter: a server span per RPC, a child of the
 * caller's span given as W3C traceparent; units of database work and statements under it; the
 * commit batches; and no personal data in any attribute.
 */
forEachDatabase('tracing (OpenTelemetry spans)', (db) => {
  let s: TestServer;
  const exporter = new InMemorySpanExporter();
  const PHONE = '+4915177665544';
  const EMAIL = 'traced.person@example.org';
  const IP = '198.51.100.23';
  before(async function () {
    s = await startTestServer(db(), {}, { spanExporter: exporter });
    await seedTenant(s, 'traced');
  });
  after(async () => s?.stop());

  const spans = () => exporter.getFinishedSpans();
  const attributesText = (list: ReadableSpan[]) => JSON.stringify(list.map((x) => [x.name, x.attributes]));

  it("an RPC's server span continues the caller's trace, with its database work and statements under it", async function () {
    exporter.reset();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const metadata = new Metadata();
    metadata.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
    await call(s.consent, s.consent.recordConsent, consentRequest('traced', { subjectIdentifier: phone(PHONE), evidence: { sourceIp: IP, userAgent: 'ua', pageUrl: '', inboundMessageId: '', freeText: EMAIL } }), metadata);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const server = spans().find((x) => x.name === 'consent.v1.ConsentService/RecordConsent');
    expect(server, attributesText(spans())).to.not.equal(undefined);
    expect(server!.spanContext().traceId, 'the caller\'s trace').to.equal(traceId);
    expect(server!.parentSpanContext?.spanId).to.equal('00f067aa0ba902b7');
    expect(server!.attributes['rpc.system']).to.equal('grpc');
    expect(server!.attributes['rpc.grpc.status_code']).to.equal(0);
    const inTrace = spans().filter((x) => x.spanContext().traceId === traceId);
    expect(inTrace.some((x) => x.name === 'consent.commit_batch'), 'the commit batch in the trace').to.equal(true);
    expect(inTrace.some((x) => x.name === 'db.transaction'), 'its transaction in the trace').to.equal(true);
    expect(inTrace.some((x) => x.name.startsWith('db ') && String(x.attributes['db.statement']).length > 0), 'statements in the trace').to.equal(true);
  });

  it('a span per commit batch: a child of the first call whose write it carries, linked to every call in it, its transaction under it', async function () {
    exporter.reset();
    const calls = 24;
    const traceIds = Array.from({ length: calls }, (_, i) => `${(i + 1).toString(16).padStart(2, '0')}${'ab'.repeat(15)}`);
    // Concurrent writes of one tenant: the first commits alone or with a few, those arriving meanwhile form the next batches.
    await Promise.all(
      traceIds.map((traceId, i) => {
        const metadata = new Metadata();
        metadata.set('traceparent', `00-${traceId}-${(i + 1).toString(16).padStart(16, '0')}-01`);
        return call(s.consent, s.consent.recordConsent, consentRequest('traced', { subjectIdentifier: phone(`+49151776${String(i).padStart(5, '0')}`), requestId: `batch-span-${i}`, evidence: { sourceIp: IP, userAgent: 'ua', pageUrl: '', inboundMessageId: '', freeText: EMAIL } }), metadata);
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    const rpcs = spans().filter((x) => x.name === 'consent.v1.ConsentService/RecordConsent');
    expect(rpcs).to.have.length(calls);
    const batches = spans().filter((x) => x.name === 'consent.commit_batch');
    expect(batches.length, 'at least one batch').to.be.greaterThan(0);
    expect(batches.reduce((n, b) => n + Number(b.attributes['consent.batch.size']), 0), 'every write in exactly one batch').to.equal(calls);
    expect(batches.some((b) => Number(b.attributes['consent.batch.size']) > 1), `${calls} concurrent writes share batches (sizes ${batches.map((b) => b.attributes['consent.batch.size']).join(', ')})`).to.equal(true);
    const rpcBySpanId = new Map(rpcs.map((r) => [r.spanContext().spanId, r]));
    const linkedOnce = new Map<string, number>();
    for (const batch of batches) {
      expect(batch.attributes['consent.tenant']).to.equal('traced');
      expect(batch.links.length, 'one link per call (one write each)').to.equal(Number(batch.attributes['consent.batch.size']));
      expect(batch.attributes['consent.batch.calls']).to.equal(batch.links.length);
      for (const link of batch.links) {
        const rpc = rpcBySpanId.get(link.context.spanId);
        expect(rpc, 'a link leads to a call').to.not.equal(undefined);
        expect(link.context.traceId).to.equal(rpc!.spanContext().traceId);
        linkedOnce.set(link.context.spanId, (linkedOnce.get(link.context.spanId) ?? 0) + 1);
      }
      // A child of one of the calls it carries (the first), in that call's trace.
      const parent = rpcBySpanId.get(batch.parentSpanContext?.spanId ?? '');
      expect(parent, 'the batch is a child of a call').to.not.equal(undefined);
      expect(batch.links.map((l) => l.context.spanId), 'the parent is one of the calls in the batch').to.include(parent!.spanContext().spanId);
      expect(batch.spanContext().traceId).to.equal(parent!.spanContext().traceId);
      // Its transaction (and so its statements) under it.
      const transactions = spans().filter((x) => x.name === 'db.transaction' && x.parentSpanContext?.spanId === batch.spanContext().spanId);
      expect(transactions.length, 'the batch transaction under the batch span').to.be.greaterThan(0);
    }
    expect([...rpcBySpanId.keys()].every((id) => linkedOnce.get(id) === 1), 'every call linked from exactly one batch').to.equal(true);
    const text = JSON.stringify(batches.map((b) => b.links)) + attributesText(spans());
    for (const planted of [PHONE, '49151776', EMAIL, IP]) expect(text.includes(planted), `"${planted}" in a span`).to.equal(false);
  });

  it('a check without caller context starts its own trace; a failure is marked; no personal data in any span', async function () {
    exporter.reset();
    await call(s.consent, s.consent.checkConsent, { parent: 'tenants/traced', query: query('traced', { subjectIdentifier: phone(PHONE) }) } as never);
    await call(s.consent, s.consent.checkConsent, { parent: 'tenants/traced', query: query('traced', { subjectIdentifier: email(EMAIL) }) } as never);
    await call(s.consent, s.consent.checkConsent, { parent: 'tenants/nope', query: query('nope', { subjectIdentifier: phone(PHONE) }) } as never).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const checks = spans().filter((x) => x.name === 'consent.v1.ConsentService/CheckConsent');
    expect(checks).to.have.length(3);
    expect(checks.filter((x) => x.status.code === 2), 'the failed one marked').to.have.length(1);
    const text = attributesText(spans());
    for (const planted of [PHONE, PHONE.slice(1), EMAIL, IP]) expect(text.includes(planted), `"${planted}" in a span`).to.equal(false);
  });
});
