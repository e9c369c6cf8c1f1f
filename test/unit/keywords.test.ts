import { expect } from 'chai';
import { matchKeyword, normaliseKeyword } from '../../src/domain/keywords';
import { DEFAULT_TENANT_SETTINGS } from '../../src/domain/model';

const DEFAULTS = DEFAULT_TENANT_SETTINGS;

describe(matchKeyword.name, () => {
  describe('default keyword lists', () => {
    for (const text of ['STOP', 'stop', 'Stop', ' Stop\n', '\tSTOP  ', 'STOPP', 'stopp', 'ABMELDEN', 'abmelden', 'Abmelden', 'UNSUBSCRIBE', 'quit', 'OptOut', 'STOPALL', 'cancel', 'end', 'revoke']) {
      it(`${JSON.stringify(text)} is OPT_OUT`, () => {
        expect(matchKeyword(text, DEFAULTS)).to.equal('OPT_OUT');
      });
    }

    for (const text of ['START', 'start', ' Start ', 'UNSTOP', 'unstop\r\n']) {
      it(`${JSON.stringify(text)} is OPT_IN`, () => {
        expect(matchKeyword(text, DEFAULTS)).to.equal('OPT_IN');
      });
    }

    it('every default opt-out keyword matches itself, lower-cased too', () => {
      for (const k of DEFAULTS.optOutKeywords) {
        expect(matchKeyword(k, DEFAULTS), k).to.equal('OPT_OUT');
        expect(matchKeyword(k.toLowerCase(), DEFAULTS), k).to.equal('OPT_OUT');
      }
    });

    it('every default opt-in keyword matches itself, lower-cased too', () => {
      for (const k of DEFAULTS.optInKeywords) {
        expect(matchKeyword(k, DEFAULTS), k).to.equal('OPT_IN');
        expect(matchKeyword(k.toLowerCase(), DEFAULTS), k).to.equal('OPT_IN');
      }
    });
  });

  describe('no match', () => {
    for (const text of [
      'please stop',
      'stop it',
      'S T O P',
      'STOPPED',
      'yes please',
      // An answer to an unrelated question must not lift a STOP (consent-rules.md, Keywords).
      'YES',
      'yes',
      'Hello',
      'ST0P',
      'st\u200bop',
    ]) {
      it(`${JSON.stringify(text)} is no keyword`, () => {
        expect(matchKeyword(text, DEFAULTS)).to.equal(null);
      });
    }

    for (const text of ['', ' ', '\n\t ', '\u3000']) {
      it(`empty text ${JSON.stringify(text)} is no keyword`, () => {
        expect(matchKeyword(text, DEFAULTS)).to.equal(null);
      });
    }

    it('an empty text does not match an empty keyword configured by a tenant', () => {
      expect(matchKeyword('', { optOutKeywords: ['', ' '], optInKeywords: [''] })).to.equal(null);
      expect(matchKeyword('   ', { optOutKeywords: [''], optInKeywords: [] })).to.equal(null);
    });

    it('empty keyword lists match nothing', () => {
      expect(matchKeyword('STOP', { optOutKeywords: [], optInKeywords: [] })).to.equal(null);
    });
  });

  describe('tenant lists', () => {
    it('opt-out takes precedence when a word is on both lists', () => {
      expect(matchKeyword('stop', { optOutKeywords: ['STOP'], optInKeywords: ['STOP'] })).to.equal('OPT_OUT');
      expect(matchKeyword('JA', { optOutKeywords: ['ja'], optInKeywords: ['Ja', 'START'] })).to.equal('OPT_OUT');
    });

    it('tenant keywords are normalised like the text (case, spaces, NFKC)', () => {
      const settings = { optOutKeywords: [' Nein '], optInKeywords: ['ｊａ'] };
      expect(matchKeyword('NEIN', settings)).to.equal('OPT_OUT');
      expect(matchKeyword('ja', settings)).to.equal('OPT_IN');
    });

    it('only the given lists count, not the defaults', () => {
      expect(matchKeyword('STOP', { optOutKeywords: ['HALT'], optInKeywords: ['GO'] })).to.equal(null);
      expect(matchKeyword('halt', { optOutKeywords: ['HALT'], optInKeywords: ['GO'] })).to.equal('OPT_OUT');
    });

    it('umlauts match case-insensitively', () => {
      const settings = { optOutKeywords: ['KÜNDIGEN'], optInKeywords: [] };
      expect(matchKeyword('kündigen', settings)).to.equal('OPT_OUT');
      // Composed and decomposed ü are the same word after NFKC.
      expect(matchKeyword('ku\u0308ndigen', settings)).to.equal('OPT_OUT');
    });
  });

  describe('Unicode compatibility forms (NFKC)', () => {
    it('full-width letters match', () => {
      expect(matchKeyword('ＳＴＯＰ', DEFAULTS)).to.equal('OPT_OUT');
      expect(matchKeyword('ｓｔｏｐ', DEFAULTS)).to.equal('OPT_OUT');
      expect(matchKeyword('ＳＴＡＲＴ', DEFAULTS)).to.equal('OPT_IN');
    });

    it('an ideographic space around the word is trimmed', () => {
      expect(matchKeyword('\u3000STOP\u3000', DEFAULTS)).to.equal('OPT_OUT');
    });

    it('a no-break space around the word is trimmed', () => {
      expect(matchKeyword('\u00a0stop\u00a0', DEFAULTS)).to.equal('OPT_OUT');
    });
  });
});

describe(normaliseKeyword.name, () => {
  it('trims, upper-cases and applies NFKC', () => {
    expect(normaliseKeyword('  stopp\n')).to.equal('STOPP');
    expect(normaliseKeyword('ＳＴＯＰ')).to.equal('STOP');
    expect(normaliseKeyword('')).to.equal('');
  });

  it('upper-cases independently of the locale (dotless-i rules do not apply)', () => {
    expect(normaliseKeyword('quit')).to.equal('QUIT');
  });
});
