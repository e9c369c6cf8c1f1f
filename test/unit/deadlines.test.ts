import { expect } from 'chai';
import { deadlineInForce, extendedDeadline, monthsDeadline, receivedBeforeFirstDeadline, requestDeadline } from '../../src/domain/deadlines';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

describe('deadlines (Regulation 1182/71 Art. 3(2)(c))', () => {
  const cases: Array<[string, string, string]> = [
    ['an ordinary date', '2026-03-10T09:30:00Z', '2026-04-11T00:00:00.000Z'],
    ['received just before midnight', '2026-03-10T23:59:59Z', '2026-04-11T00:00:00.000Z'],
    ['received just after midnight', '2026-03-11T00:00:00Z', '2026-04-12T00:00:00.000Z'],
    ['31 January -> end of 28 February', '2026-01-31T12:00:00Z', '2026-03-01T00:00:00.000Z'],
    ['31 January of a leap year -> end of 29 February', '2028-01-31T12:00:00Z', '2028-03-01T00:00:00.000Z'],
    ['29 January of a leap year -> end of 29 February', '2028-01-29T08:00:00Z', '2028-03-01T00:00:00.000Z'],
    ['30 January of a common year -> end of 28 February', '2027-01-30T08:00:00Z', '2027-03-01T00:00:00.000Z'],
    ['28 February -> end of 28 March', '2027-02-28T08:00:00Z', '2027-03-29T00:00:00.000Z'],
    ['29 February -> end of 29 March', '2028-02-29T08:00:00Z', '2028-03-30T00:00:00.000Z'],
    ['31 March -> end of 30 April', '2026-03-31T08:00:00Z', '2026-05-01T00:00:00.000Z'],
    ['31 May -> end of 30 June', '2026-05-31T08:00:00Z', '2026-07-01T00:00:00.000Z'],
    ['30 April -> end of 30 May (not the month end)', '2026-04-30T08:00:00Z', '2026-05-31T00:00:00.000Z'],
    ['31 December -> end of 31 January, across the year', '2026-12-31T08:00:00Z', '2027-02-01T00:00:00.000Z'],
    ['15 December -> end of 15 January', '2026-12-15T08:00:00Z', '2027-01-16T00:00:00.000Z'],
  ];
  for (const [name, received, due] of cases) {
    it(name, () => expect(iso(requestDeadline(at(received)))).to.equal(due));
  }

  it('an extension adds up to two months to the original period, counted from receipt', () => {
    expect(iso(extendedDeadline(at('2026-01-31T12:00:00Z'), 1))).to.equal('2026-04-01T00:00:00.000Z'); // 31 March
    expect(iso(extendedDeadline(at('2026-01-31T12:00:00Z'), 2))).to.equal('2026-05-01T00:00:00.000Z'); // 30 April
    expect(iso(extendedDeadline(at('2027-11-30T12:00:00Z'), 2))).to.equal('2028-03-01T00:00:00.000Z'); // 29 Feb 2028
  });

  it('periods of other lengths', () => {
    expect(iso(monthsDeadline(at('2026-08-31T00:00:00Z'), 6))).to.equal('2027-03-01T00:00:00.000Z'); // 28 Feb 2027
    expect(iso(monthsDeadline(at('2024-02-29T00:00:00Z'), 12))).to.equal('2025-03-01T00:00:00.000Z'); // 28 Feb 2025
  });
});

describe('the deadline in force after an extension (Art. 12(3)) and the overdue filter\'s receive-time bound', () => {
  const received = Date.UTC(2027, 0, 31, 15, 0);
  const first = requestDeadline(received);
  const extended = { receiveTime: received, dueTime: extendedDeadline(received, 2), extensionReason: 'many requests' };
  it('holds while the first deadline has not passed, and after it only if the person was told before it', () => {
    expect(deadlineInForce({ ...extended, extensionNotice: null }, first - 1)).to.equal(extended.dueTime);
    expect(deadlineInForce({ ...extended, extensionNotice: null }, first)).to.equal(first);
    expect(deadlineInForce({ ...extended, extensionNotice: { at: first - 1 } }, first + 1)).to.equal(extended.dueTime);
    expect(deadlineInForce({ ...extended, extensionNotice: { at: first } }, first + 1)).to.equal(first);
    expect(deadlineInForce({ ...extended, extensionReason: null, dueTime: first, extensionNotice: null }, first + 1)).to.equal(first);
  });
  it('receivedBeforeFirstDeadline(bound): exactly the receive times whose first deadline is at or before the bound', () => {
    for (let i = 0; i < 2_000; i++) {
      const bound = Date.UTC(2026, 0, 1) + Math.floor(Math.random() * 3 * 365) * 86_400_000 + Math.floor(Math.random() * 86_400_000);
      const t = receivedBeforeFirstDeadline(bound);
      expect(requestDeadline(t - 1), `just before, bound ${bound}`).to.be.at.most(bound);
      expect(requestDeadline(t), `at it, bound ${bound}`).to.be.above(bound);
    }
  });
});
