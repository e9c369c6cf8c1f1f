/**
 * The consent timeline as a picture: one horizontal lane per purpose and channel, events marked
 * on a shared UTC time axis. Drawn on the server as SVG markup (the CSP allows no script, and no
 * inline style: presentation is by attributes and the console stylesheet's classes). Every text
 * placed in it is escaped here; the page shows the same events in a table for screen readers.
 */
export interface TimelineEvent {
  id: string;
  kind: string;
  purpose: string;
  channel: string;
  eventTime: number;
  recordTime: number;
  expireTime?: number;
  /** End of the customer-service window an inbound message opened. */
  windowEnd?: number;
  method: string;
  principal: string;
  collectedBy: string;
  notice: string;
  noticeSha256: string;
  noticeLanguage: string;
  /** The notice's text, when ListNotices gave it. */
  noticeText?: string;
  evidence: Array<[string, string]>;
  jurisdiction: string;
}

const WIDTH = 960;
const LEFT = 220;
const RIGHT = 50;
const LANE = 36;
const TOP = 30;

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The SVG of `events` (sorted or not), up to `now`; '' when there are none. */
export function timelineSvg(events: TimelineEvent[], now: number): string {
  if (events.length === 0) return '';
  const lanes = [...new Set(events.map((e) => `${e.purpose} · ${e.channel}`))].sort();
  const times = events.flatMap((e) => [e.eventTime, e.expireTime ?? e.eventTime, e.windowEnd ?? e.eventTime]);
  let start = Math.min(...times);
  let end = Math.max(now, ...times);
  const pad = Math.max((end - start) * 0.05, 3_600_000);
  start -= pad;
  end += pad;
  const x = (t: number) => LEFT + ((t - start) / (end - start)) * (WIDTH - LEFT - RIGHT);
  const height = TOP + lanes.length * LANE + 50;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-labelledby="timeline-title">`);
  parts.push(`<title id="timeline-title">Consent timeline: ${events.length} events in ${lanes.length} lanes from ${day(start + pad)} to ${day(end - pad)}; the table below lists the same events</title>`);
  lanes.forEach((lane, i) => {
    const y = TOP + i * LANE + LANE / 2;
    parts.push(`<text class="lane-label" x="${LEFT - 8}" y="${y + 4}" text-anchor="end">${esc(lane)}</text>`);
    parts.push(`<line class="lane" x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${y}" y2="${y}"/>`);
  });
  // Time axis with about six ticks.
  const axisY = TOP + lanes.length * LANE + 10;
  parts.push(`<line class="axis" x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${axisY}" y2="${axisY}"/>`);
  for (let i = 0; i <= 5; i++) {
    const t = start + ((end - start) * i) / 5;
    parts.push(`<line class="tick" x1="${x(t)}" x2="${x(t)}" y1="${axisY}" y2="${axisY + 5}"/><text class="tick-label" x="${x(t)}" y="${axisY + 20}" text-anchor="middle">${day(t)}</text>`);
  }
  parts.push(`<line class="now" x1="${x(now)}" x2="${x(now)}" y1="${TOP - 10}" y2="${axisY}"/><text class="tick-label" x="${x(now)}" y="${TOP - 14}" text-anchor="middle">now</text>`);
  for (const e of events) {
    const y = TOP + lanes.indexOf(`${e.purpose} · ${e.channel}`) * LANE + LANE / 2;
    const cx = x(e.eventTime);
    const cls = e.kind.replace(/ /g, '-');
    if (e.windowEnd !== undefined) parts.push(`<rect class="window" x="${cx}" y="${y - 7}" width="${Math.max(x(e.windowEnd) - cx, 2)}" height="14"/>`);
    if (e.expireTime !== undefined) {
      parts.push(`<line class="validity" x1="${cx}" x2="${x(e.expireTime)}" y1="${y}" y2="${y}"/>`);
      parts.push(`<path class="expiry" d="M${x(e.expireTime)} ${y - 8} l6 8 l-6 8 l-6 -8 z"><title>expires ${esc(day(e.expireTime))}</title></path>`);
    }
    const shape = cls.startsWith('opt-out')
      ? `<rect class="event ${cls}" x="${cx - 6}" y="${y - 6}" width="12" height="12">`
      : `<circle class="event ${cls}" cx="${cx}" cy="${y}" r="7">`;
    const tag = shape.startsWith('<rect') ? 'rect' : 'circle';
    parts.push(`${shape}<title>${esc(`${e.kind} ${new Date(e.eventTime).toISOString()}`)}</title></${tag}>`);
  }
  parts.push('</svg>');
  return parts.join('');
}
