import { invalidArgument } from '../../shared/errors';
import { Notice, Purpose } from '../../domain/model';
import { names, parsePurposeName, parseTenantName } from '../../domain/resource-names';
import { PurposeService } from '../../domain/purpose-service';
import {
  CreatePurposeRequest,
  CreatePurposeResponse,
  ListNoticesRequest,
  ListNoticesResponse,
  ListPurposesRequest,
  ListPurposesResponse,
  Notice as PbNotice,
  PublishNoticeRequest,
  PublishNoticeResponse,
  Purpose as PbPurpose,
  PurposeServiceServer,
} from '../../gen/consent/v1/purpose';
import { CallContext, CallPipeline } from '../call-pipeline';
import { categories, msToDate, NameMemo } from '../mappers';

/** consent.v1.PurposeService: translate, call PurposeService, map back. */
export function purposeHandlers(pipeline: CallPipeline, purposes: PurposeService): PurposeServiceServer {
  return {
    createPurpose: pipeline.unary('CreatePurpose', async (req: CreatePurposeRequest, ctx: CallContext): Promise<CreatePurposeResponse> => {
      const tenantId = parentTenant(req.parent);
      const purpose = await purposes.create(ctx.principal, tenantId, {
        purposeId: req.purposeId,
        displayName: req.purpose?.displayName ?? '',
        category: categories.toDomain(req.purpose?.category ?? 0),
        description: req.purpose?.description ?? '',
        allowedWhileRestricted: req.purpose?.allowedWhileRestricted ?? false,
        requestId: req.requestId,
      });
      return { purpose: purposeToProto(purpose) };
    }),

    listPurposes: pipeline.unary('ListPurposes', async (req: ListPurposesRequest, ctx: CallContext): Promise<ListPurposesResponse> => {
      const page = await purposes.list(ctx.principal, parentTenant(req.parent), req.pageSize, req.pageToken);
      return { purposes: page.items.map(purposeToProto), nextPageToken: page.nextPageToken };
    }),

    publishNotice: pipeline.unary('PublishNotice', async (req: PublishNoticeRequest, ctx: CallContext): Promise<PublishNoticeResponse> => {
      const { tenantId, purposeId } = parentPurpose(req.parent);
      const notice = await purposes.publishNotice(ctx.principal, tenantId, purposeId, {
        language: req.language,
        text: req.text,
        requestId: req.requestId,
      });
      return { notice: noticeToProto(notice) };
    }),

    listNotices: pipeline.unary('ListNotices', async (req: ListNoticesRequest, ctx: CallContext): Promise<ListNoticesResponse> => {
      const { tenantId, purposeId } = parentPurpose(req.parent);
      const page = await purposes.listNotices(ctx.principal, tenantId, purposeId, req.pageSize, req.pageToken);
      return { notices: page.items.map(noticeToProto), nextPageToken: page.nextPageToken };
    }),
  };
}

/** The tenant id of a `tenants/{tenant}` field (`parent` unless named), or INVALID_ARGUMENT. */
const tenantNames = new NameMemo(parseTenantName);

export function parentTenant(value: string, field = 'parent'): string {
  const tenantId = tenantNames.parse(value);
  if (!tenantId) throw invalidArgument([{ field, reason: 'INVALID_NAME', description: 'must be tenants/{tenant}' }]);
  return tenantId;
}

function parentPurpose(parent: string): { tenantId: string; purposeId: string } {
  const parsed = parsePurposeName(parent);
  if (!parsed) throw invalidArgument([{ field: 'parent', reason: 'INVALID_NAME', description: 'must be tenants/{tenant}/purposes/{purpose}' }]);
  return parsed;
}

function purposeToProto(p: Purpose): PbPurpose {
  return {
    name: names.purpose(p.tenantId, p.id),
    displayName: p.displayName,
    category: categories.toProto(p.category),
    description: p.description,
    createTime: msToDate(p.createdAt),
    allowedWhileRestricted: p.allowedWhileRestricted,
  };
}

function noticeToProto(n: Notice): PbNotice {
  return {
    name: names.notice(n.tenantId, n.purposeId, n.version),
    version: n.version,
    language: n.language,
    text: n.text,
    textSha256: n.textSha256,
    createTime: msToDate(n.createdAt),
  };
}
