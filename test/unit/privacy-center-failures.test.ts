import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { failureOf } from '../../src/privacy-center/server';
import { STRINGS } from '../../src/privacy-center/i18n';

describe('privacy center: the words for a refused confirmation', () => {
  it('a link whose address changed since the sign-up says so in every language, not "invalid"', () => {
    for (const s of Object.values(STRINGS)) {
      const [code, words] = failureOf({ code: status.FAILED_PRECONDITION, reason: 'SIGNUP_SUPERSEDED', message: 'x' } as never, s);
      expect(code).to.equal(410);
      expect(words).to.equal(s.failSuperseded);
      expect(words).not.to.equal(s.failInvalid);
    }
  });

  it('a link whose identifier passed to someone else does not say the data was erased', () => {
    for (const s of Object.values(STRINGS)) {
      const [code, words] = failureOf({ code: status.FAILED_PRECONDITION, reason: 'NO_IDENTIFIER', message: 'x' } as never, s);
      expect(code).to.equal(410);
      expect(words).to.equal(s.failNoIdentifier);
      expect(words).not.to.equal(s.failErased);
    }
  });
});
