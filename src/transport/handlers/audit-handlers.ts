import { AuditService } from '../../domain/audit-service';
import { names } from '../../domain/resource-names';
import { AuditServiceServer } from '../../gen/consent/v1/audit';
import { CallPipeline } from '../call-pipeline';
import { msToDate } from '../mappers';
import { parentTenant } from './purpose-handlers';

/** consent.v1.AuditService: translate, call AuditService, map back. */
export function auditHandlers(pipeline: CallPipeline, audit: AuditService): AuditServiceServer {
  return {
    getCheckpoint: pipeline.unary('GetCheckpoint', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const c = await audit.checkpoint(ctx.principal, tenantId);
      return { checkpoint: { tenant: names.tenant(tenantId), treeSize: c.size, rootHash: c.rootHex, time: msToDate(c.time), signedCheckpoint: c.signed } };
    }),
    listAuditEntries: pipeline.unary('ListAuditEntries', async (req, ctx) => {
      const page = await audit.entries(ctx.principal, parentTenant(req.parent), req.startIndex, req.pageSize);
      return { entries: page.entries.map((e) => ({ index: e.seq, entryJson: e.entryJson, leafHash: e.leafHash })), nextIndex: page.nextIndex };
    }),
    getInclusionProof: pipeline.unary('GetInclusionProof', async (req, ctx) => ({
      hashes: (await audit.inclusionProof(ctx.principal, parentTenant(req.parent), req.index, req.treeSize)).map((h) => h.toString('hex')),
    })),
    getConsistencyProof: pipeline.unary('GetConsistencyProof', async (req, ctx) => ({
      hashes: (await audit.consistencyProof(ctx.principal, parentTenant(req.parent), req.firstSize, req.secondSize)).map((h) => h.toString('hex')),
    })),
  };
}
