import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jose from 'node-jose';
import { aesKeyWrapKey, KEY_WRAP_ALGORITHMS, KeyBindingError, unwrapKey, wrapKey } from '../../src/crypto/jose';
import { JwkSetRootKeyProvider, loadRootKeys } from '../../src/crypto/root-key-provider';

const k = (): string => randomBytes(32).toString('base64url');
const jwks = (keys: unknown[], active?: string): string => JSON.stringify(active === undefined ? { keys } : { keys, active });
const headerOf = (jwe: string): Record<string, unknown> => JSON.parse(Buffer.from(jwe.split('.')[0], 'base64url').toString('utf8'));

/** Awaits a promise expected to reject and returns the error. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  expect.fail('expected a rejection');
}

describe('root keys', () => {
  describe(`${JwkSetRootKeyProvider.name}.fromJson`, () => {
    it('loads a set; the first key is active unless "active" says otherwise', async () => {
      const p1 = await JwkSetRootKeyProvider.fromJson(jwks([{ kty: 'oct', kid: 'r1', k: k() }, { kty: 'oct', kid: 'r2', k: k() }]), 'test');
      expect(p1.activeKeyId).to.equal('r1');
      expect(p1.keyIds().sort()).to.deep.equal(['r1', 'r2']);
      const p2 = await JwkSetRootKeyProvider.fromJson(jwks([{ kty: 'oct', kid: 'r1', k: k() }, { kty: 'oct', kid: 'r2', k: k() }], 'r2'), 'test');
      expect(p2.activeKeyId).to.equal('r2');
    });

    const SECRET = k();
    const BAD_SETS: Array<[string, string, RegExp]> = [
      ['not JSON', `{"keys":[{"kty":"oct","kid":"r1","k":"${SECRET}"}`, /not valid JSON/],
      ['JSON null', 'null', /must be a JWK set/],
      ['no keys property', JSON.stringify({ k: SECRET }), /must be a JWK set/],
      ['keys not an array', JSON.stringify({ keys: { kty: 'oct', kid: 'r1', k: SECRET } }), /must be a JWK set/],
      ['empty key list', jwks([]), /at least one key/],
      ['wrong kty', jwks([{ kty: 'RSA', kid: 'r1', k: SECRET }]), /root key 0 .* must be/],
      ['no kid', jwks([{ kty: 'oct', k: SECRET }]), /root key 0 .* must be/],
      ['no k', jwks([{ kty: 'oct', kid: 'r1' }]), /root key 0 .* must be/],
      ['128-bit key', jwks([{ kty: 'oct', kid: 'r1', k: SECRET.slice(0, 22) }]), /root key 0 .* must be/],
      ['512-bit key', jwks([{ kty: 'oct', kid: 'r1', k: SECRET + SECRET }]), /root key 0 .* must be/],
      ['bad second key', jwks([{ kty: 'oct', kid: 'r1', k: k() }, { kty: 'oct', kid: 'r2', k: SECRET.slice(0, 30) }]), /root key 1 .* must be/],
      ['active kid not in set', jwks([{ kty: 'oct', kid: 'r1', k: SECRET }], 'r9'), /active key "r9" is not in the set/],
    ];
    for (const [name, json, message] of BAD_SETS) {
      it(`rejects ${name}, naming the origin, without key material`, async () => {
        const err = await rejection(JwkSetRootKeyProvider.fromJson(json, 'ROOT_KEYS_JSON'));
        expect(err.message).to.match(message);
        expect(err.message).to.contain('ROOT_KEYS_JSON');
        for (const fragment of [SECRET, SECRET.slice(0, 22), SECRET.slice(0, 30), SECRET.slice(0, 12)]) {
          expect(err.message).not.to.contain(fragment);
          expect(String(err.stack)).not.to.contain(fragment);
        }
      });
    }

    it('never exposes key material through its public surface', async () => {
      const secret = k();
      const p = await JwkSetRootKeyProvider.fromJson(jwks([{ kty: 'oct', kid: 'r1', k: secret }]), 'test');
      expect(JSON.stringify(p.keyIds())).not.to.contain(secret);
      expect(JSON.stringify({ ...p })).not.to.contain(secret);
    });
  });

  describe('wrap / unwrap', () => {
    const bind = { tenant: 'acme', epoch: 3 };
    let provider: JwkSetRootKeyProvider;
    let rootK: string;
    before(async () => {
      rootK = k();
      provider = await JwkSetRootKeyProvider.fromJson(jwks([{ kty: 'oct', kid: 'root-1', k: rootK }]), 'test');
    });

    it('round-trips tenant key material', async () => {
      const material = randomBytes(32);
      const wrapped = await provider.wrap(material, bind);
      expect(Buffer.compare(await provider.unwrap(wrapped, bind), material)).to.equal(0);
    });

    it('wraps as a compact A256KW + A256GCM JWE whose protected header binds tenant, epoch and kid', async () => {
      const material = randomBytes(32);
      const wrapped = await provider.wrap(material, bind);
      const parts = wrapped.split('.');
      expect(parts).to.have.length(5);
      expect(Buffer.from(parts[1], 'base64url')).to.have.length(40); // AES-KW of 32 bytes
      expect(headerOf(wrapped)).to.deep.equal({ alg: 'A256KW', enc: 'A256GCM', kid: 'root-1', tenant: 'acme', epoch: 3 });
      expect(wrapped).not.to.contain(material.toString('base64url'));
      expect(wrapped).not.to.contain(rootK);
    });

    it('two wraps of the same material differ', async () => {
      const material = randomBytes(32);
      expect(await provider.wrap(material, bind)).not.to.equal(await provider.wrap(material, bind));
    });

    for (const [name, other] of [
      ['tenant', { tenant: 'other', epoch: 3 }],
      ['epoch', { tenant: 'acme', epoch: 4 }],
    ] as const) {
      it(`unwrap bound to another ${name} fails with KeyBindingError`, async () => {
        const wrapped = await provider.wrap(randomBytes(32), bind);
        const err = await rejection(provider.unwrap(wrapped, other));
        expect(err).to.be.instanceOf(KeyBindingError);
        expect(err.name).to.equal('KeyBindingError');
        expect(err.message).to.contain(name);
      });
    }

    it('the epoch is compared by type too ("3" is not 3)', async () => {
      const wrapped = await wrapKey(await aesKeyWrapKey(Buffer.from(rootK, 'base64url'), 'root-1'), randomBytes(32), { tenant: 'acme', epoch: '3' });
      expect(await rejection(provider.unwrap(wrapped, bind))).to.be.instanceOf(KeyBindingError);
    });

    it('a provider with another key cannot unwrap', async () => {
      const other = await JwkSetRootKeyProvider.fromJson(jwks([{ kty: 'oct', kid: 'root-1', k: k() }]), 'test');
      const wrapped = await provider.wrap(randomBytes(32), bind);
      await rejection(other.unwrap(wrapped, bind));
    });

    it('after rotation, the old key still unwraps and the new one wraps', async () => {
      const newK = k();
      const rotated = await JwkSetRootKeyProvider.fromJson(
        jwks([{ kty: 'oct', kid: 'root-1', k: rootK }, { kty: 'oct', kid: 'root-2', k: newK }], 'root-2'),
        'test',
      );
      const material = randomBytes(32);
      const old = await provider.wrap(material, bind);
      expect(Buffer.compare(await rotated.unwrap(old, bind), material)).to.equal(0);
      const fresh = await rotated.wrap(material, bind);
      expect(headerOf(fresh).kid).to.equal('root-2');
      await rejection(provider.unwrap(fresh, bind));
    });

    it('a tampered envelope fails', async () => {
      const wrapped = await provider.wrap(randomBytes(32), bind);
      const parts = wrapped.split('.');
      const ct = Buffer.from(parts[3], 'base64url');
      ct[0] ^= 1;
      parts[3] = ct.toString('base64url');
      await rejection(provider.unwrap(parts.join('.'), bind));
      // A header rewritten to the expected binding fails authentication.
      const forged = wrapped.split('.');
      forged[0] = Buffer.from(JSON.stringify({ ...headerOf(wrapped), tenant: 'other' })).toString('base64url');
      await rejection(provider.unwrap(forged.join('.'), { tenant: 'other', epoch: 3 }));
    });

    it('refuses a JWE made with alg "dir" (which unpinned node-jose would accept)', async () => {
      const material = randomBytes(32);
      const dirKey = await jose.JWK.asKey({ kty: 'oct', kid: 'root-1', k: rootK });
      const dirJwe = (await jose.JWE.createEncrypt({ format: 'compact', contentAlg: 'A256GCM', fields: { alg: 'dir', kid: 'root-1', ...bind } }, dirKey)
        .update(material)
        .final()) as unknown as string;
      expect(headerOf(dirJwe).alg).to.equal('dir');
      // Control: a key store holding the root key as A256KW decrypts it when nothing is pinned.
      const store = jose.JWK.createKeyStore();
      await store.add({ kty: 'oct', kid: 'root-1', k: rootK, alg: 'A256KW', use: 'enc' });
      expect(Buffer.compare((await jose.JWE.createDecrypt(store).decrypt(dirJwe)).plaintext, material)).to.equal(0);
      // Ours refuses it.
      const err = await rejection(provider.unwrap(dirJwe, bind));
      expect(err.message).to.contain('Algorithm not allowed: dir');
      await rejection(unwrapKey(store, dirJwe, bind));
    });

    it('refuses a compressed (zip: "DEF") envelope', async () => {
      const material = randomBytes(32);
      const key = await aesKeyWrapKey(Buffer.from(rootK, 'base64url'), 'root-1');
      const zipped = (await jose.JWE.createEncrypt(
        { format: 'compact', zip: true, contentAlg: 'A256GCM', fields: { alg: 'A256KW', kid: 'root-1', ...bind } } as jose.JWE.EncryptOptions,
        key,
      )
        .update(material)
        .final()) as unknown as string;
      expect(headerOf(zipped).zip).to.equal('DEF');
      const err = await rejection(provider.unwrap(zipped, bind));
      expect(err).to.be.instanceOf(KeyBindingError);
      expect(err.message).to.contain('compressed');
    });

    it('refuses other key-management algorithms (A128KW)', async () => {
      const short = await jose.JWK.asKey({ kty: 'oct', kid: 'root-1', k: randomBytes(16).toString('base64url'), alg: 'A128KW' });
      const jwe = (await jose.JWE.createEncrypt({ format: 'compact', contentAlg: 'A256GCM', fields: { alg: 'A128KW', kid: 'root-1', ...bind } }, short)
        .update(randomBytes(32))
        .final()) as unknown as string;
      const err = await rejection(unwrapKey(short, jwe, bind));
      expect(err.message).to.contain('Algorithm not allowed: A128KW');
    });

    it('pins exactly A256KW and A256GCM', () => {
      expect(KEY_WRAP_ALGORITHMS).to.deep.equal(['A256KW', 'A256GCM']);
    });

    it('errors never carry key material', async () => {
      const material = randomBytes(32);
      const wrapped = await provider.wrap(material, bind);
      const err = await rejection(provider.unwrap(wrapped, { tenant: 'x', epoch: 3 }));
      for (const secret of [rootK, material.toString('base64url'), material.toString('hex')]) expect(err.message).not.to.contain(secret);
    });
  });

  describe(loadRootKeys.name, () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'consent-ledger-rootkeys-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('generated-dev writes a 0600 key file in a new directory; a second load reads the same key', async () => {
      const file = path.join(dir, 'nested', 'root-keys.dev.json');
      const first = await loadRootKeys({ kind: 'generated-dev', file });
      expect(first.generatedFile).to.equal(file);
      expect(existsSync(file)).to.equal(true);
      expect(statSync(file).mode & 0o777).to.equal(0o600);
      const content = JSON.parse(readFileSync(file, 'utf8')) as { keys: Array<{ kty: string; kid: string; k: string; alg: string }> };
      expect(content.keys).to.have.length(1);
      expect(content.keys[0].kty).to.equal('oct');
      expect(content.keys[0].alg).to.equal('A256KW');
      expect(Buffer.from(content.keys[0].k, 'base64url')).to.have.length(32);
      expect(content.keys[0].kid).to.match(/^root-dev-\d{4}-\d{2}-\d{2}$/);

      const second = await loadRootKeys({ kind: 'generated-dev', file });
      expect(second.generatedFile).to.equal(undefined);
      expect(second.provider.keyIds()).to.deep.equal(first.provider.keyIds());
      expect(second.provider.activeKeyId).to.equal(first.provider.activeKeyId);
      // Same key, not just the same id: what the first wraps, the second unwraps.
      const material = randomBytes(32);
      const wrapped = await first.provider.wrap(material, { tenant: 't', epoch: 1 });
      expect(Buffer.compare(await second.provider.unwrap(wrapped, { tenant: 't', epoch: 1 }), material)).to.equal(0);
      expect(readFileSync(file, 'utf8')).to.equal(JSON.stringify(content, null, 2) + '\n');
    });

    it('generated-dev keys differ between installations', async () => {
      const a = await loadRootKeys({ kind: 'generated-dev', file: path.join(dir, 'a.json') });
      const b = await loadRootKeys({ kind: 'generated-dev', file: path.join(dir, 'b.json') });
      const wrapped = await a.provider.wrap(randomBytes(32), { tenant: 't', epoch: 1 });
      await rejection(b.provider.unwrap(wrapped, { tenant: 't', epoch: 1 }));
    });

    it('file: a file that does not exist is an error naming ROOT_KEYS_FILE and the path', async () => {
      const file = path.join(dir, 'missing.json');
      const err = await rejection(loadRootKeys({ kind: 'file', file }));
      expect(err.message).to.equal(`ROOT_KEYS_FILE ${file} does not exist`);
      expect(existsSync(file)).to.equal(false);
    });

    it('file: loads an existing set, and a bad one is an error naming the file', async () => {
      const good = path.join(dir, 'good.json');
      writeFileSync(good, jwks([{ kty: 'oct', kid: 'prod-1', k: k() }]));
      expect((await loadRootKeys({ kind: 'file', file: good })).provider.keyIds()).to.deep.equal(['prod-1']);
      const bad = path.join(dir, 'bad.json');
      const secret = k().slice(0, 20);
      writeFileSync(bad, jwks([{ kty: 'oct', kid: 'prod-1', k: secret }]));
      const err = await rejection(loadRootKeys({ kind: 'file', file: bad }));
      expect(err.message).to.contain(bad);
      expect(err.message).not.to.contain(secret);
    });

    it('env: loads the JSON, errors name ROOT_KEYS_JSON', async () => {
      const r = await loadRootKeys({ kind: 'env', json: jwks([{ kty: 'oct', kid: 'env-1', k: k() }]) });
      expect(r.provider.activeKeyId).to.equal('env-1');
      expect(r.generatedFile).to.equal(undefined);
      expect((await rejection(loadRootKeys({ kind: 'env', json: 'nope' }))).message).to.contain('ROOT_KEYS_JSON');
    });
  });
});
