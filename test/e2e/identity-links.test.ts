import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { leafHash, rootFromLeafHashes } from '../../src/audit/merkle';
import { MAX_LINKED_SUBJECTS } from '../../src/domain/identity-links';
import { parseSubjectName } from '../../src/domain/resource-names';
import { Channel, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { ConsentServiceClient, DecisionReason, Verdict } from '../../src/gen/consent/v1/consent';
import { IdentifierKind, IdentityLink, IdentityServiceClient, LinkIdentifiersRequest } from '../../src/gen/consent/v1/identity';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { CreateRequestRequest, ReceivedVia, RequestKind, RestrictionGround, SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { asBearer } from '../support/bearer';
import { forEachDatabase } from '../support/databases';
import { consentRequest, email, phone, query, seedTenant } from '../support/fixtures';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';
import { createTokenIssuer, TEST_AUDIENCE, TEST_ISSUER } from '../support/tokens';

/**
 * Linked identities (issue 18, point 2): LinkIdentifiers, UnlinkIdentifiers, ListIdentityLinks
 * over real gRPC with bearer tokens (roles and tenants apply), the transitive closure the
 * data-subject requests follow (IdentityLinks.linkedSubjects), a link never widening consent,
 * links going with an erased person, and no identifier in any answer, audit entry or log line.
 */
const T = 'linking';
const OTHER = 'linking-other';
/** Planted personal data: none of it may appear in a log line, an error or an audit entry. */
const PLANTED = { phone: '+4915112378801', email: 'planted.person@example.org', customer: 'CUST-PLANTED-77' };

forEachDatabase('linked identities', (db) => {
  let s: TestServer;
  let identity: IdentityServiceClient;
  let consent: ConsentServiceClient;
  let rights: SubjectRightsServiceClient;
  let tokens: { admin: string; dpo: string; auditor: string; sender: string; foreignDpo: string };
  const clients: Array<{ close(): void }> = [];
  const as = <C extends { close(): void }>(c: C) => (clients.push(c), c);
  const identityAs = (token: string) => as(new IdentityServiceClient(s.address, credentials.createInsecure(), asBearer(token)));

  before(async function () {
    this.timeout(60_000);
    const issuer = await createTokenIssuer({ issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const jwksFile = path.join(db().dataDir, 'jwks.json');
    writeFileSync(jwksFile, issuer.jwks);
    const exp = Math.floor(Date.now() / 1000) + 3600;
    tokens = {
      admin: await issuer.sign({ sub: 'link-admin', roles: ['sender', 'recorder', 'dpo', 'auditor', 'admin'], tenants: '*', exp }),
      dpo: await issuer.sign({ sub: 'dpo-desk', roles: ['dpo'], tenants: [T], exp }),
      auditor: await issuer.sign({ sub: 'auditor-desk', roles: ['auditor'], tenants: [T], exp }),
      sender: await issuer.sign({ sub: 'sender-svc', roles: ['sender'], tenants: [T], exp }),
      foreignDpo: await issuer.sign({ sub: 'other-dpo', roles: ['dpo'], tenants: [OTHER], exp }),
    };
    s = await startTestServer(db(), { authMode: 'authenticated', tokens: { jwksFile, issuer: TEST_ISSUER, audience: TEST_AUDIENCE, algorithms: ['ES256'], clockSkewMs: 60_000 } });
    const opts = asBearer(tokens.admin);
    const tenants = as(new TenantServiceClient(s.address, credentials.createInsecure(), opts));
    const purposes = as(new PurposeServiceClient(s.address, credentials.createInsecure(), opts));
    consent = as(new ConsentServiceClient(s.address, credentials.createInsecure(), opts));
    rights = as(new SubjectRightsServiceClient(s.address, credentials.createInsecure(), opts));
    identity = as(new IdentityServiceClient(s.address, credentials.createInsecure(), asBearer(tokens.dpo)));
    for (const t of [T, OTHER]) await seedTenant({ tenants, purposes } as unknown as TestServer, t);
  });
  after(async () => {
    for (const c of clients) c.close();
    await s?.stop();
  });

  let counter = 0;
  const linkRequest = (first: SubjectIdentifier | undefined, second: SubjectIdentifier | undefined, more: Partial<LinkIdentifiersRequest> = {}) =>
    LinkIdentifiersRequest.fromPartial({ parent: `tenants/${T}`, first, second, method: 'ID_DOCUMENT', verifiedBy: 'dpo-anna', requestId: `link-${++counter}`, ...more });
  const link = (first: SubjectIdentifier | undefined, second: SubjectIdentifier | undefined, more: Partial<LinkIdentifiersRequest> = {}, client = identity) =>
    call(client, client.linkIdentifiers, linkRequest(first, second, more)).then((r) => r.link!);
  const unlink = (name: string, reason = 'not the same person', client = identity) => call(client, client.unlinkIdentifiers, { name, reason }).then((r) => r.link!);
  const list = (subjectIdentifier?: SubjectIdentifier, includeUnlinked = false, client = identity) =>
    call(client, client.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier, includeUnlinked, pageSize: 0, pageToken: '' }).then((r) => r.links);
  const subjectIds = (l: IdentityLink) => l.subjects.map((n) => parseSubjectName(n)!.subjectId);
  const linked = (ids: string[]) => s.app.services.tx.read((tx) => s.app.services.identityLinks.linkedSubjects(tx, T, ids));
  const check = (who: SubjectIdentifier) =>
    call(consent, consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP }) }).then(
      (r) => `${Verdict[r.decision!.verdict]} ${DecisionReason[r.decision!.reason]}`,
    );
  const createRequest = (kind: RequestKind, who: SubjectIdentifier) =>
    call(rights, rights.createRequest, CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind, subjectIdentifier: who, receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: `req-${++counter}` })).then((r) => r.request!);
  const verify = (name: string) => call(rights, rights.verifyIdentity, { name, method: 'EMAIL_CONFIRMATION', verifiedBy: 'dpo-bob', identifierPositions: [] }).then((r) => r.request!);
  const auditEntries = async () => (await s.app.services.audit.entries(T, 0, 100_000)).map((e) => ({ ...e, entry: JSON.parse(e.entryJson) as Record<string, string> }));

  it('links two identifiers with evidence; retries answer the same link; a link never widens consent', async function () {
    const p = phone(PLANTED.phone);
    const e = email(PLANTED.email);
    await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: p, purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP }));
    const before = (await s.app.services.audit.size(T)) as number;
    const request = linkRequest(p, e);
    const made = (await call(identity, identity.linkIdentifiers, request)).link!;
    expect(made.name).to.match(new RegExp(`^tenants/${T}/identityLinks/[0-9a-f]{32}$`));
    expect(made.subjects).to.have.length(2);
    for (const n of made.subjects) expect(n).to.match(new RegExp(`^tenants/${T}/subjects/[0-9a-f]{32}$`));
    expect(made.kinds).to.deep.equal([IdentifierKind.IDENTIFIER_KIND_PHONE_NUMBER, IdentifierKind.IDENTIFIER_KIND_EMAIL]);
    expect([made.method, made.verifiedBy, made.request, made.linkedBy, made.unlinkedBy, made.unlinkReason]).to.deep.equal(['ID_DOCUMENT', 'dpo-anna', '', 'dpo-desk', '', '']);
    expect(made.linkTime).to.be.instanceOf(Date);
    expect(made.unlinkTime).to.equal(undefined);
    expect(JSON.stringify(IdentityLink.toJSON(made)), 'no identifier value in the answer').to.not.match(/4915112378801|planted\.person/);

    // Idempotent by request_id: the same link; the same key with another body is refused.
    expect((await call(identity, identity.linkIdentifiers, request)).link).to.deep.equal(made);
    expect((await expectGrpcError(call(identity, identity.linkIdentifiers, { ...request, verifiedBy: 'dpo-bob' }), status.FAILED_PRECONDITION)).reason).to.equal('REQUEST_ID_REUSED');
    // A second link of the same two (either order) is refused: the open link answers for them.
    for (const [a, b] of [
      [p, e],
      [e, p],
    ]) {
      const refused = await expectGrpcError(link(a, b), status.FAILED_PRECONDITION);
      expect([refused.reason, refused.message]).to.deep.equal(['ALREADY_LINKED', `the open link ${made.name} joins the two already`]);
    }

    // The link is recorded: one entry per subject, naming the link, without personal data.
    const entries = (await auditEntries()).slice(before);
    expect(entries.map((x) => [x.entry.type, x.entry.ref, x.entry.principal])).to.deep.equal([
      ['IDENTITIES_LINKED', made.name, 'dpo-desk'],
      ['IDENTITIES_LINKED', made.name, 'dpo-desk'],
    ]);
    expect(entries.map((x) => x.entry.subject)).to.deep.equal(subjectIds(made));
    expect(entries[0].entry.payloadSha256).to.match(/^[0-9a-f]{64}$/);

    // The e-mail address became a subject; the link is found from either identifier.
    expect((await list(p)).map((l) => l.name)).to.deep.equal([made.name]);
    expect((await list(e)).map((l) => l.name)).to.deep.equal([made.name]);
    expect(await list(email('nobody-linked@example.org')), 'an unknown identifier: an empty page').to.deep.equal([]);

    // Never wider consent: the WhatsApp opt-in of the phone allows nothing for the e-mail address.
    expect(await check(p)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(await check(e)).to.match(/^VERDICT_DENY /);
    expect(await check(e)).to.not.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
  });

  it('linkedSubjects follows open links transitively (breadth first, with the link and the subject it came from); unlinking closes a link once', async function () {
    const [a, b, c, d] = [phone('+4915112378811'), email('linked-b@example.org'), { kind: { $case: 'customerId' as const, value: 'CUST-LINK-C' }, defaultRegion: '' }, email('linked-d@example.org')];
    const ab = await link(a, b);
    const bc = await link(b, c);
    const cd = await link(d, c);
    const [A, B] = subjectIds(ab);
    const C = subjectIds(bc)[1];
    const D = subjectIds(cd)[0];
    expect(await linked([A])).to.deep.equal([
      { subjectId: B, viaLink: ab.name, from: A },
      { subjectId: C, viaLink: bc.name, from: B },
      { subjectId: D, viaLink: cd.name, from: C },
    ]);
    expect((await linked([C])).map((x) => x.subjectId).sort()).to.deep.equal([A, B, D].sort());
    expect(await linked([A, B, C, D]), 'the given ones are left out').to.deep.equal([]);

    const closed = await unlink(bc.name, 'verified: two different people');
    expect([closed.unlinkedBy, closed.unlinkReason]).to.deep.equal(['dpo-desk', 'verified: two different people']);
    expect(closed.unlinkTime).to.be.instanceOf(Date);
    expect(await linked([A])).to.deep.equal([{ subjectId: B, viaLink: ab.name, from: A }]);
    expect(await linked([D])).to.deep.equal([{ subjectId: C, viaLink: cd.name, from: D }]);
    const again = await expectGrpcError(unlink(bc.name), status.FAILED_PRECONDITION);
    expect(again.reason).to.equal('LINK_CLOSED');

    // Closed links are listed only on request; relinking the two is a new link.
    expect((await list(b)).map((l) => l.name)).to.deep.equal([ab.name]);
    expect((await list(b, true)).map((l) => l.name).sort()).to.deep.equal([ab.name, bc.name].sort());
    const relinked = await link(b, c);
    expect(relinked.name).to.not.equal(bc.name);
    const entries = await auditEntries();
    expect(entries.filter((x) => x.entry.type === 'IDENTITIES_UNLINKED').map((x) => [x.entry.ref, x.entry.subject])).to.deep.equal([
      [bc.name, B],
      [bc.name, C],
    ]);
  });

  it('a verified data-subject request can be the evidence; an unverified one, one of another identifier or another tenant cannot', async function () {
    const p = phone('+4915112378821');
    const cust = { kind: { $case: 'customerId' as const, value: 'CUST-REQ-1' }, defaultRegion: '' };
    const received = await createRequest(RequestKind.REQUEST_KIND_ACCESS, p);
    expect((await expectGrpcError(link(p, cust, { method: '', verifiedBy: '', request: received.name }), status.FAILED_PRECONDITION)).reason).to.equal('IDENTITY_NOT_VERIFIED');
    await verify(received.name);
    const made = await link(p, cust, { method: '', verifiedBy: '', request: received.name });
    expect([made.method, made.verifiedBy, made.request]).to.deep.equal(['EMAIL_CONFIRMATION', 'dpo-bob', received.name]);
    // Given method and verifier are kept.
    const other = await link(p, email('req-path@example.org'), { method: 'PHONE_CALLBACK', verifiedBy: 'dpo-carl', request: received.name });
    expect([other.method, other.verifiedBy, other.request]).to.deep.equal(['PHONE_CALLBACK', 'dpo-carl', received.name]);
    // A request by neither identifier proves nothing about them.
    const stranger = await createRequest(RequestKind.REQUEST_KIND_ACCESS, phone('+4915112378822'));
    await verify(stranger.name);
    expect((await expectGrpcError(link(p, email('req-x@example.org'), { request: stranger.name }), status.FAILED_PRECONDITION)).reason).to.equal('REQUEST_NOT_FOR_IDENTIFIER');
    // An objection is completed without verification: not a verified path.
    const objection = await createRequest(RequestKind.REQUEST_KIND_OBJECTION, phone('+4915112378823'));
    expect((await expectGrpcError(link(phone('+4915112378823'), email('req-y@example.org'), { method: '', verifiedBy: '', request: objection.name }), status.FAILED_PRECONDITION)).reason).to.equal('IDENTITY_NOT_VERIFIED');
    const missing = await expectGrpcError(link(p, email('req-z@example.org'), { request: `tenants/${T}/requests/${'0'.repeat(32)}` }), status.NOT_FOUND);
    expect(missing.reason).to.equal('REQUEST_NOT_FOUND');
    const foreign = await expectGrpcError(link(p, email('req-z@example.org'), { request: `tenants/${OTHER}/requests/${'0'.repeat(32)}` }), status.INVALID_ARGUMENT);
    expect(foreign.fields).to.deep.equal(['request']);
  });

  it('a standing objection of one identifier is carried over to the identifiers linked to it, with the link as provenance', async function () {
    const p = phone('+4915112378871');
    const e = email('objecting@example.org');
    const c = { kind: { $case: 'customerId' as const, value: 'CUST-OBJ-1' }, defaultRegion: '' };
    for (const who of [p, e, c]) await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: who }));
    expect(await check(e)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    s.clock.advance(1000);
    await createRequest(RequestKind.REQUEST_KIND_OBJECTION, p);
    expect(await check(p)).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
    expect(await check(e), 'not linked yet').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');

    s.clock.advance(1000);
    const request = linkRequest(e, p);
    const { link: made, consistencyToken } = await call(identity, identity.linkIdentifiers, request);
    expect(consistencyToken).to.not.equal('');
    expect(await check(e), 'the person objected').to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
    const [E, P] = subjectIds(made!);
    const objected = (await auditEntries()).filter((x) => x.entry.type === 'SUBJECT_OBJECTED' && x.entry.ref === made!.name);
    expect(objected.map((x) => [x.entry.subject, x.entry.principal])).to.deep.equal([[E, 'dpo-desk']]);
    // A retry changes nothing more; its token covers the first call.
    const retry = await call(identity, identity.linkIdentifiers, request);
    expect(retry.link).to.deep.equal(made);
    expect((await auditEntries()).filter((x) => x.entry.type === 'SUBJECT_OBJECTED' && x.entry.ref === made!.name)).to.have.length(1);

    // Linking a third identifier to the objecting person (through e) carries it on; the phone's own objection stays one.
    s.clock.advance(1000);
    const third = await link(c, e);
    expect(await check(c)).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
    const C = subjectIds(third)[0];
    expect((await auditEntries()).filter((x) => x.entry.type === 'SUBJECT_OBJECTED' && x.entry.ref === third.name).map((x) => x.entry.subject)).to.deep.equal([C]);
    expect((await auditEntries()).filter((x) => x.entry.type === 'SUBJECT_OBJECTED' && x.entry.subject === P)).to.have.length(1);
  });

  it('a restriction in force on one identifier is carried over to an identifier linked later: its own restriction, told and lifted like the others', async function () {
    const p = phone('+4915112378899');
    const e = email('restricted.person@example.org');
    for (const who of [p, e]) await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: who }));
    s.clock.advance(1000);
    const request = await verify((await createRequest(RequestKind.REQUEST_KIND_RESTRICTION, p)).name);
    const placed = (await call(rights, rights.restrictProcessing, { name: request.name, ground: RestrictionGround.RESTRICTION_GROUND_B_UNLAWFUL_PROCESSING, note: 'case 77' })).restriction!;
    expect(await check(p)).to.equal('VERDICT_DENY DECISION_REASON_RESTRICTED');
    expect(await check(e), 'not linked yet').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');

    s.clock.advance(1000);
    const made = await link(e, p);
    expect(await check(e), 'the person is restricted').to.equal('VERDICT_DENY DECISION_REASON_RESTRICTED');
    const [E] = subjectIds(made);
    const listed = (await call(rights, rights.listRestrictions, { parent: `tenants/${T}`, subjectIdentifier: e, includeLifted: false, pageSize: 0, pageToken: '' })).restrictions;
    expect(listed.map((r) => [r.ground, r.request, r.placedBy, r.note])).to.deep.equal([[RestrictionGround.RESTRICTION_GROUND_B_UNLAWFUL_PROCESSING, request.name, 'dpo-desk', `carried over from ${placed.name} by ${made.name}`]]);
    const entries = (await auditEntries()).filter((x) => x.entry.type === 'RESTRICTION_PLACED' && x.entry.ref === listed[0].name);
    expect(entries.map((x) => [x.entry.subject, x.entry.principal])).to.deep.equal([[E, 'dpo-desk']]);
    // A retry of the link carries nothing twice.
    expect(await link(e, p, { requestId: `link-${counter}` })).to.deep.equal(made);
    expect((await call(rights, rights.listRestrictions, { parent: `tenants/${T}`, subjectIdentifier: e, includeLifted: false, pageSize: 0, pageToken: '' })).restrictions).to.have.length(1);

    // Each is told and lifted on its own (Art. 18(3)): the e-mail's lifted first, the phone's stays.
    for (const r of [placed, listed[0]]) await call(rights, rights.recordRestrictionNotice, { name: r.name, method: 'LETTER', notifiedBy: 'dpo-anna' });
    await call(rights, rights.liftRestriction, { name: listed[0].name, reason: 'the processing was lawful after all' });
    expect(await check(e)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(await check(p)).to.equal('VERDICT_DENY DECISION_REASON_RESTRICTED');
    // A third identifier linked later is restricted; the e-mail, lifted by the DPO, gets no second one.
    const c = { kind: { $case: 'customerId' as const, value: 'CUST-RESTRICTED-3' }, defaultRegion: '' };
    await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: c }));
    await link(c, p);
    expect(await check(c)).to.equal('VERDICT_DENY DECISION_REASON_RESTRICTED');
    expect(await check(e)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    await call(rights, rights.liftRestriction, { name: placed.name, reason: 'the processing was lawful after all' });
    expect(await check(p)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
  });

  it('a later objection reaches a linked identifier that objected earlier and consented again since', async function () {
    const e = email('reconsented@example.org');
    const p = phone('+4915112378881');
    await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: e }));
    s.clock.advance(1000);
    await createRequest(RequestKind.REQUEST_KIND_OBJECTION, e);
    expect(await check(e)).to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
    s.clock.advance(1000);
    await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: e }));
    expect(await check(e), 'a consent after the objection').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: p }));
    s.clock.advance(1000);
    await createRequest(RequestKind.REQUEST_KIND_OBJECTION, p);

    s.clock.advance(1000);
    const made = await link(p, e);
    expect(await check(e), 'the person objected after that consent').to.equal('VERDICT_DENY DECISION_REASON_OBJECTED');
    const E = subjectIds(made)[1];
    expect((await auditEntries()).filter((x) => x.entry.type === 'SUBJECT_OBJECTED' && x.entry.ref === made.name).map((x) => x.entry.subject)).to.deep.equal([E]);
    const fully = await call(consent, consent.checkConsent, { parent: `tenants/${T}`, consistency: { requirement: { $case: 'fullyConsistent', value: true } }, query: query(T, { subjectIdentifier: e, purpose: `tenants/${T}/purposes/newsletter`, channel: Channel.CHANNEL_WHATSAPP }) });
    expect(DecisionReason[fully.decision!.reason]).to.equal('DECISION_REASON_OBJECTED');
  });

  it('refuses bad input naming the field, and changes nothing', async function () {
    const p = phone('+4915112378831');
    const sizeBefore = await s.app.services.audit.size(T);
    const fields = async (req: Promise<unknown>) => (await expectGrpcError(req, status.INVALID_ARGUMENT)).fields;
    expect(await fields(link(undefined, email('x@example.org')))).to.deep.equal(['first']);
    expect(await fields(link(p, email('not-an-address')))).to.deep.equal(['second.email']);
    expect(await fields(link(phone('12'), p))).to.deep.equal(['first.phone_number']);
    expect(await fields(link(p, phone('+49 151 12378831')))).to.deep.equal(['second']);
    expect(await fields(link(p, email('y@example.org'), { method: 'ID DOCUMENT!' }))).to.deep.equal(['method']);
    expect(await fields(link(p, email('y@example.org'), { method: '' }))).to.deep.equal(['method']);
    expect(await fields(link(p, email('y@example.org'), { verifiedBy: '' }))).to.deep.equal(['verified_by']);
    expect(await fields(link(p, email('y@example.org'), { verifiedBy: 'x'.repeat(129) }))).to.deep.equal(['verified_by']);
    expect(await fields(link(p, email('y@example.org'), { requestId: '' }))).to.deep.equal(['request_id']);
    expect(await fields(link(p, email('y@example.org'), { requestId: 'has space' }))).to.deep.equal(['request_id']);
    expect(await fields(link(p, email('y@example.org'), { request: 'requests/1' }))).to.deep.equal(['request']);
    expect(await fields(link(p, email('y@example.org'), { parent: 'tenant/x' }))).to.deep.equal(['parent']);
    expect(await fields(unlink(`tenants/${T}/identityLinks/${'0'.repeat(32)}`, ''))).to.deep.equal(['reason']);
    expect(await fields(unlink(`tenants/${T}/identityLinks/${'0'.repeat(32)}`, 'x'.repeat(1001)))).to.deep.equal(['reason']);
    expect(await fields(unlink(`tenants/${T}/links/${'0'.repeat(32)}`))).to.deep.equal(['name']);
    expect(await fields(call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: email('bad'), includeUnlinked: false, pageSize: 0, pageToken: '' }))).to.deep.equal(['subject_identifier.email']);
    expect(await fields(call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: undefined, includeUnlinked: false, pageSize: -1, pageToken: '' }))).to.deep.equal(['page_size']);
    expect(await fields(call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: undefined, includeUnlinked: false, pageSize: 0, pageToken: 'forged' }))).to.deep.equal(['page_token']);
    // Unknown links: NOT_FOUND (an id the service never assigns, too).
    expect((await expectGrpcError(unlink(`tenants/${T}/identityLinks/${'0'.repeat(32)}`), status.NOT_FOUND)).reason).to.equal('IDENTITY_LINK_NOT_FOUND');
    expect((await expectGrpcError(unlink(`tenants/${T}/identityLinks/nope`), status.NOT_FOUND)).reason).to.equal('IDENTITY_LINK_NOT_FOUND');
    expect(await s.app.services.audit.size(T), 'a refused call appends nothing').to.equal(sizeBefore);
    expect(await list(p, true), 'nothing was linked or made').to.deep.equal([]);
  });

  it('pages newest first with sealed tokens bound to the filters', async function () {
    const hub = phone('+4915112378841');
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      s.clock.advance(1000);
      made.push((await link(hub, email(`page-${i}@example.org`))).name);
    }
    const first = await call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: hub, includeUnlinked: false, pageSize: 2, pageToken: '' });
    expect(first.links.map((l) => l.name)).to.deep.equal([made[2], made[1]]);
    const second = await call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: hub, includeUnlinked: false, pageSize: 2, pageToken: first.nextPageToken });
    expect(second.links.map((l) => l.name)).to.deep.equal([made[0]]);
    expect(second.nextPageToken).to.equal('');
    const other = await expectGrpcError(call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: hub, includeUnlinked: true, pageSize: 2, pageToken: first.nextPageToken }), status.INVALID_ARGUMENT);
    expect(other.fields).to.deep.equal(['page_token']);
  });

  it('roles and tenants: the DPO links, the auditor lists, others are refused; another tenant looks missing', async function () {
    const p = phone('+4915112378851');
    const e = email('roles@example.org');
    const made = await link(p, e);
    const auditor = identityAs(tokens.auditor);
    const sender = identityAs(tokens.sender);
    const foreign = identityAs(tokens.foreignDpo);
    expect((await list(p, false, auditor)).map((l) => l.name)).to.deep.equal([made.name]);
    for (const [client, name] of [
      [auditor, 'auditor'],
      [sender, 'sender'],
    ] as const) {
      expect((await expectGrpcError(link(p, email(`${name}@example.org`), {}, client), status.PERMISSION_DENIED)).reason, name).to.equal('ROLE_NOT_ALLOWED');
      expect((await expectGrpcError(unlink(made.name, 'x', client), status.PERMISSION_DENIED)).reason, name).to.equal('ROLE_NOT_ALLOWED');
    }
    expect((await expectGrpcError(list(p, false, sender), status.PERMISSION_DENIED)).reason).to.equal('ROLE_NOT_ALLOWED');
    // A DPO of another tenant: this tenant looks missing; the link's name under their tenant names nothing.
    expect((await expectGrpcError(link(p, email('foreign@example.org'), {}, foreign), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
    expect((await expectGrpcError(unlink(made.name, 'x', foreign), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
    expect((await expectGrpcError(list(p, false, foreign), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
    const swapped = made.name.replace(`tenants/${T}/`, `tenants/${OTHER}/`);
    expect((await expectGrpcError(unlink(swapped, 'x', foreign), status.NOT_FOUND)).reason).to.equal('IDENTITY_LINK_NOT_FOUND');
    const otherList = await call(foreign, foreign.listIdentityLinks, { parent: `tenants/${OTHER}`, subjectIdentifier: p, includeUnlinked: true, pageSize: 0, pageToken: '' });
    expect(otherList.links).to.deep.equal([]);
    expect((await list(p)).map((l) => l.unlinkTime)).to.deep.equal([undefined]);
  });

  it('an erasure deletes the person\'s links in its transaction; an erased identifier cannot be linked; the audit log still verifies', async function () {
    const p = phone('+4915112378861');
    const e = email('erased-link@example.org');
    const c = { kind: { $case: 'customerId' as const, value: 'CUST-ERASE-1' }, defaultRegion: '' };
    await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: p, purpose: `tenants/${T}/purposes/newsletter` }));
    const pe = await link(p, e);
    const pc = await link(c, p);
    await unlink(pc.name, 'closed before the erasure');
    const [P, E] = subjectIds(pe);
    expect(await linked([E])).to.deep.equal([{ subjectId: P, viaLink: pe.name, from: E }]);

    const erasure = await createRequest(RequestKind.REQUEST_KIND_ERASURE, p);
    await verify(erasure.name);
    const done = await call(rights, rights.eraseSubject, { name: erasure.name });
    const receipt = JSON.parse(Buffer.from(done.erasureReceipt.split('.')[1], 'base64url').toString('utf8')) as { counts: Record<string, number> };
    // The request by the phone number reaches the linked e-mail address's person too (both erased);
    // the open and the closed link went with the phone's person, nothing was left for the other.
    expect(receipt.counts, 'the open and the closed link went with the person').to.deep.equal({ identifiers: 2, eventsRetained: 1, links: 2, signUps: 0 });
    expect(done.request!.identifiers.map((i) => [i.kind, i.viaLink, i.outcome])).to.deep.equal([
      ['PHONE', '', 'erased: subject key destroyed'],
      ['EMAIL', pe.name, 'erased: subject key destroyed'],
    ]);

    expect(await list(e, true), 'nothing left for the e-mail address').to.deep.equal([]);
    expect(await list(c, true)).to.deep.equal([]);
    const all = await call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: undefined, includeUnlinked: true, pageSize: 500, pageToken: '' });
    expect(all.links.filter((l) => l.subjects.includes(`tenants/${T}/subjects/${P}`))).to.deep.equal([]);
    expect(await linked([E])).to.deep.equal([]);
    expect((await expectGrpcError(unlink(pe.name), status.NOT_FOUND)).reason).to.equal('IDENTITY_LINK_NOT_FOUND');

    // The erased phone number is a tombstone: linking it again is refused, in either place.
    for (const [a, b] of [
      [p, email('after-erasure@example.org')],
      [email('after-erasure@example.org'), p],
    ]) {
      const refused = await expectGrpcError(link(a, b), status.FAILED_PRECONDITION);
      expect(refused.reason).to.equal('SUBJECT_ERASED');
      expect(refused.message).to.not.include('4915112378861');
    }
    // Erasing the other end (never linked again) leaves nothing either.
    expect(await list(email('after-erasure@example.org'), true)).to.deep.equal([]);

    // Every entry still hashes into the log's root; the link entries name opaque ids only.
    const entries = await s.app.services.audit.entries(T, 0, 100_000);
    const size = entries.length;
    expect(rootFromLeafHashes(entries.map((x) => leafHash(Buffer.from(x.entryJson, 'utf8')))).equals(await s.app.services.audit.root(T, size))).to.equal(true);
    for (const x of entries) expect(x.leafHash).to.equal(leafHash(Buffer.from(x.entryJson, 'utf8')).toString('hex'));
    expect(entries.filter((x) => JSON.parse(x.entryJson).ref === pe.name).map((x) => JSON.parse(x.entryJson).type)).to.deep.equal(['IDENTITIES_LINKED', 'IDENTITIES_LINKED']);
  });

  it('a link undone before the request is carried out no longer reaches anyone: not erased, not exported, and neither is anyone reached only through it', async function () {
    const a = phone('+4915112378891');
    const b = email('undone-link-b@example.org');
    const c = email('undone-link-c@example.org');
    for (const who of [a, b, c]) await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: who, purpose: `tenants/${T}/purposes/newsletter` }));
    const ab = await link(a, b);
    const bc = await link(b, c);
    const [A, B] = subjectIds(ab);
    const C = subjectIds(bc).find((id) => id !== B)!;

    // Received while A, B and C were linked: the request reaches all three ...
    const access = await createRequest(RequestKind.REQUEST_KIND_ACCESS, a);
    const erasure = await createRequest(RequestKind.REQUEST_KIND_ERASURE, a);
    expect(erasure.identifiers.map((i) => [i.viaLink, i.subject])).to.deep.equal([
      ['', `tenants/${T}/subjects/${A}`],
      [ab.name, `tenants/${T}/subjects/${B}`],
      [bc.name, `tenants/${T}/subjects/${C}`],
    ]);
    // ... then the DPO finds that A and B are two different people.
    await unlink(ab.name, 'two different people');
    await verify(access.name);
    await verify(erasure.name);

    const parts = await new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = rights.exportSubjectData({ name: access.name });
      stream.on('data', (m: { part?: { $case: string; value: unknown } }) => {
        if (m.part?.$case === 'packageChunk') chunks.push(m.part.value as Buffer);
      });
      stream.on('error', reject);
      stream.on('end', () => resolve((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { parts: Array<Record<string, unknown>> }).parts));
    });
    const unreached = 'not reached: the identity link was undone (UnlinkIdentifiers)';
    expect(parts.map((p) => [p.viaLink, p.outcome])).to.deep.equal([
      [null, 'exported'],
      [ab.name, unreached],
      [bc.name, unreached],
    ]);

    const done = await call(rights, rights.eraseSubject, { name: erasure.name });
    expect(done.request!.identifiers.map((i) => [i.viaLink, i.subject, i.outcome])).to.deep.equal([
      ['', `tenants/${T}/subjects/${A}`, 'erased: subject key destroyed'],
      [ab.name, '', unreached],
      [bc.name, '', unreached],
    ]);
    expect(await check(a)).to.equal('VERDICT_DENY DECISION_REASON_SUBJECT_ERASED');
    expect(await check(b), 'the other person keeps their consent').to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(await check(c)).to.equal('VERDICT_ALLOW DECISION_REASON_OPTED_IN');
    expect(await linked([B]), 'their own link is untouched').to.deep.equal([{ subjectId: C, viaLink: bc.name, from: B }]);
  });

  it('concurrent links of one pair make one link; a link racing an erasure leaves no link to the erased person', async function () {
    const p = phone('+4915112378881');
    const e = email('racing@example.org');
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => link(p, e)));
    const made = outcomes.filter((o): o is PromiseFulfilledResult<IdentityLink> => o.status === 'fulfilled').map((o) => o.value);
    expect(made, 'one link').to.have.length(1);
    for (const o of outcomes.filter((x): x is PromiseRejectedResult => x.status === 'rejected')) {
      expect([o.reason.code, String(o.reason.details)]).to.deep.equal([status.FAILED_PRECONDITION, `the open link ${made[0].name} joins the two already`]);
    }
    expect((await list(e)).map((l) => l.name)).to.deep.equal([made[0].name]);

    for (let round = 0; round < 3; round++) {
      const victim = phone(`+49151123789${round}0`);
      const other = email(`race-${round}@example.org`);
      await call(consent, consent.recordConsent, consentRequest(T, { subjectIdentifier: victim }));
      const erasure = await createRequest(RequestKind.REQUEST_KIND_ERASURE, victim);
      await verify(erasure.name);
      const [linked, erased] = await Promise.allSettled([link(other, victim), call(rights, rights.eraseSubject, { name: erasure.name })]);
      expect(erased.status, 'the erasure is not stopped by a link').to.equal('fulfilled');
      if (linked.status === 'rejected') expect((linked.reason as { code: number }).code).to.equal(status.FAILED_PRECONDITION);
      const victimSubject = (await call(rights, rights.getRequest, { name: erasure.name })).request!.subject;
      const all = await call(identity, identity.listIdentityLinks, { parent: `tenants/${T}`, subjectIdentifier: undefined, includeUnlinked: true, pageSize: 500, pageToken: '' });
      expect(all.links.filter((l) => l.subjects.includes(victimSubject)), `round ${round}: no link names the erased person`).to.deep.equal([]);
      expect(await list(other, true)).to.deep.equal([]);
    }
  });

  it(`refuses a link that would join more than ${MAX_LINKED_SUBJECTS} subjects`, async function () {
    this.timeout(120_000);
    const hub = { kind: { $case: 'customerId' as const, value: 'CUST-HUB' }, defaultRegion: '' };
    for (let i = 0; i < MAX_LINKED_SUBJECTS; i++) await link(hub, email(`many-${i}@example.org`));
    const refused = await expectGrpcError(link(email('one-too-many@example.org'), hub), status.FAILED_PRECONDITION);
    expect(refused.reason).to.equal('TOO_MANY_LINKS');
    const members = await list(hub);
    expect(members).to.have.length(50);
    const hubId = parseSubjectName(members[0].subjects[0])!.subjectId;
    expect(await linked([hubId])).to.have.length(MAX_LINKED_SUBJECTS);
  });

  it('writes no identifier to a log line, an error or an audit entry', function () {
    const logs = s.logs();
    const audit = s.app.services.audit.entries(T, 0, 100_000);
    return audit.then((entries) => {
      const text = `${logs}\n${entries.map((e) => e.entryJson).join('\n')}`;
      for (const planted of [PLANTED.phone, PLANTED.phone.slice(1), PLANTED.email, '+4915112378811', 'linked-b@example.org', 'CUST-LINK-C', 'CUST-REQ-1', 'roles@example.org', 'erased-link@example.org', 'not-an-address']) {
        expect(text, planted).to.not.include(planted);
      }
      expect(logs, 'the calls were logged').to.include('LinkIdentifiers');
    });
  });
});
