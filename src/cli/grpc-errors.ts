import { Metadata, ServiceError, status } from '@grpc/grpc-js';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { BadRequest, ErrorInfo, RetryInfo } from '../gen/google/rpc/error_details';
import { Status } from '../gen/google/rpc/status';
import { CliError, EXIT } from './exit-codes';

/** One google.rpc.PreconditionFailure violation (decoded by hand: not among the vendored protos). */
export interface PreconditionViolation {
  type: string;
  subject: string;
  description: string;
}

/**
 * google.rpc.PreconditionFailure { repeated Violation violations = 1; }
 * Violation { string type = 1; string subject = 2; string description = 3; }
 */
export function decodePreconditionFailure(bytes: Uint8Array): PreconditionViolation[] {
  const reader = new BinaryReader(bytes);
  const violations: PreconditionViolation[] = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag !== 10) {
      reader.skip(tag & 7);
      continue;
    }
    const end = reader.uint32() + reader.pos;
    const v: PreconditionViolation = { type: '', subject: '', description: '' };
    while (reader.pos < end) {
      const inner = reader.uint32();
      if (inner === 10) v.type = reader.string();
      else if (inner === 18) v.subject = reader.string();
      else if (inner === 26) v.description = reader.string();
      else reader.skip(inner & 7);
    }
    violations.push(v);
  }
  return violations;
}

/**
 * The AIP-193 details of a failed call (the grpc-status-details-bin trailer) as readable lines:
 * ErrorInfo's reason and metadata, BadRequest's field violations, PreconditionFailure's
 * violations and RetryInfo's delay. Details of other types are named, not dropped.
 */
export function describeStatusDetails(metadata: Metadata | undefined): string[] {
  const bin = metadata?.get('grpc-status-details-bin')[0];
  if (!(bin instanceof Buffer)) return [];
  let details: Status['details'];
  try {
    details = Status.decode(bin).details;
  } catch {
    return ['(the error details trailer could not be decoded)'];
  }
  const lines: string[] = [];
  for (const detail of details) {
    const type = detail.typeUrl.slice(detail.typeUrl.lastIndexOf('/') + 1);
    try {
      switch (type) {
        case 'google.rpc.ErrorInfo': {
          const info = ErrorInfo.decode(detail.value);
          lines.push(`reason: ${info.reason}${info.domain ? ` (${info.domain})` : ''}`);
          for (const key of Object.keys(info.metadata).sort()) lines.push(`  ${key}: ${info.metadata[key]}`);
          break;
        }
        case 'google.rpc.BadRequest':
          for (const v of BadRequest.decode(detail.value).fieldViolations) {
            lines.push(`field ${v.field || '(request)'}: ${v.description}${v.reason ? ` [${v.reason}]` : ''}`);
          }
          break;
        case 'google.rpc.PreconditionFailure':
          for (const v of decodePreconditionFailure(detail.value)) {
            lines.push(`precondition failed: ${[v.type, v.subject].filter(Boolean).join(' ')}${v.description ? `: ${v.description}` : ''}`);
          }
          break;
        case 'google.rpc.RetryInfo': {
          const delay = RetryInfo.decode(detail.value).retryDelay;
          const seconds = (delay?.seconds ?? 0) + (delay?.nanos ?? 0) / 1e9;
          lines.push(`retry after: ${Number(seconds.toFixed(3))} s`);
          break;
        }
        default:
          lines.push(`detail: ${type} (not decoded)`);
      }
    } catch {
      lines.push(`detail: ${type} (malformed)`);
    }
  }
  return lines;
}

/** Whether a status means "not now": the service is not reachable or not ready; retrying later can help. */
export function isUnavailable(code: status): boolean {
  return code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED;
}

/**
 * A failed gRPC call as consentctl reports it: exit 3 when the service is unavailable (not
 * reachable, UNAVAILABLE, DEADLINE_EXCEEDED), otherwise exit 1; the status message and the
 * decoded details either way.
 */
export function grpcFailure(err: ServiceError, address: string): CliError {
  const details = describeStatusDetails(err.metadata);
  const name = status[err.code] ?? `code ${err.code}`;
  if (err.code === status.DEADLINE_EXCEEDED) {
    return new CliError(`the service at ${address} did not answer in time (DEADLINE_EXCEEDED): ${err.details}`, EXIT.UNAVAILABLE, details);
  }
  if (err.code === status.UNAVAILABLE) {
    // No details trailer: grpc-js's own status, the connection itself failed.
    if (details.length === 0) {
      const cause = err.details.replace(/[\s.]*Resolution note:\s*$/, '');
      return new CliError(`cannot reach the service at ${address} (UNAVAILABLE): ${cause}; is it running, and is --address right?`, EXIT.UNAVAILABLE);
    }
    return new CliError(`the service is unavailable (UNAVAILABLE): ${err.details}`, EXIT.UNAVAILABLE, details);
  }
  return new CliError(`refused: ${name}: ${err.details}`, EXIT.FAILED, details);
}

/** Whether `err` is a grpc-js call error (it carries a numeric status code). */
export function isServiceError(err: unknown): err is ServiceError {
  return typeof (err as ServiceError)?.code === 'number' && 'details' in (err as object);
}
