import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Server, ServerCredentials, ServiceDefinition } from '@grpc/grpc-js';
import { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { HealthImplementation, ServingStatusMap } from 'grpc-health-check';
import { AuditServiceServer, AuditServiceService } from '../gen/consent/v1/audit';
import { ConsentServiceService, ConsentServiceServer } from '../gen/consent/v1/consent';
import { KeyServiceServer, KeyServiceService } from '../gen/consent/v1/key';
import { PurposeServiceService, PurposeServiceServer } from '../gen/consent/v1/purpose';
import { SubjectRightsServiceServer, SubjectRightsServiceService } from '../gen/consent/v1/subject_rights';
import { TenantServiceService, TenantServiceServer } from '../gen/consent/v1/tenant';

export const SERVICE_NAMES = ['consent.v1.TenantService', 'consent.v1.PurposeService', 'consent.v1.ConsentService', 'consent.v1.KeyService', 'consent.v1.SubjectRightsService', 'consent.v1.AuditService'] as const;

export interface ServiceImplementations {
  tenant: TenantServiceServer;
  purpose: PurposeServiceServer;
  consent: ConsentServiceServer;
  key: KeyServiceServer;
  subjectRights: SubjectRightsServiceServer;
  audit: AuditServiceServer;
}

/**
 * The gRPC server with our services, grpc.health.v1 and server reflection. Reflection is fed the
 * descriptor set `buf build` wrote (src/gen/descriptor-set.binpb), which keeps the imports of
 * google/protobuf/*.proto, so tools without our protos (buf curl, grpcurl) can call every method.
 */
export function createGrpcServer(
  services: ServiceImplementations,
  options: { maxMessageBytes: number },
): { server: Server; health: HealthImplementation } {
  const server = new Server({
    // Larger requests end with RESOURCE_EXHAUSTED before any handler runs.
    'grpc.max_receive_message_length': options.maxMessageBytes,
    // HTTP/2 streams per connection (every call is one, unary too): bounds what one connection can
    // hold in flight. Long-lived gRPC streams are limited per principal by the call pipeline.
    'grpc.max_concurrent_streams': 1000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  server.addService(tolerantDecoding(TenantServiceService), services.tenant);
  server.addService(tolerantDecoding(PurposeServiceService), services.purpose);
  server.addService(tolerantDecoding(ConsentServiceService), services.consent);
  server.addService(tolerantDecoding(KeyServiceService), services.key);
  server.addService(tolerantDecoding(SubjectRightsServiceService), services.subjectRights);
  server.addService(tolerantDecoding(AuditServiceService), services.audit);

  const statuses: ServingStatusMap = { '': 'SERVING' };
  for (const name of SERVICE_NAMES) statuses[name] = 'SERVING';
  const health = new HealthImplementation(statuses);
  health.addToServer(server);

  new ReflectionService(reflectionDescriptors()).addToServer(server);
  return { server, health };
}

/** Marks a request message the generated decoder could not read; the value says why. */
export const UNDECODABLE = Symbol('undecodable request');

/**
 * A request the generated decoder cannot read (broken wire bytes, or an int64 beyond 2^53, which
 * ts-proto's number mapping refuses) would otherwise end INTERNAL "Error deserializing request"
 * inside grpc-js. Here it becomes the empty message marked UNDECODABLE instead: the call pipeline
 * answers INVALID_ARGUMENT for it, and a stream's handler sees a message with every field unset.
 */
function tolerantDecoding<D extends ServiceDefinition>(definition: D): D {
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return Object.assign(method.requestDeserialize(Buffer.alloc(0)) as object, { [UNDECODABLE]: (err as Error).message });
        }
      },
    };
  }
  return wrapped as D;
}

/**
 * The FileDescriptorProtos exactly as buf wrote them, in the shape @grpc/reflection reads.
 * proto-loader's loadFileDescriptorSetFromBuffer re-serialises files through protobufjs and
 * drops their `dependency` lists; reflection clients then fail to resolve our services.
 */
function reflectionDescriptors(): PackageDefinition {
  const set = readFileSync(path.join(__dirname, '..', 'gen', 'descriptor-set.binpb'));
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
