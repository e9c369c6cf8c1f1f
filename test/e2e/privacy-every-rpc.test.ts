import { credentials, Metadata, ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import * as identityPb from '../../src/gen/consent/v1/identity';
import * as rightsPb from '../../src/gen/consent/v1/subject_rights';
import * as keyPb from '../../src/gen/consent/v1/key';
import { BadRequest } from '../../src/gen/google/rpc/error_details';
import { Status } from '../../src/gen/google/rpc/status';
import { forEachDatabase } from '../support/databases';
import { seedTenant } from '../support/fixtures';
import { body, invoke, made, OWN, PHONE, PHONE2, PHONE3, preparePreferenceLink, RPCS, seedSignUps } from '../support/rpc-catalog';
import { startTestServer, TestServer } from '../support/test-server';

/** Personal data planted in every RPC; none of it may come back in a log line or an error. */
const PLANTED = {
  phone: '+4915199988877',
  phoneDigits: '15199988877',
  email: 'maria.planted@example.org',
  ip: '198.51.100.23',
  name: 'Maria Plantedperson',
};

/** Every string that is not a resource name gets personal data; identifiers become the planted person. */
function plant(value: unknown, malformed: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => plant(v, malformed));
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if ('$case' in o && typeof o.value === 'string') {
      const $case = o.$case as string;
      const planted = $case === 'email' ? PLANTED.email : $case === 'phoneNumber' ? PLANTED.phone : PLANTED.name;
      // Malformed: the value keeps the personal data but cannot be parsed.
      return { $case, value: malformed ? `${planted} (call ${PLANTED.name}) @@` : planted };
    }
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, plant(v, malformed)]));
  }
  if (typeof value !== 'string') return value;
  if (value.startsWith('tenants/') && !malformed) return value;
  return malformed ? `${value} ${PLANTED.name} ${PLANTED.email} ${PLANTED.ip} ${PLANTED.phone}` : `${value} ${PLANTED.name} ${PLANTED.email} ${PLANTED.ip}`.slice(0, 60);
}

forEachDatabase('personal data sent through every RPC stays out of logs and errors', (db) => {
  let s: TestServer;
  const address = () => s.address;
  const seen: string[] = [];

  before(async function () {
    this.timeout(60_000);
    s = await startTestServer(db());
    await seedTenant(s, OWN);
    await seedTenant(s, 'acme-scrap');
    const md = new Metadata();
    // Sign-ups of the planted address too: its delivery is listed, its address must not be logged.
    await seedSignUps(address(), credentials.createInsecure(), md, [OWN], 3);
    await invoke(RPCS.find((r) => r.method === 'SignUp')!, address(), credentials.createInsecure(), null, { ...body('SignUp', OWN), subjectIdentifier: { kind: { $case: 'email', value: PLANTED.email }, defaultRegion: '' } });
    const rights = new rightsPb.SubjectRightsServiceClient(address(), credentials.createInsecure());
    const unary = <T>(f: (cb: (e: ServiceError | null, r: T) => void) => void) => new Promise<T>((resolve, reject) => f((e, r) => (e ? reject(e) : resolve(r))));
    for (const phone of [PHONE, PHONE2, PHONE3, PLANTED.phone]) {
      await invoke(RPCS.find((r) => r.method === 'RecordConsent')!, address(), credentials.createInsecure(), null, { ...body('RecordConsent', OWN), subjectIdentifier: { kind: { $case: 'phoneNumber', value: phone }, defaultRegion: '' } });
    }
    const create = (kind: number, requestId: string, phone: string) =>
      unary<rightsPb.CreateRequestResponse>((cb) =>
        rights.createRequest(rightsPb.CreateRequestRequest.fromPartial({ parent: `tenants/${OWN}`, kind, subjectIdentifier: { kind: { $case: 'phoneNumber', value: phone }, defaultRegion: '' }, receivedVia: 1, requestId }), md, cb),
      );
    made.accessRequest = (await create(1, 'p-acc', PLANTED.phone)).request!.name;
    made.rejectRequest = (await create(1, 'p-rej', PLANTED.phone)).request!.name;
    made.erasureRequest = (await create(3, 'p-era', PHONE2)).request!.name;
    await unary((cb) => rights.verifyIdentity({ name: made.erasureRequest, method: 'ID_DOCUMENT', verifiedBy: PLANTED.name, identifierPositions: [] }, md, cb));
    made.restrictionRequest = (await create(5, 'p-res', PLANTED.phone)).request!.name;
    await unary((cb) => rights.verifyIdentity({ name: made.restrictionRequest, method: 'ID_DOCUMENT', verifiedBy: PLANTED.name, identifierPositions: [] }, md, cb));
    const placed = (await create(5, 'p-res-2', PLANTED.phone)).request!.name;
    await unary((cb) => rights.verifyIdentity({ name: placed, method: 'ID_DOCUMENT', verifiedBy: PLANTED.name, identifierPositions: [] }, md, cb));
    made.restriction = (await unary<rightsPb.RestrictProcessingResponse>((cb) => rights.restrictProcessing(rightsPb.RestrictProcessingRequest.fromPartial({ name: placed, ground: 1, note: PLANTED.name }), md, cb))).restriction!.name;
    made.hold = (await unary<rightsPb.PlaceLegalHoldResponse>((cb) => rights.placeLegalHold(rightsPb.PlaceLegalHoldRequest.fromPartial({ parent: `tenants/${OWN}`, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PLANTED.phone }, defaultRegion: '' }, ground: 1, note: PLANTED.name, requestId: 'p-hold' }), md, cb))).hold!.name;
    // Rectification: PHONE3 to the planted e-mail's kind would be refused; to a planted number instead.
    made.rectificationRequest = (
      await unary<rightsPb.CreateRequestResponse>((cb) =>
        rights.createRequest(rightsPb.CreateRequestRequest.fromPartial({ parent: `tenants/${OWN}`, kind: 6, subjectIdentifier: { kind: { $case: 'phoneNumber', value: PHONE3 }, defaultRegion: '' }, rectifiedIdentifier: { kind: { $case: 'phoneNumber', value: '+4915199988866' }, defaultRegion: '' }, receivedVia: 1, requestId: 'p-rect' }), md, cb),
      )
    ).request!.name;
    await unary((cb) => rights.verifyIdentity({ name: made.rectificationRequest, method: 'ID_DOCUMENT', verifiedBy: PLANTED.name, identifierPositions: [] }, md, cb));
    rights.close();
    const identity = new identityPb.IdentityServiceClient(address(), credentials.createInsecure());
    made.link = (await unary<identityPb.LinkIdentifiersResponse>((cb) => identity.linkIdentifiers(identityPb.LinkIdentifiersRequest.fromPartial({ ...body('LinkIdentifiers', OWN), verifiedBy: PLANTED.name }), md, cb))).link!.name;
    identity.close();
    const keys = new keyPb.KeyServiceClient(address(), credentials.createInsecure());
    made.rotation = (await unary<keyPb.RotateTenantKeyResponse>((cb) => keys.rotateTenantKey(keyPb.RotateTenantKeyRequest.fromPartial({ name: `tenants/${OWN}`, requestId: 'p-rot' }), md, cb))).rotation!.name;
    keys.close();
    await preparePreferenceLink(address(), () => credentials.createInsecure(), null);

    for (const malformed of [false, true]) {
      for (const rpc of RPCS.filter((r) => r.method !== 'ShredTenant' || malformed)) {
        const out = await invoke(rpc, address(), credentials.createInsecure(), null, plant(body(rpc.method, OWN), malformed) as object, (err) => {
          const bin = err.metadata?.get('grpc-status-details-bin')[0];
          if (bin instanceof Buffer) {
            const st = Status.decode(bin);
            seen.push(st.message, ...st.details.filter((d) => d.typeUrl.endsWith('BadRequest')).flatMap((d) => BadRequest.decode(d.value).fieldViolations.map((v) => `${v.field} ${v.description}`)));
          }
        });
        seen.push(`${rpc.full} ${out.code} ${out.reason} ${out.message}`);
      }
    }
  });
  after(async () => s?.stop());

  const assertClean = (haystack: string, what: string) => {
    for (const [kind, value] of Object.entries(PLANTED)) expect(haystack.includes(value), `${what} holds the planted ${kind}`).to.equal(false);
  };

  it('reaches every RPC, with well-formed and with malformed personal data', function () {
    expect(seen.filter((l) => l.startsWith('consent.v1.')).length).to.equal(RPCS.length * 2 - 1);
    // Most malformed calls are refused with field errors: the errors were really looked at.
    expect(seen.join('\n')).to.match(/subject_identifier/);
  });

  it('no log line holds any of it', function () {
    const logs = s.logs();
    expect(logs.split('\n').filter((l) => l.includes('"message":"rpc"')).length).to.be.at.least(RPCS.length * 2);
    assertClean(logs, 'the log');
  });

  it('no error message or field violation holds any of it', function () {
    assertClean(seen.join('\n'), 'an error');
  });
});
