import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials, makeGenericClientConstructor, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, ConsentServiceClient, ImportConsentsRequest, ImportConsentsResponse, ImportRow } from '../../src/gen/consent/v1/consent';
import { ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { Status } from '../../src/gen/google/rpc/status';
import { asBearer } from '../support/bearer';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { runConsentctl } from '../support/processes';
import { errorDetails, startTestServer, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER } from '../support/tokens';

/**
 * The ImportConsents handler's own paths, driven with a raw client stream: what the call refuses
 * as a whole (no parent, two parents, too many rows, an unreadable message, a caller without the
 * recorder role, an unknown tenant), what it refuses per row, and a call that ends early (the
 * client cancels, the deadline passes): the batches committed before stay, nothing half-written,
 * and sending the same rows again records each exactly once.
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const T = 'rpc-imports';
/** Valid German mobile numbers, one per index. */
const mobile = (i: number) => `+4915${String(120000000 + i).padStart(9, "0")}`;

function row(i: number, overrides: Partial<ImportRow> = {}): ImportRow {
  return ImportRow.fromPartial({
    line: i + 2,
    subjectIdentifier: { kind: { $case: 'phoneNumber', value: mobile(i) }, defaultRegion: '' },
    purpose: `tenants/${T}/purposes/newsletter`,
    channel: Channel.CHANNEL_SMS,
    kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
    eventTime: new Date(Date.UTC(2024, 0, 1) + i * 60_000),
    method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
    notice: `tenants/${T}/purposes/newsletter/notices/1`,
    requestId: `rpc-${i}`,
    ...overrides,
  });
}

/** Messages of `size` rows for rows [from, to). */
function messages(from: number, to: number, size = 250, parent = `tenants/${T}`): ImportConsentsRequest[] {
  const out: ImportConsentsRequest[] = [];
  for (let start = from; start < to; start += size) {
    out.push({ parent: start === from ? parent : '', rows: Array.from({ length: Math.min(size, to - start) }, (_, k) => row(start + k)) });
  }
  return out;
}

/** google.rpc.ErrorInfo.metadata of a failed call. */
function errorInfoMetadata(err: ServiceError): Record<string, string> {
  const st = Status.decode(err.metadata.get('grpc-status-details-bin')[0] as Buffer);
  const info = st.details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
  return info ? ErrorInfo.decode(info.value).metadata : {};
}

interface Sent {
  response?: ImportConsentsResponse;
  error?: ServiceError;
}

/** One ImportConsents call: the messages in order (pausing between them), then half-close, cancel, or nothing. */
function importCall(client: ConsentServiceClient, sent: ImportConsentsRequest[], options: { deadlineMs?: number; pauseMs?: number; then?: 'end' | 'cancel' | 'stay-open' } = {}): Promise<Sent> {
  return new Promise((resolve) => {
    const call = client.importConsents(new Metadata(), options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {}, (error, response) => resolve(error ? { error } : { response }));
    void (async () => {
      for (const m of sent) {
        call.write(m);
        if (options.pauseMs) await sleep(options.pauseMs);
      }
      if ((options.then ?? 'end') === 'end') call.end();
      else if (options.then === 'cancel') call.cancel();
    })();
  });
}

forEachDatabase('ImportConsents', (db) => {
  let s: TestServer;
  let limited: TestServer;
  const storedEvents = async (server: TestServer = s): Promise<number> => {
    const [r] = await server.app.dataSource.query('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ?', [T]);
    return Number(r.n);
  };
  /** ImportConsents calls the server has logged as ended so far. */
  const callsEnded = (server: TestServer) => server.logs().split('\n').filter((l) => l.includes('"method":"ImportConsents"')).length;
  /**
   * Waits until the server has logged the end of the next ImportConsents call. grpc-js ends the
   * request stream of a call the client cancelled (or that passed its deadline) before it reports
   * the cancellation, so the handler may commit the rows it received and log OK: what matters is
   * that it ends, that nothing is written afterwards, and that the rows sent again are recorded once.
   */
  const handlerEnded = async (server: TestServer, endedBefore: number) => {
    const until = Date.now() + 15_000;
    while (callsEnded(server) <= endedBefore) {
      if (Date.now() > until) expect.fail('the server did not end the ImportConsents call within 15 s of the client leaving');
      await sleep(50);
    }
  };

  before(async function () {
    this.timeout(60_000);
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => {
    await s?.stop();
    await limited?.stop();
  });

  it('answers counts and per-row rejections; a row sent twice in one call is recorded once', async function () {
    const before = await storedEvents();
    const sent = messages(0, 5);
    sent.push({ parent: '', rows: [row(0), row(5, { kind: 99 as ConsentEventKind }), row(6, { eventTime: undefined }), row(7, { purpose: `tenants/${T}/purposes/nope`, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' })] });
    const { response, error } = await importCall(s.consent, sent);
    expect(error, error?.details).to.equal(undefined);
    expect(response).to.deep.include({ rows: 9, recorded: 5, alreadyRecorded: 1 });
    const rejected = response!.rejections.map((r) => [r.line, r.status!.code, r.status!.message.slice(0, 20)]);
    expect(rejected.map((r) => r[0])).to.deep.equal([7, 8, 9]);
    expect(response!.rejections.map((r) => r.status!.code)).to.deep.equal([status.INVALID_ARGUMENT, status.INVALID_ARGUMENT, status.NOT_FOUND]);
    expect(await storedEvents()).to.equal(before + 5);
  });

  // Found by a probe: two rows of one file with the same request_id, a batch apart: the later one
  // was often recorded and the earlier one refused (two batches commit at once).
  it('the same request_id on two rows a batch apart: the first row is recorded, the later one REQUEST_ID_REUSED, every time', async function () {
    this.timeout(120_000);
    for (let round = 0; round < 3; round++) {
      const base = 10_000 + round * 3_000;
      const sent = messages(base, base + 2_500);
      const rows = sent.flatMap((m) => m.rows);
      rows[0].requestId = `dup-${round}`;
      rows[1_500].requestId = `dup-${round}`;
      // The first batch's rows cost more to prepare (evidence to encrypt): without an order
      // between the two batches, the second one reaches the database first.
      for (const r of rows.slice(0, 1_000)) r.evidence = { sourceIp: '203.0.113.9', userAgent: 'x'.repeat(400), pageUrl: 'https://example.org/form', inboundMessageId: '', freeText: 'y'.repeat(800) };
      const { response, error } = await importCall(s.consent, sent);
      expect(error, error?.details).to.equal(undefined);
      expect(response!.rejections.map((r) => [r.line, r.status!.code]), `round ${round}`).to.deep.equal([[rows[1_500].line, status.FAILED_PRECONDITION]]);
      expect(response!.recorded).to.equal(2_499);
    }
  });

  // Found by a probe: a file imported again a while later (key cache expired) read every
  // person's key to answer rows already recorded, a thousand per batch, and ran out of time.
  it('rows already recorded are answered without reading their people\'s keys', async function () {
    this.timeout(60_000);
    const sent = messages(20_000, 20_600);
    for (const r of sent.flatMap((m) => m.rows)) r.evidence = { sourceIp: '203.0.113.9', userAgent: 'agent', pageUrl: '', inboundMessageId: '', freeText: 'note' };
    expect((await importCall(s.consent, sent)).response).to.deep.include({ recorded: 600 });
    const keys = s.app.services.keys;
    keys.forgetTenant(T);
    const read = keys.subjectKey.bind(keys);
    let reads = 0;
    keys.subjectKey = (tenantId: string, subjectId: string) => (reads++, read(tenantId, subjectId));
    try {
      expect((await importCall(s.consent, messages(20_000, 20_600).map((m, i) => ({ ...m, rows: m.rows.map((r, k) => ({ ...r, evidence: sent[i].rows[k].evidence })) })))).response).to.deep.include({ recorded: 0, alreadyRecorded: 600 });
      expect(reads, 'keys read to answer rows already recorded').to.equal(0);
    } finally {
      keys.subjectKey = read;
    }
  });

  it('refuses a call without a parent, with two parents, or for a tenant that does not exist, recording nothing', async function () {
    const before = await storedEvents();
    const none = await importCall(s.consent, messages(100, 110, 10, ''));
    expect(none.error?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(none.error!).fields).to.deep.equal(['parent']);
    const empty = await importCall(s.consent, []);
    expect(empty.error?.code, 'an empty stream names no tenant').to.equal(status.INVALID_ARGUMENT);
    const unknown = await importCall(s.consent, messages(100, 110, 10, 'tenants/no-such-tenant'));
    expect(unknown.error?.code).to.equal(status.NOT_FOUND);
    expect(await storedEvents()).to.equal(before);
    // A second parent after rows were taken: the earlier messages' rows are imported (rows are
    // committed while the stream arrives), none of the offending message's, and the error says so.
    const two = await importCall(s.consent, [...messages(100, 110, 10), ...messages(110, 120, 10, 'tenants/another-tenant')]);
    expect(two.error?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(two.error!).fields).to.deep.equal(['parent']);
    expect(two.error!.details).to.include('rows of the earlier messages imported: 10 (10 recorded, 0 already recorded, 0 rejected); none of this message or after it');
    expect(errorInfoMetadata(two.error!)).to.deep.include({ rows_before: '10', recorded: '10', already_recorded: '0', rejected: '0' });
    expect(await storedEvents()).to.equal(before + 10);
  });

  it('refuses a message it cannot read (the whole call) and a row with a value out of range (that row)', async function () {
    const RawClient = makeGenericClientConstructor(
      {
        importConsents: {
          path: '/consent.v1.ConsentService/ImportConsents',
          requestStream: true,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (r: ImportConsentsResponse) => Buffer.from(ImportConsentsResponse.encode(r).finish()),
          responseDeserialize: (b: Buffer) => ImportConsentsResponse.decode(b),
        },
      },
      'RawImport',
    );
    const raw = new RawClient(s.address, credentials.createInsecure()) as unknown as { importConsents(md: Metadata, cb: (e: ServiceError | null, r: ImportConsentsResponse) => void): { write(b: Buffer): void; end(): void } };
    const broken = await new Promise<ServiceError | null>((resolve) => {
      const call = raw.importConsents(new Metadata(), (e) => resolve(e));
      call.write(Buffer.from(ImportConsentsRequest.encode({ parent: `tenants/${T}`, rows: [row(200)] }).finish()));
      call.write(Buffer.from([0x12, 0xff, 0xff, 0xff, 0x0f, 0x01]));
      call.end();
    });
    expect(broken?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(broken!).reason).to.equal('UNDECODABLE_REQUEST');
    expect(errorInfoMetadata(broken!)).to.deep.include({ rows_before: '1', recorded: '1' });
    // A Timestamp out of range in one row: that row only. Seconds -1 (1969) become -62135596801
    // (before year 1): the same varint length, so only that value changes on the wire.
    const encoded = Buffer.from(ImportConsentsRequest.encode({ parent: `tenants/${T}`, rows: [row(201), row(202, { eventTime: new Date(-1000) })] }).finish());
    const patched = patchTimestampSeconds(encoded, -1, -62_135_596_801);
    const answer = await new Promise<{ e: ServiceError | null; r: ImportConsentsResponse }>((resolve) => {
      const call = raw.importConsents(new Metadata(), (e, r) => resolve({ e, r }));
      call.write(patched);
      call.end();
    });
    expect(answer.e).to.equal(null);
    expect(answer.r.recorded).to.equal(1);
    expect(answer.r.rejections.map((r) => r.line)).to.deep.equal([204]);
    // An expire_time beyond what a JavaScript Date holds (-2^49 s), in a row with a request_id:
    // that row is rejected, it is not serialised (found by the fuzz suite: INTERNAL "Invalid time value").
    const farOut = patchTimestampSeconds(Buffer.from(ImportConsentsRequest.encode({ parent: `tenants/${T}`, rows: [row(205, { expireTime: new Date(-1000) }), row(206)] }).finish()), -1, -(2 ** 49));
    const farAnswer = await new Promise<{ e: ServiceError | null; r: ImportConsentsResponse }>((resolve) => {
      const call = raw.importConsents(new Metadata(), (e, r) => resolve({ e, r }));
      call.write(farOut);
      call.end();
    });
    expect(farAnswer.e?.details).to.equal(undefined);
    expect(farAnswer.r.recorded).to.equal(1);
    expect(farAnswer.r.rejections.map((r) => [r.line, r.status!.code])).to.deep.equal([[207, status.INVALID_ARGUMENT]]);
    // Seconds beyond 2^53, which the decoder cannot hold in a number: that row only too (found by
    // a probe: the whole call was refused), rejected with what the wire check found.
    const beyond = patchTimestampSeconds(Buffer.from(ImportConsentsRequest.encode({ parent: `tenants/${T}`, rows: [row(208), row(209, { eventTime: new Date(-1000) }), row(210)] }).finish()), -1, -(2 ** 60));
    const beyondAnswer = await new Promise<{ e: ServiceError | null; r: ImportConsentsResponse }>((resolve) => {
      const call = raw.importConsents(new Metadata(), (e, r) => resolve({ e, r }));
      call.write(beyond);
      call.end();
    });
    expect(beyondAnswer.e?.details).to.equal(undefined);
    expect(beyondAnswer.r.recorded).to.equal(2);
    const rejected = beyondAnswer.r.rejections.map((r) => [r.line, r.status!.code, r.status!.message]);
    expect(rejected).to.have.length(1);
    expect(rejected[0].slice(0, 2)).to.deep.equal([211, status.INVALID_ARGUMENT]);
    expect(String(rejected[0][2])).to.include('event_time');
    (raw as unknown as { close(): void }).close();
  });

  it('refuses more rows than MAX_IMPORT_ROWS in one call', async function () {
    this.timeout(60_000);
    limited = await startTestServer(db(), { limits: { ...s.app.config.limits, maxImportRows: 30 } });
    const before = await storedEvents(limited);
    const { error } = await importCall(limited.consent, messages(300, 340, 10));
    expect(error?.code).to.equal(status.INVALID_ARGUMENT);
    const details = errorDetails(error!);
    expect(details.fields).to.deep.equal(['rows']);
    expect(details.message).to.include('at most 30 rows per call');
    // The messages within the limit are imported, the one that crossed it is not; the error says how many.
    expect(errorInfoMetadata(error!)).to.deep.include({ rows_before: '30', recorded: '30' });
    expect(await storedEvents(limited)).to.equal(before + 30);
    const again = await importCall(limited.consent, messages(300, 330, 10));
    expect([again.response?.recorded, again.response?.alreadyRecorded]).to.deep.equal([0, 30]);
  });

  // Found by a probe: 50,000 rejected rows made an answer of 29 MB (83 MB with many violations
  // each): a client with grpc-js's default 4 MiB limit saw RESOURCE_EXHAUSTED although rows were
  // committed, and a few such calls at once ran the server out of memory.
  it('an answer with MAX_IMPORT_ROWS rejections fits a default client: the first rejections in full, the later ones as "{REASON} {field}"', async function () {
    this.timeout(120_000);
    const before = await storedEvents();
    const total = s.app.config.limits.maxImportRows;
    // Every other one a malformed number: its short form must name the whole field (found in review: it was cut).
    const bad = (i: number) => (i % 2 === 0 ? ImportRow.fromPartial({ line: 100_000 + i }) : row(100_000 + i, { line: 100_000 + i, subjectIdentifier: { kind: { $case: 'phoneNumber', value: '+49 not a number' }, defaultRegion: '' } }));
    const sent: ImportConsentsRequest[] = [{ parent: `tenants/${T}`, rows: [row(900)] }];
    for (let start = 1; start < total; start += 5_000) sent.push({ parent: '', rows: Array.from({ length: Math.min(5_000, total - start) }, (_, k) => bad(start + k)) });
    const { response, error } = await importCall(s.consent, sent);
    expect(error, error?.details).to.equal(undefined);
    expect(response).to.deep.include({ rows: total, recorded: 1, alreadyRecorded: 0 });
    const rejections = response!.rejections;
    expect(rejections).to.have.length(total - 1);
    expect(rejections.map((r) => r.line)).to.deep.equal(Array.from({ length: total - 1 }, (_, i) => 100_001 + i));
    expect(ImportConsentsResponse.encode(response!).finish().length, 'within the 4 MiB a default client takes').to.be.below(4 * 1024 * 1024);
    const full = rejections.filter((r) => r.status!.details.length > 0);
    expect(full.length, 'the first ones in full').to.be.greaterThan(100);
    expect(full[0].status!.details.map((d) => d.typeUrl.slice(d.typeUrl.lastIndexOf('.') + 1))).to.include.members(['ErrorInfo', 'BadRequest']);
    const last = rejections[rejections.length - 1].status!;
    expect([last.code, last.details]).to.deep.equal([status.INVALID_ARGUMENT, []]);
    expect(last.message).to.match(/^[A-Z][A-Z0-9_]* \S+$/);
    const shortPhone = rejections.filter((r) => r.status!.details.length === 0 && r.line % 2 === 1).map((r) => r.status!.message);
    expect(shortPhone.length).to.be.greaterThan(1000);
    expect(new Set(shortPhone)).to.deep.equal(new Set([shortPhone[0]]));
    expect(shortPhone[0]).to.match(/^INVALID_[A-Z_]+ subject_identifier\.phone_number$/);
    expect(await storedEvents()).to.equal(before + 1);
  });

  it('a call whose rejections would not fit its answer even without details (a small MAX_MESSAGE_BYTES) is stopped with TOO_MANY_REJECTIONS; what was committed stays', async function () {
    this.timeout(60_000);
    const small = await startTestServer(db(), { limits: { ...s.app.config.limits, maxMessageBytes: 64 * 1024 } });
    try {
      const bad = (i: number) => ImportRow.fromPartial({ line: 200_000 + i });
      const { error } = await importCall(small.consent, [{ parent: `tenants/${T}`, rows: [row(901)] }, { parent: '', rows: Array.from({ length: 8_000 }, (_, i) => bad(i)) }]);
      expect(error?.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(errorDetails(error!).reason).to.equal('TOO_MANY_REJECTIONS');
      expect(errorInfoMetadata(error!)).to.deep.include({ recorded: '1' });
    } finally {
      await small.stop();
    }
  });

  it('a client that cancels mid-stream: committed batches stay, the handler ends, the same rows again are recorded exactly once', async function () {
    this.timeout(120_000);
    const before = await storedEvents();
    const all = messages(1000, 3500, 250);
    const endedBefore = callsEnded(s);
    const cancelled = await importCall(s.consent, all.slice(0, 7), { pauseMs: 150, then: 'cancel' });
    expect(cancelled.error?.code).to.equal(status.CANCELLED);
    await handlerEnded(s, endedBefore);
    const partial = await storedEvents();
    await sleep(300);
    expect(await storedEvents(), 'nothing more is written after the handler ended').to.equal(partial);
    expect(partial - before).to.be.within(0, 1750);
    const again = await importCall(s.consent, all);
    expect(again.response).to.deep.include({ rows: 2500, recorded: 2500 - (partial - before), alreadyRecorded: partial - before, rejections: [] });
    expect(await storedEvents()).to.equal(before + 2500);
  });

  it('a call past its deadline: DEADLINE_EXCEEDED, the handler ends, the same rows again are recorded exactly once', async function () {
    this.timeout(120_000);
    const before = await storedEvents();
    const all = messages(4000, 5400, 200);
    const endedBefore = callsEnded(s);
    const late = await importCall(s.consent, all, { deadlineMs: 1500, pauseMs: 50, then: 'stay-open' });
    expect(late.error?.code).to.equal(status.DEADLINE_EXCEEDED);
    await handlerEnded(s, endedBefore);
    const partial = await storedEvents();
    await sleep(300);
    expect(await storedEvents()).to.equal(partial);
    const again = await importCall(s.consent, all);
    expect(again.response).to.deep.include({ rows: 1400, recorded: 1400 - (partial - before), alreadyRecorded: partial - before });
    expect(await storedEvents()).to.equal(before + 1400);
  });

  it('audit verify --records is clean after calls that ended early', async function () {
    this.timeout(60_000);
    const verified = await runConsentctl(s.address, 'audit', 'verify', '--tenant', T, '--records');
    expect(verified.code, verified.err).to.equal(0);
  });

  describe('with authentication', () => {
    let authed: TestServer;
    let tokens: { recorder: string; sender: string };
    before(async function () {
      this.timeout(60_000);
      const issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
      const jwks = path.join(db().dataDir, 'import-jwks.json');
      writeFileSync(jwks, issuer.jwks);
      const exp = Math.floor(Date.now() / 1000) + 3600;
      tokens = { recorder: await issuer.sign({ sub: 'import-recorder', roles: ['recorder'], tenants: [T], exp }), sender: await issuer.sign({ sub: 'import-sender', roles: ['sender'], tenants: [T], exp }) };
      authed = await startTestServer(db(), { authMode: 'authenticated', tokens: { jwksFile: jwks, issuer: TEST_ISSUER, audience: TEST_AUDIENCE, algorithms: ['ES256'], clockSkewMs: 60_000 } });
    });
    after(async () => authed?.stop());

    it('PERMISSION_DENIED for a caller without the recorder role (also through consentctl, exit 1); a recorder imports', async function () {
      this.timeout(60_000);
      const sender = new ConsentServiceClient(authed.address, credentials.createInsecure(), asBearer(tokens.sender));
      const refused = await importCall(sender, messages(6000, 6010, 10));
      sender.close();
      expect(refused.error?.code).to.equal(status.PERMISSION_DENIED);
      writeFileSync(path.join(db().dataDir, 'auth.csv'), `phone,purpose,channel,kind,event_time,notice\n${mobile(6001)},newsletter,sms,opt_in,2024-01-01T00:00:00Z,1\n`);
      const ctl = await runConsentctl(authed.address, '--token', tokens.sender, 'import', path.join(db().dataDir, 'auth.csv'), '--tenant', T);
      expect(ctl.code, ctl.err).to.equal(1);
      expect(ctl.err).to.include('PERMISSION_DENIED');
      const recorder = new ConsentServiceClient(authed.address, credentials.createInsecure(), asBearer(tokens.recorder));
      const allowed = await importCall(recorder, messages(6000, 6010, 10));
      recorder.close();
      expect(allowed.error, allowed.error?.details).to.equal(undefined);
      expect(allowed.response!.recorded + allowed.response!.alreadyRecorded).to.equal(10);
    });
  });
});

/** Replaces the varint of a Timestamp's seconds (`from`) in encoded bytes by `to`, which must encode to as many bytes. */
function patchTimestampSeconds(bytes: Buffer, from: number, to: number): Buffer {
  const encode = (n: number) => {
    const out: number[] = [];
    let v = BigInt.asUintN(64, BigInt(n));
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) b |= 0x80;
      out.push(b);
    } while (v > 0n);
    return Buffer.from(out);
  };
  const needle = Buffer.concat([Buffer.from([0x08]), encode(from)]);
  const replacement = Buffer.concat([Buffer.from([0x08]), encode(to)]);
  if (replacement.length !== needle.length) throw new Error('the varints differ in length');
  const at = bytes.indexOf(needle);
  if (at < 0) throw new Error('timestamp not found');
  return Buffer.concat([bytes.subarray(0, at), replacement, bytes.subarray(at + needle.length)]);
}
