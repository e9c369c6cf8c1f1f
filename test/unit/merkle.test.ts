import { expect } from 'chai';
import {
  consistencyProofFromLeafHashes,
  EMPTY_ROOT,
  inclusionProofFromLeafHashes,
  leafHash,
  ProofError,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle';

const REFERENCE_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'];
const leaves = (n: number) => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf-${i}`)));

const flip = (b: Buffer, bit = 0) => {
  const c = Buffer.from(b);
  c[bit >> 3] ^= 1 << (bit & 7);
  return c;
};

describe('Merkle tree (RFC 6962)', () => {
  it('the empty tree is SHA-256 of nothing', () => {
    expect(EMPTY_ROOT.toString('hex')).to.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(rootFromLeafHashes([]).equals(EMPTY_ROOT)).to.equal(true);
  });

  it('hashes leaves and nodes with the 0x00 / 0x01 domain separation', () => {
    const tree = REFERENCE_LEAVES.map((h) => leafHash(Buffer.from(h, 'hex')));
    // Root of the one-leaf tree of the empty leaf: SHA-256(0x00).
    expect(rootFromLeafHashes(tree.slice(0, 1)).toString('hex')).to.equal('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  });

  it('every inclusion and consistency proof of trees up to 40 leaves verifies', () => {
    const all = leaves(40);
    let checked = 0;
    for (let n = 1; n <= all.length; n++) {
      const tree = all.slice(0, n);
      const root = rootFromLeafHashes(tree);
      for (let i = 0; i < n; i++) {
        verifyInclusion(BigInt(i), BigInt(n), tree[i], inclusionProofFromLeafHashes(i, tree), root);
        checked++;
      }
      for (let m = 0; m <= n; m++) {
        verifyConsistency(BigInt(m), BigInt(n), consistencyProofFromLeafHashes(m, tree), rootFromLeafHashes(all.slice(0, m)), root);
        checked++;
      }
    }
    expect(checked).to.equal(820 + 860);
  });

  describe('rejects every corrupted inclusion proof', () => {
    const tree = leaves(13);
    const root = rootFromLeafHashes(tree);
    // A hostile server claiming another size shows that size's real root.
    const rootOf = (n: number) => rootFromLeafHashes(leaves(n));
    for (const index of [0, 5, 12]) {
      const proof = inclusionProofFromLeafHashes(index, tree);
      const cases: Array<[string, () => void]> = [
        ['wrong index', () => verifyInclusion(BigInt(index === 0 ? 1 : index - 1), 13n, tree[index], proof, root)],
        ['index beyond the size', () => verifyInclusion(13n, 13n, tree[index], proof, root)],
        ['wrong size', () => verifyInclusion(BigInt(index), 14n, tree[index], proof, rootOf(14))],
        ['smaller size', () => verifyInclusion(BigInt(index), 12n, tree[index], proof, rootOf(12))],
        ['an extra hash', () => verifyInclusion(BigInt(index), 13n, tree[index], [...proof, tree[0]], root)],
        ['a missing hash', () => verifyInclusion(BigInt(index), 13n, tree[index], proof.slice(1), root)],
        ['a flipped bit in the proof', () => verifyInclusion(BigInt(index), 13n, tree[index], [flip(proof[0], 9), ...proof.slice(1)], root)],
        ['a flipped bit in the leaf', () => verifyInclusion(BigInt(index), 13n, flip(tree[index]), proof, root)],
        ['a flipped bit in the root', () => verifyInclusion(BigInt(index), 13n, tree[index], proof, flip(root, 200))],
        ['a proof hash of the wrong length', () => verifyInclusion(BigInt(index), 13n, tree[index], [proof[0].subarray(0, 31), ...proof.slice(1)], root)],
        ['reordered hashes', () => verifyInclusion(BigInt(index), 13n, tree[index], [...proof].reverse(), root)],
      ];
      for (const [name, attempt] of cases) it(`leaf ${index}: ${name}`, () => expect(attempt).to.throw(ProofError));
    }
  });

  describe('rejects every corrupted consistency proof', () => {
    const all = leaves(22);
    const pairs: Array<[number, number]> = [[1, 21], [4, 13], [7, 21], [13, 14]];
    for (const [m, n] of pairs) {
      const root1 = rootFromLeafHashes(all.slice(0, m));
      const root2 = rootFromLeafHashes(all.slice(0, n));
      const proof = consistencyProofFromLeafHashes(m, all.slice(0, n));
      const cases: Array<[string, () => void]> = [
        ['swapped roots', () => verifyConsistency(BigInt(m), BigInt(n), proof, root2, root1)],
        ['wrong first size', () => verifyConsistency(BigInt(m + 1), BigInt(n), proof, root1, root2)],
        ['wrong second size', () => verifyConsistency(BigInt(m), BigInt(n + 1), proof, root1, rootFromLeafHashes(all.slice(0, n + 1)))],
        ['sizes the wrong way round', () => verifyConsistency(BigInt(n), BigInt(m), proof, root2, root1)],
        ['an extra hash', () => verifyConsistency(BigInt(m), BigInt(n), [...proof, all[0]], root1, root2)],
        ['a missing hash', () => verifyConsistency(BigInt(m), BigInt(n), proof.slice(0, -1), root1, root2)],
        ['a flipped bit in the proof', () => verifyConsistency(BigInt(m), BigInt(n), [flip(proof[0], 3), ...proof.slice(1)], root1, root2)],
        ['a flipped bit in the first root', () => verifyConsistency(BigInt(m), BigInt(n), proof, flip(root1), root2)],
        ['a flipped bit in the second root', () => verifyConsistency(BigInt(m), BigInt(n), proof, root1, flip(root2))],
        ['an empty proof', () => verifyConsistency(BigInt(m), BigInt(n), [], root1, root2)],
      ];
      for (const [name, attempt] of cases) it(`${m} -> ${n}: ${name}`, () => expect(attempt).to.throw(ProofError));
    }
    it('equal sizes need an empty proof and equal roots; anything is consistent with the empty tree', () => {
      const r = rootFromLeafHashes(all.slice(0, 5));
      verifyConsistency(5n, 5n, [], r, r);
      expect(() => verifyConsistency(5n, 5n, [r], r, r)).to.throw(ProofError);
      expect(() => verifyConsistency(5n, 5n, [], r, flip(r))).to.throw(ProofError);
      verifyConsistency(0n, 5n, [], EMPTY_ROOT, r);
      expect(() => verifyConsistency(0n, 5n, [r], EMPTY_ROOT, r)).to.throw(ProofError);
    });
  });
});
