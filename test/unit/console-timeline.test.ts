import { expect } from 'chai';
import { parseEntry } from '../../src/console/pages/auditor';
import { timelineSvg, TimelineEvent } from '../../src/console/pages/auditor-timeline';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 2, 10, 12);
const ev = (over: Partial<TimelineEvent>): TimelineEvent => ({
  id: 'e1',
  kind: 'opt in',
  purpose: 'newsletter',
  channel: 'whatsapp',
  eventTime: NOW - 20 * DAY,
  recordTime: NOW - 20 * DAY,
  principal: 'p',
  noticeSha256: '',
  ...over,
});
const count = (svg: string, re: RegExp) => (svg.match(new RegExp(re.source, 'g')) ?? []).length;

/** The auditor's timeline picture (src/console/pages/auditor-timeline.ts): erasure, shredded events, restrictions and objections. */
describe('console timeline SVG', () => {
  it('draws nothing for nothing', () => {
    expect(timelineSvg([], NOW)).to.equal('');
  });

  it('draws the erasure as one bar across all lanes, labelled with its date, and marks the events before it shredded', () => {
    const erasedAt = NOW - 2 * DAY;
    const svg = timelineSvg(
      [ev({ shredded: true }), ev({ id: 'e2', kind: 'opt out', purpose: 'all purposes', channel: 'sms', eventTime: NOW - 5 * DAY, recordTime: NOW - 5 * DAY, shredded: true })],
      NOW,
      { erasedAt },
    );
    expect(count(svg, /<g class="erasure">/)).to.equal(1);
    expect(svg).to.include('>erased 2026-03-08</text>');
    // The bar spans both lanes: from above the first to below the second (TOP 30, LANE 36).
    const bar = /<rect class="erasure-bar" x="[\d.]+" y="(\d+)" width="4" height="(\d+)"\/>/.exec(svg);
    expect(bar).to.not.equal(null);
    expect(Number(bar![1])).to.equal(26);
    expect(Number(bar![2])).to.equal(2 * 36 + 8);
    expect(count(svg, /class="event [a-z-]+ shredded"/)).to.equal(2);
    expect(svg).to.include('(content shredded)');
    expect(svg).to.match(/<title id="timeline-title">[^<]*; erased 2026-03-08;/);
  });

  it('the erasure bar lies at the erasure time, between the events before it and now', () => {
    const erasedAt = NOW - 2 * DAY;
    const svg = timelineSvg([ev({ shredded: true })], NOW, { erasedAt });
    const barX = Number(/<rect class="erasure-bar" x="([\d.]+)"/.exec(svg)![1]) + 2;
    const eventX = Number(/<circle class="event opt-in shredded" cx="([\d.]+)"/.exec(svg)![1]);
    const nowX = Number(/<line class="now" x1="([\d.]+)"/.exec(svg)![1]);
    expect(barX).to.be.greaterThan(eventX);
    expect(barX).to.be.lessThan(nowX);
  });

  it('a person with an erasure and no consent events still gets a picture with one lane', () => {
    const svg = timelineSvg([], NOW, { erasedAt: NOW - DAY });
    expect(svg).to.include('no consent events');
    expect(count(svg, /<g class="erasure">/)).to.equal(1);
  });

  it('draws a restriction as a band until its lifting (or now) and an objection as a line, both titled', () => {
    const svg = timelineSvg([ev({})], NOW, { restrictions: [{ from: NOW - 4 * DAY }, { from: NOW - 15 * DAY, to: NOW - 12 * DAY }], objections: [NOW - 3 * DAY] });
    expect(count(svg, /<rect class="restriction"/)).to.equal(2);
    expect(svg).to.include(', in force</title>');
    expect(svg).to.include(`to ${new Date(NOW - 12 * DAY).toISOString()}</title>`);
    expect(count(svg, /<line class="objection"/)).to.equal(1);
    expect(svg).not.to.include('erasure');
  });

  it('escapes every text it places', () => {
    const svg = timelineSvg([ev({ purpose: '<script>x</script>' })], NOW);
    expect(svg).not.to.include('<script>');
    expect(svg).to.include('&#60;script&#62;');
  });

  it('reads an audit entry\'s JSON into the fields the page uses, tolerating missing ones', () => {
    const e = parseEntry(7, 'ab', JSON.stringify({ type: 'CONSENT_EVENT_INBOUND_MESSAGE', time: 5, principal: 'p', subject: 's', purpose: '-', channel: 'SMS', ref: 'ev', eventTime: 4, seq: 7, tenant: 't' }));
    expect(e).to.deep.include({ index: 7, leafHash: 'ab', type: 'CONSENT_EVENT_INBOUND_MESSAGE', time: 5, purpose: '-', channel: 'SMS', ref: 'ev', eventTime: 4, expireTime: undefined });
    expect(parseEntry(0, '', '{"type":"SUBJECT_ERASED","time":9}')).to.deep.include({ type: 'SUBJECT_ERASED', time: 9, ref: '', principal: '' });
  });
});
