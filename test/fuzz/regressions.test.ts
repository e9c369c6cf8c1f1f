import { Client, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { startTestServer, TestServer } from '../support/test-server';
import { encode } from './support/arbitraries';
import { Rpc, rpcCatalog } from './support/catalog';
import { badRequestFields, invoke, nestedStatuses, Outcome, rawClient, statusDetails } from './support/invoke';
import { storeSnapshot } from './support/world';

/**
 * Bugs the RPC fuzzing (rpc.fuzz.test.ts) found, each pinned by the smallest request that
 * showed it. Requests are built by reflection and sent as raw bytes, so they can hold what the
 * generated clients cannot encode (timestamps no Date can hold).
 */

const INVOKE = { streamReadMs: 1000, deadlineMs: 10_000 };
/** 8,640,000,000,001 s: one second past the last time a JS Date can hold; decodes as an invalid Date. */
const BEYOND_DATE = { seconds: 8_640_000_000_001n, nanos: 0 };
/** 10000-01-01: a valid Date, but outside google.protobuf.Timestamp (0001..9999). */
const YEAR_10000 = { seconds: 253_402_300_800n, nanos: 0 };

forEachDatabase('fuzzing regressions', (db) => {
  let s: TestServer;
  let client: Client;
  const rpcs = new Map(rpcCatalog().map((r) => [r.method, r]));
  const T = 'regress';
  const call = (method: string, init: Record<string, unknown>): Promise<Outcome> => {
    const rpc = rpcs.get(method) as Rpc;
    return invoke(client, rpc, [encode(rpc.input, init)], INVOKE);
  };
  const phone = { kind: { case: 'phoneNumber', value: '+4915112345678' } };

  before(async function () {
    this.timeout(60_000);
    s = await startTestServer(db(), { auditCheckpointIntervalMs: 0 });
    client = rawClient(s.address);
    await seedTenant(s, T);
  });
  after(async function () {
    this.timeout(30_000);
    client?.close();
    await s?.stop();
  });

  describe('an error that echoes a huge request field stays small, and the connection keeps working', function () {
    // Found: CreateTenant with a ~100 kB key in settings.purpose_consent_validity. The violation's
    // field path and the status message quoted the key whole; trailers past ~64 kB never reached
    // the client, and every later call on the same connection hung (DEADLINE_EXCEEDED).
    const huge = 'a'.repeat(100_000);

    it('CreateTenant with a 100 kB map key', async function () {
      this.timeout(30_000);
      const outcome = await call('CreateTenant', {
        tenantId: 'huge-key',
        settings: { optOutKeywords: ['STOP'], purposeConsentValidity: { [huge]: { seconds: 86_400n } } },
      });
      expect(outcome.code, outcome.details).to.equal(status.INVALID_ARGUMENT);
      const fields = badRequestFields(statusDetails(outcome.metadata))!;
      expect(fields).to.have.length(1);
      expect(fields[0]).to.match(/^settings\.purpose_consent_validity\["a+…$/);
      expect(fields[0].length).to.be.at.most(200);
      expect(outcome.details.length).to.be.at.most(512);
      expect(Buffer.from(outcome.metadata!.get('grpc-status-details-bin')[0] as Buffer).length).to.be.below(16 * 1024);
      expect((await call('GetTenant', { name: `tenants/${T}` })).code, 'the same connection answers').to.equal(status.OK);
    });

    it('UpdateTenantSettings with a 100 kB update-mask path and a thousand bad ones', async function () {
      this.timeout(30_000);
      const outcome = await call('UpdateTenantSettings', {
        settings: { name: `tenants/${T}/settings` },
        updateMask: { paths: [huge, ...Array.from({ length: 1000 }, (_, i) => `nope_${i}_${'x'.repeat(300)}`)] },
      });
      expect(outcome.code, outcome.details).to.equal(status.INVALID_ARGUMENT);
      const fields = badRequestFields(statusDetails(outcome.metadata))!;
      expect(fields.length, 'violations cut at a byte budget').to.be.within(1, 50);
      expect(Buffer.from(outcome.metadata!.get('grpc-status-details-bin')[0] as Buffer).length).to.be.below(16 * 1024);
      expect((await call('GetTenant', { name: `tenants/${T}` })).code, 'the same connection answers').to.equal(status.OK);
    });
  });

  describe('a timestamp outside google.protobuf.Timestamp is INVALID_ARGUMENT (not INTERNAL, not "now")', function () {
    const refused = async (method: string, init: Record<string, unknown>, field: string) => {
      const before = await storeSnapshot(s, false);
      const outcome = await call(method, init);
      expect(outcome.code, `${method}: ${outcome.details}`).to.equal(status.INVALID_ARGUMENT);
      expect(badRequestFields(statusDetails(outcome.metadata))).to.include(field);
      expect(await storeSnapshot(s, false), 'nothing written').to.deep.equal(before);
    };

    // Found: RecordInboundMessage with event_time {seconds: 8640000000001, nanos: -1} was
    // INTERNAL: the decoded Date is invalid, dateToMs took it for "unset" (so: now), and the
    // idempotency fingerprint (toJSON -> toISOString) threw a RangeError.
    it('RecordInboundMessage and RecordConsent event_time beyond what a Date holds', async function () {
      await refused('RecordInboundMessage', { parent: `tenants/${T}`, subjectIdentifier: phone, channel: 3, eventTime: BEYOND_DATE, requestId: 'r-1' }, 'event_time');
      await refused(
        'RecordConsent',
        {
          parent: `tenants/${T}`,
          subjectIdentifier: phone,
          purpose: `tenants/${T}/purposes/newsletter`,
          channel: 1,
          kind: 2,
          method: 1,
          eventTime: BEYOND_DATE,
          requestId: 'r-2',
        },
        'event_time',
      );
      await refused(
        'RecordConsent',
        {
          parent: `tenants/${T}`,
          subjectIdentifier: phone,
          purpose: `tenants/${T}/purposes/newsletter`,
          notice: `tenants/${T}/purposes/newsletter/notices/1`,
          channel: 1,
          kind: 1,
          method: 1,
          expireTime: { seconds: -8_640_000_000_001n, nanos: 0 },
          requestId: 'r-3',
        },
        'expire_time',
      );
    });

    // Found by the same property: a receive time no Date holds became "now" and registered the
    // request; due_before, start_time and end_time filters beyond the range were dropped silently.
    it('CreateRequest, ListRequests, ListConsentEvents and ListAuditEntries', async function () {
      await refused('CreateRequest', { parent: `tenants/${T}`, kind: 1, subjectIdentifier: phone, receivedVia: 1, receiveTime: BEYOND_DATE, requestId: 'r-4' }, 'receive_time');
      await refused('ListRequests', { parent: `tenants/${T}`, dueBefore: YEAR_10000 }, 'due_before');
      await refused('ListConsentEvents', { parent: `tenants/${T}`, startTime: BEYOND_DATE }, 'start_time');
      await refused('ListAuditEntries', { parent: `tenants/${T}`, endTime: { seconds: -62_135_596_801n, nanos: 0 } }, 'end_time');
    });

    it('a check at such a time is refused per item in a batch, and alone', async function () {
      const query = (at?: Record<string, unknown>) => ({ subjectIdentifier: phone, purpose: `tenants/${T}/purposes/newsletter`, channel: 1, at });
      const batch = await call('CheckConsentBatch', { parent: `tenants/${T}`, queries: [query(), query(BEYOND_DATE)] });
      expect(batch.code, batch.details).to.equal(status.OK);
      const items = nestedStatuses(rpcs.get('CheckConsentBatch')!.output, batch.responses[0]);
      expect(items.map((i) => i.code)).to.deep.equal([status.INVALID_ARGUMENT]);
      expect(items[0].message).to.include('queries[1].at');
      await refused('CheckConsent', { parent: `tenants/${T}`, query: query(YEAR_10000) }, 'query.at');
      await refused('ExplainDecision', { parent: `tenants/${T}`, query: query(BEYOND_DATE) }, 'query.at');
    });

    it('the edges of the range are still accepted', async function () {
      const outcome = await call('ListConsentEvents', {
        parent: `tenants/${T}`,
        startTime: { seconds: -62_135_596_800n, nanos: 0 },
        endTime: { seconds: 253_402_300_799n, nanos: 999_000_000 },
      });
      expect(outcome.code, outcome.details).to.equal(status.OK);
    });
  });

  describe('a request the generated decoder cannot read is INVALID_ARGUMENT, not INTERNAL', function () {
    // Found: any int64 request field (audit indexes and sizes, Timestamp/Duration seconds) beyond
    // ±(2^53 - 1) made the generated decoder (ts-proto, forceLong=number) throw, which grpc-js
    // answered with INTERNAL "Error deserializing request" before any handler ran.
    it('GetInclusionProof with index 2^60: INVALID_ARGUMENT naming index', async function () {
      const outcome = await call('GetInclusionProof', { parent: `tenants/${T}`, index: 2n ** 60n, treeSize: 5n });
      expect(outcome.code, outcome.details).to.equal(status.INVALID_ARGUMENT);
      expect(badRequestFields(statusDetails(outcome.metadata))).to.deep.equal(['index']);
    });

    it('bytes that are no message of the method at all: UNDECODABLE_REQUEST', async function () {
      const outcome = await invoke(client, rpcs.get('GetInclusionProof') as Rpc, [Buffer.from([0x0a, 0xff, 0x01])], INVOKE);
      expect(outcome.code, outcome.details).to.equal(status.INVALID_ARGUMENT);
      expect(outcome.details).to.include('not a valid message');
    });

    // Found by the fuzz suite (RecordConsent, random bytes): a field number 0 after an event_time
    // of 2^53 - 2 seconds. The schema check could not read past the broken tag and let the
    // message through unchecked, while the generated decoder stopped there and kept the
    // Timestamp: the handler's toJSON threw RangeError, INTERNAL.
    it('RecordConsent: a Timestamp out of range followed by a field number 0 is UNDECODABLE_REQUEST, and nothing is written', async function () {
      const before = await storeSnapshot(s, true);
      const parent = Buffer.from(`tenants/${T}`);
      const bytes = Buffer.concat([
        Buffer.from([0x0a, parent.length]),
        parent,
        Buffer.from('320908feffffffffffff0f', 'hex'), // event_time { seconds: 2^53 - 2 }
        Buffer.from([0x00]), // tag 0: no field of any message
      ]);
      const outcome = await invoke(client, rpcs.get('RecordConsent') as Rpc, [bytes], INVOKE);
      expect(outcome.code, outcome.details).to.equal(status.INVALID_ARGUMENT);
      expect(outcome.details).to.include('not a valid message');
      expect(await storeSnapshot(s, true)).to.deep.equal(before);
    });

    it('RecordConsent with event_time seconds 2^62, and nothing is written', async function () {
      const before = await storeSnapshot(s, true);
      const outcome = await call('RecordConsent', { parent: `tenants/${T}`, eventTime: { seconds: 2n ** 62n, nanos: 0 }, requestId: 'huge-seconds' });
      expect(outcome.code, outcome.details).to.equal(status.INVALID_ARGUMENT);
      expect(await storeSnapshot(s, true)).to.deep.equal(before);
    });
  });

  describe('a shredded tenant takes no more notices', function () {
    // Found by the "after shredding" phase: PublishNotice for a shredded tenant succeeded (and on
    // SQLite, once the purge had removed the old ones, wrote version 1 again): requirePurpose
    // returned the cached purpose without checking the tenant.
    it('PublishNotice for a purpose cached before ShredTenant is FAILED_PRECONDITION TENANT_ERASED and adds nothing', async function () {
      this.timeout(30_000);
      const gone = 'regress-shred';
      await seedTenant(s, gone); // publishes notices, so the purposes are cached
      const shred = await call('ShredTenant', { name: `tenants/${gone}`, confirmTenantId: gone, requestId: 'shred-1' });
      expect(shred.code, shred.details).to.equal(status.OK);
      const before = await storeSnapshot(s, false);
      const outcome = await call('PublishNotice', { parent: `tenants/${gone}/purposes/newsletter`, language: 'en', text: 'after the shred', requestId: 'after-shred' });
      expect(outcome.code, outcome.details).to.equal(status.FAILED_PRECONDITION);
      expect(outcome.details).to.include('was erased');
      // The background purge may delete rows meanwhile; nothing may be added.
      const after = await storeSnapshot(s, false);
      for (const [table, rows] of Object.entries(after)) expect(parseInt(rows, 10), table).to.be.at.most(parseInt(before[table], 10));
    });
  });

  describe('a notice text at the documented maximum is stored on both databases', function () {
    // Found on MariaDB: a notice text of 65,536 bytes (then the documented maximum) was INTERNAL
    // (ER_DATA_TOO_LONG): notices.text is TEXT, which holds 65,535 bytes. The limit is now
    // 65,535 bytes, what both stores hold.
    it('65,535 bytes are accepted, 65,536 are INVALID_ARGUMENT naming the field', async function () {
      const ok = await call('PublishNotice', { parent: `tenants/${T}/purposes/newsletter`, language: 'en', text: 'ä'.repeat(32_767) + 'a', requestId: 'max-text' });
      expect(ok.code, ok.details).to.equal(status.OK);
      const tooLong = await call('PublishNotice', { parent: `tenants/${T}/purposes/newsletter`, language: 'en', text: 'a'.repeat(65_536), requestId: 'too-long-text' });
      expect(tooLong.code, tooLong.details).to.equal(status.INVALID_ARGUMENT);
      expect(badRequestFields(statusDetails(tooLong.metadata))).to.deep.equal(['text']);
    });
  });
});
