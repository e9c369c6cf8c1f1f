import { AuditCheckpointEntity, AuditEntryEntity, AuditHeadEntity, AuditNodeEntity } from './audit.entity';
import { ChangeEntity } from './change.entity';
import { ConsentEventEntity } from './consent-event.entity';
import { ConsentStateEntity } from './consent-state.entity';
import { IdentityLinkEntity } from './identity-link.entity';
import { KeyRotationEntity } from './key-rotation.entity';
import { LegalHoldEntity } from './legal-hold.entity';
import { SubjectRequestEntity } from './subject-request.entity';
import { SubjectRequestIdentifierEntity } from './subject-request-identifier.entity';
import { SuppressionEntity } from './suppression.entity';
import { SubjectRequestTransitionEntity } from './subject-request-transition.entity';
import { NoticeEntity } from './notice.entity';
import { PurposeEntity } from './purpose.entity';
import { ServiceWindowEntity } from './service-window.entity';
import { SubjectIdentifierEntity } from './subject-identifier.entity';
import { SubjectEntity } from './subject.entity';
import { SubjectRestrictionEntity } from './subject-restriction.entity';
import { TenantEntity } from './tenant.entity';
import { TenantSettingsVersionEntity } from './tenant-settings-version.entity';

export {
  AuditEntryEntity,
  AuditHeadEntity,
  AuditNodeEntity,
  AuditCheckpointEntity,
  ChangeEntity,
  ConsentEventEntity,
  ConsentStateEntity,
  IdentityLinkEntity,
  KeyRotationEntity,
  LegalHoldEntity,
  NoticeEntity,
  PurposeEntity,
  ServiceWindowEntity,
  SubjectEntity,
  SubjectIdentifierEntity,
  SubjectRequestEntity,
  SubjectRequestIdentifierEntity,
  SubjectRequestTransitionEntity,
  SubjectRestrictionEntity,
  SuppressionEntity,
  TenantEntity,
  TenantSettingsVersionEntity,
};

export const ENTITIES = [
  TenantEntity,
  PurposeEntity,
  NoticeEntity,
  SubjectEntity,
  SubjectIdentifierEntity,
  ConsentEventEntity,
  ConsentStateEntity,
  ServiceWindowEntity,
  KeyRotationEntity,
  SubjectRequestEntity,
  SubjectRequestIdentifierEntity,
  SubjectRequestTransitionEntity,
  LegalHoldEntity,
  SuppressionEntity,
  ChangeEntity,
  AuditHeadEntity,
  AuditEntryEntity,
  AuditNodeEntity,
  AuditCheckpointEntity,
  TenantSettingsVersionEntity,
  SubjectRestrictionEntity,
  IdentityLinkEntity,
];
