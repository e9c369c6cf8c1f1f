import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { createTestDatabase, TestDatabase } from '../support/databases';
import { consentRequest, email, seedTenant } from '../support/fixtures';
import { runConsentctl } from '../support/processes';
import { call, startTestServer, TestServer } from '../support/test-server';

/** consentctl driven as a DPO would: a separate process per command against a real server. */
describe('consentctl', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let s: TestServer;
  const T = 'cli-tenant';

  const ctl = (...args: string[]) => runConsentctl(s.address, ...args);

  before(async function () {
    db = await createTestDatabase('sqlite');
    s = await startTestServer(db);
    await seedTenant(s, T);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('dpo-case@example.com') }));
  });
  after(async function () {
    await s?.stop();
    await db?.drop();
  });

  it('takes an access request from receipt to a verified export', async function () {
    const created = await ctl('--json', 'requests', 'create', '--tenant', T, '--kind', 'access', '--email', 'dpo-case@example.com', '--received-via', 'letter');
    expect(created.code, created.err).to.equal(0);
    const name = JSON.parse(created.out).name as string;
    expect(name).to.match(/^tenants\/cli-tenant\/requests\//);
    const verified = await ctl('requests', 'verify', name, '--method', 'ID_DOCUMENT', '--by', 'dpo-1');
    expect(verified.code, verified.err).to.equal(0);
    expect(verified.out).to.include('verified').and.include('identity verified by ID_DOCUMENT');
    const out = path.join(db.dataDir, 'export-1');
    const exported = await ctl('export', name, '--out', out);
    expect(exported.code, exported.err).to.equal(0);
    expect(exported.out).to.include('signature and hashes verified');
    expect(JSON.parse(readFileSync(path.join(out, 'package.json'), 'utf8')).identifiers).to.deep.equal([{ kind: 'EMAIL', value: 'dpo-case@example.com' }]);
    expect(existsSync(path.join(out, 'package.html'))).to.equal(true);
    const listed = await ctl('--json', 'requests', 'list', '--tenant', T, '--state', 'completed');
    expect(JSON.parse(listed.out).map((r: { name: string }) => r.name)).to.include(name);
  });

  it('is stopped by a legal hold, then erases and prints a verified receipt', async function () {
    const created = await ctl('--json', 'requests', 'create', '--tenant', T, '--kind', 'erasure', '--email', 'dpo-case@example.com');
    const name = JSON.parse(created.out).name as string;
    await ctl('requests', 'verify', name, '--method', 'EMAIL_CONFIRMATION', '--by', 'dpo-1');
    const hold = await ctl('--json', 'holds', 'place', '--tenant', T, '--email', 'dpo-case@example.com', '--ground', 'e', '--note', 'case 2026-9');
    expect(hold.code, hold.err).to.equal(0);
    const holdName = JSON.parse(hold.out)[0].name as string;

    const blocked = await ctl('erase', name, '--yes');
    expect(blocked.code).to.equal(1);
    expect(blocked.err).to.include('LEGAL_HOLD').and.include('17(3)(e)');
    const unconfirmed = await ctl('erase', name);
    expect(unconfirmed.code, 'no confirmation without a terminal').to.equal(2);

    const holds = await ctl('holds', 'list', '--tenant', T);
    expect(holds.out).to.include(holdName).and.include('e_legal_claims');
    expect((await ctl('holds', 'release', holdName, '--note', 'settled')).code).to.equal(0);
    const erased = await ctl('erase', name, '--yes');
    expect(erased.code, erased.err).to.equal(0);
    expect(erased.out).to.include('signature verified').and.include('keyIdsDestroyed');
    expect(erased.out).to.not.include('dpo-case@example.com');
  });

  it('lists overdue requests and reports usage errors and an unreachable server with distinct exit codes', async function () {
    const overdue = await ctl('requests', 'overdue', '--tenant', T, '--days', '40');
    expect(overdue.code).to.equal(0);
    expect(overdue.out).to.include('REQUEST').and.include('DUE');
    expect((await ctl('requests', 'create', '--tenant', T, '--kind', 'nonsense', '--email', 'a@example.com')).code).to.equal(2);
    expect((await ctl('requests', 'list')).code).to.equal(2);
    const unreachable = (await runConsentctl('127.0.0.1:1', 'requests', 'list', '--tenant', T)).code;
    expect(unreachable).to.equal(3);
  });
});
