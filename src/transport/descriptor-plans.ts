import { createFileRegistry, DescField, DescMessage, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';

/**
 * What the wire-level request walkers (request-checks.ts, request-item-limits.ts) share: the
 * methods of a descriptor set with their request types, and per-type plans of only the fields a
 * walker needs to visit, built once at start.
 */

/** Every method of every service in `descriptorSet`: its gRPC path "/pkg.Service/Method" and request type. */
export function requestMethods(descriptorSet: Uint8Array): Array<{ path: string; input: DescMessage }> {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptorSet));
  const methods: Array<{ path: string; input: DescMessage }> = [];
  for (const file of registry.files) {
    for (const service of file.services) {
      for (const method of service.methods) methods.push({ path: `/${service.typeName}/${method.name}`, input: method.input });
    }
  }
  return methods;
}

/**
 * Fills `plan` with the entries `entryOf` makes for `message`'s fields and memoises it by type
 * name in `plans` (null when no field needs a visit). The empty plan is entered first: a recursive
 * type refers to itself while its plan is being built.
 */
export function plannedFields<E, P extends { fields: Map<number, E> }>(message: DescMessage, plans: Map<string, P | null>, plan: P, entryOf: (field: DescField) => E | null): P | null {
  plans.set(message.typeName, plan);
  for (const field of message.fields) {
    const entry = entryOf(field);
    if (entry) plan.fields.set(field.number, entry);
  }
  if (plan.fields.size === 0) {
    plans.set(message.typeName, null);
    return null;
  }
  return plan;
}
