import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, PurposeCategory } from '../../src/gen/consent/v1/common';
import { DecisionReason, RecordInboundMessageRequest } from '../../src/gen/consent/v1/consent';
import { CreateRequestRequest, ReceivedVia, RequestKind } from '../../src/gen/consent/v1/subject_rights';
import { TenantSettings } from '../../src/gen/consent/v1/tenant';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { runConsentctl } from '../support/processes';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

const HOUR = 3600_000;

/**
 * Validity in calendar months, the due day of a request as a date, and settings as they were at
 * the asked time: an as-of check and ExplainDecision apply the service window in force then, and
 * an explanation says how many erasures since may have removed evidence.
 */
forEachDatabase('settings in time: validity in months, due dates, settings in force at a past time', (db) => {
  let s: TestServer;
  const T = 'intime';
  const settingsName = `tenants/${T}/settings`;

  before(async function () {
    s = await startTestServer(db());
    await seedTenant(s, T);
  });
  after(async () => s?.stop());

  const update = (settings: Partial<TenantSettings>, updateMask: string[] = []) =>
    call(s.tenants, s.tenants.updateTenantSettings, { settings: TenantSettings.fromPartial({ name: settingsName, ...settings }), updateMask });

  it('a validity in calendar months ends on the same day, or the last day of a shorter month', async function () {
    const updated = await update({ purposeConsentValidityMonths: { newsletter: 1 }, defaultConsentValidityMonths: 24 });
    expect(updated.consistencyToken, "the update's consistency token").to.match(/^ct2\./);
    const cases: Array<[string, number, number]> = [
      // event time, expected expiry: Jan 31 + 1 month is the end of February, at the same time of day.
      ['leap year', Date.UTC(2028, 0, 31, 10, 30), Date.UTC(2028, 1, 29, 10, 30)],
      ['common year', Date.UTC(2027, 0, 31, 10, 30), Date.UTC(2027, 1, 28, 10, 30)],
      ['same date exists', Date.UTC(2027, 2, 15, 8, 0), Date.UTC(2027, 3, 15, 8, 0)],
    ];
    for (const [name, eventTime, expected] of cases) {
      s.clock.set(eventTime + 60_000);
      const { event } = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915170001001'), eventTime: new Date(eventTime) }));
      expect(event!.expireTime!.getTime(), name).to.equal(expected);
    }
    // The default in months applies to a purpose without its own validity.
    const { event } = await call(
      s.consent,
      s.consent.recordConsent,
      consentRequest(T, { subjectIdentifier: phone('+4915170001002'), purpose: `tenants/${T}/purposes/otp`, notice: `tenants/${T}/purposes/otp/notices/1`, eventTime: new Date(Date.UTC(2027, 2, 15, 8, 0)) }),
    );
    expect(event!.expireTime!.getTime()).to.equal(Date.UTC(2029, 2, 15, 8, 0));
    const { tenant } = await call(s.tenants, s.tenants.getTenant, { name: `tenants/${T}` });
    expect(tenant!.settings!.purposeConsentValidityMonths).to.deep.equal({ newsletter: 1 });
    expect(tenant!.settings!.defaultConsentValidityMonths).to.equal(24);
    await update({ purposeConsentValidityMonths: {}, defaultConsentValidityMonths: 0 }, ['purpose_consent_validity_months', 'default_consent_validity_months']);
  });

  it('a validity given both ways, out of range, or for a purpose that does not exist is refused and changes nothing', async function () {
    const before = (await call(s.tenants, s.tenants.getTenant, { name: `tenants/${T}` })).tenant!.settings;
    const both = await expectGrpcError(
      update({ purposeConsentValidity: { newsletter: { seconds: 86_400, nanos: 0 } }, purposeConsentValidityMonths: { newsletter: 12 } }),
      status.INVALID_ARGUMENT,
    );
    expect(both.reason).to.equal('CONFLICTING_VALIDITY');
    expect(both.fields).to.deep.equal(['settings.purpose_consent_validity_months["newsletter"]']);
    const defaults = await expectGrpcError(update({ defaultConsentValidity: { seconds: 86_400, nanos: 0 }, defaultConsentValidityMonths: 6 }), status.INVALID_ARGUMENT);
    expect(defaults.fields).to.deep.equal(['settings.default_consent_validity_months']);
    const tooLong = await expectGrpcError(update({ purposeConsentValidityMonths: { newsletter: 121 } }), status.INVALID_ARGUMENT);
    expect(tooLong.reason).to.equal('INVALID_VALIDITY');
    const missing = await expectGrpcError(update({ purposeConsentValidityMonths: { newsleter: 12 } }), status.INVALID_ARGUMENT);
    expect(missing.reason).to.equal('PURPOSE_NOT_FOUND');
    expect(missing.message, 'the message itself says what is wrong').to.include('names no purpose of this tenant');
    expect((await call(s.tenants, s.tenants.getTenant, { name: `tenants/${T}` })).tenant!.settings).to.deep.equal(before);
  });

  it('a request carries its due day as a date: the last day of the month period, before due_time', async function () {
    s.clock.set(Date.UTC(2027, 1, 1, 12, 0));
    const { request } = await call(
      s.rights,
      s.rights.createRequest,
      CreateRequestRequest.fromPartial({
        parent: `tenants/${T}`,
        kind: RequestKind.REQUEST_KIND_ACCESS,
        subjectIdentifier: phone('+4915170001003'),
        receivedVia: ReceivedVia.RECEIVED_VIA_LETTER,
        receiveTime: new Date(Date.UTC(2027, 0, 31, 16, 45)),
        requestId: 'due-date-1',
      }),
    );
    expect(request!.dueDate).to.deep.equal({ year: 2027, month: 2, day: 28 });
    expect(request!.dueTime!.toISOString()).to.equal('2027-03-01T00:00:00.000Z');
  });

  it('a check and an explanation for a past time apply the service window in force then', async function () {
    const start = Date.UTC(2027, 5, 1, 9, 0);
    s.clock.set(start);
    await update({ serviceWindow: { seconds: 24 * 3600, nanos: 0 } }, ['service_window']);
    const who = phone('+4915170001004');
    await call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: who, channel: Channel.CHANNEL_WHATSAPP, text: 'hi', messageId: 'w-1', requestId: 'in-time-1' }));
    s.clock.set(start + 2 * HOUR);
    await update({ serviceWindow: { seconds: 3600, nanos: 0 } }, ['service_window']);
    s.clock.set(start + 3 * HOUR);
    const support = (at?: Date) => query(T, { subjectIdentifier: who, purpose: '', category: PurposeCategory.PURPOSE_CATEGORY_SERVICE, at });

    const live = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: support() });
    expect(live.decision!.reason, 'today the window is one hour: closed').to.equal(DecisionReason.DECISION_REASON_SERVICE_WINDOW_CLOSED);
    const past = new Date(start + 90 * 60_000);
    const asOf = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: support(past) });
    expect(asOf.decision!.reason, '90 minutes in, under the 24-hour window then in force: open').to.equal(DecisionReason.DECISION_REASON_SERVICE_WINDOW_OPEN);
    const explained = await call(s.audit, s.audit.explainDecision, { parent: `tenants/${T}`, query: support(past) });
    expect(explained.decision!.reason).to.equal(DecisionReason.DECISION_REASON_SERVICE_WINDOW_OPEN);
    expect(explained.serviceWindow).to.deep.equal({ seconds: 24 * 3600, nanos: 0 });
    expect(explained.erasuresSince).to.equal(0);
  });

  it('an explanation for a time before an erasure says that evidence may be missing', async function () {
    const t = s.clock.now();
    const erased = phone('+4915170001005');
    const { event } = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: erased }));
    s.clock.advance(HOUR);
    await s.app.services.subjectEraser.erase(T, event!.subject.split('/').pop()!);
    s.clock.advance(HOUR);
    const at = new Date(t + 30 * 60_000);
    const before = await call(s.audit, s.audit.explainDecision, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: erased, at }) });
    expect(before.erasuresSince, 'one erasure since the asked time').to.equal(1);
    expect(before.subject, 'the erased identifier leads to no subject').to.equal('');
    expect(before.entries).to.deep.equal([]);
    expect(before.decision!.reason).to.equal(DecisionReason.DECISION_REASON_SUBJECT_ERASED);
    const now = await call(s.audit, s.audit.explainDecision, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: phone('+4915170001004') }) });
    expect(now.erasuresSince, 'nothing erased after now').to.equal(0);

    // consentctl says so too, and never calls such an answer complete.
    const ctl = (...args: string[]) => runConsentctl(s.address, 'audit', 'explain', '--tenant', T, '--purpose', 'newsletter', '--channel', 'whatsapp', ...args);
    const other = await ctl('--phone', '+4915170001004', '--at', at.toISOString());
    expect(other.code, other.err).to.equal(0);
    expect(other.out).to.include('NOT COMPLETE: 1 person was erased in this tenant after');
    const gone = await ctl('--phone', '+4915170001005', '--at', at.toISOString());
    expect(gone.code, gone.err).to.equal(0);
    expect(gone.out).to.include('DENY (SUBJECT_ERASED)').and.include('reports this identifier as erased');
    const current = await ctl('--phone', '+4915170001004');
    expect(current.code, current.err).to.equal(0);
    expect(current.out).to.include('verified:').and.not.include('NOT COMPLETE');
  });
});
