import { expect } from 'chai';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import jose from 'node-jose';
import { aesKeyWrapKey, unwrapKey, wrapKey } from '../../src/crypto/jose';
import { eachVector, hex, KeywrapTest, loadWycheproof } from './vector-helpers';

/**
 * wrapKey is made with node:crypto (AES key wrap, AES-256-GCM) instead of node-jose's encrypt:
 * its output must be exactly the JWE node-jose wrote (keys wrapped before stay readable, and
 * node-jose, another implementation, reads the new ones), and the key wrap primitive it now uses
 * must give the published results.
 */
describe('key wrapping (crypto/jose.ts wrapKey)', () => {
  const bind = { tenant: 'acme', subject: '0123456789abcdef0123456789abcdef', epoch: 3 };

  it('writes the protected header node-jose writes (same fields, same order) and node-jose decrypts it with the algorithms pinned', async () => {
    const key = await aesKeyWrapKey(randomBytes(32), 'tenants/acme/keys/3');
    const material = randomBytes(32);
    const ours = await wrapKey(key, material, bind);
    const theirs = (await jose.JWE.createEncrypt({ format: 'compact', contentAlg: 'A256GCM', fields: { alg: 'A256KW', kid: key.kid, ...bind } }, key).update(material).final()) as unknown as string;
    const parts = ours.split('.');
    expect(parts).to.have.length(5);
    expect(parts[0], 'the same protected header, byte for byte').to.equal(theirs.split('.')[0]);
    expect(parts.map((p) => Buffer.from(p, 'base64url').length)).to.deep.equal(theirs.split('.').map((p) => Buffer.from(p, 'base64url').length));
    const decrypted = await jose.JWE.createDecrypt(key, { algorithms: ['A256KW', 'A256GCM'] }).decrypt(ours);
    expect(decrypted.plaintext.equals(material)).to.equal(true);
    // And what node-jose wrote before still unwraps, bound as it was.
    expect((await unwrapKey(key, theirs, bind)).equals(material)).to.equal(true);
    expect((await unwrapKey(key, ours, bind)).equals(material)).to.equal(true);
  });

  it('every wrap draws a new content key and IV', async () => {
    const key = await aesKeyWrapKey(randomBytes(32), 'k');
    const material = randomBytes(32);
    const a = (await wrapKey(key, material, bind)).split('.');
    const b = (await wrapKey(key, material, bind)).split('.');
    expect(a[1]).to.not.equal(b[1]);
    expect(a[2]).to.not.equal(b[2]);
    expect(a[3]).to.not.equal(b[3]);
  });

  it('refuses a wrapping key that is not 256-bit symmetric', async () => {
    const short = await jose.JWK.asKey({ kty: 'oct', kid: 'short', alg: 'A128KW', use: 'enc', k: randomBytes(16).toString('base64url') });
    const err = await wrapKey(short, randomBytes(32), bind).then(() => null, (e: Error) => e);
    expect(err).to.be.instanceOf(Error);
    expect(err!.message).to.match(/256-bit/);
  });

  it('Wycheproof aes_wrap_test.json valid, 256-bit keys: node:crypto id-aes256-wrap (the primitive wrapKey uses) gives the exact wrapped key and unwraps it (13 vectors)', () => {
    const valid = [...eachVector(loadWycheproof<KeywrapTest>('aes_wrap_test.json'))].filter(({ group, test }) => group.keySize === 256 && test.result === 'valid').map(({ test }) => test);
    expect(valid).to.have.length(13);
    const failures: string[] = [];
    for (const v of valid) {
      const iv = Buffer.alloc(8, 0xa6);
      const wrap = createCipheriv('id-aes256-wrap', hex(v.key), iv);
      const wrapped = Buffer.concat([wrap.update(hex(v.msg)), wrap.final()]);
      if (!wrapped.equals(hex(v.ct))) failures.push(`tcId ${v.tcId}: wrapped key differs`);
      const unwrap = createDecipheriv('id-aes256-wrap', hex(v.key), iv);
      if (!Buffer.concat([unwrap.update(hex(v.ct)), unwrap.final()]).equals(hex(v.msg))) failures.push(`tcId ${v.tcId}: unwrapped key differs`);
    }
    expect(failures).to.deep.equal([]);
  });
});
