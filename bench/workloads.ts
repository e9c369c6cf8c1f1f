import { Metadata, ServiceError } from '@grpc/grpc-js';
import { Channel, PurposeCategory } from '../src/gen/consent/v1/common';
import {
  CheckConsentBatchRequest,
  CheckConsentRequest,
  CollectionMethod,
  ConsentEventKind,
  ConsentQuery,
  RecordConsentRequest,
  StreamCheckConsentRequest,
  StreamCheckConsentResponse,
  Verdict,
} from '../src/gen/consent/v1/consent';
import { CreatePurposeRequest, PublishNoticeRequest } from '../src/gen/consent/v1/purpose';
import { CreateTenantRequest } from '../src/gen/consent/v1/tenant';
import { Clients, describeError, healthCheck, unary } from './clients';
import { CpuMeter, CpuUsage } from './cpu';
import { LatencyRecorder, LatencySummary, secondsSince, seededRandom } from './stats';

/**
 * The workloads: seeding (opt-in writes), the no-op RPC, unary/batch/stream checks and the
 * open-loop latency run. Each is bounded both in operations and in time, and any failed call or
 * unexpected answer aborts the benchmark: a benchmark that measures errors is worthless.
 */

export const TENANT_ID = 'bench';
export const PURPOSE_ID = 'newsletter';
const TENANT = `tenants/${TENANT_ID}`;
const PURPOSE = `${TENANT}/purposes/${PURPOSE_ID}`;

/** The i-th seeded subject: a valid German mobile number (+49 151 and 8 digits). */
export function subjectPhone(i: number): string {
  return `+49151${String(i).padStart(8, '0')}`;
}

/** One measured workload, as the report shows it. */
export interface WorkloadResult {
  name: string;
  /** How the load was applied ("32 in flight", "open loop, 1,500/s"). */
  load: string;
  /** RPCs completed (stream: messages answered). */
  calls: number;
  /** Decisions (or writes) completed: calls x queries per call. */
  items: number;
  seconds: number;
  /** items per second. */
  throughput: number;
  unit: 'calls/s' | 'decisions/s' | 'writes/s';
  /** Per-RPC latency; null for the stream (one RPC). */
  latency: LatencySummary | null;
  cpu?: CpuUsage;
  notes: string[];
}

/** Thrown when a call fails or answers something other than expected. */
export class BenchmarkFailure extends Error {}

/** What every workload needs: clients of the running server and a CPU meter. */
export interface WorkloadContext {
  clients: Clients;
  cpu: CpuMeter;
  subjects: number;
}

// ---------------------------------------------------------------------------------------------
// Generic drivers
// ---------------------------------------------------------------------------------------------

interface DriverResult {
  calls: number;
  items: number;
  seconds: number;
  latency: LatencySummary;
  cpu: CpuUsage;
}

/**
 * Closed loop: `concurrency` workers each issue the next call as soon as the previous one
 * answered, until `durationMs` passed or `maxCalls` were issued. `call` returns how many items
 * (decisions, writes) the call completed. The first failure stops every worker and is rethrown.
 */
export async function closedLoop(
  ctx: WorkloadContext,
  options: { concurrency: number; durationMs: number; maxCalls: number },
  call: (index: number) => Promise<number>,
): Promise<DriverResult> {
  const recorder = new LatencyRecorder();
  const cpuBefore = ctx.cpu.sample();
  const started = process.hrtime.bigint();
  const deadline = Date.now() + options.durationMs;
  let issued = 0;
  let items = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (failure === null && issued < options.maxCalls && Date.now() < deadline) {
      const index = issued++;
      const t0 = process.hrtime.bigint();
      try {
        // Not `items += await ...`: that reads `items` before awaiting and loses other workers' counts.
        const done = await call(index);
        items += done;
      } catch (err) {
        failure ??= err;
        return;
      }
      recorder.recordSince(t0);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = secondsSince(started);
  if (failure !== null) throw failure instanceof BenchmarkFailure ? failure : new BenchmarkFailure(`call failed: ${describeError(failure)}`);
  return { calls: recorder.count, items, seconds, latency: recorder.summary(), cpu: CpuMeter.usage(cpuBefore, ctx.cpu.sample(), seconds) };
}

/**
 * Open loop: calls are started on a fixed schedule (`rate` per second) whatever the server's
 * state, as independent clients would. Latency counts from when a call was started, not from its
 * slot in the schedule: the server runs in another process, so a stall there still shows in the
 * latency of calls already sent. The generator's own lateness (how far behind schedule it
 * started calls) is recorded separately, so a slow load generator cannot pass for a slow server.
 * At most `maxInFlight` calls are outstanding; beyond that the run fails rather than silently
 * lowering the rate.
 */
export async function openLoop(
  ctx: WorkloadContext,
  options: { rate: number; durationMs: number; maxInFlight: number },
  call: (index: number) => Promise<number>,
): Promise<DriverResult & { lag: LatencySummary; scheduled: number }> {
  const recorder = new LatencyRecorder();
  const lag = new LatencyRecorder();
  const intervalNs = 1e9 / options.rate;
  const durationNs = options.durationMs * 1e6;
  const cpuBefore = ctx.cpu.sample();
  const started = process.hrtime.bigint();
  let issued = 0;
  let items = 0;
  let inFlight = 0;
  let failure: unknown = null;
  const pending = new Set<Promise<void>>();

  const launch = (index: number) => {
    inFlight++;
    const t0 = process.hrtime.bigint();
    const p = call(index).then(
      (n) => {
        recorder.recordSince(t0);
        items += n;
      },
      (err: unknown) => {
        failure ??= err;
      },
    );
    const tracked = p.finally(() => {
      inFlight--;
      pending.delete(tracked);
    });
    pending.add(tracked);
  };

  while (failure === null) {
    const now = Number(process.hrtime.bigint() - started);
    if (now >= durationNs) break;
    // Start every call whose scheduled time has come.
    while (issued * intervalNs <= now && issued * intervalNs < durationNs) {
      if (inFlight >= options.maxInFlight) {
        failure = new BenchmarkFailure(`more than ${options.maxInFlight} calls outstanding at ${Math.round(options.rate)}/s: the server does not keep up`);
        break;
      }
      lag.record(now - issued * intervalNs);
      launch(issued++);
    }
    // Sleep until the next call is due. Timers have ~1 ms granularity, so at high rates a tick
    // starts the few calls that came due since the last one; spinning on setImmediate instead
    // would burn a core the server needs on a small machine.
    const nextInMs = (issued * intervalNs - Number(process.hrtime.bigint() - started)) / 1e6;
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.floor(nextInMs))));
  }
  await Promise.all([...pending]);
  const seconds = secondsSince(started);
  if (failure !== null) throw failure instanceof BenchmarkFailure ? failure : new BenchmarkFailure(`call failed: ${describeError(failure)}`);
  return {
    calls: recorder.count,
    items,
    seconds,
    latency: recorder.summary(),
    cpu: CpuMeter.usage(cpuBefore, ctx.cpu.sample(), seconds),
    lag: lag.summary(),
    scheduled: issued,
  };
}

// ---------------------------------------------------------------------------------------------
// Seeding
// ---------------------------------------------------------------------------------------------

/**
 * Creates the tenant, the MARKETING purpose `newsletter` and its notice, then records an opt-in
 * on WhatsApp for every subject, `concurrency` RecordConsent calls in flight. The opt-ins are
 * the measured part ("opt-in writes/s").
 */
export async function seed(ctx: WorkloadContext, options: { concurrency: number; timeLimitMs: number }): Promise<WorkloadResult> {
  const { tenants, purposes, consent } = ctx.clients;
  await unary(tenants, tenants.createTenant, CreateTenantRequest.fromPartial({ tenantId: TENANT_ID, displayName: 'Benchmark', requestId: 'bench-tenant' }));
  await unary(
    purposes,
    purposes.createPurpose,
    CreatePurposeRequest.fromPartial({
      parent: TENANT,
      purposeId: PURPOSE_ID,
      purpose: { displayName: 'Newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING },
      requestId: 'bench-purpose',
    }),
  );
  const published = await unary(
    purposes,
    purposes.publishNotice,
    PublishNoticeRequest.fromPartial({
      parent: PURPOSE,
      language: 'en',
      text: 'We would like to send you our newsletter on WhatsApp. You can opt out at any time by replying STOP.',
      requestId: 'bench-notice-1',
    }),
  );
  const notice = published.notice?.name;
  if (!notice) throw new BenchmarkFailure('PublishNotice returned no notice name');

  const runId = Date.now().toString(36);
  const optIn = async (i: number) => {
    const response = await unary(
      consent,
      consent.recordConsent,
      RecordConsentRequest.fromPartial({
        parent: TENANT,
        subjectIdentifier: { kind: { $case: 'phoneNumber', value: subjectPhone(i) }, defaultRegion: '' },
        purpose: PURPOSE,
        channel: Channel.CHANNEL_WHATSAPP,
        kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
        method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
        notice,
        requestId: `bench-${runId}-optin-${i}`,
      }),
    );
    if (response.event?.kind !== ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN) {
      throw new BenchmarkFailure(`RecordConsent for subject ${i} returned event kind ${response.event?.kind}`);
    }
    return 1;
  };
  // The first opt-in alone: it loads the tenant key into the server's cache, so the measured
  // writes all start warm. (Up to commit 43e4108, concurrent writes that all missed that cache
  // exhausted MariaDB's connection pool and hung for good: each transaction held a connection
  // and waited for another to read the key; see docs/benchmarks.md.)
  await optIn(0);
  const result = await closedLoop(
    ctx,
    { concurrency: options.concurrency, durationMs: options.timeLimitMs, maxCalls: ctx.subjects - 1 },
    (i) => optIn(i + 1),
  );
  if (result.items !== ctx.subjects - 1) {
    throw new BenchmarkFailure(`seeding recorded only ${result.items + 1} of ${ctx.subjects} opt-ins within ${options.timeLimitMs / 1000} s`);
  }
  return {
    name: 'RecordConsent (seeding opt-ins)',
    load: `${options.concurrency} in flight`,
    ...counts(result),
    unit: 'writes/s',
    latency: result.latency,
    cpu: result.cpu,
    notes: [`${ctx.subjects.toLocaleString('en-US')} subjects; the first recorded alone before the measured ${(ctx.subjects - 1).toLocaleString('en-US')}`],
  };
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/**
 * Queries for random seeded subjects, drawn from a seeded PRNG and built once: building request
 * objects in the load generator would take CPU from the server on a small machine.
 */
export function randomQueries(subjects: number, count: number, seed: number): ConsentQuery[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () =>
    ConsentQuery.fromPartial({
      subjectIdentifier: { kind: { $case: 'phoneNumber', value: subjectPhone(Math.floor(random() * subjects)) }, defaultRegion: '' },
      purpose: PURPOSE,
      channel: Channel.CHANNEL_WHATSAPP,
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Measured workloads
// ---------------------------------------------------------------------------------------------

export interface TimedOptions {
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

/** grpc.health.v1.Health/Check: the cheapest RPC the server has; the yardstick for the others. */
export async function noOpRpc(ctx: WorkloadContext, options: TimedOptions): Promise<WorkloadResult> {
  const call = async () => {
    if (!(await healthCheck(ctx.clients.health))) throw new BenchmarkFailure('Health/Check did not answer SERVING');
    return 1;
  };
  await closedLoop(ctx, { concurrency: options.concurrency, durationMs: options.warmupMs, maxCalls: 10_000_000 }, call);
  const result = await closedLoop(ctx, { concurrency: options.concurrency, durationMs: options.durationMs, maxCalls: 10_000_000 }, call);
  return { name: 'Health/Check (no-op RPC)', load: `${options.concurrency} in flight`, ...counts(result), unit: 'calls/s', latency: result.latency, cpu: result.cpu, notes: [] };
}

/** Unary CheckConsent for a random seeded subject; every answer must be ALLOW. */
function checkCall(ctx: WorkloadContext, seed: number): (index: number) => Promise<number> {
  const requests = randomQueries(ctx.subjects, 4096, seed).map((query) => CheckConsentRequest.fromPartial({ parent: TENANT, query }));
  const { consent } = ctx.clients;
  return async (index) => {
    const response = await unary(consent, consent.checkConsent, requests[index % requests.length]);
    if (response.decision?.verdict !== Verdict.VERDICT_ALLOW) {
      throw new BenchmarkFailure(`CheckConsent answered verdict ${response.decision?.verdict} reason ${response.decision?.reason} for a seeded subject`);
    }
    return 1;
  };
}

export async function unaryCheck(ctx: WorkloadContext, options: TimedOptions): Promise<WorkloadResult> {
  const call = checkCall(ctx, 1);
  await closedLoop(ctx, { concurrency: options.concurrency, durationMs: options.warmupMs, maxCalls: 10_000_000 }, call);
  const result = await closedLoop(ctx, { concurrency: options.concurrency, durationMs: options.durationMs, maxCalls: 10_000_000 }, call);
  return {
    name: 'CheckConsent (unary)',
    load: `${options.concurrency} in flight`,
    ...counts(result),
    unit: 'calls/s',
    latency: result.latency,
    cpu: result.cpu,
    notes: [`${result.items.toLocaleString('en-US')} ALLOW`],
  };
}

/** CheckConsentBatch with `batchSize` queries per call; throughput in decisions/s. */
export async function batchCheck(ctx: WorkloadContext, options: TimedOptions & { batchSize: number }): Promise<WorkloadResult> {
  const random = seededRandom(2);
  const pool = randomQueries(ctx.subjects, 8192, 3);
  const requests = Array.from({ length: 32 }, () => {
    const offset = Math.floor(random() * pool.length);
    const queries = Array.from({ length: options.batchSize }, (_, i) => pool[(offset + i) % pool.length]);
    return CheckConsentBatchRequest.fromPartial({ parent: TENANT, queries });
  });
  const { consent } = ctx.clients;
  const call = async (index: number) => {
    const response = await unary(consent, consent.checkConsentBatch, requests[index % requests.length]);
    if (response.results.length !== options.batchSize) {
      throw new BenchmarkFailure(`CheckConsentBatch returned ${response.results.length} results for ${options.batchSize} queries`);
    }
    for (const result of response.results) {
      if (result.decision?.verdict !== Verdict.VERDICT_ALLOW) {
        throw new BenchmarkFailure(`CheckConsentBatch answered ${result.error ? `error ${result.error.code} ${result.error.message}` : `verdict ${result.decision?.verdict}`} for a seeded subject`);
      }
    }
    return response.results.length;
  };
  await closedLoop(ctx, { concurrency: options.concurrency, durationMs: options.warmupMs, maxCalls: 1_000_000 }, call);
  const result = await closedLoop(ctx, { concurrency: options.concurrency, durationMs: options.durationMs, maxCalls: 1_000_000 }, call);
  return {
    name: `CheckConsentBatch (${options.batchSize} per call)`,
    load: `${options.concurrency} calls in flight`,
    ...counts(result),
    unit: 'decisions/s',
    latency: result.latency,
    cpu: result.cpu,
    notes: [`${Math.round(result.calls / result.seconds).toLocaleString('en-US')} calls/s`],
  };
}

/**
 * StreamCheckConsent: one bidirectional stream, `queries` requests written with respect to
 * backpressure (after write() returns false, nothing more until 'drain'), every response
 * counted and checked (in order, ALLOW). Writing stops early after `timeLimitMs`; the stream is
 * then ended and what was answered is counted.
 */
export async function streamCheck(ctx: WorkloadContext, options: { queries: number; timeLimitMs: number }, name = 'StreamCheckConsent (bidi)'): Promise<WorkloadResult> {
  const pool = randomQueries(ctx.subjects, 8192, 4);
  const cpuBefore = ctx.cpu.sample();
  const started = process.hrtime.bigint();
  const { sent, received, drains } = await new Promise<{ sent: number; received: number; drains: number }>((resolve, reject) => {
    const hardDeadline = Date.now() + options.timeLimitMs + 30_000;
    const call = ctx.clients.consent.streamCheckConsent(new Metadata(), { deadline: hardDeadline });
    let sent = 0;
    let received = 0;
    let drains = 0;
    let settled = false;
    const stopAt = Date.now() + options.timeLimitMs;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      call.cancel();
      reject(err instanceof BenchmarkFailure ? err : new BenchmarkFailure(`StreamCheckConsent failed: ${describeError(err)}`));
    };
    const pump = () => {
      while (sent < options.queries && !settled) {
        // Checking the clock every 256 messages keeps the cost negligible.
        if (sent % 256 === 0 && Date.now() >= stopAt) break;
        const request: StreamCheckConsentRequest = { parent: TENANT, query: pool[sent % pool.length], correlationId: String(sent), items: [] };
        sent++;
        if (!call.write(request)) {
          drains++;
          call.once('drain', pump);
          return;
        }
      }
      call.end();
    };
    call.on('data', (response: StreamCheckConsentResponse) => {
      if (response.correlationId !== String(received)) {
        fail(new BenchmarkFailure(`StreamCheckConsent answered out of order: expected ${received}, got ${response.correlationId}`));
        return;
      }
      if (response.result?.decision?.verdict !== Verdict.VERDICT_ALLOW) {
        fail(new BenchmarkFailure(`StreamCheckConsent answered ${response.result?.error ? `error ${response.result.error.message}` : `verdict ${response.result?.decision?.verdict}`} for a seeded subject`));
        return;
      }
      received++;
    });
    // Done when the read side has ended (every response delivered) and the status is OK.
    let ended = false;
    let ok = false;
    const finish = () => {
      if (settled || !ended || !ok) return;
      settled = true;
      resolve({ sent, received, drains });
    };
    call.on('end', () => {
      ended = true;
      finish();
    });
    call.on('error', (err: ServiceError) => fail(err));
    call.on('status', (status: { code: number; details: string }) => {
      if (status.code !== 0) return fail(status);
      ok = true;
      finish();
    });
    pump();
  });
  const seconds = secondsSince(started);
  if (received !== sent) throw new BenchmarkFailure(`StreamCheckConsent answered ${received} of ${sent} queries`);
  const notes = [`${received.toLocaleString('en-US')} queries`, `${drains.toLocaleString('en-US')} waits for 'drain'`];
  if (sent < options.queries) notes.push(`stopped writing after ${options.timeLimitMs / 1000} s`);
  return {
    name,
    load: '1 stream',
    calls: received,
    items: received,
    seconds,
    throughput: received / seconds,
    unit: 'decisions/s',
    latency: null,
    cpu: CpuMeter.usage(cpuBefore, ctx.cpu.sample(), seconds),
    notes,
  };
}

/** CheckConsent at a fixed rate (open loop), for the latency at a given load. */
export async function checkAtRate(ctx: WorkloadContext, options: { rate: number; durationMs: number; maxInFlight: number; label: string }): Promise<WorkloadResult> {
  const result = await openLoop(ctx, options, checkCall(ctx, 5));
  return {
    name: `CheckConsent at ${options.label}`,
    load: `open loop, target ${Math.round(options.rate).toLocaleString('en-US')}/s`,
    ...counts(result),
    unit: 'calls/s',
    latency: result.latency,
    cpu: result.cpu,
    notes: [`calls started late by p50 ${result.lag.p50Ms.toFixed(1)} ms, p99 ${result.lag.p99Ms.toFixed(1)} ms, max ${result.lag.maxMs.toFixed(1)} ms (load generator)`],
  };
}

/**
 * The no-op RPC on the same open-loop schedule: a control for the half-load latency. Whatever
 * tail it shows comes from gRPC, the load generator and the machine, not from the check path.
 */
export async function noOpAtRate(ctx: WorkloadContext, options: { rate: number; durationMs: number; maxInFlight: number }): Promise<WorkloadResult> {
  const result = await openLoop(ctx, options, async () => {
    if (!(await healthCheck(ctx.clients.health))) throw new BenchmarkFailure('Health/Check did not answer SERVING');
    return 1;
  });
  return {
    name: 'Health/Check at the same rate (control)',
    load: `open loop, target ${Math.round(options.rate).toLocaleString('en-US')}/s`,
    ...counts(result),
    unit: 'calls/s',
    latency: result.latency,
    cpu: result.cpu,
    notes: [`calls started late by p50 ${result.lag.p50Ms.toFixed(1)} ms, p99 ${result.lag.p99Ms.toFixed(1)} ms, max ${result.lag.maxMs.toFixed(1)} ms (load generator)`],
  };
}

function counts(result: DriverResult): Pick<WorkloadResult, 'calls' | 'items' | 'seconds' | 'throughput'> {
  return { calls: result.calls, items: result.items, seconds: result.seconds, throughput: result.items / result.seconds };
}
