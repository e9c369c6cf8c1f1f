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

const PREFIX = 'ct1.';
const MAX_POSITION = Number.MAX_SAFE_INTEGER;

/**
 * The consistency token of a write: the tenant and its audit log size after the write's commit
 * (every write of the tenant that committed before it lies below that position). Opaque to
 * clients: "ct1." and base64url of "<tenant>:<position>". It names no person and grants nothing;
 * a forged one can only ask for more freshness than exists, which is refused by waiting, never
 * by a stale answer.
 */
export function encodeConsistencyToken(tenantId: string, position: number): string {
  return PREFIX + Buffer.from(`${tenantId}:${position}`, 'utf8').toString('base64url');
}

/** The position a token asks for, or a violation of `field` (malformed, or another tenant's). */
export function decodeConsistencyToken(token: string, tenantId: string, field: string): number | FieldViolation {
  const invalid = (description: string): FieldViolation => ({ field, reason: 'INVALID_CONSISTENCY_TOKEN', description });
  if (!token.startsWith(PREFIX) || token.length > 200) return invalid('is not a consistency token returned by a write');
  const text = Buffer.from(token.slice(PREFIX.length), 'base64url').toString('utf8');
  const colon = text.lastIndexOf(':');
  const position = Number(text.slice(colon + 1));
  if (colon < 1 || !/^\d{1,16}$/.test(text.slice(colon + 1)) || position > MAX_POSITION) return invalid('is not a consistency token returned by a write');
  if (text.slice(0, colon) !== tenantId) return invalid("is another tenant's consistency token");
  return position;
}
