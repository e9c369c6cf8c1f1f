import { expect } from 'chai';
import {
  applyToScope,
  applyToWindow,
  CheckTarget,
  decide,
  foldEvents,
  ScopeState,
  scopeStatus,
  SubjectFacts,
  WindowState,
} from '../../src/domain/consent-rules';
import { ALL_PURPOSES, Channel, EventKind } from '../../src/domain/model';

const M = 60_000;
const H = 60 * M;
const DAY = 24 * H;
const T0 = Date.UTC(2025, 0, 1);

const emptyScope = (purposeId = 'newsletter', channel: Channel = 'WHATSAPP'): ScopeState => ({ purposeId, channel });

interface Ev {
  id: string;
  kind: EventKind;
  purposeId: string;
  channel: Channel;
  eventTime: number;
  expireTime?: number;
}
let counter = 0;
const ev = (kind: EventKind, eventTime: number, purposeId = 'newsletter', channel: Channel = 'WHATSAPP', expireTime?: number): Ev => ({
  id: `e${++counter}`,
  kind,
  purposeId,
  channel,
  eventTime,
  expireTime,
});

const facts = (events: Ev[], extra: Partial<SubjectFacts> = {}): SubjectFacts => ({ ...foldEvents('sub-1', events), ...extra });
const marketing: CheckTarget = { purposeId: 'newsletter', category: 'MARKETING', channel: 'WHATSAPP' };

describe('consent-rules', () => {
  describe(applyToScope.name, () => {
    it('an opt-in fills an empty scope', () => {
      const s = applyToScope(emptyScope(), { id: 'a', kind: 'OPT_IN', eventTime: T0, expireTime: T0 + DAY });
      expect(s).to.deep.equal({ purposeId: 'newsletter', channel: 'WHATSAPP', optIn: { eventId: 'a', kind: 'OPT_IN', eventTime: T0, expireTime: T0 + DAY } });
    });

    it('an opt-out fills an empty scope and leaves the opt-in slot alone', () => {
      const s = applyToScope(emptyScope(), { id: 'a', kind: 'OPT_OUT', eventTime: T0 });
      expect(s).to.deep.equal({ purposeId: 'newsletter', channel: 'WHATSAPP', optOut: { eventId: 'a', eventTime: T0 } });
    });

    it('does not modify the scope it is given', () => {
      const before = applyToScope(emptyScope(), { id: 'a', kind: 'OPT_IN', eventTime: T0 });
      const snapshot = structuredClone(before);
      applyToScope(before, { id: 'b', kind: 'OPT_IN', eventTime: T0 + 1 });
      applyToScope(before, { id: 'c', kind: 'OPT_OUT', eventTime: T0 + 1 });
      expect(before).to.deep.equal(snapshot);
    });

    for (const kind of ['OPT_IN', 'OPT_OUT'] as const) {
      const slot = kind === 'OPT_OUT' ? 'optOut' : 'optIn';

      it(`${kind}: a newer event replaces the older`, () => {
        const s1 = applyToScope(emptyScope(), { id: 'old', kind, eventTime: T0 });
        const s2 = applyToScope(s1, { id: 'new', kind, eventTime: T0 + M });
        expect(s2[slot]!.eventId).to.equal('new');
        expect(s2[slot]!.eventTime).to.equal(T0 + M);
      });

      it(`${kind}: an older event (recorded late) does not replace a newer one`, () => {
        const s1 = applyToScope(emptyScope(), { id: 'new', kind, eventTime: T0 + M });
        const s2 = applyToScope(s1, { id: 'old', kind, eventTime: T0 });
        expect(s2).to.equal(s1);
        expect(s2[slot]!.eventId).to.equal('new');
      });

      it(`${kind}: an event at the same time replaces (the later-recorded wins)`, () => {
        const s1 = applyToScope(emptyScope(), { id: 'first', kind, eventTime: T0 });
        const s2 = applyToScope(s1, { id: 'second', kind, eventTime: T0 });
        expect(s2[slot]!.eventId).to.equal('second');
      });
    }

    it('opt-in and opt-out slots are independent', () => {
      let s = applyToScope(emptyScope(), { id: 'in', kind: 'OPT_IN', eventTime: T0 + H });
      s = applyToScope(s, { id: 'out', kind: 'OPT_OUT', eventTime: T0 });
      expect(s.optIn!.eventId).to.equal('in');
      expect(s.optOut!.eventId).to.equal('out');
    });

    it('the opt-in slot holds the latest of every opt-in kind, with its own expiry', () => {
      let s = applyToScope(emptyScope(), { id: 'p', kind: 'OPT_IN_PENDING', eventTime: T0, expireTime: T0 + H });
      s = applyToScope(s, { id: 'c', kind: 'OPT_IN_CONFIRMED', eventTime: T0 + M });
      expect(s.optIn).to.deep.equal({ eventId: 'c', kind: 'OPT_IN_CONFIRMED', eventTime: T0 + M, expireTime: undefined });
      // A pending opt-in that happened before the confirmation does not undo it.
      s = applyToScope(s, { id: 'p2', kind: 'OPT_IN_PENDING', eventTime: T0 + 1 });
      expect(s.optIn!.eventId).to.equal('c');
    });
  });

  describe(applyToWindow.name, () => {
    it('opens a window from nothing', () => {
      expect(applyToWindow(undefined, 'SMS', 'm1', T0)).to.deep.equal({ channel: 'SMS', eventId: 'm1', lastInboundTime: T0 });
    });

    it('a newer message moves the window', () => {
      const w = applyToWindow(undefined, 'SMS', 'm1', T0);
      expect(applyToWindow(w, 'SMS', 'm2', T0 + H)).to.deep.equal({ channel: 'SMS', eventId: 'm2', lastInboundTime: T0 + H });
    });

    it('an older message does not move it back', () => {
      const w: WindowState = { channel: 'SMS', eventId: 'm2', lastInboundTime: T0 + H };
      expect(applyToWindow(w, 'SMS', 'm1', T0)).to.equal(w);
    });

    it('a message at the same time replaces (the later-recorded wins)', () => {
      const w: WindowState = { channel: 'SMS', eventId: 'm1', lastInboundTime: T0 };
      expect(applyToWindow(w, 'SMS', 'm2', T0).eventId).to.equal('m2');
    });
  });

  describe(foldEvents.name, () => {
    it('groups events by (purpose, channel) and inbound messages by channel', () => {
      const f = foldEvents('sub-1', [
        ev('OPT_IN', T0, 'newsletter', 'WHATSAPP'),
        ev('OPT_IN', T0 + 1, 'newsletter', 'SMS'),
        ev('OPT_OUT', T0 + 2, ALL_PURPOSES, 'ANY'),
        ev('OPT_OUT', T0 + 3, 'newsletter', 'WHATSAPP'),
        ev('INBOUND_MESSAGE', T0 + 4, ALL_PURPOSES, 'WHATSAPP'),
        ev('INBOUND_MESSAGE', T0 + 5, ALL_PURPOSES, 'WHATSAPP'),
        ev('INBOUND_MESSAGE', T0 + 6, ALL_PURPOSES, 'SMS'),
      ]);
      expect(f.subjectId).to.equal('sub-1');
      expect(f.erased).to.equal(false);
      expect(f.suppressed).to.equal(false);
      const byKey = new Map(f.scopes.map((s) => [`${s.purposeId}/${s.channel}`, s]));
      expect([...byKey.keys()].sort()).to.deep.equal(['-/ANY', 'newsletter/SMS', 'newsletter/WHATSAPP']);
      expect(byKey.get('newsletter/WHATSAPP')!.optIn!.eventTime).to.equal(T0);
      expect(byKey.get('newsletter/WHATSAPP')!.optOut!.eventTime).to.equal(T0 + 3);
      expect(byKey.get('newsletter/SMS')!.optOut).to.equal(undefined);
      expect(f.windows).to.have.length(2);
      expect(f.windows.find((w) => w.channel === 'WHATSAPP')!.lastInboundTime).to.equal(T0 + 5);
      expect(f.windows.find((w) => w.channel === 'SMS')!.lastInboundTime).to.equal(T0 + 6);
    });

    it('inbound messages make no consent scope', () => {
      const f = foldEvents('s', [ev('INBOUND_MESSAGE', T0, ALL_PURPOSES, 'SMS')]);
      expect(f.scopes).to.deep.equal([]);
    });

    it('no events give empty facts', () => {
      expect(foldEvents('s', [])).to.deep.equal({ subjectId: 's', erased: false, suppressed: false, scopes: [], windows: [] });
    });

    it('the result does not depend on the order events are replayed in (distinct times)', () => {
      const events = [
        ev('OPT_IN', T0, 'newsletter', 'WHATSAPP', T0 + DAY),
        ev('OPT_OUT', T0 + M, 'newsletter', 'WHATSAPP'),
        ev('OPT_IN_PENDING', T0 + 2 * M, 'newsletter', 'WHATSAPP'),
        ev('OPT_IN_CONFIRMED', T0 + 3 * M, 'newsletter', 'WHATSAPP'),
        ev('INBOUND_MESSAGE', T0 + 4 * M, ALL_PURPOSES, 'WHATSAPP'),
        ev('INBOUND_MESSAGE', T0 + 5 * M, ALL_PURPOSES, 'WHATSAPP'),
      ];
      const forward = foldEvents('s', events);
      const backward = foldEvents('s', [...events].reverse());
      const shuffled = foldEvents('s', [events[3], events[0], events[5], events[2], events[4], events[1]]);
      expect(backward).to.deep.equal(forward);
      expect(shuffled).to.deep.equal(forward);
      expect(forward.scopes[0].optIn!.kind).to.equal('OPT_IN_CONFIRMED');
      expect(forward.windows[0].eventId).to.equal(events[5].id);
    });
  });

  describe(scopeStatus.name, () => {
    const inAt = (t: number, kind: 'OPT_IN' | 'OPT_IN_PENDING' | 'OPT_IN_CONFIRMED' = 'OPT_IN', expireTime?: number) =>
      ({ eventId: 'in', kind, eventTime: t, expireTime }) as ScopeState['optIn'];
    const outAt = (t: number) => ({ eventId: 'out', eventTime: t });

    it('opt-in only: OPTED_IN', () => {
      expect(scopeStatus({ ...emptyScope(), optIn: inAt(T0) }, T0 + H)).to.equal('OPTED_IN');
      expect(scopeStatus({ ...emptyScope(), optIn: inAt(T0, 'OPT_IN_CONFIRMED') }, T0 + H)).to.equal('OPTED_IN');
    });

    it('opt-out only: OPTED_OUT', () => {
      expect(scopeStatus({ ...emptyScope(), optOut: outAt(T0) }, T0 + H)).to.equal('OPTED_OUT');
    });

    it('newer opt-out: OPTED_OUT; newer opt-in: OPTED_IN; a tie: OPTED_OUT', () => {
      expect(scopeStatus({ ...emptyScope(), optIn: inAt(T0), optOut: outAt(T0 + 1) }, T0 + H)).to.equal('OPTED_OUT');
      expect(scopeStatus({ ...emptyScope(), optIn: inAt(T0 + 1), optOut: outAt(T0) }, T0 + H)).to.equal('OPTED_IN');
      expect(scopeStatus({ ...emptyScope(), optIn: inAt(T0), optOut: outAt(T0) }, T0 + H)).to.equal('OPTED_OUT');
    });

    it('pending: PENDING_CONFIRMATION', () => {
      expect(scopeStatus({ ...emptyScope(), optIn: inAt(T0, 'OPT_IN_PENDING'), optOut: outAt(T0 - 1) }, T0 + H)).to.equal('PENDING_CONFIRMATION');
    });

    it('expired exactly at expireTime, not before', () => {
      const scope = { ...emptyScope(), optIn: inAt(T0, 'OPT_IN', T0 + DAY) };
      expect(scopeStatus(scope, T0 + DAY - 1)).to.equal('OPTED_IN');
      expect(scopeStatus(scope, T0 + DAY)).to.equal('EXPIRED');
      expect(scopeStatus(scope, T0 + 2 * DAY)).to.equal('EXPIRED');
    });

    it('a newer opt-out beats an expired opt-in', () => {
      expect(scopeStatus({ ...emptyScope(), optIn: inAt(T0, 'OPT_IN', T0 + 1), optOut: outAt(T0 + 2) }, T0 + H)).to.equal('OPTED_OUT');
    });
  });

  describe(decide.name, () => {
    const optedIn = () => facts([ev('OPT_IN', T0), ev('INBOUND_MESSAGE', T0, ALL_PURPOSES, 'WHATSAPP')]);

    it('null facts: UNKNOWN_SUBJECT, denied, without a subject id', () => {
      const d = decide(null, marketing, T0, DAY);
      expect(d).to.deep.equal({ allow: false, reason: 'UNKNOWN_SUBJECT', decidingEventId: undefined });
      expect(d).not.to.have.property('subjectId');
    });

    it('null facts are UNKNOWN_SUBJECT for every category', () => {
      for (const category of ['MARKETING', 'UTILITY', 'AUTHENTICATION', 'SERVICE'] as const) {
        expect(decide(null, { ...marketing, category }, T0, DAY).reason).to.equal('UNKNOWN_SUBJECT');
      }
    });

    describe('rule 1c: a reassigned identifier', () => {
      const R = T0 + H;
      const service: CheckTarget = { purposeId: null, category: 'SERVICE', channel: 'WHATSAPP' };
      it('nothing by the new owner yet: IDENTIFIER_REASSIGNED for every category, category-only checks too', () => {
        const f = facts([], { reassignedAt: R });
        for (const target of [marketing, { ...marketing, category: 'UTILITY' as const }, { ...marketing, category: 'AUTHENTICATION' as const }, service]) {
          expect(decide(f, target, R + M, DAY), target.category).to.deep.equal({ allow: false, reason: 'IDENTIFIER_REASSIGNED', decidingEventId: undefined, subjectId: 'sub-1' });
        }
      });
      it('an opt-in or a window dated at or before the reassignment (the old owner\'s, imported late) allows nothing', () => {
        const f = facts([ev('OPT_IN', R), ev('INBOUND_MESSAGE', R - M, ALL_PURPOSES, 'WHATSAPP')], { reassignedAt: R });
        expect(decide(f, marketing, R + M, DAY).reason).to.equal('IDENTIFIER_REASSIGNED');
        expect(decide(f, service, R + M, DAY).reason).to.equal('IDENTIFIER_REASSIGNED');
      });
      it('the new owner\'s opt-in allows its purpose; other purposes follow the rules without the old consents', () => {
        const mine = ev('OPT_IN', R + M);
        const f = facts([mine, ev('OPT_IN', R - M, 'orders')], { reassignedAt: R });
        expect(decide(f, marketing, R + 2 * M, DAY)).to.deep.include({ allow: true, reason: 'OPTED_IN', decidingEventId: mine.id });
        expect(decide(f, { purposeId: 'orders', category: 'UTILITY', channel: 'WHATSAPP' }, R + 2 * M, DAY).reason).to.equal('NO_CONSENT');
        expect(decide(f, service, R + 2 * M, DAY).reason).to.equal('SERVICE_WINDOW_CLOSED');
      });
      it('the new owner writing opens the window; an opt-out stays whenever it was dated', () => {
        const out = ev('OPT_OUT', R - M);
        const f = facts([out, ev('INBOUND_MESSAGE', R + M, ALL_PURPOSES, 'WHATSAPP')], { reassignedAt: R });
        expect(decide(f, service, R + 2 * M, DAY).reason).to.equal('SERVICE_WINDOW_OPEN');
        expect(decide(f, marketing, R + 2 * M, DAY)).to.deep.include({ allow: false, reason: 'OPTED_OUT', decidingEventId: out.id });
      });
    });

    it('an erased subject is SUBJECT_ERASED before anything else', () => {
      const f = { ...optedIn(), erased: true, suppressed: true };
      for (const category of ['MARKETING', 'UTILITY', 'AUTHENTICATION', 'SERVICE'] as const) {
        const d = decide(f, { ...marketing, category }, T0 + M, DAY);
        expect(d, category).to.deep.equal({ allow: false, reason: 'SUBJECT_ERASED', decidingEventId: undefined, subjectId: 'sub-1' });
      }
    });

    it('a suppressed subject is SUPPRESSED despite an opt-in and an open window', () => {
      const f = { ...optedIn(), suppressed: true };
      for (const category of ['MARKETING', 'UTILITY', 'SERVICE'] as const) {
        const d = decide(f, { ...marketing, category }, T0 + M, DAY);
        expect(d, category).to.deep.include({ allow: false, reason: 'SUPPRESSED', subjectId: 'sub-1' });
      }
    });

    it('control: the same facts without erasure or suppression allow', () => {
      expect(decide(optedIn(), marketing, T0 + M, DAY)).to.deep.include({ allow: true, reason: 'OPTED_IN', subjectId: 'sub-1' });
    });

    it('a known subject without events: NO_CONSENT with subject id', () => {
      expect(decide(facts([]), marketing, T0, DAY)).to.deep.include({ allow: false, reason: 'NO_CONSENT', subjectId: 'sub-1' });
    });

    it('OPTED_IN carries the deciding event and the expiry as validUntil', () => {
      const optIn = ev('OPT_IN', T0, 'newsletter', 'WHATSAPP', T0 + DAY);
      expect(decide(facts([optIn]), marketing, T0 + H, DAY)).to.deep.equal({
        allow: true,
        reason: 'OPTED_IN',
        decidingEventId: optIn.id,
        validUntil: T0 + DAY,
        subjectId: 'sub-1',
      });
      expect(decide(facts([optIn]), marketing, T0 + DAY, DAY)).to.deep.include({ allow: false, reason: 'CONSENT_EXPIRED', decidingEventId: optIn.id });
    });

    describe('category-only target (purposeId null)', () => {
      const categoryOnly: CheckTarget = { purposeId: null, category: 'MARKETING', channel: 'WHATSAPP' };

      it('ignores a purpose-specific opt-in: NO_CONSENT', () => {
        expect(decide(facts([ev('OPT_IN', T0)]), categoryOnly, T0 + M, DAY).reason).to.equal('NO_CONSENT');
      });

      it('ignores a purpose-specific opt-out: NO_CONSENT, not OPTED_OUT', () => {
        expect(decide(facts([ev('OPT_OUT', T0)]), categoryOnly, T0 + M, DAY).reason).to.equal('NO_CONSENT');
      });

      it('applies an all-purpose opt-out', () => {
        const out = ev('OPT_OUT', T0, ALL_PURPOSES, 'ANY');
        expect(decide(facts([ev('OPT_IN', T0 - M), out]), categoryOnly, T0 + M, DAY)).to.deep.include({
          allow: false,
          reason: 'OPTED_OUT',
          decidingEventId: out.id,
        });
      });

      it('an all-purpose opt-in lifts an older all-purpose opt-out but is no consent by itself', () => {
        const f = facts([ev('OPT_OUT', T0, ALL_PURPOSES, 'WHATSAPP'), ev('OPT_IN', T0 + M, ALL_PURPOSES, 'WHATSAPP')]);
        expect(decide(f, categoryOnly, T0 + 2 * M, DAY).reason).to.equal('NO_CONSENT');
      });

      it('UTILITY is allowed by an open window despite a purpose-specific opt-out', () => {
        const inbound = ev('INBOUND_MESSAGE', T0 + M, ALL_PURPOSES, 'WHATSAPP');
        const f = facts([ev('OPT_OUT', T0, 'orders', 'WHATSAPP'), inbound]);
        expect(decide(f, { ...categoryOnly, category: 'UTILITY' }, T0 + 2 * M, DAY)).to.deep.include({
          allow: true,
          reason: 'SERVICE_WINDOW_OPEN',
          decidingEventId: inbound.id,
          validUntil: T0 + M + DAY,
        });
      });

      it('SERVICE with a closed window is SERVICE_WINDOW_CLOSED naming the last message', () => {
        const inbound = ev('INBOUND_MESSAGE', T0, ALL_PURPOSES, 'WHATSAPP');
        expect(decide(facts([inbound]), { ...categoryOnly, category: 'SERVICE' }, T0 + DAY, DAY)).to.deep.include({
          allow: false,
          reason: 'SERVICE_WINDOW_CLOSED',
          decidingEventId: inbound.id,
        });
      });
    });

    describe('rule order and scopes', () => {
      it('the service window closes exactly serviceWindowMs after the last inbound message', () => {
        const f = facts([ev('INBOUND_MESSAGE', T0, ALL_PURPOSES, 'SMS')]);
        const service: CheckTarget = { purposeId: 'support', category: 'SERVICE', channel: 'SMS' };
        expect(decide(f, service, T0 + DAY - 1, DAY)).to.deep.include({ allow: true, reason: 'SERVICE_WINDOW_OPEN', validUntil: T0 + DAY });
        expect(decide(f, service, T0 + DAY, DAY).reason).to.equal('SERVICE_WINDOW_CLOSED');
        expect(decide(f, service, T0 + DAY, 2 * DAY).reason).to.equal('SERVICE_WINDOW_OPEN');
      });

      it('a window on another channel does not count', () => {
        const f = facts([ev('INBOUND_MESSAGE', T0, ALL_PURPOSES, 'SMS')]);
        expect(decide(f, { purposeId: 'support', category: 'SERVICE', channel: 'WHATSAPP' }, T0 + M, DAY)).to.deep.include({
          reason: 'SERVICE_WINDOW_CLOSED',
          decidingEventId: undefined,
        });
      });

      it('an opt-out comes before the service window', () => {
        const f = facts([ev('INBOUND_MESSAGE', T0, ALL_PURPOSES, 'WHATSAPP'), ev('OPT_OUT', T0 + M, ALL_PURPOSES, 'ANY')]);
        expect(decide(f, { purposeId: 'support', category: 'SERVICE', channel: 'WHATSAPP' }, T0 + 2 * M, DAY).reason).to.equal('OPTED_OUT');
      });

      it('UTILITY without a window falls back to the purpose opt-in', () => {
        const f = facts([ev('OPT_IN', T0, 'orders', 'SMS')]);
        expect(decide(f, { purposeId: 'orders', category: 'UTILITY', channel: 'SMS' }, T0 + M, DAY).reason).to.equal('OPTED_IN');
      });

      it('AUTHENTICATION is not allowed by a window alone', () => {
        const f = facts([ev('INBOUND_MESSAGE', T0, ALL_PURPOSES, 'SMS')]);
        expect(decide(f, { purposeId: 'otp', category: 'AUTHENTICATION', channel: 'SMS' }, T0 + M, DAY).reason).to.equal('NO_CONSENT');
      });

      it('scopes of another purpose or channel are ignored; ANY covers the channel', () => {
        const f = facts([ev('OPT_OUT', T0 + M, 'other', 'WHATSAPP'), ev('OPT_OUT', T0 + M, 'newsletter', 'SMS'), ev('OPT_IN', T0, 'newsletter', 'ANY')]);
        expect(decide(f, marketing, T0 + 2 * M, DAY).reason).to.equal('OPTED_IN');
      });

      it('an opt-out on one channel is lifted by a newer opt-in on ANY', () => {
        const optIn = ev('OPT_IN', T0 + 2 * M, 'newsletter', 'ANY');
        const f = facts([ev('OPT_OUT', T0 + M, 'newsletter', 'WHATSAPP'), optIn]);
        expect(decide(f, marketing, T0 + 3 * M, DAY)).to.deep.include({ reason: 'OPTED_IN', decidingEventId: optIn.id });
      });

      it('a purpose opt-out is not lifted by a newer all-purpose opt-in', () => {
        const out = ev('OPT_OUT', T0 + M, 'newsletter', 'WHATSAPP');
        const f = facts([ev('OPT_IN', T0), out, ev('OPT_IN', T0 + 2 * M, ALL_PURPOSES, 'ANY')]);
        expect(decide(f, marketing, T0 + 3 * M, DAY)).to.deep.include({ reason: 'OPTED_OUT', decidingEventId: out.id });
      });

      it('an all-purpose opt-out is lifted by a newer purpose opt-in', () => {
        const optIn = ev('OPT_IN', T0 + 2 * M);
        const f = facts([ev('OPT_OUT', T0 + M, ALL_PURPOSES, 'ANY'), optIn]);
        expect(decide(f, marketing, T0 + 3 * M, DAY)).to.deep.include({ reason: 'OPTED_IN', decidingEventId: optIn.id });
      });

      it('an all-purpose opt-out at the same time as the opt-in wins', () => {
        const out = ev('OPT_OUT', T0, ALL_PURPOSES, 'ANY');
        expect(decide(facts([ev('OPT_IN', T0), out]), marketing, T0 + M, DAY)).to.deep.include({ reason: 'OPTED_OUT', decidingEventId: out.id });
      });

      it('a pending opt-in is CONFIRMATION_PENDING', () => {
        const p = ev('OPT_IN_PENDING', T0);
        expect(decide(facts([p]), marketing, T0 + M, DAY)).to.deep.include({ allow: false, reason: 'CONFIRMATION_PENDING', decidingEventId: p.id });
      });
    });
  });
});
