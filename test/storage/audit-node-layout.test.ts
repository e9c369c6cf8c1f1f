import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { AuditLog, NODE_STRIDE } from '../../src/audit/audit-log';
import { AuditEntry } from '../../src/audit/audit-types';
import { entryJsonOf } from '../../src/audit/entry-json';
import { consistencyProofFromLeafHashes, inclusionProofFromLeafHashes, leafHash, nodeHash, rootFromLeafHashes, verifyConsistency, verifyInclusion } from '../../src/audit/merkle';
import { createDataSource } from '../../src/storage/data-source';
import { TypeormAuditRepository } from '../../src/storage/repositories/audit-repository';
import { TypeormTransactionRunner } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';

/**
 * The audit log keeps the hashes of complete subtrees only at the leaves and every NODE_STRIDE-th
 * level above them: what an append writes, and that roots and proofs are still exactly RFC 6962's,
 * also for logs written before, when every level was stored.
 */
forEachDatabase('audit log: kept subtree levels', (db) => {
  let ds: DataSource;
  let tx: TypeormTransactionRunner;
  let log: AuditLog;
  const repo = new TypeormAuditRepository();
  before(async function () {
    ds = await createDataSource(db().config);
    await ds.initialize();
    await ds.runMigrations();
    tx = new TypeormTransactionRunner(ds);
    log = new AuditLog(tx, repo);
  });
  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });

  const entry = (i: number): AuditEntry => ({ type: 'TEST', time: 1_700_000_000_000 + i, principal: 'p', subject: `s${i % 7}`, ref: `r${i}` });
  const leafHashes = async (tenant: string) => (await tx.read((t) => repo.entries(t, tenant, 0, 100_000))).map((e) => Buffer.from(e.leafHash, 'hex'));
  const nodeRows = async (tenant: string) =>
    ((await ds.query('SELECT level, idx FROM audit_nodes WHERE tenant_id = ? ORDER BY level, idx', [tenant])) as Array<{ level: unknown; idx: unknown }>).map((r) => [Number(r.level), Number(r.idx)]);

  /** Roots, inclusion and consistency proofs of the stored log against the definition, at sizes that end inside subtrees of every level. */
  async function expectProofsMatchDefinition(tenant: string, size: number): Promise<void> {
    const leaves = await leafHashes(tenant);
    expect(leaves).to.have.length(size);
    const sizes = [1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 47, 63, 64, 65, 100, 127, 129, 200, 255, 256, 257, size - 1, size].filter((n) => n >= 1 && n <= size);
    for (const n of sizes) {
      const root = await log.root(tenant, n);
      expect(root.toString('hex'), `root of ${n}`).to.equal(rootFromLeafHashes(leaves.slice(0, n)).toString('hex'));
      for (const index of [0, Math.floor(n / 3), n - 2, n - 1].filter((i) => i >= 0)) {
        const proof = await log.inclusionProof(tenant, index, n);
        expect(proof.map((p) => p.toString('hex')), `PATH(${index}, ${n})`).to.deep.equal(inclusionProofFromLeafHashes(index, leaves.slice(0, n)).map((p) => p.toString('hex')));
        verifyInclusion(BigInt(index), BigInt(n), leaves[index], proof, root);
      }
      for (const m of [1, Math.floor(n / 2), n - 1].filter((x) => x >= 1 && x < n)) {
        const proof = await log.consistencyProof(tenant, m, n);
        expect(proof.map((p) => p.toString('hex')), `PROOF(${m}, ${n})`).to.deep.equal(consistencyProofFromLeafHashes(m, leaves.slice(0, n)).map((p) => p.toString('hex')));
        verifyConsistency(BigInt(m), BigInt(n), proof, await log.root(tenant, m), root);
      }
    }
  }

  it(`stores only the leaves and the subtrees of levels divisible by ${NODE_STRIDE}, and proofs equal the definition`, async function () {
    this.timeout(60_000);
    const T = 'layout-new';
    // Batches of uneven sizes, so batches start and end inside subtrees of every level.
    let size = 0;
    for (const n of [1, 2, 5, 9, 16, 31, 1, 64, 3, 127, 41]) {
      const first = await tx.write((t) => log.appendAfter(t, T, async () => Array.from({ length: n }, (_, i) => entry(size + i))));
      expect(first).to.equal(size);
      size += n;
    }
    expect(size).to.equal(300);
    const expected: number[][] = [];
    for (let level = 0; 2 ** level <= size; level += NODE_STRIDE) {
      for (let idx = 0; idx < Math.floor(size / 2 ** level); idx++) expected.push([level, idx]);
    }
    expect(await nodeRows(T)).to.deep.equal(expected); // 300 leaves, 18 subtrees of level 4 and one of level 8
    await expectProofsMatchDefinition(T, size);
  });

  it('a log written when every level was stored reads the same and grows on in the new layout', async function () {
    this.timeout(60_000);
    const T = 'layout-old';
    // The first 150 entries as the earlier code stored them: every complete subtree, leaves included.
    const old = 150;
    const rows = Array.from({ length: old }, (_, seq) => {
      const entryJson = entryJsonOf(entry(seq), seq, T);
      return { seq, entry: entry(seq), entryJson, leafHash: leafHash(Buffer.from(entryJson, 'utf8')).toString('hex') };
    });
    const nodes: Array<{ level: number; index: number; hash: string }> = [];
    let level: Buffer[] = rows.map((r) => Buffer.from(r.leafHash, 'hex'));
    for (let l = 0; level.length > 0; l++) {
      level.forEach((hash, index) => nodes.push({ level: l, index, hash: hash.toString('hex') }));
      const up: Buffer[] = [];
      for (let i = 0; i + 1 < level.length; i += 2) up.push(nodeHash(level[i], level[i + 1]));
      level = up;
    }
    await tx.write(async (t) => {
      await repo.lockHead(t, T);
      await repo.insertEntries(t, T, rows);
      await repo.insertNodes(t, T, nodes);
      await repo.setSize(t, T, old);
    });
    await expectProofsMatchDefinition(T, old);
    // Appended by this code: joins subtrees of the old layout at every level.
    let size = old;
    for (const n of [1, 3, 17, 100, 29]) {
      await tx.write((t) => log.appendAfter(t, T, async () => Array.from({ length: n }, (_, i) => entry(size + i))));
      size += n;
    }
    await expectProofsMatchDefinition(T, size);
    // Below 150 the old rows of every level are there; above, only the kept levels were added.
    const added = (await nodeRows(T)).filter(([l, idx]) => (idx + 1) * 2 ** l > old);
    expect(added.every(([l]) => l % NODE_STRIDE === 0), `levels added: ${JSON.stringify(added)}`).to.equal(true);
  });

  it("roots come from the leaves' own rows: an entry's leaf hash rewritten in audit_entries leaves the root as signed", async function () {
    const T = 'layout-new';
    const before = await log.root(T, 300);
    await ds.query('UPDATE audit_entries SET leaf_hash = ? WHERE tenant_id = ? AND seq = ?', ['00'.repeat(32), T, 299]);
    expect((await log.root(T, 300)).equals(before)).to.equal(true);
  });

  it('a missing kept subtree is an error, never a wrong root', async function () {
    const T = 'layout-new';
    await ds.query('DELETE FROM audit_nodes WHERE tenant_id = ? AND level = ? AND idx = ?', [T, NODE_STRIDE, 0]);
    let err: unknown;
    try {
      await log.root(T, 16); // the subtree of leaves 0-15 itself
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.include(`audit node missing: level ${NODE_STRIDE} index 0`);
  });
});
