import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { expect } from 'chai';
import fc from 'fast-check';
import { Channel, PurposeCategory, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { CheckConsentBatchRequest, CheckConsentRequest, ConsentQuery, Consistency, StreamCheckConsentItem, StreamCheckConsentRequest } from '../../src/gen/consent/v1/consent';
import { fastCheckConsentBatchRequest, fastCheckConsentRequest, fastStreamCheckConsentRequest } from '../../src/transport/check-requests';
import { requestChecks } from '../../src/transport/request-checks';

const checks = requestChecks(readFileSync(path.join(__dirname, '..', '..', 'src', 'gen', 'descriptor-set.binpb')));

/** Keys in order, values, Dates as their time: what a deep comparison with key order sees. */
function ordered(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (v === undefined ? '<undefined>' : v));
}

interface Fns<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

/**
 * The short path either declines (null) or returns exactly what the general path returns for
 * bytes it finds nothing wrong with: the strict check's violations empty, the generated decoder's
 * message, keys in the same order.
 */
function expectAgreement<T>(method: string, fns: Fns<T>, fast: (bytes: Buffer) => T | null, bytes: Buffer): boolean {
  const short = fast(bytes);
  if (short === null) return false;
  let violations: unknown;
  let decoded: unknown;
  try {
    violations = checks.get(`/consent.v1.ConsentService/${method}`)!(bytes);
    decoded = fns.decode(bytes);
  } catch (err) {
    expect.fail(`the short path accepted bytes the general path cannot read: ${(err as Error).message}`);
  }
  expect(violations, 'violations the short path missed').to.deep.equal([]);
  expect(isDeepStrictEqual(short, decoded), `${ordered(short)} vs ${ordered(decoded)}`).to.equal(true);
  expect(ordered(short)).to.equal(ordered(decoded));
  return true;
}

const text = fc.oneof(fc.constant(''), fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.constantFrom('+4915112345678', 'tenants/acme', 'tenants/acme/purposes/newsletter', 'DE'));
const enumNumber = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: -3, max: 300 }), fc.constant(2 ** 31 - 1));
const identifier: fc.Arbitrary<SubjectIdentifier | undefined> = fc.option(
  fc.record({
    kind: fc.option(
      fc.oneof(
        text.map((value) => ({ $case: 'phoneNumber' as const, value })),
        text.map((value) => ({ $case: 'email' as const, value })),
        text.map((value) => ({ $case: 'customerId' as const, value })),
      ),
      { nil: undefined },
    ),
    defaultRegion: text,
  }),
  { nil: undefined },
);
const query: fc.Arbitrary<ConsentQuery> = fc.record({
  subjectIdentifier: identifier,
  purpose: text,
  category: enumNumber as fc.Arbitrary<PurposeCategory>,
  channel: enumNumber as fc.Arbitrary<Channel>,
  at: fc.option(fc.date({ min: new Date(-1e14), max: new Date(1e14), noInvalidDate: true }), { nil: undefined }),
});
const consistency: fc.Arbitrary<Consistency | undefined> = fc.option(
  fc.record({
    requirement: fc.option(
      fc.oneof(
        fc.boolean().map((value) => ({ $case: 'minimizeLatency' as const, value })),
        text.map((value) => ({ $case: 'atLeastAsFresh' as const, value })),
        fc.boolean().map((value) => ({ $case: 'fullyConsistent' as const, value })),
      ),
      { nil: undefined },
    ),
  }),
  { nil: undefined },
);

/** Encoded messages, and the same mangled: bytes changed, cut, doubled, an unknown field appended. */
function variants<T>(fns: Fns<T>, message: fc.Arbitrary<T>): fc.Arbitrary<Buffer> {
  const encoded = message.map((m) => Buffer.from(fns.encode(m).finish()));
  return fc.oneof(
    { weight: 4, arbitrary: encoded },
    encoded.chain((b) => fc.tuple(fc.nat(Math.max(0, b.length - 1)), fc.integer({ min: 0, max: 255 })).map(([i, v]) => Buffer.from(b.map((x, j) => (j === i ? v : x))))),
    encoded.chain((b) => fc.nat(b.length).map((n) => b.subarray(0, n))),
    fc.tuple(encoded, encoded).map(([a, b]) => Buffer.concat([a, b])),
    encoded.map((b) => Buffer.concat([b, Buffer.from([0x78, 0x01])])), // field 15, varint 1
  );
}

describe('check requests (short-path decoders)', function () {
  it('CheckConsentRequest: declines, or agrees with the strict check and the generated decoder', function () {
    let accepted = 0;
    fc.assert(
      fc.property(variants(CheckConsentRequest, fc.record({ parent: text, query: fc.option(query, { nil: undefined }), consistency })), (bytes) => {
        if (expectAgreement('CheckConsent', CheckConsentRequest, fastCheckConsentRequest, bytes)) accepted++;
      }),
      { numRuns: 5000 },
    );
    expect(accepted, 'messages the short path took').to.be.greaterThan(200);
  });

  it('StreamCheckConsentRequest: declines, or agrees with the strict check and the generated decoder', function () {
    let accepted = 0;
    let acceptedPacked = 0;
    fc.assert(
      fc.property(
        variants(
          StreamCheckConsentRequest,
          fc.record({
            parent: text,
            query: fc.option(query, { nil: undefined }),
            correlationId: text,
            consistency,
            // The packed form, and both forms at once (the decoder takes what the generated one does).
            items: fc.oneof(fc.constant(null).map((): StreamCheckConsentItem[] => []), fc.array(fc.record({ query: fc.option(query, { nil: undefined }), correlationId: text }), { maxLength: 4 })),
          }),
        ),
        (bytes) => {
          if (expectAgreement('StreamCheckConsent', StreamCheckConsentRequest, fastStreamCheckConsentRequest, bytes)) {
            accepted++;
            if (StreamCheckConsentRequest.decode(bytes).items.length > 0) acceptedPacked++;
          }
        },
      ),
      // More runs than the others: packed messages have more places for what the short path declines.
      { numRuns: 10000 },
    );
    expect(accepted, 'messages the short path took').to.be.greaterThan(200);
    // Random packed messages rarely have every item in the usual form (the next test has some).
    expect(acceptedPacked, 'packed messages the short path took').to.be.greaterThan(0);
  });

  it('CheckConsentBatchRequest: declines, or agrees with the strict check and the generated decoder', function () {
    let accepted = 0;
    fc.assert(
      fc.property(variants(CheckConsentBatchRequest, fc.record({ parent: text, queries: fc.array(query, { maxLength: 5 }), consistency })), (bytes) => {
        if (expectAgreement('CheckConsentBatch', CheckConsentBatchRequest, fastCheckConsentBatchRequest, bytes)) accepted++;
      }),
      { numRuns: 3000 },
    );
    expect(accepted, 'messages the short path took').to.be.greaterThan(100);
  });

  it('takes the usual request: a phone number, a purpose, a channel, with or without a token', function () {
    const usual: CheckConsentRequest = {
      parent: 'tenants/acme',
      query: {
        subjectIdentifier: { kind: { $case: 'phoneNumber', value: '+4915112345678' }, defaultRegion: '' },
        purpose: 'tenants/acme/purposes/newsletter',
        category: PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED,
        channel: Channel.CHANNEL_WHATSAPP,
        at: undefined,
      },
      consistency: { requirement: { $case: 'atLeastAsFresh', value: 'ct1.YWNtZTo0Mg' } },
    };
    for (const message of [usual, { ...usual, consistency: undefined }]) {
      const bytes = Buffer.from(CheckConsentRequest.encode(message).finish());
      expect(fastCheckConsentRequest(bytes)).to.deep.equal(CheckConsentRequest.decode(bytes));
    }
    // The same questions packed into one stream message, and one asked alone.
    const items = Array.from({ length: 50 }, (_, i) => ({ query: { ...usual.query!, purpose: `tenants/acme/purposes/p${i}` }, correlationId: `c${i}` }));
    const packed: StreamCheckConsentRequest = { parent: 'tenants/acme', query: undefined, correlationId: 'm1', consistency: usual.consistency, items };
    const single: StreamCheckConsentRequest = { parent: 'tenants/acme', query: usual.query, correlationId: 'q1', consistency: undefined, items: [] };
    for (const message of [packed, single]) {
      const bytes = Buffer.from(StreamCheckConsentRequest.encode(message).finish());
      const short = fastStreamCheckConsentRequest(bytes);
      expect(short, 'taken by the short path').to.not.equal(null);
      expect(short).to.deep.equal(StreamCheckConsentRequest.decode(bytes));
      expect(short).to.deep.equal(message);
    }
  });
});
