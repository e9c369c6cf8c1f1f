import { expect } from 'chai';
import { DomainError } from '../../src/shared/errors';
import { parseRoles } from '../../src/transport/auth/token-verifier';

describe('role names in credentials', function () {
  it('match exactly, in lower case', function () {
    expect(parseRoles(['sender', 'dpo', 'auditor'])).to.deep.equal(['SENDER', 'DPO', 'AUDITOR']);
  });

  for (const wrong of ['DPO', 'Dpo', ' dpo', 'dpo ', 'admin\u0000', 'ADMIN']) {
    it(`refuse ${JSON.stringify(wrong)} as an unknown role`, function () {
      let caught: unknown;
      try {
        parseRoles(['sender', wrong]);
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(DomainError);
      expect((caught as DomainError).kind).to.equal('UNAUTHENTICATED');
      expect((caught as DomainError).message).to.include('match exactly, in lower case');
    });
  }

  it('refuse an empty list and non-strings', function () {
    expect(() => parseRoles([])).to.throw(DomainError);
    expect(() => parseRoles([1])).to.throw(DomainError);
    expect(() => parseRoles('dpo')).to.throw(DomainError);
  });
});
