import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { createTestDatabase, TestDatabase } from '../support/databases';
import { consentRequest, email, seedTenant } from '../support/fixtures';
import { ROOT, runConsentctl, TSX } from '../support/processes';
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
    // Art. 12(3): extended, and the person told so.
    const early = await ctl('requests', 'notify', name, '--topic', 'extension', '--method', 'LETTER', '--by', 'dpo-1');
    expect([early.code, early.err], 'not extended yet').to.satisfy(([code, err]: [number, string]) => code === 1 && err.includes('NOT_EXTENDED'));
    expect((await ctl('requests', 'extend', name, '--months', '1', '--reason', 'many records')).code).to.equal(0);
    const told = await ctl('requests', 'notify', name, '--topic', 'extension', '--method', 'LETTER', '--by', 'dpo-1');
    expect(told.code, told.err).to.equal(0);
    expect(told.out).to.include('person told of the extension: LETTER by dpo-1');
    const out = path.join(db.dataDir, 'export-1');
    const exported = await ctl('export', name, '--out', out);
    expect(exported.code, exported.err).to.equal(0);
    expect(exported.out).to.include('signature and hashes verified');
    // stderr is a pipe here, not a terminal: progress is one line per update, no carriage returns.
    expect(exported.err).to.not.include('\r');
    expect(exported.err.trim().split('\n')).to.satisfy((lines: string[]) => lines.length >= 2 && lines.every((l) => /^exporting: \d+\/\d+$/.test(l)));
    const pkg = JSON.parse(readFileSync(path.join(out, 'package.json'), 'utf8'));
    expect(pkg.identifiers).to.deep.equal([{ subject: pkg.subject, kind: 'EMAIL', value: 'dpo-case@example.com' }]);
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

  it('links two identifiers, lists and unlinks them, never printing an identifier', async function () {
    const linked = await ctl('--json', 'link', '--tenant', T, '--first', 'email:cli-link@example.com', '--second', 'phone:0151 12378899', '--region', 'DE', '--method', 'ID_DOCUMENT', '--by', 'dpo-1', '--request-id', 'cli-link-1');
    expect(linked.code, linked.err).to.equal(0);
    const [made] = JSON.parse(linked.out) as Array<{ name: string; kinds: string[]; method: string; verifiedBy: string }>;
    expect(made.name).to.match(/^tenants\/cli-tenant\/identityLinks\/[0-9a-f]{32}$/);
    expect([made.kinds, made.method, made.verifiedBy]).to.deep.equal([['IDENTIFIER_KIND_EMAIL', 'IDENTIFIER_KIND_PHONE_NUMBER'], 'ID_DOCUMENT', 'dpo-1']);
    const again = await ctl('--name-only', 'link', '--tenant', T, '--first', 'email:cli-link@example.com', '--second', 'phone:+4915112378899', '--method', 'ID_DOCUMENT', '--by', 'dpo-2');
    expect(again.code).to.equal(1);
    expect(again.err).to.include('ALREADY_LINKED').and.include(made.name);
    const table = await ctl('links', '--tenant', T, '--phone', '+4915112378899');
    expect(table.code, table.err).to.equal(0);
    expect(table.out).to.include(made.name).and.include('email+phone_number').and.include('dpo-1');
    expect(table.out).to.not.include('cli-link@example.com').and.not.include('12378899');
    const unlinked = await ctl('unlink', made.name, '--reason', 'two different people');
    expect(unlinked.code, unlinked.err).to.equal(0);
    expect(unlinked.out).to.include('two different people');
    expect((await ctl('--name-only', 'links', '--tenant', T)).out).to.not.include(made.name);
    expect((await ctl('--name-only', 'links', '--tenant', T, '--include-unlinked')).out.trim().split('\n')).to.include(made.name);
    const twice = await ctl('unlink', made.name, '--reason', 'again');
    expect(twice.code).to.equal(1);
    expect(twice.err).to.include('LINK_CLOSED');
  });

  it('rectifies an identifier (requests create --new-email, rectify) and reports a reassigned number (reassigned)', async function () {
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('typo@exmaple.com') }));
    const created = await ctl('--name-only', 'requests', 'create', '--tenant', T, '--kind', 'rectification', '--email', 'typo@exmaple.com', '--new-email', 'right@example.com', '--received-via', 'letter');
    expect(created.code, created.err).to.equal(0);
    const name = created.out.trim();
    await ctl('requests', 'verify', name, '--method', 'ID_DOCUMENT', '--by', 'dpo-1');
    const done = await ctl('rectify', name);
    expect(done.code, done.err).to.equal(0);
    expect(done.out).to.include('completed').and.include('rectified: the email identifier was replaced');
    expect(done.out + done.err).to.not.include('right@example.com');
    // The new flag must match the old identifier's kind; without the old one it is a usage error.
    const mismatch = await ctl('requests', 'create', '--tenant', T, '--kind', 'rectification', '--email', 'right@example.com', '--new-phone', '+4915112399999');
    expect(mismatch.code).to.not.equal(0);
    expect(mismatch.err).to.include('rectified_identifier');
    const bad = await ctl('requests', 'create', '--tenant', T, '--kind', 'rectification', '--email', 'right@example.com', '--new-email', 'not-an-address');
    expect([bad.code, bad.err]).to.satisfy(([code, err]: [number, string]) => code === 2 && err.includes('--new-email'));

    const reported = await ctl('--json', 'reassigned', '--tenant', T, '--email', 'right@example.com', '--source', 'NEW_OWNER', '--request-id', 'cli-reassigned-1');
    expect(reported.code, reported.err).to.equal(0);
    const subject = JSON.parse(reported.out).subject as string;
    expect(subject).to.match(/^tenants\/cli-tenant\/subjects\/[0-9a-f]{32}$/);
    const again = await ctl('--name-only', 'reassigned', '--tenant', T, '--email', 'right@example.com', '--source', 'NEW_OWNER', '--request-id', 'cli-reassigned-1');
    expect(again.out.trim(), 'a retry names the same subject').to.equal(subject);
    // The auditor's offline replay agrees: DENY IDENTIFIER_REASSIGNED, from the reassignment entry.
    const explained = await ctl('audit', 'explain', '--tenant', T, '--email', 'right@example.com', '--purpose', 'newsletter', '--channel', 'email');
    expect(explained.code, explained.err).to.equal(0);
    expect(explained.out).to.include('DENY (IDENTIFIER_REASSIGNED)').and.include('IDENTIFIER_REASSIGNED').and.include('give the same decision');
    const badSource = await ctl('reassigned', '--tenant', T, '--email', 'right@example.com', '--source', 'carrier notice');
    expect(badSource.code).to.equal(2);
    expect(badSource.err).to.include('--source');
  });

  it('--name-only prints just the names, for scripts', async function () {
    const created = await ctl('--name-only', 'requests', 'create', '--tenant', T, '--kind', 'portability', '--email', 'dpo-case@example.com');
    expect(created.code, created.err).to.equal(0);
    expect(created.out).to.match(/^tenants\/cli-tenant\/requests\/[0-9a-f]{32}\n$/);
    const listed = await ctl('--name-only', 'requests', 'list', '--tenant', T, '--kind', 'portability');
    expect(listed.out.trim().split('\n')).to.include(created.out.trim());
  });

  it('says a tampered receipt\'s signature does not verify (verify-receipt and audit verify-export)', async function () {
    const { receipt } = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email('receipt@example.com'), issueReceipt: true }));
    const jwksFile = path.join(db.dataDir, 'receipt-keys.json');
    expect((await ctl('audit', 'keys', '--tenant', T, '--out', jwksFile)).code).to.equal(0);
    const [h, p, sig] = receipt.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
    payload.eventType = 'OPT_OUT';
    const tampered = path.join(db.dataDir, 'tampered.jws');
    writeFileSync(tampered, [h, Buffer.from(JSON.stringify(payload)).toString('base64url'), sig].join('.'));
    const verify = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(TSX[0], [TSX[1], 'src/main.ts', 'verify-receipt', '--jwks', jwksFile, tampered], { cwd: ROOT }, (e, out) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out })),
    );
    expect(verify.code).to.equal(1);
    expect(JSON.parse(verify.out)).to.deep.include({ valid: false });
    expect(JSON.parse(verify.out).error).to.match(/^the signature does not verify with key \S+: the receipt was altered after it was signed/);

    const exportFile = path.join(db.dataDir, 'log.json');
    expect((await ctl('audit', 'export', '--tenant', T, '--jwks', jwksFile, '--out', exportFile)).code).to.equal(0);
    const log = JSON.parse(readFileSync(exportFile, 'utf8'));
    const [ch, cp, cs] = log.checkpoint.split('.');
    const body = JSON.parse(Buffer.from(cp, 'base64url').toString('utf8'));
    body.treeSize += 1;
    log.checkpoint = [ch, Buffer.from(JSON.stringify(body)).toString('base64url'), cs].join('.');
    writeFileSync(exportFile, JSON.stringify(log));
    const offline = await ctl('audit', 'verify-export', exportFile, '--jwks', jwksFile);
    expect(offline.code).to.equal(1);
    expect(offline.err).to.match(/VERIFICATION FAILED: checkpoint signature does not verify: the signature does not verify with key/);
  });

  it('lists overdue requests and reports usage errors and an unreachable server with distinct exit codes', async function () {
    const overdue = await ctl('requests', 'overdue', '--tenant', T, '--days', '40');
    expect(overdue.code).to.equal(0);
    expect(overdue.out).to.include('REQUEST').and.include('DUE BY (END OF DAY, UTC)');
    // The due day as a date (the last day to answer), not the midnight after it.
    const received = new Date(Date.UTC(2026, 0, 31, 15, 0));
    const made = await ctl('--name-only', 'requests', 'create', '--tenant', T, '--kind', 'access', '--email', 'due@example.com', '--received-at', received.toISOString());
    expect(made.code, made.err).to.equal(0);
    const listed = await ctl('requests', 'get', made.out.trim());
    expect(listed.out).to.match(/2026-02-28\s/).and.not.include('2026-03-01T00:00:00Z');
    expect((await ctl('requests', 'create', '--tenant', T, '--kind', 'nonsense', '--email', 'a@example.com')).code).to.equal(2);
    expect((await ctl('requests', 'list')).code).to.equal(2);
    const unreachable = (await runConsentctl('127.0.0.1:1', 'requests', 'list', '--tenant', T)).code;
    expect(unreachable).to.equal(3);
  });
});
