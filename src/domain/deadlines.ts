/**
 * GDPR Art. 12(3): a data-subject request is answered "within one month of receipt", extendable
 * by two further months. Periods in months are computed as Regulation (EEC, Euratom) No 1182/71
 * Art. 3(2)(c) says: the period ends with the expiry of the last hour of the day in the last
 * month which bears the same date as the day the period began; if that month has no such date,
 * with the last day of that month (31 January + 1 month -> end of 28/29 February).
 *
 * Days are calendar days in UTC. Art. 3(4) (a period ending on a public holiday, Saturday or
 * Sunday runs to the next working day) is not applied: holidays differ per member state, and an
 * earlier deadline is the safe side for the controller.
 */

const DAY_MS = 24 * 60 * 60 * 1000;

/** The instant a period of `months` months that began at `start` (epoch ms) ends: 00:00 UTC after its last day. */
export function monthsDeadline(start: number, months: number): number {
  const lastDay = addMonthsToDate(new Date(start), months);
  return lastDay.getTime() + DAY_MS;
}

/** The calendar day (00:00 UTC) `months` months after `date`'s day, clamped to the month's last day. */
export function addMonthsToDate(date: Date, months: number): Date {
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth() + months;
  const day = date.getUTCDate();
  const lastOfTarget = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return new Date(Date.UTC(year, month, Math.min(day, lastOfTarget)));
}

/** The deadline of a request received at `receivedAt`: one month (Art. 12(3) GDPR). */
export function requestDeadline(receivedAt: number): number {
  return monthsDeadline(receivedAt, 1);
}

/** The extended deadline: the original period of one month plus up to two further months. */
export function extendedDeadline(receivedAt: number, extraMonths: 1 | 2): number {
  return monthsDeadline(receivedAt, 1 + extraMonths);
}

/**
 * The instant `months` calendar months after `instant`, at the same time of day: the same date in
 * the target month, or its last day when it has no such date (Jan 31 + 1 month -> Feb 28/29).
 * Used for consent validity stated in months, with the month arithmetic of the deadlines above.
 */
export function addCalendarMonths(instant: number, months: number): number {
  const date = new Date(instant);
  const timeOfDay = instant - Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  return addMonthsToDate(date, months).getTime() + timeOfDay;
}

/**
 * Art. 12(3): an extension holds only if the person was informed of it, with its reasons, within
 * one month of receipt, i.e. before the first deadline. The deadline in force at `now`: the
 * extended one, unless the first deadline has passed without a notice recorded before it (then the
 * extension lapsed and the first deadline stands).
 */
export function deadlineInForce(request: { receiveTime: number; dueTime: number; extensionReason: string | null; extensionNotice?: { at: number } | null }, now: number): number {
  if (request.extensionReason === null) return request.dueTime;
  const first = requestDeadline(request.receiveTime);
  const informedInTime = request.extensionNotice != null && request.extensionNotice.at < first;
  return informedInTime || now < first ? request.dueTime : first;
}

/**
 * The earliest receive time whose first deadline is after `bound`: requests received before it
 * have a first deadline at or before `bound` (the deadline grows with the receive time).
 */
export function receivedBeforeFirstDeadline(bound: number): number {
  let low = bound - 40 * DAY_MS;
  let high = bound;
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (requestDeadline(mid) > bound) high = mid;
    else low = mid;
  }
  return requestDeadline(low) > bound ? low : high;
}
