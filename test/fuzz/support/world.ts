import { createHash } from 'node:crypto';
import { credentials, InterceptingCall, Interceptor } from '@grpc/grpc-js';
import { DataSource } from 'typeorm';
import { AuditServiceClient } from '../../../src/gen/consent/v1/audit';
import { Channel, PurposeCategory } from '../../../src/gen/consent/v1/common';
import { ConsentEventKind, ConsentServiceClient, StreamChangesResponse } from '../../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../../src/gen/consent/v1/tenant';
import { IdentityServiceClient } from '../../../src/gen/consent/v1/identity';
import { SelfServiceServiceClient } from '../../../src/gen/consent/v1/self_service';
import { JobState, KeyServiceClient } from '../../../src/gen/consent/v1/key';
import { LegalHoldGround, ReceivedVia, RequestKind, SubjectRightsServiceClient } from '../../../src/gen/consent/v1/subject_rights';
import { consentRequest, email, phone, query, seedTenant } from '../../support/fixtures';
import { call, T0, TestServer } from '../../support/test-server';
import { Corpus, Dictionary } from './arbitraries';

const customer = (value: string) => ({ kind: { $case: 'customerId' as const, value }, defaultRegion: '' });

/**
 * Two tenants with purposes, notices, consent events of every kind, data-subject requests in
 * several states, legal holds and a finished key rotation. Returns the dictionary of names,
 * tokens and values the random requests draw from, and the corpus of the requests it sent.
 */
export async function seedWorld(server: TestServer): Promise<{ dict: Dictionary; corpus: Corpus }> {
  const corpus = new Corpus();
  // Every request the seeding sends goes into the corpus (all of them succeed, or seeding fails).
  const record: Interceptor = (options, next) =>
    new InterceptingCall(next(options), {
      sendMessage(message, send) {
        corpus.add(options.method_definition.path, Buffer.from(options.method_definition.requestSerialize(message)));
        send(message);
      },
    });
  const creds = credentials.createInsecure();
  const opts = { interceptors: [record] };
  const rights = new SubjectRightsServiceClient(server.address, creds, opts);
  const keys = new KeyServiceClient(server.address, creds, opts);
  const audit = new AuditServiceClient(server.address, creds, opts);
  const identity = new IdentityServiceClient(server.address, creds, opts);
  const self = new SelfServiceServiceClient(server.address, creds, opts);
  const selfService = self;
  const s: TestServer = {
    ...server,
    tenants: new TenantServiceClient(server.address, creds, opts),
    purposes: new PurposeServiceClient(server.address, creds, opts),
    consent: new ConsentServiceClient(server.address, creds, opts),
  };
  const values: Record<string, Set<string>> = {};
  const add = (field: string, ...v: string[]) => {
    for (const x of v) (values[field] ??= new Set()).add(x);
  };
  try {
    for (const tenantId of ['acme', 'globex']) {
      await seedTenant(s, tenantId);
      add('parent', `tenants/${tenantId}`);
      add('name', `tenants/${tenantId}`);
      add('tenant_id', tenantId);
      add('confirm_tenant_id', tenantId);
      for (const p of ['newsletter', 'orders', 'support', 'otp']) {
        add('purpose', `tenants/${tenantId}/purposes/${p}`);
        add('parent', `tenants/${tenantId}/purposes/${p}`);
        add('notice', `tenants/${tenantId}/purposes/${p}/notices/1`);
        add('purpose_id', p);
        add('purpose_consent_validity.key', p);
      }
      add('purpose', `tenants/${tenantId}/purposes/-`);
      add('name', `tenants/${tenantId}/settings`);
    }
    const T = 'acme';
    const who = [phone('+4915112345678'), phone('+4915112345679'), email('ada@example.com'), customer('cust-42')];
    const kinds = [
      ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
      ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING,
      ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED,
      ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT,
    ];
    let n = 0;
    for (const subjectIdentifier of who) {
      for (const kind of kinds) {
        const { event } = await call(
          s.consent,
          s.consent.recordConsent,
          consentRequest(T, {
            subjectIdentifier,
            kind,
            requestId: `seed-${++n}`,
            purpose: kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT && n % 2 === 0 ? `tenants/${T}/purposes/-` : `tenants/${T}/purposes/newsletter`,
            notice: kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT ? '' : `tenants/${T}/purposes/newsletter/notices/1`,
            issueReceipt: kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
          }),
        );
        add('subject', event!.subject);
        add('request_id', `seed-${n}`);
      }
    }
    await call(s.consent, s.consent.recordInboundMessage, {
      parent: `tenants/${T}`,
      subjectIdentifier: phone('+4915112345679'),
      channel: Channel.CHANNEL_SMS,
      eventTime: undefined,
      text: 'STOP',
      messageId: 'wamid.1',
      requestId: 'seed-inbound',
    });
    await call(s.consent, s.consent.recordInboundMessage, {
      parent: `tenants/${T}`,
      subjectIdentifier: email('ada@example.com'),
      channel: Channel.CHANNEL_WHATSAPP,
      eventTime: undefined,
      text: 'hello',
      messageId: 'wamid.2',
      requestId: 'seed-inbound-2',
    });

    // Data-subject requests: verified access and erasure, a received portability request, holds.
    const request = async (kind: RequestKind, subjectIdentifier: ReturnType<typeof phone>, requestId: string, verify: boolean) => {
      const { request: r } = await call(rights, rights.createRequest, {
        parent: `tenants/${T}`,
        kind,
        subjectIdentifier,
        receiveTime: undefined,
        receivedVia: ReceivedVia.RECEIVED_VIA_EMAIL,
        requestId,
        subjectIdentifiers: [],
      });
      add('name', r!.name);
      add('request_id', requestId);
      if (verify) await call(rights, rights.verifyIdentity, { name: r!.name, method: 'ID_DOCUMENT', verifiedBy: 'staff-1', identifierPositions: [] });
      return r!.name;
    };
    const access = await request(RequestKind.REQUEST_KIND_ACCESS, who[0], 'seed-dsr-1', true);
    await request(RequestKind.REQUEST_KIND_PORTABILITY, who[2], 'seed-dsr-2', true);
    const erasure = await request(RequestKind.REQUEST_KIND_ERASURE, who[3], 'seed-dsr-3', true);
    const unverified = await request(RequestKind.REQUEST_KIND_ERASURE, who[1], 'seed-dsr-4', false);
    const unknown = await request(RequestKind.REQUEST_KIND_ACCESS, email('nobody@example.com'), 'seed-dsr-5', false);
    await request(RequestKind.REQUEST_KIND_ACCESS, who[2], 'seed-dsr-6', false);
    await call(rights, rights.extendDeadline, { name: unverified, months: 1, reason: 'many requests this month' });
    await call(rights, rights.rejectRequest, { name: unknown, reason: 'identity could not be verified' });
    await call(rights, rights.getRequest, { name: access });
    await call(rights, rights.eraseSubject, { name: erasure });
    await exportAll(rights, access);
    const holds: string[] = [];
    for (const [i, id] of [who[1], who[0], who[2]].entries()) {
      const { hold } = await call(rights, rights.placeLegalHold, {
        parent: `tenants/${T}`,
        subjectIdentifier: id,
        ground: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS,
        note: `case ${i}`,
        requestId: `seed-hold-${i}`,
      });
      add('name', hold!.name);
      holds.push(hold!.name);
    }
    await call(rights, rights.releaseLegalHold, { name: holds[2], note: 'case closed' });

    // Linked identities: two links of one person (a verified request the evidence of one), one closed.
    const links: string[] = [];
    for (const [i, second] of [email('grace@example.com'), customer('cust-44')].entries()) {
      const { link } = await call(identity, identity.linkIdentifiers, {
        parent: `tenants/${T}`,
        first: who[0],
        second,
        method: i === 0 ? 'ID_DOCUMENT' : '',
        verifiedBy: i === 0 ? 'staff-1' : '',
        request: i === 0 ? '' : access,
        requestId: `seed-link-${i}`,
      });
      add('name', link!.name);
      add('request', access);
      links.push(link!.name);
    }
    await call(identity, identity.unlinkIdentifiers, { name: links[1], reason: 'not the same person' });

    // A preference link of the first person, and a call of each method that takes its token.
    const { token: preferenceToken } = await call(selfService, selfService.createPreferenceLink, { parent: `tenants/${T}`, subjectIdentifier: who[0], ttl: { seconds: 7 * 86_400, nanos: 0 } });
    add('token', preferenceToken);
    await call(selfService, selfService.getPreferences, { parent: `tenants/${T}`, token: preferenceToken });
    await call(selfService, selfService.withdrawWithLink, {
      parent: `tenants/${T}`, token: preferenceToken, scopes: [{ purpose: `tenants/${T}/purposes/orders`, channel: Channel.CHANNEL_SMS }], all: false, evidence: undefined, requestId: 'seed-withdraw',
    });
    await call(selfService, selfService.createRequestWithLink, { parent: `tenants/${T}`, token: preferenceToken, kind: RequestKind.REQUEST_KIND_ACCESS, evidence: undefined, requestId: 'seed-request-link' });

    // A finished key rotation of the other tenant (its job runs in the background).
    const { rotation } = await call(keys, keys.rotateTenantKey, { name: 'tenants/globex', requestId: 'seed-rotation' });
    add('name', rotation!.name);
    for (let i = 0; i < 200; i++) {
      const { rotation: r } = await call(keys, keys.getKeyRotation, { name: rotation!.name });
      if (r!.state !== JobState.JOB_STATE_RUNNING) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await call(audit, audit.getCheckpoint, { parent: `tenants/${T}` });

    // A valid call of every read, so that each method has accepted requests to mutate.
    const p = `tenants/${T}`;
    const q = query(T, { subjectIdentifier: who[0] });
    await call(s.tenants, s.tenants.getTenant, { name: p });
    await call(s.tenants, s.tenants.updateTenantSettings, {
      settings: { name: 'tenants/globex/settings', serviceWindow: { seconds: 7200, nanos: 0 }, optOutKeywords: ['STOP', 'HALT'], optInKeywords: [], purposeConsentValidity: { newsletter: { seconds: 86_400 * 365, nanos: 0 } }, defaultConsentValidity: undefined, updateTime: undefined, defaultConsentValidityMonths: 0, purposeConsentValidityMonths: {} },
      updateMask: ['service_window', 'opt_out_keywords', 'purpose_consent_validity'],
    });
    await call(s.purposes, s.purposes.listNotices, { parent: `${p}/purposes/newsletter`, pageSize: 0, pageToken: '' });
    await call(s.consent, s.consent.checkConsent, { parent: p, query: q });
    await call(s.consent, s.consent.checkConsent, { parent: p, query: query(T, { subjectIdentifier: who[1], purpose: '', category: PurposeCategory.PURPOSE_CATEGORY_SERVICE, channel: Channel.CHANNEL_SMS }) });
    await call(s.consent, s.consent.checkConsentBatch, { parent: p, queries: who.map((subjectIdentifier) => query(T, { subjectIdentifier })) });
    await call(s.consent, s.consent.getConsentState, { parent: p, subjectIdentifier: who[0] });
    await call(s.consent, s.consent.listConsentEvents, {
      parent: p, subjectIdentifier: who[0], purpose: `${p}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP, startTime: new Date(T0 - 86_400_000), endTime: new Date(T0 + 86_400_000), pageSize: 10, pageToken: '',
    });
    await call(audit, audit.listAuditEntries, {
      parent: p, startIndex: 0, pageSize: 20, subjectIdentifier: who[0], subject: '', purpose: `${p}/purposes/newsletter`, entryTypes: ['CONSENT_EVENT_OPT_IN'], principal: 'dev-admin', startTime: new Date(T0 - 86_400_000), endTime: new Date(T0 + 86_400_000),
    });
    const { checkpoint } = await call(audit, audit.getCheckpoint, { parent: p });
    const size = checkpoint!.treeSize;
    await call(audit, audit.getInclusionProof, { parent: p, index: Math.floor(size / 2), treeSize: size });
    await call(audit, audit.getConsistencyProof, { parent: p, firstSize: Math.floor(size / 2), secondSize: size });
    await call(audit, audit.explainDecision, { parent: p, query: q });
    await call(keys, keys.getTenantKeyInfo, { name: p });
    await call(keys, keys.getPublicKeys, { name: p });

    // Sign-ups (issue 20): e-mail ones with their deliveries, one confirmed by its link, one acknowledged.
    for (const [i, address] of ['signup.one@example.com', 'signup.two@example.com', 'signup.three@example.com'].entries()) {
      await call(self, self.signUp, {
        parent: p,
        subjectIdentifier: email(address),
        choices: [{ purpose: `${p}/purposes/newsletter`, channel: Channel.CHANNEL_EMAIL, notice: `${p}/purposes/newsletter/notices/1` }],
        evidence: { sourceIp: '192.0.2.1', userAgent: 'Mozilla/5.0', pageUrl: 'https://example.com/signup', inboundMessageId: '', freeText: '' },
        language: 'en',
        requestId: `seed-signup-${i}`,
      });
    }
    const { deliveries } = await call(self, self.listConfirmationDeliveries, { parent: p, pageSize: 0, pageToken: '' });
    const linkTokens = deliveries.map((d) => /#token=(.+)$/.exec(d.link)![1]);
    await call(self, self.confirmSignUp, { parent: p, token: linkTokens[0], evidence: { sourceIp: '192.0.2.1', userAgent: 'Mozilla/5.0', pageUrl: '', inboundMessageId: '', freeText: '' } });
    await call(self, self.acknowledgeConfirmationDeliveries, { parent: p, names: [deliveries[2].name] });
    add('token', ...linkTokens, 'not.a.token');
    add('names', ...deliveries.map((d) => d.name));

    // Page tokens of every List method, so random requests also continue real listings.
    const tokens = [
      (await call(s.purposes, s.purposes.listPurposes, { parent: p, pageSize: 1, pageToken: '' })).nextPageToken,
      (await call(s.consent, s.consent.listConsentEvents, { parent: p, pageSize: 1, pageToken: '', channel: 0, purpose: '', subjectIdentifier: undefined, startTime: undefined, endTime: undefined })).nextPageToken,
      (await call(rights, rights.listRequests, { parent: p, pageSize: 1, pageToken: '', state: 0, kind: 0, overdue: false, dueBefore: undefined })).nextPageToken,
      (await call(rights, rights.listLegalHolds, { parent: p, pageSize: 1, pageToken: '', includeReleased: true, subjectIdentifier: undefined })).nextPageToken,
      (await call(audit, audit.listConsentRecords, { parent: p, pageSize: 1, pageToken: '' })).nextPageToken,
      (await call(audit, audit.listCheckpoints, { parent: p, pageSize: 1, pageToken: '' })).nextPageToken,
      (await call(identity, identity.listIdentityLinks, { parent: p, pageSize: 1, pageToken: '', includeUnlinked: true, subjectIdentifier: undefined })).nextPageToken,
      (await call(self, self.listConfirmationDeliveries, { parent: p, pageSize: 1, pageToken: '' })).nextPageToken,
    ].filter(Boolean);
    add('page_token', ...tokens);

    // A change-feed cursor: changes are served once they are 5 s old.
    s.clock.advance(10_000);
    add('cursor', ...(await firstCursors(s, p)));
  } finally {
    for (const c of [rights, keys, audit, identity, self, s.tenants, s.purposes, s.consent]) c.close();
  }

  add('phone_number', '+4915112345678', '+4915112345679', '015112345678', '+1 202-555-0143', '+999', 'not a number');
  add('email', 'ada@example.com', ' ADA@Example.COM ', 'no-at-sign', 'a@b');
  add('customer_id', 'cust-42', ' cust-42 ', 'cust-43');
  add('default_region', 'DE', 'US', 'ZZ', 'de', '');
  add('language', 'en', 'de-DE', 'en_US', 'x-klingon', 'de');
  add('text', 'STOP', 'start', 'Hello', ' unsubscribe ', 'STOPALL', 'Notice text v2');
  add('method', 'ID_DOCUMENT', 'EMAIL_CONFIRMATION');
  add('verified_by', 'staff-1');
  for (const f of ['reason', 'note', 'release_note']) add(f, 'too many requests', 'case 123', 'x');
  add('entry_types', 'CONSENT_EVENT_OPT_IN', 'CONSENT_EVENT_OPT_OUT', 'SUBJECT_ERASED', 'TENANT_CREATED', 'REQUEST_RECEIVED', 'NOPE');
  add('principal', 'dev-admin', 'someone');
  add('paths', 'service_window', 'opt_out_keywords', 'opt_in_keywords', 'default_consent_validity', 'purpose_consent_validity', 'display_name', 'settings.service_window');
  add('opt_out_keywords', 'STOP', 'HALT', 'stop');
  add('opt_in_keywords', 'START', 'STOP', 'YES');
  add('display_name', 'Fuzz Inc.');
  add('description', 'what it is for');
  add('correlation_id', 'c-1', '');
  add('source_ip', '192.0.2.1', '2001:db8::1', '999.1.1.1', '::ffff:10.0.0.1');
  add('user_agent', 'Mozilla/5.0');
  add('page_url', 'https://example.com/form', 'javascript:alert(1)');
  add('jurisdiction', 'EU', 'DE', 'US-CA');
  add('inbound_message_id', 'wamid.1');
  add('message_id', 'wamid.1', 'wamid.3');
  add('collected_by', 'agent-7');
  add('tenant_id', 'fuzz-new', 'initech', 'nobody-here');
  add('parent', 'tenants/nobody-here');
  add('request_id', 'fuzz-1', 'fuzz-2');
  add('purpose_id', 'fresh-purpose');
  add('confirm_tenant_id', 'nobody-here');

  const dict: Dictionary = new Map(Object.entries(values).map(([k, v]) => [k, [...v]]));
  const allNames = new Set<string>();
  for (const f of ['parent', 'name', 'purpose', 'notice', 'subject']) for (const v of dict.get(f) ?? []) allNames.add(v);
  dict.set('*', [...allNames]);
  return { dict, corpus };
}

/** Reads a whole export (a server stream) to its end. */
function exportAll(rights: SubjectRightsServiceClient, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = rights.exportSubjectData({ name });
    stream.on('data', () => undefined);
    stream.on('error', reject);
    stream.on('end', () => resolve());
  });
}

async function firstCursors(s: TestServer, parent: string): Promise<string[]> {
  const stream = s.consent.streamChanges({ parent, cursor: '' });
  const cursors: string[] = [];
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => stream.cancel(), 3000);
    stream.on('data', (c: StreamChangesResponse) => {
      cursors.push(c.cursor);
      if (cursors.length >= 2) stream.cancel();
    });
    stream.on('error', () => {
      clearTimeout(timer);
      resolve();
    });
    stream.on('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return cursors;
}

/** Every table of a data source with its row count and a digest of its rows. */
export async function tableSnapshot(ds: DataSource, withDigest: boolean): Promise<Record<string, string>> {
  const sqlite = ds.options.type === 'better-sqlite3';
  const rows: Array<{ name: string }> = sqlite
    ? await ds.query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
    : await ds.query('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME');
  const out: Record<string, string> = {};
  for (const { name } of rows) {
    const table = ds.driver.escape(name);
    if (withDigest) {
      const all: unknown[] = await ds.query(`SELECT * FROM ${table}`);
      const lines = all.map((r) => JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).sort();
      out[name] = `${all.length} rows, ${createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 16)}`;
    } else {
      const [{ n }] = await ds.query(`SELECT COUNT(*) AS n FROM ${table}`);
      out[name] = `${Number(n)} rows`;
    }
  }
  return out;
}

/** Snapshot of the data database and the key store. */
export async function storeSnapshot(s: TestServer, withDigest: boolean): Promise<Record<string, string>> {
  const data = await tableSnapshot(s.app.dataSource, withDigest);
  const keys = await tableSnapshot(s.app.keyDataSource, withDigest);
  return {
    ...Object.fromEntries(Object.entries(data).map(([k, v]) => [`data.${k}`, v])),
    ...Object.fromEntries(Object.entries(keys).map(([k, v]) => [`keys.${k}`, v])),
  };
}
