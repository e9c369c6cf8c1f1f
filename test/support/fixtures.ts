import { Channel, PurposeCategory, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import {
  CollectionMethod,
  ConsentEventKind,
  ConsentQuery,
  RecordConsentRequest,
} from '../../src/gen/consent/v1/consent';
import { call, TestServer } from './test-server';

export const phone = (value: string): SubjectIdentifier => ({ kind: { $case: 'phoneNumber', value }, defaultRegion: '' });
export const email = (value: string): SubjectIdentifier => ({ kind: { $case: 'email', value }, defaultRegion: '' });

/** Creates a tenant with a MARKETING purpose "newsletter" (notice v1), a UTILITY "orders" and a SERVICE "support". */
export async function seedTenant(s: TestServer, tenantId: string): Promise<void> {
  await call(s.tenants, s.tenants.createTenant, { tenantId, displayName: tenantId, requestId: '', settings: undefined });
  for (const [purposeId, category] of [
    ['newsletter', PurposeCategory.PURPOSE_CATEGORY_MARKETING],
    ['orders', PurposeCategory.PURPOSE_CATEGORY_UTILITY],
    ['support', PurposeCategory.PURPOSE_CATEGORY_SERVICE],
    ['otp', PurposeCategory.PURPOSE_CATEGORY_AUTHENTICATION],
  ] as const) {
    await call(s.purposes, s.purposes.createPurpose, {
      parent: `tenants/${tenantId}`,
      purposeId,
      purpose: { name: '', displayName: purposeId, category, description: '', createTime: undefined, allowedWhileRestricted: false },
      requestId: '',
    });
    await call(s.purposes, s.purposes.publishNotice, {
      parent: `tenants/${tenantId}/purposes/${purposeId}`,
      language: 'en',
      text: `Notice for ${purposeId}`,
      requestId: `notice-${purposeId}`,
    });
  }
}

let requestCounter = 0;

/** A RecordConsent request with sensible defaults; override what the test is about. */
export function consentRequest(tenantId: string, overrides: Partial<RecordConsentRequest> = {}): RecordConsentRequest {
  const purposeId = 'newsletter';
  return RecordConsentRequest.fromPartial({
    parent: `tenants/${tenantId}`,
    subjectIdentifier: phone('+4915112345678'),
    purpose: `tenants/${tenantId}/purposes/${purposeId}`,
    channel: Channel.CHANNEL_WHATSAPP,
    kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
    method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
    notice: `tenants/${tenantId}/purposes/${purposeId}/notices/1`,
    requestId: `req-${process.pid}-${++requestCounter}`,
    ...overrides,
  });
}

export function query(tenantId: string, overrides: Partial<ConsentQuery> = {}): ConsentQuery {
  return ConsentQuery.fromPartial({
    subjectIdentifier: phone('+4915112345678'),
    purpose: `tenants/${tenantId}/purposes/newsletter`,
    channel: Channel.CHANNEL_WHATSAPP,
    ...overrides,
  });
}
