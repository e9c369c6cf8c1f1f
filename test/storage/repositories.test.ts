import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { DEFAULT_TENANT_SETTINGS } from '../../src/domain/model';
import { StoredConsentEvent } from '../../src/domain/ports';
import { DomainError } from '../../src/shared/errors';
import { createDataSource } from '../../src/storage/data-source';
import { classifyDbError } from '../../src/storage/db-errors';
import { TypeormConsentRepository } from '../../src/storage/repositories/consent-repository';
import { TypeormPurposeRepository } from '../../src/storage/repositories/purpose-repository';
import { TypeormSubjectRepository } from '../../src/storage/repositories/subject-repository';
import { TypeormTenantRepository } from '../../src/storage/repositories/tenant-repository';
import { TypeormTransactionRunner } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';

/** One repository suite, run against every database (the spicedb datastore-test idea). */
forEachDatabase('storage', (db) => {
  let ds: DataSource;
  let tx: TypeormTransactionRunner;
  const tenants = new TypeormTenantRepository();
  const purposes = new TypeormPurposeRepository();
  const subjects = new TypeormSubjectRepository();
  const consent = new TypeormConsentRepository();
  const T = 'acme';

  before(async function () {
    ds = await createDataSource(db().config);
    await ds.initialize();
    await ds.runMigrations();
    tx = new TypeormTransactionRunner(ds);
    await tx.write((t) => tenants.insert(t, { id: T, displayName: 'ACME', settings: DEFAULT_TENANT_SETTINGS, createRequestId: null, createdAt: 1, updatedAt: 1, erasedAt: null }));
  });
  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });

  describe('migrations', function () {
    it('create exactly the schema the entities describe', async function () {
      const diff = await ds.driver.createSchemaBuilder().log();
      expect(diff.upQueries.map((q) => q.query)).to.deep.equal([]);
    });

    it('can be reverted and applied again', async function () {
      const probe = await createDataSource(db().config);
      await probe.initialize();
      try {
        for (let i = 0; i < probe.migrations.length; i++) await probe.undoLastMigration();
        expect(await probe.query('SELECT COUNT(*) AS n FROM schema_migrations').then((r: Array<{ n: unknown }>) => Number(r[0].n))).to.equal(0);
        expect(await probe.showMigrations()).to.equal(true);
        await probe.runMigrations();
        expect(await probe.showMigrations()).to.equal(false);
      } finally {
        await probe.destroy();
      }
      // Re-seed what the revert dropped.
      await tx.write((t) => tenants.insert(t, { id: T, displayName: 'ACME', settings: DEFAULT_TENANT_SETTINGS, createRequestId: null, createdAt: 1, updatedAt: 1, erasedAt: null }));
    });
  });

  describe(TypeormTenantRepository.name, function () {
    it('round-trips a tenant and updates its settings', async function () {
      const settings = { ...DEFAULT_TENANT_SETTINGS, serviceWindowMs: 3_600_000, purposeConsentValidityMs: { news: 1000 } };
      await tx.write((t) => tenants.insert(t, { id: 'roundtrip', displayName: 'R', settings, createRequestId: 'req', createdAt: 10, updatedAt: 10, erasedAt: null }));
      const found = await tx.read((t) => tenants.find(t, 'roundtrip'));
      expect(found).to.deep.equal({ id: 'roundtrip', displayName: 'R', settings, createRequestId: 'req', createdAt: 10, updatedAt: 10, erasedAt: null });
      await tx.write((t) => tenants.updateSettings(t, 'roundtrip', { ...settings, optInKeywords: [] }, 20));
      const updated = await tx.read((t) => tenants.find(t, 'roundtrip'));
      expect(updated!.settings.optInKeywords).to.deep.equal([]);
      expect(updated!.updatedAt).to.equal(20);
      expect(await tx.read((t) => tenants.find(t, 'missing'))).to.equal(null);
    });
  });

  describe(TypeormPurposeRepository.name, function () {
    it('lists purposes in id order after a cursor', async function () {
      for (const id of ['c', 'a', 'b']) {
        await tx.write((t) => purposes.insert(t, { tenantId: T, id, displayName: id, category: 'MARKETING', description: '', createRequestId: null, createdAt: 1, allowedWhileRestricted: false }));
      }
      expect((await tx.read((t) => purposes.list(t, T, null, 2))).map((p) => p.id)).to.deep.equal(['a', 'b']);
      expect((await tx.read((t) => purposes.list(t, T, 'b', 2))).map((p) => p.id)).to.deep.equal(['c']);
    });

    it('keeps notice versions and finds them by request id; a duplicate version collides', async function () {
      const notice = (version: number, requestId: string) => ({ tenantId: T, purposeId: 'a', version, language: 'de', text: `v${version}`, textSha256: 'x'.repeat(64), requestId, createdAt: version });
      await tx.write((t) => purposes.insertNotice(t, notice(1, 'n1')));
      await tx.write((t) => purposes.insertNotice(t, notice(2, 'n2')));
      expect(await tx.read((t) => purposes.latestNoticeVersion(t, T, 'a'))).to.equal(2);
      expect(await tx.read((t) => purposes.latestNoticeVersion(t, T, 'b'))).to.equal(0);
      expect((await tx.read((t) => purposes.findNoticeByRequest(t, T, 'n1')))!.version).to.equal(1);
      expect((await tx.read((t) => purposes.listNotices(t, T, 'a', 2, 10))).map((n) => n.version)).to.deep.equal([1]);
      const err = await rawWrite(ds, (m) => m.query('INSERT INTO notices (tenant_id, purpose_id, version, language, text, text_sha256, request_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [T, 'a', 2, 'de', 'dup', 'x', 'n9', 1]));
      expect(classifyDbError(err)).to.equal('conflict');
    });
  });

  describe(TypeormSubjectRepository.name, function () {
    it('finds subjects by blind index, singly and in batches, with their erased flag', async function () {
      await tx.write(async (t) => {
        await subjects.insert(t, { id: 's1', tenantId: T, createdAt: 1 });
        await subjects.insertIdentifier(t, { tenantId: T, subjectId: 's1', kind: 'PHONE', blindIndex: 'b1', valueCiphertext: 'c', createdAt: 1 });
        await subjects.insertIdentifier(t, { tenantId: T, subjectId: 's1', kind: 'EMAIL', blindIndex: 'b2', valueCiphertext: 'c', createdAt: 1 });
      });
      expect(await tx.read((t) => subjects.findByIdentifier(t, T, { kind: 'PHONE', blindIndex: 'b1' }))).to.deep.equal({ subjectId: 's1', erased: false });
      expect(await tx.read((t) => subjects.findByIdentifier(t, T, { kind: 'PHONE', blindIndex: 'b2' }))).to.equal(null);
      expect(await tx.read((t) => subjects.findByIdentifier(t, 'other', { kind: 'PHONE', blindIndex: 'b1' })), 'never across tenants').to.equal(null);
      const batch = await tx.read((t) => subjects.findByIdentifiers(t, T, [{ kind: 'PHONE', blindIndex: 'b1' }, { kind: 'EMAIL', blindIndex: 'b2' }, { kind: 'PHONE', blindIndex: 'zz' }]));
      expect([...batch.keys()].sort()).to.deep.equal(['EMAIL:b2', 'PHONE:b1']);
      await ds.query('UPDATE subjects SET erased_at = 5 WHERE id = ?', ['s1']);
      expect(await tx.read((t) => subjects.findByIdentifier(t, T, { kind: 'PHONE', blindIndex: 'b1' }))).to.deep.equal({ subjectId: 's1', erased: true });
    });

    it('refuses a second subject for the same identifier', async function () {
      const err = await tx
        .write(async (t) => {
          await subjects.insert(t, { id: 's2', tenantId: T, createdAt: 1 });
          await subjects.insertIdentifier(t, { tenantId: T, subjectId: 's2', kind: 'PHONE', blindIndex: 'b1', valueCiphertext: 'c', createdAt: 1 });
        })
        .catch((e: unknown) => e);
      expect(err).to.be.instanceOf(DomainError);
      expect((err as DomainError).kind).to.equal('ABORTED');
      const rows = await ds.query('SELECT id FROM subjects WHERE id = ?', ['s2']);
      expect(rows, 'the whole transaction was rolled back').to.have.length(0);
    });
  });

  describe(TypeormConsentRepository.name, function () {
    const event = (id: string, overrides: Partial<StoredConsentEvent> = {}): StoredConsentEvent => ({
      id,
      tenantId: T,
      subjectId: 'subj',
      kind: 'OPT_IN',
      purposeId: 'a',
      channel: 'SMS',
      eventTime: 1000,
      recordTime: 2000,
      method: 'WEB_FORM',
      notice: { purposeId: 'a', version: 1, textSha256: 'f'.repeat(64), language: 'de' },
      principal: 'p',
      lawfulBasis: 'CONSENT',
      jurisdiction: 'DE',
      expireTime: 9_000_000_000_000,
      requestId: `r-${id}`,
      requestFingerprint: 'a'.repeat(64),
      evidenceCiphertext: 'jwe',
      ...overrides,
    });

    it('stores events exactly, in the order given, and finds them by request id', async function () {
      const full = event('e1');
      const bare = event('e2', { kind: 'OPT_OUT', notice: undefined, lawfulBasis: null, expireTime: undefined, evidenceCiphertext: null, recordTime: 3000, eventTime: 2500 });
      await tx.write((t) => consent.insertEvents(t, [full, bare]));
      const found = await tx.read((t) => consent.findByRequestIds(t, T, ['r-e2', 'r-e1', 'r-none']));
      expect(found.sort((a, b) => a.id.localeCompare(b.id))).to.deep.equal([full, bare]);
      expect(await tx.read((t) => consent.findByRequestIds(t, 'other', ['r-e1'])), 'never across tenants').to.deep.equal([]);
      const dup = await tx.write((t) => consent.insertEvents(t, [event('e3', { requestId: 'r-e1' })])).catch((e: unknown) => e);
      expect((dup as DomainError).kind, 'a request id is unique per tenant').to.equal('ABORTED');
      const seqs = (await tx.read((t) => consent.list(t, T, {}, 0, 10))).map((r) => r.event.id);
      expect(seqs, 'seq follows the insert order').to.deep.equal(['e1', 'e2']);
    });

    it('a multi-row insert of hundreds of events keeps their order', async function () {
      const many = Array.from({ length: 600 }, (_, i) => event(`m${String(i).padStart(4, '0')}`, { tenantId: 'bulk', subjectId: 'bulk-subject' }));
      await tx.write((t) => consent.insertEvents(t, many));
      const listed = await tx.read((t) => consent.list(t, 'bulk', {}, 0, 1000));
      expect(listed.map((r) => r.event.id)).to.deep.equal(many.map((e) => e.id));
    });

    it('replays only events recorded by a time, in recording order', async function () {
      const rows = await tx.read((t) => consent.eventsRecordedBy(t, T, 'subj', 2500));
      expect(rows.map((e) => e.id)).to.deep.equal(['e1']);
      expect((await tx.read((t) => consent.eventsRecordedBy(t, T, 'subj', 3000))).map((e) => e.id)).to.deep.equal(['e1', 'e2']);
    });

    it('lists with filters and a cursor', async function () {
      const all = await tx.read((t) => consent.list(t, T, {}, 0, 10));
      expect(all.map((r) => r.event.id)).to.deep.equal(['e1', 'e2']);
      expect((await tx.read((t) => consent.list(t, T, {}, all[0].seq, 10))).map((r) => r.event.id)).to.deep.equal(['e2']);
      expect((await tx.read((t) => consent.list(t, T, { startTime: 2000 }, 0, 10))).map((r) => r.event.id)).to.deep.equal(['e2']);
      expect((await tx.read((t) => consent.list(t, T, { endTime: 2000 }, 0, 10))).map((r) => r.event.id)).to.deep.equal(['e1']);
      expect(await tx.read((t) => consent.list(t, T, { channel: 'EMAIL' }, 0, 10))).to.deep.equal([]);
      expect(await tx.read((t) => consent.list(t, T, { subjectId: 'nobody' }, 0, 10))).to.deep.equal([]);
    });

    it('keeps current state per scope and service windows for many subjects', async function () {
      await tx.write((t) =>
        consent.saveStates(
          t,
          T,
          [
            { subjectId: 'x1', scope: { purposeId: 'a', channel: 'SMS', optIn: { eventId: 'i1', kind: 'OPT_IN', eventTime: 5, expireTime: 50 } } },
            { subjectId: 'x1', scope: { purposeId: '-', channel: 'ANY', optOut: { eventId: 'o1', eventTime: 6 } } },
          ],
          [{ subjectId: 'x2', window: { channel: 'WHATSAPP', eventId: 'w1', lastInboundTime: 7 } }],
        ),
      );
      // The same keys again: replaced (an upsert), not added.
      await tx.write((t) =>
        consent.saveStates(
          t,
          T,
          [{ subjectId: 'x1', scope: { purposeId: 'a', channel: 'SMS', optIn: { eventId: 'i2', kind: 'OPT_IN_PENDING', eventTime: 8 }, optOut: { eventId: 'o2', eventTime: 7 } } }],
          [{ subjectId: 'x2', window: { channel: 'WHATSAPP', eventId: 'w2', lastInboundTime: 9 } }],
        ),
      );
      const state = await tx.read((t) => consent.loadState(t, T, ['x1', 'x2', 'x3']));
      expect([...state.keys()].sort()).to.deep.equal(['x1', 'x2']);
      const scopes = state.get('x1')!.scopes.sort((a, b) => a.purposeId.localeCompare(b.purposeId));
      expect(scopes).to.deep.equal([
        { purposeId: '-', channel: 'ANY', optOut: { eventId: 'o1', eventTime: 6 } },
        { purposeId: 'a', channel: 'SMS', optIn: { eventId: 'i2', kind: 'OPT_IN_PENDING', eventTime: 8, expireTime: undefined }, optOut: { eventId: 'o2', eventTime: 7 } },
      ]);
      expect(state.get('x2')!.windows).to.deep.equal([{ channel: 'WHATSAPP', eventId: 'w2', lastInboundTime: 9 }]);
      expect((await tx.read((t) => consent.loadState(t, 'other', ['x1']))).size, 'never across tenants').to.equal(0);
    });
  });

  describe(TypeormTransactionRunner.name, function () {
    it('rolls back everything when the work throws', async function () {
      const boom = new Error('boom');
      const err = await tx
        .write(async (t) => {
          await subjects.insert(t, { id: 'rollback', tenantId: T, createdAt: 1 });
          throw boom;
        })
        .catch((e: unknown) => e);
      expect(err).to.equal(boom);
      expect(await ds.query('SELECT id FROM subjects WHERE id = ?', ['rollback'])).to.have.length(0);
    });

    it('runs a write again after a collision with a concurrent one', async function () {
      let attempts = 0;
      const result = await tx.write(async (t) => {
        attempts++;
        if (attempts === 1) await subjects.insert(t, { id: 's1', tenantId: T, createdAt: 1 }); // collides with s1
        return 'done';
      });
      expect(result).to.equal('done');
      expect(attempts).to.equal(2);
    });

    it('keeps concurrent writes consistent', async function () {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => tx.write((t) => subjects.insert(t, { id: `c${i}`, tenantId: 'conc', createdAt: i }))),
      );
      const rows = await ds.query('SELECT COUNT(*) AS n FROM subjects WHERE tenant_id = ?', ['conc']);
      expect(Number(rows[0].n)).to.equal(20);
    });
  });
});

describe('database errors', function () {
  it('an unreachable MySQL server is classified as unavailable', async function () {
    const err = await createDataSource({ kind: 'mysql', url: 'mysql://root@127.0.0.1:1/none', poolSize: 1, flavor: 'mysql' })
      .then((ds) => ds.initialize())
      .catch((e: unknown) => e);
    expect(classifyDbError(err)).to.equal('unavailable');
  });
});

async function rawWrite(ds: DataSource, work: (m: DataSource['manager']) => Promise<unknown>): Promise<unknown> {
  try {
    await work(ds.manager);
    return null;
  } catch (err) {
    return err;
  }
}
