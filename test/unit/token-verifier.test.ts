import { expect } from 'chai';
import jose from 'node-jose';
import { TokenVerifier } from '../../src/transport/auth/token-verifier';
import { DomainError } from '../../src/shared/errors';

/**
 * TokenVerifier with tokens whose header or claims are valid JSON but not objects (found by an
 * adversarial probe: `null` there was a TypeError, INTERNAL, instead of UNAUTHENTICATED).
 */
describe('TokenVerifier: JSON that is not an object', () => {
  let verifier: TokenVerifier;
  let key: jose.JWK.Key;
  const now = Date.UTC(2026, 11, 7);
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

  before(async () => {
    const store = jose.JWK.createKeyStore();
    key = await store.generate('EC', 'P-256', { alg: 'ES256', use: 'sig', kid: 'k1' });
    verifier = await TokenVerifier.create({ jwks: JSON.stringify(store.toJSON(false)), algorithms: ['ES256'], clockSkewMs: 60_000 });
  });

  const refusal = async (token: string) => {
    try {
      await verifier.verify(token, now);
    } catch (err) {
      expect(err).to.be.instanceOf(DomainError);
      const e = err as DomainError;
      return `${e.kind} ${e.reason}`;
    }
    return 'accepted';
  };
  const signed = async (payload: string) =>
    (await jose.JWS.createSign({ format: 'compact', fields: { alg: 'ES256', kid: 'k1', typ: 'JWT' } }, key).update(payload, 'utf8').final()) as unknown as string;

  it('a header of null, a number, a string or a list is TOKEN_MALFORMED', async () => {
    for (const header of ['null', '5', '"ES256"', '[]', '[{"alg":"ES256"}]']) {
      expect(await refusal(`${b64(header)}.${b64('{}')}.AAAA`), header).to.equal('UNAUTHENTICATED TOKEN_MALFORMED');
    }
  });

  it('signed claims of null, a number or a list are TOKEN_CLAIMS_INVALID; an object is checked as claims', async () => {
    for (const payload of ['null', '7', '[]', '"x"']) expect(await refusal(await signed(payload)), payload).to.equal('UNAUTHENTICATED TOKEN_CLAIMS_INVALID');
    const exp = Math.floor(now / 1000) + 600;
    const ok = await verifier.verify(await signed(JSON.stringify({ sub: 'svc', roles: ['sender'], tenants: ['acme'], exp })), now);
    expect(ok.id).to.equal('svc');
  });

  it('a signature with bytes appended, or spelt otherwise in base64url, is TOKEN_SIGNATURE_INVALID', async () => {
    const exp = Math.floor(now / 1000) + 600;
    const token = await signed(JSON.stringify({ sub: 'svc', roles: ['sender'], tenants: ['acme'], exp }));
    expect((await verifier.verify(token, now)).id).to.equal('svc');
    const [h, p, sig] = token.split('.');
    const bytes = Buffer.from(sig, 'base64url');
    for (const bad of [`${token}AA`, `${token}A`, `${h}.${p}.${Buffer.concat([bytes, Buffer.alloc(16)]).toString('base64url')}`, `${h}.${p}.${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}`]) {
      expect(await refusal(bad), bad.slice(-12)).to.equal('UNAUTHENTICATED TOKEN_SIGNATURE_INVALID');
    }
  });
});
