import { expect } from 'chai';
import { importRowOf } from '../../src/cli/import-rows';
import { csvRecords, jsonLineRecords, SourceRecord } from '../../src/cli/import-source';

/** consentctl import's reading of a file: the CSV records and the checks of each row's values (found by a probe). */
describe('consentctl import: reading the file', function () {
  async function* chunks(text: string, size = 7): AsyncGenerator<string> {
    for (let i = 0; i < text.length; i += size) yield text.slice(i, i + size);
  }
  const read = async (text: string) => {
    const out: SourceRecord[] = [];
    for await (const r of csvRecords(chunks(text))) out.push(r);
    return out;
  };

  it('skips blank lines, also of spaces or tabs only', async function () {
    const records = await read('phone,free_text\r\n+4915112345678,a\r\n   \r\n\t\r\n\r\n+4915112345679,b\r\n');
    expect(records).to.deep.equal([
      { line: 2, values: { phone: '+4915112345678', free_text: 'a' } },
      { line: 6, values: { phone: '+4915112345679', free_text: 'b' } },
    ]);
  });

  it('keeps a line break inside a quoted field as the file has it (RFC 4180): CR LF in a CR LF file, LF in an LF file', async function () {
    const crlf = await read('phone,free_text\r\n+4915112345678,"multi\r\nline\r\nnote"\r\n+4915112345679,x\r\n');
    expect(crlf[0]).to.deep.equal({ line: 2, values: { phone: '+4915112345678', free_text: 'multi\r\nline\r\nnote' } });
    expect(crlf[1]).to.deep.equal({ line: 5, values: { phone: '+4915112345679', free_text: 'x' } });
    const lf = await read('phone,free_text\n+4915112345678,"multi\nline"\n');
    expect(lf[0]).to.deep.equal({ line: 2, values: { phone: '+4915112345678', free_text: 'multi\nline' } });
  });

  it('rejects a line that is not UTF-8 (a Latin-1 file) instead of reading U+FFFD into the identifier; the other rows are read, multi-byte characters split across chunks too', async function () {
    const latin1 = Buffer.concat([
      Buffer.from('customer_id,kind\n'),
      Buffer.from('M\u00fcller-1,opt_out\n', 'latin1'),
      Buffer.from('Schmidt-2,opt_out\n'),
      Buffer.from('"M\u00f6ller\n-3",opt_out\n', 'latin1'),
      Buffer.from('M\u00fcller-4,opt_out\n', 'utf8'),
    ]);
    // Two bytes at a time: the UTF-8 "\u00fc" of the last row is split between two chunks.
    const out: SourceRecord[] = [];
    async function* bytes(): AsyncGenerator<Buffer> {
      for (let i = 0; i < latin1.length; i += 2) yield latin1.subarray(i, i + 2);
    }
    for await (const r of csvRecords(bytes())) out.push(r);
    expect(out).to.deep.equal([
      { line: 2, error: { reason: 'INVALID_UTF8', message: 'the line is not valid UTF-8 text (save the file as UTF-8)' } },
      { line: 3, values: { customer_id: 'Schmidt-2', kind: 'opt_out' } },
      { line: 4, error: { reason: 'INVALID_UTF8', message: 'the line is not valid UTF-8 text (save the file as UTF-8)' } },
      { line: 6, values: { customer_id: 'M\u00fcller-4', kind: 'opt_out' } },
    ]);
    const jsonl: SourceRecord[] = [];
    async function* lines(): AsyncGenerator<Buffer> {
      yield Buffer.concat([Buffer.from('{"customer_id":"M\u00fcller-1"}\n', 'latin1'), Buffer.from('{"customer_id":"ok"}\n')]);
    }
    for await (const r of jsonLineRecords(lines())) jsonl.push(r);
    expect(jsonl.map((r) => ('error' in r ? r.error.reason : r.values.customer_id))).to.deep.equal(['INVALID_UTF8', 'ok']);
  });

  it('refuses a date or time that does not exist instead of moving it to another day', function () {
    const row = (eventTime: string, expireTime = '') =>
      importRowOf({ phone: '+4915112345678', purpose: 'newsletter', channel: 'sms', kind: 'opt_in', event_time: eventTime, notice: '1', expire_time: expireTime }, 'acme', 2);
    const problems = (r: ReturnType<typeof row>) => (Array.isArray(r) ? r.map((p) => `${p.reason}:${p.field}`) : []);
    for (const bad of ['2024-02-30T10:00:00Z', '2023-02-29', '2024-06-31T00:00:00Z', '2024-13-01T00:00:00Z', '2024-00-10', '2024-01-01T24:00:00Z', '2024-01-01T10:60:00Z', '2024-01-01T10:00:61Z', '2024-01-01T10:00:00+25:00']) {
      expect(problems(row(bad)), bad).to.deep.equal(['INVALID_TIMESTAMP:event_time']);
    }
    expect(problems(row('2024-03-01T10:00:00Z', '2030-02-31T00:00:00Z'))).to.deep.equal(['INVALID_TIMESTAMP:expire_time']);
    for (const good of ['2024-02-29T10:00:00Z', '2024-02-29', '2023-12-31T23:59:59+01:00', '2024-03-01 10:00Z']) {
      const r = row(good);
      expect(Array.isArray(r) ? r : [], good).to.deep.equal([]);
    }
    const leap = row('2024-02-29T10:00:00+01:00');
    expect(Array.isArray(leap) ? null : leap.eventTime?.toISOString()).to.equal('2024-02-29T09:00:00.000Z');
  });
});
