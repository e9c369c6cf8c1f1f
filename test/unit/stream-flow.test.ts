import { Duplex } from 'node:stream';
import { ServerDuplexStreamImpl } from '@grpc/grpc-js/build/src/server-call';
import { expect } from 'chai';
import { drained, writeBatch, writeBatchAndWait } from '../../src/transport/stream-flow';

type Callback = (error?: Error | null) => void;

/**
 * A Duplex that writes like grpc-js's server stream: `_write` only, each write completing on a
 * later turn of the event loop (when HTTP/2 has taken the data), or failing.
 */
class TransportLikeStream extends Duplex {
  readonly handed: string[] = [];
  /** How many writes were handed over before the first one completed. */
  handedBeforeFirstCompletion = -1;
  failOn: string | null = null;

  constructor() {
    super({ objectMode: true });
  }

  override _read(): void {}

  override _write(chunk: string, _encoding: string, callback: Callback): void {
    this.handed.push(chunk);
    setImmediate(() => {
      if (this.handedBeforeFirstCompletion < 0) this.handedBeforeFirstCompletion = this.handed.length;
      callback(chunk === this.failOn ? new Error('the transport failed') : null);
    });
  }
}

const messages = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `m${from + i}`);

describe('writeBatch: a stream chunk handed to the transport at once', function () {
  it('grpc-js server streams still define _write and no _writev of their own (what writeBatch relies on)', function () {
    expect(ServerDuplexStreamImpl.prototype).to.have.property('_write').that.is.a('function');
    expect(typeof (ServerDuplexStreamImpl.prototype as unknown as { _writev: unknown })._writev).to.not.equal('function');
  });

  it('plain writes reach the transport one per completed write; writeBatch hands over the whole chunk before the first completes', async function () {
    const plain = new TransportLikeStream();
    for (const m of messages(100)) plain.write(m);
    await drained(plain, new AbortController().signal);
    expect(plain.handedBeforeFirstCompletion, 'without writeBatch').to.equal(1);
    expect(plain.handed).to.deep.equal(messages(100));

    const batched = new TransportLikeStream();
    writeBatch(batched, messages(100));
    expect(batched.handed, 'handed over synchronously, in order').to.deep.equal(messages(100));
    await drained(batched, new AbortController().signal);
    expect(batched.handedBeforeFirstCompletion).to.equal(100);
  });

  it('keeps the order across batches and with plain writes in between', async function () {
    const stream = new TransportLikeStream();
    const signal = new AbortController().signal;
    if (!writeBatch(stream, messages(40, 0))) await drained(stream, signal);
    stream.write('single');
    if (!writeBatch(stream, messages(40, 40))) await drained(stream, signal);
    writeBatch(stream, []);
    if (!writeBatch(stream, messages(3, 80))) await drained(stream, signal);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stream.handed).to.deep.equal([...messages(40, 0), 'single', ...messages(40, 40), ...messages(3, 80)]);
    expect(stream.writableLength, 'nothing left buffered').to.equal(0);
  });

  it('says when the buffer is full (the caller then waits for drained), and has room again after it drained', async function () {
    const stream = new TransportLikeStream();
    expect(writeBatch(stream, messages(stream.writableHighWaterMark + 1))).to.equal(false);
    await drained(stream, new AbortController().signal);
    expect(stream.writableLength).to.equal(0);
    expect(writeBatch(stream, messages(2))).to.equal(true);
  });

  it('writeBatchAndWait resolves only once the transport has taken the whole batch (however few messages it is)', async function () {
    const stream = new TransportLikeStream();
    let resolved = false;
    const waiting = writeBatchAndWait(stream, messages(2), new AbortController().signal).then(() => (resolved = true));
    expect(stream.handed).to.deep.equal(messages(2));
    expect(resolved, 'not before the writes completed').to.equal(false);
    await waiting;
    expect(stream.writableLength, 'nothing left buffered').to.equal(0);
    // A transport that never completes (a client that does not read): it waits until the call ends.
    const stuck = new TransportLikeStream();
    stuck._write = (chunk: string) => void stuck.handed.push(chunk);
    const abort = new AbortController();
    let ended = false;
    const blocked = writeBatchAndWait(stuck, messages(1), abort.signal).then(() => (ended = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(ended, 'still waiting while nothing is taken').to.equal(false);
    abort.abort();
    await blocked;
    await writeBatchAndWait(stuck, messages(1), abort.signal); // an ended call: at once
    await writeBatchAndWait(new TransportLikeStream(), [], new AbortController().signal); // nothing to write: at once
  });

  it('a failed write fails the stream once, with the transport error', async function () {
    const stream = new TransportLikeStream();
    stream.failOn = 'm3';
    const errors: Error[] = [];
    stream.on('error', (err) => errors.push(err));
    writeBatch(stream, messages(10));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(errors.map((e) => e.message)).to.deep.equal(['the transport failed']);
    expect(stream.destroyed).to.equal(true);
  });

  it('a stream that defines its own _writev keeps it', async function () {
    const seen: string[][] = [];
    const own = new Duplex({
      objectMode: true,
      read() {},
      writev(chunks, callback) {
        seen.push(chunks.map((c) => c.chunk as string));
        callback();
      },
    });
    writeBatch(own, messages(5));
    expect(seen).to.deep.equal([messages(5)]);
  });
});
