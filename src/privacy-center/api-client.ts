import { readFileSync, statSync } from 'node:fs';
import { ChannelCredentials, credentials, Metadata, status } from '@grpc/grpc-js';
import { PurposeServiceClient } from '../gen/consent/v1/purpose';
import { SelfServiceServiceClient } from '../gen/consent/v1/self_service';
import { TenantServiceClient } from '../gen/consent/v1/tenant';
import { ApiError, COMMON_HTTP_STATUS, HttpStatusTable, httpStatusIn, toApiError, Unary, unaryCall } from '../web/grpc-errors';

/** Where the privacy center reaches the gRPC API, how it checks the API's certificate, and its credential. */
export interface ApiEndpoint {
  address: string;
  /** PEM CA certificates: the API serves TLS. Unset: plaintext (loopback). */
  ca?: Buffer;
  serverName?: string;
  /** File with the privacy center's own bearer token (role self_service); unset: no credential (development). */
  tokenFile?: string;
}

/** A refused or failed API call as the privacy center handles it (the mechanism shared with the console). */
export { ApiError, toApiError };

/**
 * The generated clients the privacy center uses, over one channel, and `call`, which attaches the
 * privacy center's OWN credential (unlike the console, which forwards each person's): the people
 * on its pages are anonymous; what they may do is bound by the signed link they hold, which the
 * API verifies. The token file is read again when it changes, so a renewed token needs no restart.
 */
export class ApiClient {
  readonly selfService: SelfServiceServiceClient;
  readonly tenants: TenantServiceClient;
  readonly purposes: PurposeServiceClient;
  private token: { mtimeMs: number; value: string } | undefined;

  constructor(private readonly endpoint: ApiEndpoint) {
    const creds: ChannelCredentials = endpoint.ca ? credentials.createSsl(endpoint.ca) : credentials.createInsecure();
    const options = endpoint.serverName ? { 'grpc.ssl_target_name_override': endpoint.serverName, 'grpc.default_authority': endpoint.serverName } : {};
    this.selfService = new SelfServiceServiceClient(endpoint.address, creds, options);
    const shared = { ...options, channelOverride: this.selfService.getChannel() };
    this.tenants = new TenantServiceClient(endpoint.address, creds, shared);
    this.purposes = new PurposeServiceClient(endpoint.address, creds, shared);
  }

  static fromFiles(address: string, caFile?: string, serverName?: string, tokenFile?: string): ApiClient {
    const client = new ApiClient({ address, ca: caFile ? readFileSync(caFile) : undefined, serverName, tokenFile });
    client.bearer(); // an unreadable or empty token file stops the start, not the first person's page
    return client;
  }

  /** The current bearer token from the token file (re-read when its modification time changes). */
  private bearer(): string | undefined {
    const file = this.endpoint.tokenFile;
    if (!file) return undefined;
    const { mtimeMs } = statSync(file);
    if (this.token?.mtimeMs !== mtimeMs) {
      const value = readFileSync(file, 'utf8').trim();
      if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value)) throw new Error('PRIVACY_CENTER_API_TOKEN_FILE does not hold a JWT');
      this.token = { mtimeMs, value };
    }
    return this.token.value;
  }

  /** One unary call with the privacy center's credential and a deadline; rejects with ApiError. */
  call<Req, Res>(client: object, method: Unary<Req, Res>, request: Req, timeoutMs = 10_000): Promise<Res> {
    const metadata = new Metadata();
    const token = this.bearer();
    if (token) metadata.set('authorization', `Bearer ${token}`);
    return unaryCall(client, method, request, metadata, timeoutMs);
  }

  close(): void {
    this.selfService.close();
  }
}

/**
 * The privacy center's HTTP status per gRPC status. Unlike the console's, a refused credential is
 * not the visitor's: UNAUTHENTICATED and PERMISSION_DENIED answer the privacy center's OWN token,
 * so they are its operator's problem (502, as anything not listed).
 */
export const PRIVACY_CENTER_HTTP_STATUS: HttpStatusTable = {
  ...COMMON_HTTP_STATUS,
  [status.UNAUTHENTICATED]: 502,
  [status.PERMISSION_DENIED]: 502,
};

/** The HTTP status a page answers with when the API refused or failed its call. */
export function httpStatusOf(error: ApiError): number {
  return httpStatusIn(PRIVACY_CENTER_HTTP_STATUS, error);
}
