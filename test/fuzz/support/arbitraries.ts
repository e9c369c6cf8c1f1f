import fc from 'fast-check';
import { create, DescEnum, DescField, DescMessage, ScalarType, toBinary } from '@bufbuild/protobuf';

/**
 * Strings worth trying, by proto field name ("parent", "page_token", "phone_number"): values the
 * seeded server handed out or accepts, so random requests often pass the first checks and reach
 * real code paths. `*` holds every resource name, tried in any string field.
 */
export type Dictionary = Map<string, string[]>;

export interface ArbitraryOptions {
  /** int64 values beyond ±(2^53 - 1) (the generated decoders refuse them). Default false. */
  unsafeInt64?: boolean;
  /** How deep nested messages go. Default 4. */
  maxDepth?: number;
  /** No ~100 kB strings or 70 kB byte fields, no lists of hundreds (inside lists of hundreds of items). */
  insideLongList?: boolean;
}

/** A random message of `desc`, as a binary protobuf payload. */
export function payloadArb(desc: DescMessage, dict: Dictionary, options: ArbitraryOptions = {}): fc.Arbitrary<Buffer> {
  return messageInitArb(desc, dict, options, 0).map((init) => encode(desc, init));
}

export function encode(desc: DescMessage, init: Record<string, unknown>): Buffer {
  return Buffer.from(toBinary(desc, create(desc, init as never)));
}

const T0_SECONDS = Date.UTC(2026, 2, 1, 12, 0, 0) / 1000;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** The largest and smallest times a JS Date holds (±8.64e15 ms). */
const DATE_LIMIT_SECONDS = 8_640_000_000_000;

/** Strings no parser expects: empty, blanks, controls, bidi overrides, lone surrogates, NUL. */
const NASTY_STRINGS = [
  '',
  ' ',
  '\t\n',
  '\u0000',
  'a\u0000b',
  '\u0001\u0002\u0003\u001b[31m',
  '\u007f\u0085\u00a0',
  '\u202eevil\u202c',
  '\ufeff',
  '\ud800',
  '\udfff\ud800',
  '😀👩‍👩‍👧‍👦',
  'Ünïcödé ß İ ı',
  '日本語テキスト',
  '%00%2F..%2F',
  '../../etc/passwd',
  "'; DROP TABLE tenants; --",
  '" OR 1=1 --',
  '${jndi:ldap://x}',
  '<script>alert(1)</script>',
  '{"c":1,"s":"x"}',
  'null',
  'NaN',
  '-1',
  '9223372036854775808',
  '1e309',
  '-',
  '*',
  '/',
  '//',
  'tenants',
  'tenants/',
  'tenants//purposes/',
  'tenants/-',
  'tenants/*',
];

/** Pieces that long strings repeat (up to ~100 kB). */
const LONG_UNITS = ['a', 'é', '😀', '\u0000', 'tenants/acme/', '+49', ' ', 'STOP'];

function longString(): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...LONG_UNITS), fc.constantFrom(65, 129, 257, 1025, 4097, 65_537, 100_000))
    .map(([unit, length]) => unit.repeat(Math.ceil(length / unit.length)));
}

/** Small changes to a known-good string: another case, a suffix, a cut, a doubled slash. */
function mutated(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(base, fc.nat(9), fc.string({ maxLength: 3 })).map(([s, how, extra]) => {
    switch (how) {
      case 0:
        return s.toUpperCase();
      case 1:
        return s + extra;
      case 2:
        return extra + s;
      case 3:
        return s.slice(0, Math.max(0, s.length - 1));
      case 4:
        return s.replace('/', '//');
      case 5:
        return `${s}/`;
      case 6:
        return ` ${s} `;
      case 7:
        return s.replace(/[a-z]/, 'é');
      case 8:
        return s.replace('acme', 'globex');
      default:
        return s.replace(/[0-9a-f]$/, (c) => (c === '0' ? '1' : '0'));
    }
  });
}

function stringArb(field: DescField, dict: Dictionary, options: ArbitraryOptions): fc.Arbitrary<string> {
  const known = dict.get(field.name) ?? [];
  const names = dict.get('*') ?? [];
  const knownArb = known.length > 0 ? fc.constantFrom(...known) : null;
  const namesArb = names.length > 0 ? fc.constantFrom(...names) : null;
  const choices: Array<fc.WeightedArbitrary<string>> = [
    { weight: 2, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  ];
  if (!options.insideLongList) choices.push({ weight: 1, arbitrary: longString() });
  if (knownArb) choices.push({ weight: 10, arbitrary: knownArb }, { weight: 2, arbitrary: mutated(knownArb) });
  if (namesArb) choices.push({ weight: 2, arbitrary: namesArb }, { weight: 1, arbitrary: mutated(namesArb) });
  return fc.oneof(...choices);
}

function int32Arb(unsigned: boolean): fc.Arbitrary<number> {
  const edges = unsigned
    ? [0, 1, 2, 3, 50, 500, 501, 1000, 1001, 2 ** 31 - 1, 2 ** 32 - 1]
    : [0, 1, 2, 3, -1, -2, 50, 500, 501, 1000, 1001, 2 ** 31 - 1, -(2 ** 31)];
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...edges) },
    { weight: 2, arbitrary: fc.integer({ min: unsigned ? 0 : -5, max: 60 }) },
    { weight: 1, arbitrary: unsigned ? fc.integer({ min: 0, max: 2 ** 31 - 1 }) : fc.integer() },
  );
}

function int64Arb(unsigned: boolean, options: ArbitraryOptions): fc.Arbitrary<bigint> {
  const min = unsigned ? 0n : options.unsafeInt64 ? -(2n ** 63n) : -MAX_SAFE;
  const max = options.unsafeInt64 ? (unsigned ? 2n ** 64n - 1n : 2n ** 63n - 1n) : MAX_SAFE;
  const edges = [0n, 1n, 2n, 3n, -1n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n, -(2n ** 31n), MAX_SAFE, -MAX_SAFE, MAX_SAFE - 1n]
    .concat(options.unsafeInt64 ? [MAX_SAFE + 1n, MAX_SAFE + 2n, -MAX_SAFE - 1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n] : [])
    .filter((v) => v >= min && v <= max);
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...edges) },
    { weight: 2, arbitrary: fc.bigInt({ min: unsigned ? 0n : -5n, max: 60n }) },
    { weight: 1, arbitrary: fc.bigInt({ min, max }) },
  );
}

function scalarArb(field: DescField, scalar: ScalarType, dict: Dictionary, options: ArbitraryOptions): fc.Arbitrary<unknown> {
  const longAsString = 'longAsString' in field && field.longAsString === true;
  const int64 = (unsigned: boolean) => int64Arb(unsigned, options).map((v) => (longAsString ? v.toString() : v));
  switch (scalar) {
    case ScalarType.STRING:
      return stringArb(field, dict, options);
    case ScalarType.BYTES:
      return options.insideLongList ? fc.uint8Array({ maxLength: 64 }) : fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(new Uint8Array(70_000)));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.oneof(fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1e308, -1e-308), fc.double());
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32Arb(false);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return int32Arb(true);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64(true);
    default:
      return int64(false);
  }
}

function enumArb(desc: DescEnum): fc.Arbitrary<number> {
  const known = desc.values.map((v) => v.number);
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...known) },
    { weight: 1, arbitrary: fc.constantFrom(Math.max(...known) + 1, 99, -1, 2 ** 31 - 1, -(2 ** 31)) },
  );
}

/** google.protobuf.Timestamp: around the test clock, far past and future, the Date limits, bad nanos. */
function timestampArb(options: ArbitraryOptions): fc.Arbitrary<Record<string, unknown>> {
  const seconds = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: -40 * 86_400, max: 40 * 86_400 }).map((d) => BigInt(T0_SECONDS + d)) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        0n,
        -1n,
        -62_135_596_800n, // 0001-01-01
        -62_135_596_801n,
        253_402_300_799n, // 9999-12-31T23:59:59
        253_402_300_800n,
        BigInt(DATE_LIMIT_SECONDS),
        BigInt(DATE_LIMIT_SECONDS + 1),
        BigInt(-DATE_LIMIT_SECONDS - 1),
        2_147_483_647n, // 2038
        4_102_444_800n, // 2100
        MAX_SAFE,
        -MAX_SAFE,
      ),
    },
    { weight: 1, arbitrary: int64Arb(false, options) },
  );
  const nanos = fc.oneof(
    { weight: 4, arbitrary: fc.constant(0) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 999_999_999 }) },
    { weight: 1, arbitrary: fc.constantFrom(-1, 1_000_000_000, 2 ** 31 - 1, -(2 ** 31)) },
  );
  return fc.record({ seconds, nanos });
}

/** google.protobuf.Duration: zero, the documented bounds (1 min .. 7 days), negative, huge, bad nanos. */
function durationArb(options: ArbitraryOptions): fc.Arbitrary<Record<string, unknown>> {
  const seconds = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(0n, 1n, 59n, 60n, 86_400n, 604_800n, 604_801n, 63_072_000n, -1n, -86_400n, 315_576_000_000n, 315_576_000_001n) },
    { weight: 1, arbitrary: int64Arb(false, options) },
  );
  const nanos = fc.oneof(fc.constant(0), fc.constantFrom(1, -1, 999_999_999, 1_000_000_000, -(2 ** 31)));
  return fc.record({ seconds, nanos });
}

/**
 * A list: usually short, sometimes hundreds of items (batch and keyword limits): a few random
 * ones (without ~100 kB strings) repeated.
 */
function listArb<T>(elem: (options: ArbitraryOptions) => fc.Arbitrary<T>, options: ArbitraryOptions): fc.Arbitrary<T[]> {
  const many = fc
    .tuple(fc.array(elem({ ...options, insideLongList: true }), { minLength: 1, maxLength: 3 }), fc.constantFrom(100, 999, 1000, 1001, 2500))
    .map(([items, n]) => Array.from({ length: n }, (_, i) => items[i % items.length]));
  const few = fc.array(elem(options), { maxLength: 4 });
  return options.insideLongList ? few : fc.oneof({ weight: 6, arbitrary: few }, { weight: 1, arbitrary: many });
}

function valueArb(
  field: DescField,
  kind: 'scalar' | 'enum' | 'message',
  dict: Dictionary,
  options: ArbitraryOptions,
  depth: number,
): fc.Arbitrary<unknown> {
  if (kind === 'enum') return enumArb(field.enum!);
  if (kind === 'message') return messageInitArb(field.message!, dict, options, depth + 1);
  return scalarArb(field, field.scalar!, dict, options);
}

/** A random init object for `create(desc, init)`: any subset of the fields, oneofs as {case, value}. */
export function messageInitArb(
  desc: DescMessage,
  dict: Dictionary,
  options: ArbitraryOptions,
  depth: number,
): fc.Arbitrary<Record<string, unknown>> {
  if (desc.typeName === 'google.protobuf.Timestamp') return timestampArb(options);
  if (desc.typeName === 'google.protobuf.Duration') return durationArb(options);
  if (depth > (options.maxDepth ?? 4)) return fc.constant({});
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    if (field.oneof) continue;
    switch (field.fieldKind) {
      case 'scalar':
      case 'enum':
      case 'message':
        model[field.localName] = valueArb(field, field.fieldKind, dict, options, depth);
        break;
      case 'list':
        model[field.localName] = listArb((o) => valueArb(field, field.listKind, dict, o, depth), options);
        break;
      case 'map': {
        const keyField = { ...field, name: `${field.name}.key` } as DescField;
        model[field.localName] = fc.dictionary(
          scalarArb(keyField, field.mapKey, dict, options).map(String),
          valueArb(field, field.mapKind, dict, options, depth),
          { maxKeys: 4 },
        );
        break;
      }
    }
  }
  for (const oneof of desc.oneofs) {
    model[oneof.localName] = fc.oneof(
      fc.constant(undefined),
      ...oneof.fields.map((f) =>
        valueArb(f, f.fieldKind as 'scalar' | 'enum' | 'message', dict, options, depth).map((value) => ({ case: f.localName, value })),
      ),
    );
  }
  return fc.record(model, { requiredKeys: [] }).map((r) => {
    // fc.record may produce keys with undefined (unset oneofs); create() wants them absent.
    for (const k of Object.keys(r)) if (r[k] === undefined) delete r[k];
    return r as Record<string, unknown>;
  });
}
