import { PreferenceLinks, PreferenceView } from '../../domain/preference-links';
import { Channel, IdentifierKind } from '../../domain/model';
import { RequestKind } from '../../domain/ports';
import { names } from '../../domain/resource-names';
import { FieldViolation, invalidArgument } from '../../shared/errors';
import { IdentifierKind as PbIdentifierKind } from '../../gen/consent/v1/identity';
import { RequestKind as PbRequestKind } from '../../gen/consent/v1/subject_rights';
import { Preference, SelfServiceServiceServer, WithdrawWithLinkRequest } from '../../gen/consent/v1/self_service';
import { Evidence as PbEvidence } from '../../gen/consent/v1/consent';
import { CallPipeline } from '../call-pipeline';
import { channels, durationToMs, enumMapper, eventKinds, eventToProto, msToDate, purposeIdOf, toRawIdentifier } from '../mappers';
import { parentTenant } from './purpose-handlers';
import { requestToProto } from './subject-rights-handlers';

const IDENTIFIER_KINDS: Record<IdentifierKind, PbIdentifierKind> = {
  PHONE: PbIdentifierKind.IDENTIFIER_KIND_PHONE_NUMBER,
  EMAIL: PbIdentifierKind.IDENTIFIER_KIND_EMAIL,
  CUSTOMER_ID: PbIdentifierKind.IDENTIFIER_KIND_CUSTOMER_ID,
};
const requestKinds = enumMapper<typeof PbRequestKind, RequestKind>(PbRequestKind, 'REQUEST_KIND_');

/**
 * consent.v1.SelfServiceService, the preference-link methods (CreatePreferenceLink, GetPreferences,
 * WithdrawWithLink, CreateRequestWithLink): translate, call PreferenceLinks, map back. Sign-up and
 * confirmation are registered from their own file; the composition root joins both.
 */
export function selfServiceLinkHandlers(
  pipeline: CallPipeline,
  links: PreferenceLinks,
): Pick<SelfServiceServiceServer, 'createPreferenceLink' | 'getPreferences' | 'withdrawWithLink' | 'createRequestWithLink'> {
  return {
    createPreferenceLink: pipeline.unary('CreatePreferenceLink', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const { token, link, expireTime } = await links.createLink(ctx.principal, tenantId, toRawIdentifier(req.subjectIdentifier), durationToMs(req.ttl));
      return { token, link, expireTime: msToDate(expireTime) };
    }),

    getPreferences: pipeline.unary('GetPreferences', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const view = await links.preferences(ctx.principal, tenantId, req.token);
      return {
        subject: names.subject(tenantId, view.subjectId),
        identifierKind: IDENTIFIER_KINDS[view.identifierKind],
        preferences: view.preferences.map((p) => preferenceToProto(tenantId, p)),
        requestOptions: view.requestOptions.map((o) => ({ kind: requestKinds.toProto(o.kind), linkVerifies: o.linkVerifies })),
        openRequests: view.openRequests.map(requestToProto),
        expireTime: msToDate(view.expireTime),
      };
    }),

    withdrawWithLink: pipeline.unary('WithdrawWithLink', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const v: FieldViolation[] = [];
      const scopes: Array<{ purposeId: string; channel: Channel }> = [];
      req.scopes.forEach((s, i) => {
        const purposeId = purposeIdOf(s.purpose, tenantId, `scopes[${i}].purpose`, v, true);
        const channel = channels.toDomain(s.channel);
        if (!channel) v.push({ field: `scopes[${i}].channel`, reason: 'REQUIRED', description: 'a channel, or CHANNEL_ANY' });
        if (purposeId && channel) scopes.push({ purposeId, channel });
      });
      if (v.length > 0) throw invalidArgument(v);
      const { events, consistencyToken } = await links.withdraw(ctx.principal, tenantId, {
        token: req.token,
        scopes,
        all: req.all,
        evidence: evidenceFromProto(req.evidence),
        requestId: req.requestId,
        // The request without its token: a retry with another link of the same person is the same request.
        fingerprintSource: JSON.stringify(WithdrawWithLinkRequest.toJSON({ ...req, token: '' })),
      });
      return { events: events.map(eventToProto), consistencyToken };
    }),

    createRequestWithLink: pipeline.unary('CreateRequestWithLink', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const { request, consistencyToken } = await links.createRequest(ctx.principal, tenantId, {
        token: req.token,
        kind: requestKinds.toDomain(req.kind),
        requestId: req.requestId,
        evidence: evidenceFromProto(req.evidence),
      });
      return { request: requestToProto(request), consistencyToken };
    }),
  };
}

function preferenceToProto(tenantId: string, p: PreferenceView): Preference {
  return {
    purpose: names.purpose(tenantId, p.purposeId),
    purposeDisplayName: p.purposeDisplayName,
    channel: channels.toProto(p.channel),
    granted: p.granted,
    lastKind: eventKinds.toProto(p.lastKind),
    eventTime: msToDate(p.eventTime),
    expireTime: msToDate(p.expireTime),
    notice: p.notice ? names.notice(tenantId, p.notice.purposeId, p.notice.version) : '',
    noticeText: p.notice?.text ?? '',
  };
}

function evidenceFromProto(e: PbEvidence | undefined) {
  return {
    sourceIp: e?.sourceIp || undefined,
    userAgent: e?.userAgent || undefined,
    pageUrl: e?.pageUrl || undefined,
    freeText: e?.freeText || undefined,
  };
}
