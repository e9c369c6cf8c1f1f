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
    expect(problems({ CONSOLE_PORT: '8080', CONSOLE_SIGN_IN: 'oidc' }).join('\n')).to.include('CONSOLE_SIGN_IN must be development or proxy (got "oidc")');
    expect(problems({ CONSOLE_PORT: '8080', JWT_JWKS_FILE: jwks, CONSOLE_AUTH_HEADER: 'bad header' }).join('\n')).to.include('CONSOLE_AUTH_HEADER must be a header name');
  });

  it('a console of another API (CONSOLE_API_ADDRESS) uses proxy sign-in by default', () => {
    const c = loadConfig({ CONSOLE_PORT: '8080', CONSOLE_API_ADDRESS: 'ledger.internal:50051' }, dir).console!;
    expect(c.signIn).to.equal('proxy');
    expect(c.apiAddress).to.equal('ledger.internal:50051');
  });
});
