import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { KEYSTORE_MIGRATIONS } from '../../migrations/keystore';
import { DatabaseConfig } from '../../src/config/config';
import { createDataSource } from '../../src/storage/data-source';
import { MIGRATION_LOCK_TABLE, MigrationLock } from '../../src/storage/migration-lock';
import { ConsentServiceClient } from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { createTestDatabase, testDatabaseKinds, TestDatabase } from '../support/databases';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { ServerProcess, startServerProcess } from '../support/server-process';
import { call, TestServer } from '../support/test-server';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function withDataSource<T>(config: DatabaseConfig, store: 'data' | 'keys', work: (ds: DataSource) => Promise<T>): Promise<T> {
  const ds = await createDataSource(config, store);
  await ds.initialize();
  try {
    return await work(ds);
  } finally {
    await ds.destroy();
  }
}

/**
 * Replicas started at the same moment on one empty database all come up: migrations run under
 * the migration lock (src/storage/migration-lock.ts), one process at a time, the others wait
 * and say so.
 *
 * The data database is left completely empty, so the processes race for real (no lock table
 * yet). In the key store, the test plants the lock row of a process that "died" while migrating,
 * so that every replica must wait, observably and deterministically; once all three have said
 * they wait, the test lets that lease run out, and exactly one replica takes the lock over.
 */
for (const kind of testDatabaseKinds()) {
  describe(`three replicas started at once on one empty database [${kind}]`, function () {
    this.timeout(180_000);
    let db: TestDatabase;
    const replicas: ServerProcess[] = [];

    before(async function () {
      db = await createTestDatabase(kind);
    });
    after(async function () {
      await Promise.all(replicas.map((r) => r.stop(5000)));
      await db?.drop();
    });

    it(`all three serve, each migration is applied exactly once, and the waiting is logged${kind === 'sqlite' ? ' (one SQLite file)' : ''}`, async function () {
      // One root key set for all: a generated development key would differ per process.
      const rootKeys = path.join(db.dataDir, 'root-keys.json');
      writeFileSync(rootKeys, JSON.stringify({ keys: [{ kty: 'oct', kid: 'replicas-root', k: randomBytes(32).toString('base64url') }] }), { mode: 0o600 });

      // The lock row of a process that died while migrating the key store; its lease is long.
      await withDataSource(db.keyStore, 'keys', async (ds) => {
        const lock = await MigrationLock.open(ds, { holder: 'unused' }); // creates the lock table
        await lock.release();
        await ds.query(`INSERT INTO ${MIGRATION_LOCK_TABLE} (name, holder, acquired_at, expires_at) VALUES ('schema', 'dead-replica', 0, 9999999999999)`);
      });

      const started = await Promise.all(
        [0, 1, 2].map(() => startServerProcess(db, { waitForServing: false, env: { ROOT_KEYS_FILE: rootKeys, RUN_MIGRATIONS: 'true' } })),
      );
      replicas.push(...started);

      // Every replica reaches the planted lock and says that it waits.
      const waitingForKeys = (r: ServerProcess) =>
        r
          .output()
          .split('\n')
          .some((l) => l.includes('waiting for another process to finish migrations') && l.includes('"store":"keys"') && l.includes('dead-replica'));
      const deadline = Date.now() + 90_000;
      while (!replicas.every(waitingForKeys)) {
        const ended = replicas.find((r) => r.hasExited());
        if (ended) expect.fail(`a replica exited while starting:\n${ended.output().slice(-3000)}`);
        if (Date.now() > deadline) expect.fail(`not every replica said it waits:\n${replicas.map((r) => r.output().slice(-1500)).join('\n---\n')}`);
        await sleep(200);
      }
      for (const r of replicas) expect(await r.health(), 'nobody serves before the key store is migrated').to.equal('UNREACHABLE');

      // The dead process's lease runs out: one replica takes over, migrates, the others follow.
      await withDataSource(db.keyStore, 'keys', (ds) => ds.query(`UPDATE ${MIGRATION_LOCK_TABLE} SET expires_at = 0`));
      for (const r of replicas) {
        while ((await r.health()) !== 'SERVING') {
          if (r.hasExited()) expect.fail(`a replica exited:\n${r.output().slice(-3000)}`);
          if (Date.now() > deadline) expect.fail(`a replica did not serve:\n${r.output().slice(-3000)}`);
          await sleep(200);
        }
      }

      const logs = replicas.map((r) => r.output()).join('\n');
      expect(logs.match(/took over the migration lock/g), 'exactly one replica took the dead one\'s lock over').to.have.length(1);
      expect(logs).to.not.match(/already exists|Duplicate column/);

      const applied = async (config: DatabaseConfig, store: 'data' | 'keys') =>
        withDataSource(config, store, (ds) => ds.query('SELECT name, COUNT(*) AS n FROM schema_migrations GROUP BY name ORDER BY name') as Promise<Array<{ name: string; n: unknown }>>);
      for (const [config, store, expected] of [
        [db.config, 'data', MIGRATIONS],
        [db.keyStore, 'keys', KEYSTORE_MIGRATIONS],
      ] as const) {
        const rows = await applied(config, store);
        expect(rows.map((r) => r.name), `${store}: every migration listed`).to.deep.equal(expected.map((m) => m.name).sort());
        for (const row of rows) expect(Number(row.n), `${store}: ${row.name} applied once`).to.equal(1);
        const left = await withDataSource(config, store, (ds) => ds.query(`SELECT holder FROM ${MIGRATION_LOCK_TABLE}`));
        expect(left, `${store}: the lock is released`).to.deep.equal([]);
      }

      // And they work side by side: writes through all three at once all succeed (on SQLite,
      // three processes take turns on the file's write lock).
      const clients = replicas.map((r) => ({
        tenants: new TenantServiceClient(r.address, credentials.createInsecure()),
        purposes: new PurposeServiceClient(r.address, credentials.createInsecure()),
        consent: new ConsentServiceClient(r.address, credentials.createInsecure()),
      }));
      try {
        await seedTenant(clients[0] as unknown as TestServer, 'replicas');
        await Promise.all(
          clients.flatMap((c, r) =>
            Array.from({ length: 10 }, (_, i) =>
              call(c.consent, c.consent.recordConsent, consentRequest('replicas', { subjectIdentifier: phone(`+49151333${r}${String(i).padStart(4, '0')}`) })),
            ),
          ),
        );
      } finally {
        for (const c of clients) for (const client of Object.values(c)) client.close();
      }
    });
  });
}
