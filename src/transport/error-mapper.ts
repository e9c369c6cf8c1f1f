import { Metadata, status } from '@grpc/grpc-js';
import { DomainError, ErrorKind } from '../shared/errors';
import { Any } from '../gen/google/protobuf/any';
import { BadRequest, ErrorInfo, PreconditionFailure, RetryInfo } from '../gen/google/rpc/error_details';
import { Status } from '../gen/google/rpc/status';

/** google.rpc.ErrorInfo.domain of every error this service sends. */
export const ERROR_DOMAIN = 'consent-ledger';

const CODES: Record<ErrorKind, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  UNAVAILABLE: status.UNAVAILABLE,
  ABORTED: status.ABORTED,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  DATA_LOSS: status.DATA_LOSS,
};

/** The gRPC error a call ends with: code, message and the AIP-193 details trailer. */
export interface GrpcError {
  code: status;
  details: string;
  metadata: Metadata;
  /** ErrorInfo.reason, for the access log. */
  reason: string;
}

/**
 * The one place that turns errors into gRPC statuses. Domain errors keep their code, reason and
 * field violations; anything else is INTERNAL with a generic message (the caller logs the cause).
 */
export function toGrpcError(err: unknown): GrpcError {
  const domain = err instanceof DomainError ? err : null;
  const statusMessage = domain ? toStatus(domain) : internalStatus();
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(Status.encode(statusMessage).finish()));
  return {
    code: statusMessage.code,
    details: statusMessage.message,
    metadata,
    reason: domain?.reason ?? 'INTERNAL',
  };
}

/**
 * How much of an error is sent back. Messages and field violations may echo parts of the request
 * (a map key in a field path, an unknown update-mask path), and a request may be megabytes; a
 * status travels in HTTP/2 trailers, and grpc-js stalls the whole connection (every call on it)
 * when trailers pass ~64 kB. So each text is clipped and the violations stop at a byte budget.
 */
export const ERROR_LIMITS = { messageChars: 512, fieldChars: 200, descriptionChars: 400, violationBytes: 8 * 1024 } as const;

/** `text` cut to `max` UTF-16 units with an ellipsis, never splitting a surrogate pair. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

function boundedViolations(violations: DomainError['violations']): DomainError['violations'] {
  const kept: DomainError['violations'] = [];
  let bytes = 0;
  for (const v of violations) {
    const clipped = { field: clip(v.field, ERROR_LIMITS.fieldChars), reason: clip(v.reason, ERROR_LIMITS.fieldChars), description: clip(v.description, ERROR_LIMITS.descriptionChars) };
    bytes += Buffer.byteLength(clipped.field) + Buffer.byteLength(clipped.reason) + Buffer.byteLength(clipped.description);
    if (kept.length > 0 && bytes > ERROR_LIMITS.violationBytes) break;
    kept.push(clipped);
  }
  return kept;
}

/** Metadata keys that name the resource a failed precondition is about, most specific first. */
const PRECONDITION_SUBJECT_KEYS = ['hold', 'request', 'subject', 'resource', 'tenant', 'request_id'];

/** The google.rpc.Status of a domain error; also used for per-item errors of batch checks. */
export function toStatus(err: DomainError): Status {
  const metadata = Object.fromEntries(Object.entries(err.metadata).map(([k, v]) => [clip(k, ERROR_LIMITS.fieldChars), clip(v, ERROR_LIMITS.fieldChars)]));
  const details: Any[] = [
    pack('google.rpc.ErrorInfo', ErrorInfo.encode({ reason: err.reason, domain: ERROR_DOMAIN, metadata }).finish()),
  ];
  if (err.violations.length > 0) {
    details.push(pack('google.rpc.BadRequest', BadRequest.encode({ fieldViolations: boundedViolations(err.violations) }).finish()));
  }
  if (err.kind === 'FAILED_PRECONDITION') {
    // AIP-193: which precondition failed, for what: the reason, and the resource the metadata names.
    const subject = PRECONDITION_SUBJECT_KEYS.map((k) => metadata[k]).find((v) => v !== undefined) ?? '';
    details.push(
      pack('google.rpc.PreconditionFailure', PreconditionFailure.encode({ violations: [{ type: err.reason, subject, description: clip(err.message, ERROR_LIMITS.descriptionChars) }] }).finish()),
    );
  }
  if (err.retryDelayMs !== undefined) {
    const ms = Math.max(0, Math.ceil(err.retryDelayMs));
    details.push(pack('google.rpc.RetryInfo', RetryInfo.encode({ retryDelay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 } }).finish()));
  }
  return { code: CODES[err.kind], message: clip(err.message, ERROR_LIMITS.messageChars), details };
}

function internalStatus(): Status {
  return {
    code: status.INTERNAL,
    message: 'internal error',
    details: [pack('google.rpc.ErrorInfo', ErrorInfo.encode({ reason: 'INTERNAL', domain: ERROR_DOMAIN, metadata: {} }).finish())],
  };
}

function pack(typeName: string, value: Uint8Array): Any {
  return { typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(value) };
}
