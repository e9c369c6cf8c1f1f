import { CallOptions, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { BadRequest, ErrorInfo } from '../gen/google/rpc/error_details';
import { Status } from '../gen/google/rpc/status';

/**
 * What the web front ends (the console, the privacy center) make of a refused or failed gRPC
 * call: one mechanism for both. Each front end keeps its own table from status code to HTTP
 * status, because they answer different people: the console's 401/403 are the signed-in person's,
 * the privacy center's are its own credential's (an operator's problem, shown as 502).
 */

/** One INVALID_ARGUMENT field violation (google.rpc.BadRequest), so a form can show it next to its field. */
export interface FieldViolationView {
  field: string;
  description: string;
}

/** A refused or failed API call: status name, AIP-193 reason, message (the API puts no personal data in them). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly statusName: string,
    readonly reason: string,
    message: string,
    /** INVALID_ARGUMENT's field violations (google.rpc.BadRequest); empty otherwise. */
    readonly violations: ReadonlyArray<FieldViolationView> = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The name of a gRPC status code ("NOT_FOUND"), or CODE_{n} for a number grpc-js does not name. */
export function statusNameOf(code: number): string {
  return (status as unknown as Record<number, string>)[code] ?? `CODE_${code}`;
}

/**
 * The status name, AIP-193 reason (google.rpc.ErrorInfo) and field violations (google.rpc.BadRequest)
 * of a failed call, read from its grpc-status-details-bin trailer; the status line alone when the
 * trailer is missing or unreadable.
 */
export function toApiError(err: ServiceError): ApiError {
  const statusName = statusNameOf(err.code);
  let reason = '';
  let message = err.details || statusName;
  let violations: FieldViolationView[] = [];
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (bin instanceof Buffer) {
    try {
      const decoded = Status.decode(bin);
      if (decoded.message) message = decoded.message;
      const info = decoded.details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
      if (info) reason = ErrorInfo.decode(info.value).reason;
      const bad = decoded.details.find((d) => d.typeUrl.endsWith('google.rpc.BadRequest'));
      if (bad) violations = BadRequest.decode(bad.value).fieldViolations.map((v) => ({ field: v.field, description: v.description }));
    } catch {
      // The status line alone then.
    }
  }
  return new ApiError(err.code, statusName, reason, message, violations);
}

/** A front end's answer per gRPC status code; a code it does not list is a failure of the API behind it. */
export type HttpStatusTable = Readonly<Partial<Record<status, number>>>;

/**
 * The statuses both front ends answer alike: the caller's input (400), what is missing or in the
 * way (404, 409), limits (429) and the API's own trouble (503, 504). The credential's refusals
 * (UNAUTHENTICATED, PERMISSION_DENIED) are each front end's own: the signed-in person's in the
 * console, the privacy center's own token there.
 */
export const COMMON_HTTP_STATUS: HttpStatusTable = {
  [status.INVALID_ARGUMENT]: 400,
  [status.OUT_OF_RANGE]: 400,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.FAILED_PRECONDITION]: 409,
  [status.ABORTED]: 409,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.UNAVAILABLE]: 503,
  [status.DEADLINE_EXCEEDED]: 504,
};

/** What a page answers when the API failed in a way its table does not name: the gateway's fault. */
export const UNLISTED_STATUS_HTTP = 502;

/** The HTTP status `table` gives the refused or failed call `error`. */
export function httpStatusIn(table: HttpStatusTable, error: { code: number }): number {
  return table[error.code as status] ?? UNLISTED_STATUS_HTTP;
}

/** The ts-proto grpc-js unary method shape (its last overload). */
export type Unary<Req, Res> = (req: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, res: Res) => void) => unknown;

/** One unary call of `client`'s `method` with `metadata` and a deadline `timeoutMs` from now; rejects with ApiError. */
export function unaryCall<Req, Res>(client: object, method: Unary<Req, Res>, request: Req, metadata: Metadata, timeoutMs: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(toApiError(err)) : resolve(res)));
  });
}
