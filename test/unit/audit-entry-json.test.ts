import { createHash } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { AuditEntry } from '../../src/audit/audit-types';
import { entryJsonOf } from '../../src/audit/entry-json';
import { leafHash, leafHashHex, nodeHash, nodeHashHex } from '../../src/audit/merkle';
import { canonicalJson } from '../../src/shared/hashing';

describe('audit entry JSON and hex hashing', () => {
  it('entryJsonOf writes exactly canonicalJson({ ...entry, seq, tenant }) for any entry (missing fields, unicode, extra fields)', () => {
    const text = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }));
    const num = fc.oneof(fc.integer(), fc.double({ noNaN: false }), fc.maxSafeInteger());
    const entry = fc.record(
      {
        type: text,
        time: num,
        principal: text,
        subject: text,
        purpose: text,
        channel: text,
        noticeSha256: text,
        payloadSha256: text,
        ref: text,
        eventTime: num,
        expireTime: num,
        recordSha256: text,
      },
      { requiredKeys: ['type', 'time', 'principal'] },
    );
    const extra = fc.dictionary(text, fc.oneof(text, num, fc.constant(undefined), fc.constant(null)), { maxKeys: 2 });
    fc.assert(
      fc.property(entry, extra, fc.boolean(), fc.nat(), text, (e, more, withExtra, seq, tenant) => {
        const value = (withExtra ? { ...more, ...e } : e) as AuditEntry;
        return entryJsonOf(value, seq, tenant) === canonicalJson({ ...value, seq, tenant });
      }),
      { numRuns: 5000 },
    );
    const e: AuditEntry = { type: 'CONSENT_EVENT_OPT_IN', time: 2, principal: 'p', subject: 's', expireTime: undefined, ref: 'é' };
    expect(entryJsonOf(e, 7, 'acme')).to.equal('{"principal":"p","ref":"é","seq":7,"subject":"s","tenant":"acme","time":2,"type":"CONSENT_EVENT_OPT_IN"}');
    // An entry carrying its own seq or tenant: the log's win, as with the spread.
    expect(entryJsonOf({ ...e, seq: 1, tenant: 'other' } as AuditEntry, 7, 'acme')).to.equal(canonicalJson({ ...e, seq: 7, tenant: 'acme' }));
  });

  it('leafHashHex and nodeHashHex are leafHash and nodeHash in hex', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (text, a, b) => {
        const left = Buffer.from(a).toString('hex');
        const right = Buffer.from(b).toString('hex');
        return (
          leafHashHex(text) === leafHash(Buffer.from(text, 'utf8')).toString('hex') &&
          leafHashHex(text) === createHash('sha256').update(Buffer.concat([Buffer.from([0]), Buffer.from(text, 'utf8')])).digest('hex') &&
          nodeHashHex(left, right) === nodeHash(a, b).toString('hex')
        );
      }),
      { numRuns: 2000 },
    );
    expect(() => nodeHashHex('ab', 'cd')).to.throw('subtree hashes must be 32 bytes');
  });
});
