import http2 from 'node:http2';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { loadConfig } from '../../src/config/config';
import { HealthClient } from '../../src/gen/grpc/health/v1/health';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';

/**
 * The request-arrival guard (src/transport/request-arrival-guard.ts) over real HTTP/2: calls whose
 * request message never arrives (a slow-loris client: headers and part of a message, then nothing)
 * are held at most MAX_PENDING_REQUESTS at once and for REQUEST_ARRIVAL_TIMEOUT_MS, and each one
 * ended is reset, so the server keeps neither the stream nor the call. Health checks still answer.
 */
const MAX_PENDING = 40;
const MAX_STREAMS = 2;
const TIMEOUT_MS = 600;
const T = 'arrival';

interface Outcome {
  grpcStatus: number | null;
  message: string;
  rstCode: number | null;
  closedAfterMs: number;
}

forEachDatabase('request-arrival guard (slow clients)', (db) => {
  let s: TestServer;
  let health: HealthClient;
  before(async function () {
    s = await startTestServer(db(), { limits: { ...loadConfig({}).limits, maxPendingRequests: MAX_PENDING, requestArrivalTimeoutMs: TIMEOUT_MS, maxStreamsPerPrincipal: MAX_STREAMS } });
    health = new HealthClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
  });
  after(async () => {
    health?.close();
    await s?.stop();
  });

  /** Opens a GetTenant call that sends its headers and 6 bytes of a message announced as 50, then nothing. */
  const unfinished = (session: http2.ClientHttp2Session): Promise<Outcome> => {
    return outcomeOf(session, '/consent.v1.TenantService/GetTenant', Buffer.from([0, 0, 0, 0, 50, 0x0a]));
  };

  /** Opens a call of `path`, sends `bytes` and never ends its half of the stream; resolves when the stream closes. */
  const outcomeOf = (session: http2.ClientHttp2Session, path: string, bytes: Buffer): Promise<Outcome> => {
    const started = Date.now();
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
    // (No zero-length write: with one, Node 20's client spins in a later session.destroy().)
    if (bytes.length > 0) stream.write(bytes);
    return new Promise((resolve) => {
      let grpcStatus: number | null = null;
      let message = '';
      const read = (headers: http2.IncomingHttpHeaders) => {
        if (headers['grpc-status'] !== undefined) grpcStatus = Number(headers['grpc-status']);
        if (headers['grpc-message'] !== undefined) message = decodeURIComponent(String(headers['grpc-message']));
      };
      stream.on('response', read);
      stream.on('trailers', read);
      stream.on('error', () => undefined);
      stream.resume();
      stream.on('close', () => resolve({ grpcStatus, message, rstCode: stream.rstCode ?? null, closedAfterMs: Date.now() - started }));
    });
  };

  const serving = async () => (await call(health, health.check, { service: '' })).status;

  it('holds at most MAX_PENDING_REQUESTS calls without their message, ends the others at once and the held ones after the timeout, resetting every stream', async function () {
    this.timeout(30_000);
    const session = http2.connect(`http://${s.address}`);
    session.on('error', () => undefined);
    try {
      const calls = Array.from({ length: MAX_PENDING + 25 }, () => unfinished(session));
      const outcomes = await Promise.all(calls);
      const refused = outcomes.filter((o) => o.grpcStatus === status.RESOURCE_EXHAUSTED);
      const timedOut = outcomes.filter((o) => o.grpcStatus === status.DEADLINE_EXCEEDED);
      expect(refused.length + timedOut.length, 'every unfinished call was ended by the server').to.equal(outcomes.length);
      expect(timedOut, 'the held ones').to.have.length(MAX_PENDING);
      expect(refused[0].message).to.equal('the server holds too many calls whose request has not arrived yet; retry shortly');
      expect(timedOut[0].message).to.equal(`the request message did not arrive within ${TIMEOUT_MS} ms of the call's start`);
      for (const o of timedOut) expect(o.closedAfterMs, 'not before the timeout').to.be.at.least(TIMEOUT_MS - 50);
      for (const o of refused) expect(o.closedAfterMs, 'refused at once').to.be.below(TIMEOUT_MS);
      // Reset by the server, not left half-open until the connection goes (that kept the memory).
      for (const o of outcomes) expect(o.rstCode).to.equal(http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      session.destroy();
    }
    const logs = s.logs();
    expect(logs).to.include('calls refused: too many calls wait for their request message (MAX_PENDING_REQUESTS)');
    expect(logs).to.include('calls ended: their request message did not arrive in time (REQUEST_ARRIVAL_TIMEOUT_MS)');
  });

  /** A gRPC frame of `message`. */
  const framed = (message: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
  /** GetTenantRequest { name: "tenants/arrival" }, complete. */
  const getTenant = framed(Buffer.concat([Buffer.from([0x0a, `tenants/${T}`.length]), Buffer.from(`tenants/${T}`)]));

  // Found by a probe: grpc-js runs a unary handler only at END_STREAM, and the guard counted the
  // call as arrived with its message, so a call with its message but no END_STREAM was held
  // forever, unauthenticated; enough of them ran the process out of memory.
  it('a call whose message is complete but whose client never ends the stream is held as one whose message never came: DEADLINE_EXCEEDED after the timeout, and reset', async function () {
    this.timeout(30_000);
    const session = http2.connect(`http://${s.address}`);
    session.on('error', () => undefined);
    try {
      const outcomes = await Promise.all(Array.from({ length: 3 }, () => outcomeOf(session, '/consent.v1.TenantService/GetTenant', getTenant)));
      for (const o of outcomes) {
        expect([o.grpcStatus, o.message]).to.deep.equal([status.DEADLINE_EXCEEDED, `the request message did not arrive within ${TIMEOUT_MS} ms of the call's start`]);
        expect(o.closedAfterMs).to.be.within(TIMEOUT_MS - 50, TIMEOUT_MS + 2_000);
        expect(o.rstCode).to.equal(http2.constants.NGHTTP2_NO_ERROR);
      }
      expect(await serving()).to.equal(1);
    } finally {
      session.destroy();
    }
  });

  // Found by a probe: a bidi stream refused before its handler (over the stream limit, or
  // UNAUTHENTICATED) got its status but kept its HTTP/2 stream while the client's half stayed open;
  // tens of thousands of them ran the process out of memory without credentials.
  it('a stream refused while its client still has its half open is reset once the status went out; the streams within the limit stay open', async function () {
    this.timeout(30_000);
    const session = http2.connect(`http://${s.address}`);
    session.on('error', () => undefined);
    try {
      const path = '/consent.v1.ConsentService/StreamCheckConsent';
      let openClosed = false;
      const open = Array.from({ length: MAX_STREAMS }, () => outcomeOf(session, path, Buffer.alloc(0)).then((o) => ((openClosed = true), o)));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const refused = await Promise.all(Array.from({ length: 5 }, () => outcomeOf(session, path, Buffer.alloc(0))));
      for (const o of refused) {
        expect(o.grpcStatus).to.equal(status.RESOURCE_EXHAUSTED);
        expect(o.rstCode, 'reset, not left open').to.equal(http2.constants.NGHTTP2_NO_ERROR);
        expect(o.closedAfterMs, 'soon after the status').to.be.below(3_000);
      }
      expect(openClosed, 'the streams within the limit are not touched').to.equal(false);
      // A turn of the event loop first: Node 20's client spins in session.destroy() called in the
      // same turn as its reset streams' 'close' events (a client bug; RFC 9113 8.1 allows the reset).
      await new Promise((resolve) => setImmediate(resolve));
      session.destroy();
      await Promise.all(open);
    } finally {
      session.destroy();
    }
  });

  it('health checks answer while the limit is reached; complete calls go through again once the held ones ended', async function () {
    this.timeout(30_000);
    const session = http2.connect(`http://${s.address}`);
    session.on('error', () => undefined);
    try {
      const held = Array.from({ length: MAX_PENDING }, () => unfinished(session));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await serving(), 'health is never refused').to.equal(1);
      const refused = await call(s.tenants, s.tenants.getTenant, { name: `tenants/${T}` }).then(
        () => null,
        (e: { code: number }) => e.code,
      );
      expect(refused, 'a complete call is refused while the limit is reached').to.equal(status.RESOURCE_EXHAUSTED);
      await Promise.all(held);
      const tenant = await call(s.tenants, s.tenants.getTenant, { name: `tenants/${T}` });
      expect(tenant.tenant!.name).to.equal(`tenants/${T}`);
    } finally {
      session.destroy();
    }
  });
});
