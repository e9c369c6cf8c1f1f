import { TxContext } from '../shared/unit-of-work';

/**
 * One audit entry. No personal data: opaque ids, kinds, hashes. `payloadSha256` is the SHA-256 of
 * the encrypted payload it describes (e.g. an event's evidence ciphertext), so the entry stays
 * verifiable after the payload became unreadable by erasure.
 */
export interface AuditEntry {
  type: string;
  time: number;
  principal: string;
  subject?: string;
  purpose?: string;
  channel?: string;
  noticeSha256?: string;
  payloadSha256?: string;
  ref?: string;
  /** Consent events: when the person acted, and when the consent lapses; what the rules read. */
  eventTime?: number;
  expireTime?: number;
  /** Consent events: SHA-256 of the stored row (eventRecordSha256), so a rewritten row is detected. */
  recordSha256?: string;
}

/** What an audit listing may be narrowed to; every given field must match. */
export interface AuditEntryFilter {
  /** Any of these entry types. */
  types?: string[];
  subjectId?: string;
  purposeId?: string;
  principal?: string;
  /** Entry time range, [startTime, endTime). */
  startTime?: number;
  endTime?: number;
  /** Only positions below this (a tree size read before): entries appended meanwhile stay out. */
  beforeSeq?: number;
}

/** An entry as stored: its position, the hashed bytes and the leaf hash. */
export interface StoredAuditEntry {
  seq: number;
  entryJson: string;
  leafHash: string;
  /** Set when the columns the entry is found by disagree with its JSON (changed behind the service). */
  indexProblem?: string;
}

/** Appends an entry to the tenant's audit log inside the transaction that makes the change. */
export interface AuditTrail {
  append(tx: TxContext, tenantId: string, entry: AuditEntry): Promise<number>;
  /**
   * Takes the tenant's head lock, runs `write` (which inserts the rows the entries vouch for) and
   * appends the entries it returns, in order; returns the first one's sequence number. Rows
   * written this way are inserted in the order of their entries, whatever transactions
   * interleave: the lock orders both (docs/audit.md, "Order").
   */
  appendAfter(tx: TxContext, tenantId: string, write: () => Promise<AuditEntry[]>): Promise<number>;
  /** The committed size of the tenant's log as `tx` sees it, without locking (a consistency token's position). */
  committedSize(tx: TxContext, tenantId: string): Promise<number>;
}

/** A signed checkpoint as kept (periodic ones). */
export interface CheckpointRecord {
  tenantId: string;
  treeSize: number;
  rootHash: string;
  signedAt: number;
  jws: string;
}

export interface AuditRepository {
  /** The tenant's log size, locked until the transaction ends (appends are serialised per tenant). */
  lockHead(tx: TxContext, tenantId: string): Promise<number>;
  setSize(tx: TxContext, tenantId: string, size: number): Promise<void>;
  /** The size without locking (readers). */
  size(tx: TxContext, tenantId: string): Promise<number>;
  /** Stores entries' hashed JSON and leaf hashes, and their filterable fields beside them. */
  insertEntries(tx: TxContext, tenantId: string, entries: Array<{ seq: number; entry: AuditEntry; entryJson: string; leafHash: string }>): Promise<void>;
  /** Stores complete subtrees' hashes (level L, index i covers leaves [i*2^L, (i+1)*2^L)). */
  insertNodes(tx: TxContext, tenantId: string, nodes: Array<{ level: number; index: number; hash: string }>): Promise<void>;
  /**
   * The stored hashes of the subtrees of `level` with indexes in [from, to), for several ranges
   * in one read, keyed by `${level}:${index}` (hex); missing ones are absent.
   */
  subtreeHashes(tx: TxContext, tenantId: string, ranges: Array<{ level: number; from: number; to: number }>): Promise<Map<string, string>>;
  /** Entries from `fromSeq` on, in order, that match `filter`. */
  entries(tx: TxContext, tenantId: string, fromSeq: number, limit: number, filter?: AuditEntryFilter): Promise<StoredAuditEntry[]>;
  /** How many entries match `filter`. */
  count(tx: TxContext, tenantId: string, filter: AuditEntryFilter): Promise<number>;
  /** Keeps a checkpoint; a second one of the same size (another process signed it first) is dropped. */
  insertCheckpoint(tx: TxContext, checkpoint: CheckpointRecord): Promise<void>;
  /** Kept checkpoints, largest first, below `beforeSize` when given. */
  checkpoints(tx: TxContext, tenantId: string, beforeSize: number | null, limit: number): Promise<CheckpointRecord[]>;
  /** Tenants (not erased) whose log grew since their last kept checkpoint. */
  tenantsWithoutLatestCheckpoint(tx: TxContext): Promise<string[]>;
}
