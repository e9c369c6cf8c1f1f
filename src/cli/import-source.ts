import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { IMPORT_COLUMNS } from './import-rows';

/**
 * The records of an import file, each with the line it starts on: CSV (RFC 4180, a header row
 * naming the columns) or JSON Lines (one object per line). A record that cannot be read is
 * reported with its line and why, and reading goes on with the next line, so one broken row
 * never hides the rest of the file.
 *
 * CSV is parsed here rather than with a library: csv-parse (the usual npm choice, tried for this)
 * reports the line a record ends on, one line too far for CRLF files, and after a malformed quote
 * reads the following rows into the broken field, so their line numbers and contents were lost;
 * an import must name the line of every row it rejects. This parser is strict RFC 4180 (fields
 * separated by commas, records by CRLF or LF, quoted fields with "" for a quote and line breaks
 * inside, a UTF-8 byte order mark ignored) and resumes after an error at the next line.
 */

export type SourceFormat = 'csv' | 'jsonl';

/** A record's values by column (CSV: text; JSON Lines: whatever the object holds). */
export type SourceValues = Record<string, unknown>;

export type SourceRecord = { line: number; values: SourceValues } | { line: number; error: { reason: string; message: string } };

/** Longest record (in characters) a quoted field may stretch over before it counts as never closed. */
const MAX_RECORD_CHARS = 1 << 20;

/** Reading progress, for the progress display: bytes of the file read so far and in all. */
export interface SourceProgress {
  bytesRead(): number;
}

/** The records of `file` in order; `progress` is updated as the file is read. */
export function readRecords(file: string, format: SourceFormat, onHeader: (columns: string[]) => void = () => {}): { records: AsyncGenerator<SourceRecord>; progress: SourceProgress } {
  // Bytes, not text: a line that is not valid UTF-8 is rejected, not read with U+FFFD in place of
  // what it says (an identifier changed that way is another person's, or nobody's).
  const stream = createReadStream(file, { highWaterMark: 1 << 16 });
  const chunks = stream as AsyncIterable<Buffer>;
  return {
    records: format === 'csv' ? csvRecords(chunks, onHeader) : jsonLineRecords(chunks),
    progress: { bytesRead: () => stream.bytesRead },
  };
}

/** A physical line: numbered from 1, without its ending; `crlf` says whether it was CR LF (a quoted CSV field keeps it as written); `invalid` that its bytes are not UTF-8. */
type Line = { line: number; text: string; crlf?: boolean; invalid?: boolean };

/** The lines of a file's chunks (bytes, or text in tests); a UTF-8 byte order mark is dropped. */
async function* lines(chunks: AsyncIterable<string | Buffer>): AsyncGenerator<Line> {
  let rest: Buffer = Buffer.alloc(0);
  let line = 0;
  let first = true;
  const made = (bytes: Buffer, crlf?: boolean): Line => {
    const text = bytes.toString('utf8');
    return isUtf8(bytes) ? { line: ++line, text, crlf } : { line: ++line, text, crlf, invalid: true };
  };
  for await (const piece of chunks) {
    let chunk = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece;
    if (first) {
      if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
      first = false;
    }
    rest = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
    let start = 0;
    for (let nl = rest.indexOf(10); nl >= 0; nl = rest.indexOf(10, start)) {
      const crlf = nl > start && rest[nl - 1] === 13;
      yield made(rest.subarray(start, crlf ? nl - 1 : nl), crlf);
      start = nl + 1;
    }
    rest = rest.subarray(start);
  }
  if (rest.length > 0) yield made(rest[rest.length - 1] === 13 ? rest.subarray(0, -1) : rest);
}

/** The rejection of a record with a line that is not UTF-8. */
const NOT_UTF8 = { reason: 'INVALID_UTF8', message: 'the line is not valid UTF-8 text (save the file as UTF-8)' };

/** JSON Lines: each non-blank line one JSON object. */
export async function* jsonLineRecords(chunks: AsyncIterable<string | Buffer>): AsyncGenerator<SourceRecord> {
  for await (const { line, text, invalid } of lines(chunks)) {
    if (text.trim() === '') continue;
    if (invalid) {
      yield { line, error: NOT_UTF8 };
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      yield { line, error: { reason: 'INVALID_JSON', message: 'the line is not valid JSON' } };
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      yield { line, error: { reason: 'NOT_AN_OBJECT', message: 'each line must be one JSON object of column names and values' } };
      continue;
    }
    yield { line, values: value as SourceValues };
  }
}

/**
 * CSV: the first record names the columns (trimmed, lower case; `onHeader` may refuse them);
 * every later record becomes the values of those columns. Blank lines are skipped. A record with more or fewer fields than the
 * header, or with malformed quotes, is reported and skipped.
 */
export async function* csvRecords(chunks: AsyncIterable<string | Buffer>, onHeader: (columns: string[]) => void = () => {}): AsyncGenerator<SourceRecord> {
  let header: string[] | null = null;
  for await (const record of csvFields(lines(chunks))) {
    if ('error' in record) {
      // The first record must be the header: the file's rows cannot be told apart without it.
      if (header === null) throw new CsvHeaderError(`the header row (line ${record.line}) cannot be read: ${record.error.message}`);
      yield record;
      continue;
    }
    if (header === null) {
      header = record.fields.map((f) => f.trim().toLowerCase());
      // The header's names first (onHeader refuses unknown ones without repeating them: where the
      // header should be, a file without one has a row of personal data).
      onHeader(header);
      const names = header;
      const twice = names.findIndex((name, i) => names.indexOf(name) !== i);
      if (twice >= 0) {
        const first = names.indexOf(names[twice]) + 1;
        throw new CsvHeaderError(
          (IMPORT_COLUMNS as readonly string[]).includes(names[twice])
            ? `the header row names the column "${names[twice]}" twice (columns ${first} and ${twice + 1})`
            : `the header row's columns ${first} and ${twice + 1} have the same name (not shown: the file may lack its header row, and this be a row's personal data)`,
        );
      }
      continue;
    }
    if (record.fields.length !== header.length) {
      yield { line: record.line, error: { reason: 'WRONG_COLUMN_COUNT', message: `the row has ${record.fields.length} fields; the header names ${header.length} columns` } };
      continue;
    }
    const values: SourceValues = {};
    header.forEach((name, i) => (values[name] = record.fields[i]));
    yield { line: record.line, values };
  }
  if (header === null) throw new CsvHeaderError('the file is empty: a CSV import starts with a header row naming the columns');
}

/** The header row is missing or unusable: nothing of the file can be read. */
export class CsvHeaderError extends Error {}

type FieldsRecord = { line: number; fields: string[] } | { line: number; error: { reason: string; message: string } };

/** RFC 4180 records (lists of fields) of physical lines; a quoted field may span lines. */
async function* csvFields(source: AsyncGenerator<Line>): AsyncGenerator<FieldsRecord> {
  // Lines read ahead while a quoted field was still open, to be read again after an error.
  const replay: Line[] = [];
  const next = async () => (replay.length > 0 ? replay.shift()! : (await source.next()).value ?? null);
  for (let current = await next(); current !== null; current = await next()) {
    // Blank lines, also of spaces or tabs only, are skipped (docs/import.md).
    if (current.text.trim() === '') continue;
    if (current.invalid && !current.text.includes('"')) {
      yield { line: current.line, error: NOT_UTF8 };
      continue;
    }
    if (!current.text.includes('"')) {
      yield { line: current.line, fields: current.text.split(',') };
      continue;
    }
    // Quoted fields: read on, line by line, while a quote is open.
    const taken = [current];
    let text = current.text;
    let parsed: string[] | 'open' | 'malformed' | 'skipped' = parseQuoted(text);
    let size = text.length;
    let ending = current.crlf ? '\r\n' : '\n';
    while (parsed === 'open') {
      const more = await next();
      if (more === null || size > MAX_RECORD_CHARS) {
        if (more !== null) taken.push(more);
        // Never closed: report the record's first line and read the lines after it again.
        replay.unshift(...taken.slice(1));
        yield { line: current.line, error: { reason: 'QUOTE_NOT_CLOSED', message: 'a quoted field that starts on this line is never closed' } };
        parsed = 'skipped';
        break;
      }
      taken.push(more);
      // The line break inside the quoted field, as the file has it (RFC 4180: part of the field).
      text += ending + more.text;
      ending = more.crlf ? '\r\n' : '\n';
      size += more.text.length + 1;
      parsed = parseQuoted(text);
    }
    if (parsed === 'skipped') continue;
    if (parsed === 'malformed') {
      // The record is broken where its quotes are: skip the lines it took, the rest may be fine.
      replay.unshift(...taken.slice(1));
      yield { line: current.line, error: { reason: 'MALFORMED_QUOTES', message: 'a quote inside an unquoted field, or text after a closing quote (RFC 4180: quote the whole field and double the quotes inside it)' } };
      continue;
    }
    // A record over several lines is rejected whole when one of them is not UTF-8.
    if (taken.some((l) => l.invalid)) yield { line: current.line, error: NOT_UTF8 };
    else yield { line: current.line, fields: parsed };
  }
}

/**
 * The fields of a record that contains quotes: its fields, 'open' when a quoted field is not
 * closed by the end of `text` (the record goes on on the next line), or 'malformed'.
 */
function parseQuoted(text: string): string[] | 'open' | 'malformed' {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (text.charCodeAt(i) === 34) {
      // A quoted field: up to the quote that is not doubled.
      let value = '';
      let from = i + 1;
      for (;;) {
        const quote = text.indexOf('"', from);
        if (quote < 0) return 'open';
        if (text.charCodeAt(quote + 1) === 34) {
          value += text.slice(from, quote + 1);
          from = quote + 2;
          continue;
        }
        value += text.slice(from, quote);
        i = quote + 1;
        break;
      }
      fields.push(value);
      if (i === text.length) return fields;
      if (text.charCodeAt(i) !== 44) return 'malformed';
      i++;
      continue;
    }
    const comma = text.indexOf(',', i);
    const end = comma < 0 ? text.length : comma;
    const value = text.slice(i, end);
    if (value.includes('"')) return 'malformed';
    fields.push(value);
    if (comma < 0) return fields;
    i = comma + 1;
  }
}
