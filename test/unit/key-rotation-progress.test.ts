import { expect } from 'chai';
import { resumedProgress } from '../../src/domain/key-administration';

describe('key rotation progress across a restart', () => {
  it('a new rotation reports its own count', () => {
    expect(resumedProgress({ total: 0, done: 0 }, { total: 250, done: 0 })).to.deep.equal({ total: 250, done: 0 });
    expect(resumedProgress({ total: 0, done: 0 }, { total: 250, done: 200 })).to.deep.equal({ total: 250, done: 200 });
  });

  it('a resumed rotation keeps the first total and counts what is left from it', () => {
    // 200 recorded as done, 30 more re-wrapped before the crash without being recorded: 20 left.
    expect(resumedProgress({ total: 250, done: 200 }, { total: 20, done: 0 })).to.deep.equal({ total: 250, done: 230 });
    expect(resumedProgress({ total: 250, done: 200 }, { total: 20, done: 20 })).to.deep.equal({ total: 250, done: 250 });
  });

  it('a crash before the first total was recorded still ends with done equal to total', () => {
    expect(resumedProgress({ total: 0, done: 0 }, { total: 40, done: 40 })).to.deep.equal({ total: 40, done: 40 });
  });
});
