import { expect } from 'chai';
import { createCipheriv, randomBytes } from 'node:crypto';
import jose from 'node-jose';
import { decryptField, encryptField, FieldContext, FieldDecryptionError } from '../../src/crypto/field-cipher';

const KEY = randomBytes(32);
const KID = 'tenant-key-1';
const CONTEXT: FieldContext = { tenant: 'acme', subject: 'sub-123', table: 'consent_events', column: 'evidence', row: 'evt-42' };
const PLAINTEXT = 'secret-plaintext +49 30 1234567 ÄÖÜ ✓';

const b64 = (value: Buffer | string): string => Buffer.from(value).toString('base64url');
const unb64 = (value: string): Buffer => Buffer.from(value, 'base64url');
const headerOf = (jwe: string): Record<string, unknown> => JSON.parse(unb64(jwe.split('.')[0]).toString('utf8'));

/** A correctly encrypted compact JWE with any header and IV length: proves the checks, not the tag, refuse it. */
function encryptWith(header: Record<string, unknown>, plaintext: string, ivBytes = 12, key = KEY): string {
  const encodedHeader = b64(JSON.stringify(header));
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(encodedHeader, 'ascii'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return `${encodedHeader}..${b64(iv)}.${b64(ciphertext)}.${b64(cipher.getAuthTag())}`;
}

/** Flips one bit of the decoded bytes of part `index`, re-encodes it. */
function flipBit(jwe: string, index: number, byte = 0, bit = 0): string {
  const parts = jwe.split('.');
  const bytes = unb64(parts[index]);
  bytes[byte] ^= 1 << bit;
  parts[index] = b64(bytes);
  return parts.join('.');
}

/** Runs fn, expects a FieldDecryptionError, checks it carries no plaintext or key, returns it. */
function decryptionError(fn: () => unknown): FieldDecryptionError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(FieldDecryptionError);
    const e = err as FieldDecryptionError;
    expect(e.name).to.equal('FieldDecryptionError');
    expect(e.message).to.match(/^field decryption failed: /);
    expect(e.message).not.to.contain(PLAINTEXT);
    expect(e.message).not.to.contain('secret');
    expect(e.message).not.to.contain(KEY.toString('base64url'));
    expect(e.message).not.to.contain(KEY.toString('hex'));
    expect(String(e.stack)).not.to.contain(PLAINTEXT);
    return e;
  }
  expect.fail('expected a FieldDecryptionError');
}

describe('field-cipher (encryptField / decryptField)', () => {
  describe('round trip', () => {
    it('decrypts what it encrypted', () => {
      const jwe = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
      expect(decryptField(KEY, CONTEXT, jwe)).to.equal(PLAINTEXT);
    });

    it('round-trips the empty string and a long value', () => {
      expect(decryptField(KEY, CONTEXT, encryptField(KEY, KID, CONTEXT, ''))).to.equal('');
      const long = 'x'.repeat(100_000) + '€';
      expect(decryptField(KEY, CONTEXT, encryptField(KEY, KID, CONTEXT, long))).to.equal(long);
    });

    it('binds only the five context fields, so extra properties on the context object are ignored', () => {
      const withExtra = { ...CONTEXT, extra: 'x' } as FieldContext;
      const jwe = encryptField(KEY, KID, withExtra, PLAINTEXT);
      expect(headerOf(jwe)).not.to.have.property('extra');
      expect(decryptField(KEY, CONTEXT, jwe)).to.equal(PLAINTEXT);
    });
  });

  describe('format', () => {
    const jwe = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
    const parts = jwe.split('.');

    it('is a compact JWE of 5 base64url parts with an empty encrypted-key part', () => {
      expect(parts).to.have.length(5);
      expect(parts[1]).to.equal('');
      for (const i of [0, 2, 3, 4]) expect(parts[i]).to.match(/^[A-Za-z0-9_-]+$/);
    });

    it('has a protected header with alg dir, enc A256GCM, the kid and the context', () => {
      expect(headerOf(jwe)).to.deep.equal({ alg: 'dir', enc: 'A256GCM', kid: KID, ...CONTEXT });
    });

    it('uses a 96-bit IV and a 128-bit tag', () => {
      expect(unb64(parts[2])).to.have.length(12);
      expect(unb64(parts[4])).to.have.length(16);
    });

    it('does not contain the plaintext', () => {
      expect(jwe).not.to.contain(b64(PLAINTEXT).slice(0, 12));
      expect(Buffer.from(jwe).toString('utf8')).not.to.contain('secret');
    });

    it('two encryptions of the same value differ (fresh IV)', () => {
      const a = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
      const b = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
      expect(a).not.to.equal(b);
      expect(a.split('.')[2]).not.to.equal(b.split('.')[2]);
      expect(a.split('.')[3]).not.to.equal(b.split('.')[3]);
      expect(decryptField(KEY, CONTEXT, a)).to.equal(decryptField(KEY, CONTEXT, b));
    });

    it('IVs do not repeat over many encryptions', () => {
      const ivs = new Set<string>();
      for (let i = 0; i < 2000; i++) ivs.add(encryptField(KEY, KID, CONTEXT, 'v').split('.')[2]);
      expect(ivs.size).to.equal(2000);
    });
  });

  describe('context binding', () => {
    const jwe = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
    for (const name of ['tenant', 'subject', 'table', 'column', 'row'] as const) {
      it(`fails when the ${name} differs`, () => {
        const other = { ...CONTEXT, [name]: `${CONTEXT[name]}-other` };
        const err = decryptionError(() => decryptField(KEY, other, jwe));
        expect(err.message).to.contain(`another ${name}`);
      });
    }

    it('fails when the header is rewritten to the new context (the tag covers the header)', () => {
      const other = { ...CONTEXT, row: 'evt-43' };
      const parts = jwe.split('.');
      parts[0] = b64(JSON.stringify({ ...headerOf(jwe), row: 'evt-43' }));
      const err = decryptionError(() => decryptField(KEY, other, parts.join('.')));
      expect(err.message).to.contain('authentication failed');
    });

    it('fails when a context value differs only in type', () => {
      const jweNumericRow = encryptWith({ alg: 'dir', enc: 'A256GCM', kid: KID, ...CONTEXT, row: 42 }, PLAINTEXT);
      decryptionError(() => decryptField(KEY, { ...CONTEXT, row: '42' }, jweNumericRow));
    });
  });

  describe('tampering', () => {
    const jwe = encryptField(KEY, KID, CONTEXT, PLAINTEXT);

    it('the untampered helper output decrypts (control)', () => {
      expect(decryptField(KEY, CONTEXT, flipBit(flipBit(jwe, 3), 3))).to.equal(PLAINTEXT);
      expect(decryptField(KEY, CONTEXT, encryptWith(headerOf(jwe), PLAINTEXT))).to.equal(PLAINTEXT);
    });

    for (const [part, index] of [
      ['ciphertext', 3],
      ['tag', 4],
      ['IV', 2],
    ] as const) {
      it(`a flipped bit in the ${part} fails`, () => {
        for (const byte of [0, 5, 11]) {
          for (const bit of [0, 7]) {
            decryptionError(() => decryptField(KEY, CONTEXT, flipBit(jwe, index, byte, bit)));
          }
        }
      });
    }

    it('a flipped bit in the header fails', () => {
      // Flip bits of the header JSON, keep what still parses and still names the right context:
      // only the authentication tag can catch these.
      const header = unb64(jwe.split('.')[0]);
      let tried = 0;
      for (let byte = 0; byte < header.length; byte++) {
        for (const bit of [0, 5]) {
          const tampered = flipBit(jwe, 0, byte, bit);
          decryptionError(() => decryptField(KEY, CONTEXT, tampered));
          tried++;
        }
      }
      expect(tried).to.be.greaterThan(100);
    });

    it('an extra header field (re-encoded header) fails authentication', () => {
      const parts = jwe.split('.');
      parts[0] = b64(JSON.stringify({ ...headerOf(jwe), note: 'x' }));
      expect(decryptionError(() => decryptField(KEY, CONTEXT, parts.join('.'))).message).to.contain('authentication failed');
    });

    it('a re-serialised but identical header fails authentication (AAD is the encoded header)', () => {
      const parts = jwe.split('.');
      parts[0] = b64(JSON.stringify(headerOf(jwe), null, 1));
      decryptionError(() => decryptField(KEY, CONTEXT, parts.join('.')));
    });

    it('a truncated tag is refused', () => {
      const parts = jwe.split('.');
      parts[4] = b64(unb64(parts[4]).subarray(0, 12));
      expect(decryptionError(() => decryptField(KEY, CONTEXT, parts.join('.'))).message).to.contain('tag must be 128 bits');
    });

    it('a truncated ciphertext fails', () => {
      const parts = jwe.split('.');
      parts[3] = b64(unb64(parts[3]).subarray(0, 3));
      decryptionError(() => decryptField(KEY, CONTEXT, parts.join('.')));
    });

    it('a 16-byte IV is refused even when the value is otherwise correctly encrypted', () => {
      const sixteen = encryptWith(headerOf(jwe), PLAINTEXT, 16);
      expect(unb64(sixteen.split('.')[2])).to.have.length(16);
      expect(decryptionError(() => decryptField(KEY, CONTEXT, sixteen)).message).to.contain('nonce must be 96 bits');
    });

    it('an IV re-encoded to 16 bytes (zero-padded) is refused', () => {
      const parts = jwe.split('.');
      parts[2] = b64(Buffer.concat([unb64(parts[2]), Buffer.alloc(4)]));
      expect(decryptionError(() => decryptField(KEY, CONTEXT, parts.join('.'))).message).to.contain('nonce must be 96 bits');
    });

    it('a wrong key fails', () => {
      decryptionError(() => decryptField(randomBytes(32), CONTEXT, jwe));
    });

    it('a key of the wrong length fails with FieldDecryptionError, not a RangeError', () => {
      decryptionError(() => decryptField(randomBytes(16), CONTEXT, jwe));
    });

    it('structurally broken input fails', () => {
      for (const bad of ['', 'abc', 'a.b.c.d', `${jwe}.x`, jwe.replace('..', '.AAAA.'), '!!!!..AAAA.AAAA.AAAA', 'e30..AAAA.AAAA.AAAA']) {
        decryptionError(() => decryptField(KEY, CONTEXT, bad));
      }
    });
  });

  describe('algorithm pinning', () => {
    const base = { alg: 'dir', enc: 'A256GCM', kid: KID, ...CONTEXT };

    it('accepts a correctly made value with the pinned algorithms (control)', () => {
      expect(decryptField(KEY, CONTEXT, encryptWith(base, PLAINTEXT))).to.equal(PLAINTEXT);
    });

    for (const header of [
      { ...base, alg: 'A256KW' },
      { ...base, alg: 'none' },
      { ...base, enc: 'A128GCM' },
      { ...base, enc: 'A256CBC-HS512' },
      { ...base, alg: undefined },
      { ...base, enc: undefined },
    ]) {
      it(`refuses alg=${String(header.alg)} enc=${String(header.enc)}`, () => {
        const err = decryptionError(() => decryptField(KEY, CONTEXT, encryptWith(header, PLAINTEXT)));
        expect(err.message).to.contain('unsupported algorithm');
      });
    }

    it('refuses a header with zip', () => {
      const err = decryptionError(() => decryptField(KEY, CONTEXT, encryptWith({ ...base, zip: 'DEF' }, PLAINTEXT)));
      expect(err.message).to.contain('unsupported algorithm');
    });

    it('refuses a header with crit', () => {
      const err = decryptionError(() => decryptField(KEY, CONTEXT, encryptWith({ ...base, crit: ['exp'], exp: 1 }, PLAINTEXT)));
      expect(err.message).to.contain('unsupported algorithm');
    });
  });

  describe('interoperability with node-jose', () => {
    it('node-jose decrypts our JWE with the same key', async () => {
      const jwe = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
      const key = await jose.JWK.asKey({ kty: 'oct', k: KEY.toString('base64url'), alg: 'A256GCM' });
      const result = await jose.JWE.createDecrypt(key).decrypt(jwe);
      expect(result.plaintext.toString('utf8')).to.equal(PLAINTEXT);
      expect(result.header).to.deep.include({ alg: 'dir', enc: 'A256GCM', kid: KID, ...CONTEXT });
    });

    it('node-jose decrypts with a key store looked up by kid, with the algorithms pinned', async () => {
      const jwe = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
      const store = jose.JWK.createKeyStore();
      await store.add({ kty: 'oct', kid: KID, k: KEY.toString('base64url') });
      const result = await jose.JWE.createDecrypt(store, { algorithms: ['dir', 'A256GCM'] }).decrypt(jwe);
      expect(result.plaintext.toString('utf8')).to.equal(PLAINTEXT);
    });

    it('node-jose fails with another key', async () => {
      const jwe = encryptField(KEY, KID, CONTEXT, PLAINTEXT);
      const key = await jose.JWK.asKey({ kty: 'oct', k: randomBytes(32).toString('base64url'), alg: 'A256GCM' });
      let failed = false;
      await jose.JWE.createDecrypt(key)
        .decrypt(jwe)
        .catch(() => (failed = true));
      expect(failed).to.equal(true);
    });

    it('we decrypt a JWE made by node-jose (alg dir, A256GCM, same header)', async () => {
      const key = await jose.JWK.asKey({ kty: 'oct', kid: KID, k: KEY.toString('base64url') });
      const jwe = (await jose.JWE.createEncrypt(
        { format: 'compact', contentAlg: 'A256GCM', fields: { alg: 'dir', kid: KID, ...CONTEXT } },
        key,
      )
        .update(Buffer.from(PLAINTEXT, 'utf8'))
        .final()) as unknown as string;
      expect(decryptField(KEY, CONTEXT, jwe)).to.equal(PLAINTEXT);
    });
  });
});
