import { EOL } from 'node:os';
import { isIPv6 } from 'node:net';
import winston from 'winston';

/**
 * JSON-lines logger. Callers log ids, codes and durations only: personal data (identifiers,
 * IPs, message texts) never reaches a log line; test/e2e/privacy.test.ts plants some and looks.
 * As a second line of defence, every entry passes `redactPersonalData` before any transport,
 * for what slips through anyway (a driver error quoting a value, a peer address in a stack);
 * test/unit/log-redaction.test.ts covers it.
 */
export type Logger = winston.Logger;

export function createLogger(level: string, stream?: NodeJS.WritableStream): Logger {
  const transport = stream ? new winston.transports.Stream({ stream }) : new winston.transports.Console();
  const logger = winston.createLogger({
    level,
    // Redaction first: it then never scans the timestamp, and later formats write onto its copy.
    format: winston.format.combine(redactPersonalData(), winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: SERVICE },
    transports: [transport],
  });
  callLineSinks.set(logger, { transport, stream: stream ?? null });
  return logger;
}

const SERVICE = 'consent-ledger';

/** The one line `info` writes for every answered call (call-pipeline.ts). */
export interface CallLine {
  method: string;
  code: string;
  reason: string;
  duration_ms: number;
  request_id: string;
  principal?: string;
}

/**
 * Where createLogger's loggers write (null: the console's stdout, as winston's Console
 * transport). A logger made elsewhere has no entry and takes winston's way.
 */
const callLineSinks = new WeakMap<Logger, { transport: winston.transport; stream: NodeJS.WritableStream | null }>();

/**
 * Logs one call's line at `info` (the caller has checked that info is on), byte for byte the line
 * winston writes for `logger.info('rpc', line)` with createLogger's formats: the same keys in the
 * same (sorted) order, every string redacted, winston's timestamp. Not through winston: its
 * pipeline (an object-mode stream, a copy per format, redaction walking the entry, a stable
 * stringify that sorts keys) cost 25-40 µs per line here, as much as a whole no-op RPC's server
 * CPU, and at the default level every call writes one (bench: `LOG_LEVEL=info`). A logger whose
 * transports were changed after createLogger (none in the service) takes winston's way.
 */
export function logCallLine(logger: Logger, line: CallLine): void {
  const sink = callLineSinks.get(logger);
  if (sink === undefined || logger.silent || logger.transports.length !== 1 || logger.transports[0] !== sink.transport || !wellFormed(line)) {
    logger.info('rpc', line);
    return;
  }
  const principal = line.principal === undefined ? '' : `"principal":${JSON.stringify(redactedOnce(line.principal))},`;
  const text =
    `{"code":${JSON.stringify(redactString(line.code))},"duration_ms":${JSON.stringify(line.duration_ms)},"level":"info","message":"rpc",` +
    `"method":${JSON.stringify(redactString(line.method))},${principal}"reason":${JSON.stringify(redactString(line.reason))},` +
    `"request_id":${JSON.stringify(redactString(line.request_id))},"service":"${SERVICE}","timestamp":"${new Date().toISOString()}"}${EOL}`;
  if (sink.stream) sink.stream.write(text);
  else process.stdout.write(text);
}

/** Whether every field has its type (a status code outside the enum, say, is left to winston, which omits it). */
function wellFormed(line: CallLine): boolean {
  return (
    typeof line.method === 'string' &&
    typeof line.code === 'string' &&
    typeof line.reason === 'string' &&
    typeof line.duration_ms === 'number' &&
    typeof line.request_id === 'string' &&
    (line.principal === undefined || typeof line.principal === 'string')
  );
}

/** Principals repeat on every call: their redaction is remembered (bounded: principal ids are few, but a caller chooses them). */
const redactedPrincipals = new Map<string, string>();
function redactedOnce(principal: string): string {
  let redacted = redactedPrincipals.get(principal);
  if (redacted === undefined) {
    redacted = redactString(principal);
    if (redactedPrincipals.size >= 1_000) redactedPrincipals.clear();
    redactedPrincipals.set(principal, redacted);
  }
  return redacted;
}

/**
 * A winston format that replaces e-mail addresses, phone numbers and IP addresses in every string
 * of a log entry (message, nested metadata, arrays, object keys, Error messages and stacks) with
 * `[redacted:email]`, `[redacted:phone]`, `[redacted:ip]`, and bearer tokens (compact JWS/JWE, `Bearer`/`Basic`
 * credentials) with `[redacted:token]`. Numbers are left alone: durations,
 * counts and ports are numbers, and nothing personal is logged as one.
 *
 * It never changes the caller's objects. The entry gets a new top-level object (winston passes a
 * lone `logger.error(err)` argument through as the entry itself, and later formats write
 * timestamp and message onto it). Nested objects, arrays and Errors are copied only when a string
 * inside them changed. Everything else is shared.
 */
export const redactPersonalData = winston.format((info) => {
  const redacted = info instanceof Error ? redactError(info, []) : redactObject(info, []);
  if (redacted !== info) return redacted as winston.Logform.TransformableInfo;
  // Nothing to redact. Copy the entry so the formats after this one do not write onto it.
  // A plain entry (the usual case) is spread, which keeps winston's enumerable LEVEL/SPLAT symbols.
  return Object.getPrototypeOf(info) === Object.prototype
    ? { ...info }
    : Object.create(Object.getPrototypeOf(info), Object.getOwnPropertyDescriptors(info));
});

/*
 * One regex per kind, each run only when its trigger character is in the string: '@' for e-mail,
 * ':' for IPv6, '.' for IPv4, and a possible phone start for phones. V8 cannot skip ahead through
 * lookbehind-led alternatives, so a combined regex would try all of them at every position. In
 * a stack trace that is about 3x slower than running only the kinds present.
 * Order: e-mail first (the local part may look like a phone number), IPv6 before IPv4 (so
 * ::ffff:192.0.2.1 is taken whole), phone last. The placeholders match none of the patterns.
 */

/**
 * The top-level domain must start with a letter, so "winston@3.19" is not an address. A match
 * only starts where a run of local-part characters starts. Otherwise every position inside a long
 * word (a UUID, a stack line) would rescan the run to its end looking for '@'.
 */
const EMAIL = /(?<![\p{L}\p{N}._%+-])[\p{L}\p{N}._%+-]+@(?:[\p{L}\p{N}-]+\.)+\p{L}[\p{L}\p{N}-]*/gu;

/**
 * A candidate needs two colons, so "12:00" is not one; net.isIPv6 decides. It must not follow a
 * word character, ':' or '.'. So "T12:00:00" in an ISO timestamp and a stack frame's
 * line:column are never candidates. A MAC address or "12:00:00" is a candidate that isIPv6 rejects.
 */
const IPV6 = /(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?![\w:])/g;

/** Not part of a longer dotted run (OIDs, versions 1.2.3.4.5). Each octet is checked to be <= 255. */
const IPV4 = /(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)/g;

/**
 * Starts with +, 00, 0 or "(": +4915112345678, +49 151 1234 5678, +49 (0)151 12345678,
 * 0151 12345678, 0151/12345678, (030) 1234567, +1 (555) 123-4567. Later digit runs have 2+ digits
 * and follow one space, '-' or '/', or a ")". A run never directly follows another run, so a digit
 * string can be read only one way. With `(\d{2,})+` a 40-digit run followed by a letter took
 * seconds (catastrophic backtracking), and log lines can hold strings a caller chose.
 * A match must not follow a word character, '.', '+', '-' or '/' (the inside of a UUID, a decimal,
 * a date or a path). It must not end next to a letter or digit, ".digit" or "-x" (a UUID whose first
 * group is all digits, 01234567-89ab-...). So 32-hex ids, sha256 digests, ports, counts and 12.34
 * never fit. 7..15 digits are counted below.
 */
const PHONE =
  /(?<![\w.+\-/])(?:\+(?=\d)|(?=[0(]))(?:\d+|\(\+?\d{1,5}\))(?:[ \-/]?\(\d{1,5}\)|[ \-/]\d{2,}|(?<=\))\d+)*(?!\w|[.,]\d|[\-/:]\w)/g;
/** Where PHONE could start; a single scan, cheaper than PHONE itself. */
const PHONE_START = /(?<![\w.+\-/])[+(0]/;

/**
 * Our own bind addresses (loopback and "any"). They are in every startup line ("listening on
 * 127.0.0.1:50051") and identify no person, so they stay readable for operators.
 * Every other address, private ranges included, counts as personal data: it can be a client's.
 */
const OWN_ADDRESSES = new Set(['127.0.0.1', '0.0.0.0', '::1', '::']);

/** Every pattern needs a digit or '@'. Method names, codes and reasons have none and cost one scan. */
const HAS_DIGIT_OR_AT = /[\d@]/;

/** A compact JWS/JWE (a bearer token): base64url of a JSON object, which begins `eyJ`, then dot-separated parts. */
const JWT = /eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}/g;
/** An HTTP authorization value of any scheme's credentials. */
const BEARER = /\b(Bearer|Basic)[ \t]+[^\s,;]+/gi;

/** `text` with e-mail addresses, phone numbers, IPs (other than our own) and credentials replaced. */
export function redactString(text: string): string {
  // Credentials first: a token is not personal data, but it lets its reader act as its holder.
  if (text.includes('eyJ')) text = text.replace(JWT, '[redacted:token]');
  if (/bearer|basic/i.test(text)) text = text.replace(BEARER, '$1 [redacted:token]');
  if (!HAS_DIGIT_OR_AT.test(text)) return text;
  let out = text;
  if (out.includes('@')) out = out.replace(EMAIL, '[redacted:email]');
  if (out.includes(':')) out = out.replace(IPV6, (m) => (isIPv6(m) && !OWN_ADDRESSES.has(m) ? '[redacted:ip]' : m));
  if (out.includes('.')) out = out.replace(IPV4, (m) => (isOctets(m) && !OWN_ADDRESSES.has(m) ? '[redacted:ip]' : m));
  if (PHONE_START.test(out)) {
    out = out.replace(PHONE, (m) => {
      const digits = m.replace(/\D/g, '').length;
      // Fewer than 7 digits is a short code, extension or count. More than 15 does not fit E.164.
      return digits >= 7 && digits <= 15 ? '[redacted:phone]' : m;
    });
  }
  return out;
}

function isOctets(ip: string): boolean {
  return ip.split('.').every((octet) => Number(octet) <= 255);
}

/**
 * `value` with every string redacted. It returns the same reference when nothing changed.
 * `ancestors` holds the objects on the current path. A cycle becomes "[Circular]", which is also
 * what winston's JSON serialisation (safe-stable-stringify) would write there.
 */
function redactValue(value: unknown, ancestors: object[]): unknown {
  if (typeof value === 'string') return redactString(value);
  if (typeof value !== 'object' || value === null) return value;
  if (ancestors.includes(value)) return '[Circular]';
  if (Array.isArray(value)) {
    ancestors.push(value);
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const next = redactValue(value[i], ancestors);
      if (next !== value[i]) (copy ??= value.slice())[i] = next;
    }
    ancestors.pop();
    return copy ?? value;
  }
  if (value instanceof Error) return redactError(value, ancestors);
  // Dates serialise to timestamps; buffers and typed arrays to numbers.
  if (value instanceof Date || ArrayBuffer.isView(value)) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    const json: unknown = toJSON.call(value);
    const redacted = redactValue(json, ancestors);
    return redacted === json ? value : redacted;
  }
  return redactObject(value, ancestors);
}

/**
 * Own enumerable properties, redacted, and keys too (a map keyed by e-mail address would leak).
 * A copy is made only when something changed. It is plain, which serialises the same way.
 * Symbol keys (winston's LEVEL and SPLAT) are carried over as they are.
 */
function redactObject(value: object, ancestors: object[]): object {
  ancestors.push(value);
  let copy: Record<string | symbol, unknown> | undefined;
  const source = value as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    const before = source[key];
    const after = redactValue(before, ancestors);
    const newKey = redactString(key);
    if (after === before && newKey === key) continue;
    copy ??= { ...source };
    if (newKey !== key) delete copy[key];
    copy[newKey] = after;
  }
  ancestors.pop();
  return copy ?? value;
}

/**
 * Errors keep their prototype and property flags. message and stack stay non-enumerable, so the
 * JSON line looks as it did before, and a later format that reads `.stack` gets the redacted one.
 * `cause` and AggregateError's `errors` are redacted too.
 */
function redactError(error: Error, ancestors: object[]): Error {
  ancestors.push(error);
  let copy: Error | undefined;
  const keys = Reflect.ownKeys(error);
  for (const key of keys) {
    const descriptor = Object.getOwnPropertyDescriptor(error, key);
    if (!descriptor || !('value' in descriptor) || typeof key === 'symbol') continue;
    const after = redactValue(descriptor.value, ancestors);
    const newKey = redactString(key);
    if (after === descriptor.value && newKey === key) continue;
    if (!copy) {
      copy = Object.create(Object.getPrototypeOf(error)) as Error;
      for (const k of keys) Object.defineProperty(copy, k, Object.getOwnPropertyDescriptor(error, k)!);
    }
    if (newKey !== key) delete (copy as unknown as Record<string, unknown>)[key];
    Object.defineProperty(copy, newKey, { ...descriptor, value: after });
  }
  ancestors.pop();
  return copy ?? error;
}
