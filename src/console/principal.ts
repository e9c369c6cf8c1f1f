import type { FastifyRequest } from 'fastify';
import type { ConsoleConfig } from '../config/config';

/**
 * Who is signed in, as far as the console needs to know: the bearer token it forwards with every
 * API call (none in development mode, where the API's development principal applies), and what to
 * show. The API verifies the token and decides every call by its own role table; the claims read
 * here (unverified) only choose which buttons to show and bind CSRF tokens to the person.
 */
export interface Credential {
  /** The person's JWT, forwarded as `authorization: Bearer`; undefined in development mode. */
  bearer?: string;
  /** For display and CSRF binding only: `sub` of the token, or "development". */
  who: string;
  /** Lower-case role names the token claims (all of them in development mode); display only. */
  roles: readonly string[];
  /** Signed in through the console's own OIDC session, which a sign-out form can end. */
  signOut?: boolean;
}

export class SignInRequired extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SignInRequired';
  }
}

const ALL_ROLES = ['sender', 'recorder', 'dpo', 'auditor', 'admin'];
const DEVELOPMENT: Credential = Object.freeze({ who: 'development', roles: ALL_ROLES });

/** The credential of one HTTP request; throws SignInRequired when the proxy sent none. */
export function credentialOf(request: FastifyRequest, config: Pick<ConsoleConfig, 'signIn' | 'proxyHeader'>): Credential {
  if (config.signIn === 'development') return DEVELOPMENT;
  if (config.signIn === 'oidc') throw new Error('OIDC sign-in reads the session (OidcSignIn.credential), not a header');
  const raw = request.headers[config.proxyHeader];
  const value = Array.isArray(raw) ? (raw.length === 1 ? raw[0] : undefined) : raw;
  const token = value?.replace(/^Bearer\s+/i, '').trim();
  if (!token) throw new SignInRequired(`no sign-in: the auth proxy sent no ${config.proxyHeader} header`);
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) throw new SignInRequired(`the ${config.proxyHeader} header does not hold a JWT`);
  const { claims: _claims, ...credential } = credentialFromToken(token);
  return credential;
}

/** The credential of a JWT the console forwards, with its (unverified) claims. */
export function credentialFromToken(token: string): Credential & { claims: Record<string, unknown> } {
  const claims = unverifiedClaims(token);
  const roles = Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [];
  return { bearer: token, who: typeof claims.sub === 'string' ? claims.sub : 'unknown', roles, claims };
}

/** The payload of a compact JWS, not verified (the API does that); {} when unreadable. */
function unverifiedClaims(token: string): Record<string, unknown> {
  try {
    const payload: unknown = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
    return typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
