import { ConsentEvent, Purpose, Tenant } from './model';
import { names } from './resource-names';

/**
 * The payload of a consent receipt: the Kantara Consent Receipt Specification v1.1 core fields
 * (which ISO/IEC TS 27560 builds on), plus JWT registered claims. The person appears only as
 * the opaque subject resource name: the receipt proves the consent without carrying the phone
 * number or e-mail address it was given for.
 */
export function consentReceipt(event: ConsentEvent, tenant: Tenant, purpose: Purpose, issuedAt: number): Record<string, unknown> {
  const eventName = names.consentEvent(event.tenantId, event.subjectId, event.id);
  return {
    // JWT claims (RFC 7519)
    iss: names.tenant(tenant.id),
    sub: names.subject(event.tenantId, event.subjectId),
    iat: Math.floor(issuedAt / 1000),
    jti: eventName,
    // Kantara CR v1.1
    version: 'KI-CR-v1.1.0',
    jurisdiction: event.jurisdiction || 'EU',
    consentTimestamp: Math.floor(event.eventTime / 1000),
    collectionMethod: event.method,
    consentReceiptID: eventName,
    language: event.notice?.language ?? '',
    piiPrincipalId: names.subject(event.tenantId, event.subjectId),
    piiControllers: [{ piiController: tenant.displayName, piiControllerId: names.tenant(tenant.id) }],
    policyUrl: event.notice ? names.notice(event.tenantId, event.notice.purposeId, event.notice.version) : '',
    services: [
      {
        service: names.purpose(event.tenantId, purpose.id),
        purposes: [
          {
            purpose: purpose.displayName,
            purposeCategory: [purpose.category],
            consentType: 'EXPLICIT',
            piiCategory: [],
            primaryPurpose: true,
            termination: event.expireTime ? new Date(event.expireTime).toISOString() : 'until withdrawn',
            thirdPartyDisclosure: false,
          },
        ],
      },
    ],
    sensitive: false,
    spiCat: [],
    // ISO/IEC TS 27560 record fields Kantara does not name
    eventType: event.kind,
    channel: event.channel,
    lawfulBasis: event.lawfulBasis,
    notice: event.notice ? { name: names.notice(event.tenantId, event.notice.purposeId, event.notice.version), textSha256: event.notice.textSha256 } : null,
    recordedBy: event.principal,
  };
}
