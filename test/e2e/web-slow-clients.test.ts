import net from 'node:net';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { ApiClient } from '../../src/console/api-client';
import { RunningConsole, startConsole } from '../../src/console/server';
import { createLogger } from '../../src/logging/logger';
import { ApiClient as PcApiClient } from '../../src/privacy-center/api-client';
import { RunningPrivacyCenter, startPrivacyCenter } from '../../src/privacy-center/server';
import { forEachDatabase } from '../support/databases';
import { startTestServer, TestServer } from '../support/test-server';

/**
 * Both web front ends end a request whose body trickles in (src/web/bounded-http-server.ts): found
 * by an adversarial probe, 2,000 connections to the console that sent a body a byte every 30 s
 * stayed open for ever and held 140 MB. Over real TCP; the limit is set low for the test.
 */
const LIMIT_MS = 1_000;

forEachDatabase('web front ends: slow request bodies, addresses the router refuses', (db) => {
  let s: TestServer;
  let web: RunningConsole;
  let pc: RunningPrivacyCenter;
  before(async function () {
    this.timeout(60_000);
    s = await startTestServer(db());
    const logger = createLogger('error', new PassThrough());
    web = await startConsole({ port: 0, bindAddress: '127.0.0.1', signIn: 'development', proxyHeader: 'x-console-user' }, { api: new ApiClient({ address: s.address }), logger, requestTimeoutMs: LIMIT_MS });
    pc = await startPrivacyCenter({ port: 0, bindAddress: '127.0.0.1', publicUrl: '', trustProxy: [], postsPerMinute: 20 }, { api: new PcApiClient({ address: s.address }), logger, requestTimeoutMs: LIMIT_MS });
  });
  after(async () => {
    await web?.close();
    await pc?.close();
    await s?.stop();
  });

  /** Sends a POST's headers and part of its body, then nothing; resolves with what the server answered and when it closed. */
  const trickle = (port: number, path: string) =>
    new Promise<{ answer: string; closedAfterMs: number }>((resolve, reject) => {
      const started = Date.now();
      let answer = '';
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n`);
        socket.write('a='.padEnd(1000, 'x'));
      });
      socket.on('data', (d: Buffer) => (answer += d.toString('utf8')));
      socket.on('error', reject);
      socket.on('close', () => resolve({ answer, closedAfterMs: Date.now() - started }));
      setTimeout(() => socket.destroy(new Error('the server kept the connection open')), 20_000).unref();
    });

  it('the console and the privacy center answer 408 and close a request whose body stops arriving', async function () {
    this.timeout(60_000);
    const [toConsole, toPrivacyCenter] = await Promise.all([trickle(web.port, '/tenants/acme/requests'), trickle(pc.port, '/t/acme/signup')]);
    for (const [name, outcome] of [
      ['console', toConsole],
      ['privacy center', toPrivacyCenter],
    ] as const) {
      expect(outcome.answer.split('\r\n')[0], name).to.equal('HTTP/1.1 408 Request Timeout');
      expect(outcome.closedAfterMs, name).to.be.at.least(LIMIT_MS - 100).and.below(LIMIT_MS + 3_000);
    }
  });

  it('an address too long for the router is their own 414 page with the security headers, not Fastify\'s JSON repeating the path', async function () {
    const long = 'a'.repeat(5000);
    for (const [name, url] of [
      ['console', `http://127.0.0.1:${web.port}/tenants/${long}/requests`],
      ['privacy center', `http://127.0.0.1:${pc.port}/t/acme/preferences/${long}`],
    ]) {
      const answer = await fetch(url);
      const body = await answer.text();
      expect(answer.status, name).to.equal(414);
      expect(answer.headers.get('content-type'), name).to.match(/^text\/html/);
      expect(answer.headers.get('content-security-policy'), name).to.include("default-src 'none'").and.include("frame-ancestors 'none'");
      expect([answer.headers.get('x-frame-options'), answer.headers.get('cache-control'), answer.headers.get('referrer-policy')], name).to.deep.equal(['DENY', 'no-store', 'no-referrer']);
      expect(body, name).to.not.include('aaaaaaaaaa').and.not.include('FST_ERR');
    }
  });
});
