import { request } from 'node:http';
import { expect } from 'chai';
import { ConsentEventKind } from '../../src/gen/consent/v1/consent';
import { CreateRequestRequest, ReceivedVia, RequestKind } from '../../src/gen/consent/v1/subject_rights';
import { loadConfig } from '../../src/config/config';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';

/** GET a path of the metrics port: status and body. */
function get(port: number, path: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), type: String(res.headers['content-type']) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample line `name{labels} value` (labels in any order, all given must match). */
function sample(body: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').pop());
  }
  return undefined;
}

describe('metrics configuration', function () {
  it('off unless METRICS_PORT is set; loopback unless METRICS_BIND_ADDRESS says otherwise; the tenant label bound is configurable', function () {
    expect(loadConfig({}).metrics).to.equal(undefined);
    expect(loadConfig({ METRICS_PORT: '9464' }).metrics).to.deep.equal({ port: 9464, bindAddress: '127.0.0.1', maxTenants: 100 });
    expect(loadConfig({ METRICS_PORT: '0', METRICS_BIND_ADDRESS: '0.0.0.0', METRICS_MAX_TENANTS: '5' }).metrics).to.deep.equal({ port: 0, bindAddress: '0.0.0.0', maxTenants: 5 });
    expect(() => loadConfig({ METRICS_PORT: '70000' })).to.throw(/METRICS_PORT/);
    expect(() => loadConfig({ METRICS_PORT: '9464', METRICS_MAX_TENANTS: '0' })).to.throw(/METRICS_MAX_TENANTS/);
  });
});

forEachDatabase('metrics (/metrics on METRICS_PORT)', (db, kind) => {
  let s: TestServer;
  const PHONE = '+4915199887766';
  const EMAIL = 'metrics.person@example.org';
  const IP = '203.0.113.77';
  const NAME = 'Wilhelmina Metricsperson';
  before(async function () {
    s = await startTestServer(db(), { metrics: { port: 0, bindAddress: '127.0.0.1', maxTenants: 3 } });
    for (const t of ['metrics-a', 'metrics-b', 'metrics-c', 'metrics-d', 'metrics-e']) await seedTenant(s, t);
  });
  after(async () => s?.stop());

  it('serves the exposition on its own port, 404 elsewhere', async function () {
    const port = s.app.metricsPort!;
    expect(port).to.be.a('number').and.not.equal(s.app.port);
    const ok = await get(port, '/metrics');
    expect(ok.status).to.equal(200);
    expect(ok.type).to.include('text/plain');
    expect(sample(ok.body, 'process_cpu_seconds_total'), 'process metrics').to.be.a('number');
    expect((await get(port, '/')).status).to.equal(404);
    expect((await get(port, '/metrics/../secret')).status).to.equal(404);
  });

  it('counts checks, writes, the cache, commit batches, the pools, audit logs and open requests, with no personal data anywhere in it', async function () {
    const T = 'metrics-a';
    // Personal data planted in every field that could carry it.
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(PHONE), evidence: { sourceIp: IP, userAgent: NAME, pageUrl: `https://shop.example/?email=${EMAIL}`, inboundMessageId: '', freeText: NAME } }));
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(EMAIL) }));
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(EMAIL), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
    for (let i = 0; i < 3; i++) await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(PHONE) }) } as never);
    await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email(EMAIL) }) } as never);
    await call(s.rights, s.rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifier: phone(PHONE), receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL, requestId: 'metrics-dsr-1' }));
    s.clock.advance(26 * 24 * 3_600_000); // due in 4 days now
    await s.app.services.auditService.checkpointAll();

    const { body } = await get(s.app.metricsPort!, '/metrics');
    for (const planted of [PHONE, PHONE.slice(1), '15199887766', EMAIL, 'metrics.person', IP, NAME, 'Wilhelmina']) {
      expect(body.includes(planted), `"${planted}" in the exposition`).to.equal(false);
    }
    expect(sample(body, 'consent_checks_total', { tenant: T, verdict: 'ALLOW' }), 'allowed checks').to.equal(3);
    expect(sample(body, 'consent_checks_total', { tenant: T, verdict: 'DENY' }), 'denied checks').to.equal(1);
    expect(sample(body, 'consent_writes_total', { tenant: T, kind: 'OPT_IN' })).to.equal(2);
    expect(sample(body, 'consent_writes_total', { tenant: T, kind: 'OPT_OUT' })).to.equal(1);
    expect(sample(body, 'grpc_server_handled_total', { grpc_service: 'consent.v1.ConsentService', grpc_method: 'CheckConsent', grpc_code: 'OK' })).to.equal(4);
    expect(sample(body, 'grpc_server_started_total', { grpc_method: 'RecordConsent', grpc_type: 'unary' })).to.equal(3);
    expect(sample(body, 'grpc_server_handling_seconds_count', { grpc_method: 'CheckConsent' })).to.equal(4);
    expect(sample(body, 'consent_decision_cache_hits_total')).to.be.at.least(1);
    expect(sample(body, 'consent_decision_cache_misses_total')).to.be.at.least(1);
    expect(sample(body, 'consent_decision_cache_entries')).to.be.at.least(1);
    expect(sample(body, 'consent_commit_batch_size_count')).to.be.at.least(1);
    expect(sample(body, 'consent_commit_seconds_count')).to.be.at.least(1);
    expect(sample(body, 'consent_audit_log_size', { tenant: T })).to.be.at.least(3);
    expect(sample(body, 'consent_audit_checkpoint_age_seconds', { tenant: T })).to.be.a('number');
    expect(sample(body, 'consent_subject_requests', { tenant: T, state: 'open' })).to.equal(1);
    expect(sample(body, 'consent_subject_requests', { tenant: T, state: 'due_7d' })).to.equal(1);
    expect(sample(body, 'consent_subject_requests', { tenant: T, state: 'overdue' })).to.equal(0);
    if (kind === 'mariadb') expect(sample(body, 'consent_db_pool_connections', { database: 'data', state: 'idle' }), 'pool of the data database').to.be.at.least(1);

    s.clock.advance(6 * 24 * 3_600_000); // past its due time (one calendar month after receipt)
    const later = (await get(s.app.metricsPort!, '/metrics')).body;
    expect(sample(later, 'consent_subject_requests', { tenant: T, state: 'overdue' })).to.equal(1);
  });

  it('consent_audit_log_size is the log size at the scrape, not the one before (found by a probe: one scrape behind)', async function () {
    const T = 'metrics-a';
    const size = async () => Number(((await s.app.dataSource.query('SELECT size FROM audit_heads WHERE tenant_id = ?', [T])) as Array<{ size: unknown }>)[0].size);
    await get(s.app.metricsPort!, '/metrics');
    for (let i = 0; i < 5; i++) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`+4915199887${String(700 + i)}`) }));
    const { body } = await get(s.app.metricsPort!, '/metrics');
    expect(sample(body, 'consent_audit_log_size', { tenant: T })).to.equal(await size());
  });

  it('the number of tenant label values is bounded: tenants past METRICS_MAX_TENANTS are counted as _other', async function () {
    for (const t of ['metrics-b', 'metrics-c', 'metrics-d', 'metrics-e']) {
      await call(s.consent, s.consent.checkConsent, { parent: `tenants/${t}`, query: query(t, { subjectIdentifier: phone(PHONE) }) } as never);
    }
    const { body } = await get(s.app.metricsPort!, '/metrics');
    const tenants = new Set([...body.matchAll(/tenant="([^"]*)"/g)].map((m) => m[1]));
    expect(tenants.size, [...tenants].join(', ')).to.be.at.most(4);
    expect(tenants.has('_other')).to.equal(true);
  });
});
