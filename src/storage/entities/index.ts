import { ConsentEventEntity } from './consent-event.entity';
import { ConsentStateEntity } from './consent-state.entity';
import { KeyRotationEntity } from './key-rotation.entity';
import { NoticeEntity } from './notice.entity';
import { PurposeEntity } from './purpose.entity';
import { ServiceWindowEntity } from './service-window.entity';
import { SubjectIdentifierEntity } from './subject-identifier.entity';
import { SubjectEntity } from './subject.entity';
import { TenantEntity } from './tenant.entity';

export {
  ConsentEventEntity,
  ConsentStateEntity,
  KeyRotationEntity,
  NoticeEntity,
  PurposeEntity,
  ServiceWindowEntity,
  SubjectEntity,
  SubjectIdentifierEntity,
  TenantEntity,
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
];
