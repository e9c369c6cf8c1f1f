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
 * The bytes hashed into an entry's leaf: `canonicalJson({ ...entry, seq, tenant })`, as every
 * consent write makes one. JSON.stringify writes fields in the order they were added and leaves
 * out undefined ones, as canonicalJson does, so an object built with the keys already in
 * canonicalJson's order (code units) gives the same bytes in one native call, without copying the
 * entry or sorting keys. An entry with a field this list does not know goes the general way, so
 * the result is canonicalJson's in every case (test/unit/audit-entry-json.test.ts).
 */
export function entryJsonOf(entry: AuditEntry, seq: number, tenant: string): string {
  for (const key in entry) {
    if (!KNOWN.has(key) || !Object.prototype.hasOwnProperty.call(entry, key)) return canonicalJson({ ...entry, seq, tenant });
  }
  return JSON.stringify({
    channel: entry.channel,
    eventTime: entry.eventTime,
    expireTime: entry.expireTime,
    noticeSha256: entry.noticeSha256,
    payloadSha256: entry.payloadSha256,
    principal: entry.principal,
    purpose: entry.purpose,
    recordSha256: entry.recordSha256,
    ref: entry.ref,
    seq,
    subject: entry.subject,
    tenant,
    time: entry.time,
    type: entry.type,
  });
}
