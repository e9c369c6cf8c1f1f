import { createHash } from 'node:crypto';
import { FieldViolation } from '../shared/errors';

/**
 * How fresh the state behind a check must be (after SpiceDB's consistency requirements):
 *  - `bounded` (the default): within the staleness bound B of the database; answered from the
 *    cache when it is proven that fresh, else read from the database;
 *  - `atLeast`: at least as fresh as a consistency token a write returned (every write up to and
 *    including that one is seen), and within B;
 *  - `full`: read from the database itself.
 */
export type Consistency = { kind: 'bounded' } | { kind: 'atLeast'; position: number } | { kind: 'full' };

export const BOUNDED: Consistency = Object.freeze({ kind: 'bounded' });

const PREFIX = 'ct2.';
/** Tokens of servers before ct2 (a rolling upgrade): accepted in their exact canonical form. */
const LEGACY_PREFIX = 'ct1.';
const MAX_POSITION = Number.MAX_SAFE_INTEGER;
const POSITION = /^(0|[1-9]\d{0,15})$/;

/**
 * The consistency token of a write: the tenant and its audit log size after the write's commit
 * (every write of the tenant that committed before it lies below that position). Opaque to
 * clients: "ct2." and base64url of "<tenant>:<position>:<check>", the check being the first 8
 * hex digits of a SHA-256 of the rest, so that a token cut short or altered on its way is refused
 * instead of read as another, older position (a probe found "tok1:206" cut to "tok1:20" accepted,
 * and checks answered from state older than the write). It names no person and grants nothing; a
 * forged one can only ask for more freshness than exists, which is refused by waiting, never by a
 * stale answer.
 */
export function encodeConsistencyToken(tenantId: string, position: number): string {
  const body = `${tenantId}:${position}`;
  return PREFIX + Buffer.from(`${body}:${checkOf(body)}`, 'utf8').toString('base64url');
}

/** The position a token asks for, or a violation of `field` (malformed, altered, or another tenant's). */
export function decodeConsistencyToken(token: string, tenantId: string, field: string): number | FieldViolation {
  const invalid = (description: string): FieldViolation => ({ field, reason: 'INVALID_CONSISTENCY_TOKEN', description });
  const malformed = invalid('is not a consistency token returned by a write (cut short or altered?)');
  if (token.length > 200) return malformed;
  const legacy = token.startsWith(LEGACY_PREFIX);
  if (!legacy && !token.startsWith(PREFIX)) return malformed;
  const encoded = token.slice(PREFIX.length);
  const bytes = Buffer.from(encoded, 'base64url');
  // Only the exact text this service writes: no padding, stray characters or other spellings.
  if (bytes.toString('base64url') !== encoded) return malformed;
  const text = bytes.toString('utf8');
  let body = text;
  if (!legacy) {
    const last = text.lastIndexOf(':');
    if (last < 0 || text.slice(last + 1) !== checkOf(text.slice(0, last))) return malformed;
    body = text.slice(0, last);
  }
  const colon = body.lastIndexOf(':');
  const digits = body.slice(colon + 1);
  if (colon < 1 || !POSITION.test(digits) || Number(digits) > MAX_POSITION) return malformed;
  if (body.slice(0, colon) !== tenantId) return invalid("is another tenant's consistency token");
  return Number(digits);
}

function checkOf(body: string): string {
  return createHash('sha256').update(`consistency-token/v2\u0000${body}`).digest('hex').slice(0, 8);
}
