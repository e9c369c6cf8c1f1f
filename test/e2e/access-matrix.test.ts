import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ChannelCredentials, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import * as auditPb from '../../src/gen/consent/v1/audit';
import * as consentPb from '../../src/gen/consent/v1/consent';
import * as keyPb from '../../src/gen/consent/v1/key';
import * as purposePb from '../../src/gen/consent/v1/purpose';
import * as rightsPb from '../../src/gen/consent/v1/subject_rights';
import * as tenantPb from '../../src/gen/consent/v1/tenant';
import { ACCESS_POLICY } from '../../src/transport/auth/access-policy';
import { ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { ROLES } from '../../src/domain/principal';
import { forEachDatabase } from '../support/databases';
import { errorDetails, startTestServer, TestServer } from '../support/test-server';
import { createTokenIssuer, Forgery, TEST_AUDIENCE, TEST_ISSUER, TokenIssuer } from '../support/tokens';

const TLS = path.join(__dirname, '..', 'fixtures', 'tls');
const pem = (name: string) => readFileSync(path.join(TLS, name));
const OWN = 'acme';
const FOREIGN = 'beta';
const GHOST = 'ghost-co';
const PHONE = '+4915111122233';
/** The person whose erasure request is carried out. */
const PHONE2 = '+4915111122244';

/** Every consent.v1 service: its definition, its generated client and the module with its messages. */
const SERVICES = [
  { name: 'consent.v1.TenantService', def: tenantPb.TenantServiceService, Client: tenantPb.TenantServiceClient, pb: tenantPb },
  { name: 'consent.v1.PurposeService', def: purposePb.PurposeServiceService, Client: purposePb.PurposeServiceClient, pb: purposePb },
  { name: 'consent.v1.ConsentService', def: consentPb.ConsentServiceService, Client: consentPb.ConsentServiceClient, pb: consentPb },
  { name: 'consent.v1.KeyService', def: keyPb.KeyServiceService, Client: keyPb.KeyServiceClient, pb: keyPb },
  { name: 'consent.v1.SubjectRightsService', def: rightsPb.SubjectRightsServiceService, Client: rightsPb.SubjectRightsServiceClient, pb: rightsPb },
  { name: 'consent.v1.AuditService', def: auditPb.AuditServiceService, Client: auditPb.AuditServiceClient, pb: auditPb },
] as const;

interface Rpc {
  full: string;
  method: string;
  service: (typeof SERVICES)[number];
  camel: string;
  requestStream: boolean;
  responseStream: boolean;
}

const RPCS: Rpc[] = SERVICES.flatMap((service) =>
  Object.entries(service.def).map(([camel, d]) => {
    const method = d.path.split('/').pop()!;
    return { full: `${service.name}/${method}`, method, service, camel, requestStream: d.requestStream, responseStream: d.responseStream };
  }),
);

/** Names filled in before the matrix runs (requests, holds, rotations made in `before`). */
const made = { accessRequest: '', erasureRequest: '', rejectRequest: '', hold: '', rotation: '' };

/** A request each RPC should accept for tenant `t` (the own tenant's resources, renamed for another). */
function body(method: string, t: string): object {
  const parent = `tenants/${t}`;
  const swap = (name: string) => name.replace(`tenants/${OWN}/`, `${parent}/`);
  const who = { subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE }, defaultRegion: '' } };
  const q = { ...who, purpose: `${parent}/purposes/newsletter`, channel: 1 };
  const bodies: Record<string, object> = {
    CreateTenant: { tenantId: `${t}-new`, displayName: 'new' },
    GetTenant: { name: parent },
    UpdateTenantSettings: { settings: { name: `${parent}/settings`, optOutKeywords: [], optInKeywords: [], purposeConsentValidity: {} }, updateMask: [] },
    CreatePurpose: { parent, purposeId: `p${Math.random().toString(36).slice(2, 8)}`, purpose: { category: 1 } },
    ListPurposes: { parent },
    PublishNotice: { parent: `${parent}/purposes/newsletter`, language: 'en', text: 'Newsletter, v2', requestId: `n-${Math.random()}` },
    ListNotices: { parent: `${parent}/purposes/newsletter` },
    RecordConsent: { parent, ...q, kind: 1, method: 1, notice: `${parent}/purposes/newsletter/notices/1`, requestId: `rc-${Math.random()}` },
    RecordInboundMessage: { parent, ...who, channel: 1, text: 'hello', messageId: `m-${Math.random()}`, requestId: `ri-${Math.random()}` },
    CheckConsent: { parent, query: q },
    CheckConsentBatch: { parent, queries: [q] },
    StreamCheckConsent: { parent, query: q, correlationId: 'c1' },
    GetConsentState: { parent, ...who },
    ListConsentEvents: { parent },
    StreamChanges: { parent },
    RotateTenantKey: { name: parent, requestId: `rot-${Math.random()}` },
    GetKeyRotation: { name: swap(made.rotation) },
    GetTenantKeyInfo: { name: parent },
    // Destructive: aimed at a tenant kept for it, so the matrix can go on.
    ShredTenant: { name: `tenants/${t === OWN ? 'acme-scrap' : t}`, confirmTenantId: t === OWN ? 'acme-scrap' : t, requestId: 'shred-1' },
    GetPublicKeys: { name: parent },
    CreateRequest: { parent, kind: 1, ...who, receivedVia: 1, requestId: `cr-${Math.random()}` },
    GetRequest: { name: swap(made.accessRequest) },
    ListRequests: { parent },
    VerifyIdentity: { name: swap(made.accessRequest), method: 'ID_DOCUMENT', verifiedBy: 'staff-1' },
    ExtendDeadline: { name: swap(made.accessRequest), months: 1, reason: 'complex request with many records' },
    RejectRequest: { name: swap(made.rejectRequest), reason: 'not the person' },
    EraseSubject: { name: swap(made.erasureRequest) },
    ExportSubjectData: { name: swap(made.accessRequest) },
    PlaceLegalHold: { parent, ...who, ground: 1, note: 'case', requestId: `h-${Math.random()}` },
    ReleaseLegalHold: { name: swap(made.hold), note: 'closed' },
    ListLegalHolds: { parent },
    GetCheckpoint: { parent },
    ListCheckpoints: { parent },
    ListAuditEntries: { parent },
    GetInclusionProof: { parent, index: 0, treeSize: 1 },
    GetConsistencyProof: { parent, firstSize: 1, secondSize: 1 },
    ExplainDecision: { parent, query: q },
    ListConsentRecords: { parent },
  };
  const b = bodies[method];
  if (!b) throw new Error(`no request body for ${method}`);
  return b;
}

interface Outcome {
  code: number;
  reason: string;
  message: string;
}

/** Calls any RPC (unary, server-streaming or bidi) and reports how it ended. */
async function invoke(rpc: Rpc, address: string, creds: ChannelCredentials, token: string | null, request: object): Promise<Outcome> {
  const client = new rpc.service.Client(address, creds) as unknown as Record<string, (...args: unknown[]) => unknown> & { close(): void };
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  const type = (rpc.service.pb as unknown as Record<string, { fromPartial(o: object): object }>)[`${rpc.method}Request`];
  const req = type.fromPartial(request);
  const deadline = { deadline: Date.now() + 20_000 };
  const settle = (err: ServiceError | null): Outcome => {
    if (!err) return { code: status.OK, reason: '', message: '' };
    const d = err.metadata?.get('grpc-status-details-bin').length ? errorDetails(err) : { reason: '', message: err.details };
    return { code: err.code, reason: d.reason, message: d.message };
  };
  try {
    if (!rpc.requestStream && !rpc.responseStream) {
      return await new Promise<Outcome>((resolve) => client[rpc.camel](req, md, deadline, (err: ServiceError | null) => resolve(settle(err))));
    }
    const stream = (rpc.requestStream ? client[rpc.camel](md, deadline) : client[rpc.camel](req, md, deadline)) as NodeJS.ReadWriteStream & { cancel(): void };
    return await new Promise<Outcome>((resolve) => {
      let first = true;
      stream.on('data', (res: { result?: { error?: { code: number; message: string; details: Array<{ typeUrl: string; value: Buffer }> } } }) => {
        // A stream that answers has passed authentication and authorisation; a stream of checks
        // answers each query, with its own error when the query was refused.
        const e = res.result?.error;
        const info = e?.details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
        if (first) resolve(e ? { code: e.code, reason: info ? ErrorInfo.decode(info.value).reason : '', message: e.message } : { code: status.OK, reason: '', message: '' });
        first = false;
        stream.cancel();
      });
      stream.on('error', (err: ServiceError) => resolve(err.code === status.CANCELLED ? { code: status.OK, reason: '', message: '' } : settle(err)));
      stream.on('end', () => resolve({ code: status.OK, reason: '', message: '' }));
      if (rpc.requestStream) {
        stream.write(req as never);
        stream.end();
      }
      // StreamChanges stays open while nothing changes: open and quiet for a while is a pass.
      setTimeout(() => {
        resolve({ code: status.OK, reason: '', message: '' });
        stream.cancel();
      }, 1500);
    });
  } finally {
    client.close();
  }
}

forEachDatabase('access matrix: every RPC x every role x own / foreign tenant x bad credentials', (db) => {
  let s: TestServer;
  let issuer: TokenIssuer;
  let address = '';
  const ca = pem('ca.pem');
  const tlsOnly = () => credentials.createSsl(ca);
  const withCert = (name: string) => credentials.createSsl(ca, pem(`${name}-key.pem`), pem(`${name}.pem`));
  const tokenFor = (roles: string[], tenants: string[] | '*' = [OWN, 'acme-scrap', 'acme-new']) => issuer.sign({ sub: `svc-${roles.join('-')}`, roles, tenants });
  const admin = () => tokenFor(['admin', 'dpo', 'recorder'], '*');
  const ok = async (rpcName: string, request: object, token?: string) => {
    const rpc = RPCS.find((r) => r.method === rpcName)!;
    const out = await invoke(rpc, address, tlsOnly(), token ?? (await admin()), request);
    expect(out.code, `${rpcName}: ${out.reason} ${out.message}`).to.equal(status.OK);
  };

  before(async function () {
    this.timeout(60_000);
    issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const dir = db().dataDir;
    writeFileSync(path.join(dir, 'jwks.json'), issuer.jwks);
    const principals: Record<string, object> = {};
    for (const [name, role] of [['sender-svc', 'sender'], ['recorder-svc', 'recorder'], ['dpo-desk', 'dpo'], ['auditor-desk', 'auditor'], ['admin-ops', 'admin']]) {
      principals[`spiffe://consent-ledger.test/${name}`] = { roles: [role], tenants: [OWN, 'acme-scrap', 'acme-new'] };
    }
    writeFileSync(path.join(dir, 'principals.json'), JSON.stringify({ principals }));
    s = await startTestServer(db(), {
      authMode: 'authenticated',
      tls: { certFile: path.join(TLS, 'server.pem'), keyFile: path.join(TLS, 'server-key.pem'), clientCaFile: path.join(TLS, 'ca.pem'), principalsFile: path.join(dir, 'principals.json') },
      tokens: { jwksFile: path.join(dir, 'jwks.json'), issuer: TEST_ISSUER, audience: TEST_AUDIENCE, algorithms: ['ES256'], clockSkewMs: 60_000 },
    });
    address = `localhost:${s.app.port}`;
    // The certificate provider delivers asynchronously: wait until TLS is up.
    for (let i = 0; i < 50; i++) {
      const out = await invoke(RPCS.find((r) => r.method === 'GetPublicKeys')!, address, tlsOnly(), await admin(), { name: 'tenants/none' });
      if (out.code !== status.UNAVAILABLE) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const t of [OWN, FOREIGN, 'acme-scrap']) {
      await ok('CreateTenant', { tenantId: t, displayName: t });
      await ok('CreatePurpose', { parent: `tenants/${t}`, purposeId: 'newsletter', purpose: { category: 1 } });
      await ok('PublishNotice', { parent: `tenants/${t}/purposes/newsletter`, language: 'en', text: 'Newsletter', requestId: 'n1' });
    }
    await ok('RecordConsent', body('RecordConsent', OWN));
    await ok('RecordConsent', { ...body('RecordConsent', OWN), subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE2 }, defaultRegion: '' } });
    const rights = new rightsPb.SubjectRightsServiceClient(address, tlsOnly());
    const md = new Metadata();
    md.set('authorization', `Bearer ${await admin()}`);
    const create = (kind: number, requestId: string, phone = PHONE) =>
      new Promise<rightsPb.CreateRequestResponse>((resolve, reject) =>
        rights.createRequest(rightsPb.CreateRequestRequest.fromPartial({ parent: `tenants/${OWN}`, kind, subjectIdentifier: { kind: { $case: 'phoneNumber', value: phone }, defaultRegion: '' }, receivedVia: 1, requestId }), md, (e, r) => (e ? reject(e) : resolve(r))),
      );
    made.accessRequest = (await create(rightsPb.RequestKind.REQUEST_KIND_ACCESS, 'acc-1')).request!.name;
    made.rejectRequest = (await create(rightsPb.RequestKind.REQUEST_KIND_ACCESS, 'rej-1')).request!.name;
    made.erasureRequest = (await create(rightsPb.RequestKind.REQUEST_KIND_ERASURE, 'era-1', PHONE2)).request!.name;
    await new Promise((resolve, reject) => rights.verifyIdentity({ name: made.erasureRequest, method: 'ID_DOCUMENT', verifiedBy: 'staff-1' }, md, (e, r) => (e ? reject(e) : resolve(r))));
    rights.close();
    const hold = await new Promise<rightsPb.PlaceLegalHoldResponse>((resolve, reject) => {
      const c = new rightsPb.SubjectRightsServiceClient(address, tlsOnly());
      c.placeLegalHold(rightsPb.PlaceLegalHoldRequest.fromPartial({ parent: `tenants/${OWN}`, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE }, defaultRegion: '' }, ground: 1, note: 'x', requestId: 'hold-1' }), md, (e, r) => {
        c.close();
        return e ? reject(e) : resolve(r);
      });
    });
    made.hold = hold.hold!.name;
    const keys = new keyPb.KeyServiceClient(address, tlsOnly());
    made.rotation = await new Promise<string>((resolve, reject) =>
      keys.rotateTenantKey(keyPb.RotateTenantKeyRequest.fromPartial({ name: `tenants/${OWN}`, requestId: 'rot-setup' }), md, (e, r) => {
        keys.close();
        return e ? reject(e) : resolve(r.rotation!.name);
      }),
    );
  });
  after(async () => s?.stop());

  it('the access policy has a row for every RPC the server offers, and no other', function () {
    expect(RPCS).to.have.length(38);
    expect(Object.keys(ACCESS_POLICY).sort()).to.deep.equal(RPCS.map((r) => r.full).sort());
  });

  for (const role of ROLES.map((r) => r.toLowerCase())) {
    it(`role ${role}: exactly the allowed RPCs pass; foreign tenants look missing`, async function () {
      this.timeout(180_000);
      const token = await tokenFor([role]);
      const failures: string[] = [];
      for (const rpc of RPCS) {
        const allowed = ACCESS_POLICY[rpc.full].includes(role.toUpperCase() as never);
        const own = await invoke(rpc, address, tlsOnly(), token, body(rpc.method, OWN));
        const foreign = await invoke(rpc, address, tlsOnly(), token, body(rpc.method, FOREIGN));
        if (!allowed) {
          for (const [which, out] of [['own', own], ['foreign', foreign]] as const) {
            if (out.code !== status.PERMISSION_DENIED || out.reason !== 'ROLE_NOT_ALLOWED') failures.push(`${rpc.full} (${which}) should be refused for ${role}: got ${status[out.code]} ${out.reason}`);
          }
          continue;
        }
        if (own.code !== status.OK) failures.push(`${rpc.full} (own tenant) should succeed for ${role}: got ${status[own.code]} ${own.reason} ${own.message}`);
        // A foreign tenant answers exactly like one that does not exist.
        const ghost = await invoke(rpc, address, tlsOnly(), token, body(rpc.method, GHOST));
        const unify = (o: Outcome) => ({ ...o, message: o.message.split(GHOST).join(FOREIGN) });
        if (JSON.stringify(unify(ghost)) !== JSON.stringify(foreign)) failures.push(`${rpc.full}: foreign ${JSON.stringify(foreign)} differs from missing ${JSON.stringify(ghost)}`);
        if (rpc.method === 'CreateTenant') {
          if (foreign.code !== status.PERMISSION_DENIED) failures.push(`CreateTenant for a foreign id: got ${status[foreign.code]}`);
        } else if (foreign.code !== status.NOT_FOUND || foreign.reason !== 'TENANT_NOT_FOUND') {
          failures.push(`${rpc.full} (foreign tenant) should be NOT_FOUND TENANT_NOT_FOUND: got ${status[foreign.code]} ${foreign.reason}`);
        }
      }
      expect(failures, failures.join('\n')).to.deep.equal([]);
    });
  }

  it('no credentials, expired or forged tokens, and untrusted or expired certificates are UNAUTHENTICATED on every RPC', async function () {
    this.timeout(180_000);
    const everything = ['sender', 'recorder', 'dpo', 'auditor', 'admin'];
    const bad: Array<[string, () => Promise<{ creds: ChannelCredentials; token: string | null }>]> = [
      ['no credentials', async () => ({ creds: tlsOnly(), token: null })],
      ['expired token', async () => ({ creds: tlsOnly(), token: await issuer.sign({ sub: 'x', roles: everything, tenants: '*' }, { expired: true }) })],
      ...(['hs256-public-key', 'alg-none', 'rs256-foreign-key', 'unknown-kid', 'tampered-payload'] as Forgery[]).map(
        (forgery) => [`forged token (${forgery})`, async () => ({ creds: tlsOnly(), token: await issuer.sign({ sub: 'x', roles: ['sender'], tenants: [OWN] }, { forgery }) })] as [string, () => Promise<{ creds: ChannelCredentials; token: string | null }>],
      ),
      ['certificate from an untrusted CA', async () => ({ creds: withCert('rogue-client'), token: null })],
      ['expired certificate', async () => ({ creds: withCert('expired-client'), token: null })],
      ['token from another issuer', async () => ({ creds: tlsOnly(), token: await issuer.sign({ sub: 'x', roles: everything, tenants: '*', iss: 'https://elsewhere.example' }) })],
    ];
    const failures: string[] = [];
    for (const [what, make] of bad) {
      const { creds, token } = await make();
      for (const rpc of RPCS) {
        const out = await invoke(rpc, address, creds, token, body(rpc.method, OWN));
        if (out.code !== status.UNAUTHENTICATED) failures.push(`${what}: ${rpc.full} got ${status[out.code]} ${out.reason}`);
      }
    }
    expect(failures, failures.join('\n')).to.deep.equal([]);
  });

  it('client certificates authenticate their identity with the roles the principals file grants', async function () {
    this.timeout(180_000);
    const failures: string[] = [];
    for (const [cert, role] of [['sender-svc', 'SENDER'], ['recorder-svc', 'RECORDER'], ['dpo-desk', 'DPO'], ['auditor-desk', 'AUDITOR'], ['admin-ops', 'ADMIN']] as const) {
      for (const rpc of RPCS.filter((r) => !['ShredTenant', 'CreateTenant', 'EraseSubject', 'RejectRequest'].includes(r.method))) {
        const out = await invoke(rpc, address, withCert(cert), null, body(rpc.method, OWN));
        const allowed = ACCESS_POLICY[rpc.full].includes(role);
        const refused = out.code === status.PERMISSION_DENIED && out.reason === 'ROLE_NOT_ALLOWED';
        if (allowed === refused || out.code === status.UNAUTHENTICATED) failures.push(`${cert} ${rpc.full}: got ${status[out.code]} ${out.reason}`);
      }
    }
    expect(failures, failures.join('\n')).to.deep.equal([]);
    // Audit entries and events name the principal that made them: the certificate identity.
    const recorded = await invoke(RPCS.find((r) => r.method === 'RecordConsent')!, address, withCert('recorder-svc'), null, body('RecordConsent', OWN));
    expect(recorded.code).to.equal(status.OK);
    const [row] = await s.app.dataSource.query('SELECT principal FROM consent_events ORDER BY seq DESC LIMIT 1');
    expect(row.principal).to.equal('spiffe://consent-ledger.test/recorder-svc');
  });

  it('a principal over its rate gets RESOURCE_EXHAUSTED with RetryInfo; others are unaffected', async function () {
    this.timeout(60_000);
    // The limits of this server: the defaults are far above what a test sends, so use a second, tight server.
    const tight = await startTestServer(db(), {
      authMode: 'authenticated',
      tls: s.app.config.tls,
      tokens: s.app.config.tokens,
      limits: { ...s.app.config.limits, ratePerSecond: 5, rateBurst: 5 },
    });
    try {
      const addr = `localhost:${tight.app.port}`;
      const rpc = RPCS.find((r) => r.method === 'GetPublicKeys')!;
      const busy = await tokenFor(['sender']);
      for (let i = 0; i < 50; i++) if ((await invoke(rpc, addr, tlsOnly(), busy, { name: `tenants/${OWN}` })).code !== status.UNAVAILABLE) break;
      // Twenty at once on one connection: five pass (the burst), the rest are refused.
      const client = new keyPb.KeyServiceClient(addr, tlsOnly());
      const md = new Metadata();
      md.set('authorization', `Bearer ${busy}`);
      const results = await Promise.all(
        Array.from({ length: 20 }, () => new Promise<ServiceError | null>((resolve) => client.getPublicKeys({ name: `tenants/${OWN}` }, md, (e) => resolve(e)))),
      );
      client.close();
      const refused = results.filter((e): e is ServiceError => e !== null);
      expect(refused.length, 'refused of 20').to.be.within(14, 16);
      const err = refused[0];
      expect(err.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(errorDetails(err).reason).to.equal('RATE_LIMITED');
      const statusBin = err.metadata.get('grpc-status-details-bin')[0] as Buffer;
      expect(statusBin.toString('latin1')).to.include('google.rpc.RetryInfo');
      const calm = await tokenFor(['auditor']);
      expect((await invoke(rpc, addr, tlsOnly(), calm, { name: `tenants/${OWN}` })).code, 'another principal').to.equal(status.OK);
    } finally {
      await tight.stop();
    }
  });
});
