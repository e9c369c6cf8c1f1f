import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, credentials, status as grpcStatus } from '@grpc/grpc-js';
import { MAX_HEALTH_WATCHES } from '../../src/transport/server';
import { expect } from 'chai';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../../src/gen/grpc/health/v1/health';
import { createTestDatabase, TestDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { startServerProcess } from '../support/server-process';
import { call, startTestServer, TestServer } from '../support/test-server';
import { NOT_SERVED_YET } from '../support/rpc-catalog';

const run = promisify(execFile);
const BUF = path.join(__dirname, '..', '..', 'node_modules', '.bin', 'buf');

/** buf curl with server reflection only: it has none of our protos. */
async function bufCurl(address: string, method: string, body: object): Promise<string> {
  try {
    const { stdout } = await run(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '-d', JSON.stringify(body), `http://${address}/${method}`], {
      timeout: 20_000,
    });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
}

describe('health and reflection', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let s: TestServer;
  before(async function () {
    db = await createTestDatabase('sqlite');
    s = await startTestServer(db);
    await seedTenant(s, 'ops');
  });
  after(async function () {
    await s?.stop();
    await db?.drop();
  });

  it('serves grpc.health.v1 for the server and each service', async function () {
    const health = new HealthClient(s.address, credentials.createInsecure());
    try {
      for (const service of ['', 'consent.v1.ConsentService', 'consent.v1.TenantService', 'consent.v1.PurposeService']) {
        const res = await call(health, health.check, { service });
        expect(res.status, service || 'server').to.equal(HealthCheckResponse_ServingStatus.SERVING);
      }
    } finally {
      health.close();
    }
  });

  it(`at most ${MAX_HEALTH_WATCHES} Health/Watch streams are open at once: one more is RESOURCE_EXHAUSTED, a closed one frees its place`, async function () {
    // A connection each (grpc-js would share one, and a connection carries at most 1,000 streams).
    const clients = [0, 1, 2].map(() => new HealthClient(s.address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
    const open: Array<{ cancel(): void }> = [];
    const watch = (client: HealthClient) =>
      new Promise<{ stream: { cancel(): void }; first: string }>((resolve) => {
        const stream = client.watch({ service: '' });
        stream.on('data', (r: { status: HealthCheckResponse_ServingStatus }) => resolve({ stream, first: HealthCheckResponse_ServingStatus[r.status] }));
        stream.on('error', (e: { code: number }) => resolve({ stream, first: `error ${e.code}` }));
      });
    try {
      for (let i = 0; i < MAX_HEALTH_WATCHES; i += 100) {
        const batch = await Promise.all(Array.from({ length: 100 }, (_, j) => watch(clients[(i + j) % 2])));
        for (const w of batch) {
          expect(w.first).to.equal('SERVING');
          open.push(w.stream);
        }
      }
      expect((await watch(clients[2])).first, 'one more').to.equal(`error ${grpcStatus.RESOURCE_EXHAUSTED}`);
      open.pop()!.cancel();
      await new Promise((r) => setTimeout(r, 200));
      const again = await watch(clients[2]);
      expect(again.first, 'a place freed').to.equal('SERVING');
      open.push(again.stream);
      // Check is not limited.
      expect((await call(clients[2], clients[2].check, { service: '' })).status).to.equal(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      for (const stream of open) stream.cancel();
      for (const c of clients) c.close();
    }
  });

  it('reflection holds back a client that sends requests and never reads the answers (no unbounded buffering)', async function () {
    // Its own server process: without back-pressure this flood ends that process, not mocha.
    const child = await startServerProcess(db, { env: { LOG_LEVEL: 'warn' } });
    const client = new Client(child.address, credentials.createInsecure());
    try {
      // A reflection request for a file: ~35 bytes asking for an answer of tens of KB.
      const symbol = Buffer.from('consent.v1.SubjectRightsService');
      const request = Buffer.concat([Buffer.from([0x22, symbol.length]), symbol]);
      const stream = client.makeBidiStreamRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', (b: Buffer) => b, (b: Buffer) => b);
      stream.on('error', () => undefined);
      stream.pause();
      const sent = { n: 0 };
      const total = 200_000;
      for (let i = 0; i < total; i++) stream.write(request, () => sent.n++);
      // Without back-pressure the server goes on taking a window's worth of requests every few
      // seconds (queueing their answers) until the client has sent everything; with it, it takes
      // a few windows and then stops for good once the answers wait to be sent.
      let last = -1;
      let since = performance.now();
      while (performance.now() - since < 6000) {
        await new Promise((r) => setTimeout(r, 500));
        if (sent.n !== last) {
          last = sent.n;
          since = performance.now();
        }
        if (sent.n === total) break;
      }
      expect(sent.n, 'requests the server took while the client read nothing').to.be.below(total);
      expect(child.hasExited(), 'the server lives').to.equal(false);
      const rssKb = Number(readFileSync(`/proc/${child.child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)![1]);
      expect(rssKb, 'server memory (KiB)').to.be.below(600 * 1024);
      stream.cancel();
      expect(await child.health(), 'still answering').to.equal('SERVING');
    } finally {
      client.close();
      await child.stop();
    }
  });

  it('lets buf curl list and call every method through reflection alone', async function () {
    const { stdout } = await run(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--list-methods', `http://${s.address}`]);
    const methods = stdout.trim().split('\n').filter((m) => m.startsWith('consent.v1.'));
    expect(methods, 'every method of the protos, served or not yet (NOT_SERVED_YET)').to.have.length(57);
    const bodies: Record<string, object> = {
      'consent.v1.TenantService/GetTenant': { name: 'tenants/ops' },
      'consent.v1.ConsentService/CheckConsent': {
        parent: 'tenants/ops',
        query: { subject_identifier: { phone_number: '+4915112345678' }, purpose: 'tenants/ops/purposes/newsletter', channel: 'CHANNEL_WHATSAPP' },
      },
      'consent.v1.PurposeService/ListPurposes': { parent: 'tenants/ops' },
    };
    for (const method of methods) {
      // Declared, served by another branch once merged: reflection still resolves them (UNIMPLEMENTED).
      if (NOT_SERVED_YET.has(method.replace(/\.([A-Za-z]+)$/, '/$1'))) continue;
      const out = await bufCurl(s.address, method.replace(/\.([A-Za-z]+)$/, '/$1'), bodies[method.replace(/\.([A-Za-z]+)$/, '/$1')] ?? {});
      // Reflection worked when the call reached our server: a JSON answer or one of our statuses.
      expect(out, method).to.not.match(/failed to find|could not resolve|unknown (method|service)|unimplemented/i);
      expect(out, method).to.match(/^\{|"code"|invalid_argument|not_found|failed_precondition/i);
    }
    const check = JSON.parse(await bufCurl(s.address, 'consent.v1.ConsentService/CheckConsent', bodies['consent.v1.ConsentService/CheckConsent']));
    expect(check.decision.verdict).to.equal('VERDICT_DENY');
    expect(check.decision.reason).to.equal('DECISION_REASON_UNKNOWN_SUBJECT');
    const health = JSON.parse(await bufCurl(s.address, 'grpc.health.v1.Health/Check', {}));
    expect(health.status).to.equal('SERVING');
  });
});
