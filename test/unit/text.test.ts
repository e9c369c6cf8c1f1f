import { expect } from 'chai';
import { characterCount } from '../../src/shared/text';

describe('characterCount', () => {
  it('counts code points: a surrogate pair is one character, a lone surrogate is one too', () => {
    expect(characterCount('')).to.equal(0);
    expect(characterCount('abc')).to.equal(3);
    expect(characterCount('Grüße')).to.equal(5);
    expect(characterCount('\u{1F600}')).to.equal(1);
    expect(characterCount('a\u{1F600}b\u{1F44D}')).to.equal(4);
    expect(characterCount('\uD83D')).to.equal(1);
    expect(characterCount('\uDE00\uD83D')).to.equal(2);
    expect(characterCount('x\uD83Dy')).to.equal(3);
    for (const s of ['', 'abc', 'a\u{1F600}b', '\u{1F600}'.repeat(100), 'Zürich \u{10FFFF}']) expect(characterCount(s), s).to.equal([...s].length);
  });
});
