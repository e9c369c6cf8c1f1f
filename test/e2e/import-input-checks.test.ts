import { existsSync, linkSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { importProbes, rejectsOf } from '../support/import-helpers';
import { ROOT, runConsentctl } from '../support/processes';
import { startTestServer, TestServer } from '../support/test-server';

/**
 * consentctl import against a real server with files that must not be imported as they are
 * (found by a probe): JSON numbers where text is expected (a number loses digits: the consent
 * would be recorded for another identifier), a row too large for a message of the service (it
 * stopped the whole import, every run), a CSV without its header row (the first row's personal
 * data was printed as "unknown columns"), and --rejects naming the input file (the business's
 * list was truncated before it was read).
 */
forEachDatabase('consentctl import: files that must not be imported as they are', (db) => {
  let s: TestServer;
  const T = 'import-checks';
  const ctl = (...args: string[]) => runConsentctl(s.address, ...args);
  const file = (name: string) => path.join(db().dataDir, name);
  /** Phone numbers that exist (German mobile range), one per index. */
  const mobile = (i: number) => `+4915${String(130000000 + i).padStart(9, '0')}`;
  const customer = (value: string): SubjectIdentifier => ({ kind: { $case: 'customerId', value }, defaultRegion: '' });
  const phone = (value: string): SubjectIdentifier => ({ kind: { $case: 'phoneNumber', value }, defaultRegion: '' });

  const { events, storedCount } = importProbes(() => s, T);
  const csvRejects = (text: string) => rejectsOf(text).map((r) => [r.line, r.reason, r.field]);

  before(async function () {
    this.timeout(60_000);
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());

  it('JSON Lines: a number where text is expected is rejected naming its column (it would lose digits), not recorded for another identifier; a notice that is not a whole number is INVALID_NOTICE; the other rows are imported', async function () {
    this.timeout(120_000);
    const base = { purpose: 'newsletter', channel: 'email', kind: 'opt_in', event_time: '2024-03-01T10:00:00Z' };
    const lines = [
      '{"customer_id": 12345678901234567890, "purpose": "newsletter", "channel": "email", "kind": "opt_in", "event_time": "2024-03-01T10:00:00Z", "notice": 1}', // 1: a number that is not what it says
      JSON.stringify({ ...base, customer_id: 'json-num-ok-1', notice: 1 }), // 2
      JSON.stringify({ ...base, customer_id: 4242, notice: 1 }), // 3: even a number that keeps its digits is not text
      `{"phone": ${mobile(1).slice(1)}, "region": "DE", "purpose": "newsletter", "channel": "sms", "kind": "opt_in", "event_time": "2024-03-01T10:00:00Z", "notice": 1}`, // 4
      '{"customer_id": "json-num-3", "purpose": "newsletter", "channel": "email", "kind": "opt_in", "event_time": "2024-03-01T10:00:00Z", "notice": 1, "free_text": 1e3}', // 5
      JSON.stringify({ ...base, customer_id: 'json-num-4', notice: 1.5 }), // 6
      '{"customer_id": "json-num-5", "purpose": "newsletter", "channel": "email", "kind": "opt_in", "event_time": "2024-03-01T10:00:00Z", "notice": 12345678901234567890}', // 7
      JSON.stringify({ ...base, customer_id: 'json-num-6', notice: true }), // 8
      JSON.stringify({ ...base, customer_id: 'json-num-ok-2', notice: '1' }), // 9
    ];
    writeFileSync(file('numbers.jsonl'), lines.join('\n') + '\n');
    const before = await storedCount();
    const run = await ctl('--json', 'import', file('numbers.jsonl'), '--tenant', T, '--rejects', file('numbers.rejects.jsonl'));
    expect(run.code, run.err).to.equal(1);
    expect(JSON.parse(run.out)).to.include({ rows: 9, recorded: 2, rejected: 7, rejectedLocally: 7, stopped: null });
    const rejects = readFileSync(file('numbers.rejects.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: number; reason: string; field: string });
    expect(rejects.map((r) => [r.line, r.reason, r.field])).to.deep.equal([
      [1, 'INVALID_VALUE', 'customer_id'],
      [3, 'INVALID_VALUE', 'customer_id'],
      [4, 'INVALID_VALUE', 'phone'],
      [5, 'INVALID_VALUE', 'free_text'],
      [6, 'INVALID_NOTICE', 'notice'],
      [7, 'INVALID_NOTICE', 'notice'],
      [8, 'INVALID_NOTICE', 'notice'],
    ]);
    expect(await storedCount()).to.equal(before + 2);
    expect(await events(customer('12345678901234567000')), 'nothing recorded for the rounded identifier').to.have.length(0);
    expect(await events(customer('12345678901234567890'))).to.have.length(0);
    expect(await events(customer('4242'))).to.have.length(0);
    expect(await events(phone(mobile(1)))).to.have.length(0);
    expect(await events(customer('json-num-ok-1'))).to.have.length(1);
    expect(await events(customer('json-num-ok-2'))).to.have.length(1);
  });

  it('a row too large for a message of the service is rejected on its own (TOO_LONG, its column, its line) without being sent; the other rows are imported, on every run', async function () {
    this.timeout(180_000);
    const header = 'phone,purpose,channel,kind,event_time,notice,free_text,page_url';
    const lines = [
      header,
      `${mobile(10)},newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,1,short,`, // 2
      `${mobile(11)},newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,1,${'x'.repeat(5_000_000)},`, // 3: 5 MB: over the 4 MiB message limit
      `${mobile(12)},newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,1,short,`, // 4
      `${mobile(13)},newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,1,,"https://example.org/${'p'.repeat(3_500_000)}"`, // 5: under 4 MiB, far over the field's limit
      `${mobile(14)},newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,1,${'y'.repeat(4097)},`, // 6: just over the field's limit: the service says so
      `${mobile(15)},newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,1,${'z'.repeat(4096)},`, // 7: at the limit
    ];
    writeFileSync(file('long-row.csv'), lines.join('\n') + '\n');
    const before = await storedCount();
    for (const round of [1, 2]) {
      const run = await ctl('--json', 'import', file('long-row.csv'), '--tenant', T, '--rejects', file('long-row.rejects.csv'));
      expect(run.code, run.err).to.equal(1);
      expect(JSON.parse(run.out), `run ${round}`).to.include({ rows: 6, recorded: round === 1 ? 3 : 0, alreadyRecorded: round === 1 ? 0 : 3, rejected: 3, rejectedLocally: 2, stopped: null });
      expect(run.err).to.not.include('RESOURCE_EXHAUSTED');
      expect(csvRejects(readFileSync(file('long-row.rejects.csv'), 'utf8'))).to.deep.equal([
        [3, 'TOO_LONG', 'free_text'],
        [5, 'TOO_LONG', 'page_url'],
        [6, 'TOO_LONG', 'free_text'],
      ]);
    }
    expect(await storedCount()).to.equal(before + 3);
    for (const i of [10, 12, 15]) expect(await events(phone(mobile(i)))).to.have.length(1);
  });

  it('a CSV without its header row: refused (exit 2) without printing any of the first row, saying the header row may be missing and that nothing was sent', async function () {
    this.timeout(120_000);
    // Personal data where the header should be: none of it may reach stdout or stderr.
    const planted = ['+4915112345678', 'max.mustermann@example.com', 'Erika Musterfrau', 'cust-778899'];
    writeFileSync(file('no-header.csv'), `${planted[0]},${planted[1]},newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,1,"${planted[2]}"\n${mobile(20)},,newsletter,sms,opt_in,2024-03-01T10:00:00Z,1,\n`);
    // The same e-mail address twice in the first row: a "column named twice".
    writeFileSync(file('no-header-twice.csv'), `${planted[3]},${planted[1]},${planted[1]},newsletter,email,opt_in,2024-03-01,1\n`);
    // Only lower-case words where the header should be: a person's name looks like a column name.
    writeFileSync(file('no-header-words.csv'), 'erika,mustermann,newsletter,email,opt_in\n');
    const before = await storedCount();
    const leaks = (text: string) => [...planted, '4915112345678', 'mustermann', 'musterfrau', '778899', 'erika'].filter((p) => text.toLowerCase().includes(p.toLowerCase()));
    for (const name of ['no-header.csv', 'no-header-twice.csv', 'no-header-words.csv']) {
      for (const json of [false, true]) {
        const run = await ctl(...(json ? ['--json'] : []), 'import', file(name), '--tenant', T);
        expect(run.code, `${name}: ${run.err}`).to.equal(2);
        expect(leaks(run.out), `${name}: stdout`).to.deep.equal([]);
        expect(leaks(run.err), `${name}: stderr`).to.deep.equal([]);
        expect(run.err, name).to.match(/header row/);
        expect(run.out, `${name}: not the advice of an interrupted run`).to.not.match(/run the same command again/);
        if (json) {
          const summary = JSON.parse(run.out);
          expect(summary).to.include({ rows: 0, calls: 0, refused: true });
          expect(summary.stopped).to.match(/header row/);
        } else {
          expect(run.out).to.match(/nothing was sent/i).and.match(/header row/);
        }
      }
    }
    expect(await storedCount()).to.equal(before);
    // A header with a typo: the column is named by its place, with the column it may have meant.
    writeFileSync(file('typo-header.csv'), 'phone,purpose,channel,kind,event_time,notise\n+4915112345678,newsletter,sms,opt_in,2024-01-01,1\n');
    const typo = await ctl('import', file('typo-header.csv'), '--tenant', T);
    expect(typo.code).to.equal(2);
    expect(typo.err).to.include('1 unknown column: column 6 (did you mean "notice"?)');
    expect(typo.out).to.match(/nothing was sent/i).and.not.match(/run the same command again/);
  });

  it('--rejects naming the input file (the same path, another path to it, a symbolic or hard link) is refused before any file is touched (exit 2); so is a bad argument or header, the rejects file kept', async function () {
    this.timeout(120_000);
    const content = `phone,purpose,channel,kind,event_time,notice\n${mobile(30)},newsletter,whatsapp,opt_in,2024-06-01T00:00:00Z,1\n`;
    const input = file('own-list.csv');
    writeFileSync(input, content);
    symlinkSync(input, file('own-list-link.csv'));
    linkSync(input, file('own-list-hard.csv'));
    const before = await storedCount();
    for (const rejects of [input, path.relative(ROOT, input), path.join(path.dirname(input), '.', 'own-list.csv'), file('own-list-link.csv'), file('own-list-hard.csv')]) {
      const run = await ctl('import', input, '--tenant', T, '--rejects', rejects);
      expect(run.code, `${rejects}: ${run.err}`).to.equal(2);
      expect(run.err).to.match(/--rejects.*the file being imported/);
      expect(readFileSync(input, 'utf8'), `${rejects}: the input is intact`).to.equal(content);
    }
    // The link as the input, the file as --rejects.
    const viaLink = await ctl('import', file('own-list-link.csv'), '--tenant', T, '--rejects', input);
    expect(viaLink.code, viaLink.err).to.equal(2);
    expect(readFileSync(input, 'utf8')).to.equal(content);
    expect(await storedCount(), 'nothing sent').to.equal(before);

    // A rejects file that exists is not truncated while an argument or the file's header is refused.
    const kept = 'line,reason,field,message\r\n2,REQUIRED,notice,an earlier run\r\n';
    writeFileSync(file('kept.rejects.csv'), kept);
    const badArgument = await ctl('import', input, '--tenant', T, '--rejects', file('kept.rejects.csv'), '--rows-per-call', 'many');
    expect(badArgument.code, badArgument.err).to.equal(2);
    writeFileSync(file('bad-header.csv'), 'phone,purpose,channel,kind\n');
    const badHeader = await ctl('import', file('bad-header.csv'), '--tenant', T, '--rejects', file('kept.rejects.csv'));
    expect(badHeader.code, badHeader.err).to.equal(2);
    expect(readFileSync(file('kept.rejects.csv'), 'utf8')).to.equal(kept);
    const notMade = await ctl('import', file('bad-header.csv'), '--tenant', T, '--rejects', file('never.rejects.csv'));
    expect(notMade.code, notMade.err).to.equal(2);
    expect(existsSync(file('never.rejects.csv')), 'no rejects file made for a file refused').to.equal(false);
    // And the input imports once --rejects names another file.
    const good = await ctl('--json', 'import', input, '--tenant', T, '--rejects', file('own-list.rejects.csv'));
    expect(good.code, good.err).to.equal(0);
    expect(JSON.parse(good.out)).to.include({ rows: 1, recorded: 1 });
    expect(readFileSync(file('own-list.rejects.csv'), 'utf8')).to.equal('line,reason,field,message\r\n');
  });
});
