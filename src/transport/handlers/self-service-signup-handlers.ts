import { SelfServiceSignUp, SignUpChoiceInput, confirmationDeliveryName } from '../../domain/self-service-signup';
import { parseNoticeName } from '../../domain/resource-names';
import { Evidence as PbEvidence } from '../../gen/consent/v1/consent';
import { ConfirmationMethod, SelfServiceServiceServer, SignUpRequest } from '../../gen/consent/v1/self_service';
import { FieldViolation, invalidArgument } from '../../shared/errors';
import { CallPipeline } from '../call-pipeline';
import { channels, childName, eventToProto, msToDate, purposeIdOf, toRawIdentifier } from '../mappers';
import { parentTenant } from './purpose-handlers';

/**
 * consent.v1.SelfServiceService, the sign-up half (issue 20): SignUp, ConfirmSignUp and the
 * e-mail deliveries. The preference-link methods are served from their own file; a method not
 * given here answers UNIMPLEMENTED until then.
 */
export function selfServiceSignUpHandlers(pipeline: CallPipeline, signUp: SelfServiceSignUp): Partial<SelfServiceServiceServer> {
  return {
    signUp: pipeline.unary('SignUp', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const result = await signUp.signUp(ctx.principal, tenantId, {
        identifier: toRawIdentifier(req.subjectIdentifier),
        choices: choicesFromProto(req, tenantId),
        evidence: evidenceFromProto(req.evidence),
        language: req.language,
        requestId: req.requestId,
        fingerprintSource: JSON.stringify(SignUpRequest.toJSON(req)),
      });
      return {
        method: result.method === 'INBOUND_CODE' ? ConfirmationMethod.CONFIRMATION_METHOD_INBOUND_CODE : ConfirmationMethod.CONFIRMATION_METHOD_EMAIL_LINK,
        confirmationCode: result.code,
        confirmationText: result.text,
        expireTime: msToDate(result.expireTime),
      };
    }),
    confirmSignUp: pipeline.unary('ConfirmSignUp', async (req, ctx) => {
      const { events } = await signUp.confirmByLink(ctx.principal, parentTenant(req.parent), req.token, evidenceFromProto(req.evidence));
      return { events: events.map(eventToProto) };
    }),
    listConfirmationDeliveries: pipeline.unary('ListConfirmationDeliveries', async (req, ctx) => {
      const page = await signUp.listDeliveries(ctx.principal, parentTenant(req.parent), req.pageSize, req.pageToken);
      return {
        deliveries: page.items.map((d) => ({
          name: confirmationDeliveryName(d.tenantId, d.id),
          email: d.email,
          link: d.link,
          language: d.language,
          expireTime: msToDate(d.expireTime),
          createTime: msToDate(d.createTime),
        })),
        nextPageToken: page.nextPageToken,
      };
    }),
    acknowledgeConfirmationDeliveries: pipeline.unary('AcknowledgeConfirmationDeliveries', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const ids: string[] = [];
      for (const [i, name] of req.names.entries()) {
        const parsed = childName(name, 'confirmationDeliveries', `names[${i}]`);
        if (parsed.tenantId !== tenantId) throw invalidArgument([{ field: `names[${i}]`, reason: 'OTHER_TENANT', description: 'must be a delivery of the parent tenant' }]);
        ids.push(parsed.id);
      }
      return { acknowledged: await signUp.acknowledgeDeliveries(ctx.principal, tenantId, ids) };
    }),
  };
}

/** Shape checks of the choices; the domain checks the rest (channel fits the identifier, notice is current). */
function choicesFromProto(req: SignUpRequest, tenantId: string): SignUpChoiceInput[] {
  const v: FieldViolation[] = [];
  const out: SignUpChoiceInput[] = [];
  for (const [i, c] of req.choices.entries()) {
    const purposeId = purposeIdOf(c.purpose, tenantId, `choices[${i}].purpose`, v);
    const channel = channels.toDomain(c.channel);
    if (!channel || channel === 'ANY') v.push({ field: `choices[${i}].channel`, reason: 'REQUIRED', description: 'WHATSAPP, SMS or EMAIL' });
    const notice = parseNoticeName(c.notice);
    if (!notice || notice.tenantId !== tenantId) v.push({ field: `choices[${i}].notice`, reason: c.notice ? 'INVALID_NAME' : 'REQUIRED', description: `the notice shown: tenants/${tenantId}/purposes/{purpose}/notices/{version}` });
    if (purposeId && channel && channel !== 'ANY' && notice) out.push({ purposeId, channel, notice: { purposeId: notice.purposeId, version: notice.version } });
  }
  if (v.length > 0) throw invalidArgument(v);
  return out;
}

function evidenceFromProto(e: PbEvidence | undefined) {
  return {
    sourceIp: e?.sourceIp || undefined,
    userAgent: e?.userAgent || undefined,
    pageUrl: e?.pageUrl || undefined,
    inboundMessageId: e?.inboundMessageId || undefined,
    freeText: e?.freeText || undefined,
  };
}
