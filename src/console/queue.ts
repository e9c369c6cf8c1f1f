import { DataSubjectRequest, RequestKind, RequestState } from '../gen/consent/v1/subject_rights';

const DAY_MS = 86_400_000;

/** A request as the queue shows it: the API's record and where its deadline stands today. */
export interface QueueRow {
  request: DataSubjectRequest;
  /** The request's id (last part of its name). */
  id: string;
  /** Whole days from today (UTC) to the due date: 0 due today, negative overdue; null once closed. */
  daysLeft: number | null;
  /** "overdue by 2 days", "due today", "5 days left", "closed". */
  deadline: string;
  open: boolean;
}

export function isOpen(r: DataSubjectRequest): boolean {
  return r.state !== RequestState.REQUEST_STATE_COMPLETED && r.state !== RequestState.REQUEST_STATE_REJECTED;
}

/**
 * Days from the UTC day of `now` to the due date (the last day to answer, inclusive). The API's
 * `due_time` is the midnight after it, so the due day starts one day before.
 */
export function daysLeft(r: DataSubjectRequest, now: number): number | null {
  if (!isOpen(r) || !r.dueTime) return null;
  const dueDay = Math.floor(r.dueTime.getTime() / DAY_MS) - 1;
  return dueDay - Math.floor(now / DAY_MS);
}

export function deadlineText(days: number | null, overdue: boolean): string {
  if (days === null) return 'closed';
  if (overdue || days < 0) return days < 0 ? `overdue by ${-days} day${days === -1 ? '' : 's'}` : 'overdue';
  if (days === 0) return 'due today';
  return `${days} day${days === 1 ? '' : 's'} left`;
}

/**
 * The DPO's order: overdue first (the longest overdue on top), then open requests by due date,
 * then closed ones, newest first. Ties keep the API's order (newest first).
 */
export function queueRows(requests: readonly DataSubjectRequest[], now: number): QueueRow[] {
  const rows = requests.map((request, index) => {
    const days = daysLeft(request, now);
    return { request, index, id: request.name.slice(request.name.lastIndexOf('/') + 1), daysLeft: days, deadline: deadlineText(days, request.overdue), open: isOpen(request) };
  });
  const rank = (r: (typeof rows)[number]) => (r.request.overdue ? 0 : r.open ? 1 : 2);
  rows.sort((a, b) => {
    const byRank = rank(a) - rank(b);
    if (byRank !== 0) return byRank;
    if (a.open && b.open) {
      const byDue = (a.request.dueTime?.getTime() ?? 0) - (b.request.dueTime?.getTime() ?? 0);
      if (byDue !== 0) return byDue;
    }
    return a.index - b.index;
  });
  return rows.map(({ index: _index, ...row }) => row);
}

/** The queue's filters, as read from the query string (nothing personal: states and kinds). */
export interface QueueFilter {
  /** 'open' (the default: not completed or rejected), 'all', or one state. */
  state: 'open' | 'all' | keyof typeof STATE_VALUES;
  kind: 'all' | keyof typeof KIND_VALUES;
  overdueOnly: boolean;
}

export const STATE_VALUES = {
  received: RequestState.REQUEST_STATE_RECEIVED,
  verified: RequestState.REQUEST_STATE_VERIFIED,
  'in-progress': RequestState.REQUEST_STATE_IN_PROGRESS,
  completed: RequestState.REQUEST_STATE_COMPLETED,
  rejected: RequestState.REQUEST_STATE_REJECTED,
} as const;

export const KIND_VALUES = {
  access: RequestKind.REQUEST_KIND_ACCESS,
  portability: RequestKind.REQUEST_KIND_PORTABILITY,
  erasure: RequestKind.REQUEST_KIND_ERASURE,
  objection: RequestKind.REQUEST_KIND_OBJECTION,
  restriction: RequestKind.REQUEST_KIND_RESTRICTION,
  rectification: RequestKind.REQUEST_KIND_RECTIFICATION,
} as const;

/** Unknown values fall back to the defaults rather than failing: a stale bookmark still opens. */
export function parseFilter(query: Record<string, unknown>): QueueFilter {
  const state = String(query.state ?? 'open');
  const kind = String(query.kind ?? 'all');
  return {
    state: state === 'all' || Object.hasOwn(STATE_VALUES, state) ? (state as QueueFilter['state']) : 'open',
    kind: Object.hasOwn(KIND_VALUES, kind) ? (kind as QueueFilter['kind']) : 'all',
    overdueOnly: query.overdue === 'on' || query.overdue === 'true',
  };
}

export const STATE_LABELS: Record<number, string> = {
  [RequestState.REQUEST_STATE_RECEIVED]: 'received',
  [RequestState.REQUEST_STATE_VERIFIED]: 'verified',
  [RequestState.REQUEST_STATE_IN_PROGRESS]: 'in progress',
  [RequestState.REQUEST_STATE_COMPLETED]: 'completed',
  [RequestState.REQUEST_STATE_REJECTED]: 'rejected',
};

export const KIND_LABELS: Record<number, string> = {
  [RequestKind.REQUEST_KIND_ACCESS]: 'access (Art. 15)',
  [RequestKind.REQUEST_KIND_PORTABILITY]: 'portability (Art. 20)',
  [RequestKind.REQUEST_KIND_ERASURE]: 'erasure (Art. 17)',
  [RequestKind.REQUEST_KIND_OBJECTION]: 'objection (Art. 21)',
  [RequestKind.REQUEST_KIND_RESTRICTION]: 'restriction (Art. 18)',
  [RequestKind.REQUEST_KIND_RECTIFICATION]: 'rectification (Art. 16)',
};
