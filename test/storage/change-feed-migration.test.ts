import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { ChangeFeedPositions1764000000010 } from '../../migrations/1764000000010-ChangeFeedPositions';
import { createDataSource } from '../../src/storage/data-source';
import { TypeormChangeFeedRepository } from '../../src/storage/repositories/change-feed-repository';
import { TypeormTransactionRunner } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';

/** Migration 10 gives change-feed rows written before it the log position of their audit entry. */
forEachDatabase('change feed migration 10 on rows written before it', (db) => {
  let ds: DataSource | undefined;
  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });

  it('an opt-out gets its entry position (matched by event id), an erasure its SUBJECT_ERASED entry', async function () {
    this.timeout(60_000);
    const full = await createDataSource(db().config);
    const before = new DataSource({ ...full.options, migrations: MIGRATIONS.slice(0, MIGRATIONS.indexOf(ChangeFeedPositions1764000000010)) } as typeof full.options);
    await before.initialize();
    await before.runMigrations();
    const subject = 'a'.repeat(32);
    const entries = [
      { seq: 0, type: 'CONSENT_EVENT_OPT_OUT', json: `{"ref":"${'1'.repeat(32)}","subject":"${subject}","type":"CONSENT_EVENT_OPT_OUT"}` },
      { seq: 1, type: 'CONSENT_EVENT_OPT_IN', json: `{"ref":"${'2'.repeat(32)}","subject":"${subject}","type":"CONSENT_EVENT_OPT_IN"}` },
      { seq: 2, type: 'CONSENT_EVENT_OPT_OUT', json: `{"ref":"${'3'.repeat(32)}","subject":"${subject}","type":"CONSENT_EVENT_OPT_OUT"}` },
      { seq: 3, type: 'SUBJECT_ERASED', json: `{"subject":"${subject}","type":"SUBJECT_ERASED"}` },
    ];
    for (const e of entries) {
      await before.query('INSERT INTO audit_entries (tenant_id, seq, entry_json, leaf_hash, entry_type, subject_id) VALUES (?, ?, ?, ?, ?, ?)', ['old', e.seq, e.json, 'ab'.repeat(32), e.type, subject]);
    }
    // Outbox rows in an order that differs from the log's: the later opt-out first.
    for (const [kind, eventId] of [['OPT_OUT', '3'.repeat(32)], ['OPT_OUT', '1'.repeat(32)], ['ERASURE', null]] as const) {
      await before.query('INSERT INTO change_outbox (tenant_id, kind, subject_id, purpose_id, channel, event_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)', ['old', kind, subject, null, null, eventId, 1000]);
    }
    await before.destroy();

    ds = full;
    await ds.initialize();
    await ds.runMigrations();
    const feed = new TypeormChangeFeedRepository();
    const changes = await new TypeormTransactionRunner(ds).read((tx) => feed.between(tx, 'old', 0, 10, 10));
    expect(changes.map((c) => [c.kind, c.eventId, c.auditSeq])).to.deep.equal([
      ['OPT_OUT', '1'.repeat(32), 0],
      ['OPT_OUT', '3'.repeat(32), 2],
      ['ERASURE', null, 3],
    ]);
  });
});
