import crypto, { createHash } from 'node:crypto';

/**
 * RFC 6962 / RFC 9162 Merkle tree hashing and proof verification, exactly as specified:
 * leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right), the split at the largest
 * power of two smaller than n, the empty tree = SHA-256 of nothing. The verifiers follow the
 * algorithms of RFC 9162 2.1.3.2 and 2.1.4.2 (as transparency-dev/merkle implements them) and
 * reject anything that is not exactly a valid proof. Sizes and indexes are bigints: tree sizes
 * pass 2^32, where JavaScript's bit operators stop working.
 */

const HASH_BYTES = 32;

export function leafHash(data: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

const LEAF_PREFIX = Buffer.from([0]);
const NODE_PREFIX = Buffer.from([1]);

/**
 * One-shot hashing (Node.js 20.12 and later) where available: no Hash object per call. Its hex
 * output is several times faster than its Buffer output, so the log's appends hash in hex.
 */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string | Uint8Array, encoding: 'hex') => string }).hash;

/** leafHash of the UTF-8 bytes of `text`, in hex: the hash of an audit entry's JSON. */
export function leafHashHex(text: string): string {
  // U+0000 is the one byte 0x00 in UTF-8: the leaf prefix.
  return oneShotHash ? oneShotHash('sha256', `\u0000${text}`, 'hex') : leafHash(Buffer.from(text, 'utf8')).toString('hex');
}

/** nodeHash of two hashes given in hex, in hex. */
export function nodeHashHex(left: string, right: string): string {
  const bytes = Buffer.from(`01${left}${right}`, 'hex');
  if (bytes.length !== 1 + 2 * HASH_BYTES) throw new Error('subtree hashes must be 32 bytes');
  return oneShotHash ? oneShotHash('sha256', bytes, 'hex') : createHash('sha256').update(bytes).digest('hex');
}

export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/** The largest power of two smaller than n (n >= 2): where RFC 6962 splits a tree. */
export function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]) over leaf hashes, by the definition (O(n)): the reference the stored tree is tested against. */
export function rootFromLeafHashes(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return EMPTY_ROOT;
  if (leaves.length === 1) return leaves[0];
  const k = split(leaves.length);
  return nodeHash(rootFromLeafHashes(leaves.slice(0, k)), rootFromLeafHashes(leaves.slice(k)));
}

/** PATH(m, D[n]) of RFC 6962 2.1.1, by the definition (O(n)). */
export function inclusionProofFromLeafHashes(index: number, leaves: Buffer[]): Buffer[] {
  if (index < 0 || index >= leaves.length) throw new RangeError('index out of range');
  if (leaves.length === 1) return [];
  const k = split(leaves.length);
  return index < k
    ? [...inclusionProofFromLeafHashes(index, leaves.slice(0, k)), rootFromLeafHashes(leaves.slice(k))]
    : [...inclusionProofFromLeafHashes(index - k, leaves.slice(k)), rootFromLeafHashes(leaves.slice(0, k))];
}

/** PROOF(m, D[n]) of RFC 6962 2.1.2, by the definition (O(n)). */
export function consistencyProofFromLeafHashes(m: number, leaves: Buffer[]): Buffer[] {
  if (m < 0 || m > leaves.length) throw new RangeError('size out of range');
  if (m === 0 || m === leaves.length) return [];
  return subproof(m, leaves, true);
}

function subproof(m: number, leaves: Buffer[], complete: boolean): Buffer[] {
  const n = leaves.length;
  if (m === n) return complete ? [] : [rootFromLeafHashes(leaves)];
  const k = split(n);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), complete), rootFromLeafHashes(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), rootFromLeafHashes(leaves.slice(0, k))];
}

export class ProofError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProofError';
  }
}

/** The root an inclusion proof leads to (RFC 9162 2.1.3.2); throws ProofError on malformed input. */
export function rootFromInclusionProof(index: bigint, size: bigint, leaf: Uint8Array, proof: Uint8Array[]): Buffer {
  if (index < 0n || index >= size) throw new ProofError(`index ${index} is beyond the tree size ${size}`);
  checkHash(leaf, 'leaf hash');
  proof.forEach((p) => checkHash(p, 'proof hash'));
  const { inner, border } = decomposeInclusionProof(index, size);
  if (proof.length !== inner + border) throw new ProofError(`wrong proof size ${proof.length}, want ${inner + border}`);
  let hash = chainInner(Buffer.from(leaf), proof.slice(0, inner), index);
  hash = chainBorderRight(hash, proof.slice(inner));
  return hash;
}

/** Verifies that `leaf` is at `index` in the tree of `size` with `root`; throws ProofError if not. */
export function verifyInclusion(index: bigint, size: bigint, leaf: Uint8Array, proof: Uint8Array[], root: Uint8Array): void {
  checkHash(root, 'root');
  const calculated = rootFromInclusionProof(index, size, leaf, proof);
  if (!calculated.equals(Buffer.from(root))) throw new ProofError('the proof leads to another root');
}

/** Verifies that the tree of size1 with root1 is a prefix of the tree of size2 with root2 (RFC 9162 2.1.4.2). */
export function verifyConsistency(size1: bigint, size2: bigint, proof: Uint8Array[], root1: Uint8Array, root2: Uint8Array): void {
  checkHash(root1, 'first root');
  checkHash(root2, 'second root');
  proof.forEach((p) => checkHash(p, 'proof hash'));
  if (size1 < 0n || size2 < size1) throw new ProofError(`size2 (${size2}) < size1 (${size1})`);
  if (size1 === size2) {
    if (proof.length > 0) throw new ProofError('equal sizes need an empty proof');
    if (!Buffer.from(root1).equals(Buffer.from(root2))) throw new ProofError('equal sizes but different roots');
    return;
  }
  if (size1 === 0n) {
    // Every tree is consistent with the empty tree.
    if (proof.length > 0) throw new ProofError('a proof from the empty tree must be empty');
    return;
  }
  if (proof.length === 0) throw new ProofError('empty proof');
  const { inner: fullInner, border } = decomposeInclusionProof(size1 - 1n, size2);
  const shift = trailingZeros(size1);
  const inner = fullInner - shift;
  // The proof starts with the root of the subtree of size 2^shift, unless size1 is that subtree.
  let seed: Buffer = Buffer.from(proof[0]);
  let start = 1;
  if (size1 === 1n << BigInt(shift)) {
    seed = Buffer.from(root1);
    start = 0;
  }
  if (proof.length !== start + inner + border) throw new ProofError(`wrong proof size ${proof.length}, want ${start + inner + border}`);
  const rest = proof.slice(start);
  const mask = (size1 - 1n) >> BigInt(shift);
  let hash1 = chainInnerRight(seed, rest.slice(0, inner), mask);
  hash1 = chainBorderRight(hash1, rest.slice(inner));
  if (!hash1.equals(Buffer.from(root1))) throw new ProofError('the proof does not lead to the first root');
  let hash2 = chainInner(seed, rest.slice(0, inner), mask);
  hash2 = chainBorderRight(hash2, rest.slice(inner));
  if (!hash2.equals(Buffer.from(root2))) throw new ProofError('the proof does not lead to the second root');
}

function decomposeInclusionProof(index: bigint, size: bigint): { inner: number; border: number } {
  const inner = bitLength(index ^ (size - 1n));
  const border = popCount(index >> BigInt(inner));
  return { inner, border };
}

function chainInner(seed: Buffer, proof: Uint8Array[], index: bigint): Buffer {
  let hash = seed;
  proof.forEach((p, i) => {
    hash = ((index >> BigInt(i)) & 1n) === 0n ? nodeHash(hash, p) : nodeHash(p, hash);
  });
  return hash;
}

function chainInnerRight(seed: Buffer, proof: Uint8Array[], index: bigint): Buffer {
  let hash = seed;
  proof.forEach((p, i) => {
    if (((index >> BigInt(i)) & 1n) === 1n) hash = nodeHash(p, hash);
  });
  return hash;
}

function chainBorderRight(seed: Buffer, proof: Uint8Array[]): Buffer {
  let hash = seed;
  for (const p of proof) hash = nodeHash(p, hash);
  return hash;
}

function checkHash(value: Uint8Array, what: string): void {
  if (value.length !== HASH_BYTES) throw new ProofError(`${what} must be ${HASH_BYTES} bytes, got ${value.length}`);
}

function bitLength(x: bigint): number {
  return x === 0n ? 0 : x.toString(2).length;
}

function popCount(x: bigint): number {
  let count = 0;
  for (const c of x.toString(2)) if (c === '1') count++;
  return count;
}

function trailingZeros(x: bigint): number {
  let n = 0;
  while (x > 0n && (x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}
