import { createHmac, createPublicKey } from 'node:crypto';
import { expect } from 'chai';
import jose from 'node-jose';
import { createTokenIssuer, decodeToken, TEST_AUDIENCE, TEST_ISSUER, TokenIssuer, TOKEN_TTL_SECONDS } from '../support/tokens';

/** The test helper makes the tokens the auth tests think it makes. */
describe('test token issuer', () => {
  const NOW = Date.UTC(2026, 2, 1, 12, 0, 0); // test-server's T0
  const claims = { sub: 'svc-sender', tenants: ['t-1', 't-2'], roles: ['sender'] };
  let issuer: TokenIssuer;
  let keystore: jose.JWK.KeyStore;

  before(async () => {
    issuer = await createTokenIssuer({ now: () => NOW });
    keystore = await jose.JWK.asKeyStore(issuer.jwks);
  });

  /** Verifies against the published JWKS with ES256 only, as the service is meant to. */
  async function verifies(token: string): Promise<boolean> {
    try {
      await jose.JWS.createVerify(keystore, { algorithms: ['ES256'] }).verify(token);
      return true;
    } catch {
      return false;
    }
  }

  it('publishes one public ES256 key with its kid, and no private part', () => {
    const set = JSON.parse(issuer.jwks) as { keys: Record<string, unknown>[] };
    expect(set.keys).to.have.length(1);
    expect(set.keys[0]).to.include({ kty: 'EC', crv: 'P-256', kid: issuer.kid, alg: 'ES256', use: 'sig' });
    expect(set.keys[0]).not.to.have.property('d');
  });

  it('signs a valid ES256 JWT with the claims, issuer, audience and a 5-minute lifetime', async () => {
    const token = await issuer.sign(claims);
    const { header, payload, signature } = decodeToken(token);
    expect(header).to.deep.equal({ alg: 'ES256', typ: 'JWT', kid: issuer.kid });
    expect(payload).to.deep.equal({
      ...claims,
      iss: TEST_ISSUER,
      aud: TEST_AUDIENCE,
      iat: NOW / 1000,
      exp: NOW / 1000 + TOKEN_TTL_SECONDS,
    });
    expect(signature).to.have.length(64); // JWS ES256: raw r||s, not DER
    expect(await verifies(token)).to.equal(true);
  });

  it('lets given claims win, including tenants "*"', async () => {
    const { payload } = decodeToken(await issuer.sign({ ...claims, tenants: '*', aud: 'other', exp: 42 }));
    expect(payload).to.include({ tenants: '*', aud: 'other', exp: 42, iss: TEST_ISSUER });
  });

  it('expired: correctly signed, but exp lies in the past', async () => {
    const token = await issuer.sign(claims, { expired: true });
    const { payload } = decodeToken(token);
    expect(payload.exp).to.be.a('number').below(NOW / 1000);
    expect(payload.iat).to.be.a('number').below(payload.exp as number);
    expect(await verifies(token)).to.equal(true);
  });

  it('rs256-foreign-key: RS256 under the published kid, not verifiable with the JWKS', async () => {
    const token = await issuer.sign(claims, { forgery: 'rs256-foreign-key' });
    const { header, payload, signature } = decodeToken(token);
    expect(header).to.deep.equal({ alg: 'RS256', typ: 'JWT', kid: issuer.kid });
    expect(payload).to.include({ sub: claims.sub });
    expect(signature).to.have.length(256); // RSA-2048
    expect(await verifies(token)).to.equal(false);
  });

  it('hs256-public-key: HMAC-SHA256 keyed with the public key PEM (algorithm confusion)', async () => {
    const token = await issuer.sign(claims, { forgery: 'hs256-public-key' });
    const { header, signature } = decodeToken(token);
    expect(header).to.deep.equal({ alg: 'HS256', typ: 'JWT', kid: issuer.kid });
    // A confused verifier that uses the public key's PEM as the HMAC secret would accept it.
    const publicPem = createPublicKey((await keystore.get(issuer.kid)).toPEM(false)).export({ type: 'spki', format: 'pem' });
    const signingInput = token.slice(0, token.lastIndexOf('.'));
    expect(signature.equals(createHmac('sha256', publicPem).update(signingInput).digest())).to.equal(true);
    expect(await verifies(token)).to.equal(false);
  });

  it('alg-none: an unsigned token ending in "."', async () => {
    const token = await issuer.sign(claims, { forgery: 'alg-none' });
    expect(token.split('.')).to.have.length(3);
    expect(token.endsWith('.')).to.equal(true);
    const { header, payload, signature } = decodeToken(token);
    expect(header).to.deep.equal({ alg: 'none', typ: 'JWT', kid: issuer.kid });
    expect(payload).to.include({ sub: claims.sub });
    expect(signature).to.have.length(0);
    expect(await verifies(token)).to.equal(false);
  });

  it('unknown-kid: ES256 by a key that is not in the JWKS', async () => {
    const token = await issuer.sign(claims, { forgery: 'unknown-kid' });
    const { header } = decodeToken(token);
    expect(header.alg).to.equal('ES256');
    expect(header.kid).to.be.a('string').and.not.equal(issuer.kid);
    expect(keystore.get(header.kid as string)).to.equal(null);
    expect(await verifies(token)).to.equal(false);
  });

  it('tampered-payload: the original header and signature over an upgraded payload', async () => {
    const token = await issuer.sign(claims, { forgery: 'tampered-payload' });
    const { header, payload, signature } = decodeToken(token);
    expect(header).to.deep.equal({ alg: 'ES256', typ: 'JWT', kid: issuer.kid });
    expect(payload).to.include({ sub: claims.sub, tenants: '*' });
    expect(payload.roles).to.deep.equal(['admin']);
    expect(signature).to.have.length(64);
    expect(await verifies(token)).to.equal(false);

    const custom = decodeToken(await issuer.sign(claims, { forgery: 'tampered-payload', tamper: { sub: 'someone-else' } }));
    expect(custom.payload).to.include({ sub: 'someone-else' });
    expect(custom.payload.roles).to.deep.equal(claims.roles);
  });

  it('gives each issuer its own key', async () => {
    const other = await createTokenIssuer({ now: () => NOW });
    expect(other.kid).not.to.equal(issuer.kid);
    expect(await verifies(await other.sign(claims))).to.equal(false);
  });
});
