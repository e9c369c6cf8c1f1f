import { FieldViolation } from '../shared/errors';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Checks a write's idempotency key (AIP-155). The same rule for every method: 1-128 characters
 * of A-Z a-z 0-9 . _ : - (a UUID fits). `required` for writes whose retries must not duplicate.
 */
export function checkRequestId(requestId: string, required: boolean, violations: FieldViolation[]): void {
  if (!requestId && !required) return;
  if (!REQUEST_ID.test(requestId)) {
    violations.push({
      field: 'request_id',
      reason: requestId ? 'INVALID_REQUEST_ID' : 'REQUIRED',
      description: '1-128 characters of A-Z a-z 0-9 . _ : - (a UUID is typical)',
    });
  }
}
