import { DescField, DescMessage, ScalarType } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { FieldViolation } from '../shared/errors';
import { plannedFields, requestMethods } from './descriptor-plans';

/**
 * How many list items (repeated fields' elements, map entries) a request may hold, counted on the
 * wire before anything is decoded. A 4 MiB request can hold two million empty items of two bytes
 * each; the generated decoder makes an object of every one (hundreds of bytes each), so a few such
 * requests at once ran the process out of memory before any handler, or any credential check,
 * could refuse them. Counting needs no allocation per item: the bytes are walked, items skipped.
 *
 * The count covers the whole request (nested lists too): a method's own limit (CheckConsentBatch's
 * MAX_BATCH_CHECKS queries; an ImportConsents message MAX_IMPORT_ROWS rows, what a whole call
 * may hold) or `defaultLimit` for any other.
 */
/** List items any request may hold unless its method says otherwise: far above what any of ours needs. */
export const DEFAULT_REQUEST_ITEMS = 10_000;

export type ItemLimitCheck = (bytes: Uint8Array) => FieldViolation | null;

/** The per-method limits the service has besides the default (keyed by "/pkg.Service/Method"). */
export interface ItemLimits {
  defaultLimit: number;
  byMethod: Record<string, { limit: number; field: string; reason: string; description: string }>;
}

interface FieldEntry {
  name: string;
  /** A repeated field or a map: each element counts. */
  list: boolean;
  /** Elements of a packed run: fixed width in bytes, or 'varint'; null when the field cannot be packed. */
  packed: 4 | 8 | 'varint' | null;
  /** The message to walk into (singular or list elements), when something below it counts. */
  message: CountPlan | null;
}

interface CountPlan {
  /** Fields to look at, by number: lists and maps to count, messages to walk into. */
  fields: Map<number, FieldEntry>;
}

/** Nesting walked at most (the decoder limits recursion too). */
const MAX_DEPTH = 32;

/** Thrown inside the walk when the budget is spent: the field path where it ran out. */
class BudgetSpent {
  constructor(readonly field: string) {}
}

export function requestItemLimits(descriptorSet: Uint8Array, limits: ItemLimits): Map<string, ItemLimitCheck> {
  const plans = new Map<string, CountPlan | null>();
  const checks = new Map<string, ItemLimitCheck>();
  for (const { path, input } of requestMethods(descriptorSet)) {
    const plan = planOf(input, plans);
    if (!plan) continue;
    const own = limits.byMethod[path];
    const limit = own?.limit ?? limits.defaultLimit;
    checks.set(path, (bytes) => {
      const budget = { left: limit };
      try {
        walk(bytes, plan, '', budget, 0);
        return null;
      } catch (err) {
        if (!(err instanceof BudgetSpent)) return null; // unreadable bytes: the decoder's check names them
        if (own) return { field: own.field, reason: own.reason, description: own.description };
        return { field: err.field, reason: 'TOO_MANY', description: `a request holds at most ${limit} list items (repeated fields and map entries together)` };
      }
    });
  }
  return checks;
}

/** The plan of a message type: null when nothing below it is a list or a map. */
function planOf(message: DescMessage, plans: Map<string, CountPlan | null>): CountPlan | null {
  if (plans.has(message.typeName)) return plans.get(message.typeName) ?? null;
  return plannedFields<FieldEntry, CountPlan>(message, plans, { fields: new Map() }, (field) => entryOf(field, plans));
}

function entryOf(field: DescField, plans: Map<string, CountPlan | null>): FieldEntry | null {
  switch (field.fieldKind) {
    case 'list':
      if (field.listKind === 'message') return { name: field.name, list: true, packed: null, message: planOf(field.message, plans) };
      return { name: field.name, list: true, packed: field.listKind === 'enum' ? 'varint' : packedWidth(field.scalar), message: null };
    case 'map':
      // A map entry is a message of its own in the decoded object: counted like a list item.
      return { name: field.name, list: true, packed: null, message: null };
    case 'message': {
      const nested = planOf(field.message, plans);
      return nested ? { name: field.name, list: false, packed: null, message: nested } : null;
    }
    default:
      return null;
  }
}

function packedWidth(scalar: ScalarType): FieldEntry['packed'] {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return null;
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
    case ScalarType.FLOAT:
      return 4;
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.DOUBLE:
      return 8;
    default:
      return 'varint';
  }
}

function walk(bytes: Uint8Array, plan: CountPlan, path: string, budget: { left: number }, depth: number): void {
  if (depth > MAX_DEPTH) return;
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = plan.fields.get(number);
    if (!field) {
      reader.skip(wireType);
      continue;
    }
    const at = path ? `${path}.${field.name}` : field.name;
    if (!field.list) {
      if (wireType === WireType.LengthDelimited && field.message) walk(reader.bytes(), field.message, at, budget, depth + 1);
      else reader.skip(wireType);
      continue;
    }
    if (field.packed !== null && wireType === WireType.LengthDelimited) {
      // A packed run: every element is an item of the decoded array (a varint ends with a byte below 0x80).
      const run = reader.bytes();
      let items = 0;
      if (field.packed === 'varint') for (const byte of run) items += byte < 0x80 ? 1 : 0;
      else items = Math.floor(run.length / field.packed);
      budget.left -= items;
      if (budget.left < 0) throw new BudgetSpent(at);
      continue;
    }
    if (--budget.left < 0) throw new BudgetSpent(at);
    if (wireType === WireType.LengthDelimited && field.message) walk(reader.bytes(), field.message, at, budget, depth + 1);
    else reader.skip(wireType);
  }
}
