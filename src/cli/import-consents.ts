import { accessSync, constants, createWriteStream, statSync, WriteStream } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { ChannelCredentials, ClientWritableStream, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { ConsentServiceClient, ImportConsentsRequest, ImportConsentsResponse, ImportRow } from '../gen/consent/v1/consent';
import { BadRequest, ErrorInfo } from '../gen/google/rpc/error_details';
import { Status } from '../gen/google/rpc/status';
import { CliError, EXIT, usageError } from './exit-codes';
import { grpcFailure } from './grpc-errors';
import { columnOf, headerProblem, importRowOf, MAX_ROW_BYTES, oversizeProblems, RowProblem } from './import-rows';
import { CsvHeaderError, readRecords, SourceFormat } from './import-source';
import { Progress } from './terminal-output';

/**
 * `consentctl import`: reads a CSV or JSON Lines file of existing consents, checks each row's
 * form locally, streams the rest to ImportConsents in calls of at most MAX_IMPORT_ROWS rows
 * (messages of ROWS_PER_MESSAGE), and writes every rejected row, the file's and the service's,
 * with its line and reason to the rejects file. Calls follow each other: rows are recorded in the
 * file's order. Exactly once by request_id: a run that was interrupted (Ctrl-C, a crash, the
 * service gone) is finished by running the same command again, which reports the rows that were
 * already there instead of recording them twice (docs/import.md).
 */

/** The service's default limit of rows per ImportConsents call (MAX_IMPORT_ROWS). */
export const MAX_IMPORT_ROWS = 50_000;
/** Rows per message of the stream: a few hundred keep messages far below the 4 MiB limit. */
export const ROWS_PER_MESSAGE = 500;

/**
 * Encoded bytes of rows per message at most: rows with long evidence (user agents, page URLs, free
 * text within their limits) reach the service's MAX_MESSAGE_BYTES (4 MiB by default) well before
 * ROWS_PER_MESSAGE of them, so a message is also sent once this much is in it.
 */
export const BYTES_PER_MESSAGE = 3 * 1024 * 1024;
/** One call may take a while on a slow database; a service that stops answering altogether ends it. */
const CALL_DEADLINE_MS = 15 * 60_000;
/** The largest answer of a call: 50,000 rejections with their statuses and details fit several times. */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;
/** Rejections printed to stderr when there is no rejects file. */
const REJECTIONS_SHOWN = 10;

export interface ImportOptions {
  file: string;
  tenant: string;
  format: SourceFormat;
  rejectsFile?: string;
  rowsPerCall: number;
  rowsPerMessage: number;
}

export interface ImportTarget {
  address: string;
  credentials: ChannelCredentials;
  metadata(): Metadata;
}

export interface ImportSummary {
  file: string;
  tenant: string;
  /** Data rows read from the file (the CSV header not counted). */
  rows: number;
  /** Rows recorded by this run. */
  recorded: number;
  /** Rows the service already had (same request_id): imported by an earlier run. */
  alreadyRecorded: number;
  /** Rows rejected, by this program (the file) or by the service. */
  rejected: number;
  rejectedLocally: number;
  /** Rows read but not answered: the run stopped before the service confirmed them. */
  unconfirmed: number;
  rejectsFile: string | null;
  calls: number;
  seconds: number;
  rowsPerSecond: number;
  /** Set when the run did not finish: why. */
  stopped: string | null;
  /** The file was refused before any row was sent (its header row; exit 2): nothing was sent, nothing written to the rejects file. */
  refused: boolean;
  /** The whole file was read (a stop came while the service's last answers were awaited). */
  readToEnd: boolean;
}

/**
 * Where rejected rows go: the rejects file (CSV or JSON Lines), or the first few to stderr. In
 * line order: the rows this program rejects wait for the service's answer to the call their
 * neighbours went in (calls cover consecutive lines), then both are written together, sorted.
 */
class Rejects {
  /** Opened once the file's header was accepted: a file refused leaves an earlier rejects file as it was. */
  private out: WriteStream | null = null;
  private readonly jsonl: boolean;
  /** Lines of rejected rows; and of those this program rejected itself. */
  readonly lines = new Set<number>();
  readonly localLines = new Set<number>();
  private waiting: Array<{ line: number; problems: RowProblem[] }> = [];
  private shown = 0;

  constructor(readonly file: string | undefined) {
    this.jsonl = file !== undefined && /\.jsonl?$/i.test(file);
  }

  /** Creates (or empties) the rejects file, once. */
  open(): void {
    if (this.file === undefined || this.out) return;
    this.out = createWriteStream(this.file, { encoding: 'utf8' });
    if (!this.jsonl) this.out.write('line,reason,field,message\r\n');
  }

  /** A row this program rejected: written with the next answer of the service. */
  local(line: number, problems: RowProblem[]): void {
    this.lines.add(line);
    this.localLines.add(line);
    this.waiting.push({ line, problems });
  }

  /** The rows the service rejected in one call, written together with the waiting ones, in line order. */
  answered(rejected: Array<{ line: number; problems: RowProblem[] }>): void {
    const all = [...this.waiting, ...rejected].sort((a, b) => a.line - b.line);
    this.waiting = [];
    for (const { line, problems } of all) this.write(line, problems);
  }

  private write(line: number, problems: RowProblem[]): void {
    this.lines.add(line);
    this.open();
    for (const p of problems) {
      if (this.out) {
        this.out.write(this.jsonl ? `${JSON.stringify({ line, reason: p.reason, field: p.field, message: p.message })}\n` : `${line},${csvField(p.reason)},${csvField(p.field)},${csvField(p.message)}\r\n`);
      } else if (this.shown++ < REJECTIONS_SHOWN) {
        process.stderr.write(`line ${line}: ${p.reason}${p.field ? ` (${p.field})` : ''}: ${p.message}\n`);
      }
    }
  }

  /** Writes what is waiting and closes the file; `refused`: the file was refused before anything was sent, nothing is written. */
  async close(refused = false): Promise<void> {
    if (refused) this.waiting = [];
    else {
      this.answered([]);
      this.open();
    }
    if (!this.out) {
      if (this.lines.size > REJECTIONS_SHOWN) process.stderr.write(`(${this.lines.size} rows rejected in all; --rejects FILE writes every one)\n`);
      return;
    }
    this.out.end();
    await once(this.out, 'finish');
  }
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** What the service said about one rejected row, one problem per field violation (or one for the whole row). */
export function problemsOf(rejection: Status | undefined): RowProblem[] {
  if (!rejection) return [{ reason: 'UNKNOWN', field: '', message: 'the service gave no reason' }];
  let reason = status[rejection.code] ?? `code ${rejection.code}`;
  let field = '';
  const violations: RowProblem[] = [];
  for (const detail of rejection.details) {
    const type = detail.typeUrl.slice(detail.typeUrl.lastIndexOf('/') + 1);
    try {
      if (type === 'google.rpc.ErrorInfo') {
        const info = ErrorInfo.decode(detail.value);
        reason = info.reason || reason;
        // Some reasons name the request field they are about (e.g. a purpose or notice not found).
        field = info.metadata.field ?? field;
      } else if (type === 'google.rpc.BadRequest') {
        for (const v of BadRequest.decode(detail.value).fieldViolations) violations.push({ reason: v.reason, field: columnOf(v.field), message: v.description });
      }
    } catch {
      // A detail that does not decode: the status message still says what happened.
    }
  }
  if (violations.length > 0) return violations.map((v) => ({ ...v, reason: v.reason || reason }));
  // A call with many rejected rows lists the later ones without details: "{REASON} {field}", or
  // only the code (docs/api.md, ImportConsents).
  const short = rejection.details.length === 0 ? /^([A-Z][A-Z0-9_]*)(?: (\S+))?$/.exec(rejection.message) : null;
  if (short) return [{ reason: short[1], field: columnOf(short[2] ?? ''), message: 'listed without details (many rows of this call were rejected)' }];
  return [{ reason, field: columnOf(field), message: rejection.message || 'listed without details (many rows of this call were rejected)' }];
}

/** One ImportConsents call: rows go in with back-pressure; the answer comes once it is half-closed. */
class ImportCall {
  private readonly stream: ClientWritableStream<ImportConsentsRequest>;
  readonly answer: Promise<ImportConsentsResponse>;
  private failed = false;
  private first = true;

  constructor(client: InstanceType<typeof ConsentServiceClient>, metadata: Metadata, private readonly parent: string) {
    let resolve!: (r: ImportConsentsResponse) => void;
    let reject!: (e: ServiceError) => void;
    this.answer = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    this.answer.catch(() => (this.failed = true));
    this.stream = client.importConsents(metadata, { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) => (err ? reject(err) : resolve(res)));
  }

  /** Sends rows as one message; waits while the service is not reading (or until the call failed). */
  async send(rows: ImportRow[]): Promise<void> {
    if (this.failed) return;
    const message: ImportConsentsRequest = { parent: this.first ? this.parent : '', rows };
    this.first = false;
    if (!this.stream.write(message)) await Promise.race([once(this.stream, 'drain'), this.answer.catch(() => undefined)]);
  }

  finish(): Promise<ImportConsentsResponse> {
    this.stream.end();
    return this.answer;
  }

  cancel(): void {
    this.stream.cancel();
  }
}

/** The file to import: a readable file (checked, not read: it may be large). */
export function importableFile(file: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (e) {
    throw usageError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!statSync(file).isFile()) throw usageError(`${file} is not a file`);
}

/**
 * --rejects must not be the file being imported, by any path to it (another spelling, a symbolic
 * or hard link: the same device and inode): opening it for writing empties it before a row is
 * read, and the business's list is gone (found by a probe). Checked after every other argument,
 * before any file is opened.
 */
export function rejectsApartFromInput(input: string, rejects: string): void {
  let same = path.resolve(input) === path.resolve(rejects);
  if (!same) {
    try {
      const a = statSync(input);
      const b = statSync(rejects);
      same = a.dev === b.dev && a.ino === b.ino;
    } catch {
      // The rejects file does not exist yet: it is not the input.
    }
  }
  if (same) throw usageError(`--rejects ${rejects} is the file being imported: writing the rejected rows there would destroy it before it is read; give another file`);
}

/** The file's format: --format, or from its name (.csv, .jsonl, .json); a usage error otherwise (exit 2). */
export function importFormatOf(file: string, given: string | undefined): SourceFormat {
  const format = (given ?? (/\.jsonl?$/i.test(file) ? 'jsonl' : /\.csv$/i.test(file) ? 'csv' : '')).toLowerCase();
  if (format === 'csv' || format === 'jsonl') return format;
  if (given !== undefined) throw usageError('--format must be csv or jsonl');
  throw usageError(`cannot tell the format of ${file} from its name: give --format csv or --format jsonl`);
}

/**
 * Runs the import. Resolves with the summary and, when the run did not end well, the error to
 * end with (after the summary has been printed): exit 3 when the service was unavailable, 1 when
 * it refused the calls. `interrupt` stops the run early (Ctrl-C).
 */
export async function importFile(
  target: ImportTarget,
  options: ImportOptions,
  progress: Progress | null,
  interrupt: AbortSignal,
): Promise<{ summary: ImportSummary; failure: CliError | null }> {
  const started = Date.now();
  const parent = `tenants/${options.tenant}`;
  const fileBytes = statSync(options.file).size;
  const rejects = new Rejects(options.rejectsFile);
  let refused = false;
  // An answer lists every rejected row of its call with its status: up to 50,000 of them, far
  // beyond grpc-js's default 4 MiB for a message received.
  const client = new ConsentServiceClient(target.address, target.credentials, { 'grpc.max_send_message_length': 4 * 1024 * 1024, 'grpc.max_receive_message_length': MAX_ANSWER_BYTES });
  const { records, progress: reading } = readRecords(options.file, options.format, (columns) => {
    const problem = headerProblem(columns);
    if (problem) throw new CsvHeaderError(`${options.file}: ${problem}`);
  });

  let rows = 0;
  let recorded = 0;
  let alreadyRecorded = 0;
  let calls = 0;
  // The call being sent, or the one whose answer is awaited (read through a function: callbacks
  // below change them). Ctrl-C cancels either: a call awaited at the end of the file too.
  let call: ImportCall | null = null;
  let closing: ImportCall | null = null;
  const currentCall = (): ImportCall | null => call ?? closing;
  let readToEnd = false;
  let inCall = 0;
  let batch: ImportRow[] = [];
  let batchBytes = 0;
  let failure: CliError | null = null;
  let stopped: string | null = null;

  const show = () => {
    if (!progress) return;
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? rows / seconds : 0;
    const fraction = fileBytes > 0 ? Math.min(1, reading.bytesRead() / fileBytes) : 1;
    const left = fraction > 0 && fraction < 1 ? (seconds * (1 - fraction)) / fraction : 0;
    progress.update(`importing: ${rows.toLocaleString('en')} rows (${Math.floor(fraction * 100)}%), ${Math.round(rate).toLocaleString('en')} rows/s, ${left > 0 ? `about ${formatDuration(left)} left` : 'finishing'}`);
  };
  const ticker = setInterval(show, process.stderr.isTTY ? 250 : 5000);
  const onInterrupt = () => {
    stopped ??= 'interrupted';
    currentCall()?.cancel();
  };
  interrupt.addEventListener('abort', onInterrupt);

  const closeCall = async () => {
    const current = call!;
    closing = current;
    call = null;
    inCall = 0;
    const answer = await current.finish().finally(() => {
      if (closing === current) closing = null;
    });
    recorded += answer.recorded;
    alreadyRecorded += answer.alreadyRecorded;
    rejects.answered(answer.rejections.map((r) => ({ line: r.line, problems: problemsOf(r.status) })));
    show();
  };
  const flush = async () => {
    if (batch.length === 0) return;
    if (!call) {
      call = new ImportCall(client, target.metadata(), parent);
      calls++;
    }
    const sending = batch;
    batch = [];
    batchBytes = 0;
    inCall += sending.length;
    await call.send(sending);
    if (inCall >= options.rowsPerCall) await closeCall();
  };

  try {
    for await (const record of records) {
      if (stopped) break;
      // The header (CSV) was accepted: the rejects file is made now.
      rejects.open();
      rows++;
      if ('error' in record) {
        rejects.local(record.line, [{ reason: record.error.reason, field: '', message: record.error.message }]);
        continue;
      }
      const row = importRowOf(record.values, options.tenant, record.line);
      if (Array.isArray(row)) {
        rejects.local(record.line, row);
        continue;
      }
      const size = ImportRow.encode(row).finish().length + 8;
      // A row larger than any row within the service's limits is not sent: it alone would take
      // its message past the service's 4 MiB and the whole call would be refused.
      if (size > MAX_ROW_BYTES) {
        rejects.local(record.line, oversizeProblems(row));
        continue;
      }
      // A row that would take the message past BYTES_PER_MESSAGE goes into the next one.
      if (batch.length > 0 && batchBytes + size > BYTES_PER_MESSAGE) await flush();
      batch.push(row);
      batchBytes += size;
      if (batch.length >= options.rowsPerMessage || inCall + batch.length >= options.rowsPerCall) await flush();
    }
    if (!stopped) {
      readToEnd = true;
      await flush();
      if (call) await closeCall();
    }
  } catch (err) {
    if (err instanceof CsvHeaderError) {
      currentCall()?.cancel();
      failure = usageError(err.message);
      // The header is the file's first record: nothing was sent.
      refused = calls === 0;
    } else if (isServiceError(err)) {
      failure = stopped === 'interrupted' ? null : grpcFailure(err, target.address);
      stopped ??= `${status[err.code] ?? err.code}`;
    } else {
      currentCall()?.cancel();
      throw err;
    }
  } finally {
    clearInterval(ticker);
    interrupt.removeEventListener('abort', onInterrupt);
    if (stopped) currentCall()?.cancel();
    client.close();
    await rejects.close(refused);
  }
  if (stopped === 'interrupted') failure = null;
  if (failure && stopped === null) stopped = failure.message;
  // Ctrl-C after the last answer came: nothing was left undone.
  if (stopped === 'interrupted' && readToEnd && currentCall() === null && rows === recorded + alreadyRecorded + rejects.lines.size) stopped = null;

  const seconds = (Date.now() - started) / 1000;
  const rejected = rejects.lines.size;
  const summary: ImportSummary = {
    file: options.file,
    tenant: options.tenant,
    rows,
    recorded,
    alreadyRecorded,
    rejected,
    rejectedLocally: rejects.localLines.size,
    unconfirmed: Math.max(0, rows - recorded - alreadyRecorded - rejected),
    rejectsFile: options.rejectsFile ?? null,
    calls,
    seconds: Math.round(seconds * 100) / 100,
    rowsPerSecond: seconds > 0 ? Math.round(rows / seconds) : rows,
    stopped,
    refused,
    readToEnd,
  };
  return { summary, failure };
}

function isServiceError(err: unknown): err is ServiceError {
  return typeof (err as ServiceError)?.code === 'number' && 'details' in (err as object);
}

function formatDuration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** The summary as a person reads it. */
export function describeSummary(s: ImportSummary): string {
  const n = (x: number) => x.toLocaleString('en');
  if (s.refused) {
    return `${s.file} -> tenants/${s.tenant}: NOT IMPORTED, nothing was sent (the reason is on stderr)\n  fix the file's header row (its first line, naming the columns: docs/import.md) and run the command again\n`;
  }
  const lines = [
    `${s.file} -> tenants/${s.tenant}: ${n(s.rows)} rows read in ${s.seconds} s (${n(s.rowsPerSecond)} rows/s)`,
    `  recorded now:       ${n(s.recorded)}`,
    `  already recorded:   ${n(s.alreadyRecorded)} (imported by an earlier run)`,
    `  rejected:           ${n(s.rejected)}${s.rejected > 0 ? (s.rejectsFile ? ` (every one in ${s.rejectsFile}, with its line and reason)` : '') : ''}`,
  ];
  if (s.stopped) {
    lines.push(`  not confirmed:      ${n(s.unconfirmed)}`);
    lines.push(
      `STOPPED (${s.stopped}) ${s.readToEnd ? 'before the service confirmed every row' : 'before the end of the file'}: run the same command again to import the rest; rows already imported are recognised by their request_id and not imported twice`,
    );
  }
  return lines.join('\n') + '\n';
}

/** Exit code of a finished run: 0 when every row is in the service now, 1 when some were rejected. */
export function exitCodeOf(summary: ImportSummary): typeof EXIT.OK | typeof EXIT.FAILED {
  return summary.rejected > 0 ? EXIT.FAILED : EXIT.OK;
}
