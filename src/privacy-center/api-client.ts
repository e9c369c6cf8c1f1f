import { readFileSync, statSync } from 'node:fs';
import { CallOptions, ChannelCredentials, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { PurposeServiceClient } from '../gen/consent/v1/purpose';
import { SelfServiceServiceClient } from '../gen/consent/v1/self_service';
import { TenantServiceClient } from '../gen/consent/v1/tenant';
import { ErrorInfo } from '../gen/google/rpc/error_details';
import { Status } from '../gen/google/rpc/status';

/** Where the privacy center reaches the gRPC API, how it checks the API's certificate, and its credential. */
export interface ApiEndpoint {
  address: string;
  /** PEM CA certificates: the API serves TLS. Unset: plaintext (loopback). */
  ca?: Buffer;
  serverName?: string;
  /** File with the privacy center's own bearer token (role self_service); unset: no credential (development). */
  tokenFile?: string;
}

/** A refused or failed API call: status name, AIP-193 reason, message (the API puts no personal data in them). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly statusName: string,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type Unary<Req, Res> = (req: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, res: Res) => void) => unknown;

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
    return new Promise((resolve, reject) => {
      method.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(toApiError(err)) : resolve(res)));
    });
  }

  close(): void {
    this.selfService.close();
  }
}

/** The status name and AIP-193 reason of a failed call. */
export function toApiError(err: ServiceError): ApiError {
  const statusName = (status as unknown as Record<number, string>)[err.code] ?? `CODE_${err.code}`;
  let reason = '';
  let message = err.details || statusName;
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (bin instanceof Buffer) {
    try {
      const decoded = Status.decode(bin);
      if (decoded.message) message = decoded.message;
      const info = decoded.details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
      if (info) reason = ErrorInfo.decode(info.value).reason;
    } catch {
      // The status line alone then.
    }
  }
  return new ApiError(err.code, statusName, reason, message);
}

/** The HTTP status a page answers with when the API refused or failed its call. */
export function httpStatusOf(error: ApiError): number {
  switch (error.code) {
    case status.INVALID_ARGUMENT:
    case status.OUT_OF_RANGE:
      return 400;
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      // The privacy center's own credential was refused: its operator's problem, not the person's.
      return 502;
    case status.NOT_FOUND:
      return 404;
    case status.ALREADY_EXISTS:
    case status.FAILED_PRECONDITION:
    case status.ABORTED:
      return 409;
    case status.RESOURCE_EXHAUSTED:
      return 429;
    case status.UNAVAILABLE:
      return 503;
    case status.DEADLINE_EXCEEDED:
      return 504;
    default:
      return 502;
  }
}
