// The same metadata and Metadata class that 'libphonenumber-js/max' (used by identifiers.ts) binds
// together; that entry point does not export the class.
import { Metadata, type MetadataJson } from 'libphonenumber-js/core';
import maxMetadata from 'libphonenumber-js/metadata.max.json';

/**
 * A fast path for phone numbers written in international form ("+4915112345678",
 * "+49 151 1234 5678"), the form most senders use. It gives an answer only where it can show that
 * libphonenumber-js (parsePhoneNumberFromString + isValid, 'max' metadata) would accept the number
 * and return exactly "+" and the input's digits; for everything else (national numbers, a national
 * prefix after the country code, non-geographic codes, numbers it cannot prove valid) it returns
 * undefined and the caller asks libphonenumber. So it never decides a refusal and never chooses a
 * different normalised form: it can only skip work whose outcome is already known.
 *
 * Why not a cache of results: it would keep plaintext phone numbers in memory long after their
 * request (and after an erasure), and it helps only numbers seen before.
 *
 * The steps mirror libphonenumber-js 1.13's parse.js / isValid.js for an input "+" digits, on
 * regular expressions compiled once from the library's own metadata instead of once per call
 * (its matchesEntirely builds a RegExp for every test, which is most of its cost):
 *  1. extractCountryCallingCode: the calling code is the shortest prefix of 1 to 3 digits that the
 *     metadata knows; a leading 0 is no calling code.
 *  2. extractNationalNumber: the rest is taken as the national number unless the numbering plan's
 *     national_prefix_for_parsing matches a non-empty prefix of it (then it might strip or
 *     transform: left to the library).
 *  3. National number length 2 to 17 (MIN/MAX_LENGTH_FOR_NSN).
 *  4. getCountryByCallingCode: the only region of the code, or the first of the regions sharing it
 *     whose leading_digits match at the start (regions with leading_digits) or whose number types
 *     know the number (regions without).
 *  5. isValid: with number types, the national number pattern and one type (pattern and, where
 *     given, possible lengths) must match; without, the national number pattern alone.
 * test/unit/phone-fast-path.test.ts compares this with the library over generated inputs.
 */

/** The library's MIN_LENGTH_FOR_NSN and MAX_LENGTH_FOR_NSN (constants.js). */
const MIN_NATIONAL_LENGTH = 2;
const MAX_NATIONAL_LENGTH = 17;

/**
 * "+" and digits with the separators people type between them, surrounded by whitespace. Only
 * separators that are libphonenumber punctuation (so the number stays "viable") and can start no
 * extension (extensions need "#", "x", ";", "," or a word) are taken: for such input the library
 * works on "+" and the digits alone. Tabs and other whitespace inside, or anything else, go the
 * slow way.
 */
const INTERNATIONAL_FORM = /^\s*\+[0-9 ().\/-]*\s*$/;
const NOT_A_DIGIT = /[^0-9]/g;

/** The library's type order in getNumberType: FIXED_LINE first, then NON_FIXED_LINE_PHONE_TYPES. */
const TYPE_NAMES = [
  'FIXED_LINE',
  'MOBILE',
  'PREMIUM_RATE',
  'TOLL_FREE',
  'SHARED_COST',
  'VOIP',
  'PERSONAL_NUMBER',
  'PAGER',
  'UAN',
  'VOICEMAIL',
] as const;

/** The part of libphonenumber-js's Metadata class (metadata.js) read here; its typings declare less. */
interface LibMetadata {
  hasCallingCode(callingCode: string): boolean;
  getCountryCodesForCallingCode(callingCode: string): string[] | undefined;
  selectNumberingPlan(countryOrCallingCode: string): void;
  numberingPlan: {
    nationalNumberPattern(): string;
    nationalPrefixForParsing(): string | undefined;
    leadingDigits(): string | undefined;
    hasTypes(): boolean;
    type(name: string): { pattern(): string; possibleLengths(): number[] | undefined } | undefined;
  };
}

interface NumberType {
  /** Whole-string match, as matchesEntirely builds it. */
  pattern: RegExp;
  possibleLengths: readonly number[] | undefined;
}

interface Region {
  nationalNumber: RegExp;
  /** Matched with String.prototype.search like getCountryByNationalNumber does. */
  leadingDigits: RegExp | undefined;
  hasTypes: boolean;
  /** Types with a non-empty pattern (an empty or missing one never matches), in TYPE_NAMES order. */
  types: NumberType[];
}

interface CallingCode {
  regions: Region[];
  /** The national_prefix_for_parsing of the code's main region, as extractNationalNumber anchors it. */
  nationalPrefix: RegExp | undefined;
}

function wholeString(pattern: string): RegExp {
  return new RegExp('^(?:' + pattern + ')$');
}

function compile(): { callingCodes: Map<string, CallingCode | null> } {
  const metadata = new Metadata(maxMetadata as unknown as MetadataJson) as unknown as LibMetadata;
  const regions = new Map<string, Region>();
  const region = (code: string): Region => {
    let compiled = regions.get(code);
    if (!compiled) {
      metadata.selectNumberingPlan(code);
      const plan = metadata.numberingPlan;
      const leadingDigits = plan.leadingDigits();
      const types: NumberType[] = [];
      if (plan.hasTypes()) {
        for (const name of TYPE_NAMES) {
          const type = plan.type(name);
          const pattern = type?.pattern();
          if (type && pattern) types.push({ pattern: wholeString(pattern), possibleLengths: type.possibleLengths() });
        }
      }
      compiled = {
        nationalNumber: wholeString(plan.nationalNumberPattern()),
        leadingDigits: leadingDigits ? new RegExp(leadingDigits) : undefined,
        hasTypes: plan.hasTypes(),
        types,
      };
      regions.set(code, compiled);
    }
    return compiled;
  };
  // Every string the library's calling-code loop can try (1 to 3 digits, no leading 0): a known
  // geographic code maps to its regions, a known non-geographic one (+800, +882, ...) to null.
  const callingCodes = new Map<string, CallingCode | null>();
  for (let n = 1; n <= 999; n++) {
    const code = String(n);
    if (!metadata.hasCallingCode(code)) continue;
    const codes = metadata.getCountryCodesForCallingCode(code);
    if (!codes) {
      callingCodes.set(code, null);
      continue;
    }
    metadata.selectNumberingPlan(code);
    const prefix = metadata.numberingPlan.nationalPrefixForParsing();
    callingCodes.set(code, {
      regions: codes.map(region),
      nationalPrefix: prefix ? new RegExp('^(?:' + prefix + ')') : undefined,
    });
  }
  return { callingCodes };
}

const { callingCodes } = compile();

/** isNumberTypeEqualTo for one type. */
function isType(nationalNumber: string, type: NumberType): boolean {
  if (type.possibleLengths && type.possibleLengths.indexOf(nationalNumber.length) < 0) return false;
  return type.pattern.test(nationalNumber);
}

/**
 * getNumberType(...) !== undefined. Every branch after a FIXED_LINE match returns a type, so "some
 * type matches" is the same decision.
 */
function hasNumberType(nationalNumber: string, region: Region): boolean {
  if (!region.nationalNumber.test(nationalNumber)) return false;
  for (const type of region.types) if (isType(nationalNumber, type)) return true;
  return false;
}

/** getCountryByCallingCode / getCountryByNationalNumber. */
function regionOf(nationalNumber: string, regions: Region[]): Region | undefined {
  if (regions.length === 1) return regions[0];
  for (const region of regions) {
    if (region.leadingDigits) {
      if (nationalNumber.search(region.leadingDigits) === 0) return region;
    } else if (hasNumberType(nationalNumber, region)) {
      return region;
    }
  }
  return undefined;
}

/**
 * The E.164 form of a phone number in international form when libphonenumber would surely accept
 * it with exactly that result; undefined when the library has to decide. The caller has already
 * checked the input's length and characters (identifiers.ts).
 */
export function fastE164(input: string): string | undefined {
  if (!INTERNATIONAL_FORM.test(input)) return undefined;
  const digits = input.replace(NOT_A_DIGIT, '');
  if (digits.charCodeAt(0) === 48 /* '0' */) return undefined;
  for (let length = 1; length <= 3 && length <= digits.length; length++) {
    const callingCode = callingCodes.get(digits.slice(0, length));
    if (callingCode === undefined) continue;
    // The library stops at the first known code; a non-geographic one is left to it.
    if (callingCode === null) return undefined;
    const nationalNumber = digits.slice(length);
    if (nationalNumber.length < MIN_NATIONAL_LENGTH || nationalNumber.length > MAX_NATIONAL_LENGTH) return undefined;
    if (callingCode.nationalPrefix) {
      const prefix = callingCode.nationalPrefix.exec(nationalNumber);
      if (prefix && prefix[0] !== '') return undefined;
    }
    const region = regionOf(nationalNumber, callingCode.regions);
    if (!region) return undefined;
    const valid = region.hasTypes ? hasNumberType(nationalNumber, region) : region.nationalNumber.test(nationalNumber);
    return valid ? '+' + digits : undefined;
  }
  return undefined;
}
