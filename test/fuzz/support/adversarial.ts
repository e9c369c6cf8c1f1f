import { clone, create, DescEnum, DescField, DescMessage, Message, ScalarType, toBinary } from '@bufbuild/protobuf';
import { namePatterns } from './arbitraries';

/**
 * Adversarial variants of one request, derived from its descriptor: for every field (recursively
 * into nested messages, oneofs, lists and maps) the values of its type a careless parser trips
 * over, each set alone on a request the server accepts, so a variant's outcome is about that one
 * field. No randomness: the same descriptors and base request give the same variants.
 */

/** One field of a request set to one adversarial value. */
export interface Variant {
  /** The field's path as field violations name it: "query.subject_identifier.phone_number", "queries[0].at". */
  field: string;
  /** The value, readable and short: '70 kB of "a"', 'nanos -5', 'enum 99'. */
  value: string;
  /**
   * The value is wrong in itself, whatever the other fields hold (an unknown enum number, a time
   * outside google.protobuf.Timestamp, a malformed name, a page token the server did not hand out
   * for this listing): the call must be INVALID_ARGUMENT naming this field.
   */
  invalid: boolean;
  /** Sets the value on a copy of the base request. */
  edit(root: Message): void;
}

/** What the values are made from: the caller's tenant, another one, and real names and tokens. */
export interface AdversarialContext {
  /** The tenant the caller may act for ("acme"). */
  own: string;
  /** A tenant that exists but is not the caller's. */
  other: string;
  /** A tenant that does not exist. */
  missing: string;
  /** Valid resource names of the own tenant; name fields draw a default of the documented pattern from them. */
  names: string[];
  /** Real page tokens of the own tenant, by request type ("consent.v1.ListPurposesRequest"). */
  ownTokens: Record<string, string>;
  /** Real page tokens of the other tenant, by request type. */
  otherTokens: Record<string, string>;
  /** Real change-feed cursors of the own and of the other tenant. */
  ownCursors: string[];
  otherCursors: string[];
}

/** How many items "thousands of items" is: beyond every documented list limit (batch 1,000). */
export const MANY = 2000;

/**
 * Four bytes no valid UTF-8 string holds, stand-in for one protobuf string value: protobuf-es
 * encodes only valid UTF-8, so the request is encoded with this marker and the marker's bytes are
 * then replaced (same length, so every length prefix stays right) by `withInvalidUtf8`.
 */
const INVALID_UTF8_MARKER = '\u0007\u0007\u0007\u0007';
const INVALID_UTF8_BYTES = Buffer.from([0xff, 0xfe, 0xc0, 0x80]);

/** The encoded request, with every invalid-UTF-8 marker replaced by invalid UTF-8 bytes. */
export function encodeVariant(desc: DescMessage, message: Message): Buffer {
  const bytes = Buffer.from(toBinary(desc, message as never));
  const marker = Buffer.from(INVALID_UTF8_MARKER, 'utf8');
  for (let at = bytes.indexOf(marker); at >= 0; at = bytes.indexOf(marker, at + marker.length)) INVALID_UTF8_BYTES.copy(bytes, at);
  return bytes;
}

/** Every variant of `base` (a message of `desc`): see the module comment. */
export function adversarialVariants(desc: DescMessage, base: Message, ctx: AdversarialContext): Variant[] {
  const variants: Variant[] = [];
  // What the base holds at a path is read from a copy: reaching into a message creates sub-messages.
  const probe = () => clone(desc, base as never) as Message;
  walk(desc, '', (root) => root as unknown as Record<string, unknown>, probe, ctx, 0, variants);
  // A Create request's resource has no name yet: the server ignores the one given (AIP-133).
  if (/\.Create\w+Request$/.test(desc.typeName)) for (const v of variants) if (/\.name$/.test(v.field)) v.invalid = false;
  return variants;
}

/** `base` with `variant` applied, as a new message. */
export function applyVariant(desc: DescMessage, base: Message, variant: Variant | null): Message {
  const copy = clone(desc, base as never) as Message;
  variant?.edit(copy);
  return copy;
}

type Reach = (root: Message) => Record<string, unknown>;

interface Value {
  label: string;
  value: unknown;
  /** Wrong in itself: see Variant.invalid. */
  invalid?: boolean;
}

/** Times of a resource the server sets (AIP-203 output only): ignored in requests. */
const OUTPUT_ONLY = /^(create|update|record)_time$/;

const MAX_DEPTH = 4;

function walk(desc: DescMessage, prefix: string, reach: Reach, probe: () => Message, ctx: AdversarialContext, depth: number, out: Variant[]): void {
  const baseMessage = reach(probe());
  for (const oneof of desc.oneofs) {
    out.push({ field: `${prefix}${oneof.name}`, value: 'no case set', invalid: false, edit: (root) => void (reach(root)[oneof.localName] = { case: undefined }) });
  }
  for (const field of desc.fields) {
    const path = `${prefix}${field.name}`;
    const set = (root: Message, value: unknown) => {
      const m = reach(root);
      if (field.oneof) m[field.oneof.localName] = { case: field.localName, value };
      else m[field.localName] = value;
    };
    const current = (m: Record<string, unknown> | undefined): unknown => {
      if (!m) return undefined;
      if (!field.oneof) return m[field.localName];
      const o = m[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      return o?.case === field.localName ? o.value : undefined;
    };
    const push = (values: Value[]) => {
      for (const v of values) out.push({ field: path, value: v.label, invalid: v.invalid === true, edit: (root) => set(root, v.value) });
    };
    const plain = (value: string, edit: (root: Message) => void, at = path): Variant => ({ field: at, value, invalid: false, edit });
    switch (field.fieldKind) {
      case 'scalar':
        push(scalarValues(field, field.scalar, current(baseMessage), ctx, desc));
        break;
      case 'enum':
        push(enumValues(field.enum));
        break;
      case 'message': {
        const wkt = wellKnownValues(field.message);
        if (wkt) {
          // Output-only times of a resource in a request are ignored (AIP-203), valid or not.
          const ignored = OUTPUT_ONLY.test(field.name);
          push(wkt.map((v) => ({ label: v.label, value: create(field.message, v.value as never), invalid: v.invalid && !ignored })));
          out.push(plain('unset', (root) => set(root, undefined)));
          break;
        }
        out.push(plain('unset', (root) => set(root, undefined)));
        out.push(plain('empty message', (root) => set(root, create(field.message))));
        if (depth >= MAX_DEPTH) break;
        // Deeper fields are set on the base's sub-message, or on a new empty one.
        const inner: Reach = (root) => {
          const m = reach(root);
          let sub = current(m) as Message | undefined;
          if (!sub) {
            sub = create(field.message);
            set(root, sub);
          }
          return sub as unknown as Record<string, unknown>;
        };
        walk(field.message, `${path}.`, inner, probe, ctx, depth + 1, out);
        break;
      }
      case 'list': {
        const items = (current(baseMessage) as unknown[] | undefined) ?? [];
        const list = (root: Message) => reach(root)[field.localName] as unknown[];
        out.push(plain('empty list', (root) => void (reach(root)[field.localName] = [])));
        if (field.listKind === 'message') {
          const item = () => (items[0] ? clone(field.message, items[0] as never) : create(field.message));
          out.push(plain(`${MANY} items`, (root) => void (reach(root)[field.localName] = Array.from({ length: MANY }, item))));
          if (depth >= MAX_DEPTH) break;
          // The fields of the first item (made if the base has none).
          const first: Reach = (root) => {
            const l = list(root);
            if (l.length === 0) l.push(create(field.message));
            return l[0] as Record<string, unknown>;
          };
          walk(field.message, `${path}[0].`, first, probe, ctx, depth + 1, out);
        } else {
          const values = field.listKind === 'enum' ? enumValues(field.enum) : scalarValues(field, field.scalar, undefined, ctx, desc);
          const filler = items[0] ?? (field.listKind === 'enum' ? 1 : listFiller(field, field.scalar));
          out.push(plain(`${MANY} items`, (root) => void (reach(root)[field.localName] = Array.from({ length: MANY }, () => filler))));
          // One bad item after the good ones: the violation names it by index.
          for (const v of values) out.push({ field: `${path}[${items.length}]`, value: v.label, invalid: v.invalid === true, edit: (root) => void list(root).push(v.value) });
        }
        break;
      }
      case 'map': {
        const entries = (current(baseMessage) as Record<string, unknown> | undefined) ?? {};
        const map = (root: Message) => reach(root)[field.localName] as Record<string, unknown>;
        const keyField = { ...field, name: `${field.name}.key` } as DescField;
        const goodValue = (): unknown => {
          const first = Object.values(entries)[0];
          if (field.mapKind === 'message') return first ? clone(field.message, first as never) : create(field.message, mapValueFiller(field.message) as never);
          return first ?? (field.mapKind === 'enum' ? 1 : listFiller(field, field.scalar));
        };
        const goodKey = Object.keys(entries)[0] ?? mapKeyFiller(field);
        out.push(plain('empty map', (root) => void (reach(root)[field.localName] = {})));
        out.push(plain(`${MANY} entries`, (root) => void (reach(root)[field.localName] = Object.fromEntries(Array.from({ length: MANY }, (_, i) => [`${goodKey}-${i}`, goodValue()])))));
        for (const k of scalarValues(keyField, field.mapKey, undefined, ctx, desc)) {
          out.push(plain(k.label, (root) => void (map(root)[String(k.value)] = goodValue()), `${path}[key]`));
        }
        const valuePath = `${path}[${JSON.stringify(goodKey)}]`;
        if (field.mapKind === 'message') {
          const wkt = wellKnownValues(field.message);
          const values = wkt ?? [];
          for (const v of values) out.push({ field: valuePath, value: v.label, invalid: v.invalid === true, edit: (root) => void (map(root)[goodKey] = create(field.message, v.value as never)) });
          out.push(plain('empty message', (root) => void (map(root)[goodKey] = create(field.message)), valuePath));
        } else {
          const values = field.mapKind === 'enum' ? enumValues(field.enum) : scalarValues(field, field.scalar, undefined, ctx, desc);
          for (const v of values) out.push({ field: valuePath, value: v.label, invalid: v.invalid === true, edit: (root) => void (map(root)[goodKey] = v.value) });
        }
        break;
      }
    }
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Values of a scalar field: the generic ones of its type, and for strings the ones its name calls for. */
function scalarValues(field: DescField, scalar: ScalarType, current: unknown, ctx: AdversarialContext, message: DescMessage): Value[] {
  switch (scalar) {
    case ScalarType.STRING:
      return [...specificStrings(field, typeof current === 'string' ? current : '', ctx, message), ...GENERIC_STRINGS];
    case ScalarType.BYTES:
      return [
        { label: 'empty bytes', value: new Uint8Array(0) },
        { label: '70 kB of zero bytes', value: new Uint8Array(70_000) },
      ];
    case ScalarType.BOOL:
      return [
        { label: 'true', value: true },
        { label: 'false', value: false },
      ];
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return [NaN, Infinity, -Infinity, -0, 1e308].map((v) => ({ label: String(v), value: v }));
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      // A negative page size is INVALID_ARGUMENT (AIP-158); a huge one is capped.
      return [0, 1, -1, 1001, 1_000_000, 2 ** 31 - 1, -(2 ** 31)].map((v) => ({ label: `${v}`, value: v, invalid: field.name === 'page_size' && v < 0 }));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return [0, 1, 1001, 2 ** 32 - 1].map((v) => ({ label: `${v}`, value: v }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64Values([0n, 1n, MAX_SAFE, MAX_SAFE + 2n, 2n ** 64n - 1n], field);
    default:
      return int64Values([0n, 1n, -1n, 2n ** 31n, MAX_SAFE, -MAX_SAFE, MAX_SAFE + 2n, 2n ** 63n - 1n, -(2n ** 63n)], field);
  }
}

function int64Values(values: bigint[], field: DescField): Value[] {
  const asString = 'longAsString' in field && field.longAsString === true;
  // ts-proto reads 64-bit integers as JS numbers: beyond 2^53 they cannot be read exactly.
  return values.map((v) => {
    const unsafe = v > MAX_SAFE || v < -MAX_SAFE;
    return { label: unsafe ? `${v} (beyond 2^53)` : `${v}`, value: asString ? v.toString() : v, invalid: unsafe };
  });
}

/** Strings no parser expects, for every string field. */
const GENERIC_STRINGS: Value[] = [
  { label: 'empty string', value: '' },
  { label: 'a blank', value: ' ' },
  { label: 'NUL', value: '\u0000' },
  { label: 'NUL inside', value: 'a\u0000b' },
  { label: 'controls and a bidi override', value: '\u0001\u001b[31m\u202eevil\u202c' },
  { label: 'invalid UTF-8', value: INVALID_UTF8_MARKER },
  { label: 'SQL', value: "'; DROP TABLE tenants; --" },
  { label: 'a path', value: '../../../etc/passwd' },
  { label: '64 KiB of 4-byte emoji', value: '😀'.repeat(16_384) },
  { label: '70 kB of "a"', value: 'a'.repeat(70_000) },
  { label: '1 MB of "a"', value: 'a'.repeat(1_048_576) },
];

/** Strings for what the field holds: resource names, page tokens, cursors, tenant ids. */
function specificStrings(field: DescField, current: string, ctx: AdversarialContext, message: DescMessage): Value[] {
  const patterns = field.fieldKind === 'map' ? [] : namePatterns(field);
  const name = current || ctx.names.find((n) => patterns.some((p) => p.test(n))) || '';
  if (patterns.length > 0 || /^(parent|name)$/.test(field.name)) return nameStrings(name || `tenants/${ctx.own}`, ctx);
  if (field.name === 'page_token') {
    const own = ctx.ownTokens[message.typeName];
    const ownOthers = Object.entries(ctx.ownTokens).filter(([k]) => k !== message.typeName).map(([, t]) => t);
    const otherTenant = ctx.otherTokens[message.typeName];
    return tokenStrings(own, otherTenant, [...ownOthers, ...ctx.ownCursors]);
  }
  if (field.name === 'cursor') return tokenStrings(ctx.ownCursors[0], ctx.otherCursors[0], Object.values(ctx.ownTokens));
  if (/(^|_)tenant_id$/.test(field.name)) {
    return [
      { label: 'the other tenant', value: ctx.other },
      { label: 'a missing tenant', value: ctx.missing },
      { label: 'upper case', value: ctx.own.toUpperCase(), invalid: true },
      { label: 'a name, not an id', value: `tenants/${ctx.own}`, invalid: true },
      { label: '64 characters', value: `a${'b'.repeat(63)}`, invalid: true },
    ];
  }
  return [];
}

function nameStrings(name: string, ctx: AdversarialContext): Value[] {
  const segments = name.split('/');
  const swapTenant = (tenant: string) => name.replace(/^tenants\/[^/]+/, `tenants/${tenant}`);
  // Well-formed names of what the caller may not see or what does not exist: NOT_FOUND, or
  // INVALID_ARGUMENT when another field names the caller's own tenant.
  const values: Value[] = [
    { label: "the other tenant's", value: swapTenant(ctx.other) },
    { label: "a missing tenant's", value: swapTenant(ctx.missing) },
  ];
  // Malformed names.
  const malformed: Value[] = [
    { label: 'extra segments', value: `${name}/extra/segments` },
    { label: 'a trailing slash', value: `${name}/` },
    { label: 'upper case', value: name.toUpperCase() },
    { label: 'tenant "*"', value: swapTenant('*') },
    { label: 'an empty tenant', value: name.replace(/^tenants\/[^/]+/, 'tenants/') },
    { label: 'percent-encoded', value: name.split('/').join('%2F') },
    { label: 'a leading blank', value: ` ${name}` },
    { label: '..', value: `${name}/../..` },
  ];
  if (segments.length >= 4) {
    // tenants/{t}/{collection}/{id}...: another collection, the parent alone, a missing id, and
    // ids no resource has. Ids the service assigned are opaque to callers: one it never assigned
    // may be answered as malformed or as missing (NOT_FOUND with what ids look like).
    malformed.push({ label: 'a wrong collection', value: [...segments.slice(0, -2), 'widgets', segments[segments.length - 1]].join('/') });
    values.push({ label: 'a malformed id', value: [...segments.slice(0, -1), 'not an id!'].join('/') });
    values.push({ label: 'a query string after the id', value: `${name}?x=1` });
    values.push({ label: 'the parent, not the resource', value: segments.slice(0, -2).join('/') });
    values.push({ label: 'a missing id', value: [...segments.slice(0, -1), '0123456789abcdef0123456789abcdef'].join('/') });
  } else {
    malformed.push({ label: 'a wrong collection', value: name.replace(/^tenants\//, 'widgets/') });
    malformed.push({ label: 'a query string', value: `${name}?x=1` });
    values.push({ label: 'a child, not the resource', value: `${name}/purposes/newsletter` });
    values.push({ label: 'a settings name', value: `${name}/settings` });
  }
  // "-" is the wildcard of AIP-159 (reading across parents), which no method here offers.
  values.push({ label: 'tenant "-"', value: swapTenant('-') });
  return [...values, ...malformed.map((v) => ({ ...v, invalid: true }))];
}

/**
 * Page tokens and cursors the server did not hand out for this listing of this tenant: garbage,
 * real ones cut short or altered, the other tenant's, and real ones of other listings. Each one
 * is INVALID_ARGUMENT (AIP-158). `own` itself, a real one of this listing, is the control.
 */
function tokenStrings(own: string | undefined, otherTenant: string | undefined, otherKinds: string[]): Value[] {
  const values: Value[] = [
    { label: 'garbage', value: 'garbage!!' },
    { label: 'short base64', value: 'AAAA' },
    { label: 'base64 JSON with a negative offset', value: Buffer.from('{"o":-1,"s":-1}').toString('base64url') },
    { label: 'a JWE-shaped token', value: 'eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAA.AAAA.AAAA' },
  ];
  if (own) {
    values.push({ label: 'a real token cut short', value: own.slice(0, -4) });
    values.push({ label: 'a real token with a flipped character', value: flip(own) });
  }
  if (otherTenant) values.push({ label: "the other tenant's token of this listing", value: otherTenant });
  for (const [i, t] of otherKinds.entries()) values.push({ label: `a real token of another listing (${i})`, value: t });
  return [...values.map((v) => ({ ...v, invalid: true })), ...(own ? [{ label: 'a real token of this listing', value: own }] : [])];
}

function flip(token: string): string {
  const i = Math.floor(token.length / 2);
  return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
}

/** Unknown numbers of an enum (INVALID_ARGUMENT), and its zero value. */
function enumValues(desc: DescEnum): Value[] {
  const max = Math.max(...desc.values.map((v) => v.number));
  return [
    ...[99, -1, max + 1, 2 ** 31 - 1, -(2 ** 31)].map((n) => ({ label: `enum ${n}`, value: n, invalid: true })),
    { label: 'enum 0 (unspecified)', value: 0 },
  ];
}

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of google.protobuf.Timestamp. */
const MIN_TIMESTAMP = -62_135_596_800n;
const MAX_TIMESTAMP = 253_402_300_799n;
/** ±10,000 years: the range of google.protobuf.Duration. */
const MAX_DURATION = 315_576_000_000n;

/** Values of google.protobuf.Timestamp and Duration (other messages: none, they are walked into). */
function wellKnownValues(desc: DescMessage): Value[] | null {
  const now = BigInt(Math.floor(Date.now() / 1000));
  if (desc.typeName === 'google.protobuf.Timestamp') {
    const bad = (label: string, seconds: bigint, nanos = 0): Value => ({ label, value: { seconds, nanos }, invalid: true });
    return [
      bad('nanos -5', now, -5),
      bad('nanos 1e9', now, 1_000_000_000),
      bad('nanos 2^31-1', now, 2 ** 31 - 1),
      bad('year 10000', MAX_TIMESTAMP + 1n),
      bad('before year 1', MIN_TIMESTAMP - 1n),
      bad('seconds 2^53-1', MAX_SAFE),
      bad('seconds beyond 2^53', MAX_SAFE + 2n),
      bad('seconds -2^63', -(2n ** 63n)),
      { label: 'year 1 (the minimum)', value: { seconds: MIN_TIMESTAMP, nanos: 0 } },
      { label: '9999-12-31T23:59:59.999999999Z (the maximum)', value: { seconds: MAX_TIMESTAMP, nanos: 999_999_999 } },
      { label: 'the epoch', value: { seconds: 0n, nanos: 0 } },
      { label: 'one second before the epoch', value: { seconds: -1n, nanos: 0 } },
      { label: 'a century from now', value: { seconds: now + 100n * 365n * 86_400n, nanos: 0 } },
    ];
  }
  if (desc.typeName === 'google.protobuf.Duration') {
    const bad = (label: string, seconds: bigint, nanos = 0): Value => ({ label, value: { seconds, nanos }, invalid: true });
    return [
      bad('beyond 10,000 years', MAX_DURATION + 1n),
      bad('beyond -10,000 years', -MAX_DURATION - 1n),
      bad('1 s with nanos -5 (signs differ)', 1n, -5),
      bad('-1 s with nanos 5 (signs differ)', -1n, 5),
      bad('nanos 1e9', 0n, 1_000_000_000),
      bad('seconds 2^53-1', MAX_SAFE),
      bad('seconds beyond 2^53', MAX_SAFE + 2n),
      bad('seconds 2^63-1', 2n ** 63n - 1n),
      { label: '-1 s', value: { seconds: -1n, nanos: 0 } },
      { label: '0 s', value: { seconds: 0n, nanos: 0 } },
      { label: '1 s', value: { seconds: 1n, nanos: 0 } },
    ];
  }
  return null;
}

/** A plausible item for a list (or map value) the base leaves empty. */
function listFiller(field: DescField, scalar: ScalarType | undefined): unknown {
  switch (scalar) {
    case undefined:
    case ScalarType.STRING:
      break;
    case ScalarType.BOOL:
      return true;
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return 'longAsString' in field && field.longAsString === true ? '12' : 12n;
    default:
      return 12;
  }
  if (field.name === 'paths') return 'service_window';
  if (field.name === 'entry_types') return 'CONSENT_EVENT_OPT_IN';
  if (/keywords$/.test(field.name)) return 'STOP';
  return 'x';
}

function mapKeyFiller(field: DescField): string {
  return field.name.startsWith('purpose_consent_validity') ? 'newsletter' : 'key';
}

function mapValueFiller(desc: DescMessage): Record<string, unknown> {
  return desc.typeName === 'google.protobuf.Duration' ? { seconds: 86_400n * 365n, nanos: 0 } : {};
}
