import { KeyObject, randomBytes } from 'node:crypto';
import { freshRandom, hkdfSha256, hmacKey, hmacSha256Hex } from './primitives';
import { BlindIndexWorkers } from './blind-index-workers';
import jose from 'node-jose';
import { LRUCache } from 'lru-cache';
import { DomainError, failedPrecondition } from '../shared/errors';
import { decryptField, encryptField, FieldContext } from './field-cipher';
import { aesKeyWrapKey, unwrapKey, wrapKey } from './jose';
import { EpochNotActiveError, KeyStore, StoredSubjectKey, StoredTenantKey } from './key-store';
import { RootKeyProvider } from './root-key-provider';
import { TokenSealer } from './token-sealer';
import { hasCanonicalSignature } from './jws-signature';

/** What the blind index of an identifier is the HMAC of: its kind and normalised value. */
function blindIndexInput(identifier: { kind: string; value: string }): string {
  return `${identifier.kind}\u0000${identifier.value}`;
}

/** A tenant's unwrapped keys and the keys derived from them. Never leaves this process. */
export interface TenantKeyring {
  tenantId: string;
  /** The active epoch: new subject keys are wrapped under it. */
  epoch: number;
  /** Subject-key wrapping keys (A256KW) of every readable epoch (active and retiring). */
  wrappingKeys: ReadonlyMap<number, jose.JWK.Key>;
  /** HMAC key of the identifier blind index (a KeyObject: imported once, not per HMAC). */
  indexKey: KeyObject;
  /** HMAC key of request fingerprints (idempotency), separate from the index key. */
  requestKey: KeyObject;
  /** AES-256-GCM key of page tokens. */
  pageTokenKey: Buffer;
}

/** A subject's data key, ready for field encryption. */
export interface SubjectKey {
  kid: string;
  key: Buffer;
}

export interface KeyManagerLimits {
  subjectKeyCacheSize: number;
  subjectKeyCacheTtlMs: number;
  /** AES-GCM encryptions allowed per subject key (NIST SP 800-38D 8.3: at most 2^32 with random IVs). */
  maxEncryptionsPerKey: number;
}

/** Progress of re-wrapping subject keys under a new epoch. */
export interface RewrapProgress {
  total: number;
  done: number;
}

const KEY_BYTES = 32;
/**
 * Encryptions leased from the key store at a time per subject key: a busy person's writes touch
 * the key store once per this many encryptions. Against the AES-GCM limit of 2^32 the loss of an
 * unused lease is negligible.
 */
const ENCRYPTION_LEASE = 256;
/** Attempts to store a new key when the tenant key keeps rotating under it (underActiveEpoch). */
const EPOCH_ATTEMPTS = 3;

/**
 * Holds the key hierarchy root -> tenant (per epoch) -> subject. A tenant key epoch wraps 64
 * bytes: the epoch's key-encryption key, and a tenant secret carried from epoch to epoch, from
 * which the blind-index, request-fingerprint and page-token keys are derived with HKDF (so a
 * rotation does not change blind indexes; destroying every epoch destroys the secret too).
 * Unwrapped keys are cached in bounded LRU caches (size and age).
 */
export class KeyManager {
  private readonly tenantCache: LRUCache<string, TenantKeyring>;
  private readonly subjectCache: LRUCache<string, SubjectKey> | null;
  private readonly signerCache: LRUCache<string, jose.JWK.Key>;
  /**
   * Imported public signing keys by `{tenant}/{kid}`, with the stored JWK they were imported from.
   * Only the import is cached: which keys may verify (not destroyed) is read from the key store on
   * every verify, so a tenant shredded or a key added by another process counts at once.
   */
  private readonly verifierCache: LRUCache<string, { publicJwk: string; key: jose.JWK.Key }>;
  /**
   * Encryptions this process may still make with a subject key without asking the key store:
   * counted there in blocks (ENCRYPTION_LEASE) ahead of use, so a write does not commit a key
   * store transaction of its own. What a process leased and did not use is lost (at a restart,
   * or when the lease is evicted): the stored count only ever overstates use, which keeps the
   * limit safe.
   */
  private readonly encryptionLeases = new LRUCache<string, { remaining: number }>({ max: 100_000 });

  constructor(
    private readonly root: RootKeyProvider,
    private readonly store: KeyStore,
    private readonly limits: KeyManagerLimits,
    /** Worker threads for the blind indexes of bulk calls (blindIndexes); none: all on this thread. */
    private readonly bulkHashing?: BlindIndexWorkers,
  ) {
    const ttl = Math.max(limits.subjectKeyCacheTtlMs, 1);
    this.tenantCache = new LRUCache({ max: 1000, ttl });
    this.signerCache = new LRUCache({ max: 1000, ttl });
    this.verifierCache = new LRUCache({ max: 1000, ttl });
    this.subjectCache =
      limits.subjectKeyCacheSize > 0 && limits.subjectKeyCacheTtlMs > 0 ? new LRUCache({ max: limits.subjectKeyCacheSize, ttl }) : null;
  }

  /**
   * Creates epoch 1 of a new tenant's key. Called before the tenant row is written: a crash in
   * between leaves an unused key, which the next create of that tenant id reuses.
   */
  async createTenantKey(tenantId: string, now: number): Promise<void> {
    const existing = await this.store.tenantKeys(tenantId);
    if (existing.length > 0 && existing.every((k) => k.state === 'DESTROYED')) throw tenantErased(tenantId);
    const active = existing.find((k) => k.state === 'ACTIVE' && k.wrappedKey !== null);
    if (active) {
      // Left by a create that crashed before writing the tenant row: reuse it if it is readable,
      // otherwise (e.g. written under a root key no longer configured) replace it.
      const readable = await this.unwrapTenantKey(active).then(() => true, () => false);
      if (readable) return;
    }
    if (existing.length > 0) await this.store.deleteUnusedTenantKeys(tenantId);
    const material = Buffer.concat([randomBytes(KEY_BYTES), randomBytes(KEY_BYTES)]);
    await this.store.insertTenantKey({
      tenantId,
      epoch: 1,
      state: 'ACTIVE',
      wrappedKey: await this.root.wrap(material, { tenant: tenantId, epoch: 1 }),
      rootKeyId: this.root.activeKeyId,
      createdAt: now,
      destroyedAt: null,
    });
  }

  /** The tenant's keyring if this process holds it now (no promise: every write asks). */
  cachedTenantKeyring(tenantId: string): TenantKeyring | undefined {
    return this.tenantCache.get(tenantId);
  }

  /** The tenant's keyring; FAILED_PRECONDITION once shredded, UNAVAILABLE if unreadable (fail closed). */
  async tenantKeyring(tenantId: string): Promise<TenantKeyring> {
    const cached = this.tenantCache.get(tenantId);
    if (cached) return cached;
    const epochs = await this.store.tenantKeys(tenantId);
    const readable = epochs.filter((k) => k.state !== 'DESTROYED' && k.wrappedKey !== null);
    if (epochs.length > 0 && readable.length === 0) throw tenantErased(tenantId);
    const active = readable.filter((k) => k.state === 'ACTIVE').pop();
    if (!active) throw new DomainError('UNAVAILABLE', 'TENANT_KEY_UNAVAILABLE', 'the tenant key is unavailable');
    const wrappingKeys = new Map<number, jose.JWK.Key>();
    let secret: Buffer | null = null;
    for (const key of readable) {
      const material = await this.unwrapTenantKey(key);
      wrappingKeys.set(key.epoch, await aesKeyWrapKey(material.subarray(0, KEY_BYTES), `tenants/${tenantId}/keys/${key.epoch}`));
      if (key.epoch === active.epoch) secret = material.subarray(KEY_BYTES);
    }
    const keyring: TenantKeyring = {
      tenantId,
      epoch: active.epoch,
      wrappingKeys,
      indexKey: hmacKey(derive(secret!, 'consent-ledger/blind-index/v1')),
      requestKey: hmacKey(derive(secret!, 'consent-ledger/request-fingerprint/v1')),
      pageTokenKey: derive(secret!, 'consent-ledger/page-token/v1'),
    };
    this.tenantCache.set(tenantId, keyring);
    return keyring;
  }

  /**
   * Creates and stores a new subject's key, counting the `encryptions` the caller is about to
   * make. Called before the subject's rows are written (the key store is another database).
   */
  async createSubjectKey(tenantId: string, subjectId: string, now: number, encryptions: number): Promise<SubjectKey> {
    const key = randomBytes(KEY_BYTES);
    await this.underActiveEpoch(tenantId, async (keyring) => {
      const wrappedKey = await wrapKey(keyring.wrappingKeys.get(keyring.epoch)!, key, bindSubject(tenantId, subjectId, keyring.epoch));
      await this.store.insertSubjectKey({ tenantId, subjectId, epoch: keyring.epoch, wrappedKey, encryptions, createdAt: now });
    });
    return { kid: subjectKid(tenantId, subjectId), key };
  }

  /**
   * Runs `store`, which wraps keys under the keyring's active epoch and stores them. When that
   * epoch was rotated meanwhile (by another process, whose rotation this one's cached keyring
   * has not seen, or by a rotation here that began after the keyring was read), the key store
   * refuses (EpochNotActiveError) and nothing is stored: the keyring is read again and the keys
   * wrapped anew. A key stored under a retiring epoch would be missed by the re-wrap and lost
   * with the epoch.
   */
  private async underActiveEpoch(tenantId: string, store: (keyring: TenantKeyring) => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const keyring = await this.tenantKeyring(tenantId);
      try {
        await store(keyring);
        return;
      } catch (err) {
        if (!(err instanceof EpochNotActiveError)) throw err;
        this.tenantCache.delete(tenantId);
        this.signerCache.delete(tenantId);
        if (attempt >= EPOCH_ATTEMPTS) {
          throw new DomainError('UNAVAILABLE', 'TENANT_KEY_ROTATING', 'the tenant key changed while a key was stored; retry', {}, [], 1000);
        }
      }
    }
  }

  /** The subject's key; UNAVAILABLE when it cannot be read (fail closed, never plaintext). */
  async subjectKey(tenantId: string, subjectId: string): Promise<SubjectKey> {
    const cacheKey = `${tenantId}/${subjectId}`;
    const cached = this.subjectCache?.get(cacheKey);
    if (cached) return cached;
    const stored = await this.store.subjectKey(tenantId, subjectId);
    if (!stored) throw new DomainError('UNAVAILABLE', 'SUBJECT_KEY_UNAVAILABLE', 'the subject key is unavailable');
    let keyring = await this.tenantKeyring(tenantId);
    if (!keyring.wrappingKeys.has(stored.epoch)) {
      // Rotated since the keyring was cached: read the epochs again once.
      this.tenantCache.delete(tenantId);
      keyring = await this.tenantKeyring(tenantId);
    }
    const wrapping = keyring.wrappingKeys.get(stored.epoch);
    if (!wrapping) throw new DomainError('UNAVAILABLE', 'SUBJECT_KEY_UNAVAILABLE', 'the subject key is wrapped under an unknown epoch');
    const key = await unwrapOrUnavailable(() => unwrapKey(wrapping, stored.wrappedKey, bindSubject(tenantId, subjectId, stored.epoch)));
    const subjectKey = { kid: subjectKid(tenantId, subjectId), key };
    this.subjectCache?.set(cacheKey, subjectKey);
    return subjectKey;
  }

  /**
   * Counts `count` encryptions against the subject key before they are made; refuses past the
   * configured limit (FAILED_PRECONDITION KEY_USAGE_LIMIT_REACHED) and when the key is gone.
   * Served from this process's lease when it covers `count`; otherwise a new lease (or, near the
   * limit, exactly `count`) is counted in the key store first.
   */
  async reserveEncryptions(tenantId: string, subjectId: string, count: number): Promise<void> {
    const leaseKey = `${tenantId}/${subjectId}`;
    const lease = this.encryptionLeases.get(leaseKey);
    if (lease && lease.remaining >= count) {
      lease.remaining -= count;
      return;
    }
    const block = Math.max(count, ENCRYPTION_LEASE);
    const limit = this.limits.maxEncryptionsPerKey;
    if (await this.store.reserveEncryptions(tenantId, subjectId, block, limit)) {
      this.encryptionLeases.set(leaseKey, { remaining: block - count });
      return;
    }
    // Too close to the limit for a whole lease: count exactly what is needed.
    if (block > count && (await this.store.reserveEncryptions(tenantId, subjectId, count, limit))) {
      this.encryptionLeases.delete(leaseKey);
      return;
    }
    if (!(await this.store.subjectKey(tenantId, subjectId))) {
      throw new DomainError('UNAVAILABLE', 'SUBJECT_KEY_UNAVAILABLE', 'the subject key is unavailable');
    }
    throw failedPrecondition('KEY_USAGE_LIMIT_REACHED', 'the subject key has reached its encryption limit', {
      limit: String(limit),
    });
  }

  /**
   * Creates the keys of several new subjects in one key-store transaction, each with a lease of
   * encryptions of which `use` are taken now (the identifier, the first events' evidence). Called
   * before the subjects' rows are written, like createSubjectKey.
   */
  async createSubjectKeys(tenantId: string, subjects: Array<{ subjectId: string; use: number }>, now: number): Promise<Map<string, SubjectKey>> {
    const fresh: Array<{ subjectId: string; key: Buffer; lease: number; use: number }> = [];
    for (const { subjectId, use } of subjects) {
      const lease = Math.min(Math.max(use, ENCRYPTION_LEASE), this.limits.maxEncryptionsPerKey);
      if (use > lease) {
        throw failedPrecondition('KEY_USAGE_LIMIT_REACHED', 'the subject key has reached its encryption limit', { limit: String(this.limits.maxEncryptionsPerKey) });
      }
      fresh.push({ subjectId, key: freshRandom(KEY_BYTES), lease, use });
    }
    await this.underActiveEpoch(tenantId, async (keyring) => {
      const wrapping = keyring.wrappingKeys.get(keyring.epoch)!;
      const stored: StoredSubjectKey[] = [];
      for (const { subjectId, key, lease } of fresh) {
        stored.push({ tenantId, subjectId, epoch: keyring.epoch, wrappedKey: await wrapKey(wrapping, key, bindSubject(tenantId, subjectId, keyring.epoch)), encryptions: lease, createdAt: now });
      }
      await this.store.insertSubjectKeys(stored);
    });
    // Cached once stored: a key the store refused is never used.
    const created = new Map<string, SubjectKey>();
    for (const { subjectId, key, lease, use } of fresh) {
      const subjectKey = { kid: subjectKid(tenantId, subjectId), key };
      created.set(subjectId, subjectKey);
      this.subjectCache?.set(`${tenantId}/${subjectId}`, subjectKey);
      this.encryptionLeases.set(`${tenantId}/${subjectId}`, { remaining: lease - use });
    }
    return created;
  }

  /**
   * Destroys a subject's key and records the erasure in the key store's ledger (one key-store
   * transaction), and drops the key from this process's cache.
   */
  async destroySubjectKey(tenantId: string, subjectId: string, at: number): Promise<boolean> {
    this.forgetSubject(tenantId, subjectId);
    const deleted = await this.store.eraseSubject(tenantId, subjectId, at);
    this.forgetSubject(tenantId, subjectId);
    return deleted;
  }

  /** The erasure ledger, to replay onto data restored from a backup. */
  subjectErasures(): Promise<Array<{ tenantId: string; subjectId: string; erasedAt: number }>> {
    return this.store.subjectErasures();
  }

  /** Destroys every epoch of a tenant's key: all of its personal data is unreadable from now on. */
  async destroyTenantKeys(tenantId: string, at: number): Promise<number[]> {
    const epochs = await this.store.destroyTenantKeys(tenantId, at);
    await this.store.retireSigningKeys(tenantId, 'all');
    this.forgetTenant(tenantId);
    return epochs;
  }

  /**
   * Signs `payload` as a compact JWS (ES256) with the tenant's signing key of the active epoch,
   * creating that key on first use. The header names the key by `kid` only: verifiers take the
   * key from the published JWKS (GetPublicKeys), never from the token.
   */
  async sign(tenantId: string, payload: object, typ: string, now: number): Promise<string> {
    const key = await this.activeSigningKey(tenantId, now);
    const jws = await jose.JWS.createSign({ format: 'compact', fields: { typ, kid: key.kid } }, { key, reference: false } as unknown as jose.JWK.Key).update(JSON.stringify(payload)).final();
    return jws as unknown as string;
  }

  /**
   * Verifies a compact JWS this tenant signed (`sign`) with one of its signing keys that is not
   * destroyed, and that its header `typ` is `typ`; the payload, or null for anything else (another
   * tenant's token, another type, a forged or altered one, not a JWS at all). A key named by the
   * token itself is never used. The live keys are read from the key store on every call (a shred
   * or a new key of another process counts at once); only their import is cached.
   */
  async verify(tenantId: string, token: string, typ: string): Promise<unknown> {
    if (token.length > 8192 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) return null;
    const header = headerOf(token);
    if (!header || !hasCanonicalSignature(token, 'ES256')) return null;
    const keys = (await this.store.signingKeys(tenantId)).filter((k) => k.state !== 'DESTROYED');
    // The key the header names (`sign` always names one); without a kid, the tenant's first key.
    const stored = typeof header.kid === 'string' ? keys.find((k) => k.kid === header.kid) : header.kid === undefined ? keys[0] : undefined;
    if (!stored) return null;
    try {
      const key = await this.verificationKey(tenantId, stored.kid, stored.publicJwk);
      const result = await jose.JWS.createVerify(key, { algorithms: ['ES256'], allowEmbeddedKey: false }).verify(token);
      if ((result.header as { typ?: unknown }).typ !== typ) return null;
      return JSON.parse(result.payload.toString('utf8')) as unknown;
    } catch {
      return null;
    }
  }

  /** Whether the tenant's signing key `kid` exists and was destroyed (a rotation): what it signed can no longer be verified. */
  async signingKeyDestroyed(tenantId: string, kid: string): Promise<boolean> {
    return (await this.store.signingKeys(tenantId)).some((k) => k.kid === kid && k.state === 'DESTROYED');
  }

  /** The imported public key of a signing key, imported once per cache period (the stored JWK decides). */
  private async verificationKey(tenantId: string, kid: string, publicJwk: string): Promise<jose.JWK.Key> {
    const cacheKey = `${tenantId}/${kid}`;
    const cached = this.verifierCache.get(cacheKey);
    if (cached?.publicJwk === publicJwk) return cached.key;
    const key = await jose.JWK.asKey(JSON.parse(publicJwk) as object);
    this.verifierCache.set(cacheKey, { publicJwk, key });
    return key;
  }

  /** The tenant's public signing keys (active and retired) as a JWK set; the active one is created if missing. */
  async publicKeys(tenantId: string, now: number): Promise<{ keys: object[] }> {
    await this.activeSigningKey(tenantId, now);
    const keys = await this.store.signingKeys(tenantId);
    return { keys: keys.filter((k) => k.state !== 'DESTROYED').map((k) => JSON.parse(k.publicJwk) as object) };
  }

  private async activeSigningKey(tenantId: string, now: number): Promise<jose.JWK.Key> {
    const cached = this.signerCache.get(tenantId);
    if (cached) return cached;
    let key: jose.JWK.Key | undefined;
    await this.underActiveEpoch(tenantId, async (keyring) => {
      const wrapping = keyring.wrappingKeys.get(keyring.epoch)!;
      const bind = { tenant: tenantId, epoch: keyring.epoch, use: 'signing' };
      const stored = (await this.store.signingKeys(tenantId)).filter((k) => k.state === 'ACTIVE' && k.epoch === keyring.epoch).pop();
      if (stored?.wrappedPrivateKey) {
        const jwk = await unwrapOrUnavailable(() => unwrapKey(wrapping, stored.wrappedPrivateKey!, bind));
        key = await jose.JWK.asKey(JSON.parse(jwk.toString('utf8')) as object);
        return;
      }
      const made = await jose.JWK.createKeyStore().generate('EC', 'P-256', { alg: 'ES256', use: 'sig' });
      await this.store.insertSigningKey({
        tenantId,
        kid: made.kid,
        epoch: keyring.epoch,
        state: 'ACTIVE',
        wrappedPrivateKey: await wrapKey(wrapping, Buffer.from(JSON.stringify(made.toJSON(true))), bind),
        publicJwk: JSON.stringify(made.toJSON()),
        createdAt: now,
      });
      key = made;
    });
    this.signerCache.set(tenantId, key!);
    return key!;
  }

  /**
   * Opens a new epoch: a new key-encryption key, the tenant secret carried over. The previous
   * active epoch becomes RETIRING until rewrapSubjectKeys has moved every subject key off it.
   */
  async openEpoch(tenantId: string, now: number): Promise<{ from: number; to: number }> {
    const epochs = await this.store.tenantKeys(tenantId);
    const active = epochs.filter((k) => k.state === 'ACTIVE').pop();
    if (!active) {
      if (epochs.length > 0 && epochs.every((k) => k.state === 'DESTROYED')) throw tenantErased(tenantId);
      throw new DomainError('UNAVAILABLE', 'TENANT_KEY_UNAVAILABLE', 'the tenant key is unavailable');
    }
    const secret = (await this.unwrapTenantKey(active)).subarray(KEY_BYTES);
    const to = Math.max(...epochs.map((k) => k.epoch)) + 1;
    const material = Buffer.concat([randomBytes(KEY_BYTES), secret]);
    // One key-store transaction: a crash leaves either no new epoch or the new one ACTIVE and
    // every earlier one RETIRING (also any other epoch left ACTIVE by a process before this fix).
    await this.store.openTenantKeyEpoch({
      tenantId,
      epoch: to,
      state: 'ACTIVE',
      wrappedKey: await this.root.wrap(material, { tenant: tenantId, epoch: to }),
      rootKeyId: this.root.activeKeyId,
      createdAt: now,
      destroyedAt: null,
    });
    this.forgetTenant(tenantId);
    return { from: active.epoch, to };
  }

  /**
   * Re-wraps every subject key of the retiring epochs under the active one, in batches, then
   * destroys the retiring epochs. Reads and writes go on meanwhile: a subject key is readable
   * under either epoch until its row is switched, and new subject keys use the new epoch.
   */
  async rewrapSubjectKeys(tenantId: string, now: () => number, onProgress: (p: RewrapProgress) => Promise<void> | void): Promise<number[]> {
    this.forgetTenant(tenantId);
    const keyring = await this.tenantKeyring(tenantId);
    const epochs = await this.store.tenantKeys(tenantId);
    const retiring = epochs.filter((k) => k.state === 'RETIRING').map((k) => k.epoch);
    let total = 0;
    for (const epoch of retiring) total += await this.store.countSubjectKeys(tenantId, epoch);
    const progress = { total, done: 0 };
    await onProgress(progress);
    const target = keyring.wrappingKeys.get(keyring.epoch)!;
    for (const epoch of retiring) {
      const source = keyring.wrappingKeys.get(epoch);
      if (!source) throw new DomainError('UNAVAILABLE', 'TENANT_KEY_UNAVAILABLE', 'a retiring tenant key epoch is unavailable');
      for (;;) {
        const batch = await this.store.subjectKeysOfEpoch(tenantId, epoch, 200);
        if (batch.length === 0) break;
        for (const stored of batch) {
          const key = await unwrapOrUnavailable(() => unwrapKey(source, stored.wrappedKey, bindSubject(tenantId, stored.subjectId, epoch)));
          const wrapped = await wrapKey(target, key, bindSubject(tenantId, stored.subjectId, keyring.epoch));
          // A key erased meanwhile stays erased: the update only matches a row still under `epoch`.
          await this.store.rewrapSubjectKey(tenantId, stored.subjectId, epoch, keyring.epoch, wrapped);
          progress.done++;
        }
        await onProgress(progress);
      }
      await this.store.updateTenantKey(tenantId, epoch, { state: 'DESTROYED', wrappedKey: null, destroyedAt: now() });
      // Its signing key can no longer sign; its public half stays published for old receipts.
      await this.store.retireSigningKeys(tenantId, [epoch]);
    }
    this.forgetTenant(tenantId);
    return retiring;
  }

  /** Re-wraps every tenant's live epochs under the active root key; returns the epochs changed. */
  async rewrapAllUnderActiveRoot(): Promise<number> {
    let changed = 0;
    for (const tenantId of await this.store.tenantIds()) changed += await this.rewrapUnderActiveRoot(tenantId);
    return changed;
  }

  /** Re-wraps a tenant's live epochs under the active root key (after a root-key rotation). */
  async rewrapUnderActiveRoot(tenantId: string): Promise<number> {
    let changed = 0;
    for (const key of await this.store.tenantKeys(tenantId)) {
      if (key.wrappedKey === null || key.rootKeyId === this.root.activeKeyId) continue;
      const material = await this.unwrapTenantKey(key);
      const wrappedKey = await this.root.wrap(material, { tenant: tenantId, epoch: key.epoch });
      await this.store.updateTenantKey(tenantId, key.epoch, { wrappedKey, rootKeyId: this.root.activeKeyId });
      changed++;
    }
    return changed;
  }

  /** The key epochs of a tenant as stored (no key material). */
  async tenantKeyInfo(tenantId: string): Promise<Array<Omit<StoredTenantKey, 'wrappedKey'> & { subjectKeys: number; encryptions: number }>> {
    const epochs = await this.store.tenantKeys(tenantId);
    const usage = await this.store.subjectKeyUsage(tenantId);
    return epochs.map(({ wrappedKey: _material, ...info }) => ({
      ...info,
      subjectKeys: usage.get(info.epoch)?.keys ?? 0,
      encryptions: usage.get(info.epoch)?.encryptions ?? 0,
    }));
  }

  /**
   * HMAC-SHA256 blind index of a normalised identifier (kind and value, as the domain normalises
   * them): equal identifiers, equal index; not reversible without the tenant key.
   */
  blindIndex(keyring: TenantKeyring, identifier: { kind: string; value: string }): string {
    return hmacSha256Hex(keyring.indexKey, blindIndexInput(identifier));
  }

  /**
   * blindIndex of each identifier, in order; for the bulk check calls, whose hashes are computed
   * on worker threads when the process has them (BlindIndexWorkers) and the call is large enough.
   */
  blindIndexes(keyring: TenantKeyring, identifiers: Array<{ kind: string; value: string }>): string[] | Promise<string[]> {
    const inputs = identifiers.map(blindIndexInput);
    if (!this.bulkHashing) return inputs.map((input) => hmacSha256Hex(keyring.indexKey, input));
    return this.bulkHashing.hmacHexAll(keyring.indexKey, inputs);
  }

  /**
   * What an erasure leaves in place of a blind index in the rows that pair it with the erased
   * person (SubjectRepository.sealIdentifierReferences): a keyed hash of it, which matches no
   * tombstone and no identifier row, yet lets a retry of the same request be recognised
   * (compared with this of the retry's own blind index).
   */
  erasedReference(keyring: TenantKeyring, blindIndex: string): string {
    return hmacSha256Hex(keyring.requestKey, `erased-reference/v1\u0000${blindIndex}`);
  }

  /** Keyed fingerprint of a request (may contain personal data, so never a plain hash). */
  requestFingerprint(keyring: TenantKeyring, canonicalRequest: string): string {
    return hmacSha256Hex(keyring.requestKey, canonicalRequest);
  }

  /** Seals page tokens of one listing under the tenant's page-token key. */
  pageTokenSealer(keyring: TenantKeyring, listing: string): TokenSealer {
    const context: FieldContext = { tenant: keyring.tenantId, subject: '-', table: 'page_token', column: listing, row: '-' };
    const kid = `tenants/${keyring.tenantId}/keys/page-token`;
    return {
      seal: (plaintext) => encryptField(keyring.pageTokenKey, kid, context, plaintext),
      open: (token) => {
        try {
          return decryptField(keyring.pageTokenKey, context, token);
        } catch {
          return null;
        }
      },
    };
  }

  /** Deletes up to `limit` subject keys of a shredded tenant (unreadable already: this is tidying). */
  purgeSubjectKeys(tenantId: string, limit: number): Promise<number> {
    return this.store.purgeSubjectKeys(tenantId, limit);
  }

  forgetSubject(tenantId: string, subjectId: string): void {
    this.subjectCache?.delete(`${tenantId}/${subjectId}`);
    this.encryptionLeases.delete(`${tenantId}/${subjectId}`);
  }

  forgetTenant(tenantId: string): void {
    this.tenantCache.delete(tenantId);
    this.signerCache.delete(tenantId);
    for (const key of this.verifierCache.keys()) if (key.startsWith(`${tenantId}/`)) this.verifierCache.delete(key);
    if (!this.subjectCache) return;
    for (const key of this.subjectCache.keys()) if (key.startsWith(`${tenantId}/`)) this.subjectCache.delete(key);
  }

  /**
   * Refuses to let the service start when its root keys cannot unwrap the tenant keys already
   * stored: every root key id a live tenant key epoch was wrapped under must be configured, and one
   * epoch per root key id is unwrapped to prove the key under that id is the right one (a
   * development key generated again gets the same date-based id). Starting anyway would fail every
   * call of those tenants with KEY_UNWRAP_FAILED. Never reveals key material.
   */
  async checkRootKeysCoverStoredKeys(): Promise<void> {
    const configured = this.root.keyIds();
    const missing = new Map<string, Set<string>>();
    const tried = new Set<string>();
    const wrongMaterial = new Map<string, string>();
    for (const tenantId of await this.store.tenantIds()) {
      for (const key of await this.store.tenantKeys(tenantId)) {
        if (key.wrappedKey === null) continue;
        if (!configured.includes(key.rootKeyId)) {
          if (!missing.has(key.rootKeyId)) missing.set(key.rootKeyId, new Set());
          missing.get(key.rootKeyId)!.add(tenantId);
          continue;
        }
        if (tried.has(key.rootKeyId)) continue;
        tried.add(key.rootKeyId);
        const readable = await this.root.unwrap(key.wrappedKey, { tenant: key.tenantId, epoch: key.epoch }).then(() => true, () => false);
        if (!readable) wrongMaterial.set(key.rootKeyId, `tenants/${tenantId}`);
      }
    }
    if (missing.size === 0 && wrongMaterial.size === 0) return;
    throw new RootKeysDoNotCoverStoredKeys(configured, [...missing].map(([id, tenants]) => ({ id, tenants: [...tenants] })), [...wrongMaterial].map(([id, tenant]) => ({ id, tenant })));
  }

  private unwrapTenantKey(key: StoredTenantKey): Promise<Buffer> {
    if (!this.root.keyIds().includes(key.rootKeyId)) {
      // Said precisely, since it is a configuration error an operator fixes: which root key is
      // needed, and which are configured. Ids only, never material.
      return Promise.reject(
        new DomainError(
          'UNAVAILABLE',
          'KEY_UNWRAP_FAILED',
          `the key of tenants/${key.tenantId} (epoch ${key.epoch}) is wrapped under root key "${key.rootKeyId}", which is not among the configured root keys (${this.root.keyIds().join(', ')})`,
          { root_key_id: key.rootKeyId, tenant: `tenants/${key.tenantId}`, epoch: String(key.epoch), configured_root_key_ids: this.root.keyIds().join(',') },
        ),
      );
    }
    return unwrapOrUnavailable(() => this.root.unwrap(key.wrappedKey!, { tenant: key.tenantId, epoch: key.epoch }), {
      message: `the key of tenants/${key.tenantId} (epoch ${key.epoch}) could not be unwrapped with root key "${key.rootKeyId}": the configured key under that id is not the one it was wrapped with`,
      metadata: { root_key_id: key.rootKeyId, tenant: `tenants/${key.tenantId}`, epoch: String(key.epoch) },
    });
  }
}

/**
 * The configured root keys cannot unwrap tenant keys already stored (start refused). Names the
 * root key ids needed and configured, and a few tenants per missing id; never key material.
 */
export class RootKeysDoNotCoverStoredKeys extends Error {
  constructor(
    readonly configured: string[],
    readonly missing: Array<{ id: string; tenants: string[] }>,
    readonly wrongMaterial: Array<{ id: string; tenant: string }>,
  ) {
    const problems = [
      ...missing.map(
        (m) =>
          `root key "${m.id}" is needed by ${m.tenants.length} tenant(s) (${m.tenants.slice(0, 5).map((t) => `tenants/${t}`).join(', ')}${m.tenants.length > 5 ? ', ...' : ''}) but is not configured`,
      ),
      ...wrongMaterial.map((w) => `root key "${w.id}" is configured, but it is not the key the tenant keys were wrapped with (it cannot unwrap ${w.tenant}'s key)`),
    ];
    super(
      `the configured root keys cannot unwrap the tenant keys in the key store: ${problems.join('; ')}. ` +
        `Configured root key ids: ${configured.join(', ') || '(none)'}. ` +
        'Configure the root key set they were wrapped with (ROOT_KEYS_FILE or ROOT_KEYS_JSON; a development install keeps it in DATA_DIR/root-keys.dev.json), see docs/keys.md',
    );
    this.name = 'RootKeysDoNotCoverStoredKeys';
  }
}

async function unwrapOrUnavailable(unwrap: () => Promise<Buffer>, said: { message: string; metadata: Record<string, string> } = { message: 'a key could not be unwrapped', metadata: {} }): Promise<Buffer> {
  try {
    return await unwrap();
  } catch {
    // The cause may describe key material; it is deliberately not passed on.
    throw new DomainError('UNAVAILABLE', 'KEY_UNWRAP_FAILED', said.message, said.metadata);
  }
}

/** The protected header of a compact JWS, or null when it is not a JSON object. */
function headerOf(token: string): { kid?: unknown } | null {
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && !Array.isArray(header) ? (header as { kid?: unknown }) : null;
  } catch {
    return null;
  }
}

function tenantErased(tenantId: string): DomainError {
  return failedPrecondition('TENANT_ERASED', `tenants/${tenantId} was erased`, { tenant: `tenants/${tenantId}` });
}

function derive(material: Buffer, info: string): Buffer {
  return hkdfSha256(material, Buffer.alloc(0), info, 32);
}

function bindSubject(tenantId: string, subjectId: string, epoch: number): Record<string, string | number> {
  return { tenant: tenantId, subject: subjectId, epoch };
}

function subjectKid(tenantId: string, subjectId: string): string {
  return `tenants/${tenantId}/subjects/${subjectId}/key`;
}
