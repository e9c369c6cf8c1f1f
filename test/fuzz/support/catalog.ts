import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createFileRegistry, DescMessage, fromBinary, Registry } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { AuditServiceService } from '../../../src/gen/consent/v1/audit';
import { ConsentServiceService } from '../../../src/gen/consent/v1/consent';
import { IdentityServiceService } from '../../../src/gen/consent/v1/identity';
import { KeyServiceService } from '../../../src/gen/consent/v1/key';
import { PurposeServiceService } from '../../../src/gen/consent/v1/purpose';
import { SubjectRightsServiceService } from '../../../src/gen/consent/v1/subject_rights';
import { TenantServiceService } from '../../../src/gen/consent/v1/tenant';
import { SelfServiceServiceService } from '../../../src/gen/consent/v1/self_service';
import { NOT_SERVED_YET } from '../../support/rpc-catalog';

/**
 * Every RPC of every consent.v1 service, as the generated grpc-js definitions declare them (the
 * path, the streaming kinds and the ts-proto codecs the server and clients use), together with
 * the reflection of its request and response messages from the descriptor set `buf build` wrote
 * (src/gen/descriptor-set.binpb). The reflection drives the random messages; the ts-proto codecs
 * check that what the server answers is readable by the generated clients.
 */
export interface Rpc {
  /** "consent.v1.TenantService". */
  service: string;
  /** "CreateTenant". */
  method: string;
  /** "/consent.v1.TenantService/CreateTenant". */
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  input: DescMessage;
  output: DescMessage;
  /** The generated request decoder, exactly as the server runs it. */
  decodeRequest(bytes: Buffer): unknown;
  /** The generated response decoder, exactly as a generated client runs it. */
  decodeResponse(bytes: Buffer): unknown;
}

interface GeneratedMethod {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize(bytes: Buffer): unknown;
  responseDeserialize(bytes: Buffer): unknown;
}

/** The generated service definitions the server registers (src/transport/server.ts). */
export const GENERATED_SERVICES: Record<string, Record<string, GeneratedMethod>> = {
  'consent.v1.TenantService': TenantServiceService,
  'consent.v1.PurposeService': PurposeServiceService,
  'consent.v1.ConsentService': ConsentServiceService,
  'consent.v1.KeyService': KeyServiceService,
  'consent.v1.SubjectRightsService': SubjectRightsServiceService,
  'consent.v1.AuditService': AuditServiceService,
  'consent.v1.IdentityService': IdentityServiceService,
  'consent.v1.SelfServiceService': SelfServiceServiceService,
};

let registry: Registry | undefined;

/** The reflection registry of every message in src/gen/descriptor-set.binpb. */
export function protoRegistry(): Registry {
  if (!registry) {
    const file = path.join(__dirname, '..', '..', '..', 'src', 'gen', 'descriptor-set.binpb');
    registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(file)));
  }
  return registry;
}

/** Every RPC, in the order of the generated definitions. */
export function rpcCatalog(): Rpc[] {
  const reg = protoRegistry();
  const rpcs: Rpc[] = [];
  for (const [service, methods] of Object.entries(GENERATED_SERVICES)) {
    const desc = reg.getService(service);
    if (!desc) throw new Error(`service ${service} is not in the descriptor set: run npm run generate`);
    for (const generated of Object.values(methods)) {
      const method = generated.path.split('/')[2];
      if (NOT_SERVED_YET.has(`${service}/${method}`)) continue;
      const m = desc.methods.find((x) => x.name === method);
      if (!m) throw new Error(`${generated.path} is not in the descriptor set: run npm run generate`);
      rpcs.push({
        service,
        method,
        path: generated.path,
        requestStream: generated.requestStream,
        responseStream: generated.responseStream,
        input: m.input,
        output: m.output,
        decodeRequest: (b) => generated.requestDeserialize(b),
        decodeResponse: (b) => generated.responseDeserialize(b),
      });
    }
  }
  return rpcs;
}

/** Every method path the descriptor set declares for the consent.v1 services (to cross-check the catalog). */
export function declaredPaths(): string[] {
  const paths: string[] = [];
  for (const file of protoRegistry()) {
    if (file.kind !== 'service' || !file.typeName.startsWith('consent.v1.')) continue;
    for (const m of file.methods) if (!NOT_SERVED_YET.has(`${file.typeName}/${m.name}`)) paths.push(`/${file.typeName}/${m.name}`);
  }
  return paths.sort();
}
