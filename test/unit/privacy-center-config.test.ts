import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../src/config/config';

function problems(env: Record<string, string>, cwd = os.tmpdir()): string[] {
  try {
    loadConfig(env, cwd);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  expect.fail('expected a ConfigError');
}

/** The PRIVACY_CENTER_* settings (docs/privacy-center.md): off by default; never public without its own credential and https. */
describe('privacy center configuration', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pc-config-'));
  const jwks = path.join(dir, 'jwks.json');
  const token = path.join(dir, 'pc.jwt');
  writeFileSync(jwks, '{"keys":[]}');
  writeFileSync(token, 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwYyJ9.c2ln\n');

  it('is off without PRIVACY_CENTER_PORT; its other settings alone are refused, except the public address the API reads too', () => {
    expect(loadConfig({}, dir).privacyCenter).to.equal(undefined);
    expect(problems({ PRIVACY_CENTER_TRUST_PROXY: 'loopback' })).to.deep.equal(['PRIVACY_CENTER_TRUST_PROXY is only read with PRIVACY_CENTER_PORT (the privacy center is off)']);
    const c = loadConfig({ PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example.com/' }, dir);
    expect(c.privacyCenter).to.equal(undefined);
    expect(c.privacyCenterPublicUrl).to.equal('https://privacy.example.com');
  });

  it('development mode: on loopback in front of a development-mode API, without a credential', () => {
    expect(loadConfig({ PRIVACY_CENTER_PORT: '8081' }, dir).privacyCenter).to.deep.equal({
      port: 8081,
      bindAddress: '127.0.0.1',
      apiAddress: undefined,
      apiCaFile: undefined,
      apiServerName: undefined,
      apiTokenFile: undefined,
      publicUrl: '',
      trustProxy: [],
      postsPerMinute: 20,
    });
  });

  it('production: its own token file, https public address, trusted proxies and the POST limit', () => {
    const c = loadConfig(
      {
        JWT_JWKS_FILE: jwks,
        PRIVACY_CENTER_PORT: '8081',
        PRIVACY_CENTER_BIND_ADDRESS: '0.0.0.0',
        PRIVACY_CENTER_API_TOKEN_FILE: token,
        PRIVACY_CENTER_PUBLIC_URL: 'https://privacy.example.com',
        PRIVACY_CENTER_TRUST_PROXY: '10.0.0.0/8, loopback',
        PRIVACY_CENTER_POSTS_PER_MINUTE: '5',
      },
      dir,
    ).privacyCenter!;
    expect(c).to.deep.include({ bindAddress: '0.0.0.0', apiTokenFile: token, publicUrl: 'https://privacy.example.com', trustProxy: ['10.0.0.0/8', 'loopback'], postsPerMinute: 5 });
  });

  it('refuses to run without a credential in front of an API that wants one, or off loopback', () => {
    expect(problems({ PRIVACY_CENTER_PORT: '8081', JWT_JWKS_FILE: jwks }, dir).join('\n')).to.include('set PRIVACY_CENTER_API_TOKEN_FILE');
    expect(problems({ PRIVACY_CENTER_PORT: '8081', PRIVACY_CENTER_BIND_ADDRESS: '0.0.0.0', PRIVACY_CENTER_PUBLIC_URL: 'https://p.example' }, dir).join('\n')).to.include('serves on loopback only');
  });

  it('refuses a token the API would not verify, a public address that is not https off loopback, a missing token file, bad proxies and limits', () => {
    expect(problems({ PRIVACY_CENTER_PORT: '8081', PRIVACY_CENTER_API_TOKEN_FILE: token }, dir)).to.deep.equal(['PRIVACY_CENTER_API_TOKEN_FILE holds a bearer token: the API must verify it (set JWT_JWKS_FILE)']);
    expect(problems({ JWT_JWKS_FILE: jwks, PRIVACY_CENTER_PORT: '8081', PRIVACY_CENTER_API_TOKEN_FILE: token, PRIVACY_CENTER_BIND_ADDRESS: '0.0.0.0', PRIVACY_CENTER_PUBLIC_URL: 'http://p.example' }, dir).join('\n')).to.include('needs PRIVACY_CENTER_PUBLIC_URL, its public https address');
    expect(problems({ JWT_JWKS_FILE: jwks, PRIVACY_CENTER_PORT: '8081', PRIVACY_CENTER_API_TOKEN_FILE: 'missing.jwt' }, dir).join('\n')).to.include('PRIVACY_CENTER_API_TOKEN_FILE').and.include('does not exist');
    expect(problems({ PRIVACY_CENTER_PORT: '8081', PRIVACY_CENTER_TRUST_PROXY: 'everyone' }, dir).join('\n')).to.include('PRIVACY_CENTER_TRUST_PROXY: "everyone" is not an IP address');
    expect(problems({ PRIVACY_CENTER_PORT: '8081', PRIVACY_CENTER_POSTS_PER_MINUTE: '0' }, dir).join('\n')).to.include('PRIVACY_CENTER_POSTS_PER_MINUTE must be an integer from 1');
    expect(problems({ PRIVACY_CENTER_PUBLIC_URL: 'privacy.example.com' }, dir).join('\n')).to.include('PRIVACY_CENTER_PUBLIC_URL must be an http(s) URL');
  });

  it('a privacy center of another API (PRIVACY_CENTER_API_ADDRESS) needs its token only if that API wants one', () => {
    expect(loadConfig({ PRIVACY_CENTER_PORT: '8081', PRIVACY_CENTER_API_ADDRESS: 'ledger.internal:50051', PRIVACY_CENTER_API_TOKEN_FILE: token }, dir).privacyCenter!.apiAddress).to.equal('ledger.internal:50051');
  });
});
