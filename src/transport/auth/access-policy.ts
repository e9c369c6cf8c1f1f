import { Principal, Role } from '../../domain/principal';
import { DomainError } from '../../shared/errors';

const ALL: readonly Role[] = ['SENDER', 'RECORDER', 'DPO', 'AUDITOR', 'ADMIN'];

/**
 * Which roles may call each RPC: the one table docs/security.md shows. Keys are the full gRPC
 * method names. An RPC that is not listed is refused for everyone, so a new RPC is unreachable
 * until somebody decides who may call it (a test fails until then). Tenant reach is checked
 * separately, in the domain (authorizeTenant), once the request names a tenant.
 */
export const ACCESS_POLICY: Readonly<Record<string, readonly Role[]>> = Object.freeze({
  'consent.v1.TenantService/CreateTenant': ['ADMIN'],
  // The privacy center (self_service) reads a tenant's settings for its pages: branding, languages,
  // numbers, embedding origins (docs/privacy-center.md). Settings hold no personal data.
  'consent.v1.TenantService/GetTenant': ['ADMIN', 'DPO', 'AUDITOR', 'SELF_SERVICE'],
  'consent.v1.TenantService/UpdateTenantSettings': ['ADMIN'],

  'consent.v1.PurposeService/CreatePurpose': ['ADMIN'],
  'consent.v1.PurposeService/PublishNotice': ['ADMIN'],
  // The sign-up page shows each purpose with its current notice text.
  'consent.v1.PurposeService/ListPurposes': [...ALL, 'SELF_SERVICE'],
  'consent.v1.PurposeService/ListNotices': [...ALL, 'SELF_SERVICE'],

  'consent.v1.ConsentService/RecordConsent': ['RECORDER'],
  'consent.v1.ConsentService/RecordInboundMessage': ['RECORDER'],
  'consent.v1.ConsentService/ImportConsents': ['RECORDER'],
  'consent.v1.ConsentService/CheckConsent': ['SENDER'],
  'consent.v1.ConsentService/CheckConsentBatch': ['SENDER'],
  'consent.v1.ConsentService/StreamCheckConsent': ['SENDER'],
  'consent.v1.ConsentService/StreamChanges': ['SENDER'],
  'consent.v1.ConsentService/GetConsentState': ['SENDER', 'RECORDER', 'DPO', 'AUDITOR'],
  'consent.v1.ConsentService/ListConsentEvents': ['DPO', 'AUDITOR'],
  // A carrier's or a database's notice reaches the systems that record consent; the DPO may report too.
  'consent.v1.ConsentService/ReportReassignedIdentifier': ['RECORDER', 'DPO'],

  'consent.v1.KeyService/RotateTenantKey': ['ADMIN'],
  'consent.v1.KeyService/GetKeyRotation': ['ADMIN'],
  'consent.v1.KeyService/GetTenantKeyInfo': ['ADMIN'],
  'consent.v1.KeyService/ShredTenant': ['ADMIN'],
  // Public keys: everybody who verifies receipts, manifests or checkpoints needs them.
  'consent.v1.KeyService/GetPublicKeys': ALL,

  'consent.v1.SubjectRightsService/CreateRequest': ['DPO'],
  'consent.v1.SubjectRightsService/GetRequest': ['DPO', 'AUDITOR'],
  'consent.v1.SubjectRightsService/ListRequests': ['DPO', 'AUDITOR'],
  'consent.v1.SubjectRightsService/VerifyIdentity': ['DPO'],
  'consent.v1.SubjectRightsService/ExtendDeadline': ['DPO'],
  'consent.v1.SubjectRightsService/RecordRequestNotice': ['DPO'],
  'consent.v1.SubjectRightsService/RejectRequest': ['DPO'],
  'consent.v1.SubjectRightsService/EraseSubject': ['DPO'],
  // Personal data leaves the service here: the DPO only, never the auditor.
  'consent.v1.SubjectRightsService/ExportSubjectData': ['DPO'],
  'consent.v1.SubjectRightsService/PlaceLegalHold': ['DPO'],
  'consent.v1.SubjectRightsService/ReleaseLegalHold': ['DPO'],
  'consent.v1.SubjectRightsService/ListLegalHolds': ['DPO', 'AUDITOR'],
  'consent.v1.SubjectRightsService/RestrictProcessing': ['DPO'],
  'consent.v1.SubjectRightsService/RecordRestrictionNotice': ['DPO'],
  'consent.v1.SubjectRightsService/LiftRestriction': ['DPO'],
  'consent.v1.SubjectRightsService/ListRestrictions': ['DPO', 'AUDITOR'],
  'consent.v1.SubjectRightsService/RectifyIdentifier': ['DPO'],

  'consent.v1.IdentityService/LinkIdentifiers': ['DPO'],
  'consent.v1.IdentityService/UnlinkIdentifiers': ['DPO'],
  'consent.v1.IdentityService/ListIdentityLinks': ['DPO', 'AUDITOR'],

  'consent.v1.AuditService/GetCheckpoint': ['AUDITOR', 'DPO'],
  'consent.v1.AuditService/ListCheckpoints': ['AUDITOR', 'DPO'],
  'consent.v1.AuditService/ListAuditEntries': ['AUDITOR', 'DPO'],
  'consent.v1.AuditService/GetInclusionProof': ['AUDITOR', 'DPO'],
  'consent.v1.AuditService/GetConsistencyProof': ['AUDITOR', 'DPO'],
  'consent.v1.AuditService/ExplainDecision': ['AUDITOR', 'DPO'],
  'consent.v1.AuditService/ListConsentRecords': ['AUDITOR', 'DPO'],

  // The privacy center (role self_service) calls the person-facing methods; what a person may do is
  // bound by the signed token they hold. The tenant's systems (recorder) deliver e-mails and make links.
  'consent.v1.SelfServiceService/SignUp': ['SELF_SERVICE'],
  'consent.v1.SelfServiceService/ConfirmSignUp': ['SELF_SERVICE'],
  'consent.v1.SelfServiceService/ListConfirmationDeliveries': ['RECORDER'],
  'consent.v1.SelfServiceService/AcknowledgeConfirmationDeliveries': ['RECORDER'],
  'consent.v1.SelfServiceService/CreatePreferenceLink': ['RECORDER'],
  'consent.v1.SelfServiceService/GetPreferences': ['SELF_SERVICE'],
  'consent.v1.SelfServiceService/WithdrawWithLink': ['SELF_SERVICE'],
  'consent.v1.SelfServiceService/CreateRequestWithLink': ['SELF_SERVICE'],
});

/** Refuses the call unless the principal has a role the table allows for `method`. */
export function authorizeMethod(principal: Principal, method: string): void {
  methodPolicy(method).authorize(principal);
}

/** The access rule of one method, looked up once (the call pipeline keeps one per handler). */
export interface MethodPolicy {
  /** Refuses the call unless the principal has a role the table allows for the method. */
  authorize(principal: Principal): void;
}

export function methodPolicy(method: string): MethodPolicy {
  const allowed = ACCESS_POLICY[method];
  if (!allowed) {
    // Refused when called, like every other refusal (the server still starts).
    return {
      authorize() {
        throw new DomainError('PERMISSION_DENIED', 'METHOD_NOT_ALLOWED', `${method} is not open to any role`);
      },
    };
  }
  return {
    authorize(principal) {
      for (const role of principal.roles) if (allowed.includes(role)) return;
      throw new DomainError('PERMISSION_DENIED', 'ROLE_NOT_ALLOWED', `${method} needs one of the roles ${allowed.join(', ').toLowerCase()}`);
    },
  };
}
