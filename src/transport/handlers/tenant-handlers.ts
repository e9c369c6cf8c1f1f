import { invalidArgument, Violations } from '../../shared/errors';
import { LinkVerifiableKind, SelfServiceSettings, Tenant, TenantSettings } from '../../domain/model';
import { names, parseSettingsName, parseTenantName } from '../../domain/resource-names';
import { SELF_SERVICE_FIELDS, SELF_SERVICE_WIRE_NAMES, SelfServiceField, SETTINGS_FIELDS, SETTINGS_WIRE_NAMES, SettingsField, TenantService } from '../../domain/tenant-service';
import {
  CreateTenantRequest,
  CreateTenantResponse,
  GetTenantRequest,
  GetTenantResponse,
  Tenant as PbTenant,
  SelfServiceSettings as PbSelfServiceSettings,
  TenantSettings as PbSettings,
  TenantServiceServer,
  UpdateTenantSettingsRequest,
  UpdateTenantSettingsResponse,
} from '../../gen/consent/v1/tenant';
import { CallContext, CallPipeline } from '../call-pipeline';
import { durationToMs, msToDate, msToDuration } from '../mappers';

/** consent.v1.TenantService: translate, call TenantService, map back. */
export function tenantHandlers(pipeline: CallPipeline, tenants: TenantService): TenantServiceServer {
  return {
    createTenant: pipeline.unary('CreateTenant', async (req: CreateTenantRequest, ctx: CallContext): Promise<CreateTenantResponse> => {
      const tenant = await tenants.create(ctx.principal, {
        tenantId: req.tenantId,
        displayName: req.displayName,
        settings: settingsFromProto(req.settings, populatedFields(req.settings)),
        requestId: req.requestId,
      });
      return { tenant: tenantToProto(tenant) };
    }),

    getTenant: pipeline.unary('GetTenant', async (req: GetTenantRequest, ctx: CallContext): Promise<GetTenantResponse> => {
      const tenantId = requireName(parseTenantName(req.name), 'name', 'tenants/{tenant}');
      return { tenant: tenantToProto(await tenants.get(ctx.principal, tenantId)) };
    }),

    updateTenantSettings: pipeline.unary(
      'UpdateTenantSettings',
      async (req: UpdateTenantSettingsRequest, ctx: CallContext): Promise<UpdateTenantSettingsResponse> => {
        const tenantId = requireName(parseSettingsName(req.settings?.name ?? ''), 'settings.name', 'tenants/{tenant}/settings');
        const fields = maskFields(req.updateMask, req.settings);
        const { tenant, consistencyToken } = await tenants.updateSettings(ctx.principal, tenantId, settingsFromProto(req.settings, fields), fields);
        return { settings: settingsToProto(tenant), consistencyToken };
      },
    ),
  };
}

function requireName<T>(parsed: T | null, field: string, pattern: string): T {
  if (parsed === null) throw invalidArgument([{ field, reason: 'INVALID_NAME', description: `must be ${pattern}` }]);
  return parsed;
}

/** AIP-134: an empty mask means every field that is populated in the request. */
function maskFields(mask: string[] | undefined, settings: PbSettings | undefined): SettingsField[] {
  if (!mask || mask.length === 0) return populatedFields(settings);
  const byWire = new Map<string, SettingsField>(SETTINGS_FIELDS.map((f) => [SETTINGS_WIRE_NAMES[f], f]));
  for (const f of SELF_SERVICE_FIELDS) byWire.set(`self_service.${SELF_SERVICE_WIRE_NAMES[f]}`, `selfService.${f}`);
  // The logo and its content type are one field: either path names both.
  byWire.set('self_service.logo_content_type', 'selfService.logo');
  const v = new Violations();
  const fields: SettingsField[] = [];
  for (const path of mask) {
    const field = byWire.get(path);
    if (field) fields.push(field);
    else v.add('update_mask', 'UNKNOWN_FIELD', `"${path}" is not an updatable field (${[...byWire.keys()].join(', ')})`);
  }
  v.throwIfAny();
  return fields;
}

function populatedFields(s: PbSettings | undefined): SettingsField[] {
  if (!s) return [];
  const fields: SettingsField[] = [];
  if (s.serviceWindow) fields.push('serviceWindowMs');
  if (s.optOutKeywords.length > 0) fields.push('optOutKeywords');
  if (s.optInKeywords.length > 0) fields.push('optInKeywords');
  if (s.defaultConsentValidity) fields.push('defaultConsentValidityMs');
  if (Object.keys(s.purposeConsentValidity).length > 0) fields.push('purposeConsentValidityMs');
  if (s.defaultConsentValidityMonths !== 0) fields.push('defaultConsentValidityMonths');
  if (Object.keys(s.purposeConsentValidityMonths).length > 0) fields.push('purposeConsentValidityMonths');
  // A self-service message without a mask sets the fields it populates, one by one (AIP-134).
  if (s.selfService) fields.push(...populatedSelfServiceFields(s.selfService).map((f) => `selfService.${f}` as const));
  return fields;
}

function populatedSelfServiceFields(s: PbSelfServiceSettings): SelfServiceField[] {
  const set: Record<SelfServiceField, boolean> = {
    brandName: s.brandName !== '',
    brandColor: s.brandColor !== '',
    logo: s.logo.length > 0 || s.logoContentType !== '',
    languages: s.languages.length > 0,
    whatsappNumber: s.whatsappNumber !== '',
    smsNumber: s.smsNumber !== '',
    confirmationTtlMs: s.confirmationTtl !== undefined,
    linkVerifies: s.linkVerifies.length > 0,
    maxPreferenceLinkTtlMs: s.maxPreferenceLinkTtl !== undefined,
    embedOrigins: s.embedOrigins.length > 0,
  };
  return SELF_SERVICE_FIELDS.filter((f) => set[f]);
}

/** The self-service fields of the message that are populated; unset ones are left out (the domain fills in defaults). */
function selfServiceFromProto(s: PbSelfServiceSettings | undefined): Partial<SelfServiceSettings> {
  if (!s) return {};
  const out: Partial<SelfServiceSettings> = {};
  if (s.brandName !== '') out.brandName = s.brandName;
  if (s.brandColor !== '') out.brandColor = s.brandColor;
  if (s.logo.length > 0 || s.logoContentType !== '') {
    out.logoBase64 = Buffer.from(s.logo).toString('base64');
    out.logoContentType = s.logoContentType;
  }
  if (s.languages.length > 0) out.languages = [...s.languages];
  if (s.whatsappNumber !== '') out.whatsappNumber = s.whatsappNumber;
  if (s.smsNumber !== '') out.smsNumber = s.smsNumber;
  const ttl = durationToMs(s.confirmationTtl);
  if (ttl !== undefined) out.confirmationTtlMs = ttl;
  // Unknown kinds pass through to the domain, which names them in its violation.
  if (s.linkVerifies.length > 0) out.linkVerifies = s.linkVerifies as LinkVerifiableKind[];
  const linkTtl = durationToMs(s.maxPreferenceLinkTtl);
  if (linkTtl !== undefined) out.maxPreferenceLinkTtlMs = linkTtl;
  if (s.embedOrigins.length > 0) out.embedOrigins = [...s.embedOrigins];
  return out;
}

function selfServiceToProto(s: SelfServiceSettings): PbSelfServiceSettings {
  return {
    brandName: s.brandName,
    brandColor: s.brandColor,
    logo: Buffer.from(s.logoBase64, 'base64'),
    logoContentType: s.logoContentType,
    languages: s.languages,
    whatsappNumber: s.whatsappNumber,
    smsNumber: s.smsNumber,
    confirmationTtl: msToDuration(s.confirmationTtlMs),
    linkVerifies: s.linkVerifies,
    maxPreferenceLinkTtl: msToDuration(s.maxPreferenceLinkTtlMs),
    embedOrigins: s.embedOrigins,
  };
}

function settingsFromProto(s: PbSettings | undefined, fields: SettingsField[]): Partial<TenantSettings> {
  const out: Partial<TenantSettings> = {};
  if (!s) return out;
  for (const field of fields) {
    switch (field) {
      case 'serviceWindowMs':
        // Unset in a mask means "back to the default" (the domain fills it in).
        out.serviceWindowMs = durationToMs(s.serviceWindow);
        break;
      case 'optOutKeywords':
        out.optOutKeywords = s.optOutKeywords;
        break;
      case 'optInKeywords':
        out.optInKeywords = s.optInKeywords;
        break;
      case 'defaultConsentValidityMs':
        out.defaultConsentValidityMs = durationToMs(s.defaultConsentValidity);
        break;
      case 'purposeConsentValidityMs':
        out.purposeConsentValidityMs = Object.fromEntries(
          Object.entries(s.purposeConsentValidity).map(([k, d]) => [k, durationToMs(d) ?? 0]),
        );
        break;
      case 'defaultConsentValidityMonths':
        out.defaultConsentValidityMonths = s.defaultConsentValidityMonths;
        break;
      case 'purposeConsentValidityMonths':
        out.purposeConsentValidityMonths = { ...s.purposeConsentValidityMonths };
        break;
      default:
        // 'selfService' and 'selfService.*': the domain picks the named fields from the group.
        out.selfService = selfServiceFromProto(s.selfService) as SelfServiceSettings;
    }
  }
  return out;
}

function settingsToProto(t: Tenant): PbSettings {
  const s = t.settings;
  return {
    name: names.settings(t.id),
    serviceWindow: msToDuration(s.serviceWindowMs),
    optOutKeywords: s.optOutKeywords,
    optInKeywords: s.optInKeywords,
    defaultConsentValidity: msToDuration(s.defaultConsentValidityMs),
    purposeConsentValidity: Object.fromEntries(Object.entries(s.purposeConsentValidityMs).map(([k, ms]) => [k, msToDuration(ms)])),
    updateTime: msToDate(t.updatedAt),
    defaultConsentValidityMonths: s.defaultConsentValidityMonths,
    purposeConsentValidityMonths: { ...s.purposeConsentValidityMonths },
    selfService: selfServiceToProto(s.selfService),
  };
}

function tenantToProto(t: Tenant): PbTenant {
  return { name: names.tenant(t.id), displayName: t.displayName, createTime: msToDate(t.createdAt), settings: settingsToProto(t) };
}
