import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { RequestIdentifiers1764000000013 } from '../../migrations/1764000000013-RequestIdentifiers';
import { createDataSource } from '../../src/storage/data-source';
import { TypeormSubjectRightsRepository } from '../../src/storage/repositories/subject-rights-repository';
import { TypeormTransactionRunner } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';

/** Migration 13 gives every request made before it its one identifier as position 1, with its verification. */
forEachDatabase('request identifiers migration 13 on requests made before it', (db) => {
  let ds: DataSource | undefined;
  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });

  it('a verified request keeps its identifier, subject and verification; a received one has no verification; the requests of the person are found through the new rows', async function () {
    this.timeout(60_000);
    const full = await createDataSource(db().config);
    const before = new DataSource({ ...full.options, migrations: MIGRATIONS.slice(0, MIGRATIONS.indexOf(RequestIdentifiers1764000000013)) } as typeof full.options);
    await before.initialize();
    await before.runMigrations();
    const subject = 'a'.repeat(32);
    const insert = (id: string, state: string, subjectId: string | null, method: string | null) =>
      before.query(
        `INSERT INTO subject_requests (id, tenant_id, kind, state, identifier_kind, blind_index, subject_id, received_via, receive_time, due_time,
           verification_method, verified_by, request_id, created_at, updated_at) VALUES (?, 'old', 'ERASURE', ?, 'PHONE', ?, ?, 'EMAIL', 1000, 2000, ?, ?, ?, 1000, 1500)`,
        [id, state, 'b'.repeat(64), subjectId, method, method ? 'dpo-anna' : null, `r-${id}`],
      );
    await insert('1'.repeat(32), 'VERIFIED', subject, 'ID_DOCUMENT');
    await insert('2'.repeat(32), 'RECEIVED', null, null);
    const transition = (requestId: string, seq: number, from: string | null, to: string, at: number) =>
      before.query('INSERT INTO subject_request_transitions (request_id, seq, from_state, to_state, principal, at, note) VALUES (?, ?, ?, ?, ?, ?, ?)', [requestId, seq, from, to, 'dpo', at, 'x']);
    await transition('1'.repeat(32), 1, null, 'RECEIVED', 1000);
    await transition('1'.repeat(32), 2, 'RECEIVED', 'VERIFIED', 1200);
    await transition('2'.repeat(32), 1, null, 'RECEIVED', 1000);
    await before.destroy();

    ds = full;
    await ds.initialize();
    await ds.runMigrations();
    const repo = new TypeormSubjectRightsRepository();
    const rows = await new TypeormTransactionRunner(ds).read((tx) => repo.requestIdentifiers(tx, ['1'.repeat(32), '2'.repeat(32)]));
    const shape = (id: string) => rows.get(id)!.map((r) => [r.position, r.identifierKind, r.blindIndex, r.subjectId, r.verificationMethod, r.verifiedBy, r.verifiedAt, r.viaLink, r.outcome]);
    expect(shape('1'.repeat(32))).to.deep.equal([[1, 'PHONE', 'b'.repeat(64), subject, 'ID_DOCUMENT', 'dpo-anna', 1200, null, null]]);
    expect(shape('2'.repeat(32))).to.deep.equal([[1, 'PHONE', 'b'.repeat(64), null, null, null, null, null, null]]);
    const requests = await new TypeormTransactionRunner(ds).read((tx) => repo.requestsOfSubject(tx, 'old', subject));
    expect(requests.map((r) => r.id)).to.deep.equal(['1'.repeat(32)]);
  });
});
