import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { AuditQueries1764000000008 } from '../../migrations/1764000000008-AuditQueries';
import { AuditLog } from '../../src/audit/audit-log';
import { createDataSource } from '../../src/storage/data-source';
import { TypeormAuditRepository } from '../../src/storage/repositories/audit-repository';
import { TypeormTransactionRunner } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';

forEachDatabase('audit migration 8 on a log written before it', (db) => {
  let ds: DataSource | undefined;
  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });

  it('fills the filter columns of existing entries from their JSON, so filters find old entries too', async function () {
    this.timeout(60_000);
    // The schema as it was before: migrations up to the audit log itself.
    const full = await createDataSource(db().config);
    const before = new DataSource({ ...full.options, migrations: MIGRATIONS.slice(0, MIGRATIONS.indexOf(AuditQueries1764000000008)) } as typeof full.options);
    await before.initialize();
    await before.runMigrations();
    const rows = [
      { seq: 0, json: '{"principal":"dev-admin","seq":0,"tenant":"old","time":1000,"type":"TENANT_CREATED"}' },
      { seq: 1, json: '{"channel":"SMS","principal":"rec","purpose":"news","seq":1,"subject":"0123456789abcdef0123456789abcdef","tenant":"old","time":2000,"type":"CONSENT_EVENT_OPT_IN"}' },
    ];
    for (const r of rows) await before.query('INSERT INTO audit_entries (tenant_id, seq, entry_json, leaf_hash) VALUES (?, ?, ?, ?)', ['old', r.seq, r.json, 'ab'.repeat(32)]);
    await before.query('INSERT INTO audit_heads (tenant_id, size) VALUES (?, ?)', ['old', 2]);
    await before.destroy();

    ds = full;
    await ds.initialize();
    await ds.runMigrations();
    const log = new AuditLog(new TypeormTransactionRunner(ds), new TypeormAuditRepository());
    expect((await log.entries('old', 0, 10, { subjectId: '0123456789abcdef0123456789abcdef' })).map((e) => e.seq)).to.deep.equal([1]);
    expect((await log.entries('old', 0, 10, { types: ['TENANT_CREATED'] })).map((e) => e.seq)).to.deep.equal([0]);
    expect((await log.entries('old', 0, 10, { purposeId: 'news', principal: 'rec' })).map((e) => e.seq)).to.deep.equal([1]);
    expect((await log.entries('old', 0, 10, { startTime: 1500, endTime: 2500 })).map((e) => e.seq)).to.deep.equal([1]);
    expect((await log.entries('old', 0, 10, { principal: 'nobody' })).map((e) => e.seq)).to.deep.equal([]);
    // The hashed bytes are untouched.
    expect((await log.entries('old', 0, 10)).map((e) => e.entryJson)).to.deep.equal(rows.map((r) => r.json));
  });
});
