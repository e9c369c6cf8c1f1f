import { createHash } from 'node:crypto';
import { Violations } from './errors';

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
 * Page tokens are opaque (base64url JSON) and carry a digest of the list's scope and filters:
 * a token only continues the listing it came from, and it grants nothing, since every call is
 * authorised on its own. The cursor is a position, never data.
 */
export function encodePageToken(cursor: string | number, scope: unknown): string {
  return Buffer.from(JSON.stringify({ c: cursor, s: digest(scope) })).toString('base64url');
}

/** The cursor of a token from encodePageToken with the same scope; null for an empty token. */
export function decodePageToken<T extends string | number>(
  token: string,
  scope: unknown,
  kind: 'string' | 'number',
  violations: Violations,
): T | null {
  if (!token) return null;
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { c?: unknown; s?: unknown };
    if (typeof parsed.c === kind && parsed.s === digest(scope)) return parsed.c as T;
  } catch {
    // fall through to the violation
  }
  violations.add('page_token', 'INVALID_PAGE_TOKEN', 'is not a token from a previous call with the same parent and filters');
  return null;
}

function digest(scope: unknown): string {
  return createHash('sha256').update(JSON.stringify(scope)).digest('base64url').slice(0, 16);
}
