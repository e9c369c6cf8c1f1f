import { CollectionMethod, ConsentEventKind, ImportRow, LawfulBasis } from '../gen/consent/v1/consent';
import { Channel } from '../gen/consent/v1/common';
import { PURPOSE_ID } from '../domain/resource-names';
import type { SourceValues } from './import-source';

/**
 * The columns of an import file (docs/import.md) and how one record becomes an ImportRow. Only
 * what can be told from the row alone is checked here (a value of the right form for its column);
 * whether a phone number exists, a purpose or notice is known, or a person was erased is the
 * service's to say, and it answers each row with its line. Messages never repeat a value: values
 * are personal data.
 */

/** Every column the import reads; a CSV header with any other column is refused before sending. */
export const IMPORT_COLUMNS = [
  'phone',
  'email',
  'customer_id',
  'region',
  'purpose',
  'channel',
  'kind',
  'event_time',
  'method',
  'notice',
  'source_ip',
  'user_agent',
  'page_url',
  'inbound_message_id',
  'free_text',
  'collected_by',
  'lawful_basis',
  'jurisdiction',
  'expire_time',
  'request_id',
] as const;

/** Columns a CSV header must have (and one of the identifier columns). */
export const REQUIRED_COLUMNS = ['purpose', 'channel', 'kind', 'event_time'] as const;
export const IDENTIFIER_COLUMNS = ['phone', 'email', 'customer_id'] as const;

/** Why a row is not sent: one entry per bad column. */
export interface RowProblem {
  reason: string;
  field: string;
  message: string;
}

/**
 * What a header name may look like to be shown back: a file without its header row has a row of
 * data where the header should be, and its values (phone numbers, e-mail addresses, names) must
 * not reach an error message. Unknown columns are therefore named by their place, with the
 * column they may have been meant as; their text is never repeated.
 */
const COLUMN_SHAPE = /^[a-z][a-z_ -]{0,39}$/;

/** The header's problem, if any: an unknown column (a typo would silently drop data), an empty one, or a required one missing. */
export function headerProblem(columns: string[]): string | null {
  const known = (c: string) => (IMPORT_COLUMNS as readonly string[]).includes(c);
  const unknown = columns.flatMap((c, i) => (c !== '' && !known(c) ? [i] : []));
  const empty = columns.flatMap((c, i) => (c === '' ? [i + 1] : []));
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (unknown.length > 0) {
    // A row of data rather than a header: text no column name has (digits, @, +, dots), or mostly
    // unknown names none of which looks like a misspelt column.
    const dataLike = unknown.some((i) => !COLUMN_SHAPE.test(columns[i])) || (unknown.length * 2 > columns.length && unknown.every((i) => likelyColumn(columns[i]) === null));
    if (dataLike) {
      return `the header row names ${plural(unknown.length, 'unknown column')} (not shown: they may be personal data): the file may lack its header row, a first line naming the columns (${IMPORT_COLUMNS.join(', ')})`;
    }
    const named = unknown.map((i) => {
      const meant = likelyColumn(columns[i]);
      return `column ${i + 1}${meant ? ` (did you mean "${meant}"?)` : ''}`;
    });
    return `the header row names ${plural(unknown.length, 'unknown column')}: ${named.join(', ')}; the columns are: ${IMPORT_COLUMNS.join(', ')}`;
  }
  if (empty.length > 0) return `in the header row, ${empty.length === 1 ? `column ${empty[0]} is` : `columns ${empty.join(', ')} are`} empty (a comma too many?)`;
  const missing = REQUIRED_COLUMNS.filter((c) => !columns.includes(c));
  if (missing.length > 0) return `missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
  if (!IDENTIFIER_COLUMNS.some((c) => columns.includes(c))) return `no identifier column: give at least one of ${IDENTIFIER_COLUMNS.join(', ')}`;
  return null;
}

/** The column a header name that is not one was probably meant as (a typo, or a longer name such as phone_number), if any. */
function likelyColumn(name: string): string | null {
  const parts = name.split(/[_ -]+/).filter((p) => p.length >= 4);
  let best: { column: string; distance: number } | null = null;
  for (const column of IMPORT_COLUMNS) {
    const distance = editDistance(name, column);
    if (distance <= (column.length <= 4 ? 1 : 2) && (best === null || distance < best.distance)) best = { column, distance };
  }
  if (best) return best.column;
  return IMPORT_COLUMNS.find((column) => column.split('_').some((p) => parts.includes(p))) ?? null;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length];
}

const CHANNELS: Record<string, Channel> = {
  whatsapp: Channel.CHANNEL_WHATSAPP,
  sms: Channel.CHANNEL_SMS,
  email: Channel.CHANNEL_EMAIL,
  push: Channel.CHANNEL_PUSH,
  voice: Channel.CHANNEL_VOICE,
  any: Channel.CHANNEL_ANY,
};
const KINDS: Record<string, ConsentEventKind> = {
  opt_in: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
  opt_out: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT,
  opt_in_pending: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING,
  opt_in_confirmed: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED,
};
const METHODS: Record<string, CollectionMethod> = {
  web_form: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
  chat_message: CollectionMethod.COLLECTION_METHOD_CHAT_MESSAGE,
  checkbox_in_app: CollectionMethod.COLLECTION_METHOD_CHECKBOX_IN_APP,
  paper: CollectionMethod.COLLECTION_METHOD_PAPER,
  verbal: CollectionMethod.COLLECTION_METHOD_VERBAL,
  api: CollectionMethod.COLLECTION_METHOD_API,
  import: CollectionMethod.COLLECTION_METHOD_IMPORT,
};
const LAWFUL_BASES: Record<string, LawfulBasis> = {
  consent: LawfulBasis.LAWFUL_BASIS_CONSENT,
  contract: LawfulBasis.LAWFUL_BASIS_CONTRACT,
  legal_obligation: LawfulBasis.LAWFUL_BASIS_LEGAL_OBLIGATION,
  vital_interests: LawfulBasis.LAWFUL_BASIS_VITAL_INTERESTS,
  public_task: LawfulBasis.LAWFUL_BASIS_PUBLIC_TASK,
  legitimate_interests: LawfulBasis.LAWFUL_BASIS_LEGITIMATE_INTERESTS,
};

/** ISO 8601 with a date, and a zone whenever a clock time is given (a bare date is midnight UTC). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2}))?$/i;

/**
 * Whether the date and time a row names exist: JavaScript's Date rolls 2024-02-30 over to
 * 2024-03-01 without a word, which would record a day the source never said (a probe found such
 * rows imported with the shifted date). Checked on the text, as written, before any time zone.
 */
function onTheCalendar(raw: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?/i.exec(raw);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return false;
  const zone = /(?:Z|([+-])(\d{2}):?(\d{2}))$/i.exec(raw);
  if (zone?.[2] !== undefined && (Number(zone[2]) > 23 || Number(zone[3]) > 59)) return false;
  return m[4] === undefined || (Number(m[4]) <= 23 && Number(m[5]) <= 59 && (m[6] === undefined || Number(m[6]) <= 59));
}
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** What may be in a phone number column: digits and the usual separators (the service checks the number). */
const PHONE_CHARACTERS = /^\+?[0-9\s().\/-]{1,64}$/;

/** One record as the row to send, or what is wrong with it (every bad column). */
export function importRowOf(values: SourceValues, tenant: string, line: number): ImportRow | RowProblem[] {
  const problems: RowProblem[] = [];
  // Every value as text, once. A JSON Lines value must be a string: a JSON number is read as a
  // double, which keeps 15-17 significant digits, so 12345678901234567890 in customer_id would be
  // recorded as 12345678901234567000, another person's identifier (found by a probe). Only
  // `notice` may be a number, a whole one (docs/import.md).
  const given = new Map<string, string>();
  const invalid = new Set<string>();
  for (const column of IMPORT_COLUMNS) {
    const v = values[column];
    if (v === undefined || v === null) continue;
    if (typeof v === 'string') given.set(column, v.trim());
    else if (column === 'notice' && typeof v === 'number' && Number.isSafeInteger(v) && v > 0) given.set(column, String(v));
    else {
      invalid.add(column);
      if (column === 'notice') problems.push({ reason: 'INVALID_NOTICE', field: column, message: "must be the version number of the purpose's notice, a whole number such as 1 (or its digits as text)" });
      else problems.push({ reason: 'INVALID_VALUE', field: column, message: `must be text (a JSON string in quotes), not ${typeof v === 'number' ? 'a number: a JSON number may not keep every digit' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`}` });
    }
  }
  const text = (column: string): string => given.get(column) ?? '';
  for (const key of Object.keys(values)) {
    if (!(IMPORT_COLUMNS as readonly string[]).includes(key)) problems.push({ reason: 'UNKNOWN_FIELD', field: key, message: `not a column of an import (the columns are: ${IMPORT_COLUMNS.join(', ')})` });
  }
  const choice = <E>(column: string, table: Record<string, E>, fallback?: E): E | undefined => {
    if (invalid.has(column)) return undefined;
    const raw = text(column);
    if (raw === '') {
      if (fallback === undefined) problems.push({ reason: 'REQUIRED', field: column, message: `required: one of ${Object.keys(table).join(', ')}` });
      return fallback;
    }
    const value = table[raw.toLowerCase().replace(/-/g, '_')];
    if (value === undefined) problems.push({ reason: 'UNKNOWN_ENUM_VALUE', field: column, message: `must be one of ${Object.keys(table).join(', ')}` });
    return value;
  };
  const time = (column: string, required: boolean): Date | undefined => {
    if (invalid.has(column)) return undefined;
    const raw = text(column);
    if (raw === '') {
      if (required) problems.push({ reason: 'REQUIRED', field: column, message: 'required: when the person acted, ISO 8601 such as 2024-03-01T10:00:00Z' });
      return undefined;
    }
    const date = new Date(/[T ]/i.test(raw) ? raw : `${raw}T00:00:00Z`);
    if (!ISO_TIME.test(raw) || Number.isNaN(date.getTime()) || !onTheCalendar(raw)) {
      problems.push({ reason: 'INVALID_TIMESTAMP', field: column, message: 'must be ISO 8601 with a time zone, such as 2024-03-01T10:00:00Z or 2024-03-01T11:00:00+01:00 (a date alone is midnight UTC)' });
      return undefined;
    }
    return date;
  };

  const identifiers = IDENTIFIER_COLUMNS.filter((c) => text(c) !== '' || invalid.has(c));
  let subjectIdentifier: ImportRow['subjectIdentifier'];
  const region = text('region');
  if (identifiers.length === 1 && invalid.has(identifiers[0])) {
    // Its problem is said already.
  } else if (identifiers.length !== 1) {
    problems.push({
      reason: identifiers.length === 0 ? 'REQUIRED' : 'ONE_IDENTIFIER_PER_ROW',
      field: identifiers.length === 0 ? 'phone' : identifiers.join(','),
      message: `exactly one of ${IDENTIFIER_COLUMNS.join(', ')} per row`,
    });
  } else if (identifiers[0] === 'phone') {
    const phone = text('phone');
    if (!PHONE_CHARACTERS.test(phone)) problems.push({ reason: 'INVALID_PHONE_NUMBER', field: 'phone', message: 'is not a phone number (digits, an optional leading +, spaces, dots, dashes, brackets)' });
    if (region !== '' && !/^[A-Za-z]{2}$/.test(region)) problems.push({ reason: 'INVALID_REGION', field: 'region', message: 'must be an ISO 3166-1 alpha-2 code such as DE' });
    subjectIdentifier = { kind: { $case: 'phoneNumber', value: phone }, defaultRegion: region.toUpperCase() };
  } else {
    if (region !== '') problems.push({ reason: 'REGION_WITHOUT_PHONE', field: 'region', message: 'region only goes with phone' });
    subjectIdentifier = identifiers[0] === 'email' ? { kind: { $case: 'email', value: text('email') }, defaultRegion: '' } : { kind: { $case: 'customerId', value: text('customer_id') }, defaultRegion: '' };
  }

  const purpose = text('purpose');
  if (purpose === '' && !invalid.has('purpose')) problems.push({ reason: 'REQUIRED', field: 'purpose', message: 'required: a purpose id such as newsletter ("-" for an opt-out of all purposes)' });
  else if (purpose !== '-' && !PURPOSE_ID.test(purpose)) problems.push({ reason: 'INVALID_PURPOSE_NAME', field: 'purpose', message: 'must be a purpose id such as newsletter (a-z, 0-9, -), or "-" for an opt-out of all purposes' });
  const channel = choice('channel', CHANNELS);
  const kind = choice('kind', KINDS);
  const eventTime = time('event_time', true);
  const method = choice('method', METHODS, CollectionMethod.COLLECTION_METHOD_IMPORT);
  const notice = text('notice');
  if (notice !== '' && !/^[1-9]\d{0,8}$/.test(notice)) problems.push({ reason: 'INVALID_NOTICE', field: 'notice', message: "must be the version number of the purpose's notice, such as 1" });
  const lawfulBasis = text('lawful_basis') === '' ? LawfulBasis.LAWFUL_BASIS_UNSPECIFIED : choice('lawful_basis', LAWFUL_BASES);
  const expireTime = time('expire_time', false);
  const requestId = text('request_id');
  if (requestId !== '' && !REQUEST_ID.test(requestId)) problems.push({ reason: 'INVALID_REQUEST_ID', field: 'request_id', message: '1-128 characters of A-Z a-z 0-9 . _ : - (or empty: one is derived from the row)' });
  const evidence = { sourceIp: text('source_ip'), userAgent: text('user_agent'), pageUrl: text('page_url'), inboundMessageId: text('inbound_message_id'), freeText: text('free_text') };
  const collectedBy = text('collected_by');
  const jurisdiction = text('jurisdiction');
  if (problems.length > 0) return problems;

  const purposeName = `tenants/${tenant}/purposes/${purpose}`;
  return {
    line,
    subjectIdentifier,
    purpose: purposeName,
    channel: channel!,
    kind: kind!,
    eventTime,
    method: method!,
    notice: notice === '' ? '' : `${purposeName}/notices/${notice}`,
    evidence,
    collectedBy,
    lawfulBasis: lawfulBasis!,
    jurisdiction,
    expireTime,
    requestId,
  };
}

/** The column a field of the service's answer is about (it names request fields: subject_identifier.phone_number, evidence.source_ip). */
export function columnOf(field: string): string {
  const identifier: Record<string, string> = {
    'subject_identifier.phone_number': 'phone',
    'subject_identifier.email': 'email',
    'subject_identifier.customer_id': 'customer_id',
    'subject_identifier.default_region': 'region',
  };
  if (identifier[field]) return identifier[field];
  if (field.startsWith('evidence.')) return field.slice('evidence.'.length);
  return field;
}

/**
 * The largest encoded row consentctl sends. Within the service's field limits (docs/api.md,
 * Limits: evidence texts 2,048 + 2,048 + 256 + 4,096 bytes, collected_by 200 and jurisdiction 16
 * characters, identifiers of at most 320 characters) a row encodes to about 12 KB at most, so a
 * larger one cannot be recorded; sent, one row of several megabytes took its message past the
 * service's 4 MiB MAX_MESSAGE_BYTES and the whole call was refused (RESOURCE_EXHAUSTED), every
 * run again (found by a probe). Such a row is rejected here, on its own, before it is sent.
 */
export const MAX_ROW_BYTES = 64 * 1024;

/** The service's limits of the columns that have one (docs/api.md, Limits; src/domain/evidence.ts). */
const COLUMN_LIMITS: Array<{ column: string; max: number; unit: 'bytes' | 'characters' }> = [
  { column: 'phone', max: 64, unit: 'characters' },
  { column: 'email', max: 320, unit: 'characters' },
  { column: 'customer_id', max: 128, unit: 'characters' },
  { column: 'user_agent', max: 2048, unit: 'bytes' },
  { column: 'page_url', max: 2048, unit: 'bytes' },
  { column: 'inbound_message_id', max: 256, unit: 'bytes' },
  { column: 'free_text', max: 4096, unit: 'bytes' },
  { column: 'collected_by', max: 200, unit: 'characters' },
  { column: 'jurisdiction', max: 16, unit: 'characters' },
  { column: 'request_id', max: 128, unit: 'characters' },
];

/** The text of each column of a row as it is sent. */
function sentColumns(row: ImportRow): Record<string, string> {
  const id = row.subjectIdentifier?.kind;
  return {
    phone: id?.$case === 'phoneNumber' ? id.value : '',
    email: id?.$case === 'email' ? id.value : '',
    customer_id: id?.$case === 'customerId' ? id.value : '',
    region: row.subjectIdentifier?.defaultRegion ?? '',
    purpose: row.purpose,
    notice: row.notice,
    source_ip: row.evidence?.sourceIp ?? '',
    user_agent: row.evidence?.userAgent ?? '',
    page_url: row.evidence?.pageUrl ?? '',
    inbound_message_id: row.evidence?.inboundMessageId ?? '',
    free_text: row.evidence?.freeText ?? '',
    collected_by: row.collectedBy,
    jurisdiction: row.jurisdiction,
    request_id: row.requestId,
  };
}

/**
 * Why a row larger than MAX_ROW_BYTES is not sent: TOO_LONG on every column over the service's
 * limit (as the service would say), or, if none is, on the row's longest column.
 */
export function oversizeProblems(row: ImportRow): RowProblem[] {
  const sent = sentColumns(row);
  const problems: RowProblem[] = [];
  for (const { column, max, unit } of COLUMN_LIMITS) {
    const value = sent[column];
    const length = unit === 'bytes' ? Buffer.byteLength(value, 'utf8') : [...value].length;
    if (length > max) problems.push({ reason: 'TOO_LONG', field: column, message: `must be at most ${max.toLocaleString('en')} ${unit}; the row is too large to send` });
  }
  if (problems.length > 0) return problems;
  const longest = Object.keys(sent).reduce((a, b) => (Buffer.byteLength(sent[b], 'utf8') > Buffer.byteLength(sent[a], 'utf8') ? b : a));
  return [{ reason: 'TOO_LONG', field: longest, message: `the row is larger than a row can be (${MAX_ROW_BYTES.toLocaleString('en')} bytes, encoded); this column is its longest` }];
}
