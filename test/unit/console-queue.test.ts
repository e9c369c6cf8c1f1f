import { expect } from 'chai';
import { DataSubjectRequest, RequestState } from '../../src/gen/consent/v1/subject_rights';
import { daysLeft, deadlineText, parseFilter, queueRows } from '../../src/console/queue';

const NOW = Date.UTC(2026, 2, 10, 15, 30);
const req = (name: string, due: string, state = RequestState.REQUEST_STATE_RECEIVED, overdue = false): DataSubjectRequest =>
  DataSubjectRequest.fromPartial({ name: `tenants/t/requests/${name}`, state, overdue, dueTime: new Date(`${due}T00:00:00Z`) });

/** The console's queue order and deadline wording (src/console/queue.ts). `due` is the API's due_time: the midnight after the due day. */
describe('console queue', () => {
  it('counts days from today (UTC) to the due day, which is the day before due_time', () => {
    expect(daysLeft(req('a', '2026-03-11'), NOW)).to.equal(0);
    expect(daysLeft(req('a', '2026-03-12'), NOW)).to.equal(1);
    expect(daysLeft(req('a', '2026-03-08'), NOW)).to.equal(-3);
    expect(daysLeft(req('a', '2026-03-08', RequestState.REQUEST_STATE_COMPLETED), NOW)).to.equal(null);
    expect(daysLeft(req('a', '2026-03-08', RequestState.REQUEST_STATE_REJECTED), NOW)).to.equal(null);
  });

  it('words the deadline', () => {
    expect(deadlineText(null, false)).to.equal('closed');
    expect(deadlineText(0, false)).to.equal('due today');
    expect(deadlineText(1, false)).to.equal('1 day left');
    expect(deadlineText(12, false)).to.equal('12 days left');
    expect(deadlineText(-1, true)).to.equal('overdue by 1 day');
    expect(deadlineText(-4, true)).to.equal('overdue by 4 days');
  });

  it('puts overdue requests first (longest overdue on top), then open ones by due date, then closed ones in the API order', () => {
    const rows = queueRows(
      [
        req('closed-new', '2026-03-01', RequestState.REQUEST_STATE_COMPLETED),
        req('open-late', '2026-04-01'),
        req('overdue-recent', '2026-03-09', RequestState.REQUEST_STATE_VERIFIED, true),
        req('closed-old', '2026-02-01', RequestState.REQUEST_STATE_REJECTED),
        req('open-soon', '2026-03-12'),
        req('overdue-old', '2026-03-01', RequestState.REQUEST_STATE_RECEIVED, true),
      ],
      NOW,
    );
    expect(rows.map((r) => r.id)).to.deep.equal(['overdue-old', 'overdue-recent', 'open-soon', 'open-late', 'closed-new', 'closed-old']);
    expect(rows.map((r) => r.deadline)).to.deep.equal(['overdue by 10 days', 'overdue by 2 days', '1 day left', '21 days left', 'closed', 'closed']);
  });

  it('reads filters, falling back to the defaults for unknown values', () => {
    expect(parseFilter({})).to.deep.equal({ state: 'open', kind: 'all', overdueOnly: false });
    expect(parseFilter({ state: 'in-progress', kind: 'erasure', overdue: 'on' })).to.deep.equal({ state: 'in-progress', kind: 'erasure', overdueOnly: true });
    expect(parseFilter({ state: 'bogus', kind: '__proto__' })).to.deep.equal({ state: 'open', kind: 'all', overdueOnly: false });
    expect(parseFilter({ kind: 'rectification' }).kind).to.equal('rectification');
  });
});
