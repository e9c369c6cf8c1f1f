import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { Client, status } from '@grpc/grpc-js';
import { create, DescMessage, fromBinary, ScalarType, toBinary, toJson } from '@bufbuild/protobuf';
import { expect } from 'chai';
import fc from 'fast-check';
import { HealthCheckResponse_ServingStatus } from '../../src/gen/grpc/health/v1/health';
import { BadRequest } from '../../src/gen/google/rpc/error_details';
import { forEachDatabase } from '../support/databases';
import { startTestServer, TestServer } from '../support/test-server';
import { Corpus, Dictionary, encode, messageInitArb, mutationArb, payloadArb, requiredFields } from './support/arbitraries';
import { declaredPaths, Rpc, rpcCatalog } from './support/catalog';
import { badRequestFields, badRequestViolations, healthCheck, invoke, nestedStatuses, Outcome, rawClient, SCHEMA_REASONS, statusDetails } from './support/invoke';
import { seedWorld, storeSnapshot } from './support/world';

/**
 * Property-based fuzzing of every consent.v1 RPC (the list comes from the generated service
 * definitions) against a real server over real connections (development mode: every call runs
 * as the admin principal), on seeded tenants (support/world.ts):
 *
 *  1. malformed requests (a broken resource name, everything missing, a field the proto calls
 *     required left out) are INVALID_ARGUMENT with a BadRequest naming the field, and write
 *     nothing (every table of both stores compared);
 *  2. random bytes as request payloads, and straight to the TCP port, leave the server answering;
 *     a payload the generated decoder cannot read is INVALID_ARGUMENT like any other bad request;
 *  3. structured random requests (well-formed, wild, and accepted ones with a field changed) end
 *     with an expected status, never INTERNAL or UNKNOWN, with readable responses; per-item
 *     statuses of batch and stream answers too; then the same after the tenants were shredded.
 *
 * After each property: health SERVING, a cheap call answered, no error-level server log line.
 * FUZZ_RUNS scales the number of runs (default 1; FUZZ_TIMEOUT raises the per-property timeout
 * with it); FUZZ_SEED replays a failure (fast-check prints seed and path; the server's state
 * differs per run, so a replay is close, not exact); FUZZ_STATS=1 prints the statuses per method.
 */

/** Statuses a well-formed call may end with: what the client did wrong, or what is in the way. */
const ALLOWED = new Set<status>([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.FAILED_PRECONDITION,
  status.ALREADY_EXISTS,
  status.PERMISSION_DENIED,
  status.OUT_OF_RANGE,
  status.RESOURCE_EXHAUSTED,
  status.UNAUTHENTICATED,
  status.ABORTED,
]);

const DAY_MS = 24 * 3600_000;
/** Mocha timeout of each property (FUZZ_TIMEOUT to raise it with FUZZ_RUNS). */
const TIMEOUT_MS = Number(process.env.FUZZ_TIMEOUT ?? 90_000);
const SCALE = Number(process.env.FUZZ_RUNS ?? '1');
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
/** FUZZ_TRACE=1 prints every structured call with its duration and status. */
const TRACE = process.env.FUZZ_TRACE === '1';
/** FUZZ_STATS=1 prints how the structured calls of each method ended. */
const STATS = process.env.FUZZ_STATS === '1';
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
/**
 * A property stops before mocha's timeout: on a slow machine it runs fewer times and passes; a
 * failure found before still fails, with its counterexample shrunk as far as time allowed.
 */
const fcParams = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: runs(numRuns),
  seed: SEED,
  interruptAfterTimeLimit: TIMEOUT_MS - 20_000,
  markInterruptAsFailure: false,
});

const STRUCTURED_RUNS = 120;
const SHREDDED_RUNS = 10;
const MALFORMED_RUNS = 15;
const RAW_RUNS = 50;
const TCP_RUNS = 50;


/** Streams still open after this are cancelled (StreamChanges never ends on its own). */
const INVOKE = { streamReadMs: 250, deadlineMs: 15_000 };

/** The seeded tenants the last phase shreds. */
const SHREDDED = ['acme', 'globex'];

/** Run last: shredding a seeded tenant turns every later call for it into FAILED_PRECONDITION. */
const RUN_LAST = ['/consent.v1.KeyService/ShredTenant'];

function ordered(rpcs: Rpc[]): Rpc[] {
  return [...rpcs.filter((r) => !RUN_LAST.includes(r.path)), ...rpcs.filter((r) => RUN_LAST.includes(r.path))];
}

const codeName = (code: number) => status[code] ?? String(code);

/** Why an outcome breaks the status rules, or null. */
function statusProblem(rpc: Rpc, outcome: Outcome): string | null {
  const { code } = outcome;
  if (code === status.CANCELLED && outcome.cancelledByUs) {
    // the stream was still open after the read timeout: fine
  } else if (!ALLOWED.has(code)) {
    return `status ${codeName(code)} (${outcome.details})`;
  } else if (code !== status.OK && code !== status.RESOURCE_EXHAUSTED) {
    const details = statusDetails(outcome.metadata);
    if (!details) return `status ${codeName(code)} without grpc-status-details-bin (${outcome.details})`;
    if (details.code !== code) return `status ${codeName(code)} but details say ${codeName(details.code)}`;
  }
  for (const response of outcome.responses) {
    try {
      rpc.decodeResponse(response);
    } catch (err) {
      return `a response the generated client cannot decode: ${(err as Error).message}`;
    }
    for (const nested of nestedStatuses(rpc.output, response)) {
      if (!ALLOWED.has(nested.code) || nested.code === status.OK) return `a per-item status ${codeName(nested.code)} (${nested.message})`;
    }
  }
  return null;
}

/** The field that names the resource a request is about: parent, name, tenant_id, or settings.name. */
function identifyingField(desc: DescMessage): { path: string[]; wire: string; isId: boolean } {
  for (const name of ['parent', 'name', 'tenant_id']) {
    const f = desc.fields.find((x) => x.name === name && x.fieldKind === 'scalar' && x.scalar === ScalarType.STRING);
    if (f) return { path: [f.localName], wire: f.name, isId: name === 'tenant_id' };
  }
  for (const f of desc.fields) {
    if (f.fieldKind !== 'message') continue;
    const inner = f.message.fields.find((x) => x.name === 'name' && x.fieldKind === 'scalar');
    if (inner) return { path: [f.localName, inner.localName], wire: `${f.name}.${inner.name}`, isId: false };
  }
  throw new Error(`${desc.typeName} has no parent, name or tenant_id: teach identifyingField about it`);
}

/** Tenant ids that break TENANT_ID (lower-case letter, then 2-62 of a-z0-9-). */
const BAD_TENANT_IDS = ['', 'a', 'ab', 'ACME', 'Acme', '1abc', '-abc', 'ab c', 'acme/x', 'tenants/acme', 'x'.repeat(64), 'acmé', 'acme\n', '\u0000acme', 'acme_1'];

/** Names that no resource-name parser accepts: the tenant segment broken, a trailing '/', a wrong prefix. */
function badNameArb(dict: Dictionary): fc.Arbitrary<string> {
  const good = fc.constantFrom(...dict.get('*')!);
  return fc.oneof(
    fc.constantFrom('', 'not-a-name', 'tenants', 'tenants/', '/tenants/acme', 'TENANTS/acme', 'tenants//purposes/x', 'tenants/acme/settings/'),
    fc.tuple(good, fc.constantFrom(...BAD_TENANT_IDS)).map(([name, id]) => name.replace(/^tenants\/[^/]+/, `tenants/${id}`)),
    good.map((name) => `${name}/`),
    good.map((name) => ` ${name}`),
    fc.string({ maxLength: 50 }).filter((x) => !x.startsWith('tenants/')),
  );
}

function setPath(init: Record<string, unknown>, path: string[], value: string): Record<string, unknown> {
  if (path.length === 1) return { ...init, [path[0]]: value };
  const inner = (init[path[0]] as Record<string, unknown> | undefined) ?? {};
  return { ...init, [path[0]]: setPath(inner, path.slice(1), value) };
}

/** Why a call that must be refused was not, or null. */
function refusalProblem(rpc: Rpc, outcome: Outcome, field: string, sent: number): string | null {
  if (outcome.code === status.INVALID_ARGUMENT) {
    const violations = badRequestViolations(statusDetails(outcome.metadata));
    if (!violations) return 'INVALID_ARGUMENT without a google.rpc.BadRequest';
    const fields = violations.map((v) => v.field);
    // Refused before any handler for an out-of-range value elsewhere in the random message: also right.
    if (!fields.includes(field) && !violations.every((v) => SCHEMA_REASONS.has(v.reason))) return `INVALID_ARGUMENT names ${JSON.stringify(fields)}, not ${field}`;
    return null;
  }
  // A stream of independent questions answers each one: every answer must be the refusal.
  if (rpc.requestStream && outcome.code === status.OK) {
    if (outcome.responses.length !== sent) return `${outcome.responses.length} answers to ${sent} messages`;
    for (const response of outcome.responses) {
      const nested = nestedStatuses(rpc.output, response);
      if (nested.length !== 1 || nested[0].code !== status.INVALID_ARGUMENT) return `an answer with ${JSON.stringify(nested.map((n) => codeName(n.code)))}`;
      const bad = (nested[0].details as Array<{ typeUrl: string; value: Uint8Array }>).find((d) => d.typeUrl.endsWith('/google.rpc.BadRequest'));
      if (!bad) return 'a per-item INVALID_ARGUMENT without a google.rpc.BadRequest';
      const violations = BadRequest.decode(bad.value).fieldViolations;
      const fields = violations.map((v) => v.field);
      if (!fields.includes(field) && !violations.every((v) => SCHEMA_REASONS.has(v.reason))) return `a per-item INVALID_ARGUMENT that names ${JSON.stringify(fields)}, not ${field}`;
    }
    return null;
  }
  return `status ${codeName(outcome.code)} (${outcome.details}), not INVALID_ARGUMENT`;
}

/** Every tenant a request names: in resource names, and in tenant id fields. */
function tenantsNamed(rpc: Rpc, payloads: Buffer[]): Set<string> {
  const found = new Set<string>();
  const walk = (value: unknown, key: string) => {
    if (typeof value === 'string') {
      const m = /^tenants\/([^/]+)/.exec(value);
      if (m) found.add(m[1]);
      else if (/^(tenantId|confirmTenantId)$/.test(key) && value) found.add(value);
    } else if (Array.isArray(value)) {
      for (const v of value) walk(v, key);
    } else if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
      for (const [k, v] of Object.entries(value)) if (k !== '$typeName') walk(v, k);
    }
  };
  for (const p of payloads) walk(fromBinary(rpc.input, p), '');
  return found;
}

/**
 * "From then on every call for the tenant fails with FAILED_PRECONDITION TENANT_ERASED"
 * (ShredTenant): a call that names only shredded tenants must not succeed, and a stream of checks
 * must not answer one with a decision. ShredTenant itself is idempotent.
 */
function shreddedProblem(rpc: Rpc, payloads: Buffer[], outcome: Outcome, shredded: string[]): string | null {
  if (shredded.length === 0 || rpc.method === 'ShredTenant' || outcome.code !== status.OK) return null;
  const named = tenantsNamed(rpc, payloads);
  if (named.size === 0 || ![...named].every((t) => shredded.includes(t))) return null;
  if (!rpc.requestStream) return `OK for a request about shredded tenants ${[...named].join(', ')}`;
  const decided = outcome.responses.filter((r) => nestedStatuses(rpc.output, r).length === 0).length;
  return decided > 0 ? `${decided} answers that are no error for shredded tenants ${[...named].join(', ')}` : null;
}

/** Error-level log lines written since `from` (an INTERNAL the client never saw, a failed job). */
function errorLines(s: TestServer, from: number): string[] {
  return s
    .logs()
    .slice(from)
    .split('\n')
    .filter((l) => l.includes('"level":"error"'));
}

/** A failing request, readable and short: as proto JSON, else as the server decodes it, else hex. */
function describeRequest(rpc: Rpc, payloads: Buffer[]): string[] {
  return payloads.map((p) => {
    let text: string;
    try {
      text = JSON.stringify(toJson(rpc.input, fromBinary(rpc.input, p)));
    } catch {
      try {
        text = JSON.stringify(rpc.decodeRequest(p));
      } catch {
        text = p.toString('hex');
      }
    }
    return text.length > 800 ? `${text.slice(0, 800)}... (${p.length} bytes)` : text;
  });
}

forEachDatabase('fuzz: every consent.v1 RPC', (db) => {
  let s: TestServer;
  let client: Client;
  let dict: Dictionary;
  let corpus: Corpus;
  const rpcs = ordered(rpcCatalog());

  before(async function () {
    this.timeout(120_000);
    s = await startTestServer(db(), { auditCheckpointIntervalMs: 0 });
    client = rawClient(s.address);
    ({ dict, corpus } = await seedWorld(s));
  });
  const stats: Record<string, Record<string, number>> = {};
  after(async function () {
    this.timeout(30_000);
    if (STATS) for (const [method, codes] of Object.entries(stats)) console.log(`${method.padEnd(24)} ${JSON.stringify(codes)}`);
    client?.close();
    await s?.stop();
  });

  /** After each batch: health SERVING, a cheap call answered, no error-level log line. */
  async function expectServerFine(logFrom: number): Promise<void> {
    expect(await healthCheck(s.address), 'health').to.equal(HealthCheckResponse_ServingStatus.SERVING);
    const getTenant = rpcs.find((r) => r.path === '/consent.v1.TenantService/GetTenant')!;
    const outcome = await invoke(client, getTenant, [encode(getTenant.input, { name: 'tenants/acme' })], INVOKE);
    expect([status.OK, status.FAILED_PRECONDITION], `GetTenant: ${outcome.details}`).to.include(outcome.code);
    expect(errorLines(s, logFrom), 'error-level log lines').to.deep.equal([]);
  }

  it('covers every method the protos declare', function () {
    expect(rpcs.map((r) => r.path).sort()).to.deep.equal(declaredPaths());
    expect(rpcs).to.have.length.greaterThan(30);
  });

  describe('malformed requests are refused with INVALID_ARGUMENT and write nothing', function () {
    for (const rpc of rpcs) {
      it(rpc.path, async function () {
        this.timeout(60_000);
        const logFrom = s.logs().length;
        const field = identifyingField(rpc.input);
        const before = await storeSnapshot(s, true);
        const check = async (payloads: Buffer[], violated = field.wire) => {
          const counts = await storeSnapshot(s, false);
          const outcome = await invoke(client, rpc, payloads, INVOKE);
          const problem = refusalProblem(rpc, outcome, violated, payloads.length);
          expect(problem, problem ?? '').to.equal(null);
          expect(await storeSnapshot(s, false), 'row counts').to.deep.equal(counts);
        };
        // Everything missing.
        await check([encode(rpc.input, {})]);
        const bad = field.isId ? fc.constantFrom(...BAD_TENANT_IDS) : badNameArb(dict);
        const request = fc
          .tuple(messageInitArb(rpc.input, dict, {}, 0), bad)
          .map(([init, value]) => encode(rpc.input, setPath(init, field.path, value)));
        await fc.assert(
          fc.asyncProperty(rpc.requestStream ? fc.array(request, { minLength: 1, maxLength: 3 }) : request.map((p) => [p]), (payloads) => check(payloads)),
          fcParams(MALFORMED_RUNS),
        );
        // A required field (its proto comment says so) left out of a request the server accepted.
        for (const required of requiredFields(rpc.input)) {
          for (const accepted of corpus.get(rpc.path)) {
            const message = fromBinary(rpc.input, accepted) as unknown as Record<string, unknown>;
            message[required.localName] = create(rpc.input)[required.localName as never];
            await check([Buffer.from(toBinary(rpc.input, message as never))], required.name);
          }
        }
        expect(await storeSnapshot(s, true), 'rows').to.deep.equal(before);
        await expectServerFine(logFrom);
      });
    }
  });

  describe('random bytes as the request payload leave the server answering', function () {
    for (const rpc of rpcs) {
      it(rpc.path, async function () {
        this.timeout(60_000);
        const logFrom = s.logs().length;
        // Pure noise, and real requests with flipped bits, cut short, or with noise appended.
        const corrupted = fc
          .tuple(payloadArb(rpc.input, dict), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.nat(2), fc.uint8Array({ maxLength: 16 }))
          .map(([p, at, mask, how, noise]) => {
            if (p.length === 0) return Buffer.from(noise);
            const b = Buffer.from(p);
            const i = at % b.length;
            if (how === 0) b[i] ^= mask;
            return how === 1 ? b.subarray(0, i) : how === 2 ? Buffer.concat([b, noise]) : b;
          });
        const payload = fc.oneof(fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u)), corrupted);
        await fc.assert(
          fc.asyncProperty(rpc.requestStream ? fc.array(payload, { minLength: 1, maxLength: 3 }) : payload.map((p) => [p]), async (payloads) => {
            const outcome = await invoke(client, rpc, payloads, INVOKE);
            const problem = statusProblem(rpc, outcome);
            expect(problem, `${problem}\nrequest: ${payloads.map((p) => p.toString('hex').slice(0, 400)).join(' | ')}`).to.equal(null);
          }),
          fcParams(RAW_RUNS),
        );
        await expectServerFine(logFrom);
      });
    }

    it('random bytes straight to the TCP port', async function () {
      this.timeout(60_000);
      const logFrom = s.logs().length;
      const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
      const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
      // HTTP/2 frames with a correct length and random type, flags, stream and payload.
      const frame = fc
        .tuple(fc.nat(10), fc.nat(255), fc.nat(7), fc.uint8Array({ maxLength: 64 }))
        .map(([type, flags, stream, body]) => Buffer.concat([Buffer.from([0, 0, body.length, type, flags, 0, 0, 0, stream]), body]));
      const noise = fc.uint8Array({ maxLength: 4096 }).map((u) => Buffer.from(u));
      const data = fc.oneof(
        noise,
        noise.map((n) => Buffer.concat([PREFACE, n])),
        fc.array(frame, { maxLength: 12 }).map((fs) => Buffer.concat([PREFACE, SETTINGS, ...fs])),
        noise.map((n) => Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n'), n])),
        fc.constant(PREFACE.subarray(0, 10)),
      );
      await fc.assert(
        fc.asyncProperty(data, fc.boolean(), async (bytes, abrupt) => {
          const socket = net.connect(s.app.port, '127.0.0.1');
          await new Promise<void>((resolve) => {
            const timer = setTimeout(() => socket.destroy(), 150);
            socket.on('error', () => undefined);
            socket.on('close', () => {
              clearTimeout(timer);
              resolve();
            });
            socket.on('connect', () => {
              socket.write(bytes);
              if (abrupt) socket.resetAndDestroy();
              else socket.end();
            });
            socket.resume();
          });
        }),
        fcParams(TCP_RUNS),
      );
      await expectServerFine(logFrom);
    });
  });

  /** Structured random requests to `rpc`: every call must end with an allowed status. */
  async function fuzzStructured(rpc: Rpc, numRuns: number, shredded: string[] = []): Promise<void> {
    const logFrom = s.logs().length;
    // Mostly well-formed requests, wild ones, and accepted requests with a field or two changed.
    const payload = fc.oneof(payloadArb(rpc.input, dict, { plausible: true }), payloadArb(rpc.input, dict, { unsafeInt64: true }), mutationArb(rpc.path, rpc.input, dict, corpus));
    await fc.assert(
      fc.asyncProperty(rpc.requestStream ? fc.array(payload, { minLength: 1, maxLength: 5 }) : payload.map((p) => [p]), async (payloads) => {
        const started = Date.now();
        if (TRACE) writeFileSync(`/tmp/fuzz-last-${process.pid}.bin`, payloads[0]);
        const outcome = await invoke(client, rpc, payloads, INVOKE);
        const seen = (stats[rpc.method] ??= {});
        seen[codeName(outcome.code)] = (seen[codeName(outcome.code)] ?? 0) + 1;
        if (STATS) for (const f of badRequestFields(statusDetails(outcome.metadata)) ?? []) seen[`  ${f}`] = (seen[`  ${f}`] ?? 0) + 1;
        if (TRACE) console.log(`${Date.now() - started}ms ${codeName(outcome.code)} ${outcome.details.slice(0, 120)} <- ${describeRequest(rpc, payloads).join(' | ').slice(0, 300)}`);
        const problem = statusProblem(rpc, outcome) ?? shreddedProblem(rpc, payloads, outcome, shredded);
        if (outcome.code === status.OK && payloads.length === 1) corpus.add(rpc.path, payloads[0]);
        expect(problem, `${problem}\nrequest: ${describeRequest(rpc, payloads).join('\n  ')}`).to.equal(null);
      }),
      fcParams(numRuns),
    );
    await expectServerFine(logFrom);
  }

  describe('structured random requests end with an expected status', function () {
    for (const rpc of rpcs) {
      it(rpc.path, async function () {
        this.timeout(TIMEOUT_MS);
        // A day passes per method: consents expire, service windows close, deadlines pass.
        s.clock.advance(DAY_MS);
        await fuzzStructured(rpc, STRUCTURED_RUNS);
      });
    }
  });

  describe('after a seeded tenant was shredded (its rows purged in the background)', function () {
    before(async function () {
      const shred = rpcs.find((r) => r.path === '/consent.v1.KeyService/ShredTenant')!;
      for (const tenant of SHREDDED) {
        const outcome = await invoke(client, shred, [encode(shred.input, { name: `tenants/${tenant}`, confirmTenantId: tenant, requestId: `fuzz-shred-${tenant}` })], INVOKE);
        expect([status.OK, status.FAILED_PRECONDITION], outcome.details).to.include(outcome.code);
      }
    });
    for (const rpc of rpcs) {
      it(rpc.path, async function () {
        this.timeout(TIMEOUT_MS);
        await fuzzStructured(rpc, SHREDDED_RUNS, SHREDDED);
      });
    }
  });
});
