import { expect } from 'chai';
import { headerProblem, importRowOf, MAX_ROW_BYTES, oversizeProblems } from '../../src/cli/import-rows';
import { csvRecords } from '../../src/cli/import-source';
import { ImportRow } from '../../src/gen/consent/v1/consent';

/** consentctl import's checks of a row's values and of the header, without a service (found by a probe). */
describe('consentctl import: the checks of rows and header', function () {
  const base = { purpose: 'newsletter', channel: 'email', kind: 'opt_in', event_time: '2024-03-01T10:00:00Z' };
  const problems = (values: Record<string, unknown>) => {
    const r = importRowOf({ ...base, ...values }, 'acme', 2);
    return Array.isArray(r) ? r.map((p) => `${p.reason}:${p.field}`) : [];
  };

  it('a JSON number is never turned into text for a column of text: it may have lost digits (12345678901234567890 reads as 12345678901234567000)', function () {
    expect(problems({ customer_id: 12345678901234567890, notice: 1 })).to.deep.equal(['INVALID_VALUE:customer_id']);
    expect(problems({ customer_id: 42, notice: 1 })).to.deep.equal(['INVALID_VALUE:customer_id']);
    expect(problems({ phone: 4915112345678, region: 'DE', notice: 1 })).to.deep.equal(['INVALID_VALUE:phone']);
    expect(problems({ customer_id: 'c-1', notice: 1, free_text: 1e3 })).to.deep.equal(['INVALID_VALUE:free_text']);
    expect(problems({ customer_id: 'c-1', notice: 1, request_id: 7 })).to.deep.equal(['INVALID_VALUE:request_id']);
    expect(problems({ customer_id: 'c-1', notice: 1, jurisdiction: false })).to.deep.equal(['INVALID_VALUE:jurisdiction']);
    // No message repeats the value.
    const r = importRowOf({ ...base, customer_id: 12345678901234567890, notice: 1 }, 'acme', 2);
    expect(JSON.stringify(r)).to.not.match(/1234567890/);
  });

  it('notice: a whole number (or its digits as text); any other number is INVALID_NOTICE, never rounded', function () {
    for (const good of [1, 7, '1', ' 12 ', 999_999_999]) {
      const r = importRowOf({ ...base, customer_id: 'c-1', notice: good }, 'acme', 2);
      expect(Array.isArray(r) ? r : r.notice, String(good)).to.equal(`tenants/acme/purposes/newsletter/notices/${String(good).trim()}`);
    }
    for (const bad of [1.5, 0, -1, 12345678901234567890, 2 ** 53, 1e21, Number.NaN, true, { v: 1 }, [1], '1.0', '01']) {
      expect(problems({ customer_id: 'c-1', notice: bad }), String(bad)).to.deep.equal(['INVALID_NOTICE:notice']);
    }
  });

  it('a row too large to send is TOO_LONG on each column over the service\'s limit, else on its largest column', function () {
    const row = importRowOf({ ...base, customer_id: 'c-1', notice: '1', free_text: 'x'.repeat(5_000_000), user_agent: 'u'.repeat(3000), page_url: 'short' }, 'acme', 2) as ImportRow;
    const size = ImportRow.encode(row).finish().length;
    expect(size).to.be.above(MAX_ROW_BYTES);
    expect(oversizeProblems(row).map((p) => `${p.reason}:${p.field}`)).to.deep.equal(['TOO_LONG:user_agent', 'TOO_LONG:free_text']);
    expect(oversizeProblems(row)[1].message).to.include('4,096 bytes');
    // Multi-byte text counts in bytes where the service counts bytes.
    const wide = importRowOf({ ...base, customer_id: 'c-1', notice: '1', inbound_message_id: '\u00fc'.repeat(40_000) }, 'acme', 2) as ImportRow;
    expect(oversizeProblems(wide).map((p) => `${p.reason}:${p.field}`)).to.deep.equal(['TOO_LONG:inbound_message_id']);
    // A column without a limit of its own (the source IP: an address, or INVALID_IP_ADDRESS) is named as the largest.
    const ip = importRowOf({ ...base, customer_id: 'c-1', notice: '1', source_ip: '1'.repeat(100_000) }, 'acme', 2) as ImportRow;
    expect(oversizeProblems(ip).map((p) => `${p.reason}:${p.field}`)).to.deep.equal(['TOO_LONG:source_ip']);
    // Every row within the service's limits is far below the bound.
    const longest = importRowOf(
      {
        ...base,
        customer_id: '\u{1F600}'.repeat(128),
        notice: '999999999',
        source_ip: 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255',
        user_agent: 'u'.repeat(2048),
        page_url: 'p'.repeat(2048),
        inbound_message_id: 'm'.repeat(256),
        free_text: 'f'.repeat(4096),
        collected_by: '\u{1F600}'.repeat(200),
        jurisdiction: '\u{1F600}'.repeat(16),
        request_id: 'r'.repeat(128),
        expire_time: '2030-01-01T00:00:00Z',
      },
      'a'.repeat(63),
      2 ** 31,
    ) as ImportRow;
    expect(ImportRow.encode(longest).finish().length).to.be.below(MAX_ROW_BYTES / 4);
  });

  it('a header problem names unknown columns by their place, never their text (a file without its header row has personal data there)', function () {
    const pii = ['+4915112345678', 'max.mustermann@example.com', 'newsletter', 'whatsapp', 'opt_in', '2024-03-01t10:00:00z', '1', 'erika musterfrau'];
    const headerless = headerProblem(pii)!;
    expect(headerless).to.include('may lack its header row').and.include('8 unknown columns');
    for (const p of pii) if (p !== '1') expect(headerless).to.not.include(p);
    const words = headerProblem(['erika', 'mustermann', 'newsletter', 'email', 'opt_in'])!;
    expect(words).to.include('may lack its header row');
    expect(words).to.not.match(/erika|mustermann/);
    expect(headerProblem(['phone_number', 'purpose', 'channel', 'kind', 'event_time'])).to.include('1 unknown column: column 1 (did you mean "phone"?)').and.not.include('may lack');
    expect(headerProblem(['phone', 'purpose', 'channel', 'kind', 'event_time', 'notise'])).to.include('column 6 (did you mean "notice"?)');
    // Mostly typos is still a header.
    expect(headerProblem(['phone_number', 'purpse', 'chanel', 'kind', 'event_tme'])).to.include('4 unknown columns: column 1 (did you mean "phone"?), column 2 (did you mean "purpose"?), column 3 (did you mean "channel"?), column 5 (did you mean "event_time"?)');
    expect(headerProblem(['phone', 'purpose', 'channel', 'kind', 'event_time', 'colour'])).to.include('column 6;').and.not.include('did you mean');
    expect(headerProblem(['phone', 'purpose', 'channel', 'kind', 'event_time', ''])).to.include('column 6 is empty');
    expect(headerProblem(['phone', 'purpose', 'channel'])).to.include('missing columns kind, event_time');
    expect(headerProblem(['phone', 'purpose', 'channel', 'kind', 'event_time'])).to.equal(null);
  });

  it('a column named twice is named only when it is a column, otherwise by its places; an unreadable first line refuses the file', async function () {
    const first = async (text: string) => {
      try {
        async function* chunks() {
          yield text;
        }
        for await (const r of csvRecords(chunks())) void r;
        return null;
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(await first('phone,purpose,phone\n')).to.include('names the column "phone" twice');
    const twice = (await first('cust-1,anna@example.com,anna@example.com,newsletter\n'))!;
    expect(twice).to.include('columns 2 and 3').and.not.include('anna');
    // A first line that cannot be read is no header: the file is refused, not its next line taken as one.
    expect(await first('phone,"purpose\n+4915112345678,newsletter\n')).to.include('the header row (line 1) cannot be read');
  });
});
