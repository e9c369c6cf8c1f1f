import { createPublicKey } from 'node:crypto';
import jose from 'node-jose';

/**
 * Test-only JWT issuer: an ES256 signing key, its public JWK set (what the service is configured
 * with) and a `sign` that also makes the tokens an attacker would try. Keys live in memory for
 * one test run; nothing here is meant for production.
 */

export const TEST_ISSUER = 'https://issuer.consent-ledger.test';
export const TEST_AUDIENCE = 'consent-ledger';
/** Lifetime of a normal token. */
export const TOKEN_TTL_SECONDS = 300;

export interface TokenClaims {
  sub: string;
  /** Tenant ids the caller may act for; '*' means all. */
  tenants: string[] | '*';
  roles: string[];
  iss?: string;
  aud?: string | string[];
  /** Seconds since the epoch; computed from the issuer's clock unless given. */
  iat?: number;
  exp?: number;
  [claim: string]: unknown;
}

/**
 * Ways to make a token the service must refuse. Each one changes one thing; everything else
 * (claims, typ, kid) stays as in a valid token, so a rejection is caused by that one change.
 * - `rs256-foreign-key`: RS256, signed by an RSA key that is not in the JWKS, under the JWKS's kid
 *   (the verifier must refuse the alg/key mismatch, not just "unknown kid").
 * - `hs256-public-key`: HS256 whose HMAC secret is the JWKS key's public SPKI PEM, under the
 *   JWKS's kid. This is the classic algorithm confusion: a verifier that lets the header choose
 *   the algorithm "verifies" it with the public key it holds.
 * - `alg-none`: `{"alg":"none"}`, no signature: base64url(header).base64url(payload).
 * - `unknown-kid`: ES256, signed by a P-256 key that is not in the JWKS, with its own kid.
 * - `tampered-payload`: a valid ES256 token whose payload was replaced afterwards (see `tamper`);
 *   the signature is the original one.
 */
export type Forgery = 'rs256-foreign-key' | 'hs256-public-key' | 'alg-none' | 'unknown-kid' | 'tampered-payload';

export interface SignOptions {
  /** iat one hour before now and exp 30 minutes before now, beyond any clock-skew leeway. */
  expired?: boolean;
  forgery?: Forgery;
  /** Claims written over the signed payload for `tampered-payload`; default: admin of every tenant. */
  tamper?: Partial<TokenClaims>;
}

export interface TokenIssuer {
  /** The public JWK set as JSON: one ES256 P-256 key with `kid`, `alg` and `use` set. */
  jwks: string;
  kid: string;
  /** A compact JWS (`header.payload.signature`); claims given win over the computed iss/aud/iat/exp. */
  sign(claims: TokenClaims, options?: SignOptions): Promise<string>;
}

export interface TokenIssuerOptions {
  issuer?: string;
  audience?: string;
  /** Epoch milliseconds; pass the service's ManualClock (`() => clock.now()`) when it runs on one. */
  now?: () => number;
  kid?: string;
}

let kidCounter = 0;

export async function createTokenIssuer(options: TokenIssuerOptions = {}): Promise<TokenIssuer> {
  const now = options.now ?? Date.now;
  const kid = options.kid ?? `test-es256-${++kidCounter}`;
  const keystore = jose.JWK.createKeyStore();
  const key = await keystore.generate('EC', 'P-256', { kid, alg: 'ES256', use: 'sig' });
  // toJSON() without `true` leaves the private part out.
  const jwks = JSON.stringify(keystore.toJSON());

  function payloadFor(claims: TokenClaims, expired: boolean): TokenClaims {
    const nowSeconds = Math.floor(now() / 1000);
    const iat = expired ? nowSeconds - 3600 : nowSeconds;
    const exp = expired ? nowSeconds - 1800 : nowSeconds + TOKEN_TTL_SECONDS;
    return { iss: options.issuer ?? TEST_ISSUER, aud: options.audience ?? TEST_AUDIENCE, iat, exp, ...claims };
  }

  return {
    jwks,
    kid,
    async sign(claims, signOptions = {}) {
      const payload = payloadFor(claims, signOptions.expired ?? false);
      switch (signOptions.forgery) {
        case undefined:
          return jws(key, 'ES256', kid, payload);
        case 'rs256-foreign-key':
          return jws(await foreignRsaKey(), 'RS256', kid, payload);
        case 'hs256-public-key': {
          const publicPem = createPublicKey(key.toPEM(false)).export({ type: 'spki', format: 'pem' });
          const secret = await jose.JWK.asKey({ kty: 'oct', k: b64url(Buffer.from(publicPem)) });
          return jws(secret, 'HS256', kid, payload);
        }
        case 'alg-none':
          return `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT', kid }))}.${b64url(JSON.stringify(payload))}.`;
        case 'unknown-kid': {
          const stranger = await jose.JWK.createKey('EC', 'P-256', { kid: `${kid}-unknown`, alg: 'ES256', use: 'sig' });
          return jws(stranger, 'ES256', stranger.kid, payload);
        }
        case 'tampered-payload': {
          const [header, , signature] = (await jws(key, 'ES256', kid, payload)).split('.');
          const forged = { ...payload, ...(signOptions.tamper ?? { roles: ['admin'], tenants: '*' }) };
          return `${header}.${b64url(JSON.stringify(forged))}.${signature}`;
        }
      }
    },
  };
}

/** The parts of a compact JWS, decoded without checking anything. */
export function decodeToken(token: string): { header: Record<string, unknown>; payload: Record<string, unknown>; signature: Buffer } {
  const [header, payload, signature] = token.split('.');
  if (signature === undefined) throw new Error('not a compact JWS');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')),
    signature: Buffer.from(signature, 'base64url'),
  };
}

function jws(key: jose.JWK.Key, alg: string, kid: string, payload: TokenClaims): Promise<string> {
  return jose.JWS.createSign({ format: 'compact', fields: { alg, typ: 'JWT', kid } }, key)
    .update(JSON.stringify(payload), 'utf8')
    .final() as unknown as Promise<string>;
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

// RSA key generation takes tens of milliseconds: one key per process, made on first use.
let rsaKey: Promise<jose.JWK.Key> | undefined;
function foreignRsaKey(): Promise<jose.JWK.Key> {
  rsaKey ??= jose.JWK.createKey('RSA', 2048, { kid: 'test-rs256-foreign', alg: 'RS256', use: 'sig' });
  return rsaKey;
}
