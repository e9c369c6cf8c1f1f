import { createHash } from 'node:crypto';
import { TokenSealer } from '../crypto/token-sealer';
import { Violations } from '../shared/errors';

/** Page-size policy of every List method (AIP-158). */
export interface PageLimits {
  defaultPageSize: number;
  maxPageSize: number;
}

/** 0 -> the default; above the maximum -> the maximum; negative -> INVALID_ARGUMENT. */
export function resolvePageSize(requested: number, limits: PageLimits, violations: Violations): number {
  violations.check(requested >= 0, 'page_size', 'NEGATIVE_PAGE_SIZE', 'must not be negative');
  if (requested <= 0) return limits.defaultPageSize;
  return Math.min(requested, limits.maxPageSize);
}

/**
 * Page tokens are opaque: the cursor and a digest of the listing's scope and filters, encrypted
 * and authenticated under the tenant's key. A token only continues the listing it came from,
 * reveals nothing (filters may hold a phone number; cursors reveal volumes), and grants nothing:
 * every call is authorised on its own.
 */
export function encodePageToken(cursor: string | number, scope: unknown, sealer: TokenSealer): string {
  return sealer.seal(JSON.stringify({ c: cursor, s: digest(scope) }));
}

/** The cursor of a token from encodePageToken with the same scope; null for an empty token. */
export function decodePageToken<T extends string | number>(
  token: string,
  scope: unknown,
  kind: 'string' | 'number',
  sealer: TokenSealer,
  violations: Violations,
  /** The request field the token came in (a stream's resume point is its `cursor`). */
  field = 'page_token',
): T | null {
  if (!token) return null;
  const plaintext = token.length <= 2048 ? sealer.open(token) : null;
  if (plaintext !== null) {
    try {
      const parsed = JSON.parse(plaintext) as { c?: unknown; s?: unknown };
      if (typeof parsed.c === kind && parsed.s === digest(scope)) return parsed.c as T;
    } catch {
      // fall through to the violation
    }
  }
  violations.add(
    field,
    field === 'page_token' ? 'INVALID_PAGE_TOKEN' : 'INVALID_CURSOR',
    `is not a ${field === 'page_token' ? 'token' : field} from a previous call with the same parent and filters`,
  );
  return null;
}

function digest(scope: unknown): string {
  return createHash('sha256').update(JSON.stringify(scope)).digest('base64url');
}
