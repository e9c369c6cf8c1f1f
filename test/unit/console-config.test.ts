import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../src/config/config';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env, os.tmpdir());
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  expect.fail('expected a ConfigError');
}

/** The CONSOLE_* settings (docs/console.md): off by default, and no way to start it with powers it must not have. */
describe('console configuration', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'console-config-'));
  const jwks = path.join(dir, 'jwks.json');
  writeFileSync(jwks, '{"keys":[]}');

  it('is off without CONSOLE_PORT, and other CONSOLE_ settings alone are refused as a likely mistake', () => {
    expect(loadConfig({}, dir).console).to.equal(undefined);
    expect(problems({ CONSOLE_SIGN_IN: 'proxy' })).to.deep.equal(['CONSOLE_SIGN_IN is only read with CONSOLE_PORT (the web console is off)']);
  });

  it('defaults to development sign-in on loopback when the API is in development mode', () => {
    expect(loadConfig({ CONSOLE_PORT: '8080' }, dir).console).to.deep.equal({
      port: 8080,
      bindAddress: '127.0.0.1',
      signIn: 'development',
      proxyHeader: 'x-forwarded-access-token',
      apiAddress: undefined,
      apiCaFile: undefined,
      apiServerName: undefined,
    });
  });

  it('defaults to proxy sign-in when the API verifies bearer tokens, with the header configurable', () => {
    const c = loadConfig({ CONSOLE_PORT: '8080', JWT_JWKS_FILE: jwks, CONSOLE_AUTH_HEADER: 'X-Auth-Request-Access-Token' }, dir).console!;
    expect(c.signIn).to.equal('proxy');
    expect(c.proxyHeader).to.equal('x-auth-request-access-token');
  });

  it('refuses development sign-in off loopback, or in front of an API that wants credentials', () => {
    expect(problems({ CONSOLE_PORT: '8080', CONSOLE_BIND_ADDRESS: '0.0.0.0' }).join('\n')).to.include('CONSOLE_SIGN_IN=development serves without sign-in: CONSOLE_BIND_ADDRESS must be loopback');
    expect(problems({ CONSOLE_PORT: '8080', CONSOLE_SIGN_IN: 'development', JWT_JWKS_FILE: jwks }).join('\n')).to.include('needs the API in development mode');
  });

  it('refuses proxy sign-in in front of a development-mode API (every forwarded token would act as dev-admin)', () => {
    expect(problems({ CONSOLE_PORT: '8080', CONSOLE_SIGN_IN: 'proxy' })).to.deep.equal(['CONSOLE_SIGN_IN=proxy forwards bearer tokens: the API must verify them (set JWT_JWKS_FILE)']);
  });

  it('refuses an unknown sign-in mode and a header name that is not one', () => {
    expect(problems({ CONSOLE_PORT: '8080', CONSOLE_SIGN_IN: 'saml' }).join('\n')).to.include('CONSOLE_SIGN_IN must be development, proxy or oidc (got "saml")');
    expect(problems({ CONSOLE_PORT: '8080', JWT_JWKS_FILE: jwks, CONSOLE_AUTH_HEADER: 'bad header' }).join('\n')).to.include('CONSOLE_AUTH_HEADER must be a header name');
  });

  it('a console of another API (CONSOLE_API_ADDRESS) uses proxy sign-in by default', () => {
    const c = loadConfig({ CONSOLE_PORT: '8080', CONSOLE_API_ADDRESS: 'ledger.internal:50051' }, dir).console!;
    expect(c.signIn).to.equal('proxy');
    expect(c.apiAddress).to.equal('ledger.internal:50051');
  });

  describe('CONSOLE_SIGN_IN=oidc', () => {
    const oidc = {
      CONSOLE_PORT: '8080',
      CONSOLE_BIND_ADDRESS: '0.0.0.0',
      CONSOLE_SIGN_IN: 'oidc',
      JWT_JWKS_FILE: jwks,
      CONSOLE_OIDC_ISSUER: 'https://sso.example.org/realms/staff',
      CONSOLE_OIDC_CLIENT_ID: 'consent-console',
      CONSOLE_OIDC_CLIENT_SECRET: 'not-a-real-secret',
      CONSOLE_OIDC_REDIRECT_URL: 'https://console.example.org',
    };
    // The API itself must serve TLS to take tokens off loopback; the console tests only its own settings.
    const loopbackApi = { BIND_ADDRESS: '127.0.0.1' };

    it('reads the provider, the client and the public address, with the access token forwarded by default', () => {
      const c = loadConfig({ ...loopbackApi, ...oidc, CONSOLE_OIDC_SCOPES: 'openid profile, api' }, dir).console!;
      expect(c.signIn).to.equal('oidc');
      expect(c.oidc).to.deep.equal({
        issuer: 'https://sso.example.org/realms/staff',
        clientId: 'consent-console',
        clientSecret: 'not-a-real-secret',
        publicUrl: 'https://console.example.org',
        scopes: ['openid', 'profile', 'api'],
        forwardToken: 'access_token',
      });
      expect(loadConfig({ ...loopbackApi, ...oidc, CONSOLE_OIDC_REDIRECT_URL: 'https://console.example.org/oidc/callback' }, dir).console!.oidc!.publicUrl).to.equal('https://console.example.org');
    });

    it('needs the issuer, the client id and the public address, and an API that verifies the tokens', () => {
      expect(problems({ CONSOLE_PORT: '8080', CONSOLE_SIGN_IN: 'oidc' })).to.deep.equal([
        'CONSOLE_SIGN_IN=oidc forwards bearer tokens: the API must verify them (set JWT_JWKS_FILE)',
        "CONSOLE_SIGN_IN=oidc needs CONSOLE_OIDC_ISSUER (the issuer URL of the organisation's OpenID Connect provider, e.g. https://sso.example.org/realms/staff)",
        "CONSOLE_SIGN_IN=oidc needs CONSOLE_OIDC_REDIRECT_URL (the console's public address, e.g. https://console.example.org; the provider redirects back to <it>/oidc/callback)",
        'CONSOLE_SIGN_IN=oidc needs CONSOLE_OIDC_CLIENT_ID (the client registered at the provider)',
      ]);
    });

    it('refuses plain http off loopback, a path prefix, both secrets, scopes without openid and an unknown token kind', () => {
      const all = (env: Record<string, string>) => problems({ ...loopbackApi, ...oidc, ...env }).join('\n');
      expect(all({ CONSOLE_OIDC_ISSUER: 'http://sso.example.org' })).to.include('CONSOLE_OIDC_ISSUER must use https');
      expect(all({ CONSOLE_OIDC_REDIRECT_URL: 'http://console.example.org' })).to.include('CONSOLE_OIDC_REDIRECT_URL must use https');
      // On loopback, with the console bound there too, plain http is allowed (development, tests).
      expect(loadConfig({ ...loopbackApi, ...oidc, CONSOLE_BIND_ADDRESS: '127.0.0.1', CONSOLE_OIDC_ISSUER: 'http://localhost:9000', CONSOLE_OIDC_REDIRECT_URL: 'http://127.0.0.1:8080' }, dir).console!.oidc!.publicUrl).to.equal('http://127.0.0.1:8080');
      expect(all({ CONSOLE_OIDC_REDIRECT_URL: 'http://127.0.0.1:8080' }), 'console not on loopback').to.include('CONSOLE_OIDC_REDIRECT_URL must use https');
      expect(all({ CONSOLE_OIDC_REDIRECT_URL: 'https://example.org/console' })).to.include('the console serves no path prefix');
      expect(all({ CONSOLE_OIDC_REDIRECT_URL: 'https://console.example.org/?next=x' })).to.include('CONSOLE_OIDC_REDIRECT_URL must be an http(s) URL without query or fragment');
      expect(all({ CONSOLE_OIDC_CLIENT_SECRET_FILE: jwks })).to.include('set CONSOLE_OIDC_CLIENT_SECRET or CONSOLE_OIDC_CLIENT_SECRET_FILE, not both');
      expect(all({ CONSOLE_OIDC_SCOPES: 'profile' })).to.include('CONSOLE_OIDC_SCOPES must include openid');
      expect(all({ CONSOLE_OIDC_TOKEN: 'refresh_token' })).to.include('CONSOLE_OIDC_TOKEN must be access_token or id_token');
      expect(all({ CONSOLE_OIDC_TOKEN: 'id_token', JWT_AUDIENCE: 'consent-ledger' })).to.include('CONSOLE_OIDC_TOKEN=id_token forwards ID tokens, whose audience is the client id "consent-console", but the API expects JWT_AUDIENCE=consent-ledger');
    });

    it('reads the session keys (32 bytes, base64 or hex, one a line) and refuses a file that holds none', () => {
      const good = path.join(dir, 'session.key');
      writeFileSync(good, `${Buffer.alloc(32, 1).toString('base64')}\n# the previous key\n${Buffer.alloc(32, 2).toString('hex')}\n`);
      expect(loadConfig({ ...loopbackApi, ...oidc, CONSOLE_SESSION_KEY_FILE: good }, dir).console!.oidc!.sessionKeyFile).to.equal(good);
      const short = path.join(dir, 'short.key');
      writeFileSync(short, 'c2hvcnQ=\n');
      expect(problems({ ...loopbackApi, ...oidc, CONSOLE_SESSION_KEY_FILE: short }).join('\n')).to.include('key 1 is not 32 bytes in base64 or hex (got 5 bytes)');
      const empty = path.join(dir, 'empty.key');
      writeFileSync(empty, '\n');
      expect(problems({ ...loopbackApi, ...oidc, CONSOLE_SESSION_KEY_FILE: empty }).join('\n')).to.include('holds no key');
    });

    it('the OIDC settings are refused in the other modes (a likely mistake)', () => {
      expect(problems({ CONSOLE_PORT: '8080', JWT_JWKS_FILE: jwks, CONSOLE_OIDC_CLIENT_ID: 'x', CONSOLE_SESSION_KEY_FILE: jwks })).to.deep.equal([
        'CONSOLE_OIDC_CLIENT_ID, CONSOLE_SESSION_KEY_FILE are only read with CONSOLE_SIGN_IN=oidc',
      ]);
    });
  });
});
