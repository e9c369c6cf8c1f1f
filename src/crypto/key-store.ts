/** Lifecycle of a tenant key epoch. */
export type TenantKeyState = 'ACTIVE' | 'RETIRING' | 'DESTROYED';

/** A tenant key (KEK) of one epoch, as stored: only wrapped by a root key; null once destroyed. */
export interface StoredTenantKey {
  tenantId: string;
  epoch: number;
  state: TenantKeyState;
  wrappedKey: string | null;
  rootKeyId: string;
  createdAt: number;
  destroyedAt: number | null;
}

/** A subject key (DEK), as stored: only wrapped by its tenant's key of `epoch`. */
export interface StoredSubjectKey {
  tenantId: string;
  subjectId: string;
  epoch: number;
  wrappedKey: string;
  /** AES-GCM encryptions made with the key so far. */
  encryptions: number;
  createdAt: number;
}

/** A tenant signing key: the private JWK wrapped by the tenant key of `epoch`, the public JWK in clear. */
export interface StoredSigningKey {
  tenantId: string;
  kid: string;
  epoch: number;
  state: 'ACTIVE' | 'RETIRED' | 'DESTROYED';
  wrappedPrivateKey: string | null;
  publicJwk: string;
  createdAt: number;
}

/**
 * A key was to be wrapped under a tenant key epoch that is no longer ACTIVE: another process (or
 * an earlier call of this one) rotated the tenant's key since the wrapping key was read. Nothing
 * was stored; wrap again under the active epoch. Storing it would leave a key that the rotation
 * in progress does not move and that is lost when the retiring epoch is destroyed.
 */
export class EpochNotActiveError extends Error {
  constructor(
    readonly tenantId: string,
    readonly epoch: number,
  ) {
    super(`tenant key epoch ${epoch} is no longer active`);
    this.name = 'EpochNotActiveError';
  }
}

/**
 * The key store: wrapped keys, kept in a database of their own (KEYSTORE_URL), never in the data
 * database. Each call is its own transaction; callers order their writes so that a crash leaves
 * at worst an unused key behind, never data without a key or a key for erased data.
 */
export interface KeyStore {
  insertTenantKey(key: StoredTenantKey): Promise<void>;
  /**
   * Opens a new epoch in one transaction: inserts `key` (ACTIVE) and marks every other ACTIVE
   * epoch of the tenant RETIRING; returns those epochs. Subject and signing keys wrapped under an
   * epoch are stored only while it is ACTIVE (EpochNotActiveError), under a lock this waits for:
   * once it commits, no key can join a retiring epoch behind the re-wrap's back.
   */
  openTenantKeyEpoch(key: StoredTenantKey): Promise<number[]>;
  /** Every tenant that has key epochs. */
  tenantIds(): Promise<string[]>;
  /** Every epoch of a tenant's key, oldest first (destroyed ones too, without key material). */
  tenantKeys(tenantId: string): Promise<StoredTenantKey[]>;
  updateTenantKey(tenantId: string, epoch: number, change: Partial<Pick<StoredTenantKey, 'state' | 'wrappedKey' | 'rootKeyId' | 'destroyedAt'>>): Promise<void>;
  /** Deletes a tenant's key rows outright: only for keys no tenant row ever used (a crashed create). */
  deleteUnusedTenantKeys(tenantId: string): Promise<void>;
  /** Destroys every epoch of a tenant's key at once; returns the epochs destroyed now. */
  destroyTenantKeys(tenantId: string, at: number): Promise<number[]>;
  /** Stores a subject key; EpochNotActiveError when its epoch is not ACTIVE (then nothing is stored). */
  insertSubjectKey(key: StoredSubjectKey): Promise<void>;
  /** Inserts several subject keys (all of one tenant and epoch) in one transaction; EpochNotActiveError as insertSubjectKey. */
  insertSubjectKeys(keys: StoredSubjectKey[]): Promise<void>;
  subjectKey(tenantId: string, subjectId: string): Promise<StoredSubjectKey | null>;
  /** Deletes a subject's key; false if there was none. */
  deleteSubjectKey(tenantId: string, subjectId: string): Promise<boolean>;
  /** Adds `count` to the key's encryptions unless that passes `limit`; false when refused or gone. */
  reserveEncryptions(tenantId: string, subjectId: string, count: number, limit: number): Promise<boolean>;
  /** Subject keys still wrapped under `epoch`, up to `limit` (for re-wrapping). */
  subjectKeysOfEpoch(tenantId: string, epoch: number, limit: number): Promise<StoredSubjectKey[]>;
  /** Replaces a subject key's wrapping if it is still under `fromEpoch`; false if it changed meanwhile. */
  rewrapSubjectKey(tenantId: string, subjectId: string, fromEpoch: number, toEpoch: number, wrappedKey: string): Promise<boolean>;
  countSubjectKeys(tenantId: string, epoch?: number): Promise<number>;
  /** Subject keys and their summed encryption counts per epoch. */
  subjectKeyUsage(tenantId: string): Promise<Map<number, { keys: number; encryptions: number }>>;
  /** Deletes up to `limit` subject keys of a tenant (purge after a tenant shred); returns how many. */
  purgeSubjectKeys(tenantId: string, limit: number): Promise<number>;
  /** Records a subject erasure (idempotent) and deletes the subject key, in one key-store transaction. */
  eraseSubject(tenantId: string, subjectId: string, at: number): Promise<boolean>;
  /** Every recorded subject erasure, oldest first. */
  subjectErasures(): Promise<Array<{ tenantId: string; subjectId: string; erasedAt: number }>>;
  /** Stores a signing key; EpochNotActiveError when its epoch is not ACTIVE. */
  insertSigningKey(key: StoredSigningKey): Promise<void>;
  signingKeys(tenantId: string): Promise<StoredSigningKey[]>;
  /** Retires signing keys of `epochs` (private part deleted, public part kept), or destroys all when `epochs` is 'all'. */
  retireSigningKeys(tenantId: string, epochs: number[] | 'all'): Promise<void>;
}
