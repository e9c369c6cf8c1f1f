import { ServerDuplexStream } from '@grpc/grpc-js';
import { ChangeRecord } from '../../domain/ports';
import { CheckOutcome, CheckQuery, ConsentChecker } from '../../domain/consent-checker';
import { ConsentHistory } from '../../domain/consent-history';
import { ConsentImport, ImportItem } from '../../domain/consent-import';
import { ConsentRecorder, RecordConsentInput } from '../../domain/consent-recorder';
import { ItemOutcome } from '../../domain/commit-queue';
import { WriteResult } from '../../domain/consent-writer';
import { DomainError, FieldViolation, invalidArgument } from '../../shared/errors';
import { ALL_PURPOSES, Channel, CONSENT_KINDS, ConsentKind, SendChannel } from '../../domain/model';
import { ChangeFeed } from '../../domain/change-feed';
import { IdentifierReassignment } from '../../domain/identifier-reassignment';
import { BOUNDED, Consistency, decodeConsistencyToken } from '../../domain/consistency';
import { names, parseNoticeName, parseTenantName } from '../../domain/resource-names';
import { confirmationDeliveryName, SelfServiceSignUp } from '../../domain/self-service-signup';
import {
  ChangeKind,
  CollectionMethod,
  CheckConsentBatchRequest,
  CheckConsentBatchResponse,
  CheckConsentRequest,
  CheckConsentResponse,
  ConsentCheckResult,
  ConsentQuery,
  Consistency as ConsistencyProto,
  ConsentServiceServer,
  ConsentStatus,
  ImportConsentsRequest,
  ImportConsentsResponse,
  ImportRow,
  GetConsentStateRequest,
  GetConsentStateResponse,
  ListConsentEventsRequest,
  ListConsentEventsResponse,
  RecordConsentRequest,
  RecordConsentResponse,
  RecordInboundMessageRequest,
  RecordInboundMessageResponse,
  ReportReassignedIdentifierRequest,
  StreamCheckConsentRequest,
  StreamCheckConsentResponse,
} from '../../gen/consent/v1/consent';
import { CallContext, CallPipeline } from '../call-pipeline';
import { writeBatchAndWait, writeWithBackpressure } from '../stream-flow';
import { itemBlanked, itemsWithheld, itemViolationsOf, refusalOf } from '../server';
import { toStatus } from '../error-mapper';
import { ImportRejections } from '../import-rejections';
import {
  categories,
  channels,
  requestTimeMs,
  decisionToProto,
  eventKinds,
  eventToProto,
  lawfulBases,
  methods,
  msToDate,
  purposeIdOf,
  toRawIdentifier,
} from '../mappers';
import { parentTenant } from './purpose-handlers';

export interface ConsentHandlerLimits {
  maxBatchChecks: number;
  streamChunkSize: number;
  /** Rows of one ImportConsents call. */
  maxImportRows: number;
  /** The largest message sent or received: an ImportConsents answer stays within it (ImportRejections). */
  maxMessageBytes: number;
}

/** consent.v1.ConsentService: translate, call the recorder, checker or history, map back. */
/** What the check handlers need of the checker (and what the counting wrapper provides). */
type Checker = Pick<ConsentChecker, 'checkOne' | 'checkMany'>;

/** Told about every decision made and every write recorded (metrics); nothing personal passes. */
export interface ConsentCallObserver {
  checkDecided(tenantId: string, verdict: 'ALLOW' | 'DENY', reason: string): void;
  written(tenantId: string, kind: string, count?: number): void;
}

/** The checker, with every decision it makes reported to `observer`. */
function observedChecker(checker: ConsentChecker, observer: ConsentCallObserver): Checker {
  return {
    async checkOne(principal, tenantId, query, consistency) {
      const decision = await checker.checkOne(principal, tenantId, query, consistency);
      observer.checkDecided(tenantId, decision.allow ? 'ALLOW' : 'DENY', decision.reason);
      return decision;
    },
    async checkMany(principal, tenantId, queries, consistency) {
      const outcomes = await checker.checkMany(principal, tenantId, queries, consistency);
      for (const o of outcomes) if ('decision' in o && o.decision) observer.checkDecided(tenantId, o.decision.allow ? 'ALLOW' : 'DENY', o.decision.reason);
      return outcomes;
    },
  };
}

/** The change feed's kinds on the wire. */
const CHANGE_KINDS: Record<ChangeRecord['kind'], ChangeKind> = {
  OPT_OUT: ChangeKind.CHANGE_KIND_OPT_OUT,
  ERASURE: ChangeKind.CHANGE_KIND_ERASURE,
  RESTRICTED: ChangeKind.CHANGE_KIND_RESTRICTED,
  UNRESTRICTED: ChangeKind.CHANGE_KIND_UNRESTRICTED,
  CONFIRMATION: ChangeKind.CHANGE_KIND_CONFIRMATION_REQUESTED,
  RECTIFIED: ChangeKind.CHANGE_KIND_IDENTIFIER_RECTIFIED,
  OBJECTED: ChangeKind.CHANGE_KIND_OBJECTED,
};

export function consentHandlers(
  pipeline: CallPipeline,
  recorder: ConsentRecorder,
  realChecker: ConsentChecker,
  history: ConsentHistory,
  feed: ChangeFeed,
  reassignment: IdentifierReassignment,
  limits: ConsentHandlerLimits,
  observer?: ConsentCallObserver,
  /** Sign-ups' double opt-in: an inbound message may carry a confirmation code. */
  signUp?: SelfServiceSignUp,
): ConsentServiceServer {
  const checker: Checker = observer ? observedChecker(realChecker, observer) : realChecker;
  return {
    streamChanges: pipeline.serverStream('StreamChanges', async (call, ctx) => {
      const tenantId = parentTenant(call.request.parent);
      await feed.stream(
        ctx.principal,
        tenantId,
        call.request.cursor,
        (change, cursor) =>
          writeWithBackpressure(call, {
            cursor,
            kind: CHANGE_KINDS[change.kind],
            subject: names.subject(tenantId, change.subjectId),
            purpose: change.purposeId ? names.purpose(tenantId, change.purposeId) : '',
            channel: change.channel ? channels.toProto(change.channel as Channel) : 0,
            // A confirmation's "event" is its delivery (no consent event, no address).
            event: change.eventId && change.kind !== 'CONFIRMATION' ? names.consentEvent(tenantId, change.subjectId, change.eventId) : '',
            time: msToDate(change.at),
            confirmationDelivery: change.kind === 'CONFIRMATION' && change.eventId ? confirmationDeliveryName(tenantId, change.eventId) : '',
          }, ctx.signal),
        () => ctx.signal.aborted || call.destroyed,
      );
    }),

    reportReassignedIdentifier: pipeline.unary('ReportReassignedIdentifier', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const violations: FieldViolation[] = [];
      const reassignTime = requestTimeMs(req.reassignTime, 'reassign_time', violations);
      if (violations.length > 0) throw invalidArgument(violations);
      const { subjectId, consistencyToken } = await reassignment.report(ctx.principal, tenantId, {
        identifier: toRawIdentifier(req.subjectIdentifier),
        reassignTime,
        source: req.source,
        requestId: req.requestId,
        // Serialised only once it passed its checks (a Timestamp out of range has no JSON form).
        fingerprintSource: JSON.stringify(ReportReassignedIdentifierRequest.toJSON(req)),
      });
      return { subject: names.subject(tenantId, subjectId), consistencyToken };
    }),

    recordConsent: pipeline.unary('RecordConsent', async (req: RecordConsentRequest, ctx: CallContext): Promise<RecordConsentResponse> => {
      const tenantId = parentTenant(req.parent);
      const input = consentInputFromProto(req, tenantId, '');
      if ('violations' in input) throw invalidArgument(input.violations);
      // Serialised only once it passed its checks (a Timestamp out of range has no JSON form).
      input.fingerprintSource = JSON.stringify(RecordConsentRequest.toJSON(req));
      const { event, receipt, consistencyToken } = await recorder.record(ctx.principal, { ...input, issueReceipt: req.issueReceipt });
      return { event: eventToProto(event), receipt: receipt ?? '', consistencyToken };
    }),

    importConsents: pipeline.clientStream('ImportConsents', async (call, ctx): Promise<ImportConsentsResponse> => {
      // Rows are validated and committed while the stream is still arriving (ConsentImport): the
      // loop below reads the next message only once the import has room for it, so a call of
      // any size holds at most a few batches in memory.
      let parent: string | undefined;
      let importer: ConsentImport<number> | undefined;
      let rows = 0;
      let recorded = 0;
      let alreadyRecorded = 0;
      const rejections = new ImportRejections(limits.maxMessageBytes);
      let overflow = false;
      const reject = (line: number, err: DomainError) => {
        if (!rejections.add(line, err)) overflow = true;
      };
      // A row sent twice in one call (the same request_id) is answered with the first one's event.
      const recordedEvents = new Set<string>();
      const report = (line: number, outcome: ItemOutcome<WriteResult>) => {
        if ('ok' in outcome) {
          const first = outcome.ok.events[0].id;
          if (outcome.ok.replayed || recordedEvents.has(first)) alreadyRecorded++;
          else {
            recorded++;
            recordedEvents.add(first);
          }
        } else {
          // Only a row's own error reaches here (ConsentImport ends the import on any other).
          if (!(outcome.error instanceof DomainError)) throw outcome.error;
          reject(line, outcome.error);
        }
      };
      // A call the client cancelled (or whose deadline passed) gets no more messages: ending the
      // stream ends the loop below, which would otherwise wait for them forever.
      const stopOnCancel = () => {
        void importer?.stop();
        call.destroy();
      };
      ctx.signal.addEventListener('abort', stopOnCancel);
      try {
        for await (const message of call as AsyncIterable<ImportConsentsRequest>) {
          const problem =
            refusalOf(message) ??
            (overflow ? tooManyRejections() : null) ??
            (parent !== undefined && message.parent && message.parent !== parent
              ? invalidArgument([{ field: 'parent', reason: 'INVALID_NAME', description: 'every message of the stream names the same tenant (or none after the first)' }])
              : rows + message.rows.length > limits.maxImportRows
                ? invalidArgument([{ field: 'rows', reason: 'TOO_MANY', description: `at most ${limits.maxImportRows} rows per call; send the rest in another call` }])
                : null);
          if (problem) {
            // Rows are committed while the stream arrives, so those of the earlier messages may be
            // in already: all of them are committed now (each once, by request_id), none of this
            // message's, and the error says how far the import got (a re-run imports the rest).
            await importer?.finish();
            throw importStoppedAt(problem, rows, recorded, alreadyRecorded, rejections.length);
          }
          if (parent === undefined) parent = message.parent;
          const tenantId = parentTenant(parent);
          importer ??= await recorder.startImport(ctx.principal, tenantId, report);
          rows += message.rows.length;
          const items: Array<ImportItem<number>> = [];
          message.rows.forEach((row, i) => {
            const violations = itemViolationsOf(message, i).map((v) => ({ ...v, field: v.field.replace(/^rows\[\d+\]\.?/, '') }));
            if (itemBlanked(message, i)) {
              // Decoded as an empty row (a value the decoder cannot hold): only what the wire check found.
              reject(row.line, invalidArgument(violations));
              return;
            }
            const input = consentInputFromProto({ ...row, method: row.method || CollectionMethod.COLLECTION_METHOD_IMPORT }, tenantId, '');
            // A field the wire check already refused is named once, with the wire check's reason.
            const mapped = 'violations' in input ? input.violations.filter((v) => !violations.some((w) => w.field === v.field)) : [];
            const all = [...violations, ...mapped];
            if (all.length > 0 || 'violations' in input) {
              reject(row.line, invalidArgument(all));
              return;
            }
            // Only a row that passed its checks is serialised (a Timestamp out of range has no JSON
            // form). The line is where the row sits in a file, not part of the request: a re-run of
            // an edited file is still a retry. A row without request_id is fingerprinted by the
            // recorder, from its normalised content (which also gives it its request id).
            if (row.requestId) input.fingerprintSource = JSON.stringify(ImportRow.toJSON({ ...row, line: 0 }));
            items.push(recorder.importItem(ctx.principal, input, row.line));
          });
          await importer.add(items);
          if (ctx.signal.aborted) throw new DomainError('ABORTED', 'CANCELLED', 'the call was cancelled');
        }
        // grpc-js ends the stream of a call the client cancelled before it reports the cancellation
        // (a few ms later): the rows received so far are then committed like those of a complete
        // call (each once, by request_id), unless the cancellation shows first.
        if (!importer) await recorder.startImport(ctx.principal, parentTenant(parent ?? ''), report);
        await importer?.finish();
        if (ctx.signal.aborted) throw new DomainError('ABORTED', 'CANCELLED', 'the call was cancelled');
        // The last message's rejections did not fit the answer: its rows are committed, but the
        // client could not learn which were rejected, so the call ends as one stopped would.
        if (overflow) throw importStoppedAt(tooManyRejections(), rows, recorded, alreadyRecorded, rejections.length);
      } catch (err) {
        // The call ends once no batch of it is committing any more (ConsentImport.stop).
        await importer?.stop();
        throw err;
      } finally {
        ctx.signal.removeEventListener('abort', stopOnCancel);
      }
      return { rows, recorded, alreadyRecorded, rejections: rejections.sorted() };
    }),

    recordInboundMessage: pipeline.unary(
      'RecordInboundMessage',
      async (req: RecordInboundMessageRequest, ctx: CallContext): Promise<RecordInboundMessageResponse> => {
        const tenantId = parentTenant(req.parent);
        const channel = sendChannel(req.channel, 'channel');
        const v: FieldViolation[] = [];
        const eventTime = requestTimeMs(req.eventTime, 'event_time', v);
        if (v.length > 0) throw invalidArgument(v);
        const result = await recorder.recordInbound(ctx.principal, {
          tenantId,
          identifier: toRawIdentifier(req.subjectIdentifier),
          channel,
          eventTime,
          text: req.text,
          messageId: req.messageId,
          requestId: req.requestId,
          fingerprintSource: JSON.stringify(RecordInboundMessageRequest.toJSON(req)),
        });
        // A sign-up's one-time code in the text confirms its pending opt-ins (self-service-signup.ts).
        const confirmed = signUp ? await signUp.confirmByInbound(ctx.principal, tenantId, toRawIdentifier(req.subjectIdentifier), result.inbound, req.text) : { events: [] };
        return {
          inboundEvent: eventToProto(result.inbound),
          keywordEvent: result.keyword ? eventToProto(result.keyword) : undefined,
          serviceWindowExpireTime: msToDate(result.windowExpireTime),
          consistencyToken: confirmed.consistencyToken ?? result.consistencyToken,
          confirmedEvents: confirmed.events.map(eventToProto),
        };
      },
    ),

    checkConsent: pipeline.unary('CheckConsent', async (req: CheckConsentRequest, ctx: CallContext): Promise<CheckConsentResponse> => {
      const tenantId = parentTenant(req.parent);
      const decision = await checker.checkOne(ctx.principal, tenantId, queryFromProto(req.query, tenantId, 'query'), requiredConsistency(req.consistency, tenantId));
      return { decision: decisionToProto(tenantId, decision) };
    }),

    checkConsentBatch: pipeline.unary(
      'CheckConsentBatch',
      async (req: CheckConsentBatchRequest, ctx: CallContext): Promise<CheckConsentBatchResponse> => {
        const tenantId = parentTenant(req.parent);
        if (req.queries.length === 0 || req.queries.length > limits.maxBatchChecks) {
          throw invalidArgument([{ field: 'queries', reason: 'BATCH_SIZE', description: `must hold 1 to ${limits.maxBatchChecks} queries` }]);
        }
        const queries = req.queries.map((q, i) => {
          const query = queryFromProto(q, tenantId, `queries[${i}]`);
          // Out-of-range values the decoder found in this item fail it alone; a field the wire check
          // refused is named once, with the wire check's reason (as CheckConsent and the stream do).
          const wire = itemViolationsOf(req, i);
          // An item decoded as an empty one (a value the decoder cannot hold): only what the wire check found.
          if (itemBlanked(req, i)) Object.assign(query, { violations: wire, undecoded: true });
          else if (wire.length > 0) query.violations = [...wire, ...query.violations.filter((v) => !wire.some((w) => w.field === v.field))];
          return query;
        });
        const outcomes = await checker.checkMany(ctx.principal, tenantId, queries, requiredConsistency(req.consistency, tenantId));
        return { results: outcomes.map((o) => resultToProto(tenantId, o)) };
      },
    ),

    streamCheckConsent: pipeline.bidi('StreamCheckConsent', (call, ctx) => runCheckStream(call, ctx, checker, limits.streamChunkSize, limits.maxBatchChecks)),

    getConsentState: pipeline.unary('GetConsentState', async (req: GetConsentStateRequest, ctx: CallContext): Promise<GetConsentStateResponse> => {
      const tenantId = parentTenant(req.parent);
      const state = await history.state(ctx.principal, tenantId, toRawIdentifier(req.subjectIdentifier));
      return {
        subject: names.subject(tenantId, state.subjectId),
        entries: state.scopes.map((s) => ({
          purpose: names.purpose(tenantId, s.purposeId),
          channel: channels.toProto(s.channel),
          status: ConsentStatus[`CONSENT_STATUS_${s.status}`],
          latestOptInEvent: s.optIn ? names.consentEvent(tenantId, state.subjectId, s.optIn.eventId) : '',
          latestOptInTime: msToDate(s.optIn?.eventTime),
          latestOptOutEvent: s.optOut ? names.consentEvent(tenantId, state.subjectId, s.optOut.eventId) : '',
          latestOptOutTime: msToDate(s.optOut?.eventTime),
          expireTime: msToDate(s.optIn?.expireTime),
        })),
        serviceWindows: state.windows.map((w) => ({
          channel: channels.toProto(w.channel),
          lastInboundTime: msToDate(w.lastInboundTime),
          expireTime: msToDate(w.expireTime),
          open: w.open,
        })),
      };
    }),

    listConsentEvents: pipeline.unary(
      'ListConsentEvents',
      async (req: ListConsentEventsRequest, ctx: CallContext): Promise<ListConsentEventsResponse> => {
        const tenantId = parentTenant(req.parent);
        const v: FieldViolation[] = [];
        const purposeId = req.purpose ? purposeIdOf(req.purpose, tenantId, 'purpose', v, true) : undefined;
        const startTime = requestTimeMs(req.startTime, 'start_time', v);
        const endTime = requestTimeMs(req.endTime, 'end_time', v);
        if (v.length > 0) throw invalidArgument(v);
        const page = await history.list(ctx.principal, tenantId, {
          identifier: req.subjectIdentifier ? toRawIdentifier(req.subjectIdentifier) : undefined,
          purposeId: purposeId ?? undefined,
          channel: channels.toDomain(req.channel) ?? undefined,
          startTime,
          endTime,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        });
        return { consentEvents: page.items.map(eventToProto), nextPageToken: page.nextPageToken };
      },
    ),
  };
}

/** The request fields RecordConsent and an imported row share. */
type ConsentFields = Pick<
  RecordConsentRequest,
  'subjectIdentifier' | 'purpose' | 'channel' | 'kind' | 'eventTime' | 'method' | 'notice' | 'evidence' | 'collectedBy' | 'lawfulBasis' | 'jurisdiction' | 'expireTime' | 'requestId'
>;

/** Shape checks of a consent write (RecordConsent, an imported row); the domain checks the rest. */
function consentInputFromProto(req: ConsentFields, tenantId: string, fingerprintSource: string): RecordConsentInput | { violations: FieldViolation[] } {
  const v: FieldViolation[] = [];
  const purposeId = purposeIdOf(req.purpose, tenantId, 'purpose', v, true);
  const kind = eventKinds.toDomain(req.kind);
  if (!kind || !(CONSENT_KINDS as readonly string[]).includes(kind)) {
    v.push({ field: 'kind', reason: 'REQUIRED', description: 'one of OPT_IN, OPT_OUT, OPT_IN_PENDING, OPT_IN_CONFIRMED' });
  }
  const channel = channels.toDomain(req.channel);
  if (!channel) v.push({ field: 'channel', reason: 'REQUIRED', description: 'a channel, or CHANNEL_ANY' });
  const method = methods.toDomain(req.method);
  if (!method) v.push({ field: 'method', reason: 'REQUIRED', description: 'how the consent was collected' });
  let notice: { purposeId: string; version: number } | undefined;
  if (req.notice) {
    const parsed = parseNoticeName(req.notice);
    if (!parsed || parsed.tenantId !== tenantId) {
      v.push({ field: 'notice', reason: 'INVALID_NAME', description: `must be tenants/${tenantId}/purposes/{purpose}/notices/{version}` });
    } else {
      notice = parsed;
    }
  }
  const eventTime = requestTimeMs(req.eventTime, 'event_time', v);
  const expireTime = requestTimeMs(req.expireTime, 'expire_time', v);
  if (v.length > 0 || !purposeId || !kind || !channel || !method) return { violations: v };
  return {
    tenantId,
    identifier: toRawIdentifier(req.subjectIdentifier),
    purposeId,
    channel,
    kind: kind as ConsentKind,
    eventTime,
    method,
    notice,
    evidence: { ...evidenceFromProto(req), collectedBy: req.collectedBy || undefined },
    lawfulBasis: lawfulBases.toDomain(req.lawfulBasis) ?? undefined,
    jurisdiction: req.jurisdiction,
    expireTime,
    requestId: req.requestId,
    fingerprintSource,
  };
}

/**
 * A call-level error of ImportConsents that came after rows were taken: the same status and
 * reason, its message and ErrorInfo metadata saying which rows were imported (those of the earlier
 * messages: `rows_before`, of which `recorded`, `already_recorded`, `rejected`).
 */
/** An ImportConsents call whose rejected rows no longer fit its answer (ImportRejections). */
function tooManyRejections(): DomainError {
  return new DomainError('RESOURCE_EXHAUSTED', 'TOO_MANY_REJECTIONS', 'more rows of this call were rejected than its answer can list: send fewer rows per call');
}

function importStoppedAt(err: unknown, rowsBefore: number, recorded: number, alreadyRecorded: number, rejected: number): unknown {
  if (!(err instanceof DomainError) || rowsBefore === 0) return err;
  const done = `rows of the earlier messages imported: ${rowsBefore} (${recorded} recorded, ${alreadyRecorded} already recorded, ${rejected} rejected); none of this message or after it`;
  return new DomainError(
    err.kind,
    err.reason,
    `${err.message}; ${done}`,
    { ...err.metadata, rows_before: String(rowsBefore), recorded: String(recorded), already_recorded: String(alreadyRecorded), rejected: String(rejected) },
    err.violations,
    err.retryDelayMs,
  );
}

/**
 * Streams decisions in order with bounded memory: at most `chunk` questions are read ahead (the
 * stream is paused beyond that; a packed message counts as its items) and after each chunk's
 * answers the server waits for the client to drain them before it reads on. A slow reader
 * therefore slows the stream instead of growing the server's buffers.
 */
async function runCheckStream(
  call: ServerDuplexStream<StreamCheckConsentRequest, StreamCheckConsentResponse>,
  ctx: CallContext,
  checker: Checker,
  chunk: number,
  maxItems: number,
): Promise<void> {
  const queue: StreamCheckConsentRequest[] = [];
  /** Questions in `queue`: a packed message's items, one for any other message. */
  let queued = 0;
  let ended = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  call.on('data', (req: StreamCheckConsentRequest) => {
    queue.push(req);
    queued += questionsIn(req);
    if (queued >= chunk) call.pause();
    notify();
  });
  call.on('end', () => {
    ended = true;
    notify();
  });
  call.on('cancelled', () => {
    ended = true;
    queue.length = 0;
    queued = 0;
    notify();
  });
  call.on('error', (err) => {
    failure = err;
    ended = true;
    notify();
  });
  for (;;) {
    if (failure) throw failure;
    if (queue.length === 0) {
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
      continue;
    }
    // Whole messages, up to `chunk` questions (at least one message, however many it packs).
    let take = 0;
    let taken = 0;
    while (take < queue.length && (take === 0 || taken + questionsIn(queue[take]) <= chunk)) taken += questionsIn(queue[take++]);
    const batch = queue.splice(0, take);
    queued -= taken;
    const responses = await decideStreamMessages(batch, ctx, checker, maxItems);
    // The next chunk is read only once this one's answers are written: a packed answer is one
    // message of up to MAX_BATCH_CHECKS answers, and the stream's buffer counts messages.
    await writeBatchAndWait(call, responses, ctx.signal);
    if (ctx.signal.aborted) return;
    if (queued < chunk) call.resume();
  }
}

/** The questions a stream message asks: its items when packed, else one. */
function questionsIn(req: StreamCheckConsentRequest): number {
  return Math.max(1, req.items?.length ?? 0);
}

const PARENT_VIOLATION: FieldViolation = { field: 'parent', reason: 'INVALID_NAME', description: 'must be tenants/{tenant}' };

/** The longest correlation id (the message's and each item's) a packed message may carry. */
const MAX_PACKED_CORRELATION_ID_BYTES = 256;

/** One question of a stream message: the message's own query, or an item of a packed message. */
interface StreamQuestion {
  parent: string;
  consistency: ConsistencyProto | undefined;
  query: ConsentQuery | undefined;
  correlationId: string;
  /** Where the query is in its message, for violations: "query" or "items[3].query". */
  field: string;
  /** What the wire check found in this item of a packed message (server.ts itemViolationsOf). */
  wire: FieldViolation[];
  /** Decoded as an empty item: a value of it the decoder could not hold (server.ts itemBlanked). */
  blanked: boolean;
}

/** How one stream message is answered. */
type StreamAnswerPlan =
  | { form: 'single'; correlationId: string; question: number }
  | { form: 'packed'; correlationId: string; first: number; count: number }
  | { form: 'refused'; correlationId: string; error: DomainError };

/** What a question came to; `whole` when the error is about its message, not the question. */
interface QuestionOutcome {
  tenantId: string;
  outcome: CheckOutcome;
  whole: boolean;
}

/**
 * Answers a chunk of stream messages, one response each, in order. A packed message's items are
 * answered in its response's `answers`; what is wrong with the message itself (both forms, too
 * many items, undecodable, its parent, its consistency, a tenant that cannot be read) refuses it
 * whole, in `result.error`. Consecutive questions of one tenant and consistency (across messages)
 * are decided in one call of the checker.
 */
async function decideStreamMessages(
  batch: StreamCheckConsentRequest[],
  ctx: CallContext,
  checker: Checker,
  maxItems: number,
): Promise<StreamCheckConsentResponse[]> {
  const questions: StreamQuestion[] = [];
  const plans = batch.map((req) => answerPlanOf(req, questions, maxItems));
  const outcomes = await decideQuestions(questions, ctx, checker);
  return plans.map((plan): StreamCheckConsentResponse => {
    switch (plan.form) {
      case 'refused':
        return { correlationId: plan.correlationId, result: { decision: undefined, error: toStatus(plan.error) }, answers: [] };
      case 'single': {
        const { tenantId, outcome } = outcomes[plan.question];
        return { correlationId: plan.correlationId, result: resultToProto(tenantId, outcome), answers: [] };
      }
      case 'packed': {
        const mine = outcomes.slice(plan.first, plan.first + plan.count);
        const whole = mine.find((o) => o.whole);
        if (whole) return { correlationId: plan.correlationId, result: resultToProto(whole.tenantId, whole.outcome), answers: [] };
        return {
          correlationId: plan.correlationId,
          result: undefined,
          answers: mine.map((o, i) => ({ correlationId: questions[plan.first + i].correlationId, result: resultToProto(o.tenantId, o.outcome) })),
        };
      }
    }
  });
}

/** How `req` is answered; its questions are appended to `questions`. */
function answerPlanOf(req: StreamCheckConsentRequest, questions: StreamQuestion[], maxItems: number): StreamAnswerPlan {
  const correlationId = req.correlationId;
  const refused = refusalOf(req);
  // Refused on the wire for its number of items, before they were decoded: its other fields were
  // (server.ts), so the message's other problems are named with it below.
  const tooMany = itemsWithheld(req);
  // A message refused at decoding (unknown enum value, time out of range) fails alone.
  if (refused && !tooMany) return { form: 'refused', correlationId, error: refused };
  const items = req.items ?? [];
  if (items.length === 0 && !tooMany) {
    questions.push({ parent: req.parent, consistency: req.consistency, query: req.query, correlationId, field: 'query', wire: [], blanked: false });
    return { form: 'single', correlationId, question: questions.length - 1 };
  }
  // What is wrong with the packed message itself, all of it named at once.
  const violations: FieldViolation[] = [];
  if (!parseTenantName(req.parent)) violations.push(PARENT_VIOLATION);
  if (req.query !== undefined) violations.push({ field: 'items', reason: 'QUERY_OR_ITEMS', description: 'set either query (one question) or items (the packed form), not both' });
  if (tooMany || items.length > maxItems) violations.push({ field: 'items', reason: 'BATCH_SIZE', description: `must hold 1 to ${maxItems} items` });
  // Every answer echoes its id: unbounded ids could make an answer larger than a client takes,
  // which ends the whole stream on the client's side.
  const longIds = [correlationId, ...items.map((item) => item.correlationId)].flatMap((id, i) =>
    Buffer.byteLength(id, 'utf8') > MAX_PACKED_CORRELATION_ID_BYTES ? [i === 0 ? 'correlation_id' : `items[${i - 1}].correlation_id`] : [],
  );
  for (const field of longIds.slice(0, 10)) violations.push({ field, reason: 'TOO_LONG', description: `at most ${MAX_PACKED_CORRELATION_ID_BYTES} bytes in a packed message` });
  if (longIds.length > 10) violations.push({ field: 'items', reason: 'TOO_LONG', description: `${longIds.length - 10} more correlation ids over ${MAX_PACKED_CORRELATION_ID_BYTES} bytes` });
  if (violations.length > 0) return { form: 'refused', correlationId: longIds[0] === 'correlation_id' ? '' : correlationId, error: invalidArgument(violations) };
  const first = questions.length;
  items.forEach((item, i) =>
    questions.push({
      parent: req.parent,
      consistency: req.consistency,
      query: item.query,
      correlationId: item.correlationId,
      field: `items[${i}].query`,
      wire: itemViolationsOf(req, i),
      blanked: itemBlanked(req, i),
    }),
  );
  return { form: 'packed', correlationId, first, count: items.length };
}

/** Decides stream questions in order, consecutive ones of one tenant and consistency in one call. */
async function decideQuestions(questions: StreamQuestion[], ctx: CallContext, checker: Checker): Promise<QuestionOutcome[]> {
  const outcomes: QuestionOutcome[] = new Array(questions.length);
  let start = 0;
  while (start < questions.length) {
    const { parent, consistency: asked } = questions[start];
    const key = consistencyKey(asked);
    let end = start + 1;
    while (end < questions.length && questions[end].parent === parent && consistencyKey(questions[end].consistency) === key) end++;
    const tenantId = parseTenantName(parent);
    const consistency = tenantId ? consistencyFromProto(asked, tenantId, 'consistency') : null;
    let whole: DomainError | null = null;
    if (!tenantId) whole = invalidArgument([PARENT_VIOLATION]);
    else if (consistency && !('kind' in consistency)) whole = invalidArgument([consistency]);
    if (whole === null) {
      const queries = questions.slice(start, end).map((q) => {
        const query = queryFromProto(q.query, tenantId!, q.field);
        // As in CheckConsentBatch: an item decoded as an empty one says only what the wire check
        // found; otherwise the wire check's reason names a field once.
        if (q.blanked) Object.assign(query, { violations: q.wire, undecoded: true });
        else if (q.wire.length > 0) query.violations = [...q.wire, ...query.violations.filter((v) => !q.wire.some((w) => w.field === v.field))];
        return query;
      });
      try {
        const decided = await checker.checkMany(ctx.principal, tenantId!, queries, consistency as Consistency);
        for (let i = start; i < end; i++) outcomes[i] = { tenantId: tenantId!, outcome: decided[i - start], whole: false };
      } catch (err) {
        // A tenant that does not exist (or may not be read) fails its own messages, not the stream.
        if (!(err instanceof DomainError) || err.kind === 'UNAVAILABLE' || err.kind === 'ABORTED') throw err;
        whole = err;
      }
    }
    if (whole !== null) for (let i = start; i < end; i++) outcomes[i] = { tenantId: tenantId ?? '', outcome: { error: whole }, whole: true };
    start = end;
  }
  return outcomes;
}

/** Shape checks of one query; violations travel with the query so batches answer per item. */
export function queryFromProto(q: ConsentQuery | undefined, tenantId: string, prefix: string): CheckQuery {
  const violations: FieldViolation[] = [];
  if (!q) {
    violations.push({ field: prefix, reason: 'REQUIRED', description: 'a query is required' });
    return { identifier: undefined, purposeId: null, category: null, channel: null, violations, fieldPrefix: prefix };
  }
  let purposeId: string | null = null;
  const category = categories.toDomain(q.category);
  if (q.purpose) {
    purposeId = purposeIdOf(q.purpose, tenantId, `${prefix}.purpose`, violations);
    if (category) violations.push({ field: `${prefix}.category`, reason: 'PURPOSE_OR_CATEGORY', description: 'give either purpose or category, not both' });
  } else if (category !== 'SERVICE' && category !== 'UTILITY') {
    violations.push({
      field: `${prefix}.purpose`,
      reason: 'REQUIRED',
      description: 'a purpose is required (a bare category is allowed only for SERVICE and UTILITY messages)',
    });
  }
  let channel: SendChannel | null = null;
  try {
    channel = sendChannel(q.channel, `${prefix}.channel`);
  } catch (err) {
    violations.push(...(err as DomainError).violations);
  }
  if (purposeId === ALL_PURPOSES) purposeId = null;
  return {
    identifier: toRawIdentifier(q.subjectIdentifier) ?? undefined,
    purposeId,
    category: purposeId ? null : category,
    channel,
    at: requestTimeMs(q.at, `${prefix}.at`, violations),
    violations,
    fieldPrefix: prefix,
  };
}

function sendChannel(value: number, field: string): SendChannel {
  const channel = channels.toDomain(value);
  if (!channel || channel === 'ANY') {
    throw invalidArgument([{ field, reason: 'INVALID_CHANNEL', description: 'a concrete channel (CHANNEL_ANY is not a channel a message is sent on)' }]);
  }
  return channel;
}

function resultToProto(tenantId: string, outcome: CheckOutcome): ConsentCheckResult {
  return 'error' in outcome
    ? { decision: undefined, error: toStatus(outcome.error) }
    : { decision: decisionToProto(tenantId, outcome.decision), error: undefined };
}

function evidenceFromProto(req: Pick<RecordConsentRequest, 'evidence'>) {
  const e = req.evidence;
  return {
    sourceIp: e?.sourceIp || undefined,
    userAgent: e?.userAgent || undefined,
    pageUrl: e?.pageUrl || undefined,
    inboundMessageId: e?.inboundMessageId || undefined,
    freeText: e?.freeText || undefined,
  };
}

/** The consistency a check asks for (unset: within the staleness bound), or the violation of a bad token. */
function consistencyFromProto(c: ConsistencyProto | undefined, tenantId: string, field: string): Consistency | FieldViolation {
  const requirement = c?.requirement;
  if (!requirement || requirement.$case === 'minimizeLatency') return BOUNDED;
  if (requirement.$case === 'fullyConsistent') return { kind: 'full' };
  const position = decodeConsistencyToken(requirement.value, tenantId, `${field}.at_least_as_fresh`);
  return typeof position === 'number' ? { kind: 'atLeast', position } : position;
}

/** The consistency a call asks for; a bad token refuses the call. */
function requiredConsistency(c: ConsistencyProto | undefined, tenantId: string): Consistency {
  const consistency = consistencyFromProto(c, tenantId, 'consistency');
  if (!('kind' in consistency)) throw invalidArgument([consistency]);
  return consistency;
}

/** Stream messages asking for the same consistency are decided together. */
function consistencyKey(c: ConsistencyProto | undefined): string {
  const requirement = c?.requirement;
  return !requirement || requirement.$case === 'minimizeLatency' ? '' : `${requirement.$case}:${String(requirement.value)}`;
}
