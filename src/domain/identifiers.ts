import { domainToASCII, domainToUnicode } from 'node:url';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { FieldViolation } from '../shared/errors';
import { IdentifierRef } from './model';
import { fastE164 } from './phone-fast-path';
import { characterCount } from '../shared/text';

/** What the transport hands over: at most one of the identifier kinds, as the caller wrote it. */
export interface RawIdentifier {
  phoneNumber?: string;
  email?: string;
  customerId?: string;
  defaultRegion?: string;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const PHONE_CHARACTERS = /^\s*\+?[0-9\s().\/-]+\s*$/;
const MAX_IDENTIFIER_LENGTH = 320;

/** A violation of `field` (or of its part `sub`); names the field, never the value. */
function violationOf(field: string, sub: string, reason: string, description: string): FieldViolation {
  return { field: sub ? `${field}.${sub}` : field, reason, description };
}

const REGION = /^[A-Z]{2}$/;

/**
 * libphonenumber extracts a number from surrounding text ("call me at +49 ..."); an identifier
 * must be a number and nothing else, so anything but digits and the usual separators is refused
 * before parsing.
 */
function acceptablePhone(value: string): boolean {
  return value.length <= 64 && PHONE_CHARACTERS.test(value);
}

/**
 * Normalises an identifier so that every spelling of the same person finds the same subject:
 * phone numbers to E.164 (libphonenumber's full metadata, so only numbers that can exist pass),
 * e-mail addresses as normaliseEmail spells them, customer ids trimmed.
 * Violations name the field, never the value: the value is personal data.
 */
export function normaliseIdentifier(raw: RawIdentifier | undefined, field: string): IdentifierRef | FieldViolation {
  if (!raw) return violationOf(field, '', 'REQUIRED', 'a subject identifier is required');
  if (raw.phoneNumber !== undefined) {
    // Most numbers arrive in international form; the fast path answers those it can prove valid
    // at a fraction of libphonenumber's cost (phone-fast-path.ts), the library decides the rest.
    // It never answers where the library path refuses first: a bad region, unacceptable characters.
    const region = raw.defaultRegion?.trim().toUpperCase();
    const fast = (!region || REGION.test(region)) && acceptablePhone(raw.phoneNumber) ? fastE164(raw.phoneNumber) : undefined;
    return fast !== undefined ? { kind: 'PHONE', value: fast } : phoneByLibrary({ phoneNumber: raw.phoneNumber, defaultRegion: raw.defaultRegion }, field);
  }
  if (raw.email !== undefined) {
    const value = normaliseEmail(raw.email);
    if (value.length > MAX_IDENTIFIER_LENGTH || !EMAIL.test(value)) {
      return violationOf(field, 'email', 'INVALID_EMAIL', 'is not an e-mail address');
    }
    return { kind: 'EMAIL', value };
  }
  if (raw.customerId !== undefined) {
    const value = raw.customerId.trim();
    if (value.length === 0 || characterCount(value) > 128) {
      return violationOf(field, 'customer_id', 'INVALID_CUSTOMER_ID', 'must be 1 to 128 characters');
    }
    return { kind: 'CUSTOMER_ID', value };
  }
  return violationOf(field, '', 'REQUIRED', 'set one of phone_number, email, customer_id');
}

/**
 * One spelling per mailbox: trimmed, Unicode NFC (a keyboard's é and e + combining accent are one
 * letter), lower-cased; the domain as IDNA (UTS #46) reads it, in its Unicode form (an A-label
 * "xn--bcher-kva.example", "BÜCHER.example" and a full-width letter all become "bücher.example"),
 * without a trailing dot (the root: "example.org." is "example.org"). ASCII addresses come out as
 * they always did (trimmed, lower-cased), so their blind indexes are unchanged; so are NFC
 * addresses with a Unicode domain. A domain IDNA refuses is kept lower-cased as written (the
 * identifier stays usable, e.g. to withdraw under it; sending to it is mailboxOf's to refuse).
 */
export function normaliseEmail(raw: string): string {
  // Almost every address: ASCII, no A-label, no trailing dot. What the rest does comes to this
  // (checks normalise an address per query: the long way costs ~10x).
  const trimmed = raw.trim();
  if (ASCII.test(trimmed) && !trimmed.endsWith('.') && !/xn--/i.test(trimmed)) return trimmed.toLowerCase();
  const text = trimmed.normalize('NFC');
  const at = text.lastIndexOf('@');
  if (at < 0) return text.toLowerCase();
  const local = text.slice(0, at).toLowerCase().normalize('NFC');
  let domain = text.slice(at + 1);
  if (domain.endsWith('.') && domain.length > 1) domain = domain.slice(0, -1);
  if (/[^\x00-\x7f]/.test(domain) || /(^|\.)xn--/i.test(domain)) {
    const ascii = domainToASCII(domain);
    domain = ascii ? domainToUnicode(ascii).normalize('NFC') : domain.toLowerCase().normalize('NFC');
  } else {
    domain = domain.toLowerCase();
  }
  return `${local}@${domain}`;
}

/**
 * An address a mail can be sent to (RFC 5321's Mailbox, internationalised as RFC 6531 allows: a
 * dot-atom local part, a domain of letter/digit/hyphen labels, the last one starting with a
 * letter, no trailing dot), from a normalised EMAIL identifier's value; null when the value is
 * none. The identifier parser above is lenient on purpose: a person recorded under an odd
 * spelling must still be able to withdraw under it. Only sending needs this: a display-name form
 * ('"a"<someone@example.org>') or a trailing dot passed the parser and made extra mailboxes.
 */
export function mailboxOf(email: string): { address: string; mailbox: string } | null {
  const at = email.lastIndexOf('@');
  if (at <= 0) return null;
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (Buffer.byteLength(local) > 64 || domain.length > 253 || !LOCAL_PART.test(local) || !DOMAIN.test(domain)) return null;
  // Sub-addresses (local+tag@domain) reach the same mailbox at most providers: one mailbox for
  // limits on what is sent to it. Other provider rules (dots at some) are not guessed.
  const plus = local.indexOf('+');
  return { address: email, mailbox: plus > 0 ? `${local.slice(0, plus)}@${domain}` : email };
}

// Letters with their combining marks (\p{M}: Devanagari, Thai and other scripts write vowels so).
const ATEXT = "[\\p{L}\\p{M}\\p{N}!#$%&'*+/=?^_`{|}~-]";
const LOCAL_PART = new RegExp(`^${ATEXT}+(?:\\.${ATEXT}+)*$`, 'u');
const LABEL = '[\\p{L}\\p{N}](?:[\\p{L}\\p{M}\\p{N}-]{0,61}[\\p{L}\\p{M}\\p{N}])?';
const DOMAIN = new RegExp(`^(?:${LABEL}\\.)+\\p{L}(?:[\\p{L}\\p{M}\\p{N}-]{0,61}[\\p{L}\\p{M}\\p{N}])?$`, 'u');
const ASCII = /^[\x00-\x7f]*$/;

/**
 * A phone number as libphonenumber alone decides it (the path before the fast path existed, and
 * the rest of the numbers since): also the oracle the fast path is tested and measured against.
 */
export function phoneByLibrary(raw: { phoneNumber: string; defaultRegion?: string }, field: string): IdentifierRef | FieldViolation {
  const region = raw.defaultRegion?.trim().toUpperCase();
  if (region && !REGION.test(region)) {
    return violationOf(field, 'default_region', 'INVALID_REGION', 'must be an ISO 3166-1 alpha-2 code such as "DE"');
  }
  const parsed = acceptablePhone(raw.phoneNumber) ? parsePhoneNumberFromString(raw.phoneNumber, region as CountryCode | undefined) : undefined;
  if (!parsed || !parsed.isValid()) {
    return violationOf(
      field,
      'phone_number',
      'INVALID_PHONE_NUMBER',
      region || raw.phoneNumber.trim().startsWith('+')
        ? 'is not a valid phone number'
        : 'is not a valid phone number in international format (+country code); set default_region for national numbers',
    );
  }
  return { kind: 'PHONE', value: parsed.number };
}

export function isViolation(value: IdentifierRef | FieldViolation): value is FieldViolation {
  return (value as FieldViolation).field !== undefined;
}
