import { isUtf8 } from 'node:buffer';
import { DescField, DescMessage, ScalarType } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { FieldViolation } from '../shared/errors';
import { plannedFields, requestMethods } from './descriptor-plans';

/**
 * Checks a request's wire bytes against its message descriptor for what the generated decoder
 * gets wrong: enum numbers the schema does not define (proto3 enums are open, so 99 decodes as 99
 * and a mapper would read it as "unset"); google.protobuf.Timestamp / Duration values outside
 * their documented ranges (ts-proto turns nanos -5 into a valid Date); strings that are not valid
 * UTF-8 (proto3 requires it; the decoder would replace the bytes with U+FFFD and we would store
 * text nobody sent); 64-bit integers beyond 2^53 - 1 (the decoder, mapping int64 to a JS number,
 * throws without naming the field). Strict input means such a request is INVALID_ARGUMENT
 * naming the field, whatever the method.
 *
 * Each message type gets a plan of only the fields that can hold such a value (directly or in a
 * nested message): one pass over the bytes, skipping everything else.
 */
export type RequestCheck = (bytes: Uint8Array) => FieldViolation[];

/** Scalar types with a check of their own. */
type CheckedScalar = 'string' | 'int64' | 'uint64' | 'sint64' | 'fixed64' | 'sfixed64';

interface FieldPlan {
  name: string;
  /** A scalar to check: UTF-8 for strings, the range a JS number holds for 64-bit integers. */
  scalar?: CheckedScalar;
  /** Defined numbers, for enum fields (single, repeated or map values). */
  enumValues?: ReadonlySet<number>;
  /** Nested message to walk (a map entry is a message with key = 1, value = 2). */
  message?: MessagePlan;
  /** The field is a map: its entries' keys name the path. */
  map?: boolean;
  repeated?: boolean;
}

interface MessagePlan {
  kind: 'plain' | 'timestamp' | 'duration';
  fields: Map<number, FieldPlan>;
}

const TIMESTAMP = 'google.protobuf.Timestamp';
const DURATION = 'google.protobuf.Duration';
/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range google.protobuf.Timestamp defines. */
const MIN_TIMESTAMP_SECONDS = -62_135_596_800n;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n;
/** About 10,000 years, the range google.protobuf.Duration defines. */
const MAX_DURATION_SECONDS = 315_576_000_000n;
/** Nesting deeper than this is not walked further (the decoder already limits recursion). */
const MAX_DEPTH = 32;
/** Number.MAX_SAFE_INTEGER: the generated code maps 64-bit integers to numbers (forceLong=number). */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

const CHECKED_SCALARS: Partial<Record<ScalarType, CheckedScalar>> = {
  [ScalarType.STRING]: 'string',
  [ScalarType.INT64]: 'int64',
  [ScalarType.UINT64]: 'uint64',
  [ScalarType.SINT64]: 'sint64',
  [ScalarType.FIXED64]: 'fixed64',
  [ScalarType.SFIXED64]: 'sfixed64',
};

/** Builds the check of each method's request, keyed by the gRPC path "/pkg.Service/Method". */
export function requestChecks(descriptorSet: Uint8Array): Map<string, RequestCheck> {
  const plans = new Map<string, MessagePlan | null>();
  const checks = new Map<string, RequestCheck>();
  for (const { path, input } of requestMethods(descriptorSet)) {
    const plan = planOf(input, plans);
    checks.set(path, plan ? (bytes) => walk(bytes, plan, '', 0) : () => []);
  }
  return checks;
}

/** The plan of a message type, or null when no field below it can hold a value to check. */
function planOf(message: DescMessage, plans: Map<string, MessagePlan | null>): MessagePlan | null {
  if (plans.has(message.typeName)) return plans.get(message.typeName) ?? null;
  if (message.typeName === TIMESTAMP || message.typeName === DURATION) {
    const plan: MessagePlan = { kind: message.typeName === TIMESTAMP ? 'timestamp' : 'duration', fields: new Map() };
    plans.set(message.typeName, plan);
    return plan;
  }
  return plannedFields<FieldPlan, MessagePlan>(message, plans, { kind: 'plain', fields: new Map() }, (field) => planOfField(field, plans));
}

function planOfField(field: DescField, plans: Map<string, MessagePlan | null>): FieldPlan | null {
  const name = field.name;
  switch (field.fieldKind) {
    case 'scalar': {
      const scalar = CHECKED_SCALARS[field.scalar];
      return scalar ? { name, scalar } : null;
    }
    case 'enum':
      return { name, enumValues: new Set(field.enum.values.map((v) => v.number)) };
    case 'message': {
      const message = planOf(field.message, plans);
      return message ? { name, message } : null;
    }
    case 'list':
      if (field.listKind === 'enum') return { name, repeated: true, enumValues: new Set(field.enum.values.map((v) => v.number)) };
      if (field.listKind === 'message') {
        const message = planOf(field.message, plans);
        return message ? { name, repeated: true, message } : null;
      }
      return CHECKED_SCALARS[field.scalar] ? { name, repeated: true, scalar: CHECKED_SCALARS[field.scalar] } : null;
    case 'map':
      if (field.mapKind === 'enum') return { name, map: true, enumValues: new Set(field.enum.values.map((v) => v.number)) };
      if (field.mapKind === 'message') {
        const message = planOf(field.message, plans);
        return message ? { name, map: true, message } : null;
      }
      // Keys are strings or integers; string keys and scalar values are checked like fields.
      return { name, map: true, scalar: CHECKED_SCALARS[field.scalar] };
    default:
      return null;
  }
}

/** Violations in one message's bytes; `path` is the field path of the message itself. */
function walk(bytes: Uint8Array, plan: MessagePlan, path: string, depth: number): FieldViolation[] {
  if (plan.kind !== 'plain') return checkTime(bytes, plan.kind, path);
  if (depth > MAX_DEPTH) return [];
  const violations: FieldViolation[] = [];
  const counts = new Map<number, number>();
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = plan.fields.get(number);
    if (!field) {
      reader.skip(wireType);
      continue;
    }
    const index = counts.get(number) ?? 0;
    counts.set(number, index + 1);
    const at = join(path, field.name);
    const expected =
      field.map || field.message || field.scalar === 'string'
        ? wireType === WireType.LengthDelimited
        : wireType === scalarWireType(field.scalar) || (field.repeated && wireType === WireType.LengthDelimited);
    if (!expected) {
      // The generated decoder skips a field of the wrong wire type as unknown; so does this.
      reader.skip(wireType);
    } else if (field.map) {
      violations.push(...walkMapEntry(reader.bytes(), field, at, depth));
    } else if (field.scalar === 'string') {
      checkUtf8(reader.bytes(), field.repeated ? `${at}[${index}]` : at, violations);
    } else if (field.scalar) {
      if (wireType === WireType.LengthDelimited) {
        const packed = new BinaryReader(reader.bytes());
        let i = index;
        while (packed.pos < packed.len) checkInt64(readInt64(packed, field.scalar), `${at}[${i++}]`, violations);
        counts.set(number, i);
      } else {
        checkInt64(readInt64(reader, field.scalar), field.repeated ? `${at}[${index}]` : at, violations);
      }
    } else if (field.enumValues) {
      if (wireType === WireType.LengthDelimited) {
        // A packed repeated enum: every value in one length-delimited run.
        const packed = new BinaryReader(reader.bytes());
        let i = index;
        while (packed.pos < packed.len) checkEnum(packed.int32(), field.enumValues, field.repeated ? `${at}[${i++}]` : at, violations);
        counts.set(number, i);
      } else {
        checkEnum(reader.int32(), field.enumValues, field.repeated ? `${at}[${index}]` : at, violations);
      }
    } else {
      violations.push(...walk(reader.bytes(), field.message!, field.repeated ? `${at}[${index}]` : at, depth + 1));
    }
  }
  return violations;
}

/** A map entry (key = 1, value = 2); the path names the entry by its key, as AIP-193 paths do. */
function walkMapEntry(bytes: Uint8Array, field: FieldPlan, at: string, depth: number): FieldViolation[] {
  const reader = new BinaryReader(bytes);
  let key = '';
  let keyBytes: Uint8Array | undefined;
  let value: Uint8Array | number | bigint | undefined;
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1 && wireType === WireType.LengthDelimited) keyBytes = reader.bytes();
    else if (number === 1 && wireType === WireType.Varint) key = String(reader.int64());
    else if (number === 2 && field.enumValues && wireType === WireType.Varint) value = reader.int32();
    else if (number === 2 && field.message && wireType === WireType.LengthDelimited) value = reader.bytes();
    else if (number === 2 && field.scalar === 'string' && wireType === WireType.LengthDelimited) value = reader.bytes();
    else if (number === 2 && field.scalar && field.scalar !== 'string' && wireType === scalarWireType(field.scalar)) value = readInt64(reader, field.scalar);
    else reader.skip(wireType);
  }
  const violations: FieldViolation[] = [];
  if (keyBytes !== undefined) {
    // An invalid key is named by position only: it cannot be quoted as text.
    if (!isUtf8(keyBytes)) return [{ field: `${at}[?]`, reason: 'INVALID_UTF8', description: 'a map key is not valid UTF-8 text' }];
    key = Buffer.from(keyBytes).toString('utf8');
  }
  const entry = `${at}[${JSON.stringify(key)}]`;
  if (typeof value === 'number') checkEnum(value, field.enumValues!, entry, violations);
  else if (typeof value === 'bigint') checkInt64(value, entry, violations);
  else if (value !== undefined && field.scalar === 'string') checkUtf8(value, entry, violations);
  else if (value !== undefined) violations.push(...walk(value, field.message!, entry, depth + 1));
  return violations;
}

function checkUtf8(bytes: Uint8Array, field: string, violations: FieldViolation[]): void {
  if (!isUtf8(bytes)) violations.push({ field, reason: 'INVALID_UTF8', description: 'is not valid UTF-8 text' });
}

function checkInt64(value: bigint, field: string, violations: FieldViolation[]): void {
  if (value > MAX_SAFE || value < -MAX_SAFE) {
    violations.push({ field, reason: 'OUT_OF_RANGE', description: 'must be between -(2^53 - 1) and 2^53 - 1 (9007199254740991)' });
  }
}

function readInt64(reader: BinaryReader, scalar: Exclude<CheckedScalar, 'string'>): bigint {
  switch (scalar) {
    case 'int64':
      return BigInt(reader.int64());
    case 'uint64':
      return BigInt(reader.uint64());
    case 'sint64':
      return BigInt(reader.sint64());
    case 'fixed64':
      return BigInt(reader.fixed64());
    case 'sfixed64':
      return BigInt(reader.sfixed64());
  }
}

function scalarWireType(scalar: CheckedScalar | undefined): WireType {
  return scalar === 'fixed64' || scalar === 'sfixed64' ? WireType.Bit64 : WireType.Varint;
}

function checkEnum(value: number, defined: ReadonlySet<number>, field: string, violations: FieldViolation[]): void {
  if (!defined.has(value)) {
    violations.push({ field, reason: 'UNKNOWN_ENUM_VALUE', description: `${value} is not a value this field defines` });
  }
}

function checkTime(bytes: Uint8Array, kind: 'timestamp' | 'duration', field: string): FieldViolation[] {
  const reader = new BinaryReader(bytes);
  let seconds = 0n;
  let nanos = 0;
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1 && wireType === WireType.Varint) seconds = BigInt(reader.int64());
    else if (number === 2 && wireType === WireType.Varint) nanos = reader.int32();
    else reader.skip(wireType);
  }
  if (kind === 'timestamp') {
    if (seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS || nanos < 0 || nanos > 999_999_999) {
      return [{ field, reason: 'INVALID_TIMESTAMP', description: 'must be a time between 0001-01-01 and 9999-12-31 (UTC) with nanos in [0, 999999999]' }];
    }
    return [];
  }
  const sameSign = seconds === 0n || nanos === 0 || seconds < 0n === nanos < 0;
  if (seconds < -MAX_DURATION_SECONDS || seconds > MAX_DURATION_SECONDS || nanos < -999_999_999 || nanos > 999_999_999 || !sameSign) {
    return [{ field, reason: 'INVALID_DURATION', description: 'must be within ±10,000 years with nanos in [-999999999, 999999999] of the same sign as seconds' }];
  }
  return [];
}

function join(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}
