import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import jose from 'node-jose';
import { DataSource } from 'typeorm';
import { KeyManager } from '../../src/crypto/key-manager';
import { EpochNotActiveError } from '../../src/crypto/key-store';
import { JwkSetRootKeyProvider } from '../../src/crypto/root-key-provider';
import { createDataSource } from '../../src/storage/data-source';
import { TypeormKeyStore } from '../../src/storage/keystore/typeorm-key-store';
import { forEachDatabase } from '../support/databases';

const TYP = 'preference-link+jwt';
const LIMITS = { subjectKeyCacheSize: 1000, subjectKeyCacheTtlMs: 60_000, maxEncryptionsPerKey: 2 ** 32 };

/**
 * KeyManager.sign/verify (the tenant-signed ES256 tokens of the self-service links) over a real
 * key store: the imported public keys are cached, which keys may verify is the key store's word on
 * every call. Two KeyManagers on one key store play two processes of the service.
 */
forEachDatabase('key manager: signed tokens', (db) => {
  let ds: DataSource;
  let store: TypeormKeyStore;
  let root: JwkSetRootKeyProvider;
  /** Public EC keys imported by node-jose since the last reset (a counting pass-through, nothing replaced). */
  let publicImports = 0;
  const asKey = jose.JWK.asKey;

  before(async function () {
    ds = await createDataSource(db().keyStore, 'keys');
    await ds.initialize();
    await ds.runMigrations();
    store = new TypeormKeyStore(ds);
    root = await JwkSetRootKeyProvider.fromJson(JSON.stringify({ keys: [{ kty: 'oct', kid: 'root-1', k: randomBytes(32).toString('base64url') }] }), 'test');
    jose.JWK.asKey = ((...args: Parameters<typeof asKey>) => {
      const jwk = args[0] as { kty?: string; d?: string } | undefined;
      if (jwk?.kty === 'EC' && jwk.d === undefined) publicImports++;
      return asKey.apply(jose.JWK, args);
    }) as typeof asKey;
  });
  after(async () => {
    jose.JWK.asKey = asKey;
    if (ds?.isInitialized) await ds.destroy();
  });

  let n = 0;
  /** A fresh tenant with its key, and a manager (a process) that signed one token for it. */
  async function tenantWithToken(): Promise<{ tenant: string; keys: KeyManager; token: string }> {
    const tenant = `t${++n}-${randomBytes(3).toString('hex')}`;
    const keys = new KeyManager(root, store, LIMITS);
    await keys.createTenantKey(tenant, 1);
    const token = await keys.sign(tenant, { ten: tenant, sub: 's1' }, TYP, 2);
    return { tenant, keys, token };
  }
  const forge = (header: object, payload: object, signature = 'AAAA') =>
    `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature}`;

  it('repeated verifies import the public key once, and every one verifies', async function () {
    const { tenant, keys, token } = await tenantWithToken();
    publicImports = 0;
    for (let i = 0; i < 5; i++) expect(await keys.verify(tenant, token, TYP)).to.deep.equal({ ten: tenant, sub: 's1' });
    expect(publicImports, 'imports for five verifies').to.equal(1);
  });

  it('after a shred nothing verifies, though the key was imported (in this process and in another)', async function () {
    const a = await tenantWithToken();
    expect(await a.keys.verify(a.tenant, a.token, TYP)).to.not.equal(null);
    await a.keys.destroyTenantKeys(a.tenant, 3);
    expect(await a.keys.verify(a.tenant, a.token, TYP), 'the shredding process').to.equal(null);

    const b = await tenantWithToken();
    const other = new KeyManager(root, store, LIMITS);
    expect(await b.keys.verify(b.tenant, b.token, TYP)).to.not.equal(null);
    await other.destroyTenantKeys(b.tenant, 3);
    expect(await b.keys.verify(b.tenant, b.token, TYP), 'a process whose import is still cached').to.equal(null);
  });

  it("a rotation: another process's new key verifies at once, the retired epoch's key still verifies", async function () {
    const { tenant, keys, token } = await tenantWithToken();
    expect(await keys.verify(tenant, token, TYP)).to.not.equal(null);
    const other = new KeyManager(root, store, LIMITS);
    await other.openEpoch(tenant, 3);
    await other.rewrapSubjectKeys(tenant, () => 4, () => undefined);
    const newer = await other.sign(tenant, { ten: tenant, sub: 's2' }, TYP, 5);
    const kidOf = (t: string) => (JSON.parse(Buffer.from(t.split('.')[0], 'base64url').toString('utf8')) as { kid: string }).kid;
    expect(kidOf(newer)).to.not.equal(kidOf(token));
    expect((await store.signingKeys(tenant)).map((k) => k.state)).to.deep.equal(['RETIRED', 'ACTIVE']);
    expect(await keys.verify(tenant, newer, TYP)).to.deep.equal({ ten: tenant, sub: 's2' });
    expect(await keys.verify(tenant, token, TYP)).to.deep.equal({ ten: tenant, sub: 's1' });
  });

  it("forgetting the tenant (rotation, shred) drops its imports: the next verify imports again", async function () {
    const { tenant, keys, token } = await tenantWithToken();
    await keys.verify(tenant, token, TYP);
    publicImports = 0;
    keys.forgetTenant(tenant);
    expect(await keys.verify(tenant, token, TYP)).to.not.equal(null);
    await keys.verify(tenant, token, TYP);
    expect(publicImports).to.equal(1);
  });

  it('refuses another type, another tenant, an altered token, an unknown or odd kid, an embedded key, a tenant without keys', async function () {
    const { tenant, keys, token } = await tenantWithToken();
    const other = await tenantWithToken();
    const [h, p, sig] = token.split('.');
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { kid: string };
    expect(await keys.verify(tenant, token, 'signup-confirmation+jwt'), 'another type').to.equal(null);
    expect(await keys.verify(other.tenant, token, TYP), "another tenant's keys").to.equal(null);
    expect(await keys.verify(tenant, other.token, TYP), "another tenant's token").to.equal(null);
    const altered = `${h}.${Buffer.from(JSON.stringify({ ten: tenant, sub: 'someone-else' })).toString('base64url')}.${sig}`;
    expect(await keys.verify(tenant, altered, TYP), 'altered payload').to.equal(null);
    expect(await keys.verify(tenant, forge({ ...header, kid: 'unknown' }, { ten: tenant }, sig), TYP), 'unknown kid').to.equal(null);
    expect(await keys.verify(tenant, forge({ ...header, kid: 7 }, { ten: tenant }, sig), TYP), 'kid not a string').to.equal(null);
    expect(await keys.verify(tenant, `${Buffer.from('[1]').toString('base64url')}.${p}.${sig}`, TYP), 'header not an object').to.equal(null);
    expect(await keys.verify(tenant, `bm90IGpzb24.${p}.${sig}`, TYP), 'header not JSON').to.equal(null);
    const attacker = await jose.JWK.createKeyStore().generate('EC', 'P-256', { alg: 'ES256', use: 'sig' });
    const embedded = (await jose.JWS.createSign({ format: 'compact', fields: { typ: TYP, jwk: attacker.toJSON() } }, attacker).update(JSON.stringify({ ten: tenant })).final()) as unknown as string;
    expect(await keys.verify(tenant, embedded, TYP), 'a key embedded in the token').to.equal(null);
    const none = forge({ alg: 'none', typ: TYP, kid: header.kid }, { ten: tenant }, '');
    expect(await keys.verify(tenant, `${none}x`, TYP), 'alg none').to.equal(null);
    expect(await keys.verify('no-such-tenant', token, TYP), 'a tenant without keys').to.equal(null);
    expect(await keys.verify(tenant, 'a'.repeat(9000), TYP), 'not a JWS').to.equal(null);
    expect(await keys.verify(tenant, token, TYP), 'and the real one still verifies').to.not.equal(null);
  });
});

/**
 * A rotation seen by another process (another KeyManager on the same key store) that still holds
 * the tenant's keyring from before: found by a fault probe, a second server wrapped new people's
 * keys under the epoch the rotation had just destroyed (their data unreadable, every later write
 * of theirs refused, an opt-out impossible).
 */
forEachDatabase('key manager: rotation across processes', (db) => {
  let ds: DataSource;
  let store: TypeormKeyStore;
  let root: JwkSetRootKeyProvider;
  before(async function () {
    ds = await createDataSource(db().keyStore, 'keys');
    await ds.initialize();
    await ds.runMigrations();
    store = new TypeormKeyStore(ds);
    root = await JwkSetRootKeyProvider.fromJson(JSON.stringify({ keys: [{ kty: 'oct', kid: 'root-1', k: randomBytes(32).toString('base64url') }] }), 'test');
  });
  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });
  let n = 0;
  const freshTenant = () => `rot${++n}-${randomBytes(3).toString('hex')}`;
  const epochsOf = async (tenant: string) => (await store.tenantKeys(tenant)).map((k) => [k.epoch, k.state]);

  it('a process holding the keyring from before a finished rotation stores new subject and signing keys under the new epoch, and every process reads them', async function () {
    const tenant = freshTenant();
    const a = new KeyManager(root, store, LIMITS);
    const b = new KeyManager(root, store, LIMITS);
    await a.createTenantKey(tenant, 1);
    await b.createSubjectKeys(tenant, [{ subjectId: 'before', use: 1 }], 2);
    expect(b.cachedTenantKeyring(tenant)?.epoch, 'b holds epoch 1').to.equal(1);

    await a.openEpoch(tenant, 3);
    expect(await a.rewrapSubjectKeys(tenant, () => 4, () => undefined)).to.deep.equal([1]);
    expect(await epochsOf(tenant)).to.deep.equal([[1, 'DESTROYED'], [2, 'ACTIVE']]);
    expect(b.cachedTenantKeyring(tenant)?.epoch, 'b still holds epoch 1').to.equal(1);

    const made = await b.createSubjectKeys(tenant, [{ subjectId: 'after-1', use: 1 }, { subjectId: 'after-2', use: 1 }], 5);
    const single = await b.createSubjectKey(tenant, 'after-3', 5, 1);
    for (const id of ['after-1', 'after-2', 'after-3']) expect((await store.subjectKey(tenant, id))?.epoch, id).to.equal(2);
    expect(b.cachedTenantKeyring(tenant)?.epoch, 'b read the keyring again').to.equal(2);
    const fresh = new KeyManager(root, store, LIMITS);
    expect((await fresh.subjectKey(tenant, 'after-1')).key.equals(made.get('after-1')!.key), 'readable by a process that did not make it').to.equal(true);
    expect((await fresh.subjectKey(tenant, 'after-3')).key.equals(single.key)).to.equal(true);
    expect((await fresh.subjectKey(tenant, 'before')).key.length).to.equal(32);

    // A signing key first made after the rotation by a process that missed it.
    const c = freshTenant();
    const x = new KeyManager(root, store, LIMITS);
    const y = new KeyManager(root, store, LIMITS);
    await x.createTenantKey(c, 1);
    await y.tenantKeyring(c);
    await x.openEpoch(c, 2);
    await x.rewrapSubjectKeys(c, () => 3, () => undefined);
    const token = await y.sign(c, { hello: 1 }, TYP, 4);
    expect((await store.signingKeys(c)).map((k) => [k.epoch, k.state])).to.deep.equal([[2, 'ACTIVE']]);
    expect(await new KeyManager(root, store, LIMITS).verify(c, token, TYP)).to.deep.equal({ hello: 1 });
  });

  it('the key store refuses a key under an epoch that is not ACTIVE, and opening an epoch retires every active one at once', async function () {
    const tenant = freshTenant();
    const base = { tenantId: tenant, wrappedKey: 'w', rootKeyId: 'r', createdAt: 1, destroyedAt: null };
    await store.insertTenantKey({ ...base, epoch: 1, state: 'ACTIVE' });
    // Left by a process before this fix: two ACTIVE epochs after a crash inside a rotation.
    await store.insertTenantKey({ ...base, epoch: 2, state: 'ACTIVE' });
    expect(await store.openTenantKeyEpoch({ ...base, epoch: 3, state: 'ACTIVE' })).to.have.members([1, 2]);
    expect(await epochsOf(tenant)).to.deep.equal([[1, 'RETIRING'], [2, 'RETIRING'], [3, 'ACTIVE']]);
    const key = { tenantId: tenant, subjectId: 's', wrappedKey: 'w', encryptions: 0, createdAt: 1 };
    for (const epoch of [1, 2, 9]) {
      const refused = await store.insertSubjectKeys([{ ...key, epoch }]).then(() => null, (e: unknown) => e);
      expect(refused, `epoch ${epoch}`).to.be.instanceOf(EpochNotActiveError);
      const single = await store.insertSubjectKey({ ...key, epoch }).then(() => null, (e: unknown) => e);
      expect(single).to.be.instanceOf(EpochNotActiveError);
    }
    expect(await store.subjectKey(tenant, 's'), 'nothing stored').to.equal(null);
    await store.insertSubjectKey({ ...key, epoch: 3 });
    expect((await store.subjectKey(tenant, 's'))?.epoch).to.equal(3);
  });

  it('a rotation after a crash that left two epochs ACTIVE moves every key off both and destroys them', async function () {
    const tenant = freshTenant();
    const a = new KeyManager(root, store, LIMITS);
    await a.createTenantKey(tenant, 1);
    await a.createSubjectKeys(tenant, [{ subjectId: 'old-1', use: 1 }, { subjectId: 'old-2', use: 1 }], 2);
    // The crash of the earlier two-step open: epoch 2 inserted ACTIVE, epoch 1 never marked RETIRING.
    await a.openEpoch(tenant, 3);
    await store.updateTenantKey(tenant, 1, { state: 'ACTIVE' });
    a.forgetTenant(tenant);
    expect(await epochsOf(tenant)).to.deep.equal([[1, 'ACTIVE'], [2, 'ACTIVE']]);
    await a.openEpoch(tenant, 4);
    expect(await a.rewrapSubjectKeys(tenant, () => 5, () => undefined)).to.have.members([1, 2]);
    expect(await epochsOf(tenant)).to.deep.equal([[1, 'DESTROYED'], [2, 'DESTROYED'], [3, 'ACTIVE']]);
    for (const id of ['old-1', 'old-2']) expect((await store.subjectKey(tenant, id))?.epoch).to.equal(3);
  });
});
