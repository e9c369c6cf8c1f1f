import fc from 'fast-check';
import { create, DescEnum, DescField, DescMessage, fromBinary, ScalarType, toBinary } from '@bufbuild/protobuf';

/**
 * Strings worth trying, by proto field name ("parent", "page_token", "phone_number"): values the
 * seeded server handed out or accepts, so random requests often pass the first checks and reach
 * real code paths. `*` holds every resource name, tried in any string field.
 */
export type Dictionary = Map<string, string[]>;

export interface ArbitraryOptions {
  /** int64 values beyond ±(2^53 - 1) too (the generated decoders refuse them: INVALID_ARGUMENT). Default false. */
  unsafeInt64?: boolean;
  /** How deep nested messages go. Default 4. */
  maxDepth?: number;
  /** No ~100 kB strings or 70 kB byte fields, no lists of hundreds (inside lists of hundreds of items). */
  insideLongList?: boolean;
  /**
   * Mostly well-formed messages: dictionary strings, known enum values, small numbers, times near
   * the test clock, short lists. Wild ones (the default) seldom get past validation; plausible ones
   * reach the storage and crypto code with odd but valid combinations.
   */
  plausible?: boolean;
}

/** A random message of `desc`, as a binary protobuf payload. */
export function payloadArb(desc: DescMessage, dict: Dictionary, options: ArbitraryOptions = {}): fc.Arbitrary<Buffer> {
  const init = messageInitArb(desc, dict, options, 0);
  if (!options.plausible) return init.map((i) => encode(desc, i));
  // One tenant per plausible request: every resource name in it is moved under the same tenant.
  const tenants = [...new Set((dict.get('*') ?? []).map((n) => /^tenants\/([^/]+)/.exec(n)?.[1]).filter((t): t is string => !!t))];
  return fc
    .tuple(init, fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...tenants) }, { weight: 1, arbitrary: fc.constant(null) }))
    .map(([i, tenant]) => encode(desc, tenant ? sameTenant(i, tenant) as Record<string, unknown> : i));
}

function sameTenant(value: unknown, tenant: string): unknown {
  if (typeof value === 'string') return value.replace(/^tenants\/[^/]+/, `tenants/${tenant}`);
  if (Array.isArray(value)) return value.map((v) => sameTenant(v, tenant));
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, sameTenant(v, tenant)]));
  }
  return value;
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

/**
 * Strings just at and past the lengths limits are usually set at (a column's VARCHAR(n), a
 * documented maximum), in units of different UTF-8 and UTF-16 sizes: a check that counts UTF-16
 * units and a column that counts characters or bytes disagree exactly here.
 */
const BOUNDARY_LENGTHS = [16, 17, 24, 25, 32, 33, 35, 36, 40, 41, 63, 64, 65, 128, 129, 140, 141, 200, 201, 255, 256, 1000, 1001, 1024, 4096, 4097, 65_535, 65_536, 65_537];
const BOUNDARY_UNITS = ['a', 'é', '€', '😀', 'A\u0301'];

export function boundaryString(): fc.Arbitrary<string> {
  return fc.tuple(fc.constantFrom(...BOUNDARY_UNITS), fc.constantFrom(...BOUNDARY_LENGTHS), fc.boolean()).map(([unit, length, byUnits]) =>
    // Either `length` UTF-16 units (cut, possibly mid-pair), or `length` repetitions of the unit.
    byUnits ? unit.repeat(length) : unit.repeat(Math.ceil(length / unit.length)).slice(0, length),
  );
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

function messagePath(m: DescMessage): number[] {
  if (m.parent) return [...messagePath(m.parent), 3, m.parent.proto.nestedType.indexOf(m.proto)];
  return [4, m.file.proto.messageType.indexOf(m.proto)];
}

/** The leading comment of a field in its .proto file (the descriptor set keeps source info). */
export function fieldComment(field: DescField): string {
  const msg = field.parent;
  const path = [...messagePath(msg), 2, msg.proto.field.indexOf(field.proto)].join(',');
  return msg.file.proto.sourceCodeInfo?.location.find((l) => l.path.join(',') === path)?.leadingComments ?? '';
}

/** Fields whose comment says they are required (not "Required for ...", which depends on other fields). */
export function requiredFields(desc: DescMessage): DescField[] {
  return desc.fields.filter((f) => /\bRequired\b(?! for)/.test(fieldComment(f)));
}

const patternCache = new WeakMap<DescField, RegExp[]>();

/**
 * The resource-name patterns the field's proto comment documents ("tenants/{tenant}/purposes/{purpose}"),
 * as regular expressions, so a field draws the seeded names of the right kind.
 */
export function namePatterns(field: DescField): RegExp[] {
  let patterns = patternCache.get(field);
  if (!patterns) {
    patterns = (fieldComment(field).match(/"tenants\/[^"\s]*"/g) ?? []).map(
      (quoted) => new RegExp(`^${quoted.slice(1, -1).replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[a-z_]+\}/g, '[^/]+')}$`),
    );
    patternCache.set(field, patterns);
  }
  return patterns;
}

function stringArb(field: DescField, dict: Dictionary, options: ArbitraryOptions): fc.Arbitrary<string> {
  const names = dict.get('*') ?? [];
  const patterns = field.fieldKind === 'map' ? [] : namePatterns(field);
  const documented = names.filter((n) => patterns.some((p) => p.test(n)));
  const known = documented.length > 0 ? documented : (dict.get(field.name) ?? []);
  const knownArb = known.length > 0 ? fc.constantFrom(...known) : null;
  const namesArb = names.length > 0 ? fc.constantFrom(...names) : null;
  if (options.plausible) {
    return knownArb
      ? fc.oneof({ weight: 30, arbitrary: knownArb }, { weight: 1, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(...NASTY_STRINGS) })
      : fc.oneof(fc.constant(''), fc.string({ unit: 'grapheme-ascii', maxLength: 12 }));
  }
  const choices: Array<fc.WeightedArbitrary<string>> = [
    { weight: 2, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  ];
  if (!options.insideLongList) choices.push({ weight: 1, arbitrary: longString() }, { weight: 1, arbitrary: boundaryString() });
  if (knownArb) choices.push({ weight: 10, arbitrary: knownArb }, { weight: 2, arbitrary: mutated(knownArb) });
  if (namesArb) choices.push({ weight: 2, arbitrary: namesArb }, { weight: 1, arbitrary: mutated(namesArb) });
  return fc.oneof(...choices);
}

function int32Arb(unsigned: boolean, options: ArbitraryOptions): fc.Arbitrary<number> {
  if (options.plausible) return fc.oneof(fc.constantFrom(0, 1, 2, 3, 5, 10, 50), fc.integer({ min: 0, max: 20 }));
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
  if (options.plausible) return fc.bigInt({ min: 0n, max: 40n });
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
      return options.insideLongList || options.plausible ? fc.uint8Array({ maxLength: 64 }) : fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(new Uint8Array(70_000)));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.oneof(fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1e308, -1e-308), fc.double());
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32Arb(false, options);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return int32Arb(true, options);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64(true);
    default:
      return int64(false);
  }
}

function enumArb(desc: DescEnum, options: ArbitraryOptions): fc.Arbitrary<number> {
  const known = desc.values.map((v) => v.number);
  if (options.plausible) {
    const set = known.filter((n) => n !== 0);
    return set.length > 0 ? fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...set) }, { weight: 1, arbitrary: fc.constant(0) }) : fc.constant(0);
  }
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...known) },
    { weight: 1, arbitrary: fc.constantFrom(Math.max(...known) + 1, 99, -1, 2 ** 31 - 1, -(2 ** 31)) },
  );
}

/** google.protobuf.Timestamp: around the test clock, far past and future, the Date limits, bad nanos. */
function timestampArb(options: ArbitraryOptions): fc.Arbitrary<Record<string, unknown>> {
  if (options.plausible) {
    return fc.record({
      seconds: fc.integer({ min: -400 * 86_400, max: 40 * 86_400 }).map((d) => BigInt(T0_SECONDS + d)),
      nanos: fc.integer({ min: 0, max: 999_999_999 }),
    });
  }
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
  if (options.plausible) return fc.record({ seconds: fc.constantFrom(60n, 3600n, 86_400n, 604_800n, 63_072_000n), nanos: fc.constant(0) });
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
  return options.insideLongList || options.plausible ? few : fc.oneof({ weight: 6, arbitrary: few }, { weight: 1, arbitrary: many });
}

function valueArb(
  field: DescField,
  kind: 'scalar' | 'enum' | 'message',
  dict: Dictionary,
  options: ArbitraryOptions,
  depth: number,
): fc.Arbitrary<unknown> {
  if (kind === 'enum') return enumArb(field.enum!, options);
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
      { weight: options.plausible ? 1 : 4, arbitrary: fc.constant(undefined) },
      ...oneof.fields.map((f) =>
        ({
          weight: 4,
          arbitrary: valueArb(f, f.fieldKind as 'scalar' | 'enum' | 'message', dict, options, depth).map((value) => ({ case: f.localName, value })),
        }),
      ),
    );
  }
  // Plausible messages set most fields (each is left out with fast-check's usual odds otherwise).
  const record = options.plausible
    ? fc.tuple(fc.record(model), fc.array(fc.constantFrom(...Object.keys(model), ''), { maxLength: 2 })).map(([r, drop]) => {
        for (const k of drop) delete (r as Record<string, unknown>)[k];
        return r;
      })
    : fc.record(model, { requiredKeys: [] });
  return record.map((r) => {
    // fc.record may produce keys with undefined (unset oneofs); create() wants them absent.
    for (const k of Object.keys(r)) if (r[k] === undefined) delete r[k];
    return r as Record<string, unknown>;
  });
}

/** Requests per method path that the server accepted: the seeding's, and every OK of the fuzzing. */
export class Corpus {
  private readonly byPath = new Map<string, Buffer[]>();

  constructor(private readonly maxPerPath = 64) {}

  add(path: string, payload: Buffer): void {
    const list = this.byPath.get(path) ?? [];
    if (list.length < this.maxPerPath) list.push(payload);
    else list[Math.floor(Math.random() * list.length)] = payload;
    this.byPath.set(path, list);
  }

  get(path: string): readonly Buffer[] {
    return this.byPath.get(path) ?? [];
  }
}

type Edit = (message: Record<string, unknown>) => void;

/** Random values for one field, as a bufbuild message accepts them (sub-messages created). */
function fieldValueArb(field: DescField, dict: Dictionary, options: ArbitraryOptions): fc.Arbitrary<unknown> {
  const single = (kind: 'scalar' | 'enum' | 'message', o: ArbitraryOptions) => {
    const v = valueArb(field, kind, dict, o, 1);
    return kind === 'message' ? v.map((init) => create(field.message!, init as never)) : v;
  };
  switch (field.fieldKind) {
    case 'list':
      return listArb((o) => single(field.listKind, o), options);
    case 'map':
      return fc.dictionary(
        scalarArb({ ...field, name: `${field.name}.key` } as DescField, field.mapKey, dict, options).map(String),
        single(field.mapKind, options),
        { maxKeys: 4 },
      );
    default:
      return single(field.fieldKind, options);
  }
}

/** One change to a message: a field set to a random value (plausible or wild) or cleared, or a change inside a sub-message. */
function editArb(desc: DescMessage, dict: Dictionary, depth: number): fc.Arbitrary<Edit> {
  const edits: Array<fc.Arbitrary<Edit>> = [];
  for (const field of desc.fields) {
    const value = fc.oneof(fieldValueArb(field, dict, { plausible: true }), fieldValueArb(field, dict, { unsafeInt64: true }));
    if (field.oneof) {
      const oneof = field.oneof.localName;
      edits.push(value.map((v) => (m) => void (m[oneof] = { case: field.localName, value: v })));
      edits.push(fc.constant((m) => void (m[oneof] = { case: undefined })));
      if (field.fieldKind === 'scalar' && field.scalar === ScalarType.STRING) {
        edits.push(boundaryString().map((v): Edit => (m) => void (m[oneof] = { case: field.localName, value: v })));
      }
      continue;
    }
    edits.push(value.map((v) => (m) => void (m[field.localName] = v)));
    if (field.fieldKind === 'scalar' && field.scalar === ScalarType.STRING) {
      // Length limits are where storage and validation disagree: weigh them like a field of their own, twice.
      const boundary = boundaryString().map((v): Edit => (m) => void (m[field.localName] = v));
      edits.push(boundary, boundary);
    }
    if (field.fieldKind === 'message' && depth < 2) {
      edits.push(
        editArb(field.message, dict, depth + 1).map((inner) => (m) => {
          m[field.localName] ??= create(field.message);
          inner(m[field.localName] as Record<string, unknown>);
        }),
      );
      edits.push(fc.constant((m) => void (m[field.localName] = undefined)));
    }
  }
  return edits.length > 0 ? fc.oneof(...edits) : fc.constant(() => undefined);
}

/** A request the server accepted before (from `corpus`), with one field changed (sometimes two or three). */
export function mutationArb(path: string, desc: DescMessage, dict: Dictionary, corpus: Corpus): fc.Arbitrary<Buffer> {
  const edit = editArb(desc, dict, 0);
  const edits = fc.oneof({ weight: 3, arbitrary: edit.map((e) => [e]) }, { weight: 1, arbitrary: fc.array(edit, { minLength: 2, maxLength: 3 }) });
  return fc.tuple(fc.nat(), edits).map(([pick, edits]) => {
    const accepted = corpus.get(path);
    const message = (accepted.length > 0 ? fromBinary(desc, accepted[pick % accepted.length]) : create(desc)) as unknown as Record<string, unknown>;
    for (const edit of edits) edit(message);
    return Buffer.from(toBinary(desc, message as never));
  });
}
