import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { AuditServiceClient } from '../../src/gen/consent/v1/audit';
import { CollectionMethod, ConsentDecision, ConsentEventKind, DecisionReason, ListConsentEventsRequest, RecordInboundMessageRequest, Verdict } from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { call, startTestServer, T0, TestServer } from '../support/test-server';

const WA = Channel.CHANNEL_WHATSAPP;
const ANY = Channel.CHANNEL_ANY;
const OPT_IN = ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN;
const PENDING = ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING;
const OPT_OUT = ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT;
const TENANT = 'ties';

/**
 * Events of one person with the same event time (the same millisecond: under load, with the
 * server's clock, writers tie easily). The live check (the state tables and the decision cache),
 * ExplainDecision and a check at a past moment (a replay of the event history) must name the same
 * deciding event: docs/consent-rules.md, "Equal event times". Found by the crash test
 * (crash-writes.test.ts), whose final comparison of live and replayed answers failed once.
 */
forEachDatabase('equal event times: live state and replay decide alike', (db) => {
  let server: TestServer;
  let audit: AuditServiceClient;
  let people = 0;
  before(async function () {
    server = await startTestServer(db());
    audit = new AuditServiceClient(server.address, credentials.createInsecure());
    await seedTenant(server, TENANT);
  });
  after(async () => {
    audit?.close();
    await server?.stop();
  });
  beforeEach(() => server.clock.set(T0));

  const nextPerson = () => phone(`+4915177${String(++people).padStart(6, '0')}`);

  async function consent(person: SubjectIdentifier, kind: ConsentEventKind, purpose: string, channel: Channel, requestId?: string): Promise<string> {
    const optIn = kind !== OPT_OUT;
    const res = await call(
      server.consent,
      server.consent.recordConsent,
      consentRequest(TENANT, {
        subjectIdentifier: person,
        purpose: `tenants/${TENANT}/purposes/${purpose}`,
        channel,
        kind,
        method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
        notice: optIn ? `tenants/${TENANT}/purposes/${purpose}/notices/1` : '',
        ...(requestId ? { requestId } : {}),
      }),
    );
    return res.event!.name;
  }

  async function stop(person: SubjectIdentifier, channel: Channel): Promise<string> {
    const res = await call(
      server.consent,
      server.consent.recordInboundMessage,
      RecordInboundMessageRequest.fromPartial({ parent: `tenants/${TENANT}`, subjectIdentifier: person, channel, text: 'STOP', messageId: `wamid.${Math.random()}`, requestId: `stop-${Math.random()}` }),
    );
    return res.keywordEvent!.name;
  }

  /**
   * The answers about newsletter on WhatsApp, a minute after the events: live (CheckConsent,
   * twice, so the second comes from the decision cache; CheckConsentBatch; ExplainDecision) and
   * replayed (CheckConsent and ExplainDecision at a moment after the events); all must be equal.
   */
  async function answersAgree(person: SubjectIdentifier): Promise<ConsentDecision> {
    server.clock.set(T0 + 60_000);
    const live = query(TENANT, { subjectIdentifier: person, channel: WA });
    const past = query(TENANT, { subjectIdentifier: person, channel: WA, at: new Date(T0 + 1_000) });
    const answers: Array<[string, ConsentDecision]> = [];
    for (const [label, q] of [
      ['live', live],
      ['replayed', past],
    ] as const) {
      answers.push([`${label} CheckConsent`, (await call(server.consent, server.consent.checkConsent, { parent: `tenants/${TENANT}`, query: q })).decision!]);
      answers.push([`${label} CheckConsent again`, (await call(server.consent, server.consent.checkConsent, { parent: `tenants/${TENANT}`, query: q })).decision!]);
      answers.push([`${label} CheckConsentBatch`, (await call(server.consent, server.consent.checkConsentBatch, { parent: `tenants/${TENANT}`, queries: [q] })).results[0].decision!]);
      answers.push([`${label} ExplainDecision`, (await call(audit, audit.explainDecision, { parent: `tenants/${TENANT}`, query: q })).decision!]);
    }
    const [, first] = answers[0];
    for (const [label, answer] of answers) expect(answer, label).to.deep.equal(first);
    return first;
  }

  /** The event the documented order puts last of `names` (all with the same event time, of different scopes): the greatest id. */
  const greatestId = (...names: string[]) => names.reduce((a, b) => (id(b) > id(a) ? b : a));
  const id = (name: string) => name.slice(name.lastIndexOf('/') + 1);

  it('two opt-ins of one scope, one after the other: the later recorded decides', async () => {
    const person = nextPerson();
    await consent(person, OPT_IN, 'newsletter', WA);
    const second = await consent(person, OPT_IN, 'newsletter', WA);
    const decision = await answersAgree(person);
    expect(decision.decidingEvent).to.equal(second);
  });

  it('opt-ins of one scope in one commit batch, and a retry of the first: the last recorded decides', async () => {
    const person = nextPerson();
    const requestIds = [0, 1, 2, 3, 4, 5].map((i) => `batch-${people}-${i}`);
    const before = { ...server.app.services.writer.stats };
    await Promise.all(requestIds.map((r) => consent(person, OPT_IN, 'newsletter', WA, r)));
    expect(server.app.services.writer.stats.batches - before.batches, 'some of them committed together').to.be.below(requestIds.length);
    // A retry of a recorded write (the first call's answer; folded once, at its first time) at a later time.
    server.clock.set(T0 + 500);
    await consent(person, OPT_IN, 'newsletter', WA, requestIds[0]);
    const listed = await call(server.consent, server.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${TENANT}`, subjectIdentifier: person, pageSize: 100 }));
    const names = listed.consentEvents.map((e) => e.name); // in the order they were recorded
    expect(names).to.have.length(6);
    const decision = await answersAgree(person);
    expect(decision.decidingEvent).to.equal(names[names.length - 1]);
  });

  it('opt-outs of a purpose on the channel and on CHANNEL_ANY at the same time', async () => {
    const person = nextPerson();
    await consent(person, OPT_IN, 'newsletter', WA);
    const onChannel = await consent(person, OPT_OUT, 'newsletter', WA);
    const onAny = await consent(person, OPT_OUT, 'newsletter', ANY);
    const decision = await answersAgree(person);
    expect(DecisionReason[decision.reason]).to.equal('DECISION_REASON_OPTED_OUT');
    expect(decision.decidingEvent).to.equal(greatestId(onChannel, onAny));
  });

  it('STOP on the channel and an all-purpose opt-out on CHANNEL_ANY at the same time', async () => {
    const person = nextPerson();
    await consent(person, OPT_IN, 'newsletter', WA);
    const keyword = await stop(person, WA);
    const onAny = await consent(person, OPT_OUT, '-', ANY);
    const decision = await answersAgree(person);
    expect(DecisionReason[decision.reason]).to.equal('DECISION_REASON_OPTED_OUT');
    expect(decision.decidingEvent).to.equal(greatestId(keyword, onAny));
  });

  it('an opt-in on the channel and a pending one on CHANNEL_ANY at the same time: even the verdict depended on the path', async () => {
    const person = nextPerson();
    const confirmed = await consent(person, OPT_IN, 'newsletter', WA);
    const pending = await consent(person, PENDING, 'newsletter', ANY);
    const decision = await answersAgree(person);
    const decider = greatestId(confirmed, pending);
    expect(decision.decidingEvent).to.equal(decider);
    expect(Verdict[decision.verdict]).to.equal(decider === confirmed ? 'VERDICT_ALLOW' : 'VERDICT_DENY');
  });
});
