/**
 * Typed errors the domain raises. The transport maps each kind to one gRPC status
 * (src/transport/error-mapper.ts). Messages and metadata never contain personal data:
 * they name fields and resources by their opaque ids only.
 */
export type ErrorKind =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'UNAVAILABLE'
  | 'ABORTED'
  | 'DEADLINE_EXCEEDED'
  | 'RESOURCE_EXHAUSTED'
  | 'DATA_LOSS';

export interface FieldViolation {
  /** Path of the field in the request, e.g. "query.subject_identifier.phone_number". */
  field: string;
  description: string;
  /** UPPER_SNAKE reason, e.g. "INVALID_PHONE_NUMBER". */
  reason: string;
}

export class DomainError extends Error {
  constructor(
    readonly kind: ErrorKind,
    /** UPPER_SNAKE machine-readable reason (google.rpc.ErrorInfo.reason). */
    readonly reason: string,
    message: string,
    readonly metadata: Record<string, string> = {},
    readonly violations: FieldViolation[] = [],
    /** For RESOURCE_EXHAUSTED: when the caller may try again (google.rpc.RetryInfo). */
    readonly retryDelayMs?: number,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

/** The caller could not be authenticated; the message says what was missing, never the credential. */
export function unauthenticated(reason: string, message: string): DomainError {
  return new DomainError('UNAUTHENTICATED', reason, message);
}

/**
 * One or more invalid request fields; nothing was changed. ErrorInfo.reason is the first
 * violation's reason (each violation keeps its own in BadRequest), and the status message lists
 * every field with its description, so a reader of the message alone knows what to fix.
 */
export function invalidArgument(violations: FieldViolation[]): DomainError {
  const described = violations.map((v) => (v.field ? `${v.field}: ${v.description}` : v.description)).join('; ');
  return new DomainError('INVALID_ARGUMENT', violations[0]?.reason ?? 'INVALID_ARGUMENT', `invalid request: ${described}`, {}, violations);
}

export function notFound(resource: string, name: string): DomainError {
  return new DomainError('NOT_FOUND', `${resource}_NOT_FOUND`, `${resource.toLowerCase()} ${name} not found`, {
    resource: name,
  });
}

export function failedPrecondition(reason: string, message: string, metadata: Record<string, string> = {}): DomainError {
  return new DomainError('FAILED_PRECONDITION', reason, message, metadata);
}

export function alreadyExists(resource: string, name: string): DomainError {
  return new DomainError('ALREADY_EXISTS', `${resource}_ALREADY_EXISTS`, `${resource.toLowerCase()} ${name} already exists`, {
    resource: name,
  });
}

/**
 * Collects field violations so a handler reports every bad field at once.
 * `check` records a violation when the condition is false.
 */
export class Violations {
  private readonly list: FieldViolation[] = [];

  add(field: string, reason: string, description: string): this {
    this.list.push({ field, reason, description });
    return this;
  }

  check(ok: boolean, field: string, reason: string, description: string): boolean {
    if (!ok) this.add(field, reason, description);
    return ok;
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  /** Throws INVALID_ARGUMENT if any violation was recorded. */
  throwIfAny(): void {
    if (this.list.length > 0) throw invalidArgument([...this.list]);
  }
}
