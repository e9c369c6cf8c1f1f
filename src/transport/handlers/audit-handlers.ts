import { AuditService, ConsentRecord, SignedCheckpoint } from '../../domain/audit-service';
import { invalidArgument, FieldViolation } from '../../shared/errors';
import { names, parseSubjectName } from '../../domain/resource-names';
import { AuditServiceServer, Checkpoint, ConsentRecord as PbConsentRecord } from '../../gen/consent/v1/audit';
import { CallPipeline } from '../call-pipeline';
import { categories, channels, decisionToProto, eventKinds, msToDate, msToDuration, purposeIdOf, requestTimeMs, toRawIdentifier } from '../mappers';
import { queryFromProto } from './consent-handlers';
import { parentTenant } from './purpose-handlers';

/** consent.v1.AuditService: translate, call AuditService, map back. */
export function auditHandlers(pipeline: CallPipeline, audit: AuditService): AuditServiceServer {
  return {
    getCheckpoint: pipeline.unary('GetCheckpoint', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      return { checkpoint: checkpointToProto(tenantId, await audit.checkpoint(ctx.principal, tenantId)) };
    }),
    listCheckpoints: pipeline.unary('ListCheckpoints', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const page = await audit.listCheckpoints(ctx.principal, tenantId, req.pageSize, req.pageToken);
      return {
        checkpoints: page.items.map((c) => checkpointToProto(tenantId, { size: c.treeSize, rootHex: c.rootHash, time: c.signedAt, signed: c.jws })),
        nextPageToken: page.nextPageToken,
      };
    }),
    listAuditEntries: pipeline.unary('ListAuditEntries', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const violations: FieldViolation[] = [];
      let subjectId: string | undefined;
      if (req.subject) {
        const parsed = parseSubjectName(req.subject);
        if (!parsed || parsed.tenantId !== tenantId) violations.push({ field: 'subject', reason: 'INVALID_SUBJECT_NAME', description: `must be tenants/${tenantId}/subjects/{subject}` });
        else subjectId = parsed.subjectId;
      }
      const purposeId = req.purpose ? purposeIdOf(req.purpose, tenantId, 'purpose', violations, true) ?? undefined : undefined;
      const startTime = requestTimeMs(req.startTime, 'start_time', violations);
      const endTime = requestTimeMs(req.endTime, 'end_time', violations);
      if (violations.length > 0) throw invalidArgument(violations);
      const page = await audit.entries(ctx.principal, tenantId, req.startIndex, req.pageSize, {
        identifier: toRawIdentifier(req.subjectIdentifier),
        subjectId,
        purposeId,
        types: req.entryTypes,
        principal: req.principal || undefined,
        startTime,
        endTime,
      });
      return { entries: page.entries.map((e) => ({ index: e.seq, entryJson: e.entryJson, leafHash: e.leafHash, indexProblem: e.indexProblem ?? '' })), nextIndex: page.nextIndex };
    }),
    getInclusionProof: pipeline.unary('GetInclusionProof', async (req, ctx) => ({
      hashes: (await audit.inclusionProof(ctx.principal, parentTenant(req.parent), req.index, req.treeSize)).map((h) => h.toString('hex')),
    })),
    getConsistencyProof: pipeline.unary('GetConsistencyProof', async (req, ctx) => ({
      hashes: (await audit.consistencyProof(ctx.principal, parentTenant(req.parent), req.firstSize, req.secondSize)).map((h) => h.toString('hex')),
    })),
    explainDecision: pipeline.unary('ExplainDecision', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const x = await audit.explain(ctx.principal, tenantId, queryFromProto(req.query, tenantId, 'query'));
      return {
        decision: decisionToProto(tenantId, x.decision),
        subject: x.basis.subject ? names.subject(tenantId, x.basis.subject.subjectId) : '',
        checkpoint: checkpointToProto(tenantId, x.checkpoint),
        entries: x.entries.map((e) => ({
          entry: e.entry ? { index: e.entry.seq, entryJson: e.entry.entryJson, leafHash: e.entry.leafHash, indexProblem: e.entry.indexProblem ?? '' } : undefined,
          inclusionProof: e.proof.map((h) => h.toString('hex')),
          record: e.record ? recordToProto(e.record) : undefined,
        })),
        category: categories.toProto(x.basis.category),
        serviceWindow: msToDuration(x.basis.serviceWindowMs),
        time: msToDate(x.basis.at),
        erasuresSince: x.erasuresSince,
        allowedWhileRestricted: x.basis.allowedWhileRestricted,
      };
    }),
    listConsentRecords: pipeline.unary('ListConsentRecords', async (req, ctx) => {
      const page = await audit.consentRecords(ctx.principal, parentTenant(req.parent), req.pageSize, req.pageToken);
      return { records: page.items.map(recordToProto), nextPageToken: page.nextPageToken };
    }),
  };
}

function checkpointToProto(tenantId: string, c: SignedCheckpoint): Checkpoint {
  return { tenant: names.tenant(tenantId), treeSize: c.size, rootHash: c.rootHex, time: msToDate(c.time), signedCheckpoint: c.signed };
}

function recordToProto({ event: e, recordSha256 }: ConsentRecord): PbConsentRecord {
  return {
    name: names.consentEvent(e.tenantId, e.subjectId, e.id),
    kind: eventKinds.toProto(e.kind),
    purpose: names.purpose(e.tenantId, e.purposeId),
    channel: channels.toProto(e.channel),
    eventTime: msToDate(e.eventTime),
    recordTime: msToDate(e.recordTime),
    expireTime: msToDate(e.expireTime),
    recordSha256,
  };
}
