/**
 * The consent timeline as a picture: one horizontal lane per purpose and channel, events marked
 * on a shared UTC time axis, and the person-wide facts (erasure, restrictions, objections) drawn
 * across all lanes. Drawn on the server as SVG markup (the CSP allows no script, and no inline
 * style: presentation is by attributes and the console stylesheet's classes). Every text placed
 * in it is escaped here; the page shows the same events and facts in tables for screen readers.
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
  /** The event's audit entry: its log position and leaf hash (every event has one). */
  auditIndex?: number;
  leafHash?: string;
  /**
   * Its body (evidence, collector) is ciphertext under the erased person's destroyed key: only
   * what its audit entry says is left.
   */
  shredded?: boolean;
  /** Provenance from ListConsentEvents (by identifier only): absent when the page has no lookup. */
  method?: string;
  principal: string;
  collectedBy?: string;
  notice?: string;
  noticeSha256: string;
  noticeLanguage?: string;
  /** The notice's text, when ListNotices gave it (matched by version, or by text hash). */
  noticeText?: string;
  evidence?: Array<[string, string]>;
  jurisdiction?: string;
}

/** What holds for the person as a whole, from their audit entries. */
export interface TimelineMarkers {
  /** When the person was erased (SUBJECT_ERASED). */
  erasedAt?: number;
  /** Restrictions of processing (Art. 18): placed, and lifted unless in force. */
  restrictions?: Array<{ from: number; to?: number }>;
  /** Objections to direct marketing (Art. 21) recorded. */
  objections?: number[];
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

/** The SVG of `events` (sorted or not) and `markers`, up to `now`; '' when there is nothing to draw. */
export function timelineSvg(events: TimelineEvent[], now: number, markers: TimelineMarkers = {}): string {
  const restrictions = markers.restrictions ?? [];
  const objections = markers.objections ?? [];
  if (events.length === 0 && markers.erasedAt === undefined && restrictions.length === 0 && objections.length === 0) return '';
  const laneNames = [...new Set(events.map((e) => `${e.purpose} · ${e.channel}`))].sort();
  // A person with no consent events (only an erasure, say) still gets one lane to draw across.
  const lanes = laneNames.length > 0 ? laneNames : ['no consent events'];
  const times = [
    ...events.flatMap((e) => [e.eventTime, e.expireTime ?? e.eventTime, e.windowEnd ?? e.eventTime]),
    ...(markers.erasedAt !== undefined ? [markers.erasedAt] : []),
    ...restrictions.flatMap((r) => [r.from, r.to ?? r.from]),
    ...objections,
  ];
  let start = Math.min(...times);
  let end = Math.max(now, ...times);
  const pad = Math.max((end - start) * 0.05, 3_600_000);
  start -= pad;
  end += pad;
  const x = (t: number) => LEFT + ((t - start) / (end - start)) * (WIDTH - LEFT - RIGHT);
  const height = TOP + lanes.length * LANE + 50;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-labelledby="timeline-title">`);
  const erased = markers.erasedAt !== undefined ? `; erased ${day(markers.erasedAt)}` : '';
  parts.push(`<title id="timeline-title">Consent timeline: ${events.length} events in ${laneNames.length} lanes from ${day(start + pad)} to ${day(end - pad)}${erased}; the tables below list the same events and facts</title>`);
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
  // Person-wide facts span every lane: a restriction as a hatched band, an objection as a line.
  const laneTop = TOP;
  const laneBottom = TOP + lanes.length * LANE;
  for (const r of restrictions) {
    const x1 = x(r.from);
    const x2 = x(r.to ?? now);
    const what = `restricted (Art. 18) from ${new Date(r.from).toISOString()}${r.to !== undefined ? ` to ${new Date(r.to).toISOString()}` : ', in force'}`;
    parts.push(`<rect class="restriction" x="${x1}" y="${laneTop}" width="${Math.max(x2 - x1, 2)}" height="${laneBottom - laneTop}"><title>${esc(what)}</title></rect>`);
  }
  for (const t of objections) {
    parts.push(`<line class="objection" x1="${x(t)}" x2="${x(t)}" y1="${laneTop}" y2="${laneBottom}"><title>${esc(`objected to direct marketing (Art. 21) ${new Date(t).toISOString()}`)}</title></line>`);
  }
  for (const e of events) {
    const y = TOP + lanes.indexOf(`${e.purpose} · ${e.channel}`) * LANE + LANE / 2;
    const cx = x(e.eventTime);
    const cls = `${e.kind.replace(/ /g, '-')}${e.shredded ? ' shredded' : ''}`;
    if (e.windowEnd !== undefined) parts.push(`<rect class="window" x="${cx}" y="${y - 7}" width="${Math.max(x(e.windowEnd) - cx, 2)}" height="14"/>`);
    if (e.expireTime !== undefined) {
      parts.push(`<line class="validity" x1="${cx}" x2="${x(e.expireTime)}" y1="${y}" y2="${y}"/>`);
      parts.push(`<path class="expiry" d="M${x(e.expireTime)} ${y - 8} l6 8 l-6 8 l-6 -8 z"><title>expires ${esc(day(e.expireTime))}</title></path>`);
    }
    const shape = cls.startsWith('opt-out')
      ? `<rect class="event ${cls}" x="${cx - 6}" y="${y - 6}" width="12" height="12">`
      : `<circle class="event ${cls}" cx="${cx}" cy="${y}" r="7">`;
    const tag = shape.startsWith('<rect') ? 'rect' : 'circle';
    parts.push(`${shape}<title>${esc(`${e.kind} ${new Date(e.eventTime).toISOString()}${e.shredded ? ' (content shredded)' : ''}`)}</title></${tag}>`);
  }
  // The erasure last, over everything: a bar across all lanes, labelled with its date.
  if (markers.erasedAt !== undefined) {
    const ex = x(markers.erasedAt);
    const label = `erased ${day(markers.erasedAt)}`;
    parts.push(`<g class="erasure"><rect class="erasure-bar" x="${ex - 2}" y="${laneTop - 4}" width="4" height="${laneBottom - laneTop + 8}"/><text class="erasure-label" x="${ex - 6}" y="${laneTop + 12}" text-anchor="end">${esc(label)}</text><title>${esc(`erased ${new Date(markers.erasedAt).toISOString()}: identifiers gone, event contents shredded (key destroyed); the audit entries remain`)}</title></g>`);
  }
  parts.push('</svg>');
  return parts.join('');
}
