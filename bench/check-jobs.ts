import { ClientDuplexStream, Metadata, ServiceError } from '@grpc/grpc-js';
import { Channel, PurposeCategory } from '../src/gen/consent/v1/common';
import {
  CheckConsentBatchRequest,
  CheckConsentRequest,
  ConsentCheckResult,
  ConsentDecision,
  ConsentQuery,
  DecisionReason,
  StreamCheckConsentRequest,
  StreamCheckConsentResponse,
  Verdict,
} from '../src/gen/consent/v1/consent';
import { unary } from './clients';
import { JobContext, JobFactory, JobFailure } from './generator-job';
import { seededRandom } from './stats';

/**
 * The check benchmark's jobs (bench/checks.ts), run inside load-generator processes:
 *
 * - 'check-unary': CheckConsent, one query per call.
 * - 'check-batch': CheckConsentBatch, `batchSize` queries per call (items = decisions).
 * - 'check-stream': StreamCheckConsent; each worker sends a chunk of queries on its stream and
 *   waits for their answers, `chunksPerStream` workers share one stream, so a stream always has
 *   queries in flight (pipelined); items = decisions.
 *
 * Every query names a subject the benchmark seeded (subject i is checkSubjectPhone(i)); every
 * answer is compared with what that subject must get (expectedDecision): anything else stops the
 * run, as a write benchmark stops on a write that did not happen. Which subjects are asked is a
 * KeySpec: drawn uniformly at random over the whole tenant (or a residue class of it), or a sweep
 * that asks each subject of a set exactly once in a seeded random order (cold / warm runs),
 * reporting how many asks repeated a subject (counters.repeats) if the sweep had to wrap.
 */

/** Seeded subject i: a valid German mobile number, +49 151 1xxxxxxx (i < 10,000,000). */
export function checkSubjectPhone(i: number): string {
  return `+49151${String(10_000_000 + i)}`;
}

/** Every OPT_OUT_EVERY-th subject (i % 10 === 9) was seeded with an opt-out, the others with an opt-in. */
export const OPT_OUT_EVERY = 10;

export function isOptedOut(i: number): boolean {
  return i % OPT_OUT_EVERY === OPT_OUT_EVERY - 1;
}

/** What the check must answer for subject i (purpose newsletter, WhatsApp). */
export function expectedDecision(i: number): { verdict: Verdict; reason: DecisionReason } {
  return isOptedOut(i)
    ? { verdict: Verdict.VERDICT_DENY, reason: DecisionReason.DECISION_REASON_OPTED_OUT }
    : { verdict: Verdict.VERDICT_ALLOW, reason: DecisionReason.DECISION_REASON_OPTED_IN };
}

export interface CheckTarget {
  /** "tenants/{tenant}". */
  parent: string;
  /** "tenants/{tenant}/purposes/{purpose}". */
  purpose: string;
  /** Subjects seeded: 0 .. subjects - 1. */
  subjects: number;
}

/**
 * Which subjects are asked. `modulo`/`residues` restrict the set to subjects i with
 * i % modulo in residues (so a warm-up set and a cold set never share a subject).
 */
export type KeySpec =
  | { kind: 'uniform'; seed: number; modulo?: number; residues?: number[] }
  /** Each subject of the set once, in one seeded permutation shared by all generators (generator g takes positions g, g + generators, ...). */
  | { kind: 'sweep'; seed: number; generators: number; modulo?: number; residues?: number[] };

export interface UnaryCheckParams {
  target: CheckTarget;
  keys: KeySpec;
}

export interface BatchCheckParams {
  target: CheckTarget;
  keys: KeySpec;
  batchSize: number;
}

export interface StreamCheckParams {
  target: CheckTarget;
  keys: KeySpec;
  /** Queries a worker sends before it waits for their answers. */
  chunk: number;
  /** Workers sharing a stream (chunks in flight per stream). */
  chunksPerStream: number;
  /** Each chunk as one packed message (its queries as `items`), not a message per query. */
  packed?: boolean;
}

/** Draws subject numbers as `spec` says; counts repeats of a sweep that wrapped. */
function keySource(spec: KeySpec, subjects: number, generator: number): { next(): number; repeats(): number; unswept(): number } {
  const inSet = (i: number) => !spec.modulo || (spec.residues ?? [0]).includes(i % spec.modulo);
  if (spec.kind === 'uniform') {
    const random = seededRandom(spec.seed * 7919 + generator);
    return {
      next() {
        for (;;) {
          const i = Math.floor(random() * subjects);
          if (inSet(i)) return i;
        }
      },
      repeats: () => 0,
      unswept: () => 0,
    };
  }
  // The set in one permutation (Fisher-Yates with the shared seed), then this generator's share.
  let size = 0;
  const all = new Int32Array(subjects);
  for (let i = 0; i < subjects; i++) if (inSet(i)) all[size++] = i;
  const random = seededRandom(spec.seed);
  for (let i = size - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  const mine: number[] = [];
  for (let p = generator; p < size; p += spec.generators) mine.push(all[p]);
  if (mine.length === 0) throw new JobFailure('a sweep with no subjects for this generator');
  let position = 0;
  return {
    next: () => mine[position++ % mine.length],
    repeats: () => Math.max(0, position - mine.length),
    unswept: () => Math.max(0, mine.length - position),
  };
}

function query(target: CheckTarget, i: number): ConsentQuery {
  return {
    subjectIdentifier: { kind: { $case: 'phoneNumber', value: checkSubjectPhone(i) }, defaultRegion: '' },
    purpose: target.purpose,
    category: PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED,
    channel: Channel.CHANNEL_WHATSAPP,
    at: undefined,
  };
}

/** Counts ALLOW and DENY; throws (stopping the run) on any answer subject i must not get. */
class Verifier {
  allow = 0;
  deny = 0;

  decision(i: number, decision: ConsentDecision | undefined, method: string): void {
    const expected = expectedDecision(i);
    if (decision?.verdict !== expected.verdict || decision.reason !== expected.reason) {
      throw new JobFailure(
        `${method} answered ${Verdict[decision?.verdict ?? 0]} ${DecisionReason[decision?.reason ?? 0]} for seeded subject #${i}, expected ${Verdict[expected.verdict]} ${DecisionReason[expected.reason]}`,
      );
    }
    if (expected.verdict === Verdict.VERDICT_ALLOW) this.allow++;
    else this.deny++;
  }

  result(i: number, result: ConsentCheckResult | undefined, method: string): void {
    if (result?.error) throw new JobFailure(`${method} answered error ${result.error.code} "${result.error.message}" for seeded subject #${i}`);
    this.decision(i, result?.decision, method);
  }
}

const checkUnary: JobFactory = async (raw, context) => {
  const params = raw as UnaryCheckParams;
  const keys = keySource(params.keys, params.target.subjects, context.generator);
  const verifier = new Verifier();
  const { consent } = context.clients();
  return {
    async call() {
      const i = keys.next();
      const request: CheckConsentRequest = { parent: params.target.parent, query: query(params.target, i) };
      const response = await unary(consent, consent.checkConsent, request, context.deadlineMs);
      verifier.decision(i, response.decision, 'CheckConsent');
      return 1;
    },
    report: () => ({ counters: { allow: verifier.allow, deny: verifier.deny, repeats: keys.repeats() } }),
  };
};

const checkBatch: JobFactory = async (raw, context) => {
  const params = raw as BatchCheckParams;
  if (!(params.batchSize >= 1 && params.batchSize <= 1000)) throw new JobFailure('check-batch: batchSize must be 1 to 1,000');
  const keys = keySource(params.keys, params.target.subjects, context.generator);
  const verifier = new Verifier();
  const { consent } = context.clients();
  return {
    async call() {
      const subjects = Array.from({ length: params.batchSize }, () => keys.next());
      const request: CheckConsentBatchRequest = { parent: params.target.parent, queries: subjects.map((i) => query(params.target, i)) };
      const response = await unary(consent, consent.checkConsentBatch, request, context.deadlineMs);
      if (response.results.length !== subjects.length) throw new JobFailure(`CheckConsentBatch answered ${response.results.length} results for ${subjects.length} queries`);
      subjects.forEach((i, n) => verifier.result(i, response.results[n], 'CheckConsentBatch'));
      return subjects.length;
    },
    // unswept: subjects of a sweep this generator has not asked yet (the largest over generators is reported).
    report: () => ({ counters: { allow: verifier.allow, deny: verifier.deny, repeats: keys.repeats() }, maxima: { unswept: keys.unswept() } }),
  };
};

/** One StreamCheckConsent stream: answers matched to their queries by correlation id. */
class CheckStream {
  private readonly call: ClientDuplexStream<StreamCheckConsentRequest, StreamCheckConsentResponse>;
  /** correlation id -> subject and the chunk waiting for it. */
  private readonly waiting = new Map<string, { subject: number; chunk: { left: number; resolve(): void } }>();
  private failure: Error | null = null;
  private readonly failChunks = new Set<(err: Error) => void>();
  private nextId = 0;

  constructor(
    context: JobContext,
    private readonly target: CheckTarget,
    private readonly verifier: Verifier,
    private readonly packed: boolean,
  ) {
    // One long stream per worker pair for the whole phase; its deadline only bounds a lost stream.
    this.call = context.clients().consent.streamCheckConsent(new Metadata(), { deadline: Date.now() + 30 * 60_000 });
    this.call.on('data', (response: StreamCheckConsentResponse) => {
      // A packed message's answers come in one response; a refused one has none (its error fails the run).
      if (response.answers.length === 0 && response.result?.error && response.correlationId.startsWith('m')) {
        return this.fail(new JobFailure(`StreamCheckConsent refused a packed message: ${response.result.error.code} ${response.result.error.message}`));
      }
      for (const answer of response.answers.length > 0 ? response.answers : [response]) {
        const entry = this.waiting.get(answer.correlationId);
        if (!entry) return this.fail(new JobFailure(`StreamCheckConsent answered an unknown correlation id "${answer.correlationId}"`));
        this.waiting.delete(answer.correlationId);
        try {
          this.verifier.result(entry.subject, answer.result, 'StreamCheckConsent');
        } catch (err) {
          return this.fail(err as Error);
        }
        if (--entry.chunk.left === 0) entry.chunk.resolve();
      }
    });
    // A stream that fails ends every chunk on it: the run stops (a failed stream is not a measurement).
    this.call.on('error', (err: ServiceError) => this.fail(new JobFailure(`StreamCheckConsent failed: status ${err.code} "${err.details}"`)));
    this.call.on('status', (status: { code: number }) => {
      if (this.waiting.size > 0 && status.code === 0) this.fail(new JobFailure(`StreamCheckConsent ended with ${this.waiting.size} queries unanswered`));
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const reject of this.failChunks) reject(err);
    this.failChunks.clear();
  }

  /** Sends `subjects` as queries (respecting back-pressure) and resolves when all are answered. */
  async ask(subjects: number[]): Promise<void> {
    if (this.failure) throw this.failure;
    let rejectChunk: (err: Error) => void = () => undefined;
    const answered = new Promise<void>((resolve, reject) => {
      rejectChunk = reject;
      const chunk = { left: subjects.length, resolve };
      subjects.forEach((subject, n) => this.waiting.set(String(this.nextId + n), { subject, chunk }));
    });
    this.failChunks.add(rejectChunk);
    const first = this.nextId;
    this.nextId += subjects.length;
    if (this.packed) {
      const items = subjects.map((subject, n) => ({ query: query(this.target, subject), correlationId: String(first + n) }));
      const ok = this.call.write({ parent: this.target.parent, query: undefined, correlationId: `m${first}`, consistency: undefined, items } satisfies StreamCheckConsentRequest);
      if (!ok) await new Promise((resolve) => this.call.once('drain', resolve));
    }
    for (let n = 0; !this.packed && n < subjects.length; n++) {
      const ok = this.call.write({ parent: this.target.parent, query: query(this.target, subjects[n]), correlationId: String(first + n), items: [] } satisfies StreamCheckConsentRequest);
      if (!ok) await new Promise((resolve) => this.call.once('drain', resolve));
      if (this.failure) throw this.failure;
    }
    try {
      await answered;
    } finally {
      this.failChunks.delete(rejectChunk);
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.call.once('status', () => resolve());
      this.call.once('error', () => resolve());
      this.call.end();
      setTimeout(resolve, 5000).unref();
    });
  }
}

const checkStream: JobFactory = async (raw, context) => {
  const params = raw as StreamCheckParams;
  const keys = keySource(params.keys, params.target.subjects, context.generator);
  const verifier = new Verifier();
  const streams = new Map<number, CheckStream>();
  return {
    async call(worker) {
      const index = Math.floor(worker / params.chunksPerStream);
      let stream = streams.get(index);
      if (!stream) streams.set(index, (stream = new CheckStream(context, params.target, verifier, params.packed === true)));
      const subjects = Array.from({ length: params.chunk }, () => keys.next());
      await stream.ask(subjects);
      return subjects.length;
    },
    async close() {
      await Promise.all([...streams.values()].map((s) => s.close()));
    },
    report: () => ({ counters: { allow: verifier.allow, deny: verifier.deny, repeats: keys.repeats(), streams: streams.size } }),
  };
};

export const CHECK_JOBS: Record<string, JobFactory> = {
  'check-unary': checkUnary,
  'check-batch': checkBatch,
  'check-stream': checkStream,
};
