import { createReadStream } from 'node:fs';

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
  const stream = createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 16 });
  const chunks = stream as AsyncIterable<string>;
  return {
    records: format === 'csv' ? csvRecords(chunks, onHeader) : jsonLineRecords(chunks),
    progress: { bytesRead: () => stream.bytesRead },
  };
}

/** Physical lines of text chunks, numbered from 1, without their line break (LF or CRLF). */
/** Physical lines without their ending; `crlf` says whether it was CR LF (a quoted CSV field keeps it as written). */
async function* lines(chunks: AsyncIterable<string>): AsyncGenerator<{ line: number; text: string; crlf?: boolean }> {
  let rest = '';
  let line = 0;
  let first = true;
  for await (let chunk of chunks) {
    if (first) {
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      first = false;
    }
    rest += chunk;
    let start = 0;
    for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n', start)) {
      const crlf = rest.charCodeAt(nl - 1) === 13 && nl > start;
      yield { line: ++line, text: crlf ? rest.slice(start, nl - 1) : rest.slice(start, nl), crlf };
      start = nl + 1;
    }
    rest = rest.slice(start);
  }
  if (rest.length > 0) yield { line: ++line, text: rest.endsWith('\r') ? rest.slice(0, -1) : rest };
}

/** JSON Lines: each non-blank line one JSON object. */
export async function* jsonLineRecords(chunks: AsyncIterable<string>): AsyncGenerator<SourceRecord> {
  for await (const { line, text } of lines(chunks)) {
    if (text.trim() === '') continue;
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
export async function* csvRecords(chunks: AsyncIterable<string>, onHeader: (columns: string[]) => void = () => {}): AsyncGenerator<SourceRecord> {
  let header: string[] | null = null;
  for await (const record of csvFields(lines(chunks))) {
    if ('error' in record) {
      yield record;
      continue;
    }
    if (header === null) {
      header = record.fields.map((f) => f.trim().toLowerCase());
      const duplicate = header.find((name, i) => header!.indexOf(name) !== i);
      if (duplicate !== undefined) throw new CsvHeaderError(`the header row names the column "${duplicate}" twice`);
      onHeader(header);
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
async function* csvFields(source: AsyncGenerator<{ line: number; text: string; crlf?: boolean }>): AsyncGenerator<FieldsRecord> {
  // Lines read ahead while a quoted field was still open, to be read again after an error.
  const replay: Array<{ line: number; text: string; crlf?: boolean }> = [];
  const next = async () => (replay.length > 0 ? replay.shift()! : (await source.next()).value ?? null);
  for (let current = await next(); current !== null; current = await next()) {
    // Blank lines, also of spaces or tabs only, are skipped (docs/import.md).
    if (current.text.trim() === '') continue;
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
    yield { line: current.line, fields: parsed };
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
