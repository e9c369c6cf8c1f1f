import { canonicalJson } from '../shared/hashing';
import { AuditEntry } from './audit-types';

/** Every field an entry's JSON can have: AuditEntry's and the two the log adds (entryJsonOf writes them in sorted order). */
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

/**
 * The bytes hashed into an entry's leaf: `canonicalJson({ ...entry, seq, tenant })`, written
 * without sorting keys or copying the entry: the fields are read by name in canonicalJson's order
 * (code units: channel, eventTime, expireTime, noticeSha256, payloadSha256, principal, purpose,
 * recordSha256, ref, seq, subject, tenant, time, type), as every consent write makes one. An
 * entry with a field this list does not know goes the general way, so the result is
 * canonicalJson's in every case (test/unit/audit-entry-json.test.ts).
 */
export function entryJsonOf(entry: AuditEntry, seq: number, tenant: string): string {
  for (const key in entry) {
    if (!KNOWN.has(key) || !Object.prototype.hasOwnProperty.call(entry, key)) return canonicalJson({ ...entry, seq, tenant });
  }
  let out = '';
  out = member(out, '"channel":', entry.channel);
  out = member(out, '"eventTime":', entry.eventTime);
  out = member(out, '"expireTime":', entry.expireTime);
  out = member(out, '"noticeSha256":', entry.noticeSha256);
  out = member(out, '"payloadSha256":', entry.payloadSha256);
  out = member(out, '"principal":', entry.principal);
  out = member(out, '"purpose":', entry.purpose);
  out = member(out, '"recordSha256":', entry.recordSha256);
  out = member(out, '"ref":', entry.ref);
  out = member(out, '"seq":', seq);
  out = member(out, '"subject":', entry.subject);
  out = member(out, '"tenant":', tenant);
  out = member(out, '"time":', entry.time);
  out = member(out, '"type":', entry.type);
  return `{${out}}`;
}

/** `out` with `"name":value` appended (comma-separated), or as it was for an undefined value. */
function member(out: string, name: string, value: unknown): string {
  if (value === undefined) return out;
  const json = typeof value === 'string' ? JSON.stringify(value) : canonicalJson(value);
  return out.length === 0 ? name + json : `${out},${name}${json}`;
}
