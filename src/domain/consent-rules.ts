import { ALL_PURPOSES, Channel, ConsentKind, EventKind, OptInKind, PurposeCategory, SendChannel } from './model';

/**
 * The consent check's rules (docs/consent-rules.md, from the design brief's domain.md).
 * Pure functions over a subject's folded state, so the live path (a current-state table) and
 * the time-travel path (events replayed up to T) decide with exactly the same code.
 */

/** The latest opt-in-type and the latest opt-out event of one (purpose or all, channel or ANY) scope. */
export interface ScopeState {
  purposeId: string;
  channel: Channel;
  optIn?: { eventId: string; kind: OptInKind; eventTime: number; expireTime?: number };
  optOut?: { eventId: string; eventTime: number };
}

export interface WindowState {
  channel: Channel;
  eventId: string;
  lastInboundTime: number;
}

/** Everything the rules need to know about one subject. */
export interface SubjectFacts {
  subjectId: string;
  erased: boolean;
  suppressed: boolean;
  scopes: ScopeState[];
  windows: WindowState[];
  /**
   * Art. 21(3): the person's standing objection to direct marketing, on the event-time axis
   * (never before an opt-in recorded before the objection); absent: none.
   */
  objectedAt?: number;
  /** Art. 18: a restriction of the person's processing is in force. */
  restricted?: boolean;
  /**
   * A fresh subject made for the new owner of a reassigned identifier: when it passed to them
   * (ConsentService.ReportReassignedIdentifier); absent: not one.
   */
  reassignedAt?: number;
}

export type DecisionReason =
  | 'SUBJECT_ERASED'
  | 'SUPPRESSED'
  | 'OPTED_OUT'
  | 'SERVICE_WINDOW_OPEN'
  | 'SERVICE_WINDOW_CLOSED'
  | 'OPTED_IN'
  | 'CONFIRMATION_PENDING'
  | 'CONSENT_EXPIRED'
  | 'NO_CONSENT'
  | 'UNKNOWN_SUBJECT'
  | 'OBJECTED'
  | 'RESTRICTED'
  | 'IDENTIFIER_REASSIGNED';

export interface Decision {
  allow: boolean;
  /** The subject the decision is about; unset for an unknown person. */
  subjectId?: string;
  reason: DecisionReason;
  /** The event that decided, if one did. */
  decidingEventId?: string;
  /** Until when the answer holds if nothing new is recorded. */
  validUntil?: number;
}

/** What is being asked: a purpose (whose category is known) or a bare category. */
export interface CheckTarget {
  /** null for a category-only check: then only all-purpose opt-outs and service windows apply. */
  purposeId: string | null;
  category: PurposeCategory;
  channel: SendChannel;
  /** Art. 18(2): the purpose is marked as allowed while the person's processing is restricted. */
  allowedWhileRestricted?: boolean;
}

/**
 * Whether the rules read an event (or an audit entry describing one) for `target`: its scope
 * covers the purpose and channel, or it is an inbound message opening that channel's window.
 */
export function readsFor(event: { kind: EventKind; purposeId?: string; channel?: string }, target: { purposeId: string | null; channel: string | null }): boolean {
  if (event.kind === 'INBOUND_MESSAGE') return event.channel === target.channel;
  return (event.purposeId === ALL_PURPOSES || event.purposeId === target.purposeId) && (event.channel === 'ANY' || event.channel === target.channel);
}

/** Folds one event into a scope's state; the current-state table and replays both use it. */
export function applyToScope(
  scope: ScopeState,
  event: { id: string; kind: ConsentKind; eventTime: number; expireTime?: number },
): ScopeState {
  if (event.kind === 'OPT_OUT') {
    // Ordered by the person's action time; on a tie the later-recorded opt-out wins too.
    if (!scope.optOut || event.eventTime >= scope.optOut.eventTime) {
      return { ...scope, optOut: { eventId: event.id, eventTime: event.eventTime } };
    }
    return scope;
  }
  if (!scope.optIn || event.eventTime >= scope.optIn.eventTime) {
    return {
      ...scope,
      optIn: { eventId: event.id, kind: event.kind, eventTime: event.eventTime, expireTime: event.expireTime },
    };
  }
  return scope;
}

/** Folds an inbound message into the channel's window state. */
export function applyToWindow(window: WindowState | undefined, channel: Channel, eventId: string, eventTime: number): WindowState {
  if (window && window.lastInboundTime > eventTime) return window;
  return { channel, eventId, lastInboundTime: eventTime };
}

/** Applies the rules of domain.md in order; the first that applies decides. */
// Every check runs these rules (a thousand times per batch): plain loops, no arrays or closures
// made per call, and the decision made once, with its subject (the last key, for a known person).
export function decide(facts: SubjectFacts | null, target: CheckTarget, at: number, serviceWindowMs: number): Decision {
  // Rule 6b: a person never recorded is denied, not an error: senders check strangers.
  if (!facts) return deny(null, 'UNKNOWN_SUBJECT');
  // Rule 1.
  if (facts.erased) return deny(facts, 'SUBJECT_ERASED');
  if (facts.suppressed) return deny(facts, 'SUPPRESSED');
  // Rule 1a (Art. 18): while the person's processing is restricted, only purposes the tenant
  // marked as allowed under Art. 18(2) go on to the consent rules.
  if (facts.restricted === true && target.allowedWhileRestricted !== true) return deny(facts, 'RESTRICTED');
  // Rule 1c (applied before 1b; the order between them changes no verdict): the identifier
  // passed to someone else. Only what its new owner did after the
  // reassignment counts (an opt-in or an inbound message with a later event time); until there
  // is any, every check answers IDENTIFIER_REASSIGNED. A late import of the old owner's consent
  // (an earlier event time) never allows.
  if (facts.reassignedAt !== undefined) {
    const fresh = sinceReassignment(facts, facts.reassignedAt);
    if (!fresh) return deny(facts, 'IDENTIFIER_REASSIGNED');
    facts = fresh;
  }

  // The scopes covering the purpose and channel asked about: `specific` ones name the purpose,
  // `general` ones all purposes (ALL_PURPOSES); each on the channel or on ANY.
  // Rule 2: an opt-out stands unless a later opt-in lifts it; opt-out wins ties. A purpose's own
  // opt-in lifts any opt-out that covers it. An all-purpose opt-in (keyword START) lifts only the
  // all-purpose opt-out of its very own scope (STOP on that channel): a keyword never revives a
  // withdrawal made for one purpose, nor one made for every channel at once.
  let specificIn: ScopeState['optIn'];
  let specificOut: ScopeState['optOut'];
  for (const s of facts.scopes) {
    if (s.purposeId === ALL_PURPOSES || s.purposeId !== target.purposeId || (s.channel !== 'ANY' && s.channel !== target.channel)) continue;
    specificIn = later(specificIn, s.optIn);
    specificOut = later(specificOut, s.optOut);
  }
  // Rule 1b (Art. 21(3)): after an objection to direct marketing, a MARKETING purpose is allowed
  // again only by an opt-in for it that is later than the objection and in force; before the
  // opt-out rules, so the answer names the objection (its opt-out of the purpose, if it has one).
  if (facts.objectedAt !== undefined && target.category === 'MARKETING' && !lifts(specificIn, { eventTime: facts.objectedAt }, at)) {
    return deny(facts, 'OBJECTED', specificOut?.eventId);
  }
  if (specificOut && !lifts(specificIn, specificOut, at)) return deny(facts, 'OPTED_OUT', specificOut.eventId);
  let generalOut: ScopeState['optOut'];
  for (const s of facts.scopes) {
    if (s.purposeId !== ALL_PURPOSES || (s.channel !== 'ANY' && s.channel !== target.channel)) continue;
    if (s.optOut && !lifts(specificIn, s.optOut, at) && !lifts(s.optIn, s.optOut, at)) generalOut = later(generalOut, s.optOut);
  }
  if (generalOut) return deny(facts, 'OPTED_OUT', generalOut.eventId);

  let window: WindowState | undefined;
  for (const w of facts.windows) {
    if (w.channel === target.channel) {
      window = w;
      break;
    }
  }
  const windowEnd = window ? window.lastInboundTime + serviceWindowMs : undefined;
  const windowOpen = window !== undefined && windowEnd !== undefined && at < windowEnd;

  // Rule 3.
  if (target.category === 'SERVICE') {
    return windowOpen
      ? allow(facts, 'SERVICE_WINDOW_OPEN', window!.eventId, windowEnd)
      : deny(facts, 'SERVICE_WINDOW_CLOSED', window?.eventId);
  }
  // Rule 4.
  if (target.category === 'UTILITY' && windowOpen) {
    return allow(facts, 'SERVICE_WINDOW_OPEN', window!.eventId, windowEnd);
  }
  // Rules 4 and 5: a consent to this very purpose; an all-purpose keyword opt-in is no consent
  // to any particular purpose (Art. 4(11): specific and informed).
  if (specificIn) {
    if (specificIn.kind === 'OPT_IN_PENDING') return deny(facts, 'CONFIRMATION_PENDING', specificIn.eventId);
    if (specificIn.expireTime !== undefined && specificIn.expireTime <= at) {
      return deny(facts, 'CONSENT_EXPIRED', specificIn.eventId);
    }
    return allow(facts, 'OPTED_IN', specificIn.eventId, specificIn.expireTime);
  }
  // Rule 6.
  return deny(facts, 'NO_CONSENT');
}

/** The status shown by GetConsentState for one scope at `at`. */
export function scopeStatus(scope: ScopeState, at: number): 'OPTED_IN' | 'OPTED_OUT' | 'PENDING_CONFIRMATION' | 'EXPIRED' {
  if (scope.optOut && (!scope.optIn || scope.optOut.eventTime >= scope.optIn.eventTime)) return 'OPTED_OUT';
  const optIn = scope.optIn;
  // A scope exists only once an event was folded into it; without an opt-in it is an opt-out.
  if (!optIn) return 'OPTED_OUT';
  if (optIn.kind === 'OPT_IN_PENDING') return 'PENDING_CONFIRMATION';
  if (optIn.expireTime !== undefined && optIn.expireTime <= at) return 'EXPIRED';
  return 'OPTED_IN';
}

/** Replays events (already filtered to those recorded at or before T) into facts. */
export function foldEvents(
  subjectId: string,
  events: Iterable<{ id: string; kind: EventKind; purposeId: string; channel: Channel; eventTime: number; expireTime?: number }>,
): SubjectFacts {
  const scopes = new Map<string, ScopeState>();
  const windows = new Map<Channel, WindowState>();
  for (const event of events) {
    if (event.kind === 'INBOUND_MESSAGE') {
      windows.set(event.channel, applyToWindow(windows.get(event.channel), event.channel, event.id, event.eventTime));
      continue;
    }
    const key = `${event.purposeId}\u0000${event.channel}`;
    const scope = scopes.get(key) ?? { purposeId: event.purposeId, channel: event.channel };
    scopes.set(key, applyToScope(scope, { ...event, kind: event.kind }));
  }
  return { subjectId, erased: false, suppressed: false, scopes: [...scopes.values()], windows: [...windows.values()] };
}

/**
 * The facts of a reassigned identifier's new owner without what happened before `reassignedAt`
 * (opt-ins and service windows of earlier event times; opt-outs stay, they only deny), or null
 * when the new owner has neither opted in nor written since.
 */
function sinceReassignment(facts: SubjectFacts, reassignedAt: number): SubjectFacts | null {
  let acted = false;
  const scopes: ScopeState[] = [];
  for (const s of facts.scopes) {
    if (s.optIn && s.optIn.eventTime > reassignedAt) acted = true;
    else if (s.optIn) {
      const { optIn: _old, ...rest } = s;
      if (rest.optOut) scopes.push(rest);
      continue;
    }
    scopes.push(s);
  }
  const windows = facts.windows.filter((w) => w.lastInboundTime > reassignedAt);
  if (windows.length > 0) acted = true;
  if (!acted) return null;
  const { reassignedAt: _marker, ...rest } = facts;
  return { ...rest, scopes, windows };
}

/**
 * Whether `optIn` lifts `optOut`: it is later (on a tie the opt-out stands) and it is a consent
 * in force at `at`. A pending double opt-in or an expired one does not undo a withdrawal.
 */
function lifts(optIn: ScopeState['optIn'], optOut: { eventTime: number }, at: number): boolean {
  if (!optIn || optIn.eventTime <= optOut.eventTime) return false;
  if (optIn.kind === 'OPT_IN_PENDING') return false;
  return optIn.expireTime === undefined || optIn.expireTime > at;
}

/** A DENY; about `facts`' person when there is one (the subject the last key). */
function deny(facts: SubjectFacts | null, reason: DecisionReason, decidingEventId?: string): Decision {
  return facts ? { allow: false, reason, decidingEventId, subjectId: facts.subjectId } : { allow: false, reason, decidingEventId };
}

function allow(facts: SubjectFacts, reason: DecisionReason, decidingEventId: string, validUntil: number | undefined): Decision {
  return { allow: true, reason, decidingEventId, validUntil, subjectId: facts.subjectId };
}

/**
 * The later of two events of different scopes: by event time, and of two with the same time the
 * one with the greater id (docs/consent-rules.md, "Equal event times"). Never by the order the
 * scopes come in: the state tables list them in key order, a replay in the order they were first
 * written to, and both must name the same deciding event.
 */
function later<T extends { eventId: string; eventTime: number }>(best: T | undefined, item: T | undefined): T | undefined {
  if (!item) return best;
  if (!best || item.eventTime > best.eventTime) return item;
  return item.eventTime === best.eventTime && item.eventId > best.eventId ? item : best;
}
