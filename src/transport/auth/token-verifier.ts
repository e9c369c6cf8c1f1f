import jose from 'node-jose';
import { LRUCache } from 'lru-cache';
import { unauthenticated } from '../../shared/errors';
import { hasCanonicalSignature } from '../../crypto/jws-signature';
import { Principal, Role, ROLES } from '../../domain/principal';
import { TENANT_ID } from '../../domain/resource-names';

import { TokenAlgorithm } from '../../config/config';

export interface TokenSettings {
  /** The JWK set (JSON) whose public keys sign tokens. */
  jwks: string;
  /** Required `iss`, if set. */
  issuer?: string;
  /** Required member of `aud`, if set. */
  audience?: string;
  /** The algorithms accepted; any other `alg` is refused before a key is looked at. */
  algorithms: readonly TokenAlgorithm[];
  /** Tolerated clock difference for `exp` and `nbf`. */
  clockSkewMs: number;
}

interface Claims {
  sub?: unknown;
  roles?: unknown;
  tenants?: unknown;
  exp?: unknown;
  nbf?: unknown;
  iss?: unknown;
  aud?: unknown;
}

/**
 * Bearer tokens: compact JWS (JWT) signed by a key of the configured JWK set, verified with
 * node-jose. Claims: `sub` (the principal id), `roles` (lower-case role names), `tenants` (tenant
 * ids or "*"), `exp` (required). Verified tokens are cached until they expire (at most five
 * minutes), so a sender's thousands of checks a second cost one signature check.
 */
export class TokenVerifier {
  private readonly cache = new LRUCache<string, { principal: Principal; expMs: number }>({ max: 10_000, ttl: 5 * 60_000 });

  private constructor(
    private readonly keystore: jose.JWK.KeyStore,
    private readonly settings: TokenSettings,
  ) {}

  static async create(settings: TokenSettings): Promise<TokenVerifier> {
    const keystore = await jose.JWK.asKeyStore(JSON.parse(settings.jwks) as object);
    if (keystore.all().length === 0) throw new Error('the token JWK set holds no keys');
    if (keystore.all().some((k) => k.kty === 'oct')) throw new Error('the token JWK set must hold public keys only (no "oct" secrets)');
    return new TokenVerifier(keystore, settings);
  }

  async verify(token: string, now: number): Promise<Principal> {
    const cached = this.cache.get(token);
    if (cached && now < cached.expMs + this.settings.clockSkewMs) return cached.principal;

    const parts = token.split('.');
    if (parts.length !== 3 || token.length > 8192) throw unauthenticated('TOKEN_MALFORMED', 'the bearer token is not a compact JWS');
    let header: { alg?: unknown };
    try {
      header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as { alg?: unknown };
    } catch {
      throw unauthenticated('TOKEN_MALFORMED', 'the bearer token is not a compact JWS');
    }
    // JSON that is not an object (null, a number, a list) is no JWS header either.
    if (!isJsonObject(header)) throw unauthenticated('TOKEN_MALFORMED', 'the bearer token is not a compact JWS');
    // Pinned before any key is looked up: "none", HMAC with a public key as secret and the like never get that far.
    if (typeof header.alg !== 'string' || !(this.settings.algorithms as readonly string[]).includes(header.alg)) {
      throw unauthenticated('TOKEN_ALGORITHM_NOT_ALLOWED', `the bearer token's algorithm is not one of ${this.settings.algorithms.join(', ')}`);
    }
    let payload: Buffer;
    // One spelling per signature: node-jose ignores bytes after an ECDSA signature.
    if (!hasCanonicalSignature(token, header.alg)) throw unauthenticated('TOKEN_SIGNATURE_INVALID', 'the bearer token is not signed by a trusted key');
    try {
      payload = (await jose.JWS.createVerify(this.keystore, { algorithms: [...this.settings.algorithms] }).verify(token)).payload;
    } catch {
      throw unauthenticated('TOKEN_SIGNATURE_INVALID', 'the bearer token is not signed by a trusted key');
    }
    let claims: Claims;
    try {
      claims = JSON.parse(payload.toString('utf8')) as Claims;
    } catch {
      throw unauthenticated('TOKEN_MALFORMED', 'the bearer token has no JSON claims');
    }
    if (!isJsonObject(claims)) throw unauthenticated('TOKEN_CLAIMS_INVALID', 'the bearer token\'s claims are not a JSON object');
    const principal = this.check(claims, now);
    const expMs = (claims.exp as number) * 1000;
    this.cache.set(token, { principal, expMs }, { ttl: Math.max(1, Math.min(5 * 60_000, expMs + this.settings.clockSkewMs - now)) });
    return principal;
  }

  private check(claims: Claims, now: number): Principal {
    const skew = this.settings.clockSkewMs;
    if (typeof claims.exp !== 'number') throw unauthenticated('TOKEN_CLAIMS_INVALID', 'the bearer token has no expiry (exp)');
    if (now >= claims.exp * 1000 + skew) throw unauthenticated('TOKEN_EXPIRED', 'the bearer token has expired');
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || now < claims.nbf * 1000 - skew)) {
      throw unauthenticated('TOKEN_NOT_YET_VALID', 'the bearer token is not valid yet');
    }
    if (this.settings.issuer !== undefined && claims.iss !== this.settings.issuer) throw unauthenticated('TOKEN_ISSUER_INVALID', 'the bearer token is from another issuer');
    if (this.settings.audience !== undefined) {
      const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!audiences.includes(this.settings.audience)) throw unauthenticated('TOKEN_AUDIENCE_INVALID', 'the bearer token is for another audience');
    }
    if (typeof claims.sub !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(claims.sub)) throw unauthenticated('TOKEN_CLAIMS_INVALID', 'the bearer token has no valid subject (sub)');
    return { id: claims.sub, roles: parseRoles(claims.roles), tenants: parseTenants(claims.tenants) };
  }
}

/**
 * Role names from a token or the principals file. They match exactly, in lower case ("dpo", not
 * "DPO" or "Dpo"): a credential is a security boundary, and a name that only resembles a role is a
 * mistake to report, not to guess at. An unknown one is an error, not ignored.
 */
export function parseRoles(value: unknown): Role[] {
  if (!Array.isArray(value) || value.length === 0) throw unauthenticated('TOKEN_CLAIMS_INVALID', 'the credential names no roles');
  return value.map((r) => {
    const role = ROLE_NAMES.get(typeof r === 'string' ? r : '');
    if (!role) throw unauthenticated('TOKEN_CLAIMS_INVALID', `the credential names an unknown role (roles match exactly, in lower case: ${[...ROLE_NAMES.keys()].join(', ')})`);
    return role;
  });
}

/** "dpo" -> DPO: the exact names a credential may carry. */
const ROLE_NAMES = new Map<string, Role>(ROLES.map((role) => [role.toLowerCase(), role]));

/** Tenant ids, or "*" for all. */
export function parseTenants(value: unknown): string[] | '*' {
  if (value === '*') return '*';
  if (!Array.isArray(value) || !value.every((t) => typeof t === 'string' && TENANT_ID.test(t))) {
    throw unauthenticated('TOKEN_CLAIMS_INVALID', 'the credential names no valid tenants (a list of tenant ids, or "*")');
  }
  return value as string[];
}

function isJsonObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
