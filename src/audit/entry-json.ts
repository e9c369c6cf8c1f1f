import { canonicalJson } from '../shared/hashing';
import { AuditEntry } from './audit-types';

/** Every field an entry's JSON can have: AuditEntry's and the two the log adds. */
const FIELDS: ReadonlyArray<keyof AuditEntry | 'seq' | 'tenant'> = [
  'type',
  'time',
  'principal',
  'subject',
  'purpose',
  'channel',
  'noticeSha256',
  'payloadSha256',
  'ref',
  'eventTime',
  'expireTime',
  'recordSha256',
  'seq',
  'tenant',
];
const KNOWN: ReadonlySet<string> = new Set(FIELDS);
/** In canonicalJson's order (code units), each with its JSON key and colon. */
const SORTED: ReadonlyArray<{ name: string; prefix: string }> = [...FIELDS].sort().map((name) => ({ name, prefix: `${JSON.stringify(name)}:` }));

/**
 * The bytes hashed into an entry's leaf: `canonicalJson({ ...entry, seq, tenant })`, written
 * without sorting keys or copying the entry (the field order is known in advance), as every
 * consent write makes one. An entry with a field this list does not know goes the general way,
 * so the result is canonicalJson's in every case (test/unit/audit-entry-json.test.ts).
 */
export function entryJsonOf(entry: AuditEntry, seq: number, tenant: string): string {
  for (const key in entry) {
    if (!KNOWN.has(key) || !Object.prototype.hasOwnProperty.call(entry, key)) return canonicalJson({ ...entry, seq, tenant });
  }
  const fields = entry as unknown as Record<string, unknown>;
  let out = '{';
  for (const { name, prefix } of SORTED) {
    const value = name === 'seq' ? seq : name === 'tenant' ? tenant : fields[name];
    if (value === undefined) continue;
    if (out.length > 1) out += ',';
    out += prefix + (typeof value === 'string' ? JSON.stringify(value) : canonicalJson(value));
  }
  return `${out}}`;
}
