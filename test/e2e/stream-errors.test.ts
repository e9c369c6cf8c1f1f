import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ClientDuplexStream, ClientReadableStream, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import {
  ConsentEventKind,
  ConsentServiceClient,
  RecordConsentRequest,
  StreamCheckConsentRequest,
  StreamCheckConsentResponse,
} from '../../src/gen/consent/v1/consent';
import { KeyServiceClient } from '../../src/gen/consent/v1/key';
import { CreateRequestRequest, ReceivedVia, RequestKind, SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { BadRequest, ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { asBearer } from '../support/bearer';
import { forEachDatabase } from '../support/databases';
import { phone, query, seedTenant } from '../support/fixtures';
import { startServerProcess, ServerProcess } from '../support/server-process';
import { proxyFor, TcpProxy } from '../support/tcp-proxy';
import { call, errorDetails, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER } from '../support/tokens';

/**
 * The error paths of the three streaming RPCs (StreamChanges, ExportSubjectData,
 * StreamCheckConsent): invalid argument, not found, permission denied, failed precondition, the
 * client cancelling and the deadline passing in the middle of a stream, and the database failing
 * in the middle of a stream. Each call ends with its status, and only that call: the server runs
 * as its own process (a failure that ends it, like an unhandled promise rejection, is seen as
 * that), and after every test it is alive, SERVING, answers a normal check and has written
 * nothing 'unhandled'. Callers hold bearer tokens (docs/security.md), so roles and tenants apply.
 */

/** better-sqlite3 (the driver the service uses) has no type declarations installed; these are the calls used. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Database = require('better-sqlite3') as new (file: string, options?: { timeout?: number }) => { exec(sql: string): void; close(): void };

const T = 'streamerr';
const OTHER = 'streamerr-other';
const SCRAP = 'streamerr-scrap';
const ALL_ROLES = ['sender', 'recorder', 'dpo', 'auditor', 'admin'];
/** Streams one principal may hold open; the mid-stream tests repeat beyond it, so a leaked slot fails them. */
const MAX_STREAMS = 3;
const REPEAT = MAX_STREAMS + 1;
/** Events of the person whose export is long: ~8 KB each in the package and the HTML (megabytes in all). */
const LONG_EVENTS = 400;
const LONG_PHONE = '+4915112340099';
const ERASED_PHONE = '+4915112340098';

forEachDatabase('streaming calls that fail end only themselves', (db, kind) => {
  let server: ServerProcess;
  let proxy: TcpProxy | undefined;
  let consent: ConsentServiceClient;
  let rights: SubjectRightsServiceClient;
  let tokens: { admin: string; dpoOnly: string; auditorOnly: string; foreign: string };
  let longExport = '';
  let erasedExport = '';
  let changesSettleAt = 0;
  const clients: Array<{ close(): void }> = [];
  const consentAs = (token: string) => remember(new ConsentServiceClient(server.address, credentials.createInsecure(), asBearer(token)));
  const rightsAs = (token: string) => remember(new SubjectRightsServiceClient(server.address, credentials.createInsecure(), asBearer(token)));
  const remember = <C extends { close(): void }>(c: C): C => {
    clients.push(c);
    return c;
  };

  /**
   * The server's handlers of `count` calls of `method` started after output offset `from` have
   * ended (each writes its log line then): a call the client left does not keep working.
   */
  async function expectHandlersEnded(method: string, from: number, count: number): Promise<void> {
    const until = Date.now() + 5000;
    for (;;) {
      const lines = server.output().slice(from).split('\n').filter((l) => l.includes(`"method":"${method}"`) && /"message":"rpc( failed)?"/.test(l));
      if (lines.length >= count) return;
      if (Date.now() > until) expect.fail(`${lines.length} of ${count} ${method} calls ended on the server within 5 s of the client leaving`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  before(async function () {
    this.timeout(180_000);
    const issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const jwks = path.join(db().dataDir, 'jwks.json');
    writeFileSync(jwks, issuer.jwks);
    const exp = Math.floor(Date.now() / 1000) + 3600;
    tokens = {
      admin: await issuer.sign({ sub: 'stream-admin', roles: ALL_ROLES, tenants: '*', exp }),
      dpoOnly: await issuer.sign({ sub: 'stream-dpo', roles: ['dpo'], tenants: [T], exp }),
      auditorOnly: await issuer.sign({ sub: 'stream-auditor', roles: ['auditor'], tenants: [T], exp }),
      foreign: await issuer.sign({ sub: 'stream-foreign', roles: ALL_ROLES, tenants: [OTHER], exp }),
    };
    const env: Record<string, string> = {
      JWT_JWKS_FILE: jwks,
      JWT_ISSUER: TEST_ISSUER,
      JWT_AUDIENCE: TEST_AUDIENCE,
      MAX_STREAMS_PER_PRINCIPAL: String(MAX_STREAMS),
    };
    if (kind === 'mariadb') {
      // The service reaches MariaDB (data and key store) through a proxy the tests can cut.
      const { config, keyStore } = db();
      if (config.kind !== 'mysql' || keyStore.kind !== 'mysql') throw new Error('a MariaDB test database has MySQL URLs');
      const data = new URL(config.url);
      const proxied = await proxyFor(data.toString());
      proxy = proxied.proxy;
      env.DATABASE_URL = proxied.via(data.toString());
      env.KEYSTORE_URL = proxied.via(keyStore.url);
    }
    server = await startServerProcess(db(), { env });
    consent = consentAs(tokens.admin);
    rights = rightsAs(tokens.admin);
    const tenants = remember(new TenantServiceClient(server.address, credentials.createInsecure(), asBearer(tokens.admin)));
    const purposes = remember(new PurposeServiceClient(server.address, credentials.createInsecure(), asBearer(tokens.admin)));
    for (const t of [T, OTHER, SCRAP]) await seedTenant({ tenants, purposes } as unknown as TestServer, t);

    // A person with many events (half of them opt-outs, which the change feed carries), each
    // with 4 KB of evidence: a long export and a long change feed.
    for (let i = 0; i < LONG_EVENTS; i++) {
      const optOut = i % 2 === 1;
      await call(consent, consent.recordConsent, RecordConsentRequest.fromPartial({
        parent: `tenants/${T}`,
        subjectIdentifier: phone(LONG_PHONE),
        purpose: `tenants/${T}/purposes/newsletter`,
        channel: Channel.CHANNEL_WHATSAPP,
        kind: optOut ? ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT : ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
        method: 1,
        notice: optOut ? '' : `tenants/${T}/purposes/newsletter/notices/1`,
        evidence: { freeText: `${i} ${'x'.repeat(4000)}` },
        requestId: `long-${i}`,
      }));
    }
    // The feed serves a change once it committed (no settle delay): the seeded ones are there.
    changesSettleAt = Date.now();
    longExport = await verifiedRequest(rights, RequestKind.REQUEST_KIND_ACCESS, LONG_PHONE, 'long-access');

    // A person erased after asking for their data: the export of that request cannot run.
    await call(consent, consent.recordConsent, RecordConsentRequest.fromPartial({
      parent: `tenants/${T}`, subjectIdentifier: phone(ERASED_PHONE), purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_SMS,
      kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN, method: 1, notice: `tenants/${T}/purposes/newsletter/notices/1`, requestId: 'erased-1',
    }));
    erasedExport = await verifiedRequest(rights, RequestKind.REQUEST_KIND_ACCESS, ERASED_PHONE, 'erased-access');
    const erasure = await verifiedRequest(rights, RequestKind.REQUEST_KIND_ERASURE, ERASED_PHONE, 'erased-erasure');
    await call(rights, rights.eraseSubject, { name: erasure });

    const keys = remember(new KeyServiceClient(server.address, credentials.createInsecure(), asBearer(tokens.admin)));
    await call(keys, keys.shredTenant, { name: `tenants/${SCRAP}`, confirmTenantId: SCRAP, requestId: 'shred-scrap' });
  });

  after(async function () {
    this.timeout(30_000);
    for (const c of clients) c.close();
    await server?.stop();
    await proxy?.cut();
  });

  afterEach(async function () {
    this.timeout(30_000);
    if (!server) return;
    expect(server.hasExited(), `the server process ended:\n${server.output().slice(-3000)}`).to.equal(false);
    expect(await server.health(5000)).to.equal('SERVING');
    const decision = await call(consent, consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(LONG_PHONE) }) });
    expect(decision.decision?.verdict, 'a normal check answered').to.be.a('number');
    expect(server.output()).not.to.match(/unhandled|UnhandledPromiseRejection/i);
  });

  describe('StreamChanges', function () {
    it('a cursor that does not parse: INVALID_ARGUMENT naming cursor', async function () {
      const err = await ended(consent.streamChanges({ parent: `tenants/${T}`, cursor: 'garbage!!' }));
      expect(err?.code).to.equal(status.INVALID_ARGUMENT);
      expect(errorDetails(err!).fields).to.deep.equal(['cursor']);
    });

    it('a malformed parent: INVALID_ARGUMENT naming parent', async function () {
      const err = await ended(consent.streamChanges({ parent: 'tenant/x/y', cursor: '' }));
      expect(err?.code).to.equal(status.INVALID_ARGUMENT);
      expect(errorDetails(err!).fields).to.deep.equal(['parent']);
    });

    it('a tenant that does not exist, and a tenant the caller may not see (which looks missing): NOT_FOUND', async function () {
      const missing = await ended(consent.streamChanges({ parent: 'tenants/nobody-here', cursor: '' }));
      expect(missing?.code).to.equal(status.NOT_FOUND);
      const foreign = await ended(consentAs(tokens.foreign).streamChanges({ parent: `tenants/${T}`, cursor: '' }));
      expect(foreign?.code).to.equal(status.NOT_FOUND);
      expect(errorDetails(foreign!).reason).to.equal(errorDetails(missing!).reason);
    });

    it('a role without access (dpo): PERMISSION_DENIED', async function () {
      const err = await ended(consentAs(tokens.dpoOnly).streamChanges({ parent: `tenants/${T}`, cursor: '' }));
      expect(err?.code).to.equal(status.PERMISSION_DENIED);
      expect(errorDetails(err!).reason).to.equal('ROLE_NOT_ALLOWED');
    });

    it('a shredded tenant: FAILED_PRECONDITION', async function () {
      const err = await ended(consent.streamChanges({ parent: `tenants/${SCRAP}`, cursor: '' }));
      expect(err?.code).to.equal(status.FAILED_PRECONDITION);
    });

    it('cancelled by the client, and past its deadline, while idle', async function () {
      const cancelled = await ended(consent.streamChanges({ parent: `tenants/${OTHER}`, cursor: '' }), 300);
      expect(cancelled?.code).to.equal(status.CANCELLED);
      const late = await ended(consent.streamChanges({ parent: `tenants/${OTHER}`, cursor: '' }, { deadline: Date.now() + 400 }));
      expect(late?.code).to.equal(status.DEADLINE_EXCEEDED);
    });

    it(`cancelled by a client that stopped reading after the first change, ${REPEAT} times (stream slots are given back)`, async function () {
      this.timeout(60_000);
      await waitUntil(changesSettleAt);
      const from = server.output().length;
      for (let i = 0; i < REPEAT; i++) {
        const s = follow(consent.streamChanges({ parent: `tenants/${T}`, cursor: '' }), { pauseAfterFirst: true });
        await s.first;
        s.stream.cancel();
        expect((await s.ended)?.code, `round ${i}`).to.equal(status.CANCELLED);
      }
      await expectHandlersEnded('StreamChanges', from, REPEAT);
    });

    it(`past its deadline while the client stopped reading after the first change, ${REPEAT} times`, async function () {
      this.timeout(60_000);
      await waitUntil(changesSettleAt);
      const from = server.output().length;
      for (let i = 0; i < REPEAT; i++) {
        const s = follow(consent.streamChanges({ parent: `tenants/${T}`, cursor: '' }, { deadline: Date.now() + 1500 }), { pauseAfterFirst: true });
        await s.first;
        expect((await s.ended)?.code, `round ${i}`).to.equal(status.DEADLINE_EXCEEDED);
      }
      await expectHandlersEnded('StreamChanges', from, REPEAT);
    });
  });

  describe('ExportSubjectData', function () {
    it('a malformed name: INVALID_ARGUMENT naming name', async function () {
      const err = await ended(rights.exportSubjectData({ name: 'requests/1' }));
      expect(err?.code).to.equal(status.INVALID_ARGUMENT);
      expect(errorDetails(err!).fields).to.deep.equal(['name']);
    });

    it('a request that does not exist, and a request of a tenant the caller may not see: NOT_FOUND', async function () {
      const missing = await ended(rights.exportSubjectData({ name: `tenants/${T}/requests/00000000000000000000000000000000` }));
      expect(missing?.code).to.equal(status.NOT_FOUND);
      const foreign = await ended(rightsAs(tokens.foreign).exportSubjectData({ name: longExport }));
      expect(foreign?.code).to.equal(status.NOT_FOUND);
    });

    it('a role without access (auditor): PERMISSION_DENIED', async function () {
      const err = await ended(rightsAs(tokens.auditorOnly).exportSubjectData({ name: longExport }));
      expect(err?.code).to.equal(status.PERMISSION_DENIED);
      expect(errorDetails(err!).reason).to.equal('ROLE_NOT_ALLOWED');
    });

    it('a request whose identity is not verified: FAILED_PRECONDITION', async function () {
      const { request } = await call(
        rights,
        rights.createRequest,
        CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifier: phone('+4915112340001'), receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: 'se-1' }),
      );
      const err = await ended(rights.exportSubjectData({ name: request!.name }));
      expect(err?.code).to.equal(status.FAILED_PRECONDITION);
    });

    it('an erasure request: FAILED_PRECONDITION', async function () {
      const name = await verifiedRequest(rights, RequestKind.REQUEST_KIND_ERASURE, '+4915112340002', 'se-2');
      const err = await ended(rights.exportSubjectData({ name }));
      expect(err?.code).to.equal(status.FAILED_PRECONDITION);
    });

    it('a request of a person erased since: FAILED_PRECONDITION', async function () {
      const err = await ended(rights.exportSubjectData({ name: erasedExport }));
      expect(err?.code).to.equal(status.FAILED_PRECONDITION);
    });

    it(`cancelled by a client that stopped reading after the first part, ${REPEAT} times; then a whole export still completes`, async function () {
      this.timeout(90_000);
      const from = server.output().length;
      for (let i = 0; i < REPEAT; i++) {
        const s = follow(rights.exportSubjectData({ name: longExport }), { pauseAfterFirst: true });
        await s.first;
        s.stream.cancel();
        expect((await s.ended)?.code, `round ${i}`).to.equal(status.CANCELLED);
      }
      await expectHandlersEnded('ExportSubjectData', from, REPEAT);
      await expectWholeExport(rights, longExport);
    });

    it(`past its deadline while the client stopped reading after the first part, ${REPEAT} times; then a whole export still completes`, async function () {
      this.timeout(90_000);
      const from = server.output().length;
      for (let i = 0; i < REPEAT; i++) {
        const s = follow(rights.exportSubjectData({ name: longExport }, { deadline: Date.now() + 2000 }), { pauseAfterFirst: true });
        await s.first;
        expect((await s.ended)?.code, `round ${i}`).to.equal(status.DEADLINE_EXCEEDED);
        expect(s.messages.length, 'the export was cut short').to.be.lessThan(10);
      }
      await expectHandlersEnded('ExportSubjectData', from, REPEAT);
      await expectWholeExport(rights, longExport);
    });
  });

  describe('StreamCheckConsent', function () {
    const good = (correlationId: string): StreamCheckConsentRequest => ({ parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(LONG_PHONE) }), correlationId, items: [] });

    /** Sends `requests`, half-closes, and returns every answer and how the stream ended. */
    async function exchange(client: ConsentServiceClient, requests: StreamCheckConsentRequest[]) {
      const s = follow(client.streamCheckConsent());
      for (const r of requests) s.stream.write(r);
      s.stream.end();
      return { err: await s.ended, answers: s.messages };
    }

    /** The per-item error of an answer: code, ErrorInfo reason and BadRequest fields. */
    function itemError(answer: Pick<StreamCheckConsentResponse, 'result'>) {
      const e = answer.result?.error;
      if (!e) return null;
      const info = e.details.find((d) => d.typeUrl.endsWith('/google.rpc.ErrorInfo'));
      const bad = e.details.find((d) => d.typeUrl.endsWith('/google.rpc.BadRequest'));
      return {
        code: e.code,
        reason: info ? ErrorInfo.decode(info.value).reason : '',
        fields: bad ? BadRequest.decode(bad.value).fieldViolations.map((v) => v.field) : [],
      };
    }

    /** The bad item fails alone: the good ones around it are decided, the stream ends OK. */
    async function expectItemError(bad: StreamCheckConsentRequest, code: number, fields?: string[]) {
      const { err, answers } = await exchange(consent, [good('g1'), { ...bad, correlationId: 'bad' }, good('g2')]);
      expect(err, err?.details).to.equal(null);
      expect(answers.map((a) => a.correlationId)).to.deep.equal(['g1', 'bad', 'g2']);
      expect(itemError(answers[0]), 'the good item before').to.equal(null);
      expect(itemError(answers[2]), 'the good item after').to.equal(null);
      const e = itemError(answers[1]);
      expect(e?.code, `the bad item: ${answers[1].result?.error?.message}`).to.equal(code);
      expect(e?.reason, 'ErrorInfo reason').to.not.equal('');
      if (fields) expect(e?.fields).to.include.members(fields);
    }

    it('invalid items among good ones: each INVALID_ARGUMENT naming its field, the others decided', async function () {
      await expectItemError({ ...good(''), parent: 'tenant/x/y' }, status.INVALID_ARGUMENT, ['parent']);
      await expectItemError({ ...good(''), query: query(T, { subjectIdentifier: phone(LONG_PHONE), channel: 99 as Channel }) }, status.INVALID_ARGUMENT, ['query.channel']);
      await expectItemError({ ...good(''), query: query(T, { subjectIdentifier: phone(LONG_PHONE), purpose: 'purposes/newsletter' }) }, status.INVALID_ARGUMENT, ['query.purpose']);
      await expectItemError({ ...good(''), query: undefined }, status.INVALID_ARGUMENT, ['query']);
    });

    it('an item of a tenant that does not exist, of a tenant the caller may not see, and of a purpose that does not exist: NOT_FOUND', async function () {
      await expectItemError({ ...good(''), parent: 'tenants/nobody-here', query: query('nobody-here', { subjectIdentifier: phone(LONG_PHONE) }) }, status.NOT_FOUND);
      const { err, answers } = await exchange(consentAs(tokens.foreign), [good('foreign')]);
      expect(err, err?.details).to.equal(null);
      expect(itemError(answers[0])?.code, 'a tenant the caller may not see').to.equal(status.NOT_FOUND);
      await expectItemError({ ...good(''), query: query(T, { subjectIdentifier: phone(LONG_PHONE), purpose: `tenants/${T}/purposes/no-such-purpose` }) }, status.NOT_FOUND);
    });

    it('a role without access (dpo): the stream ends PERMISSION_DENIED', async function () {
      const { err, answers } = await exchange(consentAs(tokens.dpoOnly), [good('x')]);
      expect(err?.code).to.equal(status.PERMISSION_DENIED);
      expect(errorDetails(err!).reason).to.equal('ROLE_NOT_ALLOWED');
      expect(answers).to.deep.equal([]);
    });

    it('an item of a shredded tenant: FAILED_PRECONDITION', async function () {
      await expectItemError({ ...good(''), parent: `tenants/${SCRAP}`, query: query(SCRAP, { subjectIdentifier: phone(LONG_PHONE) }) }, status.FAILED_PRECONDITION);
    });

    /** A packed message of three questions (the middle one about an unknown purpose when `badMiddle`). */
    const packed = (correlationId: string, tenant = T, badMiddle = false): StreamCheckConsentRequest => ({
      parent: `tenants/${tenant}`,
      correlationId,
      query: undefined,
      consistency: undefined,
      items: [0, 1, 2].map((k) => ({
        correlationId: `${correlationId}.${k}`,
        query: query(tenant, { subjectIdentifier: phone(LONG_PHONE), ...(badMiddle && k === 1 ? { purpose: `tenants/${tenant}/purposes/no-such-purpose` } : {}) }),
      })),
    });

    it('packed messages: an unknown, invisible or shredded tenant refuses the message whole (NOT_FOUND, NOT_FOUND, FAILED_PRECONDITION); an unknown purpose fails its item; the stream goes on', async function () {
      const { err, answers } = await exchange(consent, [packed('p1'), packed('nobody', 'nobody-here'), packed('scrap', SCRAP), packed('p2', T, true), good('after')]);
      expect(err, err?.details).to.equal(null);
      expect(answers.map((a) => [a.correlationId, a.answers.length, itemError(a)?.code ?? null])).to.deep.equal([
        ['p1', 3, null],
        ['nobody', 0, status.NOT_FOUND],
        ['scrap', 0, status.FAILED_PRECONDITION],
        ['p2', 3, null],
        ['after', 0, null],
      ]);
      expect(answers[3].answers.map((a) => itemError(a)?.code ?? null)).to.deep.equal([null, status.NOT_FOUND, null]);
      const foreign = await exchange(consentAs(tokens.foreign), [packed('foreign')]);
      expect(foreign.err, foreign.err?.details).to.equal(null);
      expect(itemError(foreign.answers[0])?.code, 'a tenant the caller may not see').to.equal(status.NOT_FOUND);
      expect(foreign.answers[0].answers).to.deep.equal([]);
      const dpo = await exchange(consentAs(tokens.dpoOnly), [packed('x')]);
      expect(dpo.err?.code, 'a role without access').to.equal(status.PERMISSION_DENIED);
    });

    it(`packed messages: cancelled by a client that keeps sending, and past a deadline, ${REPEAT} times each; the handlers end`, async function () {
      this.timeout(60_000);
      const from = server.output().length;
      for (let i = 0; i < REPEAT; i++) {
        const s = follow(consent.streamCheckConsent());
        const sender = keepSending(s.stream, (id) => packed(id));
        await s.first;
        s.stream.cancel();
        const err = await s.ended;
        clearInterval(sender);
        expect(err?.code, `round ${i}`).to.equal(status.CANCELLED);
        const late = follow(consent.streamCheckConsent(new Metadata(), { deadline: Date.now() + 600 }), { pauseAfterFirst: true });
        const lateSender = keepSending(late.stream, (id) => packed(id));
        const lateErr = await late.ended;
        clearInterval(lateSender);
        expect(lateErr?.code, `round ${i}`).to.equal(status.DEADLINE_EXCEEDED);
      }
      await expectHandlersEnded('StreamCheckConsent', from, 2 * REPEAT);
    });

    it(`cancelled by a client that keeps sending, ${REPEAT} times (stream slots are given back)`, async function () {
      this.timeout(60_000);
      const from = server.output().length;
      for (let i = 0; i < REPEAT; i++) {
        const s = follow(consent.streamCheckConsent());
        const sender = keepSending(s.stream, good);
        await s.first;
        await new Promise((r) => setTimeout(r, 200));
        s.stream.cancel();
        const err = await s.ended;
        clearInterval(sender);
        expect(err?.code, `round ${i}`).to.equal(status.CANCELLED);
        expect(s.messages.length, 'answers before the cancel').to.be.greaterThan(0);
      }
      await expectHandlersEnded('StreamCheckConsent', from, REPEAT);
    });

    it(`past its deadline while the client keeps sending (reading, and not reading), ${REPEAT} times each`, async function () {
      this.timeout(60_000);
      const from = server.output().length;
      for (const pauseAfterFirst of [false, true]) {
        for (let i = 0; i < REPEAT; i++) {
          const s = follow(consent.streamCheckConsent(new Metadata(), { deadline: Date.now() + 800 }), { pauseAfterFirst });
          const sender = keepSending(s.stream, good);
          const err = await s.ended;
          clearInterval(sender);
          expect(err?.code, `round ${i}, ${pauseAfterFirst ? 'not reading' : 'reading'}`).to.equal(status.DEADLINE_EXCEEDED);
          expect(s.messages.length, 'answers before the deadline').to.be.greaterThan(0);
        }
      }
      await expectHandlersEnded('StreamCheckConsent', from, 2 * REPEAT);
    });
  });

  describe('the database failing mid-stream', function () {
    if (kind === 'mariadb') {
      /** Cuts the proxy to MariaDB, runs `during`, restores it and waits until the service serves again. */
      async function withDatabaseCut(during: () => Promise<void>): Promise<void> {
        await proxy!.cut();
        try {
          await during();
          expect(server.hasExited(), 'the process is still up').to.equal(false);
        } finally {
          await proxy!.start(proxy!.port);
        }
        await servesAgain(server, consent);
      }

      it('StreamChanges ends UNAVAILABLE; the service serves again when the database is back', async function () {
        this.timeout(60_000);
        await waitUntil(changesSettleAt);
        const s = follow(consent.streamChanges({ parent: `tenants/${T}`, cursor: '' }));
        await s.first;
        await withDatabaseCut(async () => {
          const err = await withTimeout(s.ended, 15_000, 'the stream did not end after the database went away');
          expect(err?.code, err?.details).to.equal(status.UNAVAILABLE);
        });
      });

      it('ExportSubjectData ends UNAVAILABLE; the service serves again when the database is back', async function () {
        this.timeout(60_000);
        const s = follow(rights.exportSubjectData({ name: longExport }), { pauseAfterFirst: true });
        await s.first;
        await withDatabaseCut(async () => {
          // The export still has events to read: it reads them once the client reads on.
          s.stream.resume();
          const err = await withTimeout(s.ended, 15_000, 'the export did not end after the database went away');
          expect(err?.code, err?.details).to.equal(status.UNAVAILABLE);
        });
      });

      it('StreamCheckConsent ends UNAVAILABLE at the first check it cannot answer without the database (the cache answers for at most B); the service serves again when it is back', async function () {
        this.timeout(60_000);
        const s = follow(consent.streamCheckConsent());
        s.stream.write({ parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(LONG_PHONE) }), correlationId: 'before', items: [] });
        await s.first;
        await withDatabaseCut(async () => {
          // A check every 50 ms: those within the staleness bound (1 s) of the cut may be answered
          // from the decision cache; the first one that needs the database ends the stream.
          let n = 0;
          const asking = setInterval(() => s.stream.write({ parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(LONG_PHONE) }), correlationId: `during-${n++}`, items: [] }), 50);
          try {
            const err = await withTimeout(s.ended, 15_000, 'the stream did not end after the database went away');
            expect(err?.code, err?.details).to.equal(status.UNAVAILABLE);
          } finally {
            clearInterval(asking);
          }
        });
      });

      it('StreamCheckConsent with packed messages ends UNAVAILABLE too, never a guessed ALLOW; the service serves again when the database is back', async function () {
        this.timeout(60_000);
        const ask = (id: string): StreamCheckConsentRequest => ({
          parent: `tenants/${T}`,
          correlationId: id,
          query: undefined,
          consistency: { requirement: { $case: 'fullyConsistent', value: true } },
          items: [{ correlationId: `${id}.0`, query: query(T, { subjectIdentifier: phone(LONG_PHONE) }) }],
        });
        const s = follow(consent.streamCheckConsent());
        s.stream.write(ask('before'));
        await s.first;
        await withDatabaseCut(async () => {
          // Fully consistent: every packed message needs the database.
          s.stream.write(ask('during'));
          const err = await withTimeout(s.ended, 15_000, 'the stream did not end after the database went away');
          expect(err?.code, err?.details).to.equal(status.UNAVAILABLE);
          expect(s.messages.map((m) => m.correlationId), 'no answer from the cut').to.deep.equal(['before']);
        });
      });
    } else {
      /*
       * SQLite is a file the process has open: it cannot go away like a server. What another
       * process can do is hold its write lock (a stuck writer, a backup tool): the service's
       * writes then fail SQLITE_BUSY after SQLITE_BUSY_TIMEOUT_MS. Of the three streams only the
       * export writes mid-stream (its completion is recorded at the end), so that is the
       * equivalent tested here. StreamChanges and StreamCheckConsent only read, and in WAL mode
       * readers are never blocked by a writer (an exclusive lock cannot be taken while the
       * service has the file open: tried, SQLITE_BUSY for the locker), so for them there is no
       * database failure short of corrupting the file.
       */
      it('ExportSubjectData ends UNAVAILABLE while another process holds the write lock; the service serves again after', async function () {
        this.timeout(60_000);
        const s = follow(rights.exportSubjectData({ name: longExport }), { pauseAfterFirst: true });
        await s.first;
        const { config } = db();
        if (config.kind !== 'sqlite') throw new Error('a SQLite test database has a file');
        const locker = new Database(config.file, { timeout: 5000 });
        try {
          locker.exec('BEGIN IMMEDIATE');
          s.stream.resume();
          const err = await withTimeout(s.ended, 30_000, 'the export did not end while the database was locked');
          expect(err?.code, err?.details).to.equal(status.UNAVAILABLE);
          expect(server.hasExited(), 'the process is still up').to.equal(false);
        } finally {
          locker.exec('ROLLBACK');
          locker.close();
        }
        await servesAgain(server, consent);
        await expectWholeExport(rights, longExport);
      });
    }
  });
});

/** A data-subject request created and verified, by name. */
async function verifiedRequest(rights: SubjectRightsServiceClient, kind: RequestKind, phoneNumber: string, requestId: string): Promise<string> {
  const { request } = await call(
    rights,
    rights.createRequest,
    CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifier: phone(phoneNumber), receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId }),
  );
  await call(rights, rights.verifyIdentity, { name: request!.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-1', identifierPositions: [] });
  return request!.name;
}

type AnyStream<T> = ClientReadableStream<T> | ClientDuplexStream<StreamCheckConsentRequest, T>;

/** Follows a stream: its messages, the first one's arrival, and how it ended (null when OK). */
function follow<S extends AnyStream<T>, T = S extends AnyStream<infer M> ? M : never>(stream: S, options: { pauseAfterFirst?: boolean } = {}) {
  const messages: T[] = [];
  let arrived: () => void = () => undefined;
  const first = new Promise<void>((resolve) => (arrived = resolve));
  const ended = new Promise<ServiceError | null>((resolve) => {
    stream.on('data', (m: T) => {
      messages.push(m);
      if (messages.length === 1) {
        if (options.pauseAfterFirst) stream.pause();
        arrived();
      }
    });
    stream.on('error', (err: ServiceError) => {
      arrived();
      resolve(err);
    });
    stream.on('end', () => {
      arrived();
      resolve(null);
    });
  });
  return { stream, messages, first, ended };
}

/** Reads a server stream to its end; resolves with the error it ended with (null when OK). */
function ended<T>(stream: ClientReadableStream<T>, cancelAfterMs?: number): Promise<ServiceError | null> {
  const s = follow(stream);
  const timer = cancelAfterMs === undefined ? undefined : setTimeout(() => stream.cancel(), cancelAfterMs);
  return s.ended.finally(() => clearTimeout(timer));
}

/** Writes a check every 2 ms until the interval is cleared or the stream is over. */
function keepSending(stream: ClientDuplexStream<StreamCheckConsentRequest, unknown>, make: (id: string) => StreamCheckConsentRequest): NodeJS.Timeout {
  let n = 0;
  const timer = setInterval(() => {
    if (stream.destroyed || stream.writableEnded) clearInterval(timer);
    else stream.write(make(`k${n++}`));
  }, 2);
  return timer;
}

/** A whole export of `name`: every part up to the signed manifest. */
async function expectWholeExport(rights: SubjectRightsServiceClient, name: string): Promise<void> {
  const s = follow(rights.exportSubjectData({ name }));
  const err = await s.ended;
  expect(err, err?.details).to.equal(null);
  const last = s.messages[s.messages.length - 1] as { part?: { $case: string } };
  expect(last?.part?.$case, 'the export ends with its manifest').to.equal('manifest');
}

/** Health SERVING and a normal check answered, within 30 s of the database coming back. */
async function servesAgain(server: ServerProcess, consent: ConsentServiceClient): Promise<void> {
  const until = Date.now() + 30_000;
  let last = '';
  while (Date.now() < until) {
    if ((await server.health(2000)) === 'SERVING') {
      try {
        await call(consent, consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(LONG_PHONE) }) });
        return;
      } catch (err) {
        last = `${status[(err as ServiceError).code]} ${(err as ServiceError).details}`;
      }
    } else {
      last = 'health not SERVING';
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  expect.fail(`the service did not serve again within 30 s of the database coming back: ${last}`);
}

function waitUntil(at: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));
}

function withTimeout<V>(promise: Promise<V>, ms: number, why: string): Promise<V> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<V>((_, reject) => (timer = setTimeout(() => reject(new Error(why)), ms)))]).finally(() => clearTimeout(timer));
}
