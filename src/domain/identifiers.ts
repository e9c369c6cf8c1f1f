import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { FieldViolation } from '../shared/errors';
import { IdentifierRef } from './model';
import { fastE164 } from './phone-fast-path';

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

/**
 * Normalises an identifier so that every spelling of the same person finds the same subject:
 * phone numbers to E.164 (libphonenumber's full metadata, so only numbers that can exist pass),
 * e-mail addresses trimmed and lower-cased, customer ids trimmed.
 * Violations name the field, never the value: the value is personal data.
 */
export function normaliseIdentifier(raw: RawIdentifier | undefined, field: string): IdentifierRef | FieldViolation {
  const violation = (sub: string, reason: string, description: string): FieldViolation => ({
    field: sub ? `${field}.${sub}` : field,
    reason,
    description,
  });
  if (!raw) return violation('', 'REQUIRED', 'a subject identifier is required');
  if (raw.phoneNumber !== undefined) {
    const region = raw.defaultRegion?.trim().toUpperCase();
    if (region && !/^[A-Z]{2}$/.test(region)) {
      return violation('default_region', 'INVALID_REGION', 'must be an ISO 3166-1 alpha-2 code such as "DE"');
    }
    // libphonenumber extracts a number from surrounding text ("call me at +49 ..."); an
    // identifier must be a number and nothing else, so anything but digits and the usual
    // separators is refused before parsing.
    const acceptable = raw.phoneNumber.length <= 64 && PHONE_CHARACTERS.test(raw.phoneNumber);
    // Most numbers arrive in international form; the fast path answers those it can prove valid
    // at a fraction of libphonenumber's cost (phone-fast-path.ts), the library decides the rest.
    const fast = acceptable ? fastE164(raw.phoneNumber) : undefined;
    if (fast !== undefined) return { kind: 'PHONE', value: fast };
    const parsed = acceptable ? parsePhoneNumberFromString(raw.phoneNumber, region as CountryCode | undefined) : undefined;
    if (!parsed || !parsed.isValid()) {
      return violation(
        'phone_number',
        'INVALID_PHONE_NUMBER',
        region || raw.phoneNumber.trim().startsWith('+')
          ? 'is not a valid phone number'
          : 'is not a valid phone number in international format (+country code); set default_region for national numbers',
      );
    }
    return { kind: 'PHONE', value: parsed.number };
  }
  if (raw.email !== undefined) {
    const value = raw.email.trim().toLowerCase();
    if (value.length > MAX_IDENTIFIER_LENGTH || !EMAIL.test(value)) {
      return violation('email', 'INVALID_EMAIL', 'is not an e-mail address');
    }
    return { kind: 'EMAIL', value };
  }
  if (raw.customerId !== undefined) {
    const value = raw.customerId.trim();
    if (value.length === 0 || value.length > 128) {
      return violation('customer_id', 'INVALID_CUSTOMER_ID', 'must be 1 to 128 characters');
    }
    return { kind: 'CUSTOMER_ID', value };
  }
  return violation('', 'REQUIRED', 'set one of phone_number, email, customer_id');
}

export function isViolation(value: IdentifierRef | FieldViolation): value is FieldViolation {
  return (value as FieldViolation).field !== undefined;
}
