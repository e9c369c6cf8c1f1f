import { credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ConsentServiceClient, StreamChangesRequest } from '../../src/gen/consent/v1/consent';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { loadConfig } from '../../src/config/config';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { errorDetails, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('call limits: open streams, cancellation, deadlines and message size', (db) => {
  let s: TestServer;
  let consent: ConsentServiceClient;
  const T = 'limits';
  before(async function () {
    s = await startTestServer(db(), { limits: { ...loadConfig({}).limits, maxStreamsPerPrincipal: 2, maxMessageBytes: 64 * 1024 } });
    consent = new ConsentServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
  });
  after(async () => {
    consent?.close();
    await s?.stop();
  });

  /** Opens a change feed (it stays open while nothing changes); resolves once the server answered with headers or an error. */
  const open = (deadlineMs?: number) => {
    const stream = consent.streamChanges(StreamChangesRequest.fromPartial({ parent: `tenants/${T}` }), new Metadata(), deadlineMs ? { deadline: Date.now() + deadlineMs } : {});
    const ended = new Promise<ServiceError | null>((resolve) => {
      stream.on('error', (e: ServiceError) => resolve(e));
      stream.on('end', () => resolve(null));
      stream.on('data', () => undefined);
    });
    const started = new Promise<void>((resolve) => {
      stream.on('metadata', () => resolve());
      void ended.then(() => resolve());
    });
    return { stream, ended, started };
  };

  it('a principal holds at most MAX_STREAMS_PER_PRINCIPAL streams; a cancelled one frees its slot', async function () {
    this.timeout(30_000);
    const a = open();
    const b = open();
    await Promise.all([a.started, b.started]);
    const c = open();
    const refused = await c.ended;
    expect(refused?.code).to.equal(status.RESOURCE_EXHAUSTED);
    expect(errorDetails(refused!).reason).to.equal('TOO_MANY_STREAMS');

    a.stream.cancel();
    expect((await a.ended)?.code).to.equal(status.CANCELLED);
    // The server notices the cancellation and gives the slot back.
    let d = open();
    for (let i = 0; i < 20; i++) {
      await d.started;
      const early = await Promise.race([d.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 200))]);
      if (early === 'open') break;
      d = open();
    }
    const still = await Promise.race([d.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 300))]);
    expect(still, 'a new stream after a cancel').to.equal('open');
    b.stream.cancel();
    d.stream.cancel();
    await Promise.all([b.ended, d.ended]);
  });

  it('a stream whose deadline passes ends with DEADLINE_EXCEEDED and frees its slot', async function () {
    this.timeout(30_000);
    const short = open(400);
    expect((await short.ended)?.code).to.equal(status.DEADLINE_EXCEEDED);
    const again = [open(), open()];
    await Promise.all(again.map((x) => x.started));
    const outcome = await Promise.race([Promise.all(again.map((x) => x.ended)), new Promise<'open'>((r) => setTimeout(() => r('open'), 500))]);
    expect(outcome, 'both slots free again').to.equal('open');
    for (const x of again) x.stream.cancel();
    await Promise.all(again.map((x) => x.ended));
  });

  it('a stream the client cancels, or whose deadline passes, is logged as the client saw it (CANCELLED, CALL_ENDED_BY_CLIENT), not OK', async function () {
    this.timeout(30_000);
    const withId = (id: string) => {
      const m = new Metadata();
      m.set('x-request-id', id);
      return m;
    };
    const settle = (stream: NodeJS.EventEmitter) =>
      new Promise<number | null>((resolve) => {
        stream.on('error', (e: ServiceError) => resolve(e.code));
        stream.on('end', () => resolve(null));
        stream.on('data', () => undefined);
      });
    const lineOf = async (id: string) => {
      for (let i = 0; i < 50; i++) {
        const line = s
          .logs()
          .split('\n')
          .find((l) => l.includes(`"request_id":"${id}"`) && l.includes('"message":"rpc"'));
        if (line) return JSON.parse(line) as { code: string; reason: string; method: string };
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no rpc log line for ${id}`);
    };

    const feed = consent.streamChanges(StreamChangesRequest.fromPartial({ parent: `tenants/${T}` }), withId('cancelled-feed'));
    const feedEnded = settle(feed);
    await new Promise((r) => setTimeout(r, 300));
    feed.cancel();
    expect(await feedEnded).to.equal(status.CANCELLED);

    const late = consent.streamChanges(StreamChangesRequest.fromPartial({ parent: `tenants/${T}` }), withId('deadline-feed'), { deadline: Date.now() + 400 });
    expect(await settle(late)).to.equal(status.DEADLINE_EXCEEDED);

    const checks = consent.streamCheckConsent(withId('cancelled-checks'));
    const checksEnded = settle(checks);
    await new Promise((r) => setTimeout(r, 300));
    checks.cancel();
    expect(await checksEnded).to.equal(status.CANCELLED);

    for (const id of ['cancelled-feed', 'deadline-feed', 'cancelled-checks']) {
      const line = await lineOf(id);
      expect([line.code, line.reason], id).to.deep.equal(['CANCELLED', 'CALL_ENDED_BY_CLIENT']);
    }
  });

  it('a request larger than MAX_MESSAGE_BYTES is RESOURCE_EXHAUSTED and changes nothing', async function () {
    const tenants = new TenantServiceClient(s.address, credentials.createInsecure());
    try {
      const err = await new Promise<ServiceError>((resolve) =>
        tenants.createTenant({ tenantId: 'too-big', displayName: 'x'.repeat(100 * 1024), requestId: '', settings: undefined }, (e) => resolve(e!)),
      );
      expect(err.code).to.equal(status.RESOURCE_EXHAUSTED);
      const missing = await new Promise<ServiceError>((resolve) => tenants.getTenant({ name: 'tenants/too-big' }, (e) => resolve(e!)));
      expect(missing.code).to.equal(status.NOT_FOUND);
    } finally {
      tenants.close();
    }
  });
});
