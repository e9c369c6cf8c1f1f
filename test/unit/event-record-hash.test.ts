import { expect } from 'chai';
import fc from 'fast-check';
import { eventRecordJson, eventRecordSha256, recordFields } from '../../src/domain/event-codec';
import { StoredConsentEvent } from '../../src/domain/ports';
import { canonicalJson, sha256Hex } from '../../src/shared/hashing';

/**
 * An event's record hash is in its signed audit entry: every build must compute the same bytes
 * for the same row, or `audit verify --records` reports untouched rows as rewritten.
 */
describe('event record hash', () => {
  const acme: StoredConsentEvent = {
    id: '0190a3b4c5d6e7f8a9b0c1d2e3f40517',
    tenantId: 'acme',
    subjectId: '0190a3b4c5d6e7f8a9b0c1d2e3f40516',
    kind: 'OPT_IN',
    purposeId: 'newsletter',
    channel: 'WHATSAPP',
    eventTime: 1767225600000,
    recordTime: 1767225601234,
    method: 'WEB_FORM',
    notice: { purposeId: 'newsletter', version: 3, textSha256: 'ab'.repeat(32), language: 'de-DE' },
    principal: 'dev-admin',
    lawfulBasis: 'CONSENT',
    jurisdiction: 'DE',
    expireTime: 1830297600000,
    requestId: 'optin-ü-1',
    requestFingerprint: 'cd'.repeat(32),
    evidenceCiphertext: 'eyJ..x.y.z',
  };

  it('is the hash the earlier builds computed (known answers)', () => {
    expect(eventRecordSha256(acme)).to.equal('21ecc5f8dcdd4b7aba08e24d96937cea7cd286b817e40d879a69d61a923c783b');
    const inbound: StoredConsentEvent = { ...acme, notice: undefined, lawfulBasis: null, expireTime: undefined, evidenceCiphertext: null, kind: 'INBOUND_MESSAGE', jurisdiction: '' };
    expect(eventRecordSha256(inbound)).to.equal('ca1aeeea92d1faed30c3f4a852b6cd75b86b0f9d067ed73a78cd1c724257cd67');
    // The evidence hash passed in is the one of the ciphertext: the same result.
    expect(eventRecordSha256(acme, sha256Hex(acme.evidenceCiphertext!))).to.equal(eventRecordSha256(acme));
  });

  it('eventRecordJson writes canonicalJson(recordFields(...)) for any row, fields missing or not', () => {
    const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }));
    const maybe = <T>(arb: fc.Arbitrary<T>) => fc.oneof(arb, fc.constant(undefined));
    const number = fc.oneof(fc.maxSafeNat(), fc.double({ noNaN: false }));
    const row = fc.record({
      id: maybe(text),
      tenantId: maybe(text),
      subjectId: maybe(text),
      kind: maybe(text),
      purposeId: maybe(text),
      channel: maybe(text),
      eventTime: maybe(number),
      recordTime: maybe(number),
      method: maybe(text),
      notice: maybe(fc.record({ purposeId: maybe(text), version: maybe(fc.nat()), textSha256: maybe(text), language: maybe(text) })),
      principal: maybe(text),
      lawfulBasis: fc.oneof(text, fc.constant(null), fc.constant(undefined)),
      jurisdiction: maybe(text),
      expireTime: maybe(number),
      requestId: maybe(text),
      requestFingerprint: maybe(text),
      evidenceCiphertext: fc.oneof(text, fc.constant(null)),
    });
    fc.assert(
      fc.property(row, fc.oneof(text, fc.constant(null)), (r, evidence) => {
        const e = r as unknown as StoredConsentEvent;
        return eventRecordJson(e, evidence) === canonicalJson(recordFields(e, evidence));
      }),
      { numRuns: 5000 },
    );
  });
});
