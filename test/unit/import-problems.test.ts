import { expect } from 'chai';
import { status } from '@grpc/grpc-js';
import { problemsOf } from '../../src/cli/import-consents';
import { toStatus } from '../../src/transport/error-mapper';
import { invalidArgument } from '../../src/shared/errors';

/**
 * consentctl's reading of a rejected row (src/cli/import-consents.ts, problemsOf): the full status
 * (BadRequest violations), and the short forms an ImportConsents answer with many rejections uses
 * for its later rows (src/transport/import-rejections.ts): "{REASON} {field}", or only the code.
 */
describe('consentctl: what a rejected row says', () => {
  it('a full status: one problem per field violation, the field as a column', () => {
    const full = toStatus(invalidArgument([{ field: 'subject_identifier.phone_number', reason: 'INVALID_PHONE_NUMBER', description: 'not a phone number' }]));
    const [p] = problemsOf(full);
    expect([p.reason, p.message]).to.deep.equal(['INVALID_PHONE_NUMBER', 'not a phone number']);
    expect(p.field).to.not.equal('');
  });

  it('a row listed without details: reason and field from "{REASON} {field}", the same column as from the full status', () => {
    const full = problemsOf(toStatus(invalidArgument([{ field: 'subject_identifier.phone_number', reason: 'INVALID_PHONE_NUMBER', description: 'x' }])))[0];
    const [p] = problemsOf({ code: status.INVALID_ARGUMENT, message: 'INVALID_PHONE_NUMBER subject_identifier.phone_number', details: [] });
    expect([p.reason, p.field]).to.deep.equal(['INVALID_PHONE_NUMBER', full.field]);
    expect(p.message).to.include('without details');
    const [reasonOnly] = problemsOf({ code: status.INVALID_ARGUMENT, message: 'REQUIRED', details: [] });
    expect([reasonOnly.reason, reasonOnly.field]).to.deep.equal(['REQUIRED', '']);
  });

  it("only the code: the code's name, and that details were left out", () => {
    const [p] = problemsOf({ code: status.NOT_FOUND, message: '', details: [] });
    expect([p.reason, p.field]).to.deep.equal(['NOT_FOUND', '']);
    expect(p.message).to.include('without details');
  });
});
