import { status } from '@grpc/grpc-js';
import { COMMON_HTTP_STATUS, HttpStatusTable, httpStatusIn } from '../web/grpc-errors';
import type { ApiError } from './api-client';

/**
 * The console's HTTP status per gRPC status: a refusal of the signed-in person's own credential
 * is theirs (401, 403); anything not listed is the API's failure (502).
 */
export const CONSOLE_HTTP_STATUS: HttpStatusTable = {
  ...COMMON_HTTP_STATUS,
  [status.UNAUTHENTICATED]: 401,
  [status.PERMISSION_DENIED]: 403,
};

/** The HTTP status a page answers with when the API refused or failed its call. */
export function httpStatusOf(error: ApiError): number {
  return httpStatusIn(CONSOLE_HTTP_STATUS, error);
}
