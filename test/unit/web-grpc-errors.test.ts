import { Metadata, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ApiError as ConsoleApiError } from '../../src/console/api-client';
import { httpStatusOf as consoleHttpStatus } from '../../src/console/http-errors';
import { ApiError as CenterApiError, httpStatusOf as centerHttpStatus, PRIVACY_CENTER_HTTP_STATUS } from '../../src/privacy-center/api-client';
import { DomainError, failedPrecondition, invalidArgument } from '../../src/shared/errors';
import { toGrpcError } from '../../src/transport/error-mapper';
import { ApiError, httpStatusIn, statusNameOf, toApiError, UNLISTED_STATUS_HTTP } from '../../src/web/grpc-errors';

/** The ServiceError a grpc-js client sees for what the server's error mapper sends. */
function received(err: unknown): ServiceError {
  const sent = toGrpcError(err);
  return Object.assign(new Error(`${sent.code} ${statusNameOf(sent.code)}: ${sent.details}`), { code: sent.code, details: sent.details, metadata: sent.metadata });
}

/** A ServiceError with only a status line, and the trailer `bin` when given. */
function bare(code: status, details: string, bin?: Buffer): ServiceError {
  const metadata = new Metadata();
  if (bin) metadata.set('grpc-status-details-bin', bin);
  return Object.assign(new Error(details), { code, details, metadata });
}

describe('web front ends: a failed gRPC call as ApiError (src/web/grpc-errors.ts)', () => {
  it('reads status name, reason and message from the AIP-193 trailer the server sends', () => {
    const e = toApiError(received(failedPrecondition('LEGAL_HOLD', 'an open legal hold blocks this erasure', { hold: 'h1' })));
    expect(e).to.be.instanceOf(ApiError);
    expect([e.code, e.statusName, e.reason, e.message, e.violations]).to.deep.equal([status.FAILED_PRECONDITION, 'FAILED_PRECONDITION', 'LEGAL_HOLD', 'an open legal hold blocks this erasure', []]);
  });

  it("INVALID_ARGUMENT's field violations (google.rpc.BadRequest) come along, field and description each", () => {
    const e = toApiError(
      received(
        invalidArgument([
          { field: 'tenant_id', reason: 'PATTERN', description: 'lower-case letters, digits and dashes' },
          { field: 'display_name', reason: 'REQUIRED', description: 'required' },
        ]),
      ),
    );
    expect(e.statusName).to.equal('INVALID_ARGUMENT');
    expect(e.violations).to.deep.equal([
      { field: 'tenant_id', description: 'lower-case letters, digits and dashes' },
      { field: 'display_name', description: 'required' },
    ]);
  });

  it('without a trailer: the status line alone (no reason); an empty line gives the status name', () => {
    expect(toApiError(bare(status.UNAVAILABLE, 'No connection established'))).to.include({ statusName: 'UNAVAILABLE', reason: '', message: 'No connection established' });
    expect(toApiError(bare(status.DEADLINE_EXCEEDED, ''))).to.include({ statusName: 'DEADLINE_EXCEEDED', message: 'DEADLINE_EXCEEDED' });
    expect(toApiError(bare(99 as status, '')).statusName, 'a code grpc-js does not name').to.equal('CODE_99');
  });

  it('an unreadable trailer does not throw: the status line alone', () => {
    const e = toApiError(bare(status.INTERNAL, 'boom', Buffer.from([0xff, 0xff, 0xff, 0x0f])));
    expect([e.statusName, e.reason, e.message, e.violations]).to.deep.equal(['INTERNAL', '', 'boom', []]);
  });

  it('an error that is not a DomainError reaches the front ends as INTERNAL without its cause', () => {
    const e = toApiError(received(new Error('secret +4915112345678')));
    expect(e.statusName).to.equal('INTERNAL');
    expect(e.message).not.to.include('4915112345678');
  });

  it('both front ends use the one ApiError class (an instanceof check in either catches the other\'s)', () => {
    expect(ConsoleApiError).to.equal(ApiError);
    expect(CenterApiError).to.equal(ApiError);
  });

  it('each front end keeps its own status table; a code a table does not list answers 502', () => {
    const of = (code: status) => new ApiError(code, statusNameOf(code), '', '');
    // The console's 401/403 are the signed-in person's; the privacy center's are its own credential's.
    expect([consoleHttpStatus(of(status.UNAUTHENTICATED)), consoleHttpStatus(of(status.PERMISSION_DENIED))]).to.deep.equal([401, 403]);
    expect([centerHttpStatus(of(status.UNAUTHENTICATED)), centerHttpStatus(of(status.PERMISSION_DENIED))]).to.deep.equal([502, 502]);
    const same: Array<[status, number]> = [
      [status.INVALID_ARGUMENT, 400],
      [status.OUT_OF_RANGE, 400],
      [status.NOT_FOUND, 404],
      [status.ALREADY_EXISTS, 409],
      [status.FAILED_PRECONDITION, 409],
      [status.ABORTED, 409],
      [status.RESOURCE_EXHAUSTED, 429],
      [status.UNAVAILABLE, 503],
      [status.DEADLINE_EXCEEDED, 504],
      [status.INTERNAL, 502],
      [status.UNKNOWN, 502],
      [status.DATA_LOSS, 502],
      [status.UNIMPLEMENTED, 502],
    ];
    for (const [code, http] of same) {
      expect(consoleHttpStatus(of(code)), `console ${statusNameOf(code)}`).to.equal(http);
      expect(centerHttpStatus(of(code)), `privacy center ${statusNameOf(code)}`).to.equal(http);
    }
    expect(httpStatusIn({}, of(status.NOT_FOUND))).to.equal(UNLISTED_STATUS_HTTP);
    expect(Object.keys(PRIVACY_CENTER_HTTP_STATUS)).to.have.length(11);
  });

  it('a DomainError of every kind the server sends keeps its code through the round trip', () => {
    for (const kind of ['NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'UNAUTHENTICATED', 'UNAVAILABLE', 'ABORTED', 'RESOURCE_EXHAUSTED'] as const) {
      const e = toApiError(received(new DomainError(kind, `R_${kind}`, 'said')));
      expect([e.statusName, e.reason, e.message]).to.deep.equal([kind, `R_${kind}`, 'said']);
    }
  });
});
