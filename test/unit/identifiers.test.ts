import { expect } from 'chai';
import { FieldViolation } from '../../src/shared/errors';
import { isViolation, mailboxOf, normaliseIdentifier, RawIdentifier } from '../../src/domain/identifiers';
import { IdentifierRef } from '../../src/domain/model';

const FIELD = 'query.subject_identifier';

function ok(raw: RawIdentifier): IdentifierRef {
  const result = normaliseIdentifier(raw, FIELD);
  if (isViolation(result)) expect.fail(`expected an identifier for ${JSON.stringify(raw)}, got ${JSON.stringify(result)}`);
  return result;
}

function violation(raw: RawIdentifier | undefined): FieldViolation {
  const result = normaliseIdentifier(raw, FIELD);
  if (!isViolation(result)) expect.fail(`expected a violation for ${JSON.stringify(raw)}, got ${JSON.stringify(result)}`);
  return result;
}

/** The violation names the field only: neither the value nor its digits appear in it. */
function expectNoValue(v: FieldViolation, value: string): void {
  const digits = value.replace(/\D/g, '');
  for (const text of [v.field, v.description, v.reason]) {
    if (value.trim()) expect(text).not.to.contain(value.trim());
    if (digits.length >= 4) expect(text.replace(/\D/g, '')).not.to.contain(digits);
  }
}

describe('normaliseIdentifier', () => {
  describe('phone numbers', () => {
    const GERMAN = '+49301234567';
    const GERMAN_SPELLINGS = [
      '+49301234567',
      '+49 30 1234567',
      '+49 30 123 45 67',
      '+49-30-1234567',
      '+49 (0)30 1234567',
      '+49 (30) 1234567',
      '+4930/1234567',
      '+49.30.1234567',
      '  +49 30 1234567  ',
      '\t+49 30 1234567\n',
    ];
    for (const spelling of GERMAN_SPELLINGS) {
      it(`German ${JSON.stringify(spelling)} -> ${GERMAN}`, () => {
        expect(ok({ phoneNumber: spelling })).to.deep.equal({ kind: 'PHONE', value: GERMAN });
      });
    }

    it('German national and international-prefix spellings with default_region DE', () => {
      for (const spelling of ['030 1234567', '030/123 45 67', '(030) 1234567', '0049 30 1234567', '+49 30 1234567']) {
        expect(ok({ phoneNumber: spelling, defaultRegion: 'DE' }), spelling).to.deep.equal({ kind: 'PHONE', value: GERMAN });
      }
    });

    it('a German mobile number', () => {
      expect(ok({ phoneNumber: '+49 170 1234567' }).value).to.equal('+491701234567');
      expect(ok({ phoneNumber: '0170 1234567', defaultRegion: 'de' }).value).to.equal('+491701234567');
    });

    const US = '+16502530000';
    const US_SPELLINGS = ['+16502530000', '+1 650 253 0000', '+1 (650) 253-0000', '+1-650-253-0000', '+1.650.253.0000', ' +1 650-253-0000 '];
    for (const spelling of US_SPELLINGS) {
      it(`US ${JSON.stringify(spelling)} -> ${US}`, () => {
        expect(ok({ phoneNumber: spelling })).to.deep.equal({ kind: 'PHONE', value: US });
      });
    }

    it('US national spellings with default_region US', () => {
      for (const spelling of ['(650) 253-0000', '650-253-0000', '650.253.0000', '6502530000', '1-650-253-0000', '1 (650) 253-0000']) {
        expect(ok({ phoneNumber: spelling, defaultRegion: 'US' }), spelling).to.deep.equal({ kind: 'PHONE', value: US });
      }
    });

    it('default_region is trimmed and case-insensitive', () => {
      expect(ok({ phoneNumber: '030 1234567', defaultRegion: ' de ' }).value).to.equal(GERMAN);
    });

    it('an international number ignores a different default_region', () => {
      expect(ok({ phoneNumber: '+49 30 1234567', defaultRegion: 'US' }).value).to.equal(GERMAN);
    });

    it('the same national digits mean different people in different regions', () => {
      const de = ok({ phoneNumber: '030 1234567', defaultRegion: 'DE' }).value;
      const gb = normaliseIdentifier({ phoneNumber: '030 1234567', defaultRegion: 'GB' }, FIELD);
      expect(isViolation(gb) ? null : gb.value).not.to.equal(de);
    });

    it('a national number without default_region is refused with a hint', () => {
      const v = violation({ phoneNumber: '030 1234567' });
      expect(v).to.deep.include({ field: `${FIELD}.phone_number`, reason: 'INVALID_PHONE_NUMBER' });
      expect(v.description).to.contain('default_region');
      expectNoValue(v, '030 1234567');
    });

    const INVALID = [
      ['too short', '+49 30'],
      ['only a country code', '+49'],
      ['too long', '+49 30 1234567890123456'],
      ['letters', 'abcdefg'],
      ['not a country code', '+999 1234567'],
      ['non-existent US number (555 exchange)', '+1 555 555 5555'],
      ['non-existent area code', '+1 011 253 0000'],
      ['empty', ''],
      ['blank', '   '],
      ['too long input', '+49 30 1234567' + ' '.repeat(60)],
    ] as const;
    for (const [name, value] of INVALID) {
      it(`refuses ${name} without echoing the number`, () => {
        const v = violation({ phoneNumber: value });
        expect(v.field).to.equal(`${FIELD}.phone_number`);
        expect(v.reason).to.equal('INVALID_PHONE_NUMBER');
        expectNoValue(v, value);
      });
    }

    // Regression (was BUG, fixed in 53f4069): parsePhoneNumberFromString's default "extract"
    // mode finds a number *inside* arbitrary text and drops the rest, so "+49 30 12345ab" became
    // +493012345 (a different, valid-looking person) and "+49 30 1234567 abc" became
    // +49301234567. The whole input must be a phone number.
    for (const value of ['+49 30 12345ab', '+49 30 1234567 abc', 'call me at +49 30 1234567']) {
      it(`refuses letters mixed into a number: ${JSON.stringify(value)}`, () => {
        const v = violation({ phoneNumber: value });
        expect(v.field).to.equal(`${FIELD}.phone_number`);
        expect(v.reason).to.equal('INVALID_PHONE_NUMBER');
        expectNoValue(v, value);
      });
    }

    it('refuses a default_region that is not two letters, naming default_region', () => {
      for (const region of ['DEU', 'D', '12', 'D1', 'de-DE']) {
        const v = violation({ phoneNumber: '030 1234567', defaultRegion: region });
        expect(v, region).to.deep.equal({
          field: `${FIELD}.default_region`,
          reason: 'INVALID_REGION',
          description: 'must be an ISO 3166-1 alpha-2 code such as "DE"',
        });
      }
    });

    it('an empty default_region counts as unset', () => {
      expect(ok({ phoneNumber: '+49 30 1234567', defaultRegion: '' }).value).to.equal(GERMAN);
      expect(ok({ phoneNumber: '+49 30 1234567', defaultRegion: '  ' }).value).to.equal(GERMAN);
    });

    it('an unknown two-letter region does not crash', () => {
      const v = violation({ phoneNumber: '030 1234567', defaultRegion: 'XX' });
      expect(v.field).to.equal(`${FIELD}.phone_number`);
    });

    it('phone takes precedence when several kinds are set', () => {
      expect(ok({ phoneNumber: '+49 30 1234567', email: 'a@example.com', customerId: 'c1' }).kind).to.equal('PHONE');
    });
  });

  describe('e-mail addresses', () => {
    it('trims and lower-cases', () => {
      expect(ok({ email: '  Max.Mustermann@Example.COM \n' })).to.deep.equal({ kind: 'EMAIL', value: 'max.mustermann@example.com' });
    });

    it('every spelling of the same address gives the same value', () => {
      const values = ['a.b@example.de', 'A.B@EXAMPLE.DE', ' a.B@Example.de'].map((e) => ok({ email: e }).value);
      expect(new Set(values).size).to.equal(1);
    });

    it('one value for every Unicode spelling of one mailbox: NFC and NFD, an IDN domain as U-label, A-label or upper case, a full-width letter, a trailing dot', () => {
      const same = (spellings: string[]) => {
        const values = spellings.map((e) => ok({ email: e }).value);
        expect(new Set(values).size, spellings.join(' | ')).to.equal(1);
        return values[0];
      };
      expect(same(['josé@example.com', 'jose\u0301@example.com', 'JOSÉ@Example.com', 'JOSE\u0301@EXAMPLE.COM'])).to.equal('josé@example.com');
      expect(same(['anna@bücher.example', 'anna@bu\u0308cher.example', 'anna@xn--bcher-kva.example', 'anna@BÜCHER.EXAMPLE', 'anna@XN--BCHER-KVA.example'])).to.equal('anna@bücher.example');
      expect(same(['anna@ｅxample.com', 'anna@example.com', 'anna@example.com.', 'Anna@Example.COM.'])).to.equal('anna@example.com');
    });

    it('leaves ASCII addresses as they were always spelled (their blind indexes stay), and different mailboxes different', () => {
      for (const e of ['a.b+tag@example.org', 'x_y-z@sub.example.co.uk', "o'hara@example.ie"]) expect(ok({ email: e.toUpperCase() }).value).to.equal(e);
      expect(ok({ email: 'jose@example.com' }).value).to.not.equal(ok({ email: 'josé@example.com' }).value);
    });

    it('a mailbox: addresses in scripts that write vowels as combining marks are ones a mail can be sent to; display names, quotes, empty labels are not', () => {
      for (const e of ['info@उदाहरण.भारत', 'ผู้ใช้@ตัวอย่าง.ไทย', 'josé@bücher.example', "o'hara+news@example.ie"]) expect(mailboxOf(ok({ email: e }).value), e).to.not.equal(null);
      for (const e of ['"a"<x@example.org>', 'a..b@example.org', 'a@-example.org', 'a@example.123']) expect(mailboxOf(ok({ email: e }).value), e).to.equal(null);
      expect(mailboxOf('a.b+tag+more@example.org')!.mailbox).to.equal('a.b@example.org');
    });

    it('keeps plus addressing', () => {
      expect(ok({ email: 'user+tag@example.org' }).value).to.equal('user+tag@example.org');
    });

    for (const bad of ['', '   ', 'plainaddress', '@example.com', 'user@', 'user@example', 'user @example.com', 'a@b@c.com', 'user@exa mple.com']) {
      it(`refuses ${JSON.stringify(bad)}`, () => {
        const v = violation({ email: bad });
        expect(v).to.deep.equal({ field: `${FIELD}.email`, reason: 'INVALID_EMAIL', description: 'is not an e-mail address' });
      });
    }

    it('refuses an address longer than 320 characters, accepts 320', () => {
      const at320 = `${'a'.repeat(320 - '@example.com'.length)}@example.com`;
      expect(at320).to.have.length(320);
      expect(ok({ email: at320 }).value).to.equal(at320);
      expect(violation({ email: `a${at320}` }).field).to.equal(`${FIELD}.email`);
    });

    it('e-mail takes precedence over customer id', () => {
      expect(ok({ email: 'a@example.com', customerId: 'c1' }).kind).to.equal('EMAIL');
    });
  });

  describe('customer ids', () => {
    it('trims but keeps case', () => {
      expect(ok({ customerId: '  CUST-0042 ' })).to.deep.equal({ kind: 'CUSTOMER_ID', value: 'CUST-0042' });
    });

    it('accepts 128 characters, refuses 129', () => {
      expect(ok({ customerId: 'x'.repeat(128) }).value).to.have.length(128);
      expect(violation({ customerId: 'x'.repeat(129) })).to.deep.equal({
        field: `${FIELD}.customer_id`,
        reason: 'INVALID_CUSTOMER_ID',
        description: 'must be 1 to 128 characters',
      });
    });

    it('counts characters, not UTF-16 units: 128 emoji are 128 characters', () => {
      expect(ok({ customerId: '\u{1F600}'.repeat(128) }).value).to.equal('\u{1F600}'.repeat(128));
      expect(violation({ customerId: '\u{1F600}'.repeat(129) }).reason).to.equal('INVALID_CUSTOMER_ID');
    });

    it('refuses empty and blank ids', () => {
      for (const id of ['', '   ', '\t\n']) expect(violation({ customerId: id }).reason, JSON.stringify(id)).to.equal('INVALID_CUSTOMER_ID');
    });
  });

  describe('nothing set', () => {
    it('undefined identifier is REQUIRED on the field itself', () => {
      expect(violation(undefined)).to.deep.equal({ field: FIELD, reason: 'REQUIRED', description: 'a subject identifier is required' });
    });

    it('an identifier without a kind is REQUIRED', () => {
      const v = violation({});
      expect(v).to.deep.include({ field: FIELD, reason: 'REQUIRED' });
      expect(v.description).to.contain('phone_number');
    });

    it('a default_region alone is REQUIRED', () => {
      expect(violation({ defaultRegion: 'DE' }).reason).to.equal('REQUIRED');
    });
  });

  describe('isViolation', () => {
    it('tells violations from identifiers', () => {
      expect(isViolation({ kind: 'EMAIL', value: 'a@b.c' })).to.equal(false);
      expect(isViolation({ field: 'x', reason: 'R', description: 'd' })).to.equal(true);
    });
  });
});
