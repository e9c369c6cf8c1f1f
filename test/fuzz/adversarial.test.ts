import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, credentials, Metadata, status } from '@grpc/grpc-js';
import { clone, fromBinary, Message } from '@bufbuild/protobuf';
import { expect } from 'chai';
import { ConsentServiceClient, RecordConsentRequest, StreamChangesResponse } from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { RequestKind } from '../../src/gen/consent/v1/subject_rights';
import { LinkIdentifiersRequest } from '../../src/gen/consent/v1/identity';
import { JobState } from '../../src/gen/consent/v1/key';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { Status } from '../../src/gen/google/rpc/status';
import { bearer } from '../support/bearer';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { body, made, PHONE, PHONE2, PHONE3, PHONE4, preparePreferenceLink, SERVICES, seedSignUps } from '../support/rpc-catalog';
import { startServerProcess, ServerProcess } from '../support/server-process';
import { call, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER } from '../support/tokens';
import { AdversarialContext, adversarialVariants, applyVariant, encodeVariant, MANY, Variant } from './support/adversarial';
import { declaredPaths, Rpc, rpcCatalog } from './support/catalog';
import { badRequestFields, healthCheck, invoke, nestedStatuses, Outcome, statusDetails } from './support/invoke';

/**
 * Every method of every consent.v1 service (from the generated definitions and the descriptor
 * set), sent a request the server accepts with one field at a time set to an adversarial value of
 * its type (support/adversarial.ts: unknown enum numbers, timestamps and durations out of range,
 * huge, empty and invalid strings, wrong resource names, other tenants' names, garbage and
 * foreign page tokens and cursors, extreme numbers, thousands of list items and map entries).
 *
 * The server runs as its own process, so a request that ends it is seen as that, and it runs
 * with bearer tokens: the caller has every role but only for its own tenant, so another tenant's
 * names are an attempt to reach data it may not see. For every call: a proper status (never
 * INTERNAL, UNKNOWN, UNAVAILABLE or a hang), a google.rpc.ErrorInfo with every error,
 * INVALID_ARGUMENT with a google.rpc.BadRequest naming a field (the one changed, or one inside
 * or around it), responses the generated client decodes, per-item errors held to the same rules.
 * After each method's batch: the process is alive, health SERVING, a normal check answered, no
 * error-level log line and nothing 'unhandled'. StreamCheckConsent gets each bad item between two
 * good ones, and one stream of thousands of items mixing them.
 *
 * Deterministic: no randomness. ADVERSARIAL_REPORT=<file> writes every problem as JSON lines.
 */

const OWN = 'acme';
const OTHER = 'other-tenant-that-exists';
const MISSING = 'missing';
/** Tenants the caller's token names: its own, the one CreateTenant makes, the one ShredTenant shreds. */
const CALLER_TENANTS = [OWN, 'acme-new', 'acme-scrap'];
const ALL_ROLES = ['sender', 'recorder', 'dpo', 'auditor', 'admin', 'self_service'];

/** Statuses a call may end with: what the caller did wrong, or what is in its way. */
const PROPER = new Set<number>([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.FAILED_PRECONDITION,
  status.ALREADY_EXISTS,
  status.PERMISSION_DENIED,
  status.OUT_OF_RANGE,
  status.RESOURCE_EXHAUSTED,
  status.ABORTED,
]);

/** Unary calls fail past this; an open StreamChanges is cancelled by us after `streamReadMs`. */
const INVOKE = { streamReadMs: 300, deadlineMs: 10_000 };
/** Server streams wait for their read timeout: several run at once. */
const STREAM_CONCURRENCY = 8;

/** Destructive or tenant-wide calls go last, so the others see the seeded state. */
const RUN_LAST = ['RotateTenantKey', 'EraseSubject', 'ShredTenant'];

const codeName = (code: number) => status[code] ?? String(code);
const REPORT = process.env.ADVERSARIAL_REPORT;
/** ADVERSARIAL_STATS=1 prints how the calls of each method ended. */
const STATS = process.env.ADVERSARIAL_STATS === '1';
/** An access request of the own tenant nobody verified yet: VerifyIdentity's base (seed fills it in). */
let unverifiedRequest = '';

interface Problem {
  method: string;
  field: string;
  value: string;
  problem: string;
}

forEachDatabase('adversarial requests to every consent.v1 method, server in its own process', (db, kind) => {
  let server: ServerProcess;
  let client: Client;
  let ctx: AdversarialContext;
  const rpcs = rpcCatalog().sort((a, b) => Number(RUN_LAST.includes(a.method)) - Number(RUN_LAST.includes(b.method)));
  const allProblems: Problem[] = [];
  const stats: Record<string, Record<string, number>> = {};

  before(async function () {
    this.timeout(120_000);
    const issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const jwks = path.join(db().dataDir, 'jwks.json');
    writeFileSync(jwks, issuer.jwks);
    server = await startServerProcess(db(), {
      env: {
        JWT_JWKS_FILE: jwks,
        JWT_ISSUER: TEST_ISSUER,
        JWT_AUDIENCE: TEST_AUDIENCE,
        LOG_LEVEL: 'warn',
        RATE_LIMIT_PER_SECOND: '1000000',
        RATE_LIMIT_BURST: '10000000',
        // Kept checkpoints to list (the log grows all the time here).
        AUDIT_CHECKPOINT_INTERVAL_MS: '1000',
      },
    });
    const hour = Math.floor(Date.now() / 1000) + 3600;
    const admin = await issuer.sign({ sub: 'seeder', roles: ALL_ROLES, tenants: '*', exp: hour });
    const caller = await issuer.sign({ sub: 'adversary', roles: ALL_ROLES, tenants: CALLER_TENANTS, exp: hour });
    try {
      ctx = await seed(server.address, admin);
    } catch (err) {
      const errors = server.output().split('\n').filter((l) => l.includes('"level":"error"'));
      throw new Error(`seeding failed: ${(err as Error).message}\nserver errors:\n${errors.slice(0, 5).join('\n')}`);
    }
    client = new Client(server.address, credentials.createInsecure(), {
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      interceptors: [bearer(caller)],
    });
  });

  after(async function () {
    this.timeout(30_000);
    if (STATS) for (const [method, codes] of Object.entries(stats)) console.log(`${method.padEnd(24)} ${JSON.stringify(codes)}`);
    if (REPORT && allProblems.length > 0) writeFileSync(`${REPORT}.${kind}.jsonl`, allProblems.map((p) => JSON.stringify(p)).join('\n') + '\n');
    client?.close();
    await server?.stop();
  });

  it('covers every method the protos declare', function () {
    expect(rpcs.map((r) => r.path).sort()).to.deep.equal(declaredPaths());
  });

  for (const rpc of rpcs) {
    it(rpc.path, async function () {
      this.timeout(60_000);
      const logFrom = server.output().length;
      const base = baseRequest(rpc);
      const variants = adversarialVariants(rpc.input, base, ctx);
      const problems: Problem[] = [];
      const note = (variant: Variant | null, problem: string) =>
        problems.push({ method: rpc.method, field: variant?.field ?? '*', value: variant?.value ?? 'everything unset', problem });

      // Every call is a new request: its own request id (and purpose or message id), unless that
      // is the field under test.
      const request = (i: number, variant: Variant | null) => applyVariant(rpc.input, withIds(rpc, clone(rpc.input, base as never) as Message, i), variant);
      const good = encodeVariant(rpc.input, base);
      // The control: the base request itself is accepted, so each variant changes one thing of a request that works.
      const bidi = rpc.requestStream && rpc.responseStream;
      const control = await invoke(client, rpc, bidi ? [good] : [encodeVariant(rpc.input, request(0, null))], INVOKE);
      const accepted = control.code === status.OK || (control.code === status.CANCELLED && control.cancelledByUs);
      const errorLines = () => server.output().split('\n').filter((l) => l.includes('"level":"error"')).slice(-3).join('\n');
      expect(accepted, `the base request of ${rpc.method}: ${codeName(control.code)} ${control.details}\nlast server errors:\n${errorLines()}`).to.equal(true);
      expect(callProblems(rpc, control, null, 1), 'the base request').to.deep.equal([]);

      // The request with nothing set, then each variant alone.
      const empty = fromBinary(rpc.input, Buffer.alloc(0)) as Message;
      const cases: Array<{ variant: Variant | null; message: Message }> = [
        { variant: null, message: empty },
        ...variants.map((variant, i) => ({ variant, message: request(i + 1, variant) })),
      ];
      const runOne = async ({ variant, message }: (typeof cases)[number]) => {
        const bad = encodeVariant(rpc.input, message);
        // A stream of checks gets the bad item between two good ones; an import (one answer for
        // the whole stream) gets it alone, its rows itemised in that answer.
        const payloads = bidi ? [good, bad, good] : [bad];
        const outcome = await invoke(client, rpc, payloads, INVOKE);
        const seen = (stats[rpc.method] ??= {});
        const label = outcome.cancelledByUs ? 'OPEN' : codeName(outcome.code);
        seen[label] = (seen[label] ?? 0) + 1;
        for (const p of callProblems(rpc, outcome, variant, payloads.length)) note(variant, p);
      };
      await runAll(cases, rpc.responseStream && !rpc.requestStream ? STREAM_CONCURRENCY : 1, runOne);

      if (bidi) {
        // Thousands of items in one stream, bad ones among good ones.
        const payloads = Array.from({ length: MANY }, (_, i) =>
          i % 2 === 0 ? good : encodeVariant(rpc.input, request(i, variants[(i >> 1) % variants.length])),
        );
        const outcome = await invoke(client, rpc, payloads, { ...INVOKE, deadlineMs: 30_000 });
        for (const p of callProblems(rpc, outcome, null, payloads.length)) note({ field: '*', value: `${MANY} items, bad among good`, invalid: false, edit: () => undefined }, p);
      } else if (rpc.requestStream) {
        // An import of thousands of messages, rows with one adversarial field among good rows:
        // one answer, every good row recorded, the bad ones rejected by their line or recorded.
        for (const p of await mixedImportProblems(client, rpc, variants, request)) note({ field: '*', value: `${MANY} messages, bad rows among good`, invalid: false, edit: () => undefined }, p);
      }

      for (const p of await serverProblems(logFrom)) note(null, p);
      allProblems.push(...problems);
      expect(problems.length, `${problems.length} problems in ${cases.length} calls:\n${summarise(problems)}`).to.equal(0);
    });
  }

  /** The process alive, SERVING, answering a normal call, without error-level lines since `logFrom`. */
  async function serverProblems(logFrom: number): Promise<string[]> {
    const found: string[] = [];
    if (server.hasExited()) return [`the server process ended: ${server.output().slice(-2000)}`];
    if ((await healthCheck(server.address).catch(() => -1)) !== 1) found.push('health is not SERVING after the batch');
    const check = rpcs.find((r) => r.method === 'CheckConsent')!;
    const normal = await invoke(client, check, [encodeVariant(check.input, baseRequest(check))], INVOKE);
    if (normal.code !== status.OK) found.push(`a normal CheckConsent after the batch: ${codeName(normal.code)} ${normal.details}`);
    const output = server.output().slice(logFrom);
    if (/unhandled/i.test(output)) found.push(`'unhandled' in the server output: ${output.slice(output.search(/unhandled/i) - 200, output.search(/unhandled/i) + 300)}`);
    for (const line of output.split('\n').filter((l) => l.includes('"level":"error"')).slice(0, 5)) found.push(`error log line: ${line.slice(0, 600)}`);
    return found;
  }
});

/** Why an outcome is not a proper answer to `variant` (empty: it is). */
function callProblems(rpc: Rpc, outcome: Outcome, variant: Variant | null, sent: number): string[] {
  const found: string[] = [];
  const head = `${codeName(outcome.code)} ${JSON.stringify(outcome.details.slice(0, 200))}`;
  if (outcome.code === status.CANCELLED && outcome.cancelledByUs) {
    // a change feed still open after the read timeout: the request was accepted
    if (variant?.invalid) found.push(`accepted (the stream stayed open), not INVALID_ARGUMENT`);
  } else if (!PROPER.has(outcome.code)) {
    found.push(`status ${head}`);
  } else if (outcome.code !== status.OK) {
    found.push(...errorProblems(statusDetails(outcome.metadata), outcome.code, variant, head));
  }
  const bidi = rpc.requestStream && rpc.responseStream;
  if (bidi && outcome.code === status.OK && outcome.responses.length !== sent) {
    found.push(`${outcome.responses.length} answers to ${sent} stream messages`);
  }
  if (rpc.requestStream && !rpc.responseStream && outcome.code === status.OK && outcome.responses.length !== 1) {
    found.push(`${outcome.responses.length} answers to a client stream (one expected)`);
  }
  // Per-item errors (batch results, stream answers): held to the same rules.
  const itemErrors: Array<{ index: number; code: number }> = [];
  for (const [i, response] of outcome.responses.entries()) {
    try {
      rpc.decodeResponse(response);
    } catch (err) {
      found.push(`response ${i} does not decode: ${(err as Error).message}`);
      continue;
    }
    const nested = nestedStatuses(rpc.output, response);
    // A stream of checks: the good items (even positions) are decided, whatever is between them.
    if (bidi && i % 2 === 0 && nested.length > 0) found.push(`good item ${i} answered ${codeName(nested[0].code)} ${JSON.stringify(nested[0].message.slice(0, 200))}`);
    for (const n of nested) {
      const itemHead = `per-item ${codeName(n.code)} ${JSON.stringify(n.message.slice(0, 200))}`;
      if (!PROPER.has(n.code) || n.code === status.OK) {
        found.push(`${itemHead} (item ${i})`);
        continue;
      }
      const details = Status.fromPartial({ code: n.code, message: n.message, details: n.details as Status['details'] });
      // The changed item: the batch's first query, the bidi stream's middle message, the import's row.
      const changed = bidi ? i === 1 : i === 0;
      // An import's rejection is the status RecordConsent would answer for the row: its fields
      // are named within the row.
      const rowVariant = variant && rpc.requestStream && !bidi ? { ...variant, field: variant.field.replace(/^rows\[\d+\]\.?/, '') } : variant;
      found.push(...errorProblems(details, n.code, changed ? rowVariant : null, itemHead));
      if (changed) itemErrors.push({ index: i, code: n.code });
    }
  }
  if (variant?.invalid && outcome.code === status.OK) {
    // Refused per item, or not at all.
    if (!itemErrors.some((e) => e.code === status.INVALID_ARGUMENT)) found.push('accepted, not INVALID_ARGUMENT');
  }
  return found;
}

/**
 * An error's AIP-193 details: the same code, an ErrorInfo, for INVALID_ARGUMENT a BadRequest
 * naming a field; a value wrong in itself must be INVALID_ARGUMENT naming its field.
 */
function errorProblems(details: Status | undefined, code: number, variant: Variant | null, head: string): string[] {
  const found: string[] = [];
  if (variant?.invalid && code !== status.INVALID_ARGUMENT) found.push(`${head}, not INVALID_ARGUMENT`);
  if (!details) return [...found, `${head} without grpc-status-details-bin`];
  if (details.code !== code) found.push(`${head} but its details say ${codeName(details.code)}`);
  const info = details.details.find((d) => d.typeUrl.endsWith('/google.rpc.ErrorInfo'));
  const reason = info ? ErrorInfo.decode(info.value) : undefined;
  if (!reason?.reason || !reason.domain) found.push(`${head} without a google.rpc.ErrorInfo (reason and domain)`);
  if (code === status.INVALID_ARGUMENT) {
    const fields = badRequestFields(details);
    if (!fields) found.push(`${head} without a google.rpc.BadRequest`);
    else if (!fields.some(Boolean)) found.push(`${head} with a BadRequest that names no field`);
    // Other values may conflict with another field, which is then the one named (end_time before start_time).
    else if (variant?.invalid && !fields.some((f) => related(f, variant.field))) found.push(`${head} names ${JSON.stringify(fields.map((f) => f.slice(0, 80)))}, not ${variant.field}`);
  }
  return found;
}

/**
 * Whether a violation's field is about the changed one: the same path, one inside it or around
 * it ("query" for "query.at.nanos"; "settings.purpose_consent_validity[\"x\"]" for
 * "settings.purpose_consent_validity[key]"), list indexes and map keys aside.
 */
function related(violation: string, changed: string): boolean {
  // A violation's field may be clipped inside a huge map key: an unclosed "[" ends it.
  const norm = (f: string) => f.replace(/\[[^\]]*(\]|$)/g, '').replace(/\.(seconds|nanos)$/, '').split('.').filter(Boolean);
  const a = norm(violation);
  const b = norm(changed);
  const n = Math.min(a.length, b.length);
  return n > 0 && a.slice(0, n).join('.') === b.slice(0, n).join('.');
}

/** A request `rpc` accepts for the own tenant (support/rpc-catalog.ts), as a protobuf-es message. */
function baseRequest(rpc: Rpc): Message {
  const service = SERVICES.find((s) => s.name === rpc.service)!;
  const type = (service.pb as unknown as Record<string, { fromPartial(o: object): unknown; encode(m: unknown): { finish(): Uint8Array } }>)[`${rpc.method}Request`];
  const overrides: Record<string, object> = {
    // Every setting set, so each one's values are checked.
    UpdateTenantSettings: {
      settings: {
        name: `tenants/${OWN}/settings`,
        serviceWindow: { seconds: 7200, nanos: 0 },
        optOutKeywords: ['STOP', 'HALT'],
        optInKeywords: ['START'],
        defaultConsentValidity: { seconds: 86_400 * 730, nanos: 0 },
        purposeConsentValidity: { newsletter: { seconds: 86_400 * 365, nanos: 0 } },
      },
      updateMask: [],
    },
    CreatePurpose: { parent: `tenants/${OWN}`, purposeId: 'adversarial', purpose: { category: 1, displayName: 'Adversarial' } },
    // Every filter set, so each one's values are checked.
    ListConsentEvents: {
      parent: `tenants/${OWN}`,
      subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE } },
      purpose: `tenants/${OWN}/purposes/newsletter`,
      channel: 1,
      startTime: new Date(Date.now() - 86_400_000),
      endTime: new Date(Date.now() + 86_400_000),
      pageSize: 10,
    },
    ListAuditEntries: { parent: `tenants/${OWN}`, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE } }, entryTypes: ['CONSENT_EVENT_OPT_IN'], pageSize: 10 },
    ListRequests: { parent: `tenants/${OWN}`, pageSize: 10, dueBefore: new Date(Date.now() + 90 * 86_400_000) },
    ListLegalHolds: { parent: `tenants/${OWN}`, pageSize: 10, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE } } },
    VerifyIdentity: { name: unverifiedRequest, method: 'ID_DOCUMENT', verifiedBy: 'staff-1', identifierPositions: [] },
  };
  const partial = overrides[rpc.method] ?? body(rpc.method, OWN);
  return fromBinary(rpc.input, type.encode(type.fromPartial(partial)).finish()) as Message;
}

/** Ids of a new request: request id, message id, purpose id, the same in every run. */
function withIds(rpc: Rpc, message: Message, index: number): Message {
  const m = message as unknown as Record<string, unknown>;
  const has = (name: string) => rpc.input.fields.some((f) => f.localName === name);
  if (has('requestId')) m.requestId = `adv-${rpc.method}-${index}`;
  // An import's rows carry their own request ids and lines, and a person of their own: thousands
  // of imported rows for the one person every other method asks about would make that person's
  // history (ExplainDecision, exports) thousands of events long for the methods that follow.
  if (Array.isArray(m.rows)) {
    for (const [j, row] of (m.rows as Array<Record<string, unknown>>).entries()) {
      row.requestId = `adv-${rpc.method}-${index}-${j}`;
      row.line = BigInt(GOOD_LINE_BASE + index);
      (row.subjectIdentifier as { kind: unknown }).kind = { case: 'customerId', value: `adv-import-${index}-${j}` };
    }
  }
  if (has('messageId')) m.messageId = `adv-message-${index}`;
  // A new purpose per call, so that every variant is validated rather than ALREADY_EXISTS.
  if (rpc.method === 'CreatePurpose') m.purposeId = `adv-${index}`;
  return message;
}

/** Lines of the good rows of an import: far from any adversarial line value. */
const GOOD_LINE_BASE = 10_000_000;

/**
 * One import of MANY messages: even ones a good row (its own request id and line), odd ones a
 * row with one adversarial row field. Left out, because they fail the whole call by design (which
 * the single-message runs cover): variants of the message's own fields (parent), and values the
 * generated decoder cannot read at all (an int64 line beyond 2^53), which leave no row to reject.
 */
async function mixedImportProblems(client: Client, rpc: Rpc, variants: Variant[], request: (i: number, v: Variant | null) => Message): Promise<string[]> {
  const decodes = (v: Variant) => {
    try {
      rpc.decodeRequest(Buffer.from(encodeVariant(rpc.input, request(0, v))));
      return true;
    } catch {
      return false;
    }
  };
  const rowVariants = variants.filter((v) => v.field.startsWith('rows') && decodes(v));
  const payloads = Array.from({ length: MANY }, (_, i) =>
    encodeVariant(rpc.input, request(MANY * 10 + i, i % 2 === 0 || rowVariants.length === 0 ? null : rowVariants[(i >> 1) % rowVariants.length])),
  );
  const outcome = await invoke(client, rpc, payloads, { ...INVOKE, deadlineMs: 60_000 });
  const found = callProblems(rpc, outcome, null, payloads.length);
  if (outcome.code !== status.OK) return [...found, `the mixed import ended ${codeName(outcome.code)} ${outcome.details.slice(0, 200)}`];
  const answer = rpc.decodeResponse(outcome.responses[0]) as { rows: number | bigint; rejections: Array<{ line: number | bigint }> };
  const sent = payloads.reduce((n, p) => n + (rpc.decodeRequest(p) as { rows: unknown[] }).rows.length, 0);
  if (Number(answer.rows) !== sent) found.push(`the answer counts ${answer.rows} rows of ${sent}`);
  const goodLines = new Set(Array.from({ length: MANY / 2 }, (_, k) => GOOD_LINE_BASE + MANY * 10 + 2 * k));
  for (const r of answer.rejections) if (goodLines.has(Number(r.line))) found.push(`good row of line ${r.line} rejected`);
  return found;
}

async function runAll<T>(items: T[], concurrency: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await run(items[next++]);
    }),
  );
}

function summarise(problems: Problem[]): string {
  const lines = problems.slice(0, 80).map((p) => `  ${p.method} ${p.field} = ${p.value}: ${p.problem}`);
  if (problems.length > 80) lines.push(`  ... and ${problems.length - 80} more`);
  return lines.join('\n');
}

/**
 * The own tenant, another tenant and a scrap tenant to shred, with events, requests, holds and a
 * rotation (support/rpc-catalog.ts `made`), and real page tokens and change-feed cursors of both
 * tenants for the token and cursor values.
 */
async function seed(address: string, adminToken: string): Promise<AdversarialContext> {
  const md = new Metadata();
  md.set('authorization', `Bearer ${adminToken}`);
  const opts = { interceptors: [bearer(adminToken)] };
  const creds = credentials.createInsecure();
  const clients = SERVICES.map((s) => new s.Client(address, creds, opts) as unknown as Record<string, (...a: unknown[]) => unknown> & { close(): void });
  const [tenants, purposes, consent, keys, rights, audit, identity] = clients as unknown as [
    TenantServiceClient,
    PurposeServiceClient,
    ConsentServiceClient,
    InstanceType<(typeof SERVICES)[3]['Client']>,
    InstanceType<(typeof SERVICES)[4]['Client']>,
    InstanceType<(typeof SERVICES)[5]['Client']>,
    InstanceType<(typeof SERVICES)[6]['Client']>,
  ];
  const who = (phone: string) => ({ kind: { $case: 'phoneNumber' as const, value: phone }, defaultRegion: '' });
  try {
    const optOutAt = new Map<string, number>();
    for (const t of [OWN, OTHER, 'acme-scrap']) {
      await seedTenant({ tenants, purposes } as unknown as TestServer, t);
      // An opt-out first: the change feed serves it once it is 5 s old, for a real cursor.
      await call(consent, consent.recordConsent, RecordConsentRequest.fromPartial({ ...(body('RecordConsent', t) as object), kind: 2, notice: '', requestId: `seed-out-${t}` }));
      optOutAt.set(t, Date.now());
      for (let i = 0; i < 3; i++) await call(consent, consent.recordConsent, RecordConsentRequest.fromPartial({ ...(body('RecordConsent', t) as object), requestId: `seed-in-${t}-${i}` }));
      await call(consent, consent.recordConsent, RecordConsentRequest.fromPartial({ ...(body('RecordConsent', t) as object), subjectIdentifier: who(PHONE2), requestId: `seed-in-${t}-2nd` }));
      await call(purposes, purposes.publishNotice, { parent: `tenants/${t}/purposes/newsletter`, language: 'de', text: 'Newsletter v2', requestId: `seed-notice-${t}` });
    }
    const createRequest = async (t: string, kind: number, phone: string, requestId: string, verify: boolean) => {
      const { request } = await call(rights, rights.createRequest, { parent: `tenants/${t}`, kind, subjectIdentifier: who(phone), receiveTime: undefined, receivedVia: 1, requestId, subjectIdentifiers: [] });
      if (verify) await call(rights, rights.verifyIdentity, { name: request!.name, method: 'ID_DOCUMENT', verifiedBy: 'staff-1', identifierPositions: [] });
      return request!.name;
    };
    const placeHold = async (t: string, phone: string, requestId: string) =>
      (await call(rights, rights.placeLegalHold, { parent: `tenants/${t}`, subjectIdentifier: who(phone), ground: 1, note: 'case', requestId })).hold!.name;
    for (const t of [OTHER, OWN]) {
      made.accessRequest = await createRequest(t, RequestKind.REQUEST_KIND_ACCESS, PHONE, 'seed-access', true);
      made.rejectRequest = await createRequest(t, RequestKind.REQUEST_KIND_ACCESS, PHONE, 'seed-reject', false);
      made.erasureRequest = await createRequest(t, RequestKind.REQUEST_KIND_ERASURE, PHONE2, 'seed-erasure', true);
      made.hold = await placeHold(t, PHONE, 'seed-hold-1');
      // Restrictions (Art. 18): a verified request to carry out, and a restriction placed.
      made.restrictionRequest = await createRequest(t, RequestKind.REQUEST_KIND_RESTRICTION, PHONE, 'seed-restriction', true);
      const placed = await createRequest(t, RequestKind.REQUEST_KIND_RESTRICTION, PHONE, 'seed-restriction-2', true);
      made.restriction = (await call(rights, rights.restrictProcessing, { name: placed, ground: 1, note: 'case' })).restriction!.name;
      await placeHold(t, PHONE, 'seed-hold-2');
      // Linked identities: an open link to unlink, and a second for a page token.
      made.link = (await call(identity, identity.linkIdentifiers, LinkIdentifiersRequest.fromPartial(body('LinkIdentifiers', t)))).link!.name;
      await call(identity, identity.linkIdentifiers, LinkIdentifiersRequest.fromPartial(body('LinkIdentifiers', t)));
      // Rectification (Art. 16): a verified request to carry out.
      const { request: rect } = await call(rights, rights.createRequest, { parent: `tenants/${t}`, kind: RequestKind.REQUEST_KIND_RECTIFICATION, subjectIdentifier: who(PHONE3), rectifiedIdentifier: who(PHONE4), receiveTime: undefined, receivedVia: 1, requestId: 'seed-rectification', subjectIdentifiers: [] });
      await call(rights, rights.verifyIdentity, { name: rect!.name, method: 'ID_DOCUMENT', verifiedBy: 'staff-1', identifierPositions: [] });
      made.rectificationRequest = rect!.name;
    }
    // Sign-ups (issue 20): the "de" notice SignUp's base names, and single-use confirmation tokens.
    await seedSignUps(address, creds, md, [OWN, OTHER], 100);
    unverifiedRequest = await createRequest(OWN, RequestKind.REQUEST_KIND_ACCESS, PHONE, 'seed-unverified', false);
    // A preference link of the own tenant (made.preferenceToken) for the SelfServiceService bodies.
    await preparePreferenceLink(address, () => creds, adminToken);
    made.rotation = (await call(keys, keys.rotateTenantKey, { name: `tenants/${OWN}`, requestId: 'seed-rotation' })).rotation!.name;
    // The rotation's re-wrap runs in the background: RotateTenantKey's own base needs it done.
    for (let i = 0; ; i++) {
      const { rotation } = await call(keys, keys.getKeyRotation, { name: made.rotation });
      // Still running after 10 s: RotateTenantKey's test fails on its base request and says why.
      if (rotation!.state !== JobState.JOB_STATE_RUNNING || i === 100) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const eventName = (await call(consent, consent.listConsentEvents, { parent: `tenants/${OWN}`, pageSize: 1, pageToken: '', channel: 0, purpose: '', subjectIdentifier: undefined, startTime: undefined, endTime: undefined })).consentEvents[0].name;
    const subject = eventName.split('/consentEvents/')[0];

    const pageTokens = async (t: string): Promise<Record<string, string>> => {
      const p = `tenants/${t}`;
      const first = { pageSize: 1, pageToken: '' };
      const tokens: Record<string, string> = {
        'consent.v1.ListPurposesRequest': (await call(purposes, purposes.listPurposes, { parent: p, ...first })).nextPageToken,
        'consent.v1.ListNoticesRequest': (await call(purposes, purposes.listNotices, { parent: `${p}/purposes/newsletter`, ...first })).nextPageToken,
        'consent.v1.ListConsentEventsRequest': (await call(consent, consent.listConsentEvents, { parent: p, ...first, channel: 0, purpose: '', subjectIdentifier: undefined, startTime: undefined, endTime: undefined })).nextPageToken,
        'consent.v1.ListRequestsRequest': (await call(rights, rights.listRequests, { parent: p, ...first, state: 0, kind: 0, overdue: false, dueBefore: undefined })).nextPageToken,
        'consent.v1.ListLegalHoldsRequest': (await call(rights, rights.listLegalHolds, { parent: p, ...first, includeReleased: true, subjectIdentifier: undefined })).nextPageToken,
        'consent.v1.ListConsentRecordsRequest': (await call(audit, audit.listConsentRecords, { parent: p, ...first })).nextPageToken,
        'consent.v1.ListCheckpointsRequest': (await call(audit, audit.listCheckpoints, { parent: p, ...first })).nextPageToken,
        'consent.v1.ListIdentityLinksRequest': (await call(identity, identity.listIdentityLinks, { parent: p, ...first, includeUnlinked: true, subjectIdentifier: undefined })).nextPageToken,
      };
      return Object.fromEntries(Object.entries(tokens).filter(([, v]) => v));
    };
    const ownTokens = await pageTokens(OWN);
    const otherTokens = await pageTokens(OTHER);
    const cursors = async (t: string): Promise<string[]> => {
      const wait = optOutAt.get(t)! + 5_500 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      return firstCursor(consent, `tenants/${t}`);
    };
    const ownCursors = await cursors(OWN);
    const otherCursors = await cursors(OTHER);
    expect(Object.keys(ownTokens).length, 'own page tokens').to.be.greaterThan(4);
    expect(ownCursors.length, 'own cursors').to.equal(1);
    const names = [
      `tenants/${OWN}`,
      `tenants/${OWN}/settings`,
      `tenants/${OWN}/purposes/newsletter`,
      `tenants/${OWN}/purposes/newsletter/notices/1`,
      subject,
      eventName,
      made.accessRequest,
      made.hold,
      made.rotation,
      made.link,
    ];
    return { own: OWN, other: OTHER, missing: MISSING, names, ownTokens, otherTokens, ownCursors, otherCursors };
  } finally {
    for (const c of clients) c.close();
  }
}

/** The cursor of the first change of a tenant's feed. */
function firstCursor(consent: ConsentServiceClient, parent: string): Promise<string[]> {
  const stream = consent.streamChanges({ parent, cursor: '' }, new Metadata(), { deadline: Date.now() + 10_000 });
  return new Promise((resolve) => {
    const found: string[] = [];
    stream.on('data', (c: StreamChangesResponse) => {
      found.push(c.cursor);
      stream.cancel();
    });
    stream.on('error', () => resolve(found));
    stream.on('end', () => resolve(found));
  });
}
