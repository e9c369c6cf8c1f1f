import { expect } from 'chai';
import { ItemOutcome } from '../../src/domain/commit-queue';
import { ConsentImport, IMPORT_BATCH, ImportItem } from '../../src/domain/consent-import';
import { ConsentWriter, PreparedWrite, WriteResult } from '../../src/domain/consent-writer';

/** A writer whose commits finish only when the test says so. */
class HeldWriter {
  readonly commits: Array<{ writes: PreparedWrite[]; finish(): void }> = [];

  commit(_tenantId: string, writes: PreparedWrite[]): Promise<Array<ItemOutcome<WriteResult>>> {
    return new Promise((resolve) => {
      this.commits.push({ writes, finish: () => resolve(writes.map(() => ({ ok: { events: [], replayed: false } as unknown as WriteResult }))) });
    });
  }
}

/** `count` rows of distinct people, tagged from `from` on. */
function rows(from: number, count: number): Array<ImportItem<number>> {
  return Array.from({ length: count }, (_, i) => ({
    tag: from + i,
    prepare: async () => ({ requestId: `r${from + i}`, index: { kind: 'PHONE', blindIndex: `b${from + i}` } }) as unknown as PreparedWrite,
  }));
}

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('ConsentImport (the import pipeline)', function () {
  it('stop() resolves only after the batches already committing have finished, and nothing commits after it', async function () {
    const writer = new HeldWriter();
    const reported: number[] = [];
    const importer = new ConsentImport<number>(writer as unknown as ConsentWriter, 't', (tag) => reported.push(tag));
    // Two batches committing at once, a third waiting for a slot.
    await importer.add(rows(0, IMPORT_BATCH));
    await importer.add(rows(IMPORT_BATCH, IMPORT_BATCH));
    const adding = importer.add(rows(2 * IMPORT_BATCH, IMPORT_BATCH));
    await turns(10);
    expect(writer.commits, 'two batches committing').to.have.length(2);

    let stopped = false;
    const stopping = importer.stop().then(() => (stopped = true));
    await turns(10);
    expect(stopped, 'not while a batch is still committing').to.equal(false);
    writer.commits[0].finish();
    await turns(10);
    expect(stopped, 'not while the second batch is still committing').to.equal(false);
    writer.commits[1].finish();
    await stopping;
    await adding;
    expect(writer.commits, 'the waiting batch was dropped, not committed').to.have.length(2);
    expect(reported).to.have.length(2 * IMPORT_BATCH);
  });

  it('stop() with nothing committing resolves at once', async function () {
    const writer = new HeldWriter();
    const importer = new ConsentImport<number>(writer as unknown as ConsentWriter, 't', () => undefined);
    await importer.add(rows(0, 10));
    await importer.stop();
    await turns(5);
    expect(writer.commits).to.have.length(0);
  });
});
