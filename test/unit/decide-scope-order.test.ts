import { expect } from 'chai';
import { CheckTarget, decide, foldEvents, SubjectFacts } from '../../src/domain/consent-rules';
import { ALL_PURPOSES, Channel, EventKind, SendChannel } from '../../src/domain/model';

const T0 = Date.UTC(2026, 0, 1);

/** A small deterministic generator (mulberry32): the same cases on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * decide() reads a person's scopes in whatever order they come: the state tables (the live path)
 * list them in key order, a replay (a check at a past time, ExplainDecision's verifier) in the
 * order each scope was first written to. Events of different scopes with the same event time are
 * ordered by id (docs/consent-rules.md, "Equal event times"), so the order of the scopes must
 * never change a decision, nor the event it names.
 */
describe('decide(): the order of the scopes does not matter', () => {
  it('on 20,000 random histories with many equal event times, every permutation of the scopes decides alike', () => {
    const random = seeded(1405);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const kinds: EventKind[] = ['OPT_IN', 'OPT_IN', 'OPT_IN_PENDING', 'OPT_IN_CONFIRMED', 'OPT_OUT', 'OPT_OUT', 'INBOUND_MESSAGE'];
    const channels: Channel[] = ['WHATSAPP', 'SMS', 'ANY'];
    let differentOrders = 0;
    for (let n = 0; n < 20_000; n++) {
      const events = Array.from({ length: 2 + Math.floor(random() * 6) }, (_, i) => {
        const kind = pick(kinds);
        const channel = kind === 'INBOUND_MESSAGE' ? pick<Channel>(['WHATSAPP', 'SMS']) : pick(channels);
        // Few distinct times: ties between scopes are the point.
        const eventTime = T0 + Math.floor(random() * 3) * 1000;
        return {
          id: `${(random() * 1e6).toFixed(0).padStart(6, '0')}-${i}`,
          kind,
          purposeId: kind === 'INBOUND_MESSAGE' || random() < 0.4 ? ALL_PURPOSES : 'newsletter',
          channel,
          eventTime,
          expireTime: kind !== 'OPT_OUT' && random() < 0.3 ? eventTime + 1500 : undefined,
        };
      });
      const facts: SubjectFacts = foldEvents('s', events);
      const target: CheckTarget = { purposeId: random() < 0.9 ? 'newsletter' : null, category: pick(['MARKETING', 'UTILITY', 'SERVICE'] as const), channel: pick<SendChannel>(['WHATSAPP', 'SMS']) };
      if (target.purposeId === null && target.category === 'MARKETING') target.category = 'UTILITY';
      const at = T0 + Math.floor(random() * 4) * 1000;
      const expected = decide(facts, target, at, 2000);
      for (const order of [[...facts.scopes].reverse(), [...facts.scopes].sort((a, b) => (a.purposeId + a.channel < b.purposeId + b.channel ? -1 : 1))]) {
        const reordered = { ...facts, scopes: order };
        if (order.some((s, i) => s !== facts.scopes[i])) differentOrders++;
        expect(decide(reordered, target, at, 2000), JSON.stringify({ events, target, at })).to.deep.equal(expected);
      }
    }
    expect(differentOrders, 'cases where the order differed').to.be.above(10_000);
  });
});
