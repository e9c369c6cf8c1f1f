import { readFileSync } from 'node:fs';
import { ChannelCredentials, credentials, Metadata } from '@grpc/grpc-js';
import { AuditServiceClient } from '../gen/consent/v1/audit';
import { ConsentServiceClient } from '../gen/consent/v1/consent';
import { KeyServiceClient } from '../gen/consent/v1/key';
import { PurposeServiceClient } from '../gen/consent/v1/purpose';
import { SubjectRightsServiceClient } from '../gen/consent/v1/subject_rights';
import { TenantServiceClient } from '../gen/consent/v1/tenant';
import { Unary, unaryCall } from '../web/grpc-errors';
import type { Credential } from './principal';

/** Where the console reaches the gRPC API, and how it checks the API's certificate. */
export interface ApiEndpoint {
  address: string;
  /** PEM CA certificates: the API serves TLS. Unset: plaintext (loopback). */
  ca?: Buffer;
  serverName?: string;
}

/** A refused or failed API call as the console shows it (the mechanism shared with the privacy center). */
export { ApiError, toApiError } from '../web/grpc-errors';

/**
 * The generated gRPC clients of the services the console uses, over one channel each, and a
 * promise-returning `call` that attaches the signed-in person's credential to that one call.
 * The console never calls with a credential of its own.
 */
export class ApiClient {
  readonly rights: SubjectRightsServiceClient;
  readonly tenants: TenantServiceClient;
  readonly consent: ConsentServiceClient;
  readonly audit: AuditServiceClient;
  readonly keys: KeyServiceClient;
  readonly purposes: PurposeServiceClient;

  constructor(endpoint: ApiEndpoint) {
    const creds: ChannelCredentials = endpoint.ca ? credentials.createSsl(endpoint.ca) : credentials.createInsecure();
    const options = endpoint.serverName ? { 'grpc.ssl_target_name_override': endpoint.serverName, 'grpc.default_authority': endpoint.serverName } : {};
    this.rights = new SubjectRightsServiceClient(endpoint.address, creds, options);
    this.tenants = new TenantServiceClient(endpoint.address, creds, options);
    // The auditor pages' services, over the rights client's channel (closed with it).
    const shared = { ...options, channelOverride: this.rights.getChannel() };
    this.consent = new ConsentServiceClient(endpoint.address, creds, shared);
    this.audit = new AuditServiceClient(endpoint.address, creds, shared);
    this.keys = new KeyServiceClient(endpoint.address, creds, shared);
    this.purposes = new PurposeServiceClient(endpoint.address, creds, shared);
  }

  static fromFiles(address: string, caFile?: string, serverName?: string): ApiClient {
    return new ApiClient({ address, ca: caFile ? readFileSync(caFile) : undefined, serverName });
  }

  /** The call metadata that makes a call `credential`'s holder's: the one place a credential is attached. */
  metadataFor(credential: Credential): Metadata {
    const metadata = new Metadata();
    if (credential.bearer) metadata.set('authorization', `Bearer ${credential.bearer}`);
    return metadata;
  }

  /** One unary call as `credential`'s holder, with a deadline; rejects with ApiError. */
  call<Req, Res>(client: object, method: Unary<Req, Res>, request: Req, credential: Credential, timeoutMs = 10_000): Promise<Res> {
    return unaryCall(client, method, request, this.metadataFor(credential), timeoutMs);
  }

  close(): void {
    this.rights.close();
    this.tenants.close();
  }
}
