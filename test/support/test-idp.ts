import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real OpenID Connect provider for the console's sign-in tests: panva's oidc-provider (the
 * certified implementation openid-client is tested against), in this process, over plain http on
 * loopback. Its development interactions sign in any login name with any password, which becomes
 * the `sub`; the account's roles and tenants come from `accounts` and go into JWT access tokens
 * issued for the API (resource indicators), the way an organisation's provider is configured for
 * the console (docs/console.md, "Signing in").
 */
export interface TestIdp {
  /** http://localhost:<port>: another site than the console on 127.0.0.1, so SameSite matters. */
  issuer: string;
  /** The public JWK set (JSON) of its signing key: the API's JWT_JWKS_FILE. */
  jwks: string;
  close(): Promise<void>;
}

export interface TestIdpOptions {
  /** The console's public origin: its callback and signed-out pages are the client's registered addresses. */
  consoleOrigins: string[];
  clientId: string;
  clientSecret: string;
  /** The resource indicator (the API's JWT_AUDIENCE). */
  audience: string;
  /** Per login name: the claims its access tokens carry. */
  accounts: Record<string, { roles: string[]; tenants: string[] | '*' }>;
  /** Lifetime of access tokens, seconds. */
  accessTokenTtl?: number;
}

interface ProviderInstance {
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
}
type ProviderClass = new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;

export async function startTestIdp(options: TestIdpOptions): Promise<TestIdp> {
  // ESM-only package; the tests run as CommonJS.
  const { default: Provider } = (await import('oidc-provider')) as { default: ProviderClass };
  let handler: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  const server = http.createServer((req, res) => (handler ? handler(req, res) : res.writeHead(503).end()));
  // Every address (IPv4 and IPv6): "localhost" may resolve to either.
  await new Promise<void>((resolve) => server.listen(0, resolve));
  const issuer = `http://localhost:${(server.address() as AddressInfo).port}`;

  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = 'test-idp-es256';
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
  const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        redirect_uris: options.consoleOrigins.map((o) => `${o}/oidc/callback`),
        post_logout_redirect_uris: options.consoleOrigins.map((o) => `${o}/oidc/signed-out`),
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [privateJwk] },
    cookies: { keys: ['test-idp-cookie-key-not-secret'] },
    pkce: { required: () => true },
    scopes: ['openid', 'api'],
    claims: { openid: ['sub'] },
    findAccount: (_ctx: unknown, id: string) => ({ accountId: id, claims: () => ({ sub: id }) }),
    // The claims the API reads (docs/security.md): the roles and tenants of the account.
    extraTokenClaims: (_ctx: unknown, token: { accountId?: string }) => {
      const account = token.accountId ? options.accounts[token.accountId] : undefined;
      return account ? { roles: account.roles, tenants: account.tenants } : {};
    },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => options.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience: options.audience,
          accessTokenTTL: options.accessTokenTtl ?? 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  handler = provider.callback();
  return {
    issuer,
    jwks: JSON.stringify({ keys: [publicJwk] }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
