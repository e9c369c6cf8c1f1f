import { expect } from 'chai';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import jose from 'node-jose';
import { decryptField, FieldDecryptionError } from '../../src/crypto/field-cipher';
import { aesKeyWrapKey, KEY_WRAP_ALGORITHMS, unwrapKey, wrapKey } from '../../src/crypto/jose';
import { GcmError, gcmOpen, gcmSeal, hkdfSha256, hmacKey, hmacSha256, hmacSha256Hex } from '../../src/crypto/primitives';
import {
  AeadTest,
  eachVector,
  hex,
  HkdfTest,
  KeywrapTest,
  loadCookbook,
  loadWycheproof,
  MacTest,
  rejected,
  Tally,
  thrown,
  unb64,
} from './vector-helpers';

/**
 * Our crypto code against the published vectors in test/vectors/ (sources, commits and
 * checksums in test/vectors/README.md). Each `it` runs one vector set, collects every
 * mismatch (so a failure lists all offending tcIds) and asserts exactly how many vectors of
 * each kind ran, so no test can pass on zero vectors.
 */

/** AES-KW's default initial value (RFC 3394 2.2.3.1). */
const KW_IV = Buffer.alloc(8, 0xa6);

describe('published test vectors', () => {
  describe('Wycheproof aes_gcm_test.json (AES-GCM: gcmSeal / gcmOpen)', () => {
    const file = loadWycheproof<AeadTest>('aes_gcm_test.json');
    const vectors = [...eachVector(file)].map(({ test }) => ({
      test,
      key: hex(test.key),
      iv: hex(test.iv),
      aad: hex(test.aad),
      msg: hex(test.msg),
      ct: hex(test.ct),
      tag: hex(test.tag),
    }));
    // Our policy: 96-bit IVs and 128-bit tags only. Every tag in this file is 128 bits.
    const policyShape = (v: (typeof vectors)[number]): boolean => v.iv.length === 12 && v.tag.length === 16;
    const validChecked = vectors.filter((v) => v.test.result === 'valid' && policyShape(v));
    const validRefused = vectors.filter((v) => v.test.result === 'valid' && !policyShape(v));
    const invalidChecked = vectors.filter((v) => v.test.result === 'invalid' && policyShape(v));
    const invalidRefused = vectors.filter((v) => v.test.result === 'invalid' && !policyShape(v));

    it('aes_gcm_test.json: all 316 vectors are classified (229 valid, 87 invalid, no "acceptable")', () => {
      expect(file.numberOfTests).to.equal(316);
      expect(vectors.filter((v) => v.test.result === 'acceptable').map((v) => v.test.tcId)).to.deep.equal([]);
      expect(validChecked.length + validRefused.length).to.equal(229);
      expect(invalidChecked.length + invalidRefused.length).to.equal(87);
      expect(vectors.every((v) => v.tag.length === 16)).to.equal(true);
    });

    it('aes_gcm_test.json valid, 96-bit IV: gcmSeal gives the exact ciphertext and tag, gcmOpen the plaintext (116 vectors, 128/192/256-bit keys)', () => {
      const failures: string[] = [];
      const tally = new Tally();
      for (const v of validChecked) {
        const label = `tcId ${v.test.tcId}`;
        try {
          const sealed = gcmSeal(v.key, v.iv, v.aad, v.msg);
          if (!sealed.ciphertext.equals(v.ct)) failures.push(`${label}: ciphertext differs`);
          if (!sealed.tag.equals(v.tag)) failures.push(`${label}: tag differs`);
          if (!gcmOpen(v.key, v.iv, v.aad, v.ct, v.tag).equals(v.msg)) failures.push(`${label}: plaintext differs`);
        } catch (err) {
          failures.push(`${label}: threw ${String(err)}`);
        }
        tally.add(`AES-${v.key.length * 8}`);
      }
      expect(failures).to.deep.equal([]);
      expect(validChecked.length).to.be.greaterThan(100);
      expect(tally.toObject()).to.deep.equal({ 'AES-128': 40, 'AES-192': 37, 'AES-256': 39 });
    });

    it('aes_gcm_test.json valid, IV not 96 bits: gcmSeal and gcmOpen refuse with GcmError by policy (113 vectors Wycheproof marks valid)', () => {
      const failures: string[] = [];
      const tally = new Tally();
      const ivBits = new Set<number>();
      for (const v of validRefused) {
        const label = `tcId ${v.test.tcId} (${v.iv.length * 8}-bit IV)`;
        const sealErr = thrown(() => gcmSeal(v.key, v.iv, v.aad, v.msg));
        const openErr = thrown(() => gcmOpen(v.key, v.iv, v.aad, v.ct, v.tag));
        if (!(sealErr instanceof GcmError) || !/IV must be 96 bits/.test(sealErr.message)) {
          failures.push(`${label}: gcmSeal did not refuse the IV (${String(sealErr)})`);
        }
        if (!(openErr instanceof GcmError) || !/IV must be 96 bits/.test(openErr.message)) {
          failures.push(`${label}: gcmOpen did not refuse the IV (${String(openErr)})`);
        }
        tally.add(`AES-${v.key.length * 8}`);
        ivBits.add(v.iv.length * 8);
      }
      expect(failures).to.deep.equal([]);
      expect(validRefused.length).to.equal(113);
      expect(tally.toObject()).to.deep.equal({ 'AES-128': 39, 'AES-192': 37, 'AES-256': 37 });
      // Both shorter and longer IVs, up to the 2056-bit (257-byte) ones.
      expect([...ivBits].sort((a, b) => a - b)).to.deep.equal([8, 16, 32, 48, 64, 80, 120, 128, 160, 256, 512, 1024, 2056]);
    });

    it('aes_gcm_test.json invalid, 96-bit IV (modified tags): gcmOpen throws GcmError, and only the tag is wrong (81 vectors)', () => {
      const failures: string[] = [];
      const tally = new Tally();
      for (const v of invalidChecked) {
        const label = `tcId ${v.test.tcId}`;
        const err = thrown(() => gcmOpen(v.key, v.iv, v.aad, v.ct, v.tag));
        if (!(err instanceof GcmError) || !/authentication failed/.test(err.message)) {
          failures.push(`${label}: gcmOpen did not fail authentication (${String(err)})`);
        }
        // The ciphertext is the genuine one: the refusal is down to the tag alone.
        const sealed = gcmSeal(v.key, v.iv, v.aad, v.msg);
        if (!sealed.ciphertext.equals(v.ct)) failures.push(`${label}: ciphertext is not the genuine one`);
        if (sealed.tag.equals(v.tag)) failures.push(`${label}: tag is not modified`);
        tally.add(v.test.flags.join(','));
        tally.add(`AES-${v.key.length * 8}`);
      }
      expect(failures).to.deep.equal([]);
      expect(invalidChecked.length).to.equal(81);
      expect(tally.toObject()).to.deep.equal({ 'AES-128': 27, 'AES-192': 27, 'AES-256': 27, ModifiedTag: 81 });
    });

    it('aes_gcm_test.json invalid, zero-length IV: gcmOpen and gcmSeal refuse with GcmError (6 vectors)', () => {
      const failures: string[] = [];
      for (const v of invalidRefused) {
        const label = `tcId ${v.test.tcId}`;
        if (v.iv.length !== 0 || v.test.flags.join() !== 'ZeroLengthIv') failures.push(`${label}: unexpected kind`);
        const openErr = thrown(() => gcmOpen(v.key, v.iv, v.aad, v.ct, v.tag));
        const sealErr = thrown(() => gcmSeal(v.key, v.iv, v.aad, v.msg));
        if (!(openErr instanceof GcmError)) failures.push(`${label}: gcmOpen did not throw GcmError (${String(openErr)})`);
        if (!(sealErr instanceof GcmError)) failures.push(`${label}: gcmSeal did not throw GcmError (${String(sealErr)})`);
      }
      expect(failures).to.deep.equal([]);
      expect(invalidRefused.length).to.equal(6);
    });

    it('aes_gcm_test.json valid 96-bit-IV vectors with the tag cut or extended (derived, not published): gcmOpen refuses every non-128-bit tag', () => {
      // Wycheproof's file has 128-bit tags only; this derives 0..15- and 17-byte tags from the
      // valid vectors. A truncated tag is a genuine prefix, so a lenient GCM would accept it.
      const failures: string[] = [];
      let cases = 0;
      for (const v of validChecked) {
        for (const tag of [Buffer.alloc(0), v.tag.subarray(0, 4), v.tag.subarray(0, 8), v.tag.subarray(0, 12), v.tag.subarray(0, 15), Buffer.concat([v.tag, Buffer.alloc(1)])]) {
          const err = thrown(() => gcmOpen(v.key, v.iv, v.aad, v.ct, tag));
          if (!(err instanceof GcmError) || !/tag must be 128 bits/.test(err.message)) {
            failures.push(`tcId ${v.test.tcId} with a ${tag.length}-byte tag: not refused (${String(err)})`);
          }
          cases++;
        }
      }
      expect(failures).to.deep.equal([]);
      expect(cases).to.equal(116 * 6);
    });
  });

  describe('Wycheproof hmac_sha256_test.json (hmacSha256)', () => {
    const file = loadWycheproof<MacTest>('hmac_sha256_test.json');
    const vectors = [...eachVector(file)].map(({ group, test }) => ({
      test,
      tagBytes: (group.tagSize ?? 0) / 8,
      key: hex(test.key),
      msg: hex(test.msg),
      tag: hex(test.tag),
    }));

    it('hmac_sha256_test.json: all 174 vectors are classified (66 valid, 108 invalid), tags as long as tagSize', () => {
      expect(file.numberOfTests).to.equal(174);
      expect(vectors.filter((v) => v.test.result === 'valid')).to.have.length(66);
      expect(vectors.filter((v) => v.test.result === 'invalid')).to.have.length(108);
      expect(vectors.filter((v) => v.tag.length !== v.tagBytes || ![16, 32].includes(v.tagBytes)).map((v) => v.test.tcId)).to.deep.equal([]);
    });

    it('hmac_sha256_test.json valid: our 32-byte tag equals the tag (tagSize 256) or starts with it (tagSize 128) (66 vectors)', () => {
      const failures: string[] = [];
      const tally = new Tally();
      for (const v of vectors.filter((x) => x.test.result === 'valid')) {
        const ours = hmacSha256(v.key, v.msg);
        if (ours.length !== 32) failures.push(`tcId ${v.test.tcId}: tag is ${ours.length} bytes`);
        if (!ours.subarray(0, v.tagBytes).equals(v.tag)) failures.push(`tcId ${v.test.tcId}: tag differs`);
        tally.add(`tagSize ${v.tagBytes * 8}`);
      }
      expect(failures).to.deep.equal([]);
      expect(tally.toObject()).to.deep.equal({ 'tagSize 128': 33, 'tagSize 256': 33 });
    });

    it('hmac_sha256_test.json valid: hmacSha256Hex with a KeyObject (the blind index and request fingerprints) gives the same tag in hex (66 vectors)', () => {
      const failures: string[] = [];
      for (const v of vectors.filter((x) => x.test.result === 'valid')) {
        const ours = hmacSha256Hex(hmacKey(v.key), v.msg);
        if (!/^[0-9a-f]{64}$/.test(ours)) failures.push(`tcId ${v.test.tcId}: not 64 hex digits`);
        if (!ours.startsWith(v.tag.toString('hex'))) failures.push(`tcId ${v.test.tcId}: tag differs`);
      }
      expect(failures).to.deep.equal([]);
    });

    it('hmac_sha256_test.json invalid (modified tags): our tag, cut to tagSize, differs from the given tag (108 vectors)', () => {
      const failures: string[] = [];
      const tally = new Tally();
      for (const v of vectors.filter((x) => x.test.result === 'invalid')) {
        if (hmacSha256(v.key, v.msg).subarray(0, v.tagBytes).equals(v.tag)) failures.push(`tcId ${v.test.tcId}: modified tag matches`);
        tally.add(`tagSize ${v.tagBytes * 8}`);
        tally.add(v.test.flags.join(','));
      }
      expect(failures).to.deep.equal([]);
      expect(tally.toObject()).to.deep.equal({ ModifiedTag: 108, 'tagSize 128': 54, 'tagSize 256': 54 });
    });
  });

  describe('Wycheproof hkdf_sha256_test.json (hkdfSha256)', () => {
    const file = loadWycheproof<HkdfTest>('hkdf_sha256_test.json');
    const vectors = [...eachVector(file)].map(({ test }) => test);

    it('hkdf_sha256_test.json valid: hkdfSha256(ikm, salt, info, size) equals okm (83 vectors, up to the maximal 8160 bytes)', () => {
      const failures: string[] = [];
      const valid = vectors.filter((t) => t.result === 'valid');
      for (const t of valid) {
        try {
          if (!hkdfSha256(hex(t.ikm), hex(t.salt), hex(t.info), t.size).equals(hex(t.okm))) failures.push(`tcId ${t.tcId}: okm differs`);
        } catch (err) {
          failures.push(`tcId ${t.tcId}: threw ${String(err)}`);
        }
      }
      expect(failures).to.deep.equal([]);
      expect(valid).to.have.length(83);
      expect(Math.max(...valid.map((t) => t.size))).to.equal(255 * 32);
      expect(valid.filter((t) => t.salt === '')).to.have.length(23);
    });

    it('hkdf_sha256_test.json invalid (output size too large): hkdfSha256 throws (3 vectors)', () => {
      const invalid = vectors.filter((t) => t.result !== 'valid');
      const failures = invalid
        .filter((t) => thrown(() => hkdfSha256(hex(t.ikm), hex(t.salt), hex(t.info), t.size)) === undefined)
        .map((t) => `tcId ${t.tcId}: size ${t.size} accepted`);
      expect(failures).to.deep.equal([]);
      expect(invalid.map((t) => [t.result, t.flags.join(','), t.size])).to.deep.equal([
        ['invalid', 'SizeTooLarge', 8161],
        ['invalid', 'SizeTooLarge', 8161],
        ['invalid', 'SizeTooLarge', 8161],
      ]);
    });
  });

  describe('Wycheproof aes_wrap_test.json (A256KW through node-jose JWA, 256-bit-key vectors)', () => {
    // node-jose's public API (JWA in lib/index.js and @types/node-jose) exposes the key wrap
    // primitive that JWE alg A256KW (our wrapKey/unwrapKey) uses.
    const file = loadWycheproof<KeywrapTest>('aes_wrap_test.json');
    const vectors = [...eachVector(file)]
      .filter(({ group }) => group.keySize === 256)
      .map(({ test }) => ({ test, key: hex(test.key), msg: hex(test.msg), ct: hex(test.ct) }));

    /**
     * KNOWN DEFECT in node-jose 2.2.0 (lib/algorithms/aes-kw.js), reported, not fixed here:
     * unwrap compares the recovered IV with `A.toString() !== A0.toString()`, i.e. as UTF-8
     * text, and 0xa6 is not valid UTF-8, so any IV whose bytes all decode to U+FFFD passes
     * (tcIds 127-150: one IV byte changed; 160-162: IV ffffffffffffffff). It also wraps an
     * empty key (108) and wraps 8-byte keys with the 6-round W that Wycheproof marks invalid
     * (110). If node-jose starts rejecting these, the test below fails: shrink this list.
     */
    const NODE_JOSE_KW_DEFECTS = [108, 110, ...Array.from({ length: 24 }, (_, i) => 127 + i), 160, 161, 162];

    /** node:crypto's AES key unwrap, the platform primitive, for comparison. */
    const platformUnwrap = (key: Buffer, ct: Buffer): Buffer => {
      const decipher = createDecipheriv('id-aes256-wrap', key, KW_IV);
      return Buffer.concat([decipher.update(ct), decipher.final()]);
    };

    it('aes_wrap_test.json: the 256-bit-key group holds 68 vectors (13 valid, 1 acceptable, 54 invalid)', () => {
      expect(file.numberOfTests).to.equal(165);
      const tally = new Tally();
      for (const v of vectors) tally.add(v.test.result);
      expect(tally.toObject()).to.deep.equal({ acceptable: 1, invalid: 54, valid: 13 });
    });

    it('aes_wrap_test.json valid, 256-bit keys: JWA A256KW wrap gives the exact wrapped key and unwrap the key (13 vectors)', async () => {
      const failures: string[] = [];
      const valid = vectors.filter((v) => v.test.result === 'valid');
      for (const v of valid) {
        const label = `tcId ${v.test.tcId}`;
        try {
          const wrapped = await jose.JWA.encrypt('A256KW', v.key, v.msg);
          if (!wrapped.data.equals(v.ct)) failures.push(`${label}: wrapped key differs`);
          if (!(await jose.JWA.decrypt('A256KW', v.key, v.ct)).equals(v.msg)) failures.push(`${label}: unwrapped key differs`);
        } catch (err) {
          failures.push(`${label}: threw ${String(err)}`);
        }
      }
      expect(failures).to.deep.equal([]);
      expect(valid).to.have.length(13);
      expect(valid.some((v) => v.test.flags.includes('CounterOverflow'))).to.equal(true);
    });

    it('aes_wrap_test.json acceptable (8-byte key wrapped as one AES block): unwrap refuses it or returns the key (1 vector)', async () => {
      const acceptable = vectors.filter((v) => v.test.result === 'acceptable');
      expect(acceptable.map((v) => v.test.tcId)).to.deep.equal([109]);
      for (const v of acceptable) {
        const unwrapped = await jose.JWA.decrypt('A256KW', v.key, v.ct).catch(() => undefined);
        if (unwrapped !== undefined) expect(unwrapped.equals(v.msg)).to.equal(true);
      }
    });

    it('aes_wrap_test.json invalid, 256-bit keys: JWA A256KW unwrap throws, and wrap throws for unwrappable sizes (25 vectors; 29 known node-jose defects excluded)', async () => {
      const failures: string[] = [];
      const tally = new Tally();
      const checked = vectors.filter((v) => v.test.result === 'invalid' && !NODE_JOSE_KW_DEFECTS.includes(v.test.tcId));
      for (const v of checked) {
        const label = `tcId ${v.test.tcId} (${v.test.flags.join(',')})`;
        if ((await rejected(jose.JWA.decrypt('A256KW', v.key, v.ct))) === undefined) failures.push(`${label}: unwrap accepted it`);
        if (v.test.flags.includes('WrongDataSize') || v.test.flags.includes('EmptyKey')) {
          if ((await rejected(jose.JWA.encrypt('A256KW', v.key, v.msg))) === undefined) failures.push(`${label}: wrap accepted a ${v.msg.length}-byte key`);
        }
        tally.add(v.test.flags.join(','));
      }
      expect(failures).to.deep.equal([]);
      expect(checked).to.have.length(25);
      expect(tally.toObject()).to.deep.equal({ InvalidWrappingSize: 8, ModifiedIv: 9, WrongDataSize: 8 });
    });

    it('aes_wrap_test.json invalid, KNOWN node-jose DEFECT: JWA A256KW unwrap accepts 29 invalid vectors that node:crypto id-aes256-wrap rejects', async () => {
      const failures: string[] = [];
      const defects = vectors.filter((v) => NODE_JOSE_KW_DEFECTS.includes(v.test.tcId));
      for (const v of defects) {
        const label = `tcId ${v.test.tcId}`;
        if (v.test.result !== 'invalid') failures.push(`${label}: not an invalid vector`);
        if ((await rejected(jose.JWA.decrypt('A256KW', v.key, v.ct))) !== undefined) {
          failures.push(`${label}: node-jose now rejects it; remove it from NODE_JOSE_KW_DEFECTS`);
        }
        if (thrown(() => platformUnwrap(v.key, v.ct)) === undefined) failures.push(`${label}: node:crypto accepts it too`);
      }
      expect(failures).to.deep.equal([]);
      expect(defects).to.have.length(29);
    });

    it('consequence of the node-jose defect for unwrapKey: an A256KW encrypted key wrapped with IV ffffffffffffffff is accepted (content still authenticated by A256GCM)', async () => {
      // Not a published vector: derived from tcIds 160-162. Making such a JWE needs the KEK,
      // so this is non-conformance (RFC 3394 2.2.3), not a forgery.
      const kek = randomBytes(32);
      const key = await aesKeyWrapKey(kek, 'kek-1');
      const material = randomBytes(32);
      const parts = (await wrapKey(key, material, { tenant: 'acme' })).split('.');
      const cek = await jose.JWA.decrypt('A256KW', kek, unb64(parts[1]));
      const cipher = createCipheriv('id-aes256-wrap', kek, Buffer.alloc(8, 0xff));
      parts[1] = Buffer.concat([cipher.update(cek), cipher.final()]).toString('base64url');
      expect(thrown(() => platformUnwrap(kek, unb64(parts[1])))).to.be.instanceOf(Error);
      expect((await unwrapKey(key, parts.join('.'), { tenant: 'acme' })).equals(material)).to.equal(true);
    });
  });

  describe('RFC 7520 5.6 Direct Encryption Using AES-GCM (ietf-jose cookbook, dir + A128GCM)', () => {
    const example = loadCookbook('5_6.direct_encryption_using_aes-gcm.json');
    const key = unb64(example.input.key.k);
    const content = example.encrypting_content;
    const aad = Buffer.from(content.protected_b64u, 'ascii');

    it('RFC 7520 5.6: the compact serialization carries the example protected header, IV, ciphertext and tag', () => {
      expect(example.input).to.include({ alg: 'dir', enc: 'A128GCM' });
      expect(key).to.have.length(16);
      expect(JSON.parse(unb64(content.protected_b64u).toString('utf8'))).to.deep.equal(content.protected);
      expect(example.output.compact.split('.')).to.deep.equal([content.protected_b64u, '', example.generated.iv, content.ciphertext, content.tag]);
    });

    it('RFC 7520 5.6: gcmOpen decrypts the example to its plaintext (AAD = ASCII of the protected header) and gcmSeal reproduces ciphertext and tag', () => {
      const iv = unb64(example.generated.iv);
      const plaintext = gcmOpen(key, iv, aad, unb64(content.ciphertext), unb64(content.tag));
      expect(plaintext.toString('utf8')).to.equal(example.input.plaintext);
      const sealed = gcmSeal(key, iv, aad, Buffer.from(example.input.plaintext, 'utf8'));
      expect(sealed.ciphertext.toString('base64url')).to.equal(content.ciphertext);
      expect(sealed.tag.toString('base64url')).to.equal(content.tag);
      expect(thrown(() => gcmOpen(key, iv, Buffer.from(`${content.protected_b64u}x`, 'ascii'), unb64(content.ciphertext), unb64(content.tag)))).to.be.instanceOf(GcmError);
    });

    it('RFC 7520 5.6: decryptField refuses the JWE by policy (enc A128GCM, not A256GCM with our context fields)', () => {
      const context = { tenant: 'acme', subject: 'sub-1', table: 'consent_events', column: 'evidence', row: 'evt-1' };
      const err = thrown(() => decryptField(key, context, example.output.compact));
      expect(err).to.be.instanceOf(FieldDecryptionError);
      expect((err as Error).message).to.match(/unsupported algorithm/);
    });

    it('RFC 7520 5.6: node-jose decrypts it when allowed dir/A128GCM, so the refusal above is policy, not a broken JWE', async () => {
      const jwk = await jose.JWK.asKey(example.input.key);
      const result = await jose.JWE.createDecrypt(jwk, { algorithms: ['dir', 'A128GCM'] }).decrypt(example.output.compact);
      expect(result.plaintext.toString('utf8')).to.equal(example.input.plaintext);
    });
  });

  describe('RFC 7520 5.8 Key Wrap Using AES-KeyWrap with AES-GCM (ietf-jose cookbook, A128KW + A128GCM)', () => {
    const example = loadCookbook('5_8.key_wrap_using_aes-keywrap_with_aes-gcm.json');
    const kek = unb64(example.input.key.k);
    const content = example.encrypting_content;

    it('RFC 7520 5.8: JWA A128KW wraps the example CEK to its encrypted key and back, and gcmOpen decrypts the content with that CEK', async () => {
      expect(example.input).to.include({ alg: 'A128KW', enc: 'A128GCM' });
      const cek = unb64(example.generated.cek ?? '');
      const encryptedKey = unb64(example.encrypting_key?.encrypted_key ?? '');
      expect(cek).to.have.length(16);
      expect(example.output.compact.split('.')).to.deep.equal([
        content.protected_b64u,
        example.encrypting_key?.encrypted_key,
        example.generated.iv,
        content.ciphertext,
        content.tag,
      ]);
      expect((await jose.JWA.encrypt('A128KW', kek, cek)).data.equals(encryptedKey)).to.equal(true);
      expect((await jose.JWA.decrypt('A128KW', kek, encryptedKey)).equals(cek)).to.equal(true);
      const plaintext = gcmOpen(cek, unb64(example.generated.iv), Buffer.from(content.protected_b64u, 'ascii'), unb64(content.ciphertext), unb64(content.tag));
      expect(plaintext.toString('utf8')).to.equal(example.input.plaintext);
    });

    it('RFC 7520 5.8: node-jose decrypts the compact, general JSON and flattened JSON serializations when allowed A128KW/A128GCM', async () => {
      const jwk = await jose.JWK.asKey(example.input.key);
      const decrypter = jose.JWE.createDecrypt(jwk, { algorithms: ['A128KW', 'A128GCM'] });
      for (const input of [example.output.compact, example.output.json, example.output.json_flat]) {
        // @types/node-jose declares decrypt(string); node-jose also takes the JSON serializations as objects.
        expect((await decrypter.decrypt(input as string)).plaintext.toString('utf8')).to.equal(example.input.plaintext);
      }
    });

    it('RFC 7520 5.8: unwrapKey (algorithms pinned to A256KW/A256GCM) refuses it', async () => {
      expect(KEY_WRAP_ALGORITHMS).to.deep.equal(['A256KW', 'A256GCM']);
      const jwk = await jose.JWK.asKey(example.input.key);
      const err = await rejected(unwrapKey(jwk, example.output.compact, {}));
      expect(err).to.be.instanceOf(Error);
      expect((err as Error).message).to.match(/Algorithm not allowed: A128KW/);
    });
  });
});
