import { expect } from 'chai';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { canonicalJson, sha256Hex } from '../../src/shared/hashing';
import { freshRandom } from '../../src/crypto/primitives';

/** canonicalJson as first written (entries, filter, sort, map): the loops that replaced it must write the same bytes. */
function reference(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${reference(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

describe('hashing and random helpers', () => {
  it('canonicalJson writes exactly what the reference form wrote, for any JSON-like value (undefined members and elements, unicode keys, nesting)', () => {
    const leaf = fc.oneof(fc.string({ unit: 'grapheme' }), fc.string(), fc.integer(), fc.double({ noNaN: false }), fc.boolean(), fc.constant(null), fc.constant(undefined));
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
      array: fc.array(tie('node'), { maxLength: 5 }),
      object: fc.dictionary(fc.string({ unit: 'grapheme' }), tie('node'), { maxKeys: 6 }),
    })).node;
    fc.assert(fc.property(value, (v) => canonicalJson(v) === reference(v)), { numRuns: 3000 });
    expect(canonicalJson({ b: 1, a: [undefined, { d: undefined, c: 'x' }], é: null, A: 2 })).to.equal('{"A":2,"a":[,{"c":"x"}],"b":1,"é":null}');
  });

  it('sha256Hex is SHA-256 in hex, for text and bytes', () => {
    fc.assert(fc.property(fc.string(), fc.uint8Array(), (text, bytes) => sha256Hex(text) === createHash('sha256').update(text).digest('hex') && sha256Hex(bytes) === createHash('sha256').update(bytes).digest('hex')));
  });

  it('freshRandom: buffers of their own, of the size asked, never the same bytes twice across block refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const b = freshRandom(i % 3 === 0 ? 12 : 32);
      expect(b.length).to.equal(i % 3 === 0 ? 12 : 32);
      expect(b.buffer.byteLength, 'not a view into a shared block').to.equal(b.length);
      const hex = b.toString('hex');
      expect(seen.has(hex)).to.equal(false);
      seen.add(hex);
    }
    expect(freshRandom(4096)).to.have.length(4096);
  });
});
