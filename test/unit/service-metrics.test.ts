import { expect } from 'chai';
import { Counter, Histogram, Registry } from 'prom-client';
import { ServiceMetrics } from '../../src/observability/metrics';

/** The exposition lines of the series named `names` (HELP, TYPE and samples), sorted: label order inside a line left as written. */
function series(text: string, names: string[]): string[] {
  return text
    .split('\n')
    .filter((l) => names.some((n) => l.startsWith(`${n}{`) || l.startsWith(`${n} `) || l.startsWith(`# HELP ${n} `) || l.startsWith(`# TYPE ${n} `)))
    .map(normaliseLabels)
    .sort();
}

/** A sample line with its labels sorted by name (Prometheus does not care about their order). */
function normaliseLabels(line: string): string {
  const m = /^([^{\s]+)\{(.*)\} (.*)$/.exec(line);
  if (!m) return line;
  const labels = m[2].match(/[a-z_]+="(?:[^"\\]|\\.)*"/g) ?? [];
  return `${m[1]}{${labels.sort().join(',')}} ${m[3]}`;
}

/**
 * The per-call series (grpc_server_started_total, _handled_total, grpc_server_handling_seconds,
 * consent_checks_total) are counted outside prom-client and handed to it when scraped (metrics.ts):
 * their exposition must be what prom-client's own Counter and Histogram would write for the same
 * calls, bucket for bucket.
 */
describe('ServiceMetrics: the per-call series as prom-client would expose them', function () {
  it('the same exposition as prom-client counters and a histogram fed the same calls', async function () {
    const metrics = new ServiceMetrics(2);
    const reference = new Registry();
    const registers = [reference];
    const started = new Counter({ name: 'grpc_server_started_total', help: 'RPCs started on the server.', labelNames: ['grpc_type', 'grpc_service', 'grpc_method'], registers });
    const handled = new Counter({ name: 'grpc_server_handled_total', help: 'RPCs completed on the server, regardless of success or failure.', labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'], registers });
    const handling = new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Time the server took to answer an RPC (to the end of the stream for streams).',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    const checks = new Counter({ name: 'consent_checks_total', help: 'Consent decisions made (each query of a batch or stream counts), by verdict and reason.', labelNames: ['tenant', 'verdict', 'reason'], registers });

    const methods = [
      ['unary', 'consent.v1.ConsentService', 'CheckConsent'],
      ['bidi_stream', 'consent.v1.ConsentService', 'StreamCheckConsent'],
      ['unary', 'consent.v1.TenantService', 'CreateTenant'],
    ] as const;
    const codes = ['OK', 'OK', 'OK', 'INVALID_ARGUMENT', 'UNAVAILABLE'];
    // Times on and around every bucket bound, below the first and above the last.
    const times = [0, 0.0001, 0.0005, 0.00051, 0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.3, 0.5, 0.9, 1, 2.5, 4, 5, 10, 10.5, 100];
    let n = 0;
    for (const [type, service, method] of methods) {
      for (const t of times) {
        const code = codes[n++ % codes.length];
        metrics.rpcStarted(type, service, method);
        started.inc({ grpc_type: type, grpc_service: service, grpc_method: method });
        metrics.rpcHandled(type, service, method, code, t);
        handled.inc({ grpc_type: type, grpc_service: service, grpc_method: method, grpc_code: code });
        handling.observe({ grpc_type: type, grpc_service: service, grpc_method: method }, t);
      }
    }
    metrics.rpcStarted('unary', 'consent.v1.ConsentService', 'RecordConsent'); // started, not yet answered
    started.inc({ grpc_type: 'unary', grpc_service: 'consent.v1.ConsentService', grpc_method: 'RecordConsent' });
    // Decisions of three tenants with a bound of two: the third is counted as _other.
    for (const [tenant, verdict, reason, label] of [
      ['t1', 'ALLOW', 'OPTED_IN', 't1'],
      ['t1', 'ALLOW', 'OPTED_IN', 't1'],
      ['t1', 'DENY', 'OPTED_OUT', 't1'],
      ['t2', 'DENY', 'NO_CONSENT', 't2'],
      ['t3', 'ALLOW', 'OPTED_IN', '_other'],
      ['t3', 'DENY', 'OPTED_OUT', '_other'],
    ]) {
      metrics.checkDecided(tenant, verdict, reason);
      checks.inc({ tenant: label, verdict, reason });
    }

    const names = ['grpc_server_started_total', 'grpc_server_handled_total', 'grpc_server_handling_seconds_bucket', 'grpc_server_handling_seconds_sum', 'grpc_server_handling_seconds_count', 'grpc_server_handling_seconds', 'consent_checks_total'];
    const ours = series(await metrics.exposition(), names);
    const theirs = series(await reference.metrics(), names);
    expect(ours.length, "every series present").to.be.greaterThan(70);
    expect(ours).to.deep.equal(theirs);
    // Scraped twice: the totals are not added up again.
    expect(series(await metrics.exposition(), names)).to.deep.equal(theirs);
    // And in the JSON form (registry.getMetricsAsJSON) the histogram has the same values too.
    const json = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'grpc_server_handling_seconds')!;
    const reference_json = (await reference.getMetricsAsJSON()).find((m) => m.name === 'grpc_server_handling_seconds')!;
    const key = (v: { metricName?: string; labels: object; value: number }) => `${v.metricName} ${JSON.stringify(Object.entries(v.labels).sort())} ${v.value}`;
    expect(json.values.map(key).sort()).to.deep.equal(reference_json.values.map(key).sort());
  });
});
