import { randomBytes } from 'node:crypto';
import { AuditTrail } from '../audit/audit-types';
import { sha256Hex } from '../shared/hashing';
import { TxContext } from '../shared/unit-of-work';
import { ChangeFeedRepository, RestrictionRecord, restrictionName, SubjectRepository, SubjectRightsRepository } from './ports';

/** What placing a restriction writes to. */
export interface RestrictionStores {
  requests: SubjectRightsRepository;
  subjects: SubjectRepository;
  audit: AuditTrail;
  changes: ChangeFeedRepository;
}

/**
 * Places one restriction of processing (Art. 18(1)) on a person whose lock the caller holds: the
 * record, the person's `restricted_since` (when not restricted already), a RESTRICTION_PLACED
 * audit entry naming the person (other processes' decision caches follow it) and a
 * CHANGE_KIND_RESTRICTED change, so that downstream copies stop processing too, in commit order.
 * Used by RestrictProcessing and by a link that carries a restriction over to the person's other
 * identifiers.
 */
export async function placeRestriction(
  tx: TxContext,
  stores: RestrictionStores,
  input: { tenantId: string; subjectId: string; ground: string; requestId: string; note: string; principal: string; at: number; restrictedAlready: boolean },
): Promise<RestrictionRecord> {
  const restriction: RestrictionRecord = {
    id: randomBytes(16).toString('hex'),
    tenantId: input.tenantId,
    subjectId: input.subjectId,
    ground: input.ground,
    requestId: input.requestId,
    note: input.note,
    placedBy: input.principal,
    placedAt: input.at,
    notifiedBy: null,
    noticeMethod: null,
    notifiedAt: null,
    liftedBy: null,
    liftedAt: null,
    liftReason: null,
  };
  await stores.requests.insertRestriction(tx, restriction);
  if (!input.restrictedAlready) await stores.subjects.setRestrictedSince(tx, input.tenantId, input.subjectId, input.at);
  const auditSeq = await stores.audit.append(tx, input.tenantId, {
    type: 'RESTRICTION_PLACED',
    time: input.at,
    principal: input.principal,
    subject: input.subjectId,
    ref: restrictionName(restriction),
    payloadSha256: sha256Hex(restriction.ground),
  });
  await stores.changes.append(tx, [{ tenantId: input.tenantId, kind: 'RESTRICTED', subjectId: input.subjectId, purposeId: null, channel: null, eventId: null, at: input.at, auditSeq }]);
  return restriction;
}
