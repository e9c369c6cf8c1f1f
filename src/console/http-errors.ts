import { status } from '@grpc/grpc-js';
import { HttpStatusTable, httpStatusIn } from '../web/grpc-errors';
import type { ApiError } from './api-client';

/**
 * The console's HTTP status per gRPC status: a refusal of the signed-in person's own credential
 * is theirs (401, 403); anything not listed is the API's failure (502).
 */
export const CONSOLE_HTTP_STATUS: HttpStatusTable = {
  [status.INVALID_ARGUMENT]: 400,
  [status.OUT_OF_RANGE]: 400,
  [status.UNAUTHENTICATED]: 401,
  [status.PERMISSION_DENIED]: 403,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.FAILED_PRECONDITION]: 409,
  [status.ABORTED]: 409,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.UNAVAILABLE]: 503,
  [status.DEADLINE_EXCEEDED]: 504,
};

/** The HTTP status a page answers with when the API refused or failed its call. */
export function httpStatusOf(error: ApiError): number {
  return httpStatusIn(CONSOLE_HTTP_STATUS, error);
}
