import { randomBytes } from 'node:crypto';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { encryptField } from '../../src/crypto/field-cipher';
import { DEVELOPMENT_PRINCIPAL } from '../../src/domain/principal';
import { ExportSubjectDataResponse, SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { startTestServer, TestServer } from '../support/test-server';

const EVENTS = 100_000;

/** Exporting a history of 100,000 events keeps the server's live memory bounded. */
forEachDatabase('export of 100,000 events', (db) => {
  let s: TestServer;
  before(async function () {
    this.timeout(120_000);
    s = await startTestServer(db());
  });
  after(async () => s?.stop());

  it('streams the whole package while live heap stays within a few MiB', async function () {
    this.timeout(180_000);
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'mocha runs node with --expose-gc (.mocharc.json)').to.be.a('function');
    const T = 'bigexport';
    await seedTenant(s, T);
    const { recorder, keys, subjectRights } = s.app.services;
    const { event } = await recorder.record(DEVELOPMENT_PRINCIPAL, {
      tenantId: T, identifier: { phoneNumber: '+4915112349999' }, purposeId: 'newsletter', channel: 'WHATSAPP', kind: 'OPT_IN', method: 'WEB_FORM',
      notice: { purposeId: 'newsletter', version: 1 }, evidence: { userAgent: 'big' }, jurisdiction: 'DE', requestId: 'big-seed', fingerprintSource: 'big-seed',
    });
    const key = await keys.subjectKey(T, event.subjectId);
    const [t] = await s.app.dataSource.query('SELECT * FROM consent_events WHERE id = ?', [event.id]);
    const columns = ['id', 'tenant_id', 'subject_id', 'kind', 'purpose_id', 'channel', 'event_time', 'record_time', 'method', 'principal', 'jurisdiction', 'request_id', 'request_fingerprint', 'evidence_ciphertext'];
    for (let i = 1; i < EVENTS; i += 1000) {
      const rows: unknown[][] = [];
      for (let j = i; j < Math.min(EVENTS, i + 1000); j++) {
        const id = randomBytes(16).toString('hex');
        const evidence = encryptField(key.key, key.kid, { tenant: T, subject: event.subjectId, table: 'consent_events', column: 'evidence_ciphertext', row: id }, `{"userAgent":"agent/${j}"}`);
        rows.push([id, T, event.subjectId, 'OPT_IN', 'newsletter', 'WHATSAPP', Number(t.event_time) + j, Number(t.record_time) + j, 'WEB_FORM', 'bulk', 'DE', `big-${j}`, t.request_fingerprint, evidence]);
      }
      await s.app.dataSource.query(`INSERT INTO consent_events (${columns.join(', ')}) VALUES ${rows.map(() => `(${columns.map(() => '?').join(', ')})`).join(', ')}`, rows.flat());
    }
    const request = await subjectRights.create(DEVELOPMENT_PRINCIPAL, T, { kind: 'PORTABILITY', identifier: { phoneNumber: '+4915112349999' }, receivedVia: 'EMAIL', requestId: 'big-r' });
    await subjectRights.verifyIdentity(DEVELOPMENT_PRINCIPAL, T, request.id, 'ID_DOCUMENT', 'test');

    gc!();
    const base = process.memoryUsage().heapUsed;
    let peak = base;
    const sampler = setInterval(() => {
      gc!();
      peak = Math.max(peak, process.memoryUsage().heapUsed);
    }, 500);
    const client = new SubjectRightsServiceClient(s.address, credentials.createInsecure());
    let bytes = 0;
    let events = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        const stream = client.exportSubjectData({ name: `tenants/${T}/requests/${request.id}` });
        stream.on('data', (p: ExportSubjectDataResponse) => {
          if (p.part?.$case === 'packageChunk') bytes += p.part.value.length;
          if (p.part?.$case === 'manifest') events = p.part.value.events;
        });
        stream.on('error', reject);
        stream.on('end', () => resolve());
      });
    } finally {
      clearInterval(sampler);
      client.close();
    }
    expect(events).to.equal(EVENTS);
    expect(bytes).to.be.greaterThan(30_000_000);
    const growthMiB = (peak - base) / 1024 / 1024;
    expect(growthMiB, `live heap grew ${growthMiB.toFixed(1)} MiB for a ${(bytes / 1e6).toFixed(0)} MB package`).to.be.below(32);
  });
});
