import crypto, { createHash } from 'node:crypto';

/**
 * JSON with keys sorted at every level: the exact bytes hashed into the leaf. Own enumerable keys
 * in code-unit order, undefined members left out; everything else as JSON.stringify writes it.
 * Written as loops: it runs several times per recorded event (audit entries, record hashes), and
 * the form with Object.entries, filter, sort and map allocated most of a bulk import's garbage.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      // As join() writes an element that has no JSON form (undefined, a function): nothing.
      out += canonicalJson(value[i]) ?? '';
    }
    return out + ']';
  }
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const member = object[key];
    if (member === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += `${JSON.stringify(key)}:${canonicalJson(member)}`;
  }
  return out + '}';
}

/** One-shot hashing (Node.js 20.12 and later) where available: no Hash object per call. */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string | Uint8Array, encoding: 'hex') => string }).hash;

export function sha256Hex(data: string | Uint8Array): string {
  return oneShotHash ? oneShotHash('sha256', data, 'hex') : createHash('sha256').update(data).digest('hex');
}
