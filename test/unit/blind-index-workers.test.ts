import { expect } from 'chai';
import { createSecretKey, randomBytes } from 'node:crypto';
import { BLIND_INDEX_WORKER_MAX_QUEUED_INPUTS, BLIND_INDEX_WORKER_MIN_INPUTS, BLIND_INDEX_WORKER_SOURCE, BlindIndexWorkers } from '../../src/crypto/blind-index-workers';
import { hmacSha256Hex } from '../../src/crypto/primitives';

/**
 * The blind indexes of bulk checks are hashed on worker threads (crypto/blind-index-workers.ts):
 * what a worker answers must be exactly what the calling thread computes, in order, and a worker
 * that fails or stops must never leave a call waiting or change an answer.
 */
describe('blind-index workers (crypto/blind-index-workers.ts)', () => {
  const key = createSecretKey(randomBytes(32));
  // Identifiers as KeyManager.blindIndexes hands them over (kind, NUL, value), non-ASCII ones too:
  // the worker must hash the same UTF-8 bytes as the calling thread.
  const inputs = Array.from({ length: 1000 }, (_, i) =>
    i % 3 === 0 ? `PHONE\u0000+4915${10_000_000 + i}` : i % 3 === 1 ? `EMAIL\u0000jürgen.${i}@müller.example` : `CUSTOMER_ID\u0000C-${i}\u{1F600}`,
  );
  const expected = inputs.map((input) => hmacSha256Hex(key, input));
  const warnings: string[] = [];
  const log = { warn: (message: string) => void warnings.push(message) };
  let pools: BlindIndexWorkers[] = [];
  const pool = (count: number, source?: string, replyTimeoutMs?: number) => {
    const p = new BlindIndexWorkers(count, log, source, replyTimeoutMs);
    pools.push(p);
    return p;
  };

  afterEach(async () => {
    await Promise.all(pools.map((p) => p.stop()));
    pools = [];
    warnings.length = 0;
  });

  it('answers a bulk call on a worker with exactly the calling thread\'s HMACs, in order', async () => {
    const workers = pool(1);
    const answer = workers.hmacHexAll(key, inputs);
    expect(answer, 'a bulk call goes to the worker').to.be.instanceOf(Promise);
    expect(await answer).to.deep.equal(expected);
    expect(workers.stats).to.include({ offloaded: 1, inline: 0, workerFailures: 0 });
  });

  it('keeps each call\'s answers apart when many are out at once, over several workers and keys', async () => {
    const workers = pool(2);
    const other = createSecretKey(randomBytes(32));
    const calls = Array.from({ length: 12 }, (_, c) => {
      const k = c % 2 === 0 ? key : other;
      const mine = inputs.slice(c * 50, c * 50 + BLIND_INDEX_WORKER_MIN_INPUTS + c);
      return { mine, k, answer: workers.hmacHexAll(k, mine) };
    });
    for (const { mine, k, answer } of calls) expect(await answer).to.deep.equal(mine.map((input) => hmacSha256Hex(k, input)));
    expect(workers.stats.offloaded).to.equal(12);
  });

  it('hashes a call smaller than the threshold on the calling thread, without a turn of the event loop', () => {
    const workers = pool(1);
    const few = inputs.slice(0, BLIND_INDEX_WORKER_MIN_INPUTS - 1);
    const answer = workers.hmacHexAll(key, few);
    expect(answer).to.be.an('array');
    expect(answer).to.deep.equal(expected.slice(0, few.length));
    expect(workers.stats.offloaded).to.equal(0);
  });

  it('hashes on the calling thread when no worker is configured to run', () => {
    const workers = pool(0);
    expect(workers.hmacHexAll(key, inputs)).to.deep.equal(expected);
  });

  it('answers the calls a dying worker held, and every later call, on the calling thread, and says so once', async () => {
    // A worker that ends as soon as it is asked anything.
    const workers = pool(1, `require('node:worker_threads').parentPort.on('message', () => process.exit(3));`);
    const first = workers.hmacHexAll(key, inputs);
    const second = workers.hmacHexAll(key, inputs.slice(0, 100));
    expect(await first).to.deep.equal(expected);
    expect(await second).to.deep.equal(expected.slice(0, 100));
    expect(workers.running).to.equal(0);
    const later = workers.hmacHexAll(key, inputs);
    expect(later, 'no worker left: answered at once').to.be.an('array');
    expect(later).to.deep.equal(expected);
    expect(workers.stats).to.include({ offloaded: 0, workerFailures: 1 });
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/blind-index worker stopped/);
  });

  it('a worker whose code does not even load, and one that cannot be created: the service hashes inline and says so', async () => {
    const broken = pool(1, 'this is not JavaScript (');
    // The load error arrives asynchronously; a call made before it is answered all the same.
    expect(await broken.hmacHexAll(key, inputs)).to.deep.equal(expected);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(broken.running).to.equal(0);
    expect(broken.hmacHexAll(key, inputs)).to.deep.equal(expected);
    // new Worker throwing at once (here: given no code at all) must not fail the start of the service.
    const none = pool(1, 42 as unknown as string);
    expect(none.running).to.equal(0);
    expect(none.hmacHexAll(key, inputs)).to.deep.equal(expected);
    expect(broken.stats.workerFailures + none.stats.workerFailures).to.equal(2);
    expect(warnings).to.have.length(2);
  });

  it('starts its workers with the first bulk call, not before (a process that makes none runs none)', async () => {
    const workers = pool(2);
    expect(workers.running).to.equal(0);
    workers.hmacHexAll(key, inputs.slice(0, BLIND_INDEX_WORKER_MIN_INPUTS - 1));
    expect(workers.running, 'a small call starts nothing').to.equal(0);
    expect(await workers.hmacHexAll(key, inputs)).to.deep.equal(expected);
    expect(workers.running).to.equal(2);
  });

  // A worker that takes requests and never answers (a lost message, a thread that hangs).
  const SILENT = `const { parentPort } = require('node:worker_threads'); parentPort.on('message', () => undefined); parentPort.postMessage('ready');`;

  it('gives up a worker that does not answer in time: the call is answered here, the worker ended, and that is logged', async () => {
    const workers = pool(1, SILENT, 200);
    const started = Date.now();
    expect(await workers.hmacHexAll(key, inputs)).to.deep.equal(expected);
    expect(Date.now() - started).to.be.within(150, 5000);
    expect(workers.running).to.equal(0);
    expect(workers.stats).to.include({ offloaded: 0, inline: inputs.length, workerFailures: 1 });
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/did not answer within 200 ms/);
  });

  it('does not count a slow start of the worker against the reply timeout (a loaded machine must not lose it for good)', async () => {
    // The real worker, after 600 ms of start-up work; the reply timeout is 300 ms.
    const slowStart = `const t = Date.now(); while (Date.now() - t < 600) {}\n${BLIND_INDEX_WORKER_SOURCE}`;
    const workers = pool(1, slowStart, 300);
    expect(await workers.hmacHexAll(key, inputs)).to.deep.equal(expected);
    expect(workers.stats).to.include({ offloaded: 1, inline: 0, workerFailures: 0 });
    expect(workers.running).to.equal(1);
    expect(warnings).to.have.length(0);
  });

  it('holds at most BLIND_INDEX_WORKER_MAX_QUEUED_INPUTS inputs per worker; a call beyond that is hashed here at once', async () => {
    const workers = pool(1, SILENT, 60_000);
    const held: Array<Promise<string[]>> = [];
    for (let queued = 0; queued + inputs.length <= BLIND_INDEX_WORKER_MAX_QUEUED_INPUTS; queued += inputs.length) {
      const answer = workers.hmacHexAll(key, inputs);
      expect(answer, `call ${held.length + 1} goes to the worker`).to.be.instanceOf(Promise);
      held.push(answer as Promise<string[]>);
    }
    expect(held.length).to.be.at.least(2);
    const over = workers.hmacHexAll(key, inputs);
    expect(over, 'the worker is full: answered on this thread, without waiting').to.be.an('array');
    expect(over).to.deep.equal(expected);
    // Stopping answers what the silent worker held.
    await workers.stop();
    for (const answer of held) expect(await answer).to.deep.equal(expected);
  });

  it('answers on the calling thread what a worker reports it could not hash', async () => {
    const workers = pool(1, `const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => { if (m !== 'stop') parentPort.postMessage({ id: m.id, failed: 'Error' }); else parentPort.close(); });`);
    expect(await workers.hmacHexAll(key, inputs)).to.deep.equal(expected);
    expect(workers.stats).to.include({ offloaded: 0, inline: inputs.length, workerFailures: 0 });
    expect(workers.running).to.equal(1);
  });

  it('fails the call, not the process, when its inputs cannot be hashed on either thread', async () => {
    const workers = pool(1);
    const bad = [...inputs.slice(0, 99), 42 as unknown as string];
    let error: unknown;
    await Promise.resolve(workers.hmacHexAll(key, bad)).catch((err: unknown) => (error = err));
    expect(error).to.be.instanceOf(TypeError);
    // The worker is still there for the next call.
    expect(await workers.hmacHexAll(key, inputs)).to.deep.equal(expected);
  });

  it('stop() lets a call already out finish, and ends the workers', async () => {
    const workers = pool(1);
    const answer = workers.hmacHexAll(key, inputs);
    await workers.stop();
    expect(await answer).to.deep.equal(expected);
    expect(workers.running).to.equal(0);
    expect(warnings, 'a stop is not a failure').to.have.length(0);
  });
});
