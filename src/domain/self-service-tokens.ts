import { randomBytes } from 'node:crypto';
import { KeyManager } from '../crypto/key-manager';
import { DomainError, invalidArgument } from '../shared/errors';

/**
 * The tokens a person holds on the self-service side (issue 20): the e-mail link that confirms a
 * double opt-in, and the preference link a tenant puts into its messages. Each is a compact JWS
 * signed with the tenant's signing key (KeyManager.sign, ES256, the key of consent receipts) whose
 * payload names the tenant, the opaque subject, the use and the expiry. It holds no identifier, so
 * a link in a mail log or a browser history says nothing about the person; a token of one tenant,
 * person or use is refused for any other. What a token was used for (single use of confirmations)
 * is kept by the caller, keyed by `jti`.
 */
export type TokenUse = 'signup-confirmation' | 'preference-link';

const TYP: Record<TokenUse, string> = {
  'signup-confirmation': 'signup-confirmation+jwt',
  'preference-link': 'preference-link+jwt',
};

export interface SelfServiceClaims {
  /** The tenant id. */
  ten: string;
  /** The opaque subject id. */
  sub: string;
  use: TokenUse;
  /** Unique id of this token (base64url, 128 bits). */
  jti: string;
  /** Issued and expiry, seconds since the epoch (JWT convention). */
  iat: number;
  exp: number;
}

export class SelfServiceTokens {
  constructor(private readonly keys: KeyManager) {}

  async issue(tenantId: string, subjectId: string, use: TokenUse, now: number, ttlMs: number): Promise<{ token: string; claims: SelfServiceClaims }> {
    const claims: SelfServiceClaims = {
      ten: tenantId,
      sub: subjectId,
      use,
      jti: randomBytes(16).toString('base64url'),
      iat: Math.floor(now / 1000),
      exp: Math.floor((now + ttlMs) / 1000),
    };
    return { token: await this.keys.sign(tenantId, claims, TYP[use], now), claims };
  }

  /**
   * The claims of a token of `tenantId` for `use`. INVALID_ARGUMENT TOKEN_INVALID (field `token`)
   * for anything this tenant did not sign for this use; FAILED_PRECONDITION TOKEN_EXPIRED after
   * `exp`. The message never repeats the token.
   */
  async verify(tenantId: string, token: string, use: TokenUse, now: number): Promise<SelfServiceClaims> {
    const payload = await this.keys.verify(tenantId, token, TYP[use]);
    if (!isClaims(payload) || payload.ten !== tenantId || payload.use !== use) {
      throw invalidArgument([{ field: 'token', reason: 'TOKEN_INVALID', description: 'not a valid link of this tenant for this use' }]);
    }
    if (payload.exp * 1000 <= now) {
      throw new DomainError('FAILED_PRECONDITION', 'TOKEN_EXPIRED', `the link expired at ${new Date(payload.exp * 1000).toISOString()}`);
    }
    return payload;
  }
}

function isClaims(value: unknown): value is SelfServiceClaims {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.ten === 'string' && typeof v.sub === 'string' && typeof v.use === 'string' && typeof v.jti === 'string' && Number.isInteger(v.iat) && Number.isInteger(v.exp);
}
