import { ClientReadableStream } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import { ChangeKind, ConsentEventKind, RecordInboundMessageRequest, StreamChangesResponse } from '../../src/gen/consent/v1/consent';
import { encodePageToken } from '../../src/domain/pagination';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';

forEachDatabase('StreamChanges (change feed)', (db) => {
  let s: TestServer;
  const T = 'feed';
  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());

  /** Reads `count` changes from a new stream, then cancels it. */
  function take(count: number, cursor = ''): Promise<StreamChangesResponse[]> {
    return new Promise((resolve, reject) => {
      const got: StreamChangesResponse[] = [];
      const stream: ClientReadableStream<StreamChangesResponse> = s.consent.streamChanges({ parent: `tenants/${T}`, cursor });
      const timer = setTimeout(() => {
        stream.cancel();
        reject(new Error(`only ${got.length} of ${count} changes arrived`));
      }, 15_000);
      stream.on('data', (c: StreamChangesResponse) => {
        got.push(c);
        if (got.length === count) {
          clearTimeout(timer);
          stream.cancel();
          resolve(got);
        }
      });
      stream.on('error', (err: { code: number }) => {
        if (err.code !== 1 /* CANCELLED */) reject(err);
      });
    });
  }

  it('delivers opt-outs and erasures in order, resumable from a cursor, nothing else', async function () {
    this.timeout(60_000);
    const a = phone('+4915110100001');
    const b = phone('+4915110100002');
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: a }));
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: b }));
    const optOut = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: a, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: b, channel: Channel.CHANNEL_SMS, text: 'STOP', requestId: 'feed-stop' }));
    const bState = await call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: b });
    await s.app.services.subjectEraser.erase(T, bState.subject.split('/').pop()!);
    // A refused write leaves nothing in the feed.
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: a, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '', requestId: 'x'.repeat(200) })).catch(() => undefined);

    const changes = await take(3);
    expect(changes.map((c) => c.kind)).to.deep.equal([ChangeKind.CHANGE_KIND_OPT_OUT, ChangeKind.CHANGE_KIND_OPT_OUT, ChangeKind.CHANGE_KIND_ERASURE]);
    expect(changes[0].event).to.equal(optOut.event!.name);
    expect(changes[0].purpose).to.equal(`tenants/${T}/purposes/newsletter`);
    expect(changes[1].purpose).to.equal(`tenants/${T}/purposes/-`);
    expect(changes[1].channel).to.equal(Channel.CHANNEL_SMS);
    expect(changes[2].subject).to.equal(bState.subject);
    expect(JSON.stringify(changes)).to.not.include('4915110100001');

    const resumed = await take(2, changes[0].cursor);
    const same = (c: StreamChangesResponse) => [c.kind, c.subject, c.event, c.time?.getTime()];
    expect(resumed.map(same), 'resumed after the first').to.deep.equal(changes.slice(1).map(same));
  });

  it('delivers a change as soon as it committed, with no settle delay', async function () {
    this.timeout(30_000);
    const all = await take(3);
    const c = phone('+4915110100003');
    const next = take(1, all[2].cursor);
    const written = Date.now();
    const optOut = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: c, kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '' }));
    const [delivered] = await next;
    const elapsed = Date.now() - written;
    console.log(`      opt-out delivered ${elapsed} ms after it was written`);
    expect(delivered.event).to.equal(optOut.event!.name);
    expect(elapsed, 'one poll interval, not seconds').to.be.below(1000);
  });

  it('concurrent writers: every opt-out delivered once, in commit order', async function () {
    this.timeout(60_000);
    const before = await take(4);
    const n = 48;
    const writes = Array.from({ length: n }, (_, i) =>
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`+49151102${String(i).padStart(5, '0')}`), kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, notice: '', requestId: `conc-out-${i}` })),
    );
    const delivered = take(n, before[3].cursor);
    const names = (await Promise.all(writes)).map((r) => r.event!.name);
    const got = await delivered;
    expect(got.map((c) => c.event).sort()).to.deep.equal([...names].sort());
    // In commit order: the order of their audit entries, which is also the order of their rows.
    const ordered = (await s.app.dataSource.query("SELECT entry_json FROM audit_entries WHERE tenant_id = ? AND entry_type = 'CONSENT_EVENT_OPT_OUT' ORDER BY seq", [T])) as Array<{ entry_json: string }>;
    const refs = ordered.map((e) => (JSON.parse(e.entry_json) as { ref: string }).ref).filter((ref) => names.some((name) => name.endsWith(ref)));
    expect(got.map((c) => c.event.split('/').pop())).to.deep.equal(refs);
  });

  it('a cursor issued before positions existed (an outbox row number) still resumes after its change', async function () {
    const all = await take(3);
    const [row] = (await s.app.dataSource.query("SELECT seq FROM change_outbox WHERE tenant_id = ? AND event_id = ?", [T, all[0].event.split('/').pop()])) as Array<{ seq: number }>;
    const sealer = s.app.services.keys.pageTokenSealer(await s.app.services.keys.tenantKeyring(T), 'change_feed');
    const legacy = encodePageToken(Number(row.seq), {}, sealer);
    const resumed = await take(2, legacy);
    expect(resumed.map((c) => c.event)).to.deep.equal(all.slice(1, 3).map((c) => c.event));
  });
});
