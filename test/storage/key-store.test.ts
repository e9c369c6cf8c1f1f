import { existsSync, readFileSync } from 'node:fs';
import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { StoredSubjectKey } from '../../src/crypto/key-store';
import { createDataSource } from '../../src/storage/data-source';
import { TypeormKeyStore } from '../../src/storage/keystore/typeorm-key-store';
import { forEachDatabase } from '../support/databases';

/** The key store, on its own database, on every backend. */
forEachDatabase('key store', (db, kind) => {
  let ds: DataSource;
  let store: TypeormKeyStore;
  before(async function () {
    ds = await createDataSource(db().keyStore, 'keys');
    await ds.initialize();
    await ds.runMigrations();
    store = new TypeormKeyStore(ds);
    // Subject keys are stored only under an ACTIVE epoch of their tenant.
    for (const tenantId of ['t', 'rot']) await store.insertTenantKey({ tenantId, epoch: 1, state: 'ACTIVE', wrappedKey: 'w', rootKeyId: 'r', createdAt: 1, destroyedAt: null });
  });
  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });

  const subjectKey = (subjectId: string, epoch = 1, tenantId = 't'): StoredSubjectKey => ({
    tenantId,
    subjectId,
    epoch,
    wrappedKey: `w-${subjectId}`,
    encryptions: 0,
    createdAt: 1,
  });

  it('migrations create exactly the schema the key-store entities describe, and no data tables', async function () {
    const diff = await ds.driver.createSchemaBuilder().log();
    expect(diff.upQueries.map((q) => q.query)).to.deep.equal([]);
    const tables = (await ds.createQueryRunner().getTables(['consent_events', 'subjects'])).filter(Boolean);
    expect(tables, 'the key store holds keys only').to.have.length(0);
  });

  it('keeps tenant key epochs in order and destroys them all at once', async function () {
    await store.insertTenantKey({ tenantId: 'k', epoch: 1, state: 'RETIRING', wrappedKey: 'w1', rootKeyId: 'r', createdAt: 1, destroyedAt: null });
    await store.insertTenantKey({ tenantId: 'k', epoch: 2, state: 'ACTIVE', wrappedKey: 'w2', rootKeyId: 'r', createdAt: 2, destroyedAt: null });
    expect((await store.tenantKeys('k')).map((k) => [k.epoch, k.state])).to.deep.equal([[1, 'RETIRING'], [2, 'ACTIVE']]);
    expect(await store.destroyTenantKeys('k', 99)).to.have.members([1, 2]);
    const after = await store.tenantKeys('k');
    expect(after.map((k) => [k.state, k.wrappedKey, k.destroyedAt])).to.deep.equal([['DESTROYED', null, 99], ['DESTROYED', null, 99]]);
    expect(await store.destroyTenantKeys('k', 100), 'idempotent').to.deep.equal([]);
    expect(await store.tenantKeys('none')).to.deep.equal([]);
  });

  it('stores, finds and deletes subject keys', async function () {
    await store.insertSubjectKey(subjectKey('s1'));
    expect(await store.subjectKey('t', 's1')).to.deep.equal(subjectKey('s1'));
    expect(await store.subjectKey('other', 's1'), 'never across tenants').to.equal(null);
    expect(await store.deleteSubjectKey('t', 's1')).to.equal(true);
    expect(await store.deleteSubjectKey('t', 's1')).to.equal(false);
    expect(await store.subjectKey('t', 's1')).to.equal(null);
  });

  it('counts encryptions and refuses past the limit', async function () {
    await store.insertSubjectKey(subjectKey('s2'));
    expect(await store.reserveEncryptions('t', 's2', 2, 3)).to.equal(true);
    expect(await store.reserveEncryptions('t', 's2', 1, 3)).to.equal(true);
    expect(await store.reserveEncryptions('t', 's2', 1, 3), 'the fourth would pass the limit').to.equal(false);
    expect((await store.subjectKey('t', 's2'))!.encryptions).to.equal(3);
    expect(await store.reserveEncryptions('t', 'missing', 1, 3)).to.equal(false);
  });

  if (kind === 'sqlite') {
    // Found by a probe: the deleted row stayed in the file's free pages and in the write-ahead
    // log, so a copy of the data folder taken after the erasure still held the key.
    it('an erased subject key and a shredded tenant key leave no trace in the SQLite files (file and write-ahead log)', async function () {
      const file = (db().keyStore as { file: string }).file;
      const bytes = () => Buffer.concat([readFileSync(file), existsSync(`${file}-wal`) ? readFileSync(`${file}-wal`) : Buffer.alloc(0)]);
      const secret = (n: number) => `WRAPPED-SECRET-${n}-`.padEnd(120, 'x');
      await store.insertTenantKey({ tenantId: 'gone', epoch: 1, state: 'ACTIVE', wrappedKey: 'TENANT-KEY-SECRET'.padEnd(120, 'y'), rootKeyId: 'r', createdAt: 1, destroyedAt: null });
      for (let n = 0; n < 20; n++) await store.insertSubjectKey({ ...subjectKey(`e${n}`, 1, 'gone'), wrappedKey: secret(n) });
      expect(bytes().includes(secret(7)), 'stored').to.equal(true);
      expect(await store.eraseSubject('gone', 'e7', 5)).to.equal(true);
      expect(bytes().includes(secret(7)), 'the erased key').to.equal(false);
      expect(bytes().includes(secret(8)), 'the others stay').to.equal(true);
      expect(await store.destroyTenantKeys('gone', 6)).to.deep.equal([1]);
      expect(bytes().includes('TENANT-KEY-SECRET'), 'the shredded tenant key').to.equal(false);
      expect(store.walNotTruncated).to.equal(0);
    });
  }

  it('re-wraps only keys still under the old epoch, and purges a tenant in batches', async function () {
    for (const id of ['r1', 'r2', 'r3']) await store.insertSubjectKey(subjectKey(id, 1, 'rot'));
    expect(await store.countSubjectKeys('rot', 1)).to.equal(3);
    const batch = await store.subjectKeysOfEpoch('rot', 1, 2);
    expect(batch.map((k) => k.subjectId)).to.deep.equal(['r1', 'r2']);
    expect(await store.rewrapSubjectKey('rot', 'r1', 1, 2, 'new')).to.equal(true);
    expect(await store.rewrapSubjectKey('rot', 'r1', 1, 2, 'again'), 'already moved').to.equal(false);
    expect((await store.subjectKey('rot', 'r1'))!).to.include({ epoch: 2, wrappedKey: 'new' });
    expect(await store.countSubjectKeys('rot', 1)).to.equal(2);
    expect(await store.countSubjectKeys('rot')).to.equal(3);
    expect(await store.purgeSubjectKeys('rot', 2)).to.equal(2);
    expect(await store.purgeSubjectKeys('rot', 2)).to.equal(1);
    expect(await store.purgeSubjectKeys('rot', 2)).to.equal(0);
  });
});
