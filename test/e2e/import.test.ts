import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, ConsentStatus } from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, seedTenant } from '../support/fixtures';
import { importProbes, rejectsOf } from '../support/import-helpers';
import { runConsentctl } from '../support/processes';
import { call, startTestServer, TestServer } from '../support/test-server';

/**
 * consentctl import against a real server, as a business loads its existing list: CSV and JSON
 * Lines, rows the file or the service rejects (each with its line in the rejects file) while the
 * others are imported, re-runs of the same file and of the file with its lines moved (nothing
 * imported twice), historical event times kept, the audit log verifying afterwards.
 */
forEachDatabase('consentctl import', (db) => {
  let s: TestServer;
  const T = 'imports';
  const ctl = (...args: string[]) => runConsentctl(s.address, ...args);
  const file = (name: string) => path.join(db().dataDir, name);
  const HEADER = 'phone,email,customer_id,region,purpose,channel,kind,event_time,method,notice,source_ip,page_url,free_text,request_id';
  /** Phone numbers that exist (German mobile range), one per index. */
  const mobile = (i: number) => `+4915${String(110000000 + i).padStart(9, '0')}`;

  const { events, storedCount } = importProbes(() => s, T);

  before(async function () {
    this.timeout(60_000);
    s = await startTestServer(db());
    await seedTenant(s, T);
    // A person who is erased before the import: their old opt-in must not come back with it.
    const erased = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(mobile(900)), requestId: 'before-erasure' }));
    await s.app.services.subjectEraser.erase(T, erased.event!.subject.split('/')[3]);
  });
  after(async () => s?.stop());

  const rows = [
    HEADER,
    `${mobile(1)},,,,newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,web_form,1,203.0.113.7,https://shop.example/signup,,`, // 2
    `,anna@example.com,,,newsletter,email,opt_in,2023-11-20,,1,,,"paper form, signed ""yes""",`, // 3
    `0151 10000003,,,DE,orders,sms,opt_in,2024-01-05T08:30:00+01:00,api,1,,,,`, // 4: national number with region
    `${mobile(4)},,,,newsletter,whatsapp,opt_out,2024-05-01T00:00:00Z,,,,,,`, // 5
    `+4915,,,,newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,,1,,,,`, // 6: phone number that cannot exist (service)
    `${mobile(6)},,,,nosuchpurpose,whatsapp,opt_in,2024-03-01T10:00:00Z,,1,,,,`, // 7: unknown purpose (service)
    `${mobile(7)},,,,newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,,,,,,`, // 8: opt-in without notice (service)
    `${mobile(900)},,,,newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,,1,,,,`, // 9: the erased person (service)
    `${mobile(9)},,,,newsletter,whatsapp,optin,2024-03-01T10:00:00Z,,1,,,,`, // 10: bad enum (local)
    `${mobile(10)},,,,newsletter,whatsapp,opt_in,,,1,,,,`, // 11: no event time (local)
    `${mobile(11)},,,,newsletter,whatsapp,opt_in,2024-03-01T10:00:00,,1,,,,`, // 12: time without zone (local)
    `${mobile(12)},,,,newsletter,"whats"app,opt_in,2024-03-01T10:00:00Z,,1,,,,`, // 13: malformed quotes (local)
    `${mobile(13)},,,,newsletter,whatsapp,opt_in,2024-03-01T10:00:00Z,,1`, // 14: too few fields (local)
    '',
    `,,cust-42,,support,any,opt_in,2022-07-01T12:00:00Z,verbal,1,,,,given-id-42`, // 16: own request id
    `${mobile(16)},,,,newsletter,sms,opt_in_pending,2024-02-01T09:00:00Z,web_form,1,,,,`, // 17
    `${mobile(16)},,,,newsletter,sms,opt_in_confirmed,2024-02-01T09:05:00Z,web_form,,,,,`, // 18: confirms 17
  ];
  const IMPORTED = [2, 3, 4, 5, 16, 17, 18];
  const REJECTED: Array<[number, string, string]> = [
    [6, 'INVALID_PHONE_NUMBER', 'phone'],
    [7, 'PURPOSE_NOT_FOUND', ''],
    [8, 'REQUIRED', 'notice'],
    [9, 'SUBJECT_SUPPRESSED', ''],
    [10, 'UNKNOWN_ENUM_VALUE', 'kind'],
    [11, 'REQUIRED', 'event_time'],
    [12, 'INVALID_TIMESTAMP', 'event_time'],
    [13, 'MALFORMED_QUOTES', ''],
    [14, 'WRONG_COLUMN_COUNT', ''],
  ];

  it('imports a CSV file: every good row recorded with its historical time, every bad one in the rejects file with its line', async function () {
    this.timeout(120_000);
    writeFileSync(file('list.csv'), rows.join('\r\n') + '\r\n');
    const before = await storedCount();
    const run = await ctl('import', file('list.csv'), '--tenant', T, '--rejects', file('rejects.csv'));
    expect(run.code, run.err).to.equal(1);
    expect(run.out).to.match(/16 rows read/).and.match(/recorded now: +7\b/).and.match(/already recorded: +0\b/).and.match(/rejected: +9\b/);
    expect(run.err).to.include('9 of 16 rows rejected');
    expect(run.err, 'progress off a terminal: whole lines').to.not.include('\r');
    expect(await storedCount()).to.equal(before + IMPORTED.length);

    const rejects = rejectsOf(readFileSync(file('rejects.csv'), 'utf8'));
    expect(rejects.map((r) => [r.line, r.reason, r.field])).to.deep.equal(REJECTED);
    const text = readFileSync(file('rejects.csv'), 'utf8');
    for (const i of [1, 6, 7, 9, 10, 11, 12, 13, 900]) expect(text, 'no personal data in the rejects file').to.not.include(mobile(i).slice(3));

    // Historical times, methods and evidence as the file said.
    const first = await events(phone(mobile(1)));
    expect(first).to.have.length(1);
    expect(first[0].eventTime!.toISOString()).to.equal('2024-03-01T10:00:00.000Z');
    expect(first[0].method).to.equal(CollectionMethod.COLLECTION_METHOD_WEB_FORM);
    expect(first[0].evidence!.sourceIp).to.equal('203.0.113.0');
    expect(first[0].evidence!.pageUrl).to.equal('https://shop.example/signup');
    const anna = await events(email('anna@example.com'));
    expect(anna[0].eventTime!.toISOString()).to.equal('2023-11-20T00:00:00.000Z');
    expect(anna[0].method, 'no method: IMPORT').to.equal(CollectionMethod.COLLECTION_METHOD_IMPORT);
    expect(anna[0].evidence!.freeText).to.equal('paper form, signed "yes"');
    const national = await events(phone('+4915110000003'));
    expect(national[0].eventTime!.toISOString()).to.equal('2024-01-05T07:30:00.000Z');
    const own = await events({ kind: { $case: 'customerId', value: 'cust-42' }, defaultRegion: '' });
    expect(own[0].requestId).to.equal('given-id-42');
    const state = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: phone(mobile(16)) });
    const sms = state.entries.find((e) => e.channel === Channel.CHANNEL_SMS)!;
    expect(sms.status).to.equal(ConsentStatus.CONSENT_STATUS_OPTED_IN);
    expect(sms.latestOptInTime!.toISOString()).to.equal('2024-02-01T09:05:00.000Z');
    const optOut = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: phone(mobile(4)) });
    expect(optOut.entries[0].latestOptOutTime!.toISOString()).to.equal('2024-05-01T00:00:00.000Z');
    expect((await events(phone(mobile(1))))[0].kind).to.equal(ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN);
  });

  it('the same file again imports nothing twice: every row already recorded, the same rejections', async function () {
    this.timeout(120_000);
    const before = await storedCount();
    const run = await ctl('--json', 'import', file('list.csv'), '--tenant', T, '--rejects', file('rejects-2.csv'));
    expect(run.code, run.err).to.equal(1);
    const summary = JSON.parse(run.out);
    expect(summary).to.include({ rows: 16, recorded: 0, alreadyRecorded: 7, rejected: 9, rejectedLocally: 5, stopped: null });
    expect(await storedCount()).to.equal(before);
    expect(rejectsOf(readFileSync(file('rejects-2.csv'), 'utf8')).map((r) => r.line)).to.deep.equal(REJECTED.map((r) => r[0]));
  });

  it('the file with its lines moved and a row written differently imports nothing twice either', async function () {
    this.timeout(120_000);
    const data = rows.slice(1).filter((r) => r !== '');
    const moved = [HEADER, ...data.reverse()];
    // The same phone number written with spaces is the same row.
    moved[moved.length - 1] = moved[moved.length - 1].replace(mobile(1), `+49 15 ${mobile(1).slice(5)}`);
    writeFileSync(file('moved.csv'), moved.join('\n'));
    const before = await storedCount();
    const run = await ctl('--json', 'import', file('moved.csv'), '--tenant', T);
    const summary = JSON.parse(run.out);
    expect(summary, run.err).to.include({ rows: 16, recorded: 0, alreadyRecorded: 7, rejected: 9 });
    expect(await storedCount()).to.equal(before);
    // Without --rejects the first rejections are printed, with their lines.
    expect(run.err).to.match(/^line \d+: /m);
  });

  it('imports JSON Lines, in several calls, with a JSON Lines rejects file', async function () {
    this.timeout(120_000);
    const lines: string[] = [];
    for (let i = 0; i < 23; i++) lines.push(JSON.stringify({ phone: mobile(1000 + i), purpose: 'newsletter', channel: 'sms', kind: 'opt_in', event_time: `2021-06-${String(1 + i).padStart(2, '0')}T10:00:00Z`, notice: 1 }));
    lines.splice(5, 0, '{"phone": "+4915100000000", "purpose": "newsletter"'); // line 6: not JSON
    lines.splice(9, 0, '[1, 2]'); // line 10: not an object
    lines.splice(12, 0, JSON.stringify({ phone: mobile(2000), purpose: 'newsletter', channel: 'sms', kind: 'opt_in', event_time: '2021-06-01T10:00:00Z', notice: 1, colour: 'blue' })); // line 13
    writeFileSync(file('list.jsonl'), lines.join('\n') + '\n');
    const run = await ctl('--json', 'import', file('list.jsonl'), '--tenant', T, '--rejects', file('rejects.jsonl'), '--rows-per-call', '7');
    expect(run.code, run.err).to.equal(1);
    const summary = JSON.parse(run.out);
    expect(summary).to.include({ rows: 26, recorded: 23, alreadyRecorded: 0, rejected: 3, calls: 4 });
    const rejects = readFileSync(file('rejects.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rejects.map((r) => [r.line, r.reason, r.field])).to.deep.equal([
      [6, 'INVALID_JSON', ''],
      [10, 'NOT_AN_OBJECT', ''],
      [13, 'UNKNOWN_FIELD', 'colour'],
    ]);
    const june = await events(phone(mobile(1010)));
    expect(june[0].eventTime!.toISOString()).to.equal('2021-06-11T10:00:00.000Z');
  });

  it('a file whose every row the service rejects: each one in the rejects file (an answer of about 6 MB, above the default 4 MiB a grpc-js client takes)', async function () {
    this.timeout(180_000);
    // 20,000 rejections naming a long purpose: an answer of about 6 MB.
    const retired = 'retired-purpose-of-a-very-long-name-kept-for-the-old-lists-xx';
    const lines = ['phone,purpose,channel,kind,event_time,notice'];
    for (let i = 0; i < 20_000; i++) lines.push(`${mobile(100_000 + i)},${retired},sms,opt_in,2024-01-01T00:00:00Z,1`);
    writeFileSync(file('all-rejected.csv'), lines.join('\n') + '\n');
    const before = await storedCount();
    const run = await ctl('--json', 'import', file('all-rejected.csv'), '--tenant', T, '--rejects', file('all-rejected-rejects.csv'));
    expect(run.code, run.err).to.equal(1);
    expect(JSON.parse(run.out)).to.include({ rows: 20_000, recorded: 0, rejected: 20_000, stopped: null });
    const rejects = rejectsOf(readFileSync(file('all-rejected-rejects.csv'), 'utf8'));
    expect(rejects).to.have.length(20_000);
    expect(new Set(rejects.map((r) => r.reason))).to.deep.equal(new Set(['PURPOSE_NOT_FOUND']));
    expect(rejects[0].line).to.equal(2);
    expect(rejects[19_999].line).to.equal(20_001);
    expect(await storedCount()).to.equal(before);
  });

  it('rows with evidence at its length limits are imported: messages are cut by size too, not only by count (found by a probe)', async function () {
    this.timeout(120_000);
    const ua = 'Mozilla/5.0 ' + 'x'.repeat(2048 - 12);
    const url = 'https://example.org/' + 'p'.repeat(2048 - 20);
    const lines = ['customer_id,purpose,channel,kind,event_time,user_agent,page_url,free_text,collected_by,inbound_message_id'];
    for (let i = 0; i < 600; i++) lines.push(`big-row-${i},newsletter,sms,opt_out,2024-01-01T00:00:00Z,${ua},${url},${'f'.repeat(4096)},${'c'.repeat(200)},${'m'.repeat(256)}`);
    writeFileSync(file('large-rows.csv'), lines.join('\n') + '\n');
    const before = await storedCount();
    const run = await ctl('--json', 'import', file('large-rows.csv'), '--tenant', T);
    expect(run.code, run.err).to.equal(0);
    expect(JSON.parse(run.out)).to.include({ rows: 600, recorded: 600, rejected: 0, stopped: null });
    expect(await storedCount()).to.equal(before + 600);
  });

  it('audit verify --records is clean after the imports', async function () {
    this.timeout(120_000);
    const verified = await ctl('audit', 'verify', '--tenant', T, '--records');
    expect(verified.code, verified.err).to.equal(0);
    expect(verified.out).to.include('verified');
  });

  it('refuses a CSV header with an unknown or missing column before sending anything (exit 2)', async function () {
    writeFileSync(file('typo.csv'), 'phone_number,purpose,channel,kind,event_time\n+4915112345678,newsletter,sms,opt_in,2024-01-01\n');
    const typo = await ctl('import', file('typo.csv'), '--tenant', T);
    expect(typo.code).to.equal(2);
    expect(typo.err).to.include('1 unknown column: column 1 (did you mean "phone"?)');
    writeFileSync(file('short.csv'), 'phone,purpose,channel\n+4915112345678,newsletter,sms\n');
    const short = await ctl('import', file('short.csv'), '--tenant', T);
    expect(short.code).to.equal(2);
    expect(short.err).to.include('missing columns kind, event_time');
    const unknownFormat = await ctl('import', file('typo.txt'), '--tenant', T);
    expect(unknownFormat.code).to.equal(2);
  });
});
