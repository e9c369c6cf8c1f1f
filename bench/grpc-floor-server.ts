import { sendUnaryData, Server, ServerCredentials, ServerDuplexStream, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import {
  CheckConsentBatchRequest,
  CheckConsentBatchResponse,
  CheckConsentRequest,
  CheckConsentResponse,
  ConsentDecision,
  ConsentQuery,
  ConsentServiceService,
  StreamCheckConsentRequest,
  StreamCheckConsentResponse,
} from '../src/gen/consent/v1/consent';
import { CHECK_REQUEST_DECODERS } from '../src/transport/check-requests';
import { CHECK_RESPONSE_ENCODERS } from '../src/transport/check-responses';
import { writeBatch } from '../src/transport/stream-flow';
import { expectedDecision } from './check-jobs';

/**
 * The floor of bench/grpc-floor.ts: a gRPC server with nothing of the service but its wire
 * format. It serves grpc.health.v1 and ConsentService's three check methods with the service's
 * own request decoders and response encoders (src/transport/check-requests.ts and
 * check-responses.ts, as src/transport/server.ts installs them) and answers every query from the
 * benchmark's seeding rule alone (subject i = +49 151 1000000 + i; i % 10 = 9 opted out): no call
 * pipeline, no authentication, no cache, no database, no HMAC. StreamCheckConsent answers each
 * received message's chunk with the service's writeBatch, as the service does. What it costs per
 * call is what grpc-js, HTTP/2 and protobuf cost on this machine: a lower bound for the service.
 *
 * Run as a child of bench/grpc-floor.ts; prints "listening <port>" when ready.
 */

/** The same deciding event for every answer, as long as the service's (a time-ordered 36-character id). */
const DECIDING_EVENT = '0190f3b2c1aa-7e4d9f0b1c2d3e4f5a6b7c8d';

/** The answer the benchmark expects for the subject a query names (the inverse of checkSubjectPhone). */
function decide(query: ConsentQuery | undefined): ConsentDecision {
  const kind = query?.subjectIdentifier?.kind;
  const phone = kind?.$case === 'phoneNumber' ? kind.value : '';
  const { verdict, reason } = expectedDecision(Number(phone.slice('+49151'.length)) - 10_000_000);
  return { verdict, reason, decidingEvent: DECIDING_EVENT, validUntil: undefined };
}

const handlers: UntypedServiceImplementation = {
  checkConsent(call: ServerUnaryCall<CheckConsentRequest, CheckConsentResponse>, answer: sendUnaryData<CheckConsentResponse>) {
    answer(null, { decision: decide(call.request.query) });
  },
  checkConsentBatch(call: ServerUnaryCall<CheckConsentBatchRequest, CheckConsentBatchResponse>, answer: sendUnaryData<CheckConsentBatchResponse>) {
    answer(null, { results: call.request.queries.map((q) => ({ decision: decide(q), error: undefined })) });
  },
  streamCheckConsent(call: ServerDuplexStream<StreamCheckConsentRequest, StreamCheckConsentResponse>) {
    // Answers are written in the turn their questions arrived in (as the service's chunks are).
    // No back-pressure: the benchmark's clients read every answer as it comes.
    let pending: StreamCheckConsentResponse[] = [];
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      const out = pending;
      pending = [];
      writeBatch(call, out);
    };
    call.on('data', (request: StreamCheckConsentRequest) => {
      pending.push({ correlationId: request.correlationId, result: { decision: decide(request.query), error: undefined }, answers: [] });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
    call.on('end', () => {
      if (pending.length > 0) flush();
      call.end();
    });
  },
};

const server = new Server({ 'grpc.max_concurrent_streams': 1000 });
const definition: Record<string, unknown> = {};
for (const [name, method] of Object.entries(ConsentServiceService)) {
  const decode = CHECK_REQUEST_DECODERS[method.path];
  definition[name] = {
    ...method,
    requestDeserialize: (bytes: Buffer) => decode?.(bytes) ?? method.requestDeserialize(bytes),
    responseSerialize: CHECK_RESPONSE_ENCODERS[method.path] ?? method.responseSerialize,
  };
}
server.addService(definition as typeof ConsentServiceService, handlers);
new HealthImplementation({ '': 'SERVING' }).addToServer(server);
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`listening ${port}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
