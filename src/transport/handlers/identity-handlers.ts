import { IdentityLinks, IdentityLinkView, identityLinkName, linkSubjectNames } from '../../domain/identity-links';
import { IdentifierKind } from '../../domain/model';
import { IdentifierKind as PbIdentifierKind, IdentityLink, IdentityServiceServer } from '../../gen/consent/v1/identity';
import { CallPipeline } from '../call-pipeline';
import { childName, msToDate, toRawIdentifier } from '../mappers';
import { parentTenant } from './purpose-handlers';

const KINDS: Record<IdentifierKind, PbIdentifierKind> = {
  PHONE: PbIdentifierKind.IDENTIFIER_KIND_PHONE_NUMBER,
  EMAIL: PbIdentifierKind.IDENTIFIER_KIND_EMAIL,
  CUSTOMER_ID: PbIdentifierKind.IDENTIFIER_KIND_CUSTOMER_ID,
};

/** consent.v1.IdentityService: translate, call IdentityLinks, map back (never an identifier value). */
export function identityHandlers(pipeline: CallPipeline, links: IdentityLinks): IdentityServiceServer {
  return {
    linkIdentifiers: pipeline.unary('LinkIdentifiers', async (req, ctx) => {
      const { link, consistencyToken } = await links.link(ctx.principal, parentTenant(req.parent), {
        first: toRawIdentifier(req.first),
        second: toRawIdentifier(req.second),
        method: req.method,
        verifiedBy: req.verifiedBy,
        request: req.request,
        requestId: req.requestId,
      });
      return { link: linkToProto(link), consistencyToken };
    }),
    unlinkIdentifiers: pipeline.unary('UnlinkIdentifiers', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'identityLinks');
      return { link: linkToProto(await links.unlink(ctx.principal, tenantId, id, req.reason)) };
    }),
    listIdentityLinks: pipeline.unary('ListIdentityLinks', async (req, ctx) => {
      const page = await links.list(ctx.principal, parentTenant(req.parent), {
        identifier: req.subjectIdentifier ? toRawIdentifier(req.subjectIdentifier) : undefined,
        includeUnlinked: req.includeUnlinked,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { links: page.items.map(linkToProto), nextPageToken: page.nextPageToken };
    }),
  };
}

function linkToProto(l: IdentityLinkView): IdentityLink {
  return {
    name: identityLinkName(l.tenantId, l.id),
    subjects: linkSubjectNames(l),
    kinds: [KINDS[l.kindA], KINDS[l.kindB]],
    method: l.method,
    verifiedBy: l.verifiedBy,
    request: l.request ? `tenants/${l.tenantId}/requests/${l.request}` : '',
    linkedBy: l.linkedBy,
    linkTime: msToDate(l.linkedAt),
    unlinkedBy: l.unlinkedBy ?? '',
    unlinkTime: msToDate(l.unlinkedAt ?? undefined),
    unlinkReason: l.unlinkReason ?? '',
  };
}
