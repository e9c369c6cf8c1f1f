import { expect } from 'chai';
import { codesIn } from '../../src/domain/self-service-signup';

/** The one-time codes of sign-ups (self-service-signup.ts) as a message may carry them back. */
describe('sign-up codes in a message text', function () {
  it('finds a code with or without the dash, in any case, inside a sentence', function () {
    expect(codesIn('Yes, I want these messages. My confirmation code: K7Q2-MX4P')).to.deep.equal(['K7Q2MX4P']);
    expect(codesIn('k7q2mx4p')).to.deep.equal(['K7Q2MX4P']);
    expect(codesIn('Code:K7Q2-MX4P.')).to.deep.equal(['K7Q2MX4P']);
  });

  it('ignores look-alike symbols the alphabet leaves out, and longer words', function () {
    expect(codesIn('K7Q2-MX4O'), 'O is not in the alphabet').to.deep.equal([]);
    expect(codesIn('K1Q2-MX4P'), '1 is not in the alphabet').to.deep.equal([]);
    expect(codesIn('AK7Q2-MX4P'), 'part of a longer word').to.deep.equal([]);
    expect(codesIn('hello there')).to.deep.equal([]);
    expect(codesIn('MESSAGES NEWSPAPER'), 'every code holds a digit; words are no candidates').to.deep.equal([]);
  });

  it('looks at no more than four candidates per message', function () {
    expect(codesIn(Array.from({ length: 20 }, (_, i) => `AAAA-AA${'23456789ABCDEFGHJKMNPQRSTUVWXYZ'[i]}A`).join(' '))).to.have.length(4);
  });
});
