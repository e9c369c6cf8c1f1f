import { Channel, PurposeCategory, SubjectIdentifier } from '../gen/consent/v1/common';
import { CheckConsentBatchRequest, CheckConsentRequest, ConsentQuery, Consistency, StreamCheckConsentItem, StreamCheckConsentRequest } from '../gen/consent/v1/consent';

/**
 * Decoders of the check methods' requests for the bytes clients usually send, in one pass: every
 * field known, at most once, with its usual wire type; text in ASCII; enum numbers the schema
 * defines; no `at`. For those bytes the strict wire check (request-checks.ts) finds nothing and
 * the generated decoder returns exactly what these return; the general path (both of them, ~3 µs
 * per query) is skipped. Anything else returns null and takes the general path, which decides
 * and names what is wrong. test/unit/check-requests.test.ts compares both on generated and
 * mangled messages.
 */

/** Enum numbers the schema defines (ts-proto adds UNRECOGNIZED = -1, which it does not). */
function definedNumbers(pbEnum: Record<string, string | number>): ReadonlySet<number> {
  return new Set(Object.values(pbEnum).filter((v): v is number => typeof v === 'number' && v >= 0));
}
const CATEGORIES = definedNumbers(PurposeCategory);
const CHANNELS = definedNumbers(Channel);

/** Tags (field number << 3 | wire type) of the fields read here: 0 varint, 2 length-delimited. */
const T1_BYTES = 10;
const T2_BYTES = 18;
const T3_BYTES = 26;
const T4_BYTES = 34;
const T5_BYTES = 42;
const T1_VARINT = 8;
const T3_VARINT = 24;
const T4_VARINT = 32;

/** A cursor over one message's bytes; any surprise makes it `bad` (the caller then gives up). */
class Cursor {
  bad = false;

  constructor(
    private readonly bytes: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  get more(): boolean {
    return !this.bad && this.pos < this.end;
  }

  /** A varint below 2^28 (tags, lengths, small enum numbers); anything longer is a surprise. */
  small(): number {
    let value = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= this.end) break;
      const b = this.bytes[this.pos++];
      value |= (b & 0x7f) << shift;
      if (b < 0x80) return value;
    }
    this.bad = true;
    return 0;
  }

  /** A length-delimited field's extent, as a cursor over it. */
  sub(): Cursor {
    const length = this.small();
    const start = this.pos;
    if (this.bad || length > this.end - start) {
      this.bad = true;
      return new Cursor(this.bytes, 0, 0);
    }
    this.pos = start + length;
    return new Cursor(this.bytes, start, start + length);
  }

  /** A string field's text if it is ASCII (valid UTF-8 that decodes to the same characters). */
  ascii(): string {
    const length = this.small();
    const start = this.pos;
    if (this.bad || length > this.end - start) {
      this.bad = true;
      return '';
    }
    for (let i = start; i < start + length; i++) {
      if (this.bytes[i] >= 0x80) {
        this.bad = true;
        return '';
      }
    }
    this.pos = start + length;
    return this.bytes.toString('latin1', start, start + length);
  }

  /** A bool written as 0 or 1. */
  bool(): boolean {
    const value = this.small();
    if (value > 1) this.bad = true;
    return value === 1;
  }

  /** An enum number the schema defines. */
  enumIn(defined: ReadonlySet<number>): number {
    const value = this.small();
    if (!defined.has(value)) this.bad = true;
    return value;
  }

  /** Marks a field seen; a second occurrence is a surprise (the generated decoder keeps the last). */
  once(seen: number, field: number): number {
    if (seen & (1 << field)) this.bad = true;
    return seen | (1 << field);
  }
}

function subjectIdentifier(c: Cursor): SubjectIdentifier {
  const message: SubjectIdentifier = { kind: undefined, defaultRegion: '' };
  let seen = 0;
  while (c.more) {
    const tag = c.small();
    if (tag === T1_BYTES || tag === T2_BYTES || tag === T3_BYTES) {
      // One of the oneof's members, once: a second one (even another member) takes the general path.
      seen = c.once(seen, 1);
      const value = c.ascii();
      message.kind = tag === T1_BYTES ? { $case: 'phoneNumber', value } : tag === T2_BYTES ? { $case: 'email', value } : { $case: 'customerId', value };
    } else if (tag === T4_BYTES) {
      seen = c.once(seen, 4);
      message.defaultRegion = c.ascii();
    } else c.bad = true;
  }
  return message;
}

function consentQuery(c: Cursor): ConsentQuery {
  const message: ConsentQuery = { subjectIdentifier: undefined, purpose: '', category: 0, channel: 0, at: undefined };
  let seen = 0;
  while (c.more) {
    const tag = c.small();
    if (tag === T1_BYTES) {
      seen = c.once(seen, 1);
      message.subjectIdentifier = nested(c, subjectIdentifier);
    } else if (tag === T2_BYTES) {
      seen = c.once(seen, 2);
      message.purpose = c.ascii();
    } else if (tag === T3_VARINT) {
      seen = c.once(seen, 3);
      message.category = c.enumIn(CATEGORIES);
    } else if (tag === T4_VARINT) {
      seen = c.once(seen, 4);
      message.channel = c.enumIn(CHANNELS);
    } else c.bad = true; // `at` (a Timestamp to range-check) and anything unknown
  }
  return message;
}

function consistency(c: Cursor): Consistency {
  const message: Consistency = { requirement: undefined };
  let seen = 0;
  while (c.more) {
    const tag = c.small();
    seen = c.once(seen, 1); // one member of the oneof, once
    if (tag === T1_VARINT) message.requirement = { $case: 'minimizeLatency', value: c.bool() };
    else if (tag === T2_BYTES) message.requirement = { $case: 'atLeastAsFresh', value: c.ascii() };
    else if (tag === T3_VARINT) message.requirement = { $case: 'fullyConsistent', value: c.bool() };
    else c.bad = true;
  }
  return message;
}

/** A nested message read by `read`, or marks the outer cursor bad if the inner one went bad. */
function nested<T>(c: Cursor, read: (inner: Cursor) => T): T {
  const inner = c.sub();
  const value = read(inner);
  if (inner.bad) c.bad = true;
  return value;
}

export function fastCheckConsentRequest(bytes: Buffer): CheckConsentRequest | null {
  const c = new Cursor(bytes, 0, bytes.length);
  const message: CheckConsentRequest = { parent: '', query: undefined, consistency: undefined };
  let seen = 0;
  while (c.more) {
    const tag = c.small();
    if (tag === T1_BYTES) {
      seen = c.once(seen, 1);
      message.parent = c.ascii();
    } else if (tag === T2_BYTES) {
      seen = c.once(seen, 2);
      message.query = nested(c, consentQuery);
    } else if (tag === T3_BYTES) {
      seen = c.once(seen, 3);
      message.consistency = nested(c, consistency);
    } else c.bad = true;
  }
  return c.bad ? null : message;
}

/** An item of a packed stream message. */
function streamCheckConsentItem(c: Cursor): StreamCheckConsentItem {
  const message: StreamCheckConsentItem = { query: undefined, correlationId: '' };
  let seen = 0;
  while (c.more) {
    const tag = c.small();
    if (tag === T1_BYTES) {
      seen = c.once(seen, 1);
      message.query = nested(c, consentQuery);
    } else if (tag === T2_BYTES) {
      seen = c.once(seen, 2);
      message.correlationId = c.ascii();
    } else c.bad = true;
  }
  return message;
}

export function fastStreamCheckConsentRequest(bytes: Buffer): StreamCheckConsentRequest | null {
  const c = new Cursor(bytes, 0, bytes.length);
  const message: StreamCheckConsentRequest = { parent: '', query: undefined, correlationId: '', consistency: undefined, items: [] };
  let seen = 0;
  while (c.more) {
    const tag = c.small();
    if (tag === T1_BYTES) {
      seen = c.once(seen, 1);
      message.parent = c.ascii();
    } else if (tag === T2_BYTES) {
      seen = c.once(seen, 2);
      message.query = nested(c, consentQuery);
    } else if (tag === T3_BYTES) {
      seen = c.once(seen, 3);
      message.correlationId = c.ascii();
    } else if (tag === T4_BYTES) {
      seen = c.once(seen, 4);
      message.consistency = nested(c, consistency);
    } else if (tag === T5_BYTES) {
      message.items.push(nested(c, streamCheckConsentItem));
    } else c.bad = true;
  }
  return c.bad ? null : message;
}

export function fastCheckConsentBatchRequest(bytes: Buffer): CheckConsentBatchRequest | null {
  const c = new Cursor(bytes, 0, bytes.length);
  const message: CheckConsentBatchRequest = { parent: '', queries: [], consistency: undefined };
  let seen = 0;
  while (c.more) {
    const tag = c.small();
    if (tag === T1_BYTES) {
      seen = c.once(seen, 1);
      message.parent = c.ascii();
    } else if (tag === T2_BYTES) {
      message.queries.push(nested(c, consentQuery));
    } else if (tag === T3_BYTES) {
      seen = c.once(seen, 3);
      message.consistency = nested(c, consistency);
    } else c.bad = true;
  }
  return c.bad ? null : message;
}

/** The short-path decoders by gRPC method path (server.ts tries them before the general path). */
export const CHECK_REQUEST_DECODERS: Record<string, (bytes: Buffer) => object | null> = {
  '/consent.v1.ConsentService/CheckConsent': fastCheckConsentRequest,
  '/consent.v1.ConsentService/CheckConsentBatch': fastCheckConsentBatchRequest,
  '/consent.v1.ConsentService/StreamCheckConsent': fastStreamCheckConsentRequest,
};
