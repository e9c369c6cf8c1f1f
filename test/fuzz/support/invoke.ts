import { Client, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { DescMessage, fromBinary, Message } from '@bufbuild/protobuf';
import { Status } from '../../../src/gen/google/rpc/status';
import { BadRequest } from '../../../src/gen/google/rpc/error_details';
import { HealthCheckRequest, HealthCheckResponse_ServingStatus, HealthClient } from '../../../src/gen/grpc/health/v1/health';
import { Rpc } from './catalog';

/** What a call ended with. */
export interface Outcome {
  code: status;
  details: string;
  metadata: Metadata | undefined;
  /** The raw response messages. */
  responses: Buffer[];
  /** The client cancelled a stream that was still open after the read timeout. */
  cancelledByUs: boolean;
}

const identity = (b: Buffer) => b;

/** A client that sends and receives raw bytes, so any payload can go to any method. */
export function rawClient(address: string): Client {
  return new Client(address, credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
}

export interface InvokeOptions {
  /** Streams still open after this are cancelled by the client. */
  streamReadMs: number;
  /** Deadline of every call: a call that hangs fails as DEADLINE_EXCEEDED. */
  deadlineMs: number;
}

/**
 * Sends `payloads` to `rpc`: the first as the request of a unary or server-streaming call, all of
 * them (then half-close) on a client or bidi stream. Reads every response until the status, or
 * cancels a stream still open after `streamReadMs`.
 */
export function invoke(client: Client, rpc: Rpc, payloads: Buffer[], options: InvokeOptions): Promise<Outcome> {
  const deadline = Date.now() + options.deadlineMs;
  const responses: Buffer[] = [];
  return new Promise((resolve) => {
    let cancelledByUs = false;
    let timer: NodeJS.Timeout | undefined;
    const done = (err: ServiceError | null, metadata?: Metadata) => {
      clearTimeout(timer);
      resolve({
        code: err ? err.code : status.OK,
        details: err ? err.details : '',
        metadata: err ? err.metadata : metadata,
        responses,
        cancelledByUs,
      });
    };
    if (!rpc.requestStream && !rpc.responseStream) {
      client.makeUnaryRequest(rpc.path, identity, identity, payloads[0], new Metadata(), { deadline }, (err, res) => {
        if (res) responses.push(res);
        done(err);
      });
      return;
    }
    let call;
    if (!rpc.requestStream) {
      call = client.makeServerStreamRequest(rpc.path, identity, identity, payloads[0], new Metadata(), { deadline });
    } else if (!rpc.responseStream) {
      const c = client.makeClientStreamRequest(rpc.path, identity, identity, new Metadata(), { deadline }, (err, res) => {
        if (res) responses.push(res);
        done(err);
      });
      for (const p of payloads) c.write(p);
      c.end();
      return;
    } else {
      const c = client.makeBidiStreamRequest(rpc.path, identity, identity, new Metadata(), { deadline });
      for (const p of payloads) c.write(p);
      c.end();
      call = c;
    }
    let ended = false;
    call.on('data', (b: Buffer) => responses.push(b));
    call.on('error', (err: ServiceError) => {
      if (!ended) {
        ended = true;
        done(err);
      }
    });
    call.on('status', (s: { code: status; details: string; metadata: Metadata }) => {
      if (!ended && s.code === status.OK) {
        ended = true;
        done(null, s.metadata);
      }
    });
    timer = setTimeout(() => {
      cancelledByUs = true;
      call.cancel();
    }, options.streamReadMs);
  });
}

/** The google.rpc.Status carried in the grpc-status-details-bin trailer, if any. */
export function statusDetails(metadata: Metadata | undefined): Status | undefined {
  const bin = metadata?.get('grpc-status-details-bin')[0];
  return bin instanceof Buffer ? Status.decode(bin) : undefined;
}

/** Field paths of the google.rpc.BadRequest in a status, if any. */
export function badRequestFields(s: Status | undefined): string[] | undefined {
  return badRequestViolations(s)?.map((v) => v.field);
}

/** The field violations of the google.rpc.BadRequest in a status, if any. */
export function badRequestViolations(s: Status | undefined): Array<{ field: string; reason: string }> | undefined {
  const bad = s?.details.find((d) => d.typeUrl.endsWith('/google.rpc.BadRequest'));
  return bad ? BadRequest.decode(bad.value).fieldViolations.map(({ field, reason }) => ({ field, reason })) : undefined;
}

/**
 * Violations the server finds in the wire bytes before any handler runs (src/transport/
 * request-checks.ts): a random message that holds such a value is refused for it, whichever
 * other field a test broke.
 */
export const SCHEMA_REASONS: ReadonlySet<string> = new Set(['UNKNOWN_ENUM_VALUE', 'INVALID_TIMESTAMP', 'INVALID_DURATION']);

/**
 * Every google.rpc.Status nested anywhere in a response (per-item errors of batch and stream
 * checks), found by reflection so new response types are covered without changes here.
 */
export function nestedStatuses(desc: DescMessage, bytes: Buffer): Array<{ code: number; message: string; details: unknown[] }> {
  const found: Array<{ code: number; message: string; details: unknown[] }> = [];
  const walk = (d: DescMessage, m: Message | undefined) => {
    if (!m) return;
    if (d.typeName === 'google.rpc.Status') {
      const s = m as unknown as { code: number; message: string; details: unknown[] };
      found.push(s);
      return;
    }
    const record = m as unknown as Record<string, unknown>;
    for (const f of d.fields) {
      const raw = f.oneof ? (record[f.oneof.localName] as { case?: string; value?: unknown } | undefined) : undefined;
      const value = f.oneof ? (raw?.case === f.localName ? raw.value : undefined) : record[f.localName];
      if (f.fieldKind === 'message') walk(f.message, value as Message | undefined);
      else if (f.fieldKind === 'list' && f.listKind === 'message') for (const v of value as Message[]) walk(f.message, v);
      else if (f.fieldKind === 'map' && f.mapKind === 'message') for (const v of Object.values(value as Record<string, Message>)) walk(f.message, v);
    }
  };
  walk(desc, fromBinary(desc, bytes));
  return found;
}

/** grpc.health.v1 Check of the whole server. */
export function healthCheck(address: string): Promise<HealthCheckResponse_ServingStatus> {
  const client = new HealthClient(address, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.check(HealthCheckRequest.fromPartial({ service: '' }), new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res.status);
    });
  });
}
