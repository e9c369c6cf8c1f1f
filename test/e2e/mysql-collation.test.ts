import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { ListConsentEventsRequest } from '../../src/gen/consent/v1/consent';
import { MARIADB_SERVER_URL, testDatabaseKinds, TestDatabase, testDatabaseName } from '../support/databases';
import { consentRequest, email, seedTenant } from '../support/fixtures';
import { call, startTestServer } from '../support/test-server';

// MariaDB only: SQLite compares text byte for byte anyway.
if (testDatabaseKinds().includes('mariadb')) describe('MySQL collation', function () {
  this.timeout(60_000);
  const name = testDatabaseName('ci');
  let db: TestDatabase;
  const sql = async (statement: string) => {
    const admin = await mysql.createConnection(MARIADB_SERVER_URL);
    try {
      return await admin.query(statement);
    } finally {
      await admin.end();
    }
  };
  before(async function () {
    // A database created the way many people do: the server's case-insensitive default.
    await sql(`CREATE DATABASE ${name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
    await sql(`CREATE DATABASE ${name}_keys CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'consent-ci-'));
    db = {
      label: 'mariadb',
      config: { kind: 'mysql', url: `${MARIADB_SERVER_URL}/${name}`, poolSize: 4 },
      keyStore: { kind: 'mysql', url: `${MARIADB_SERVER_URL}/${name}_keys`, poolSize: 4 },
      dataDir,
      drop: async () => {
        await sql(`DROP DATABASE IF EXISTS ${name}`);
        await sql(`DROP DATABASE IF EXISTS ${name}_keys`);
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });
  after(async () => db?.drop());

  it('an empty case-insensitive database is switched to utf8mb4_bin, so request ids differing in case stay distinct', async function () {
    const s = await startTestServer(db);
    try {
      expect(s.logs()).to.include('switched to collation utf8mb4_bin');
      await seedTenant(s, 'case');
      const person = email('case@example.com');
      await call(s.consent, s.consent.recordConsent, consentRequest('case', { subjectIdentifier: person, requestId: 'Req-A' }));
      await call(s.consent, s.consent.recordConsent, consentRequest('case', { subjectIdentifier: person, requestId: 'req-a', kind: 3 /* OPT_IN_PENDING */ }));
      const list = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: 'tenants/case', subjectIdentifier: person }));
      expect(list.consentEvents.map((e) => e.requestId)).to.deep.equal(['Req-A', 'req-a']);
    } finally {
      await s.stop();
    }
  });

  it('a case-insensitive database that already has tables is refused with a clear message', async function () {
    const other = `${name}_full`;
    await sql(`CREATE DATABASE ${other} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
    await sql(`CREATE TABLE ${other}.something (id INT)`);
    try {
      const err = await startTestServer({ ...db, config: { kind: 'mysql', url: `${MARIADB_SERVER_URL}/${other}`, poolSize: 2 } }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).to.match(/collation utf8mb4_general_ci.*utf8mb4_bin/);
    } finally {
      await sql(`DROP DATABASE IF EXISTS ${other}`);
    }
  });
});
