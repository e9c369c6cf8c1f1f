import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import jose from 'node-jose';
import { LRUCache } from 'lru-cache';
import { DomainError } from '../domain/errors';
import { TxContext } from '../domain/ports';
import { IdentifierRef } from '../domain/model';
import { TokenSealer } from '../domain/pagination';
import { decryptField, encryptField, FieldContext } from './field-cipher';
import { aesKeyWrapKey, unwrapKey, wrapKey } from './jose';
import { KeyStore } from './key-store';
import { RootKeyProvider } from './root-key-provider';

/** A tenant's unwrapped key of one epoch and the keys derived from it. Never leaves this process. */
export interface TenantKeyring {
  tenantId: string;
  epoch: number;
  /** Wraps subject keys (A256KW). */
  wrappingKey: jose.JWK.Key;
  /** HMAC key of the identifier blind index. */
  indexKey: Buffer;
  /** HMAC key of request fingerprints (idempotency), separate from the index key. */
  requestKey: Buffer;
  /** AES-256-GCM key of page tokens. */
  pageTokenKey: Buffer;
}

/** A subject's data key, ready for field encryption. */
export interface SubjectKey {
  kid: string;
  key: Buffer;
}

export interface KeyCacheLimits {
  subjectKeyCacheSize: number;
  subjectKeyCacheTtlMs: number;
}

const KEY_BYTES = 32;

/**
 * Holds the key hierarchy root -> tenant (per epoch) -> subject, and derives the blind-index
 * and request-fingerprint keys from the tenant key with HKDF. Unwrapped keys are cached in
 * bounded LRU caches (size and age), so an erased key cannot linger in memory for long.
 */
export class KeyManager {
  private readonly tenantCache: LRUCache<string, TenantKeyring>;
  private readonly subjectCache: LRUCache<string, SubjectKey> | null;

  constructor(
    private readonly root: RootKeyProvider,
    private readonly store: KeyStore,
    limits: KeyCacheLimits,
  ) {
    const ttl = Math.max(limits.subjectKeyCacheTtlMs, 1);
    this.tenantCache = new LRUCache({ max: 1000, ttl });
    this.subjectCache =
      limits.subjectKeyCacheSize > 0 && limits.subjectKeyCacheTtlMs > 0
        ? new LRUCache({ max: limits.subjectKeyCacheSize, ttl })
        : null;
  }

  /** Creates epoch 1 of a new tenant's key inside the tenant-creating transaction. */
  async createTenantKey(tx: TxContext, tenantId: string, now: number): Promise<void> {
    const material = randomBytes(KEY_BYTES);
    const epoch = 1;
    const wrappedKey = await this.root.wrap(material, { tenant: tenantId, epoch });
    await this.store.insertTenantKey(tx, { tenantId, epoch, wrappedKey, rootKeyId: this.root.activeKeyId, createdAt: now });
  }

  /** The tenant's current keyring; UNAVAILABLE if its key cannot be read (fail closed). */
  async tenantKeyring(tenantId: string): Promise<TenantKeyring> {
    const cached = this.tenantCache.get(tenantId);
    if (cached) return cached;
    const stored = await this.store.activeTenantKey(tenantId);
    if (!stored) throw new DomainError('UNAVAILABLE', 'TENANT_KEY_UNAVAILABLE', 'the tenant key is unavailable');
    const material = await this.unwrapOrUnavailable(() => this.root.unwrap(stored.wrappedKey, { tenant: tenantId, epoch: stored.epoch }));
    const keyring: TenantKeyring = {
      tenantId,
      epoch: stored.epoch,
      wrappingKey: await aesKeyWrapKey(material, `tenants/${tenantId}/keys/${stored.epoch}`),
      indexKey: derive(material, 'consent-ledger/blind-index/v1'),
      requestKey: derive(material, 'consent-ledger/request-fingerprint/v1'),
      pageTokenKey: derive(material, 'consent-ledger/page-token/v1'),
    };
    this.tenantCache.set(tenantId, keyring);
    return keyring;
  }

  /** Creates and stores a new subject's key in `tx`. */
  async createSubjectKey(tx: TxContext, tenantId: string, subjectId: string, now: number): Promise<SubjectKey> {
    const keyring = await this.tenantKeyring(tenantId);
    const key = randomBytes(KEY_BYTES);
    const wrappedKey = await wrapKey(keyring.wrappingKey, key, bindSubject(tenantId, subjectId, keyring.epoch));
    await this.store.insertSubjectKey(tx, { tenantId, subjectId, epoch: keyring.epoch, wrappedKey, createdAt: now });
    return { kid: subjectKid(tenantId, subjectId), key };
  }

  /** The subject's key; UNAVAILABLE when it cannot be read (fail closed, never plaintext). */
  async subjectKey(tenantId: string, subjectId: string, tx?: TxContext): Promise<SubjectKey> {
    const cacheKey = `${tenantId}/${subjectId}`;
    const cached = this.subjectCache?.get(cacheKey);
    if (cached) return cached;
    const stored = await this.store.subjectKey(tenantId, subjectId, tx);
    if (!stored) throw new DomainError('UNAVAILABLE', 'SUBJECT_KEY_UNAVAILABLE', 'the subject key is unavailable');
    const keyring = await this.tenantKeyring(tenantId);
    if (stored.epoch !== keyring.epoch) {
      throw new DomainError('UNAVAILABLE', 'SUBJECT_KEY_UNAVAILABLE', 'the subject key is wrapped under an unknown epoch');
    }
    const key = await this.unwrapOrUnavailable(() =>
      unwrapKey(keyring.wrappingKey, stored.wrappedKey, bindSubject(tenantId, subjectId, stored.epoch)),
    );
    const subjectKey = { kid: subjectKid(tenantId, subjectId), key };
    this.subjectCache?.set(cacheKey, subjectKey);
    return subjectKey;
  }

  /** HMAC-SHA256 blind index of a normalised identifier: equal identifiers, equal index; not reversible without the tenant key. */
  blindIndex(keyring: TenantKeyring, identifier: IdentifierRef): string {
    return createHmac('sha256', keyring.indexKey).update(`${identifier.kind}\u0000${identifier.value}`).digest('hex');
  }

  /** Keyed fingerprint of a request (may contain personal data, so never a plain hash). */
  requestFingerprint(keyring: TenantKeyring, canonicalRequest: string): string {
    return createHmac('sha256', keyring.requestKey).update(canonicalRequest).digest('hex');
  }

  /** Seals page tokens of one listing under the tenant's page-token key. */
  pageTokenSealer(keyring: TenantKeyring, listing: string): TokenSealer {
    const context: FieldContext = { tenant: keyring.tenantId, subject: '-', table: 'page_token', column: listing, row: '-' };
    const kid = `tenants/${keyring.tenantId}/keys/${keyring.epoch}/page-token`;
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

  /** Drops a subject's cached key (erasure will call this). */
  forgetSubject(tenantId: string, subjectId: string): void {
    this.subjectCache?.delete(`${tenantId}/${subjectId}`);
  }

  private async unwrapOrUnavailable(unwrap: () => Promise<Buffer>): Promise<Buffer> {
    try {
      return await unwrap();
    } catch {
      // The cause may describe key material; it is deliberately not passed on.
      throw new DomainError('UNAVAILABLE', 'KEY_UNWRAP_FAILED', 'a key could not be unwrapped');
    }
  }
}

function derive(material: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', material, Buffer.alloc(0), info, 32));
}

function bindSubject(tenantId: string, subjectId: string, epoch: number): Record<string, string | number> {
  return { tenant: tenantId, subject: subjectId, epoch };
}

function subjectKid(tenantId: string, subjectId: string): string {
  return `tenants/${tenantId}/subjects/${subjectId}/key`;
}
