import { ChannelCredentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import * as auditPb from '../../src/gen/consent/v1/audit';
import * as consentPb from '../../src/gen/consent/v1/consent';
import * as identityPb from '../../src/gen/consent/v1/identity';
import * as keyPb from '../../src/gen/consent/v1/key';
import * as purposePb from '../../src/gen/consent/v1/purpose';
import * as selfServicePb from '../../src/gen/consent/v1/self_service';
import * as rightsPb from '../../src/gen/consent/v1/subject_rights';
import * as tenantPb from '../../src/gen/consent/v1/tenant';
import { ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { errorDetails } from './test-server';

/**
 * Every RPC of consent.v1, a request each one accepts, and a way to call any of them (unary,
 * server-streaming or bidi) and see how it ended: for suites that go through all of them.
 */

export const OWN = 'acme';
export const PHONE = '+4915111122233';
/** The person whose erasure request is carried out. */
export const PHONE2 = '+4915111122244';
/** The person whose RECTIFICATION request is carried out, and their correct number. */
export const PHONE3 = '+4915111122266';
export const PHONE4 = '+4915111122277';
/** The number reported as reassigned (a fresh subject each time). */
export const PHONE5 = '+4915111122288';

/** Every consent.v1 service: its definition, its generated client and the module with its messages. */
export const SERVICES = [
  { name: 'consent.v1.TenantService', def: tenantPb.TenantServiceService, Client: tenantPb.TenantServiceClient, pb: tenantPb },
  { name: 'consent.v1.PurposeService', def: purposePb.PurposeServiceService, Client: purposePb.PurposeServiceClient, pb: purposePb },
  { name: 'consent.v1.ConsentService', def: consentPb.ConsentServiceService, Client: consentPb.ConsentServiceClient, pb: consentPb },
  { name: 'consent.v1.KeyService', def: keyPb.KeyServiceService, Client: keyPb.KeyServiceClient, pb: keyPb },
  { name: 'consent.v1.SubjectRightsService', def: rightsPb.SubjectRightsServiceService, Client: rightsPb.SubjectRightsServiceClient, pb: rightsPb },
  { name: 'consent.v1.AuditService', def: auditPb.AuditServiceService, Client: auditPb.AuditServiceClient, pb: auditPb },
  { name: 'consent.v1.IdentityService', def: identityPb.IdentityServiceService, Client: identityPb.IdentityServiceClient, pb: identityPb },
  { name: 'consent.v1.SelfServiceService', def: selfServicePb.SelfServiceServiceService, Client: selfServicePb.SelfServiceServiceClient, pb: selfServicePb },
] as const;

/**
/**
 * Methods in the protos that the server does not serve yet (UNIMPLEMENTED), for a branch that
 * declares methods another branch builds. Empty: since branches signup and preflink were merged,
 * every SelfServiceService method is served.
 */
export const NOT_SERVED_YET: ReadonlySet<string> = new Set<string>();

/** The person a preference link is made for (made.preferenceToken). */
export const PHONE6 = '+4915111122299';

export interface Rpc {
  full: string;
  method: string;
  service: (typeof SERVICES)[number];
  camel: string;
  requestStream: boolean;
  responseStream: boolean;
}

export const RPCS: Rpc[] = SERVICES.flatMap((service) =>
  Object.entries(service.def).map(([camel, d]) => {
    const method = d.path.split('/').pop()!;
    return { full: `${service.name}/${method}`, method, service, camel, requestStream: d.requestStream, responseStream: d.responseStream };
  }),
).filter((rpc) => !NOT_SERVED_YET.has(rpc.full));

/** Names filled in before the matrix runs (requests, holds, rotations made in `before`). */
export const made = {
  accessRequest: '',
  erasureRequest: '',
  rejectRequest: '',
  hold: '',
  rotation: '',
  restrictionRequest: '',
  restriction: '',
  link: '',
  rectificationRequest: '',
  /** Per tenant: the newsletter's "de" notice version that SignUp names (PublishNotice's body publishes "en" ones). */
  signUpNotice: {} as Record<string, number>,
  /** Unused e-mail confirmation tokens of the own tenant (single use: ConfirmSignUp takes one per call). */
  confirmationTokens: [] as string[],
  /** A delivery of the own tenant (acknowledging it again is fine: it counts 0). */
  delivery: '',
  /** A preference link of PHONE6 in the own tenant (preparePreferenceLink). */
  preferenceToken: '',
};

/**
 * Makes what the sign-up methods' bodies need in `tenants`: a "de" newsletter notice, and for the
 * first tenant `count` e-mail sign-ups whose confirmation tokens ConfirmSignUp's body uses.
 * `md` must carry a principal with the roles admin, self_service and recorder (or none: development).
 */
export async function seedSignUps(address: string, creds: ChannelCredentials, md: Metadata, tenants: string[], count = 40): Promise<void> {
  const unary = <R>(f: (cb: (e: ServiceError | null, r: R) => void) => void) => new Promise<R>((resolve, reject) => f((e, r) => (e ? reject(e) : resolve(r))));
  const purposes = new purposePb.PurposeServiceClient(address, creds);
  const self = new selfServicePb.SelfServiceServiceClient(address, creds);
  try {
    for (const t of tenants) {
      const notice = await unary<purposePb.PublishNoticeResponse>((cb) => purposes.publishNotice({ parent: `tenants/${t}/purposes/newsletter`, language: 'de', text: 'Newsletter (de)', requestId: `signup-de-${t}` }, md, cb));
      made.signUpNotice[t] = Number(notice.notice!.name.split('/').pop());
    }
    const t = tenants[0];
    for (let i = 0; i < count; i++) await unary((cb) => self.signUp(selfServicePb.SignUpRequest.fromPartial(body('SignUp', t)), md, cb));
    let pageToken = '';
    do {
      const page = await unary<selfServicePb.ListConfirmationDeliveriesResponse>((cb) => self.listConfirmationDeliveries({ parent: `tenants/${t}`, pageSize: 500, pageToken }, md, cb));
      for (const d of page.deliveries) made.confirmationTokens.push(/#token=(.+)$/.exec(d.link)![1]);
      made.delivery ||= page.deliveries[0]?.name ?? '';
      pageToken = page.nextPageToken;
    } while (pageToken);
  } finally {
    purposes.close();
    self.close();
  }
}

/** A request each RPC should accept for tenant `t` (the own tenant's resources, renamed for another). */
export function body(method: string, t: string): object {
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
    ImportConsents: { parent, rows: [{ line: 1, ...q, kind: 1, method: 1, notice: `${parent}/purposes/newsletter/notices/1`, eventTime: new Date(Date.UTC(2025, 0, 1)), requestId: `imp-${Math.random()}` }] },
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
    // The person told of the extension (Art. 12(3)); NOT_EXTENDED until ExtendDeadline ran on it.
    RecordRequestNotice: { name: swap(made.accessRequest), topic: 1, method: 'LETTER', notifiedBy: 'staff-1' },
    EraseSubject: { name: swap(made.erasureRequest) },
    ExportSubjectData: { name: swap(made.accessRequest) },
    PlaceLegalHold: { parent, ...who, ground: 1, note: 'case', requestId: `h-${Math.random()}` },
    ReleaseLegalHold: { name: swap(made.hold), note: 'closed' },
    ListLegalHolds: { parent },
    // A verified RESTRICTION request (carried out by the call: again is idempotent), and a restriction placed before.
    RestrictProcessing: { name: swap(made.restrictionRequest), ground: 1, note: 'case' },
    RecordRestrictionNotice: { name: swap(made.restriction), method: 'LETTER', notifiedBy: 'staff-1' },
    LiftRestriction: { name: swap(made.restriction), reason: 'accuracy verified' },
    ListRestrictions: { parent },
    // A verified RECTIFICATION request (PHONE3 -> PHONE4; carried out by the call, again is idempotent).
    RectifyIdentifier: { name: swap(made.rectificationRequest) },
    ReportReassignedIdentifier: { parent, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE5 }, defaultRegion: '' }, source: 'CARRIER_NOTICE', requestId: `ra-${Math.random()}` },
    GetCheckpoint: { parent },
    ListCheckpoints: { parent },
    ListAuditEntries: { parent },
    GetInclusionProof: { parent, index: 0, treeSize: 1 },
    GetConsistencyProof: { parent, firstSize: 1, secondSize: 1 },
    ExplainDecision: { parent, query: q },
    ListConsentRecords: { parent },
    // A fresh e-mail address each time: linking the same two again is ALREADY_LINKED.
    LinkIdentifiers: { parent, first: who.subjectIdentifier, second: { kind: { $case: 'email', value: `l${Math.random().toString(36).slice(2, 10)}@example.com` }, defaultRegion: '' }, method: 'ID_DOCUMENT', verifiedBy: 'staff-1', requestId: `l-${Math.random()}` },
    // An open link made before (unlinking again is LINK_CLOSED).
    UnlinkIdentifiers: { name: swap(made.link), reason: 'not the same person' },
    ListIdentityLinks: { parent },
    // A fresh address each time (at most 5 sign-ups per identifier and hour); the "de" notice seedSignUps published.
    SignUp: {
      parent,
      subjectIdentifier: { kind: { $case: 'email', value: `s${Math.random().toString(36).slice(2, 10)}@example.com` }, defaultRegion: '' },
      choices: [{ purpose: `${parent}/purposes/newsletter`, channel: 3, notice: `${parent}/purposes/newsletter/notices/${made.signUpNotice[t] ?? 1}` }],
      evidence: { sourceIp: '198.51.100.7', userAgent: 'catalog' },
      language: 'de',
      requestId: `su-${Math.random()}`,
    },
    // Single use: a fresh token of seedSignUps per call (the own tenant's; another tenant's call never reaches it).
    // A getter: only a call of ConfirmSignUp takes a token.
    get ConfirmSignUp() {
      return { parent, token: made.confirmationTokens.pop() ?? 'no-token-left', evidence: { userAgent: 'catalog' } };
    },
    ListConfirmationDeliveries: { parent },
    AcknowledgeConfirmationDeliveries: { parent, names: [swap(made.delivery)] },
    // PHONE6 opted in before (preferenceLink below); the token is the own tenant's, so another
    // tenant's parent is refused for the tenant before the token is looked at.
    CreatePreferenceLink: { parent, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE6 }, defaultRegion: '' } },
    GetPreferences: { parent, token: made.preferenceToken },
    WithdrawWithLink: { parent, token: made.preferenceToken, scopes: [{ purpose: `${parent}/purposes/newsletter`, channel: 2 }], evidence: { userAgent: 'catalog' }, requestId: `w-${Math.random()}` },
    CreateRequestWithLink: { parent, token: made.preferenceToken, kind: 1, requestId: `rl-${Math.random()}` },
  };
  const b = bodies[method];
  if (!b) throw new Error(`no request body for ${method}`);
  return b;
}

/**
 * Records an opt-in of PHONE6 in the own tenant and makes a preference link for them
 * (made.preferenceToken), with `token` (null: development mode) of a principal that may record.
 */
export async function preparePreferenceLink(address: string, creds: () => ChannelCredentials, token: string | null): Promise<void> {
  const find = (method: string) => RPCS.find((r) => r.method === method)!;
  const who = { kind: { $case: 'phoneNumber' as const, value: PHONE6 }, defaultRegion: '' };
  const recorded = await invoke(find('RecordConsent'), address, creds(), token, { ...body('RecordConsent', OWN), subjectIdentifier: who });
  if (recorded.code !== status.OK) throw new Error(`RecordConsent for the preference link: ${recorded.reason} ${recorded.message}`);
  const client = new selfServicePb.SelfServiceServiceClient(address, creds());
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  try {
    made.preferenceToken = await new Promise<string>((resolve, reject) =>
      client.createPreferenceLink(selfServicePb.CreatePreferenceLinkRequest.fromPartial({ parent: `tenants/${OWN}`, subjectIdentifier: who }), md, (e, r) => (e ? reject(e) : resolve(r.token))),
    );
  } finally {
    client.close();
  }
}

export interface Outcome {
  code: number;
  reason: string;
  message: string;
}

/** Calls any RPC (unary, server-streaming or bidi) and reports how it ended. */
export async function invoke(
  rpc: Rpc,
  address: string,
  creds: ChannelCredentials,
  token: string | null,
  request: object,
  /** Sees the raw error, e.g. to read every detail it carries. */
  onError?: (err: ServiceError) => void,
): Promise<Outcome> {
  const client = new rpc.service.Client(address, creds) as unknown as Record<string, (...args: unknown[]) => unknown> & { close(): void };
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  const type = (rpc.service.pb as unknown as Record<string, { fromPartial(o: object): object }>)[`${rpc.method}Request`];
  const req = type.fromPartial(request);
  const deadline = { deadline: Date.now() + 20_000 };
  const settle = (err: ServiceError | null): Outcome => {
    if (!err) return { code: status.OK, reason: '', message: '' };
    onError?.(err);
    const d = err.metadata?.get('grpc-status-details-bin').length ? errorDetails(err) : { reason: '', message: err.details };
    return { code: err.code, reason: d.reason, message: d.message };
  };
  try {
    if (!rpc.requestStream && !rpc.responseStream) {
      return await new Promise<Outcome>((resolve) => client[rpc.camel](req, md, deadline, (err: ServiceError | null) => resolve(settle(err))));
    }
    if (rpc.requestStream && !rpc.responseStream) {
      // Client streaming (ImportConsents): one message, half-close, one answer.
      return await new Promise<Outcome>((resolve) => {
        const stream = client[rpc.camel](md, deadline, (err: ServiceError | null) => resolve(settle(err))) as NodeJS.WritableStream;
        stream.write(req as never);
        stream.end();
      });
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

