import { expect } from 'chai';
import fc from 'fast-check';
import examples from 'libphonenumber-js/examples.mobile.json';
import libphonenumberPackage from 'libphonenumber-js/package.json';
import {
  getCountries,
  getCountryCallingCode,
  getExampleNumber,
  parsePhoneNumberFromString,
} from 'libphonenumber-js/max';
import { normaliseIdentifier, phoneByLibrary } from '../../src/domain/identifiers';
import { fastE164 } from '../../src/domain/phone-fast-path';

const FIELD = 'subject_identifier';

/** The oracle every outcome is compared with: the library path alone (identifiers.ts). */
const before = phoneByLibrary;
/** The characters identifiers.ts lets through to either path. */
const PHONE_CHARACTERS = /^\s*\+?[0-9\s().\/-]+\s*$/;

/** What libphonenumber alone makes of an input: its E.164 form if valid. */
function library(input: string): string | undefined {
  const parsed = parsePhoneNumberFromString(input);
  return parsed && parsed.isValid() ? parsed.number : undefined;
}

let compared = 0;
let answeredFast = 0;
function expectSame(phoneNumber: string, defaultRegion?: string): void {
  const raw = defaultRegion === undefined ? { phoneNumber } : { phoneNumber, defaultRegion };
  const label = JSON.stringify(raw);
  expect(normaliseIdentifier(raw, FIELD), label).to.deep.equal(before(raw, FIELD));
  const fast = PHONE_CHARACTERS.test(phoneNumber) ? fastE164(phoneNumber) : undefined;
  if (fast !== undefined) {
    answeredFast++;
    expect(fast, label).to.equal(library(phoneNumber));
  }
  compared++;
}

const COUNTRIES = getCountries();
const CALLING_CODES = [...new Set(COUNTRIES.map((c) => getCountryCallingCode(c) as string))];
const NON_GEOGRAPHIC = ['800', '808', '870', '878', '881', '882', '883', '888', '979'];
/** Mobile example numbers of every region, E.164. */
const EXAMPLES = COUNTRIES.flatMap((country) => {
  const example = getExampleNumber(country, examples);
  return example ? [{ country, number: example }] : [];
});
const REGIONS: (string | undefined)[] = [undefined, '', '  ', 'DE', 'de', ' us ', 'GB', 'XX', 'DEU', '1A', ...COUNTRIES];

const digitString = (min: number, max: number) =>
  fc.array(fc.integer({ min: 0, max: 9 }), { minLength: min, maxLength: max }).map((d) => d.join(''));
const region = fc.constantFrom(...REGIONS);
/** Separators between digit groups, the usual ones and some the fast path must leave to the library. */
const separator = fc.constantFrom('', '', '', ' ', '-', '.', '/', '(', ')', '  ', '\t', '\u00a0', '\u2009', '\n');

/** Writes digits with random separators between them. */
function spelled(digits: string, seps: string[]): string {
  let out = '';
  for (let i = 0; i < digits.length; i++) out += digits[i] + (i < digits.length - 1 ? (seps[i % seps.length] ?? '') : '');
  return out;
}

describe('phone fast path: the same outcome as libphonenumber for every input', function () {
  this.timeout(120_000);

  after(() => {
    // Not vacuous: the comparisons above went through the fast path often.
    expect(compared).to.be.greaterThan(150_000);
    expect(answeredFast).to.be.greaterThan(5_000);
  });

  it('every region\'s example number, in E.164 and international, national and odd spellings, with every region', () => {
    expect(EXAMPLES.length).to.be.greaterThan(240);
    let fastForE164 = 0;
    for (const { country, number } of EXAMPLES) {
      const e164 = number.number;
      const spellings = [
        e164,
        number.formatInternational(),
        number.formatInternational().replace(/ /g, '-'),
        number.formatInternational().replace(/ /g, '.'),
        ` ${e164} `,
        `\t${e164}\n`,
        e164.slice(1),
        `00${e164.slice(1)}`,
        `011${e164.slice(1)}`,
        number.formatNational(),
        number.nationalNumber,
        `+${number.countryCallingCode} (0)${number.nationalNumber}`,
        `+${number.countryCallingCode}0${number.nationalNumber}`,
        `${e164}0`,
        e164.slice(0, -1),
        `+${e164}`,
        `${e164} `.repeat(2),
      ];
      for (const spelling of spellings) {
        for (const r of [undefined, country, 'DE', 'US', 'XX']) expectSame(spelling, r);
      }
      if (fastE164(e164) !== undefined) fastForE164++;
    }
    // The fast path is for exactly these: it must answer nearly all of them (the rest are
    // non-geographic or begin with a national prefix, which the library handles).
    expect(fastForE164 / EXAMPLES.length).to.be.greaterThan(0.95);
  });

  it('example numbers with digits changed, added or removed (valid and invalid neighbours, other types)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...EXAMPLES),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 9 })), { maxLength: 4 }),
        fc.integer({ min: -3, max: 3 }),
        fc.array(separator, { maxLength: 4 }),
        fc.boolean(),
        region,
        ({ number }, changes, grow, seps, plus, r) => {
          const digits = [...number.number.slice(1)];
          for (const [at, digit] of changes) digits[at % digits.length] = String(digit);
          let d = digits.join('');
          if (grow > 0) d += '7'.repeat(grow);
          if (grow < 0) d = d.slice(0, grow);
          expectSame((plus ? '+' : '') + spelled(d, seps), r);
        },
      ),
      { numRuns: 30_000 },
    );
  });

  it('every calling code with random national numbers of every length', () => {
    // A fixed seed so that a failure repeats.
    let seed = 0x2545f491;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
    for (const code of [...CALLING_CODES, ...NON_GEOGRAPHIC]) {
      for (let length = 0; length <= 18; length++) {
        for (let i = 0; i < 8; i++) {
          let national = '';
          for (let j = 0; j < length; j++) national += String(Math.floor(random() * 10));
          expectSame(`+${code}${national}`);
        }
      }
    }
  });

  it('random "+" and digit strings of all lengths, with separators and regions', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('+', '+', '', ' +', '+ ', '00'),
        fc.oneof(fc.constantFrom(...CALLING_CODES, ...NON_GEOGRAPHIC), fc.constant('')),
        digitString(0, 20),
        fc.array(separator, { maxLength: 3 }),
        region,
        (lead, code, digits, seps, r) => expectSame(lead + spelled(code + digits, seps), r),
      ),
      { numRuns: 40_000 },
    );
  });

  it('garbage: phone-like characters, any characters', () => {
    const phoneish = fc
      .array(fc.constantFrom(...'+0123456789 ()-./\t\n\u00a0#x;,~*\uff0b\uff11\u0661'.split('')), { maxLength: 30 })
      .map((c) => c.join(''));
    fc.assert(fc.property(phoneish, region, (s, r) => expectSame(s, r)), { numRuns: 20_000 });
    fc.assert(fc.property(fc.string({ maxLength: 70 }), region, (s, r) => expectSame(s, r)), { numRuns: 10_000 });
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), region, (s, r) => expectSame(s, r)), { numRuns: 5_000 });
  });
});

describe('phone fast path: edges', () => {
  it('libphonenumber-js is the minor version whose parse.js and isValid.js the fast path mirrors', () => {
    // Metadata updates (patch versions) are picked up by the fast path on its own; a new minor
    // version may change the algorithm: re-read parse.js, extractNationalNumber.js,
    // getCountryByNationalNumber.js, getNumberType.js and isValid.js against phone-fast-path.ts
    // before moving this line.
    expect(libphonenumberPackage.version).to.match(/^1\.13\./);
  });

  it('answers plain E.164 and "+" with the usual separators', () => {
    expect(fastE164('+4915112345678')).to.equal('+4915112345678');
    expect(fastE164('+49 151 12345678')).to.equal('+4915112345678');
    expect(fastE164(' +49-151-1234-5678 ')).to.equal('+4915112345678');
    expect(fastE164('+1 (650) 253-0000')).to.equal('+16502530000');
    expect(fastE164('+49 30/1234567')).to.equal('+49301234567');
  });

  it('picks the region among those sharing a calling code (NANP, +7, +44)', () => {
    expect(fastE164('+14165550123')).to.equal('+14165550123'); // CA: leading digits
    expect(fastE164('+12423570000')).to.equal('+12423570000'); // BS
    expect(fastE164('+77012345678')).to.equal('+77012345678'); // KZ
    expect(fastE164('+447624123456')).to.equal('+447624123456'); // IM
    for (const n of ['+14165550123', '+12423570000', '+77012345678', '+447624123456']) expect(fastE164(n)).to.equal(library(n));
  });

  it('leaves the library what it might change or refuse', () => {
    const left = [
      '+49 (0)30 1234567', // a national prefix after the calling code: the library strips it
      '+490301234567',
      '+80012345678', // non-geographic calling code
      '+1 555 555 5555', // not a valid number: the library words the refusal
      '+49 30',
      '+999 1234567',
      '+0049301234567',
      '+',
      '4915112345678', // no "+": the library decides with default_region
      '015112345678',
      '0049 151 12345678',
      '+49\t151 12345678', // a tab inside is not libphonenumber punctuation
      '+49\u00a0151 12345678',
      '+49 151 12345678 123456 123456', // too long
    ];
    for (const input of left) expect(fastE164(input), JSON.stringify(input)).to.equal(undefined);
  });

  it('normaliseIdentifier still refuses a bad default_region before any fast answer', () => {
    expect(normaliseIdentifier({ phoneNumber: '+4915112345678', defaultRegion: 'DEU' }, FIELD)).to.deep.equal({
      field: `${FIELD}.default_region`,
      reason: 'INVALID_REGION',
      description: 'must be an ISO 3166-1 alpha-2 code such as "DE"',
    });
  });

  it('normaliseIdentifier takes a fast answer only for input that passed its character and length check', () => {
    expect(normaliseIdentifier({ phoneNumber: '+4915112345678' + ' '.repeat(60) }, FIELD)).to.deep.include({ reason: 'INVALID_PHONE_NUMBER' });
    expect(normaliseIdentifier({ phoneNumber: '+4915112345678', defaultRegion: 'XX' }, FIELD)).to.deep.equal({ kind: 'PHONE', value: '+4915112345678' });
    expect(before({ phoneNumber: '+4915112345678', defaultRegion: 'XX' }, FIELD)).to.deep.equal({ kind: 'PHONE', value: '+4915112345678' });
  });
});
