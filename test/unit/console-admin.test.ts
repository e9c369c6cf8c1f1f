import { expect } from 'chai';
import { TenantSettings } from '../../src/gen/consent/v1/tenant';
import { formatDuration, formFieldOf, parseDuration, settingsForm, settingsUpdate } from '../../src/console/pages/admin';

/** The tenant admin page's settings form (src/console/pages/admin.ts): durations as typed, and the update mask of changed fields only. */
describe('console tenant settings form', () => {
  it('reads and writes durations as 1d12h, 90m, 24h', () => {
    expect(parseDuration('24h')).to.equal(86_400);
    expect(parseDuration('1d12h30m')).to.equal(131_400);
    expect(parseDuration('90m')).to.equal(5400);
    expect(parseDuration(' 2D ')).to.equal(172_800);
    for (const bad of ['', 'soon', '12', '1h1d', '-1h', '1.5h']) expect(parseDuration(bad), bad).to.equal(undefined);
    expect(formatDuration({ seconds: 131_400, nanos: 0 })).to.equal('1d12h30m');
    expect(formatDuration({ seconds: 0, nanos: 0 })).to.equal('');
    expect(formatDuration(undefined)).to.equal('');
  });

  it('masks only the fields that differ from the values the form was opened with', () => {
    const opened = settingsForm(
      TenantSettings.fromPartial({ serviceWindow: { seconds: 86_400, nanos: 0 }, optOutKeywords: ['STOP'], optInKeywords: ['START'], defaultConsentValidityMonths: 24, purposeConsentValidityMonths: { news: 12 } }),
    );
    expect(opened).to.deep.equal({ service_window: '1d', opt_out_keywords: 'STOP', opt_in_keywords: 'START', default_validity: '24mo', purpose_validity: 'news 12mo' });
    const orig = Object.fromEntries(Object.entries(opened).map(([k, v]) => [`orig_${k}`, v]));
    expect(settingsUpdate('t', { ...opened, ...orig }).mask).to.deep.equal([]);
    const changed = settingsUpdate('t', { ...opened, ...orig, service_window: '2h', default_validity: '730d', purpose_validity: 'news 30d\nalerts: 6mo' });
    expect(changed.violations).to.deep.equal([]);
    expect(changed.mask).to.deep.equal(['service_window', 'default_consent_validity', 'default_consent_validity_months', 'purpose_consent_validity', 'purpose_consent_validity_months']);
    expect(changed.settings.name).to.equal('tenants/t/settings');
    expect(changed.settings.serviceWindow).to.deep.equal({ seconds: 7200, nanos: 0 });
    expect(changed.settings.defaultConsentValidity).to.deep.equal({ seconds: 730 * 86_400, nanos: 0 });
    expect(changed.settings.defaultConsentValidityMonths).to.equal(0);
    expect(changed.settings.purposeConsentValidity).to.deep.equal({ news: { seconds: 30 * 86_400, nanos: 0 } });
    expect(changed.settings.purposeConsentValidityMonths).to.deep.equal({ alerts: 6 });
    // Emptied: no expiry (both fields masked, neither given).
    const cleared = settingsUpdate('t', { ...opened, ...orig, default_validity: '' });
    expect(cleared.mask).to.deep.equal(['default_consent_validity', 'default_consent_validity_months']);
    expect(cleared.settings.defaultConsentValidity).to.equal(undefined);
  });

  it('does not send what it cannot read, naming the field', () => {
    const bad = settingsUpdate('t', { service_window: 'soon', orig_service_window: '1d', purpose_validity: 'news', orig_purpose_validity: '' });
    expect(bad.violations.map((v) => v.field)).to.deep.equal(['settings.service_window', 'settings.purpose_consent_validity']);
    expect(bad.mask).to.deep.equal([]);
  });

  it('puts the API field violations under the form field they belong to', () => {
    expect(formFieldOf('settings.service_window')).to.equal('service_window');
    expect(formFieldOf('settings.default_consent_validity_months')).to.equal('default_validity');
    expect(formFieldOf('settings.purpose_consent_validity_months["x"]')).to.equal('purpose_validity');
    expect(formFieldOf('settings.opt_in_keywords')).to.equal('opt_in_keywords');
    expect(formFieldOf('update_mask')).to.equal(undefined);
  });
});
