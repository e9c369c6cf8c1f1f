import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { EMPTY_ROOT, inclusionProofFromLeafHashes, consistencyProofFromLeafHashes, leafHash, nodeHash, rootFromLeafHashes, verifyConsistency, verifyInclusion } from '../../src/audit/merkle';

const DIR = path.join(__dirname, '..', 'vectors', 'merkle');
const known = JSON.parse(readFileSync(path.join(DIR, 'rfc6962-known-answers.json'), 'utf8'));
const b64 = (s: string | null) => Buffer.from(s ?? '', 'base64');
/** Index and size fields can be 2^64-1: read them as BigInt from the raw text, not through JSON numbers. */
const bigField = (text: string, field: string) => BigInt(new RegExp(`"${field}"\\s*:\\s*(-?\\d+)`).exec(text)![1]);

function cases(kind: 'inclusion' | 'consistency'): Array<{ file: string; text: string; json: Record<string, unknown> }> {
  const root = path.join(DIR, 'testdata', kind);
  return readdirSync(root).flatMap((c) =>
    readdirSync(path.join(root, c)).map((f) => {
      const text = readFileSync(path.join(root, c, f), 'utf8');
      return { file: `${kind}/${c}/${f}`, text, json: JSON.parse(text) };
    }),
  );
}

describe('Merkle tree against published vectors (transparency-dev/merkle)', () => {
  it('hasher known answers', () => {
    expect(EMPTY_ROOT.toString('hex')).to.equal(known.emptyTreeRoot);
    expect(leafHash(Buffer.alloc(0)).toString('hex')).to.equal('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    expect(leafHash(Buffer.from('L123456')).toString('hex')).to.equal('395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56');
    expect(nodeHash(Buffer.from('N123'), Buffer.from('N456')).toString('hex')).to.equal('aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb');
  });

  const leaves = (known.leaves as string[]).map((h) => leafHash(Buffer.from(h, 'hex')));

  it('roots of the 8 reference leaves for every size', () => {
    for (const [size, root] of Object.entries(known.rootsByTreeSize as Record<string, string>)) {
      expect(rootFromLeafHashes(leaves.slice(0, Number(size))).toString('hex'), `size ${size}`).to.equal(root);
    }
  });

  it('reference inclusion and consistency proofs are produced and verified', () => {
    for (const p of (known.inclusionProofs as Array<{ leaf: number; size: number; proof: string[] | null }>).slice(1)) {
      const tree = leaves.slice(0, p.size);
      const proof = (p.proof ?? []).map((h) => Buffer.from(h, 'hex'));
      expect(inclusionProofFromLeafHashes(p.leaf - 1, tree).map((h) => h.toString('hex'))).to.deep.equal(p.proof ?? []);
      verifyInclusion(BigInt(p.leaf - 1), BigInt(p.size), leaves[p.leaf - 1], proof, rootFromLeafHashes(tree));
    }
    for (const p of known.consistencyProofs as Array<{ size1: number; size2: number; proof: string[] | null }>) {
      expect(consistencyProofFromLeafHashes(p.size1, leaves.slice(0, p.size2)).map((h) => h.toString('hex'))).to.deep.equal(p.proof ?? []);
      verifyConsistency(BigInt(p.size1), BigInt(p.size2), (p.proof ?? []).map((h) => Buffer.from(h, 'hex')), rootFromLeafHashes(leaves.slice(0, p.size1)), rootFromLeafHashes(leaves.slice(0, p.size2)));
    }
  });

  const inclusion = cases('inclusion');
  it(`inclusion cases: every happy path verifies, every corrupted proof is rejected (${inclusion.length} files)`, () => {
    expect(inclusion.length).to.be.greaterThan(50);
    for (const c of inclusion) {
      const j = c.json as { root: string; leafHash: string; proof: string[] | null; wantErr: boolean };
      let err: unknown = null;
      try {
        verifyInclusion(bigField(c.text, 'leafIdx'), bigField(c.text, 'treeSize'), b64(j.leafHash), (j.proof ?? []).map(b64), b64(j.root));
      } catch (e) {
        err = e;
      }
      expect(err !== null, `${c.file}: wantErr ${j.wantErr}`).to.equal(j.wantErr);
    }
  });

  const consistency = cases('consistency');
  it(`consistency cases: every happy path verifies, every corrupted proof is rejected (${consistency.length} files)`, () => {
    expect(consistency.length).to.be.greaterThan(50);
    for (const c of consistency) {
      const j = c.json as { root1: string; root2: string; proof: string[] | null; wantErr: boolean };
      let err: unknown = null;
      try {
        verifyConsistency(bigField(c.text, 'size1'), bigField(c.text, 'size2'), (j.proof ?? []).map(b64), b64(j.root1), b64(j.root2));
      } catch (e) {
        err = e;
      }
      expect(err !== null, `${c.file}: wantErr ${j.wantErr}`).to.equal(j.wantErr);
    }
  });
});
