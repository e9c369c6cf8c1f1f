import { expect } from 'chai';
import fc from 'fast-check';
import { CheckConsentBatchResponse, CheckConsentResponse, ConsentCheckResult, ConsentDecision, StreamCheckConsentAnswer, StreamCheckConsentResponse } from '../../src/gen/consent/v1/consent';
import { Status } from '../../src/gen/google/rpc/status';
import { encodeCheckConsentBatchResponse, encodeCheckConsentResponse, encodeStreamCheckConsentResponse } from '../../src/transport/check-responses';
import { protoRegistry } from '../fuzz/support/catalog';

/** What the generated service definitions serialise (Buffer.from of ts-proto's encoding). */
function generated<T>(fns: { encode(message: T): { finish(): Uint8Array } }, message: T): Buffer {
  return Buffer.from(fns.encode(message).finish());
}

/** Both give the same bytes, or both throw (the generated encoder refuses an invalid Date). */
function expectSame(short: () => Buffer, reference: () => Buffer): void {
  const outcome = (encode: () => Buffer) => {
    try {
      return encode().toString('hex');
    } catch (err) {
      return `throws ${(err as Error).name}`;
    }
  };
  expect(outcome(short)).to.equal(outcome(reference));
}

const MAX_DATE_MS = 8.64e15;
const dateArb = fc.oneof(
  fc.constant(undefined),
  fc.integer({ min: 0, max: 2 ** 42 }).map((ms) => new Date(ms)),
  // Before 1970, the far ends of Date, and an invalid Date: the generated encoder's cases.
  fc.integer({ min: -MAX_DATE_MS, max: MAX_DATE_MS }).map((ms) => new Date(ms)),
  fc.constant(new Date(Number.NaN)),
);
const enumArb = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 0x7fffffff }), fc.integer({ min: -5, max: -1 }));
const stringArb = fc.oneof(fc.constant(''), fc.string(), fc.string({ unit: 'grapheme', maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 20 }));
const decisionArb: fc.Arbitrary<ConsentDecision> = fc.record({ verdict: enumArb, reason: enumArb, decidingEvent: stringArb, validUntil: dateArb });
const statusArb: fc.Arbitrary<Status> = fc.record({
  code: fc.integer({ min: 0, max: 16 }),
  message: fc.string(),
  details: fc.array(fc.record({ typeUrl: fc.string(), value: fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b)) }), { maxLength: 2 }),
});
const resultArb: fc.Arbitrary<ConsentCheckResult> = fc.oneof(
  fc.record({ decision: decisionArb, error: fc.constant(undefined) }),
  fc.record({ decision: fc.constant(undefined), error: statusArb }),
  fc.record({ decision: fc.option(decisionArb, { nil: undefined }), error: fc.option(statusArb, { nil: undefined }) }),
);

describe('check responses (short-path encoders)', function () {
  it('CheckConsentResponse: the bytes of the generated encoder', function () {
    fc.assert(
      fc.property(fc.option(decisionArb, { nil: undefined }), (decision) => {
        const message: CheckConsentResponse = { decision };
        expectSame(() => encodeCheckConsentResponse(message), () => generated(CheckConsentResponse, message));
      }),
      { numRuns: 3000 },
    );
  });

  it('CheckConsentBatchResponse: the bytes of the generated encoder', function () {
    fc.assert(
      fc.property(fc.array(resultArb, { maxLength: 40 }), (results) => {
        const message: CheckConsentBatchResponse = { results };
        expectSame(() => encodeCheckConsentBatchResponse(message), () => generated(CheckConsentBatchResponse, message));
      }),
      { numRuns: 500 },
    );
  });

  it('StreamCheckConsentResponse: the bytes of the generated encoder', function () {
    fc.assert(
      fc.property(
        stringArb,
        fc.option(resultArb, { nil: undefined }),
        fc.oneof(fc.constant(null).map((): StreamCheckConsentAnswer[] => []), fc.array(fc.record({ correlationId: stringArb, result: fc.option(resultArb, { nil: undefined }) }), { maxLength: 12 })),
        (correlationId, result, answers) => {
        const message: StreamCheckConsentResponse = { correlationId, result, answers };
        expectSame(() => encodeStreamCheckConsentResponse(message), () => generated(StreamCheckConsentResponse, message));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('a typical ALLOW round-trips through the generated decoder', function () {
    const decision: ConsentDecision = { verdict: 1, reason: 5, decidingEvent: 'tenants/t/subjects/s/consentEvents/e', validUntil: new Date(1_800_000_000_123) };
    expect(CheckConsentResponse.decode(encodeCheckConsentResponse({ decision }))).to.deep.equal({ decision });
  });

  // The encoders know these fields and no others: a field added to the protos must be added there too.
  it('knows every field of the messages it encodes', function () {
    const fields = (typeName: string) => protoRegistry().getMessage(typeName)!.fields.map((f) => `${f.number}:${f.name}`);
    expect(fields('consent.v1.ConsentDecision')).to.deep.equal(['1:verdict', '2:reason', '3:deciding_event', '4:valid_until']);
    expect(fields('consent.v1.CheckConsentResponse')).to.deep.equal(['1:decision']);
    expect(fields('consent.v1.ConsentCheckResult')).to.deep.equal(['1:decision', '2:error']);
    expect(fields('consent.v1.CheckConsentBatchResponse')).to.deep.equal(['1:results']);
    expect(fields('consent.v1.StreamCheckConsentResponse')).to.deep.equal(['1:correlation_id', '2:result', '3:answers']);
    expect(fields('consent.v1.StreamCheckConsentAnswer')).to.deep.equal(['1:correlation_id', '2:result']);
    expect(fields('google.protobuf.Timestamp')).to.deep.equal(['1:seconds', '2:nanos']);
  });
});
