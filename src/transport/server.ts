import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Server, ServerCredentials, ServerDuplexStream, ServerInterceptor, ServerWritableStream, ServiceDefinition, status, UntypedServiceImplementation } from '@grpc/grpc-js';
import { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { HealthImplementation, ServingStatusMap } from 'grpc-health-check';
import { AuditServiceServer, AuditServiceService } from '../gen/consent/v1/audit';
import { ConsentServiceService, ConsentServiceServer } from '../gen/consent/v1/consent';
import { IdentityServiceServer, IdentityServiceService } from '../gen/consent/v1/identity';
import { KeyServiceServer, KeyServiceService } from '../gen/consent/v1/key';
import { PurposeServiceService, PurposeServiceServer } from '../gen/consent/v1/purpose';
import { SelfServiceServiceServer, SelfServiceServiceService } from '../gen/consent/v1/self_service';
import { SubjectRightsServiceServer, SubjectRightsServiceService } from '../gen/consent/v1/subject_rights';
import { TenantServiceService, TenantServiceServer } from '../gen/consent/v1/tenant';
import { DomainError, FieldViolation, invalidArgument } from '../shared/errors';
import { RequestCheck, requestChecks } from './request-checks';
import { ItemLimitCheck, ItemLimits, requestItemLimits } from './request-item-limits';
import { CHECK_RESPONSE_ENCODERS } from './check-responses';
import { CHECK_REQUEST_DECODERS } from './check-requests';

export const SERVICE_NAMES = ['consent.v1.TenantService', 'consent.v1.PurposeService', 'consent.v1.ConsentService', 'consent.v1.KeyService', 'consent.v1.SubjectRightsService', 'consent.v1.AuditService', 'consent.v1.IdentityService', 'consent.v1.SelfServiceService'] as const;

export interface ServiceImplementations {
  tenant: TenantServiceServer;
  purpose: PurposeServiceServer;
  consent: ConsentServiceServer;
  key: KeyServiceServer;
  subjectRights: SubjectRightsServiceServer;
  audit: AuditServiceServer;
  identity: IdentityServiceServer;
  /** Methods not given answer UNIMPLEMENTED (grpc-js's default handler). */
  selfService: Partial<SelfServiceServiceServer>;
}

/**
 * The gRPC server with our services, grpc.health.v1 and server reflection. Reflection is fed the
 * descriptor set `buf build` wrote (src/gen/descriptor-set.binpb), which keeps the imports of
 * google/protobuf/*.proto, so tools without our protos (buf curl, grpcurl) can call every method.
 */
export function createGrpcServer(
  services: ServiceImplementations,
  options: {
    maxMessageBytes: number;
    itemLimits: ItemLimits;
    health?: HealthImplementation;
    interceptors?: ServerInterceptor[];
    /** Where the health watches and reflection streams register how to end them (shutdown), as the call pipeline's streams do. */
    openStreams?: Set<() => void>;
  },
): { server: Server; health: HealthImplementation } {
  const server = new Server({
    // The request-arrival guard (request-arrival-guard.ts) runs for every call before its handler.
    interceptors: options.interceptors ?? [],
    // Larger requests end with RESOURCE_EXHAUSTED before any handler runs.
    'grpc.max_receive_message_length': options.maxMessageBytes,
    // HTTP/2 streams per connection (every call is one, unary too): bounds what one connection can
    // hold in flight. Long-lived gRPC streams are limited per principal by the call pipeline.
    'grpc.max_concurrent_streams': 1000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const descriptorSet = readFileSync(path.join(__dirname, '..', 'gen', 'descriptor-set.binpb'));
  const checks = requestChecks(descriptorSet);
  const counts = requestItemLimits(descriptorSet, options.itemLimits);
  server.addService(strictDecoding(TenantServiceService, checks, counts), services.tenant);
  server.addService(strictDecoding(PurposeServiceService, checks, counts), services.purpose);
  server.addService(strictDecoding(ConsentServiceService, checks, counts), services.consent);
  server.addService(strictDecoding(KeyServiceService, checks, counts), services.key);
  server.addService(strictDecoding(SubjectRightsServiceService, checks, counts), services.subjectRights);
  server.addService(strictDecoding(AuditServiceService, checks, counts), services.audit);
  server.addService(strictDecoding(IdentityServiceService, checks, counts), services.identity);
  server.addService(strictDecoding(SelfServiceServiceService, checks, counts), services.selfService as SelfServiceServiceServer);

  const health = options.health ?? createHealth('SERVING');
  addHealth(server, health, options.openStreams);

  new ReflectionService(reflectionDescriptors(descriptorSet)).addToServer(withReflectionBackPressure(server, options.openStreams));
  return { server, health };
}

/**
 * Health/Watch streams open at once in this process (every port together). Health needs no
 * credentials and its streams stay open until the client goes: without a bound, a client opening
 * tens of thousands of them (about 10 KB each) ran the process out of memory (found by a probe).
 * Probes use Check; a watcher per load balancer or sidecar is far below this.
 */
export const MAX_HEALTH_WATCHES = 1000;
const healthWatches = { open: 0 };

/** Adds grpc.health.v1 to `server`, Watch streams bounded by MAX_HEALTH_WATCHES (RESOURCE_EXHAUSTED beyond). */
export function addHealth(server: Pick<Server, 'addService'>, health: HealthImplementation, openStreams?: Set<() => void>): void {
  health.addToServer({
    addService(definition: ServiceDefinition, implementation: UntypedServiceImplementation): void {
      const watch = implementation.watch as ((call: ServerWritableStream<unknown, unknown>) => void) | undefined;
      if (!watch) return server.addService(definition, implementation);
      server.addService(definition, {
        ...implementation,
        watch: (call: ServerWritableStream<unknown, unknown>) => {
          if (healthWatches.open >= MAX_HEALTH_WATCHES) {
            call.emit('error', { code: status.RESOURCE_EXHAUSTED, details: `at most ${MAX_HEALTH_WATCHES} health watches are open at once; use Check` });
            return;
          }
          healthWatches.open++;
          const end = () => call.end();
          openStreams?.add(end);
          let open = true;
          const closed = () => {
            if (!open) return;
            open = false;
            healthWatches.open--;
            openStreams?.delete(end);
          };
          call.once('cancelled', closed);
          call.once('finish', closed);
          watch(call);
        },
      });
    },
  } as Server);
}

/** grpc.health.v1 with one status for the whole server ('') and for each of our services. */
export function createHealth(status: 'SERVING' | 'NOT_SERVING'): HealthImplementation {
  const statuses: ServingStatusMap = { '': status };
  for (const name of SERVICE_NAMES) statuses[name] = status;
  return new HealthImplementation(statuses);
}

/** Marks a request the server refuses before any handler runs; the value is the error to answer. */
export const REFUSED = Symbol('refused request');

/** The error a request was refused with at decoding (see strictDecoding), or null. */
export function refusalOf(request: unknown): DomainError | null {
  if (!request || typeof request !== 'object' || !(REFUSED in request)) return null;
  return (request as Record<symbol, DomainError>)[REFUSED];
}

/** Marks the schema violations found in items of a repeated field whose items are answered one by one. */
const ITEM_VIOLATIONS = Symbol('item violations');

/**
 * Methods whose repeated field holds independent items, by its name and number: a value out of
 * range in one item is that item's INVALID_ARGUMENT, and the other items are still answered
 * (CheckConsentBatch's queries, ImportConsents' rows, a packed StreamCheckConsent message's items).
 */
const ITEMISED: Record<string, { field: string; number: number; keepText?: number }> = {
  '/consent.v1.ConsentService/CheckConsentBatch': { field: 'queries', number: 2 },
  '/consent.v1.ConsentService/ImportConsents': { field: 'rows', number: 2 },
  // An item's correlation id (field 2 of StreamCheckConsentItem) is kept when it is blanked: its answer still names it.
  '/consent.v1.ConsentService/StreamCheckConsent': { field: 'items', number: 5, keepText: 2 },
};

/**
 * `bytes` with the items at `indexes` of field `field` replaced by near-empty ones (same positions):
 * of such an item only its small varint fields are kept (an ImportRow's `line`, which its rejection
 * names) and the text field `keepText` if given (a streamed item's correlation id); every
 * other field of it goes, among them the value the decoder could not hold.
 */
function blankItems(bytes: Uint8Array, field: number, indexes: Set<number>, keepText?: number): Buffer {
  const reader = new BinaryReader(bytes);
  const parts: Uint8Array[] = [];
  let index = 0;
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [number, wireType] = reader.tag();
    const afterTag = reader.pos;
    reader.skip(wireType);
    if (number === field && wireType === WireType.LengthDelimited && indexes.has(index++)) {
      const kept = keptFields(bytes.subarray(afterTag, reader.pos), keepText);
      parts.push(bytes.subarray(start, afterTag), new BinaryWriter().uint32(kept.length).finish(), kept);
    } else {
      parts.push(bytes.subarray(start, reader.pos));
    }
  }
  return Buffer.concat(parts);
}

/** `bytes` without field `field` (empty when the bytes cannot be walked: the message is refused anyway). */
function withoutField(bytes: Uint8Array, field: number): Buffer {
  const parts: Uint8Array[] = [];
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const start = reader.pos;
      const [number, wireType] = reader.tag();
      reader.skip(wireType);
      if (number !== field) parts.push(bytes.subarray(start, reader.pos));
    }
  } catch {
    return Buffer.alloc(0);
  }
  return Buffer.concat(parts);
}

/**
 * The varint fields of a length-delimited item (its length prefix first) whose values take at most
 * 7 bytes (below 2^49; 100 bytes of them at most), and field `keepText` when it is length-delimited
 * (a packed item's correlation id: its answer names it, and a long one is refused as usual).
 */
function keptFields(item: Uint8Array, keepText?: number): Uint8Array {
  const inner = new BinaryReader(item).bytes();
  const reader = new BinaryReader(inner);
  const kept: Uint8Array[] = [];
  let size = 0;
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [number, wireType] = reader.tag();
    const afterTag = reader.pos;
    reader.skip(wireType);
    if (wireType === WireType.LengthDelimited && number === keepText) {
      kept.push(inner.subarray(start, reader.pos));
    } else if (wireType === WireType.Varint && reader.pos - afterTag <= 7 && size + reader.pos - start <= 100) {
      kept.push(inner.subarray(start, reader.pos));
      size += reader.pos - start;
    }
  }
  return Buffer.concat(kept);
}

/** Marks the items decoded as empty ones because the decoder could not hold a value of theirs. */
const ITEMS_BLANKED = Symbol('items blanked');

/**
 * Whether item `index` was decoded as an empty item (a value of it the decoder cannot hold): its
 * wire violations are all there is to say about it; its decoded fields are not what was sent.
 */
export function itemBlanked(request: unknown, index: number): boolean {
  return (request as Record<symbol, Set<number> | undefined>)[ITEMS_BLANKED]?.has(index) === true;
}

/** Marks a request refused for its number of items: decoded without them (its other fields are what was sent). */
const ITEMS_WITHHELD = Symbol('items withheld');

/**
 * Whether the request was refused for holding more items than its method takes: its items were
 * never decoded (the message has none), its other fields were, so their problems can be named too.
 */
export function itemsWithheld(request: unknown): boolean {
  return (request as Record<symbol, boolean | undefined>)[ITEMS_WITHHELD] === true;
}

/** The schema violations found in item `index` of a request's itemised field (none: empty). */
export function itemViolationsOf(request: unknown, index: number): FieldViolation[] {
  const found = (request as Record<symbol, Map<number, FieldViolation[]> | undefined>)[ITEM_VIOLATIONS];
  return found?.get(index) ?? [];
}

/** Violations under `field[i]` sorted out per item; null when any other field is in them too. */
function byItem(violations: FieldViolation[], field: string): Map<number, FieldViolation[]> | null {
  const items = new Map<number, FieldViolation[]>();
  const prefix = new RegExp(`^${field}\\[(\\d+)\\](?:\\.|$)`);
  for (const v of violations) {
    const m = prefix.exec(v.field);
    if (!m) return null;
    const index = Number(m[1]);
    items.set(index, [...(items.get(index) ?? []), v]);
  }
  return items;
}

/**
 * Decoding that refuses what the generated decoder would get wrong instead of failing the call
 * INTERNAL or letting it through silently:
 *  - bytes the decoder cannot read (broken wire bytes, or an int64 beyond 2^53, which ts-proto's
 *    number mapping refuses) would end INTERNAL "Error deserializing request" inside grpc-js;
 *  - enum numbers the schema does not define, and Timestamps or Durations out of range, decode
 *    without complaint (request-checks.ts).
 * Such a request becomes a message marked REFUSED (the empty message when it could not be read):
 * the call pipeline answers INVALID_ARGUMENT for it, and a stream's handler answers the one item.
 *
 * The check methods' requests as clients usually write them are decoded in one pass
 * (check-requests.ts), their responses encoded by check-responses.ts: the same messages and
 * bytes, less work.
 */
function strictDecoding<D extends ServiceDefinition>(definition: D, checks: Map<string, RequestCheck>, counts: Map<string, ItemLimitCheck>): D {
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const check = checks.get(method.path) ?? (() => []);
    const count = counts.get(method.path);
    const fast = CHECK_REQUEST_DECODERS[method.path];
    wrapped[name] = {
      ...method,
      // The check methods' answers in one exact-size buffer (check-responses.ts), same bytes.
      responseSerialize: CHECK_RESPONSE_ENCODERS[method.path] ?? method.responseSerialize,
      requestDeserialize: (bytes: Buffer) => {
        const refuse = (error: DomainError, kept: Buffer = Buffer.alloc(0)) => {
          let message: object;
          try {
            message = method.requestDeserialize(kept) as object;
          } catch {
            message = method.requestDeserialize(Buffer.alloc(0)) as object;
          }
          return Object.assign(message, { [REFUSED]: error });
        };
        // Before anything is decoded: more list items than the method takes is refused on the
        // wire (request-item-limits.ts), not after an object was made of each. The message's
        // other fields are kept where the items are one field (a streamed message's correlation id).
        const tooMany = count?.(bytes);
        const itemised = ITEMISED[method.path];
        if (tooMany) {
          if (!itemised) return refuse(invalidArgument([tooMany]));
          return Object.assign(refuse(invalidArgument([tooMany]), withoutField(bytes, itemised.number)), { [ITEMS_WITHHELD]: true });
        }
        // A check request as clients usually write it needs neither pass below (check-requests.ts).
        const simple = fast?.(bytes);
        if (simple) return simple;
        // The schema check first: it reads 64-bit values the generated decoder refuses, so a
        // Timestamp 2e9 years out is named as its field rather than "undecodable".
        let violations: FieldViolation[] = [];
        let unreadable: Error | undefined;
        try {
          violations = check(bytes);
        } catch (err) {
          // Broken wire bytes. The generated decoder is more lenient (it stops at a field number
          // 0 as if the message ended there, keeping what it read before), so it must not decide:
          // a message the check could not walk is a message nobody checked.
          unreadable = err as Error;
        }
        let message: object;
        try {
          message = method.requestDeserialize(bytes) as object;
        } catch (err) {
          // A value the decoder cannot hold (an int64 above 2^53) in some items of an itemised
          // method: those items are decoded as empty ones and answered with their violations,
          // the others as usual.
          const items = !unreadable && itemised ? byItem(violations, itemised.field) : null;
          if (items && items.size > 0) {
            try {
              const blanked = method.requestDeserialize(blankItems(bytes, itemised.number, new Set(items.keys()), itemised.keepText)) as object;
              return Object.assign(blanked, { [ITEM_VIOLATIONS]: items, [ITEMS_BLANKED]: new Set(items.keys()) });
            } catch {
              // Something else in the message: refused whole below.
            }
          }
          return refuse(violations.length > 0 ? invalidArgument(violations) : undecodable((err as Error).message));
        }
        if (unreadable) return refuse(undecodable(unreadable.message));
        if (violations.length === 0) return message;
        const items = itemised ? byItem(violations, itemised.field) : null;
        if (items) return Object.assign(message, { [ITEM_VIOLATIONS]: items });
        // Decoded anyway where possible: a streamed item keeps its correlation id.
        return Object.assign(message, { [REFUSED]: invalidArgument(violations) });
      },
    };
  }
  return wrapped as D;
}

/** INVALID_ARGUMENT for a request the decoder could not read. */
function undecodable(why: string): DomainError {
  // The decoder's message names no request content, only what kind of value it could not read.
  return new DomainError('INVALID_ARGUMENT', 'UNDECODABLE_REQUEST', `the request is not a valid message of this method: ${why.slice(0, 200)}`, {}, [
    { field: '', reason: 'UNDECODABLE_REQUEST', description: 'not a valid protobuf message of this method (a 64-bit integer above 2^53 - 1 counts as invalid)' },
  ]);
}

/**
 * @grpc/reflection answers every request of a ServerReflectionInfo stream with a write, whatever
 * the client reads: a client that sends small requests and never reads makes the server buffer
 * every answer (tens of KB each) until the process runs out of memory. Its handlers are added
 * through this wrapper, which pauses reading a stream while its answers wait to be sent (the
 * write returned false) and resumes on 'drain': HTTP/2 flow control then holds the client back.
 */
function withReflectionBackPressure(server: Server, openStreams?: Set<() => void>): Pick<Server, 'addService'> {
  return {
    addService(definition: ServiceDefinition, implementation: UntypedServiceImplementation): void {
      const wrapped: UntypedServiceImplementation = {};
      for (const [name, handler] of Object.entries(implementation)) {
        wrapped[name] = (stream: ServerDuplexStream<unknown, unknown>) => {
          // Ended at shutdown like the service's own streams (a client may hold one open for ever).
          const end = () => stream.end();
          openStreams?.add(end);
          stream.once('cancelled', () => openStreams?.delete(end));
          stream.once('finish', () => openStreams?.delete(end));
          (handler as (s: ServerDuplexStream<unknown, unknown>) => void)(pausingWhileFull(stream));
        };
      }
      server.addService(definition, wrapped);
    },
  };
}

/** `stream`, its write pausing the reading side while the written answers wait to be sent. */
export function pausingWhileFull<S extends { write(message: unknown): boolean; pause(): unknown; resume(): unknown; once(event: 'drain', listener: () => void): unknown }>(stream: S): S {
  const write = stream.write.bind(stream);
  let waiting = false;
  stream.write = (message: unknown) => {
    const more = write(message);
    if (!more && !waiting) {
      waiting = true;
      stream.pause();
      stream.once('drain', () => {
        waiting = false;
        stream.resume();
      });
    }
    return more;
  };
  return stream;
}

/**
 * The FileDescriptorProtos exactly as buf wrote them, in the shape @grpc/reflection reads.
 * proto-loader's loadFileDescriptorSetFromBuffer re-serialises files through protobufjs and
 * drops their `dependency` lists; reflection clients then fail to resolve our services.
 */
function reflectionDescriptors(set: Buffer): PackageDefinition {
  const files = splitFileDescriptorSet(set);
  return { 'consent.v1': { fileDescriptorProtos: files } } as unknown as PackageDefinition;
}

/** A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: split it into the raw files. */
function splitFileDescriptorSet(set: Buffer): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}

/** Binds and resolves with the bound port (0 asks the OS for a free one). */
export function bind(server: Server, address: string, port: number, credentials: ServerCredentials = ServerCredentials.createInsecure()): Promise<number> {
  const host = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
}
