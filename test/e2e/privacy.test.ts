import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Channel } from '../../src/gen/consent/v1/common';
import { ListConsentEventsRequest, RecordInboundMessageRequest } from '../../src/gen/consent/v1/consent';
import { AuditServiceClient, ListAuditEntriesRequest } from '../../src/gen/consent/v1/audit';
import { credentials } from '@grpc/grpc-js';
import { forEachDatabase, mysqldumpCommand } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, startTestServer, TestServer } from '../support/test-server';

const run = promisify(execFile);

/** Personal data planted in requests; none of it may appear in logs, errors or at rest in clear. */
const PLANTED = {
  phone: '+4917612345678',
  phoneNational: '017612345678',
  phoneDigits: '4917612345678',
  email: 'erika.mustermann@example.org',
  customerId: 'customer-8842-mustermann',
  ip: '198.51.100.23',
  ipTruncated: '198.51.100.0',
  userAgent: 'PlantedAgent/7.3 (Erika)',
  pageUrl: 'https://shop.example/signup?who=erika',
  messageId: 'wamid.PLANTED-MESSAGE-ID',
  freeText: 'Signed on paper by Erika Mustermann',
  staff: 'staff-member-hans-planted',
};

forEachDatabase('personal data stays out of logs, errors and the stored bytes', (db, kind) => {
  let s: TestServer;
  let audit: AuditServiceClient;
  const T = 'privacy';
  const errors: string[] = [];

  before(async function () {
    s = await startTestServer(db());
    audit = new AuditServiceClient(s.address, credentials.createInsecure());
    await seedTenant(s, T);
    await call(s.consent, s.consent.recordConsent, consentRequest(T, {
      subjectIdentifier: phone(PLANTED.phone),
      evidence: { sourceIp: PLANTED.ip, userAgent: PLANTED.userAgent, pageUrl: PLANTED.pageUrl, inboundMessageId: '', freeText: PLANTED.freeText },
      collectedBy: PLANTED.staff,
    }));
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(PLANTED.email) }));
    await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: { kind: { $case: 'customerId', value: PLANTED.customerId }, defaultRegion: '' } }));
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({
      parent: `tenants/${T}`, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PLANTED.phoneNational }, defaultRegion: 'DE' }, channel: Channel.CHANNEL_WHATSAPP, text: 'STOP', messageId: PLANTED.messageId, requestId: 'privacy-in',
    }));
    // Reads and failures too: their messages and log lines must stay clean.
    await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(PLANTED.phone) }) });
    await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: email(PLANTED.email) }));
    await call(audit, audit.listAuditEntries, ListAuditEntriesRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: phone(PLANTED.phone) }));
    await call(audit, audit.explainDecision, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: email(PLANTED.email) }) });
    const failing = [
      call(audit, audit.listAuditEntries, ListAuditEntriesRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: email(`${PLANTED.email}@@`) })),
      call(audit, audit.explainDecision, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone(`${PLANTED.phone}999999`) }) }),
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: email(`${PLANTED.email}@@`) })),
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(`${PLANTED.phone}999999`) })),
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone(PLANTED.phone), evidence: { sourceIp: `${PLANTED.ip}.7`, userAgent: '', pageUrl: '', inboundMessageId: '', freeText: '' } })),
      call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: email(`nobody-${PLANTED.email}`) }),
    ];
    for (const p of failing) {
      try {
        await p;
        expect.fail('the call should have failed');
      } catch (err) {
        const e = err as { details?: string; message?: string; metadata?: { get(k: string): unknown[] } };
        errors.push(`${e.details} ${e.message} ${String(e.metadata?.get('grpc-status-details-bin')[0] ?? '')}`);
      }
    }
  });
  after(async () => {
    audit?.close();
    await s?.stop();
  });

  const assertClean = (haystack: string, what: string) => {
    for (const [name, value] of Object.entries(PLANTED)) {
      expect(haystack.includes(value), `${what} contains the planted ${name}`).to.equal(false);
    }
  };

  it('the log has a line per call and none of the planted data', function () {
    const logs = s.logs();
    expect(logs.split('\n').filter((l) => l.includes('"message":"rpc"')).length).to.be.at.least(10);
    assertClean(logs, 'the log');
  });

  it('error messages and details carry none of it', function () {
    expect(errors).to.have.length(6);
    assertClean(errors.join('\n'), 'an error');
  });

  it(`a raw dump of the ${kind} database holds none of it in clear`, async function () {
    let dump: string;
    if (kind === 'sqlite') {
      const dir = path.dirname((db().config as { file: string }).file);
      // The database file and its WAL: everything SQLite has written.
      dump = readdirSync(dir)
        .filter((f) => f.startsWith('ledger.sqlite'))
        .map((f) => readFileSync(path.join(dir, f)).toString('latin1'))
        .join('\n');
    } else {
      const url = new URL((db().config as { url: string }).url);
      const command = mysqldumpCommand(url.pathname.slice(1), ['--skip-extended-insert']);
      const { stdout } = await run('mysqldump', command.args, { env: command.env, maxBuffer: 64 * 1024 * 1024 });
      dump = stdout;
    }
    expect(dump.length).to.be.greaterThan(1000);
    expect(dump, 'the dump holds the events').to.include('OPT_IN');
    expect(dump, 'the dump holds clear text where it is no personal data').to.include('Notice for newsletter');
    assertClean(dump, 'the database dump');
  });
});
