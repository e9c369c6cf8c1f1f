import { TxContext } from '../domain/ports';

/** A tenant key (KEK) of one epoch, as stored: only wrapped by a root key. */
export interface StoredTenantKey {
  tenantId: string;
  epoch: number;
  wrappedKey: string;
  rootKeyId: string;
  createdAt: number;
}

/** A subject key (DEK), as stored: only wrapped by its tenant's key of `epoch`. */
export interface StoredSubjectKey {
  tenantId: string;
  subjectId: string;
  epoch: number;
  wrappedKey: string;
  createdAt: number;
}

/**
 * Persists wrapped keys. Kept behind its own interface so that it can move to a store separate
 * from the data database (the key-lifecycle work) without touching the domain.
 */
export interface KeyStore {
  insertTenantKey(tx: TxContext, key: StoredTenantKey): Promise<void>;
  /** The newest epoch of a tenant's key, or null if the tenant has none. */
  activeTenantKey(tenantId: string): Promise<StoredTenantKey | null>;
  insertSubjectKey(tx: TxContext, key: StoredSubjectKey): Promise<void>;
  /** Reads inside `tx` when given, so a key created earlier in the same transaction is found. */
  subjectKey(tenantId: string, subjectId: string, tx?: TxContext): Promise<StoredSubjectKey | null>;
}
