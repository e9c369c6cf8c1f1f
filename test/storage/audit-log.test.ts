import { expect } from 'chai';
import { DataSource } from 'typeorm';
import { AuditLog } from '../../src/audit/audit-log';
import {
  consistencyProofFromLeafHashes,
  EMPTY_ROOT,
  inclusionProofFromLeafHashes,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle';
import { createDataSource } from '../../src/storage/data-source';
import { TypeormAuditRepository } from '../../src/storage/repositories/audit-repository';
import { TypeormTransactionRunner } from '../../src/storage/transaction-runner';
import { forEachDatabase } from '../support/databases';

forEachDatabase('audit log', (db) => {
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

  const leafHashes = async (tenant: string) =>
    (await tx.read((t) => repo.entries(t, tenant, 0, 100_000))).map((e) => Buffer.from(e.leafHash, 'hex'));

  it('8 concurrent writers produce one gap-free sequence, and the stored tree matches the definition', async function () {
    this.timeout(60_000);
    const T = 'audit-concurrent';
    const seqs: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, w) =>
        (async () => {
          for (let i = 0; i < 25; i++) {
            seqs.push(await tx.write((t) => log.append(t, T, { type: 'TEST', time: i, principal: `writer-${w}` })));
          }
        })(),
      ),
    );
    expect([...seqs].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 200 }, (_, i) => i));
    expect(await log.size(T)).to.equal(200);
    const leaves = await leafHashes(T);
    expect(leaves).to.have.length(200);
    for (const n of [1, 2, 3, 7, 8, 64, 100, 199, 200]) {
      expect((await log.root(T, n)).equals(rootFromLeafHashes(leaves.slice(0, n))), `root of ${n}`).to.equal(true);
    }
  });

  it('serves inclusion and consistency proofs from stored subtrees, equal to the definition and verifiable', async function () {
    const T = 'audit-concurrent';
    const leaves = await leafHashes(T);
    for (const [index, n] of [[0, 1], [0, 200], [5, 13], [12, 13], [63, 64], [64, 65], [150, 200], [199, 200]]) {
      const proof = await log.inclusionProof(T, index, n);
      expect(proof.map((p) => p.toString('hex')), `PATH(${index}, ${n})`).to.deep.equal(inclusionProofFromLeafHashes(index, leaves.slice(0, n)).map((p) => p.toString('hex')));
      verifyInclusion(BigInt(index), BigInt(n), leaves[index], proof, await log.root(T, n));
    }
    for (const [m, n] of [[1, 2], [3, 7], [4, 8], [7, 200], [64, 65], [100, 200], [199, 200], [200, 200]]) {
      const proof = await log.consistencyProof(T, m, n);
      expect(proof.map((p) => p.toString('hex')), `PROOF(${m}, ${n})`).to.deep.equal(consistencyProofFromLeafHashes(m, leaves.slice(0, n)).map((p) => p.toString('hex')));
      verifyConsistency(BigInt(m), BigInt(n), proof, await log.root(T, m), await log.root(T, n));
    }
  });

  it('an empty log has the empty root; sizes beyond the log are refused', async function () {
    expect((await log.root('audit-empty', 0)).equals(EMPTY_ROOT)).to.equal(true);
    let err: unknown;
    try {
      await log.root('audit-concurrent', 201);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(RangeError);
  });

  it('a rolled-back change leaves no entry (the entry is in the same transaction)', async function () {
    const T = 'audit-rollback';
    await tx.write((t) => log.append(t, T, { type: 'KEPT', time: 1, principal: 'p' }));
    await tx
      .write(async (t) => {
        await log.append(t, T, { type: 'LOST', time: 2, principal: 'p' });
        throw new Error('the change failed');
      })
      .catch(() => undefined);
    await tx.write((t) => log.append(t, T, { type: 'KEPT', time: 3, principal: 'p' }));
    const entries = await tx.read((t) => repo.entries(t, T, 0, 10));
    expect(entries.map((e) => [e.seq, JSON.parse(e.entryJson).type])).to.deep.equal([[0, 'KEPT'], [1, 'KEPT']]);
  });
});
