import { readFileSync } from 'node:fs';
import { Client, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { createTestDatabase, TestDatabase } from '../support/databases';
import { ServerProcess, startServerProcess } from '../support/server-process';

/**
 * Requests built to exhaust the server's memory, sent by a client without credentials, against
 * the service as its own process (if it falls, mocha does not): millions of empty list items in a
 * 4 MiB message (an object each once decoded). Found by a probe: four at once ended the process.
 */
describe('requests that hold millions of list items', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let server: ServerProcess;
  before(async function () {
    db = await createTestDatabase('sqlite');
    // The heap cap `npm start` gives the process.
    server = await startServerProcess(db, { env: { LOG_LEVEL: 'warn', NODE_OPTIONS: '--max-old-space-size=384' } });
  });
  after(async function () {
    await server?.stop();
    await db?.drop();
  });

  /** A message of `parent` and `count` empty items of field 2 (queries, rows): two bytes each. */
  const bomb = (count: number) => {
    const parent = Buffer.from([0x0a, 0x0c, ...Buffer.from('tenants/acme')]);
    const items = Buffer.alloc(count * 2);
    for (let i = 0; i < count; i++) items[2 * i] = 0x12;
    return Buffer.concat([parent, items]);
  };
  const rssMiB = () => Number(readFileSync(`/proc/${server.child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)![1]) / 1024;
  const raw = (b: Buffer) => b;

  it('CheckConsentBatch and ImportConsents with two million empty items: INVALID_ARGUMENT naming the field, memory bounded, the server serves on', async function () {
    const body = bomb(2_000_000);
    const clients = Array.from({ length: 4 }, () => new Client(server.address, credentials.createInsecure()));
    try {
      let peak = rssMiB();
      const sampler = setInterval(() => {
        if (!server.hasExited()) peak = Math.max(peak, rssMiB());
      }, 10);
      for (let round = 0; round < 3; round++) {
        const answers = await Promise.all(
          clients.flatMap((c) => [
            new Promise<ServiceError | null>((resolve) => c.makeUnaryRequest('/consent.v1.ConsentService/CheckConsentBatch', raw, raw, body, new Metadata(), { deadline: Date.now() + 60_000 }, (err) => resolve(err))),
            new Promise<ServiceError | null>((resolve) => {
              const stream = c.makeClientStreamRequest('/consent.v1.ConsentService/ImportConsents', raw, raw, new Metadata(), { deadline: Date.now() + 60_000 }, (err) => resolve(err));
              stream.write(body);
              stream.end();
            }),
          ]),
        );
        expect(server.hasExited(), `the server lives (round ${round})`).to.equal(false);
        for (const [i, err] of answers.entries()) {
          expect(err?.code, `answer ${i}`).to.equal(status.INVALID_ARGUMENT);
          expect(err!.details).to.match(i % 2 === 0 ? /queries|1 to 1000 queries/ : /rows/);
        }
      }
      clearInterval(sampler);
      expect(server.hasExited(), 'the server lives').to.equal(false);
      expect(peak, 'server RSS (MiB)').to.be.below(450);
      expect(await server.health()).to.equal('SERVING');
    } finally {
      for (const c of clients) c.close();
    }
  });
});
