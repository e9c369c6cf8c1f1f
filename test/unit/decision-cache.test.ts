import { expect } from 'chai';
import { DecisionCache, ERASED } from '../../src/domain/decision-cache';
import { DecisionStateRead, IdentifierIndex } from '../../src/domain/ports';
import { decodeConsistencyToken, encodeConsistencyToken } from '../../src/domain/consistency';

const T = 'acme';
const idx = (n: number): IdentifierIndex => ({ kind: 'PHONE', blindIndex: `b${n}` });

/** A read at `version` in which identifier n names subject `s${n}` for each n of `people`. */
function readOf(version: number, people: number[], tombstones: number[] = []): DecisionStateRead {
  return {
    version,
    subjects: new Map(people.map((n) => [`PHONE:b${n}`, { subjectId: `s${n}`, erased: false }])),
    suppressed: new Set(tombstones.map((n) => `PHONE:b${n}`)),
    state: new Map(people.map((n) => [`s${n}`, { scopes: [{ purposeId: 'news', channel: 'WHATSAPP' as const }], windows: [] }])),
  };
}

describe('DecisionCache', function () {
  let now = 0;
  const changedTenants: string[] = [];
  const cache = (maxEntries = 100, stalenessMs = 1000) =>
    new DecisionCache({ maxEntries, stalenessMs, monotonic: () => now, onTenantChange: (t) => changedTenants.push(t) });
  beforeEach(() => {
    now = 1000;
    changedTenants.length = 0;
  });

  it('holds what a read found: a person, a tombstone, nobody; misses what it never read', function () {
    const c = cache();
    c.store(T, [idx(1), idx(2), idx(3)], readOf(10, [1], [2]), now);
    expect(c.get(T, idx(1))?.subject).to.deep.equal({ subjectId: 's1', erased: false });
    expect(c.get(T, idx(1))?.rows.scopes).to.have.length(1);
    expect(c.get(T, idx(2))?.subject).to.equal(ERASED);
    expect(c.get(T, idx(3))?.subject).to.equal(null);
    expect(c.get(T, idx(4))).to.equal(undefined);
    expect(c.get('other', idx(1))).to.equal(undefined);
    expect(c.position(T)).to.equal(10);
  });

  it('never answers one tenant or kind with an entry of another that has the same blind index', function () {
    const c = cache();
    c.store(T, [idx(1)], readOf(10, [1]), now);
    c.store('other', [idx(9)], readOf(20, []), now);
    expect(c.get('other', idx(1)), "the other tenant, T's blind index").to.equal(undefined);
    expect(c.get(T, { kind: 'EMAIL', blindIndex: 'b1' }), 'another kind, same blind index').to.equal(undefined);
    expect(c.get(T, idx(1))?.subject).to.deep.equal({ subjectId: 's1', erased: false });
    // The other tenant reads the same blind index: its entry takes the key, and T's person is unlinked with it.
    const othersRead: DecisionStateRead = { version: 21, subjects: new Map([['PHONE:b1', { subjectId: 'o1', erased: false }]]), suppressed: new Set(), state: new Map() };
    c.store('other', [idx(1)], othersRead, now);
    expect(c.get('other', idx(1))?.subject).to.deep.equal({ subjectId: 'o1', erased: false });
    expect(c.get(T, idx(1)), "T's entry was replaced: a miss, never the other tenant's person").to.equal(undefined);
    c.apply(T, [{ seq: 10, type: 'CONSENT_EVENT_OPT_OUT', subjectId: 's1' }], 11);
    expect(c.get('other', idx(1)), "a change of T's person leaves the other tenant's entry").to.not.equal(undefined);
    c.apply('other', [{ seq: 21, type: 'CONSENT_EVENT_OPT_OUT', subjectId: 'o1' }], 22);
    expect(c.get('other', idx(1))).to.equal(undefined);
    expect(c.size).to.equal(1); // 'other' idx(9), naming nobody
  });

  it('answers only within B of the last catch-up, and only at or past a token position', function () {
    const c = cache(100, 1000);
    c.store(T, [idx(1)], readOf(10, [1]), now);
    now += 1000;
    expect(c.get(T, idx(1)), 'at B').to.not.equal(undefined);
    now += 1;
    expect(c.get(T, idx(1)), 'past B').to.equal(undefined);
    c.caughtUp([T], now - 10);
    expect(c.get(T, idx(1)), 'after a catch-up').to.not.equal(undefined);
    expect(c.get(T, idx(1), 10)).to.not.equal(undefined);
    expect(c.get(T, idx(1), 11), 'a token beyond what was applied').to.equal(undefined);
    c.caughtUp(['other'], now + 5000); // a tenant not followed is not made fresh
    expect(c.isFresh('other')).to.equal(false);
  });

  it('drops a person on a change of theirs; keeps no read older than a change applied', function () {
    const c = cache();
    c.store(T, [idx(1), idx(2)], readOf(10, [1, 2]), now);
    c.apply(T, [{ seq: 10, type: 'CONSENT_EVENT_OPT_OUT', subjectId: 's1' }], 11);
    expect(c.get(T, idx(1))).to.equal(undefined);
    expect(c.get(T, idx(2))).to.not.equal(undefined);
    expect(c.position(T)).to.equal(11);
    c.store(T, [idx(1)], readOf(10, [1]), now); // read before the change: not kept
    expect(c.get(T, idx(1))).to.equal(undefined);
    expect(c.stats.discarded).to.equal(1);
    c.store(T, [idx(1)], readOf(11, [1]), now);
    expect(c.get(T, idx(1))).to.not.equal(undefined);
  });

  it('drops entries naming nobody when a change names someone it does not hold (a new person)', function () {
    const c = cache();
    c.store(T, [idx(1), idx(5)], readOf(10, [1]), now);
    expect(c.get(T, idx(5))?.subject).to.equal(null);
    c.apply(T, [{ seq: 10, type: 'CONSENT_EVENT_OPT_IN', subjectId: 's1' }], 11);
    expect(c.get(T, idx(5)), 'a change of a held person leaves "nobody" alone').to.not.equal(undefined);
    c.apply(T, [{ seq: 11, type: 'CONSENT_EVENT_OPT_IN', subjectId: 's-new' }], 12);
    expect(c.get(T, idx(5))).to.equal(undefined);
    c.store(T, [idx(6)], readOf(12, []), now);
    c.written(T, ['s-other'], true, 13);
    expect(c.get(T, idx(6)), 'a write of this process that made a person').to.equal(undefined);
  });

  it('drops entries naming nobody after a rectification or a reassignment of a person it holds (the identifier moved)', function () {
    for (const type of ['IDENTIFIER_RECTIFIED', 'IDENTIFIER_REASSIGNED']) {
      const c = cache();
      c.store(T, [idx(1), idx(5)], readOf(10, [1]), now);
      c.apply(T, [{ seq: 10, type, subjectId: 's1' }], 11);
      expect(c.get(T, idx(1)), `${type}: the person's identifier`).to.equal(undefined);
      expect(c.get(T, idx(5)), `${type}: an identifier cached as nobody's`).to.equal(undefined);
    }
  });

  it("keeps no read that began before one of this process's own writes committed", function () {
    const c = cache();
    c.store(T, [idx(1)], readOf(10, [1]), now);
    c.written(T, ['s1'], false, 15); // committed at log size 15
    expect(c.get(T, idx(1))).to.equal(undefined);
    c.store(T, [idx(1)], readOf(12, [1]), now); // read before that commit, stored after it
    expect(c.get(T, idx(1)), 'the old state is not put back').to.equal(undefined);
    c.store(T, [idx(1)], readOf(15, [1]), now);
    expect(c.get(T, idx(1))).to.not.equal(undefined);
    const fresh = cache();
    fresh.written('new-tenant', ['s9'], false, 7); // not followed yet: the floor still holds
    fresh.store('new-tenant', [idx(9)], readOf(6, [9]), now);
    expect(fresh.get('new-tenant', idx(9))).to.equal(undefined);
  });

  it('empties the tenant on key changes and a shred; tells about tenant row changes', function () {
    const c = cache();
    c.store(T, [idx(1)], readOf(10, [1]), now);
    c.apply(T, [{ seq: 10, type: 'TENANT_SETTINGS_UPDATED', subjectId: null }], 11);
    expect(changedTenants).to.deep.equal([T]);
    expect(c.get(T, idx(1)), 'settings do not touch the people').to.not.equal(undefined);
    c.apply(T, [{ seq: 11, type: 'KEY_ROTATION_STARTED', subjectId: null }], 12);
    expect(c.get(T, idx(1))).to.equal(undefined);
  });

  it('stays within its bound, forgetting the least recently used, and its subject index with it', function () {
    const c = cache(3);
    for (let n = 1; n <= 5; n++) c.store(T, [idx(n)], readOf(10, [n]), now);
    expect(c.size).to.equal(3);
    expect(c.stats.evictions).to.equal(2);
    expect(c.get(T, idx(1))).to.equal(undefined);
    // A change of an evicted person counts as someone unknown; of a held one, drops it.
    c.apply(T, [{ seq: 10, type: 'CONSENT_EVENT_OPT_OUT', subjectId: 's5' }], 11);
    expect(c.get(T, idx(5))).to.equal(undefined);
    expect(c.get(T, idx(4))).to.not.equal(undefined);
  });

  it('consistency tokens: round trip, other tenants and garbage refused; one cut short or altered is refused, not read as another position', function () {
    const token = encodeConsistencyToken(T, 42);
    expect(decodeConsistencyToken(token, T, 'f')).to.equal(42);
    const long = encodeConsistencyToken(T, 206);
    for (let cut = 1; cut < long.length - 4; cut++) expect(decodeConsistencyToken(long.slice(0, -cut), T, 'f'), `cut by ${cut}`).to.have.property('reason', 'INVALID_CONSISTENCY_TOKEN');
    for (const variant of [`${long}=`, long.replace('.', '. '), `${long.slice(0, 8)}!${long.slice(8)}`, long.toUpperCase()]) {
      expect(decodeConsistencyToken(variant, T, 'f'), variant).to.have.property('reason', 'INVALID_CONSISTENCY_TOKEN');
    }
    // A token of a server before ct2 (rolling upgrade): accepted exactly as it wrote them, nothing else.
    expect(decodeConsistencyToken(`ct1.${Buffer.from(`${T}:206`).toString('base64url')}`, T, 'f')).to.equal(206);
    expect(decodeConsistencyToken(`ct1.${Buffer.from(`${T}:0206`).toString('base64url')}`, T, 'f')).to.have.property('reason', 'INVALID_CONSISTENCY_TOKEN');
    expect(decodeConsistencyToken(`ct1.${Buffer.from(`${T}:206`).toString('base64url')}==`, T, 'f')).to.have.property('reason', 'INVALID_CONSISTENCY_TOKEN');
    expect(decodeConsistencyToken(token, 'other', 'f')).to.deep.include({ field: 'f', reason: 'INVALID_CONSISTENCY_TOKEN' });
    for (const bad of ['', 'ct1.', 'x', `ct1.${Buffer.from('acme:-1').toString('base64url')}`, `ct1.${Buffer.from('acme:99999999999999999').toString('base64url')}`]) {
      expect(decodeConsistencyToken(bad, T, 'f'), bad).to.have.property('reason', 'INVALID_CONSISTENCY_TOKEN');
    }
  });
});
