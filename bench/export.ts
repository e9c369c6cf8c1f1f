/**
 * Export benchmark (npm run bench:export): time and peak memory of ExportSubjectData for a person
 * with 1,000 events against one with 100,000, in the same run, over gRPC on 127.0.0.1 against an
 * in-process server on SQLite or MariaDB. Stops by itself.
 *
 *   npm run bench:export -- [--db sqlite|mariadb|both] [--quick]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { credentials } from '@grpc/grpc-js';
import { benchDatabase } from './databases';
import { startApp, RunningApp } from '../src/app';
import { loadConfig } from '../src/config/config';
import { encryptField } from '../src/crypto/field-cipher';
import { DEVELOPMENT_PRINCIPAL } from '../src/domain/principal';
import { createLogger } from '../src/logging/logger';
import { ExportSubjectDataResponse, SubjectRightsServiceClient } from '../src/gen/consent/v1/subject_rights';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const dbArg = args.includes('--db') ? args[args.indexOf('--db') + 1] : 'both';
const SMALL = 1_000;
const LARGE = quick ? 10_000 : 100_000;

async function main(): Promise<void> {
  const out = [`## Export benchmark (${new Date().toISOString()})`, '', `Machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, Node ${process.version}${quick ? ' (quick run)' : ''}`, ''];
  for (const kind of dbArg === 'both' ? ['sqlite', 'mariadb'] : [dbArg]) {
    const env = await benchDatabase(kind, 'export');
    if (!env) {
      out.push(`### ${kind}: skipped (not reachable)`, '');
      continue;
    }
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'consent-bench-export-'));
    const base = loadConfig({ PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'error' });
    const keyStore = env.config.kind === 'sqlite' ? { kind: 'sqlite' as const, file: path.join(dataDir, 'keys.sqlite') } : { ...env.config, url: `${env.config.url}_keys` };
    const app = await startApp({ ...base, database: env.config, keyStore }, { logger: createLogger('error', new PassThrough()) });
    try {
      const small = await measure(app, 'small', SMALL);
      const large = await measure(app, 'large', LARGE);
      out.push(
        `### ${kind}`,
        '',
        '| events | export time | package bytes | events/s | peak live-heap growth | peak RSS growth |',
        '| --: | --: | --: | --: | --: | --: |',
        ...[small, large].map((r) => `| ${r.events.toLocaleString('en-US')} | ${(r.ms / 1000).toFixed(2)} s | ${r.bytes.toLocaleString('en-US')} | ${Math.round(r.events / (r.ms / 1000)).toLocaleString('en-US')} | ${mb(r.heap)} | ${mb(r.rss)} |`),
        '',
        `Time ratio ${LARGE.toLocaleString('en-US')} / ${SMALL.toLocaleString('en-US')} events: ${(large.ms / small.ms).toFixed(1)}x (${LARGE / SMALL}x the data); peak live-heap growth ratio: ${(large.heap / Math.max(small.heap, 1)).toFixed(1)}x (bounded memory: should stay near 1x)${global.gc ? '' : ' [run with --expose-gc for live-heap figures]'}.`,
        '',
      );
    } finally {
      await app.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await env.drop();
    }
  }
  console.log(out.join('\n'));
}

async function measure(app: RunningApp, tag: string, events: number) {
  const { tenants, purposes, recorder, keys, subjectRights } = app.services;
  const tenantId = `export-${tag}`;
  await tenants.create(DEVELOPMENT_PRINCIPAL, { tenantId, displayName: tenantId, settings: {}, requestId: '' });
  await purposes.create(DEVELOPMENT_PRINCIPAL, tenantId, { purposeId: 'news', displayName: 'news', category: 'MARKETING', description: '', requestId: '' });
  await purposes.publishNotice(DEVELOPMENT_PRINCIPAL, tenantId, 'news', { language: 'en', text: 'news', requestId: 'n1' });
  const phoneNumber = '+4915112345678';
  const { event } = await recorder.record(DEVELOPMENT_PRINCIPAL, {
    tenantId, identifier: { phoneNumber }, purposeId: 'news', channel: 'WHATSAPP', kind: 'OPT_IN', method: 'WEB_FORM',
    notice: { purposeId: 'news', version: 1 }, evidence: { userAgent: 'bench' }, jurisdiction: 'DE', requestId: 'seed', fingerprintSource: 'seed',
  });
  const key = await keys.subjectKey(tenantId, event.subjectId);
  const [template] = await app.dataSource.query('SELECT * FROM consent_events WHERE id = ?', [event.id]);
  const columns = ['id', 'tenant_id', 'subject_id', 'kind', 'purpose_id', 'channel', 'event_time', 'record_time', 'method', 'notice_purpose_id', 'notice_version', 'notice_sha256', 'notice_language', 'principal', 'lawful_basis', 'jurisdiction', 'request_id', 'request_fingerprint', 'evidence_ciphertext'];
  for (let i = 1; i < events; i += 500) {
    const rows: unknown[][] = [];
    for (let j = i; j < Math.min(events, i + 500); j++) {
      const id = randomBytes(16).toString('hex');
      const evidence = encryptField(key.key, key.kid, { tenant: tenantId, subject: event.subjectId, table: 'consent_events', column: 'evidence_ciphertext', row: id }, JSON.stringify({ userAgent: `bench/${j}`, sourceIp: '203.0.113.0' }));
      rows.push([id, tenantId, event.subjectId, j % 2 ? 'OPT_OUT' : 'OPT_IN', 'news', 'WHATSAPP', Number(template.event_time) + j, Number(template.record_time) + j, 'WEB_FORM', template.notice_purpose_id, template.notice_version, template.notice_sha256, template.notice_language, 'bench', template.lawful_basis, 'DE', `bulk-${j}`, template.request_fingerprint, evidence]);
    }
    await app.dataSource.query(`INSERT INTO consent_events (${columns.join(', ')}) VALUES ${rows.map(() => `(${columns.map(() => '?').join(', ')})`).join(', ')}`, rows.flat());
  }
  const request = await subjectRights.create(DEVELOPMENT_PRINCIPAL, tenantId, { kind: 'ACCESS', identifier: { phoneNumber }, receivedVia: 'EMAIL', requestId: 'r1' });
  await subjectRights.verifyIdentity(DEVELOPMENT_PRINCIPAL, tenantId, request.id, 'ID_DOCUMENT', 'bench');

  global.gc?.();
  await new Promise((r) => setTimeout(r, 200));
  const baseHeap = process.memoryUsage().heapUsed;
  const baseRss = process.memoryUsage().rss;
  let peakHeap = baseHeap;
  let peakRss = baseRss;
  // With --expose-gc (npm run bench:export sets it) each sample collects garbage first, so the
  // figure is live memory, not garbage the collector had no reason to free yet.
  const sampler = setInterval(() => {
    global.gc?.();
    const m = process.memoryUsage();
    peakHeap = Math.max(peakHeap, m.heapUsed);
    peakRss = Math.max(peakRss, m.rss);
  }, 20);
  const client = new SubjectRightsServiceClient(`127.0.0.1:${app.port}`, credentials.createInsecure());
  const start = process.hrtime.bigint();
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const stream = client.exportSubjectData({ name: `tenants/${tenantId}/requests/${request.id}` });
    stream.on('data', (p: ExportSubjectDataResponse) => {
      if (p.part?.$case === 'packageChunk') bytes += p.part.value.length;
    });
    stream.on('error', reject);
    stream.on('end', () => resolve());
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  clearInterval(sampler);
  client.close();
  return { events, ms, bytes, heap: peakHeap - baseHeap, rss: peakRss - baseRss };
}


const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
