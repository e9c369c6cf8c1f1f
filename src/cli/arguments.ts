import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { SubjectIdentifier } from '../gen/consent/v1/common';
import { isViolation, normaliseIdentifier } from '../domain/identifiers';
import { PURPOSE_ID, TENANT_ID } from '../domain/resource-names';
import { usageError } from './exit-codes';

/**
 * consentctl's checks of its arguments, made before anything is sent: each returns the value to
 * send or throws a usage error (exit 2) that names the option. Messages never repeat a value that
 * may be personal data (phone numbers, e-mail addresses).
 */

export function tenantName(tenant: string): string {
  if (!TENANT_ID.test(tenant)) throw usageError('--tenant must be a tenant id such as "acme" (3-63 characters: a-z, 0-9, -, starting with a letter)');
  return `tenants/${tenant}`;
}

/** `tenants/{tenant}/{collection}/{32 hex digits}`, as the service names requests and legal holds. */
export function childName(name: string, collection: 'requests' | 'legalHolds' | 'restrictions' | 'identityLinks', what: string): string {
  const m = new RegExp(`^tenants/([^/]+)/${collection}/[0-9a-f]{32}$`).exec(name);
  if (!m || !TENANT_ID.test(m[1])) throw usageError(`${what} must be a name such as tenants/acme/${collection}/0123456789abcdef0123456789abcdef (as printed when it was made)`);
  return name;
}

/** The tenant part of a checked request name. */
export function tenantOf(name: string): string {
  return name.split('/').slice(0, 2).join('/');
}

export function subjectName(name: string, flag: string): string {
  const m = /^tenants\/([^/]+)\/subjects\/[0-9a-f]{32}$/.exec(name);
  if (!m || !TENANT_ID.test(m[1])) throw usageError(`${flag} must be a subject name such as tenants/acme/subjects/<32 hex digits>`);
  return name;
}

export function purposeId(id: string, flag: string, allowAll = false): string {
  if (allowAll && id === '-') return id;
  if (!PURPOSE_ID.test(id)) throw usageError(`${flag} must be a purpose id such as "newsletter"${allowAll ? ' (or "-" for all-purpose events)' : ''}`);
  return id;
}

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw usageError(`${flag} must be a positive whole number`);
  return n;
}

export function nonNegativeInt(value: string, flag: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw usageError(`${flag} must be a whole number, 0 or more`);
  return n;
}

/** An ISO 8601 time with a date (2026-11-25, 2026-11-25T10:00:00Z); a bare date is midnight UTC. */
export function isoTime(value: string, flag: string): Date {
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(value.trim()) || Number.isNaN(d.getTime())) {
    throw usageError(`${flag} must be an ISO 8601 time such as 2026-11-25T10:00:00Z`);
  }
  return d;
}

/** Text the service requires (a reason, a note, a staff reference): not blank, at most `max` characters. */
export function requiredText(value: string, flag: string, max: number): string {
  if (value.trim().length === 0) throw usageError(`${flag} must not be empty`);
  if (value.length > max) throw usageError(`${flag} must be at most ${max} characters`);
  return value;
}

/**
 * A short code the service records as given (a verification or notice method, a report's source):
 * 1-64 characters of A-Z a-z 0-9 _ . : -, as the service checks it.
 */
export function codeText(value: string, flag: string, example: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(value)) throw usageError(`${flag} must be 1-64 characters of A-Z a-z 0-9 _ . : -, e.g. ${example}`);
  return value;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** An idempotency key as every write method accepts it; default: a fresh random one. */
export function requestId(value: string | undefined): string {
  if (value === undefined) return `consentctl-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
  if (!REQUEST_ID.test(value)) throw usageError('--request-id must be 1-128 characters of A-Z a-z 0-9 . _ : -');
  return value;
}

export interface IdentifierOptions {
  phone?: string;
  email?: string;
  customerId?: string;
  region?: string;
}

export function hasIdentifier(o: IdentifierOptions): boolean {
  return Boolean(o.phone || o.email || o.customerId);
}

/** Exactly one of --phone, --email, --customer-id, checked as the service would check it. */
export function identifier(o: IdentifierOptions): SubjectIdentifier {
  const given = [o.phone, o.email, o.customerId].filter((v) => v !== undefined).length;
  if (given !== 1) throw usageError('give exactly one of --phone, --email, --customer-id');
  if (o.region !== undefined && o.phone === undefined) throw usageError('--region only goes with --phone');
  const checked = normaliseIdentifier({ phoneNumber: o.phone, email: o.email, customerId: o.customerId, defaultRegion: o.region }, 'identifier');
  if (isViolation(checked)) {
    const flag = { 'identifier.phone_number': '--phone', 'identifier.default_region': '--region', 'identifier.email': '--email', 'identifier.customer_id': '--customer-id' }[checked.field] ?? checked.field;
    throw usageError(`${flag} ${checked.description.replace('set default_region', 'give --region')}`);
  }
  const kind = o.phone !== undefined
    ? { $case: 'phoneNumber' as const, value: o.phone }
    : o.email !== undefined
      ? { $case: 'email' as const, value: o.email }
      : { $case: 'customerId' as const, value: o.customerId! };
  return { kind, defaultRegion: o.region ?? '' };
}

/** A proto enum value from its short name: `--kind access` -> REQUEST_KIND_ACCESS. */
export function enumValue<E extends Record<string, string | number>>(e: E, prefix: string, value: string, flag: string): E[keyof E] {
  const key = `${prefix}${value.toUpperCase().replace(/-/g, '_')}`;
  if (!(key in e) || key.endsWith('_UNSPECIFIED') || key === 'UNRECOGNIZED') {
    const choices = Object.keys(e).filter((k) => k.startsWith(prefix) && !k.endsWith('UNSPECIFIED')).map((k) => k.slice(prefix.length).toLowerCase().replace(/_/g, '-'));
    throw usageError(`${flag} must be one of ${choices.join(', ')}`);
  }
  return e[key as keyof E];
}

/** The content of a file an option names; unreadable is a usage error. */
export function readableFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw usageError(`${flag}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** A pinned JWK set (from `audit keys --out`): readable JSON with at least one key. */
export function jwksFile(file: string, flag = '--jwks'): string {
  const text = readableFile(file, flag);
  let keys: unknown;
  try {
    keys = (JSON.parse(text) as { keys?: unknown }).keys;
  } catch {
    throw usageError(`${flag}: ${file} is not JSON (expected a JWK set, as written by audit keys --out)`);
  }
  if (!Array.isArray(keys) || keys.length === 0) throw usageError(`${flag}: ${file} is not a JWK set with at least one key (as written by audit keys --out)`);
  return text;
}

/** A file about to be written: its folder must exist and be writable, so nothing is fetched in vain. */
export function writableFile(file: string, flag: string): string {
  const dir = path.dirname(path.resolve(file));
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw usageError(`${flag}: cannot write into ${dir} (missing or not writable)`);
  }
  if (existsSync(file) && statSync(file).isDirectory()) throw usageError(`${flag}: ${file} is a folder, not a file`);
  return file;
}

/** A folder about to be filled: existing and writable, or creatable (its parent writable). */
export function writableFolder(dir: string, flag: string): string {
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw usageError(`${flag}: ${dir} is a file, not a folder`);
    try {
      accessSync(dir, constants.W_OK);
    } catch {
      throw usageError(`${flag}: ${dir} is not writable`);
    }
    return dir;
  }
  let parent = path.dirname(path.resolve(dir));
  while (!existsSync(parent)) parent = path.dirname(parent);
  try {
    accessSync(parent, constants.W_OK);
  } catch {
    throw usageError(`${flag}: cannot create ${dir} (${parent} is not writable)`);
  }
  return dir;
}

/** --address: host:port (or a grpc-js target such as unix:/path, dns:host:port). */
export function address(value: string): string {
  if (/^(unix|unix-abstract|dns|ipv4|ipv6):\S+$/.test(value)) return value;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw usageError(`--address must be host:port, such as 127.0.0.1:50051 (got "${value}")`);
  return value;
}

/**
 * One identifier written as kind:value ("phone:+4915112345678", "email:ada@example.com",
 * "customer:C-42"), for commands that take two (consentctl link --first, --second); checked as
 * the service would check it. `region` reads a national phone number.
 */
export function taggedIdentifier(value: string, flag: string, region: string | undefined): SubjectIdentifier {
  const m = /^(phone|email|customer):(.*)$/s.exec(value);
  if (!m) throw usageError(`${flag} must be phone:<number>, email:<address> or customer:<id>`);
  const [, kind, raw] = m;
  const o: IdentifierOptions = kind === 'phone' ? { phone: raw, region } : kind === 'email' ? { email: raw } : { customerId: raw };
  try {
    return identifier(o);
  } catch (err) {
    // The flag of the pair, not --phone/--email (which this command has not).
    if (err instanceof Error) err.message = err.message.replace(/^--(phone|email|customer-id)\b/, flag);
    throw err;
  }
}
