import { ConsentEventEntity } from './consent-event.entity';
import { ConsentStateEntity } from './consent-state.entity';
import { NoticeEntity } from './notice.entity';
import { PurposeEntity } from './purpose.entity';
import { ServiceWindowEntity } from './service-window.entity';
import { SubjectIdentifierEntity } from './subject-identifier.entity';
import { SubjectKeyEntity } from './subject-key.entity';
import { SubjectEntity } from './subject.entity';
import { TenantKeyEntity } from './tenant-key.entity';
import { TenantEntity } from './tenant.entity';

export {
  ConsentEventEntity,
  ConsentStateEntity,
  NoticeEntity,
  PurposeEntity,
  ServiceWindowEntity,
  SubjectEntity,
  SubjectIdentifierEntity,
  SubjectKeyEntity,
  TenantEntity,
  TenantKeyEntity,
};

export const ENTITIES = [
  TenantEntity,
  TenantKeyEntity,
  PurposeEntity,
  NoticeEntity,
  SubjectEntity,
  SubjectKeyEntity,
  SubjectIdentifierEntity,
  ConsentEventEntity,
  ConsentStateEntity,
  ServiceWindowEntity,
];
