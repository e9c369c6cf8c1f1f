import { expect } from 'chai';
import { Channel, PurposeCategory, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import {
  CollectionMethod,
  ConsentEventKind,
  DecisionReason,
  RecordInboundMessageRequest,
  Verdict,
} from '../../src/gen/consent/v1/consent';
import { AuditServiceClient } from '../../src/gen/consent/v1/audit';
import { KeyServiceClient } from '../../src/gen/consent/v1/key';
import { verifyExplanation } from '../../src/cli/explain-verify';
import { SendChannel } from '../../src/domain/model';
import { credentials } from '@grpc/grpc-js';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { call, startTestServer, T0, TestServer } from '../support/test-server';

const S = 1000;
const M = 60 * S;
const H = 60 * M;

type Step =
  | { at: number; optIn: string; channel?: Channel; expireAfter?: number; kind?: ConsentEventKind; eventAt?: number }
  | { at: number; optOut: string; channel?: Channel; eventAt?: number }
  | { at: number; inbound: string; channel?: Channel };

interface RuleCase {
  name: string;
  steps: Step[];
  check: { at: number; purpose?: string; category?: PurposeCategory; channel?: Channel; asOf?: number };
  expect: { verdict: 'ALLOW' | 'DENY'; reason: keyof typeof DecisionReason; validUntil?: number; decidedBy?: number };
  settings?: { serviceWindowHours: number };
}

const WA = Channel.CHANNEL_WHATSAPP;
const SMS = Channel.CHANNEL_SMS;
const ANY = Channel.CHANNEL_ANY;
const PENDING = ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_PENDING;
const CONFIRMED = ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN_CONFIRMED;

/**
 * The rules of domain.md, case by case, through the real server with a clock the test moves.
 * Times are offsets from T0; every case uses its own person.
 */
const CASES: RuleCase[] = [
  { name: 'unknown person is denied, not an error', steps: [], check: { at: 0 }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_UNKNOWN_SUBJECT' } },
  { name: 'confirmed opt-in allows marketing', steps: [{ at: 0, optIn: 'newsletter' }], check: { at: M }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'opt-out after opt-in denies', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, optOut: 'newsletter' }], check: { at: 2 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 1 } },
  { name: 'opt-in after opt-out allows again', steps: [{ at: 0, optOut: 'newsletter' }, { at: M, optIn: 'newsletter' }], check: { at: 2 * M }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 1 } },
  { name: 'opt-out wins a tie with an opt-in', steps: [{ at: 0, optIn: 'newsletter' }, { at: 0, optOut: 'newsletter' }], check: { at: M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 1 } },
  { name: 'opt-out wins a tie even when recorded first', steps: [{ at: 0, optOut: 'newsletter' }, { at: M, optIn: 'newsletter', eventAt: 0 }], check: { at: 2 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 0 } },
  { name: 'opt-out on CHANNEL_ANY covers WhatsApp', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, optOut: 'newsletter', channel: ANY }], check: { at: 2 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 1 } },
  { name: 'opt-in on CHANNEL_ANY covers SMS', steps: [{ at: 0, optIn: 'newsletter', channel: ANY }], check: { at: M, channel: SMS }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'opt-in on WhatsApp does not cover SMS', steps: [{ at: 0, optIn: 'newsletter' }], check: { at: M, channel: SMS }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_NO_CONSENT' } },
  { name: 'opt-out of all purposes covers the purpose', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, optOut: '-' }], check: { at: 2 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 1 } },
  { name: 'opt-out on SMS leaves WhatsApp allowed', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, optOut: 'newsletter', channel: SMS }], check: { at: 2 * M }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'keyword STOP denies', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, inbound: 'STOP' }], check: { at: 2 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT' } },
  { name: 'keyword is trimmed and case-insensitive', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, inbound: '  abmelden \n' }], check: { at: 2 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT' } },
  { name: 'a sentence containing STOP is no keyword', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, inbound: 'please do not stop' }], check: { at: 2 * M }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'START after STOP restores the earlier opt-in', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, inbound: 'STOP' }, { at: 2 * M, inbound: 'start' }], check: { at: 3 * M }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'START does not lift a purpose-specific withdrawal', steps: [{ at: 0, optIn: 'newsletter' }, { at: M, optOut: 'newsletter' }, { at: 2 * M, inbound: 'START' }], check: { at: 3 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 1 } },
  { name: 'START on SMS does not lift a stop for every channel', steps: [{ at: 0, optIn: 'newsletter', channel: ANY }, { at: M, optOut: '-', channel: ANY }, { at: 2 * M, inbound: 'START', channel: SMS }], check: { at: 3 * M, channel: SMS }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 1 } },
  { name: 'START lifts only the STOP of its own channel', steps: [{ at: 0, optIn: 'newsletter', channel: ANY }, { at: M, inbound: 'STOP', channel: SMS }, { at: 2 * M, inbound: 'STOP' }, { at: 3 * M, inbound: 'START', channel: SMS }], check: { at: 4 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 2 } },
  { name: 'a new opt-in for the purpose lifts a STOP', steps: [{ at: 0, inbound: 'STOP' }, { at: M, optIn: 'newsletter' }], check: { at: 2 * M }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 1 } },
  { name: 'a pending double opt-in does not undo a withdrawal', steps: [{ at: 0, optOut: 'orders' }, { at: M, inbound: 'hi' }, { at: 2 * M, optIn: 'orders', kind: PENDING }], check: { at: 3 * M, purpose: 'orders' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 0 } },
  { name: 'an expired opt-in does not undo a withdrawal', steps: [{ at: 0, optOut: 'orders' }, { at: M, optIn: 'orders', expireAfter: H }, { at: 2 * H, inbound: 'hi' }], check: { at: 2 * H + M, purpose: 'orders' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 0 } },
  { name: 'START alone is no consent to a purpose', steps: [{ at: 0, inbound: 'START' }], check: { at: M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_NO_CONSENT' } },
  { name: 'pending double opt-in denies', steps: [{ at: 0, optIn: 'newsletter', kind: PENDING }], check: { at: M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_CONFIRMATION_PENDING', decidedBy: 0 } },
  { name: 'confirmed double opt-in allows', steps: [{ at: 0, optIn: 'newsletter', kind: PENDING }, { at: M, optIn: 'newsletter', kind: CONFIRMED }], check: { at: 2 * M }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 1 } },
  { name: 'opt-in valid one second before expiry', steps: [{ at: 0, optIn: 'newsletter', expireAfter: H }], check: { at: H - S }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', validUntil: H, decidedBy: 0 } },
  { name: 'opt-in expired at its expire_time', steps: [{ at: 0, optIn: 'newsletter', expireAfter: H }], check: { at: H }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_CONSENT_EXPIRED', decidedBy: 0 } },
  { name: 'service window open at 23:59:59', steps: [{ at: 0, inbound: 'hello' }], check: { at: 24 * H - S, purpose: 'support' }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_SERVICE_WINDOW_OPEN', validUntil: 24 * H, decidedBy: 0 } },
  { name: 'service window closed at exactly 24:00:00', steps: [{ at: 0, inbound: 'hello' }], check: { at: 24 * H, purpose: 'support' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_SERVICE_WINDOW_CLOSED', decidedBy: 0 } },
  { name: 'a new inbound message restarts the window', steps: [{ at: 0, inbound: 'hello' }, { at: 12 * H, inbound: 'again' }], check: { at: 24 * H + S, purpose: 'support' }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_SERVICE_WINDOW_OPEN', validUntil: 36 * H, decidedBy: 1 } },
  { name: 'service message without any inbound message', steps: [{ at: 0, optIn: 'newsletter' }], check: { at: M, purpose: 'support' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_SERVICE_WINDOW_CLOSED' } },
  { name: 'window on SMS does not open WhatsApp', steps: [{ at: 0, inbound: 'hello', channel: SMS }], check: { at: M, purpose: 'support' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_SERVICE_WINDOW_CLOSED' } },
  { name: 'STOP inside the window denies service messages too', steps: [{ at: 0, inbound: 'hello' }, { at: M, inbound: 'STOP' }], check: { at: 2 * M, purpose: 'support' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT' } },
  { name: 'utility inside the window needs no opt-in', steps: [{ at: 0, inbound: 'where is my order?' }], check: { at: H, purpose: 'orders' }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_SERVICE_WINDOW_OPEN', validUntil: 24 * H } },
  { name: 'utility outside the window with an opt-in', steps: [{ at: 0, optIn: 'orders' }], check: { at: 30 * H, purpose: 'orders' }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'utility without window or opt-in', steps: [{ at: 0, inbound: 'hi' }], check: { at: 25 * H, purpose: 'orders' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_NO_CONSENT' } },
  { name: 'authentication needs an opt-in, a window is not enough', steps: [{ at: 0, inbound: 'send code' }], check: { at: M, purpose: 'otp' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_NO_CONSENT' } },
  { name: 'marketing inside a window still needs an opt-in', steps: [{ at: 0, inbound: 'hello' }], check: { at: M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_NO_CONSENT' } },
  { name: 'category-only SERVICE check inside the window', steps: [{ at: 0, inbound: 'hello' }], check: { at: M, purpose: '', category: PurposeCategory.PURPOSE_CATEGORY_SERVICE }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_SERVICE_WINDOW_OPEN' } },
  { name: 'tenant window length applies', settings: { serviceWindowHours: 1 }, steps: [{ at: 0, inbound: 'hello' }], check: { at: H, purpose: 'support' }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_SERVICE_WINDOW_CLOSED' } },
  { name: 'check at a past time ignores later events', steps: [{ at: 0, optIn: 'newsletter' }, { at: 2 * H, optOut: 'newsletter' }], check: { at: 3 * H, asOf: H }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'check at a past time ignores a backdated opt-out recorded later', steps: [{ at: 0, optIn: 'newsletter' }, { at: 2 * H, optOut: 'newsletter', eventAt: 30 * M }], check: { at: 3 * H, asOf: H }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_OPTED_IN', decidedBy: 0 } },
  { name: 'the live check sees the backdated opt-out', steps: [{ at: 0, optIn: 'newsletter' }, { at: 2 * H, optOut: 'newsletter', eventAt: 30 * M }], check: { at: 3 * H }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_OPTED_OUT', decidedBy: 1 } },
  { name: 'a check before the person was recorded: unknown', steps: [{ at: H, optIn: 'newsletter' }], check: { at: 2 * H, asOf: 30 * M }, expect: { verdict: 'DENY', reason: 'DECISION_REASON_UNKNOWN_SUBJECT' } },
  { name: 'a past check sees the window as it was', steps: [{ at: 0, inbound: 'hello' }], check: { at: 30 * H, asOf: 23 * H, purpose: 'support' }, expect: { verdict: 'ALLOW', reason: 'DECISION_REASON_SERVICE_WINDOW_OPEN', validUntil: 24 * H, decidedBy: 0 } },
];

forEachDatabase('consent rules', (db) => {
  let server: TestServer;
  let audit: AuditServiceClient;
  let keys: KeyServiceClient;
  before(async function () {
    server = await startTestServer(db());
    audit = new AuditServiceClient(server.address, credentials.createInsecure());
    keys = new KeyServiceClient(server.address, credentials.createInsecure());
    await seedTenant(server, 'rules');
  });
  after(async () => {
    audit?.close();
    keys?.close();
    await server?.stop();
  });

  CASES.forEach((c, index) => {
    it(c.name, async function () {
      const tenantId = c.settings ? `rules-${index}` : 'rules';
      if (c.settings) {
        await seedTenant(server, tenantId);
        await call(server.tenants, server.tenants.updateTenantSettings, {
          settings: { name: `tenants/${tenantId}/settings`, serviceWindow: { seconds: c.settings.serviceWindowHours * 3600, nanos: 0 }, optOutKeywords: [], optInKeywords: [], purposeConsentValidity: {}, defaultConsentValidityMonths: 0, purposeConsentValidityMonths: {} },
          updateMask: ['service_window'],
        });
      }
      const person = phone(`+49151${String(10_000_000 + index).padStart(8, '0')}`);
      const eventIds: string[] = [];
      for (const step of c.steps) {
        server.clock.set(T0 + step.at);
        eventIds.push(await perform(server, tenantId, person, step));
      }
      server.clock.set(T0 + c.check.at);
      const question = (asOf?: number) =>
        query(tenantId, {
          subjectIdentifier: person,
          purpose: c.check.purpose === '' ? '' : `tenants/${tenantId}/purposes/${c.check.purpose ?? 'newsletter'}`,
          category: c.check.category ?? PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED,
          channel: c.check.channel ?? WA,
          at: asOf === undefined ? undefined : new Date(T0 + asOf),
        });
      const { decision } = await call(server.consent, server.consent.checkConsent, { parent: `tenants/${tenantId}`, query: question(c.check.asOf) });

      // ExplainDecision gives CheckConsent's answer, now and at every moment the history changed
      // (just before and at each step), and an independent replay of its proven entries agrees.
      const jwks = (await call(keys, keys.getPublicKeys, { name: `tenants/${tenantId}` })).jwks;
      const moments = [c.check.asOf, ...c.steps.flatMap((step) => [step.at - 1, step.at])];
      for (const asOf of moments) {
        const checked = await call(server.consent, server.consent.checkConsent, { parent: `tenants/${tenantId}`, query: question(asOf) });
        const explained = await call(audit, audit.explainDecision, { parent: `tenants/${tenantId}`, query: question(asOf) });
        expect(explained.decision, `explained at ${asOf}`).to.deep.equal(checked.decision);
        const verified = await verifyExplanation(explained, jwks, {
          tenant: tenantId,
          purposeId: c.check.purpose === '' ? null : (c.check.purpose ?? 'newsletter'),
          channel: Channel[c.check.channel ?? WA].replace('CHANNEL_', '') as SendChannel,
        });
        expect(`DECISION_REASON_${verified.reason}`).to.equal(DecisionReason[checked.decision!.reason]);
      }
      expect(Verdict[decision!.verdict]).to.equal(`VERDICT_${c.expect.verdict}`);
      expect(DecisionReason[decision!.reason]).to.equal(c.expect.reason);
      if (c.expect.validUntil !== undefined) expect(decision!.validUntil?.getTime()).to.equal(T0 + c.expect.validUntil);
      if (c.expect.decidedBy !== undefined) expect(decision!.decidingEvent).to.equal(eventIds[c.expect.decidedBy]);
      if (c.expect.reason === 'DECISION_REASON_UNKNOWN_SUBJECT' || c.expect.reason === 'DECISION_REASON_NO_CONSENT') {
        expect(decision!.decidingEvent).to.equal('');
      }
    });
  });
});

/** Records one step; returns the name of the event that decides for it (the keyword event for keywords). */
async function perform(server: TestServer, tenantId: string, person: SubjectIdentifier, step: Step): Promise<string> {
  const channel = step.channel ?? WA;
  if ('inbound' in step) {
    const res = await call(
      server.consent,
      server.consent.recordInboundMessage,
      RecordInboundMessageRequest.fromPartial({
        parent: `tenants/${tenantId}`,
        subjectIdentifier: person,
        channel,
        text: step.inbound,
        messageId: `wamid.${step.at}`,
        requestId: `inbound-${Math.random().toString(36).slice(2)}`,
      }),
    );
    return (res.keywordEvent ?? res.inboundEvent)!.name;
  }
  const optIn = 'optIn' in step;
  const purpose = optIn ? step.optIn : step.optOut;
  const kind = optIn ? (step.kind ?? ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN) : ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT;
  const now = server.clock.now();
  const res = await call(
    server.consent,
    server.consent.recordConsent,
    consentRequest(tenantId, {
      subjectIdentifier: person,
      purpose: `tenants/${tenantId}/purposes/${purpose}`,
      channel,
      kind,
      method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
      notice: kind === ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN || kind === PENDING ? `tenants/${tenantId}/purposes/${purpose}/notices/1` : '',
      eventTime: step.eventAt === undefined ? undefined : new Date(T0 + step.eventAt),
      expireTime: optIn && step.expireAfter ? new Date(now + step.expireAfter) : undefined,
    }),
  );
  return res.event!.name;
}
