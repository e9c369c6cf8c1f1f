import { AuditEntry, AuditEntryFilter, AuditRepository, AuditTrail, CheckpointRecord, StoredAuditEntry } from './audit-types';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { entryJsonOf } from './entry-json';
import { EMPTY_ROOT, leafHashHex, nodeHash, nodeHashHex, split } from './merkle';

/**
 * Levels of complete subtrees kept in `audit_nodes`: the leaves (level 0) and every
 * NODE_STRIDE-th level above them (4, 8, 12, ...); a subtree of a level in between is computed
 * from at most 2^(NODE_STRIDE-1) kept ones of the kept level below it. So an append writes 1 + 1/15
 * node rows per entry on average instead of two (every level was stored before), and a root or
 * proof reads a few short ranges of rows instead of single rows. The leaves stay in rows of their
 * own beside the entries: an entry rewritten in `audit_entries` together with its leaf hash still
 * does not match the tree (test/e2e/audit-service.test.ts). Logs written with every level stored
 * read the same way (the extra rows are simply not read).
 */
export const NODE_STRIDE = 4;

/**
 * A per-tenant append-only RFC 6962 Merkle log. Appends run inside the caller's transaction (no
 * change without its entry, no entry without its change) and take the tenant's head row lock, so
 * concurrent writers produce one gap-free sequence. The hash of every complete subtree of a level
 * divisible by NODE_STRIDE is stored when its last leaf arrives, so roots and proofs read O(log n)
 * short ranges of rows (at most O(log^2 n) for ranges that end inside an incomplete subtree),
 * never the whole log.
 */
export class AuditLog implements AuditTrail {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly repo: AuditRepository,
  ) {}

  /** Appends `entry` in `tx`; returns its sequence number. */
  append(tx: TxContext, tenantId: string, entry: AuditEntry): Promise<number> {
    return this.appendAfter(tx, tenantId, async () => [entry]);
  }

  /**
   * Appends the entries `write` returns (in order; the first one's number is returned). `write`
   * runs under the head lock, so the rows it inserts (consent events) are ordered like their
   * entries across concurrent transactions. A batch costs one head lock, the right edge of the
   * tree read once, and multi-row inserts of the entries and of the kept subtrees they complete.
   */
  async appendAfter(tx: TxContext, tenantId: string, write: () => Promise<AuditEntry[]>): Promise<number> {
    const size = await this.repo.lockHead(tx, tenantId);
    const entries = await write();
    if (entries.length === 0) return size;
    // The compact range of the tree of `size`: frontier[L] is the complete subtree of level L on
    // its right edge (where `size` has bit L set), the only subtrees new leaves join with. Hashes
    // stay in hex, as they are stored.
    const frontier: Array<string | undefined> = [];
    const edge = rightEdge(size);
    if (edge.length > 0) {
      const hashes = await this.subtrees(tx, tenantId, edge);
      for (const { level, index } of edge) frontier[level] = hashes.node(level, index).toString('hex');
    }
    const rows: Array<{ seq: number; entry: AuditEntry; entryJson: string; leafHash: string }> = new Array(entries.length);
    const nodes: Array<{ level: number; index: number; hash: string }> = [];
    for (let i = 0; i < entries.length; i++) {
      const seq = size + i;
      const entryJson = entryJsonOf(entries[i], seq, tenantId);
      let hash = leafHashHex(entryJson);
      rows[i] = { seq, entry: entries[i], entryJson, leafHash: hash };
      nodes.push({ level: 0, index: seq, hash });
      // Each level where this leaf completes a subtree: join with the frontier's subtree there.
      let level = 0;
      for (let index = seq; index % 2 === 1; index = (index - 1) / 2) {
        hash = nodeHashHex(frontier[level]!, hash);
        frontier[level] = undefined;
        level++;
        if (level % NODE_STRIDE === 0) nodes.push({ level, index: (index - 1) / 2, hash });
      }
      frontier[level] = hash;
    }
    await this.repo.insertEntries(tx, tenantId, rows);
    await this.repo.insertNodes(tx, tenantId, nodes);
    await this.repo.setSize(tx, tenantId, size + entries.length);
    return size;
  }

  committedSize(tx: TxContext, tenantId: string): Promise<number> {
    return this.repo.size(tx, tenantId);
  }

  /** Entries from `fromSeq` on, in order, narrowed by `filter`. */
  entries(tenantId: string, fromSeq: number, limit: number, filter?: AuditEntryFilter): Promise<StoredAuditEntry[]> {
    return this.tx.read((tx) => this.repo.entries(tx, tenantId, fromSeq, limit, filter));
  }

  /** How many entries match `filter`. */
  count(tenantId: string, filter: AuditEntryFilter): Promise<number> {
    return this.tx.read((tx) => this.repo.count(tx, tenantId, filter));
  }

  /** Keeps a signed checkpoint for later retrieval. */
  keepCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    return this.tx.write((tx) => this.repo.insertCheckpoint(tx, checkpoint));
  }

  /** Kept checkpoints, largest first, below `beforeSize` when given. */
  checkpoints(tenantId: string, beforeSize: number | null, limit: number): Promise<CheckpointRecord[]> {
    return this.tx.read((tx) => this.repo.checkpoints(tx, tenantId, beforeSize, limit));
  }

  /** Tenants whose log size differs from their last kept checkpoint's: grown, or shrunk (tampered with: checkpointAll reports it). */
  tenantsWithoutLatestCheckpoint(): Promise<string[]> {
    return this.tx.read((tx) => this.repo.tenantsWithoutLatestCheckpoint(tx));
  }

  size(tenantId: string): Promise<number> {
    return this.tx.read((tx) => this.repo.size(tx, tenantId));
  }

  /** The log's current size and root, read together. */
  head(tenantId: string): Promise<{ size: number; root: Buffer }> {
    return this.tx.read(async (tx) => {
      const size = await this.repo.size(tx, tenantId);
      return { size, root: size === 0 ? EMPTY_ROOT : await this.fromNodes(tx, tenantId, (node) => rangeHash(node, 0, size)) };
    });
  }

  /** The root hash of the tenant's tree at `size`. */
  root(tenantId: string, size: number): Promise<Buffer> {
    return this.tx.read(async (tx) => {
      await this.checkSize(tx, tenantId, size);
      return size === 0 ? EMPTY_ROOT : this.fromNodes(tx, tenantId, (node) => rangeHash(node, 0, size));
    });
  }

  /** RFC 6962 PATH(index, D[size]) from stored subtree hashes. */
  async inclusionProof(tenantId: string, index: number, size: number): Promise<Buffer[]> {
    return (await this.inclusionProofs(tenantId, [index], size))[0];
  }

  /** The PATHs of several entries in the tree of `size`, their subtree hashes read together. */
  inclusionProofs(tenantId: string, indexes: number[], size: number): Promise<Buffer[][]> {
    return this.tx.read(async (tx) => {
      await this.checkSize(tx, tenantId, size);
      for (const index of indexes) if (index < 0 || index >= size) throw new RangeError('index out of range');
      return this.fromNodes(tx, tenantId, (node) => indexes.map((index) => path(node, index, 0, size)));
    });
  }

  /** RFC 6962 PROOF(first, D[size]) from stored subtree hashes. */
  consistencyProof(tenantId: string, first: number, size: number): Promise<Buffer[]> {
    return this.tx.read(async (tx) => {
      await this.checkSize(tx, tenantId, size);
      if (first < 0 || first > size) throw new RangeError('size out of range');
      if (first === 0 || first === size) return [];
      return this.fromNodes(tx, tenantId, (node) => subproof(node, first, 0, size, true));
    });
  }

  private async checkSize(tx: TxContext, tenantId: string, size: number): Promise<void> {
    const current = await this.repo.size(tx, tenantId);
    if (!Number.isInteger(size) || size < 0 || size > current) throw new RangeError(`tree size ${size} is beyond the log (${current})`);
  }

  /**
   * Runs the tree computation `compute` over stored subtree hashes, read in as few statements as
   * possible: a first, dry run only notes which subtrees it needs, hashing nothing (the shape of a
   * proof depends on sizes and indexes alone, never on hashes), they are read together, and the
   * second run computes.
   * An explanation with a thousand proofs costs a few reads, not one per subtree of each proof.
   */
  private async fromNodes<T>(tx: TxContext, tenantId: string, compute: (node: NodeLookup) => T): Promise<T> {
    const wanted = new Map<string, { level: number; index: number }>();
    compute({
      node: (level, index) => {
        wanted.set(`${level}:${index}`, { level, index });
        return EMPTY_ROOT;
      },
      // The dry run hashes nothing: only the shape matters.
      join: () => EMPTY_ROOT,
    });
    const hashes = await this.subtrees(tx, tenantId, [...wanted.values()]);
    return compute({ node: (level, index) => hashes.node(level, index), join: nodeHash });
  }

  /**
   * The complete subtrees `wanted`, from what is stored: each one's range of rows at the kept
   * level at or below it, read together.
   */
  private async subtrees(tx: TxContext, tenantId: string, wanted: Array<{ level: number; index: number }>): Promise<StoredSubtrees> {
    const ranges = new Map<string, { level: number; from: number; to: number }>();
    for (const { level, index } of wanted) {
      const base = level - (level % NODE_STRIDE);
      const width = 2 ** (level - base);
      ranges.set(`${base}:${index * width}:${width}`, { level: base, from: index * width, to: (index + 1) * width });
    }
    const stored = new Map<string, string>();
    const all = [...ranges.values()];
    for (let i = 0; i < all.length; i += RANGE_READ_CHUNK) {
      for (const [k, hash] of await this.repo.subtreeHashes(tx, tenantId, all.slice(i, i + RANGE_READ_CHUNK))) stored.set(k, hash);
    }
    return new StoredSubtrees(stored);
  }
}

/** Subtree hashes from the stored ones: read as they are at kept levels, computed in between. */
class StoredSubtrees {
  private readonly computed = new Map<string, Buffer>();

  constructor(private readonly stored: Map<string, string>) {}

  node(level: number, index: number): Buffer {
    const key = `${level}:${index}`;
    let hash = this.computed.get(key);
    if (hash) return hash;
    if (level % NODE_STRIDE === 0) {
      const hex = this.stored.get(key);
      if (!hex) throw new Error(`audit node missing: level ${level} index ${index}`);
      hash = Buffer.from(hex, 'hex');
    } else {
      hash = nodeHash(this.node(level - 1, 2 * index), this.node(level - 1, 2 * index + 1));
    }
    this.computed.set(key, hash);
    return hash;
  }
}

/** Subtree hashes (the 2^level leaves from index * 2^level) and how two are joined. */
interface NodeLookup {
  node(level: number, index: number): Buffer;
  join(left: Buffer, right: Buffer): Buffer;
}

/** Ranges of subtrees per read (each one a branch of a UNION ALL; SQLite allows 500 by default). */
const RANGE_READ_CHUNK = 200;

/** MTH of leaves [start, end), from complete subtrees. */
function rangeHash(node: NodeLookup, start: number, end: number): Buffer {
  const width = end - start;
  if (isPowerOfTwo(width) && start % width === 0) return node.node(Math.log2(width), start / width);
  const k = split(width);
  return node.join(rangeHash(node, start, start + k), rangeHash(node, start + k, end));
}

function path(node: NodeLookup, m: number, start: number, end: number): Buffer[] {
  if (end - start === 1) return [];
  const k = split(end - start);
  return m < k
    ? [...path(node, m, start, start + k), rangeHash(node, start + k, end)]
    : [...path(node, m - k, start + k, end), rangeHash(node, start, start + k)];
}

function subproof(node: NodeLookup, m: number, start: number, end: number, complete: boolean): Buffer[] {
  const n = end - start;
  if (m === n) return complete ? [] : [rangeHash(node, start, end)];
  const k = split(n);
  return m <= k
    ? [...subproof(node, m, start, start + k, complete), rangeHash(node, start + k, end)]
    : [...subproof(node, m - k, start + k, end, false), rangeHash(node, start, start + k)];
}

/** Without bit operators: they wrap at 2^31, and a log may grow past that. */
function isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isInteger(Math.log2(n));
}

/**
 * The complete subtrees on the right edge of a tree of `size` leaves: for every level L where
 * `size` has bit L set, the subtree just left of position `size` at that level. A leaf appended
 * at `size` or after only ever joins these (or subtrees its own batch completes).
 */
function rightEdge(size: number): Array<{ level: number; index: number }> {
  const edge: Array<{ level: number; index: number }> = [];
  for (let level = 0, width = 1; width <= size; level++, width *= 2) {
    const index = Math.floor(size / width);
    if (index % 2 === 1) edge.push({ level, index: index - 1 });
  }
  return edge;
}
