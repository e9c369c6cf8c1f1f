import { InitialSchema1764000000000 } from './1764000000000-InitialSchema';
import { TenantErasureAndKeyRotations1764000000002 } from './1764000000002-TenantErasureAndKeyRotations';
import { SubjectRequests1764000000005 } from './1764000000005-SubjectRequests';
import { ChangeOutbox1764000000006 } from './1764000000006-ChangeOutbox';
import { AuditLog1764000000007 } from './1764000000007-AuditLog';
import { AuditQueries1764000000008 } from './1764000000008-AuditQueries';
import { ErasureUnlinksAndSettingsVersions1764000000009 } from './1764000000009-ErasureUnlinksAndSettingsVersions';
import { ChangeFeedPositions1764000000010 } from './1764000000010-ChangeFeedPositions';
import { SubjectObjections1764000000011 } from './1764000000011-SubjectObjections';
import { Restrictions1764000000012 } from './1764000000012-Restrictions';
import { RequestIdentifiers1764000000013 } from './1764000000013-RequestIdentifiers';
import { IdentityLinks1764000000014 } from './1764000000014-IdentityLinks';
import { IdentifierChanges1764000000015 } from './1764000000015-IdentifierChanges';
import { SignUpConfirmations1764000000016 } from './1764000000016-SignUpConfirmations';
import { ConfirmationMailer1764000000017 } from './1764000000017-ConfirmationMailer';
import { ErasureRecords1764000000018 } from './1764000000018-ErasureRecords';
import { RequestNotices1764000000019 } from './1764000000019-RequestNotices';
import { SignUpMailboxes1764000000020 } from './1764000000020-SignUpMailboxes';

/** Every data-database migration, in order. Listed explicitly so compiled and tsx runs load the same set. */
export const MIGRATIONS = [
  InitialSchema1764000000000,
  TenantErasureAndKeyRotations1764000000002,
  SubjectRequests1764000000005,
  ChangeOutbox1764000000006,
  AuditLog1764000000007,
  AuditQueries1764000000008,
  ErasureUnlinksAndSettingsVersions1764000000009,
  ChangeFeedPositions1764000000010,
  SubjectObjections1764000000011,
  Restrictions1764000000012,
  RequestIdentifiers1764000000013,
  IdentityLinks1764000000014,
  IdentifierChanges1764000000015,
  SignUpConfirmations1764000000016,
  ConfirmationMailer1764000000017,
  ErasureRecords1764000000018,
  RequestNotices1764000000019,
  SignUpMailboxes1764000000020,
];
