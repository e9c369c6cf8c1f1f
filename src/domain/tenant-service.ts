import { encodeConsistencyToken } from './consistency';
import { LRUCache } from 'lru-cache';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant, authorizeTenantCreation } from './authorization';
import { Clock } from './clock';
import { alreadyExists, DomainError, failedPrecondition, FieldViolation, invalidArgument, notFound } from '../shared/errors';
import { DEFAULT_SELF_SERVICE_SETTINGS, DEFAULT_TENANT_SETTINGS, LinkVerifiableKind, SelfServiceSettings, Tenant, TenantSettings } from './model';
import { AuditTrail } from '../audit/audit-types';
import { PurposeRepository, TenantRecord, TenantRepository } from './ports';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { sha256Hex } from '../shared/hashing';
import { Principal } from './principal';
import { names, PURPOSE_ID, TENANT_ID } from './resource-names';
import { normaliseKeyword } from './keywords';
import { checkRequestId } from './request-id';
import { characterCount } from '../shared/text';
import { svgActiveContent } from './svg-logo';

export const SETTINGS_FIELDS = [
  'serviceWindowMs',
  'optOutKeywords',
  'optInKeywords',
  'defaultConsentValidityMs',
  'purposeConsentValidityMs',
  'defaultConsentValidityMonths',
  'purposeConsentValidityMonths',
  'selfService',
] as const;
type TopLevelSettingsField = (typeof SETTINGS_FIELDS)[number];

/**
 * Fields of the self-service settings an update mask may name one by one ("self_service.brand_color");
 * `logo` stands for the logo and its content type together (they are valid only as a pair).
 */
export const SELF_SERVICE_FIELDS = [
  'brandName',
  'brandColor',
  'logo',
  'languages',
  'whatsappNumber',
  'smsNumber',
  'confirmationTtlMs',
  'linkVerifies',
  'maxPreferenceLinkTtlMs',
  'embedOrigins',
] as const;
export type SelfServiceField = (typeof SELF_SERVICE_FIELDS)[number];
export const SELF_SERVICE_WIRE_NAMES: Record<SelfServiceField, string> = {
  brandName: 'brand_name',
  brandColor: 'brand_color',
  logo: 'logo',
  languages: 'languages',
  whatsappNumber: 'whatsapp_number',
  smsNumber: 'sms_number',
  confirmationTtlMs: 'confirmation_ttl',
  linkVerifies: 'link_verifies',
  maxPreferenceLinkTtlMs: 'max_preference_link_ttl',
  embedOrigins: 'embed_origins',
};
/** A settings field an update names: a top-level one, or one field of the self-service settings. */
export type SettingsField = TopLevelSettingsField | `selfService.${SelfServiceField}`;

/** Wire names of the settings fields, for field violations and update masks. */
export const SETTINGS_WIRE_NAMES: Record<TopLevelSettingsField, string> = {
  serviceWindowMs: 'service_window',
  optOutKeywords: 'opt_out_keywords',
  optInKeywords: 'opt_in_keywords',
  defaultConsentValidityMs: 'default_consent_validity',
  purposeConsentValidityMs: 'purpose_consent_validity',
  defaultConsentValidityMonths: 'default_consent_validity_months',
  purposeConsentValidityMonths: 'purpose_consent_validity_months',
  selfService: 'self_service',
};

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const MAX_VALIDITY = 10 * 366 * DAY;
const MAX_VALIDITY_MONTHS = 120;
/** How long a process trusts its cached copy of a tenant; updates through this process evict at once. */
const TENANT_CACHE_TTL_MS = 500;

/** Creates tenants (with their key), reads them, and changes their settings. */
export class TenantService {
  private readonly cache = new LRUCache<string, Tenant>({ max: 10_000, ttl: TENANT_CACHE_TTL_MS });

  constructor(
    private readonly tx: TransactionRunner,
    private readonly tenants: TenantRepository,
    /** Which purpose ids exist (validity keys must name one); the purpose rows, not PurposeService, which depends on this. */
    private readonly purposes: Pick<PurposeRepository, 'existing'>,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly audit: AuditTrail,
  ) {}

  async create(
    principal: Principal,
    input: { tenantId: string; displayName: string; settings: Partial<TenantSettings>; requestId: string },
  ): Promise<Tenant> {
    const violations: FieldViolation[] = [];
    if (!TENANT_ID.test(input.tenantId)) {
      violations.push({
        field: 'tenant_id',
        reason: 'INVALID_ID',
        description: '3-63 characters: lower-case letters, digits and "-", starting with a letter',
      });
    }
    if (characterCount(input.displayName) > 200) violations.push({ field: 'display_name', reason: 'TOO_LONG', description: 'at most 200 characters' });
    checkRequestId(input.requestId, false, violations);
    const settings = validateSettings(
      { ...DEFAULT_TENANT_SETTINGS, ...input.settings, selfService: { ...DEFAULT_SELF_SERVICE_SETTINGS, ...input.settings.selfService } },
      'settings',
      violations,
    );
    // A new tenant has no purposes yet: validity per purpose is set once they exist.
    violations.push(...unknownPurposeKeys(settings, SETTINGS_FIELDS, 'settings', new Set()));
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenantCreation(principal, input.tenantId);

    const now = this.clock.now();
    return this.tx.write(async (tx) => {
      const existing = await this.tenants.find(tx, input.tenantId);
      if (existing) {
        if (existing.erasedAt !== null) throw tenantErasedError(input.tenantId);
        if (input.requestId && existing.createRequestId === input.requestId) return toTenant(existing);
        throw alreadyExists('TENANT', names.tenant(input.tenantId));
      }
      const record: TenantRecord = {
        id: input.tenantId,
        displayName: input.displayName || input.tenantId,
        settings,
        createRequestId: input.requestId || null,
        createdAt: now,
        updatedAt: now,
        erasedAt: null,
      };
      // Key first (another database): a crash in between leaves a key the next create reuses.
      await this.keys.createTenantKey(input.tenantId, now);
      await this.tenants.insert(tx, record);
      await this.audit.append(tx, input.tenantId, { type: 'TENANT_CREATED', time: now, principal: principal.id, payloadSha256: sha256Hex(JSON.stringify(settings)) });
      return toTenant(record);
    });
  }

  async get(principal: Principal, tenantId: string): Promise<Tenant> {
    authorizeTenant(principal, tenantId);
    return this.tx.read((tx) => this.require(tx, tenantId, false));
  }

  /** Updates the settings; returns the tenant as updated and the change's consistency token. */
  async updateSettings(principal: Principal, tenantId: string, patch: Partial<TenantSettings>, fields: SettingsField[]): Promise<{ tenant: Tenant; consistencyToken: string }> {
    authorizeTenant(principal, tenantId);
    const updated = await this.tx.write(async (tx) => {
      const current = await this.require(tx, tenantId, false);
      const merged: TenantSettings = { ...current.settings };
      for (const field of fields) applyField(merged, patch, field);
      const violations: FieldViolation[] = [];
      const settings = validateSettings(merged, 'settings', violations);
      const keys = [...Object.keys(settings.purposeConsentValidityMs), ...Object.keys(settings.purposeConsentValidityMonths)];
      violations.push(...unknownPurposeKeys(settings, fields, 'settings', await this.purposes.existing(tx, tenantId, keys)));
      if (violations.length > 0) throw invalidArgument(violations);
      const now = this.clock.now();
      await this.tenants.updateSettings(tx, tenantId, settings, now);
      const seq = await this.audit.append(tx, tenantId, { type: 'TENANT_SETTINGS_UPDATED', time: now, principal: principal.id, payloadSha256: sha256Hex(JSON.stringify(settings)) });
      return { tenant: { ...current, settings, updatedAt: now }, consistencyToken: encodeConsistencyToken(tenantId, seq + 1) };
    });
    this.cache.delete(tenantId);
    return updated;
  }

  /**
   * The settings in force at `at`: those of the tenant if they were already in force then, else
   * the version effective at `at` (or the first known one, for a time before it).
   */
  async settingsAt(tx: TxContext, tenant: Tenant, at: number): Promise<TenantSettings> {
    if (at >= tenant.updatedAt) return tenant.settings;
    return (await this.tenants.settingsAt(tx, tenant.id, at)) ?? (await this.tenants.settingsAt(tx, tenant.id, tenant.updatedAt)) ?? tenant.settings;
  }

  /**
   * The tenant from this process's cache (at most TENANT_CACHE_TTL_MS old) without a database
   * read, or undefined when it is not cached; TENANT_ERASED for a shredded one.
   */
  cached(tenantId: string): Tenant | undefined {
    const hit = this.cache.get(tenantId);
    if (hit && hit.erasedAt !== null) throw tenantErasedError(tenantId);
    return hit;
  }

  /** Forgets the cached copy (after a change made outside this service). */
  evict(tenantId: string): void {
    this.cache.delete(tenantId);
  }

  /**
   * The tenant, or NOT_FOUND; FAILED_PRECONDITION TENANT_ERASED once it was shredded. Hot paths (checks) pass `cached` and accept a copy up to
   * TENANT_CACHE_TTL_MS old; writes that depend on settings read the row in their transaction.
   */
  async require(tx: TxContext, tenantId: string, cached: boolean): Promise<Tenant> {
    if (cached) {
      const hit = this.cache.get(tenantId);
      if (hit && hit.erasedAt !== null) throw tenantErasedError(tenantId);
      if (hit) return hit;
    }
    const record = await this.tenants.find(tx, tenantId);
    if (!record) throw notFound('TENANT', names.tenant(tenantId));
    const tenant = toTenant(record);
    this.cache.set(tenantId, tenant);
    if (tenant.erasedAt !== null) throw tenantErasedError(tenantId);
    return tenant;
  }
}

/** Checks settings and returns them normalised (keywords trimmed and upper-cased, duplicates dropped). */
export function validateSettings(settings: TenantSettings, prefix: string, violations: FieldViolation[]): TenantSettings {
  const at = (field: TopLevelSettingsField) => `${prefix}.${SETTINGS_WIRE_NAMES[field]}`;
  if (!Number.isFinite(settings.serviceWindowMs) || settings.serviceWindowMs < MINUTE || settings.serviceWindowMs > 7 * DAY) {
    violations.push({ field: at('serviceWindowMs'), reason: 'OUT_OF_RANGE', description: 'must be between 1 minute and 7 days' });
  }
  const keywords = (field: 'optOutKeywords' | 'optInKeywords') => {
    const list = [...new Set(settings[field].map(normaliseKeyword))];
    if (list.length > 50) violations.push({ field: at(field), reason: 'TOO_MANY', description: 'at most 50 keywords' });
    if (list.some((k) => k.length === 0 || k.length > 32 || /\s/.test(k))) {
      violations.push({ field: at(field), reason: 'INVALID_KEYWORD', description: 'keywords are single words of 1-32 characters' });
    }
    return list;
  };
  const optOutKeywords = keywords('optOutKeywords');
  // Withdrawal must stay as easy as consent (Art. 7(3)); messaging platforms require STOP handling.
  if (optOutKeywords.length === 0) {
    violations.push({ field: at('optOutKeywords'), reason: 'REQUIRED', description: 'at least one opt-out keyword is required' });
  }
  const optInKeywords = keywords('optInKeywords');
  const overlap = optInKeywords.filter((k) => optOutKeywords.includes(k));
  if (overlap.length > 0) {
    violations.push({ field: at('optInKeywords'), reason: 'KEYWORD_ON_BOTH_LISTS', description: `also an opt-out keyword: ${overlap.join(', ')}` });
  }
  const selfService = validateSelfService(settings.selfService, at('selfService'), violations);
  const validity = (value: number) => Number.isFinite(value) && value >= 0 && value <= MAX_VALIDITY;
  const validMonths = (value: number) => Number.isInteger(value) && value >= 0 && value <= MAX_VALIDITY_MONTHS;
  if (!validity(settings.defaultConsentValidityMs)) {
    violations.push({ field: at('defaultConsentValidityMs'), reason: 'OUT_OF_RANGE', description: 'must be between 0 and 10 years' });
  }
  if (!validMonths(settings.defaultConsentValidityMonths)) {
    violations.push({ field: at('defaultConsentValidityMonths'), reason: 'OUT_OF_RANGE', description: 'must be between 0 and 120 months' });
  } else if (settings.defaultConsentValidityMonths > 0 && settings.defaultConsentValidityMs > 0) {
    violations.push({
      field: at('defaultConsentValidityMonths'),
      reason: 'CONFLICTING_VALIDITY',
      description: 'give the default validity either as a duration (default_consent_validity) or in months, not both',
    });
  }
  for (const [purposeId, ms] of Object.entries(settings.purposeConsentValidityMs)) {
    if (!PURPOSE_ID.test(purposeId) || !validity(ms)) {
      violations.push({
        field: `${at('purposeConsentValidityMs')}[${JSON.stringify(purposeId)}]`,
        reason: 'INVALID_VALIDITY',
        description: 'keys are purpose ids; values between 0 and 10 years',
      });
    }
  }
  for (const [purposeId, months] of Object.entries(settings.purposeConsentValidityMonths)) {
    const field = `${at('purposeConsentValidityMonths')}[${JSON.stringify(purposeId)}]`;
    if (!PURPOSE_ID.test(purposeId) || !validMonths(months)) {
      violations.push({ field, reason: 'INVALID_VALIDITY', description: 'keys are purpose ids; values between 0 and 120 months' });
    } else if (purposeId in settings.purposeConsentValidityMs) {
      violations.push({ field, reason: 'CONFLICTING_VALIDITY', description: 'this purpose also has a validity in purpose_consent_validity; give one of the two' });
    }
  }
  return { ...settings, optOutKeywords, optInKeywords, selfService };
}

/**
 * Sets one field of `merged` from `patch`, or its default when the patch leaves it unset (a masked
 * field without a value goes back to its default). A self-service field is set alone; `selfService`
 * replaces the whole group.
 */
function applyField(merged: TenantSettings, patch: Partial<TenantSettings>, field: SettingsField): void {
  if (field === 'selfService') {
    merged.selfService = { ...DEFAULT_SELF_SERVICE_SETTINGS, ...patch.selfService };
  } else if (field.startsWith('selfService.')) {
    const sub = field.slice('selfService.'.length) as SelfServiceField;
    const from: Partial<SelfServiceSettings> = patch.selfService ?? {};
    const keys: Array<keyof SelfServiceSettings> = sub === 'logo' ? ['logoBase64', 'logoContentType'] : [sub];
    const next = { ...merged.selfService } as Record<keyof SelfServiceSettings, unknown>;
    for (const key of keys) next[key] = from[key] ?? DEFAULT_SELF_SERVICE_SETTINGS[key];
    merged.selfService = next as unknown as SelfServiceSettings;
  } else {
    const top = field as TopLevelSettingsField;
    (merged as unknown as Record<string, unknown>)[top] = patch[top] ?? DEFAULT_TENANT_SETTINGS[top];
  }
}

const HOUR = 60 * MINUTE;
export const MAX_LOGO_BYTES = 32 * 1024;
export const SELF_SERVICE_LANGUAGES = ['de', 'en'] as const;
const LINK_VERIFIABLE: readonly LinkVerifiableKind[] = ['ACCESS', 'PORTABILITY', 'ERASURE'];
const E164 = /^\+[1-9][0-9]{6,14}$/;

/**
 * Checks the privacy center's settings and returns them normalised (colour lower-cased, origins in
 * their canonical form). The brand colour must carry white text (WCAG AA, contrast 4.5:1), so a
 * tenant cannot make its own sign-up page unreadable; the logo is checked to be what it says it is,
 * and an SVG logo to hold no script (it is also served under a sandboxing CSP).
 */
function validateSelfService(s: SelfServiceSettings, prefix: string, violations: FieldViolation[]): SelfServiceSettings {
  const at = (field: string) => `${prefix}.${field}`;
  if (s.brandName.length > 100 || /[\u0000-\u001f\u007f]/.test(s.brandName)) {
    violations.push({ field: at('brand_name'), reason: 'INVALID_NAME', description: 'at most 100 characters, no control characters' });
  }
  const brandColor = s.brandColor.toLowerCase();
  if (!/^#[0-9a-f]{6}$/.test(brandColor)) {
    violations.push({ field: at('brand_color'), reason: 'INVALID_COLOR', description: 'must be "#rrggbb"' });
  } else if (contrastWithWhite(brandColor) < 4.5) {
    violations.push({ field: at('brand_color'), reason: 'LOW_CONTRAST', description: `white text on it has contrast ${contrastWithWhite(brandColor).toFixed(2)}:1; at least 4.5:1 is needed (WCAG AA)` });
  }
  if (s.logoBase64 !== '' || s.logoContentType !== '') {
    const logo = Buffer.from(s.logoBase64, 'base64');
    if (logo.length === 0) violations.push({ field: at('logo'), reason: 'REQUIRED', description: 'logo_content_type is set without a logo' });
    else if (logo.length > MAX_LOGO_BYTES) violations.push({ field: at('logo'), reason: 'TOO_LARGE', description: `at most ${MAX_LOGO_BYTES} bytes` });
    else if (s.logoContentType === 'image/png') {
      if (!logo.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) violations.push({ field: at('logo'), reason: 'NOT_PNG', description: 'is not a PNG image' });
    } else if (s.logoContentType === 'image/svg+xml') {
      const text = logo.toString('utf8');
      if (!/^\s*(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*<svg[\s>]/i.test(text)) violations.push({ field: at('logo'), reason: 'NOT_SVG', description: 'is not an SVG image' });
      else {
        const found = svgActiveContent(text);
        if (found) violations.push({ field: at('logo'), reason: 'ACTIVE_CONTENT', description: `an SVG logo may hold drawing only (no script, event handler, animation, foreign content, external reference or loading style); found ${found}` });
      }
    } else {
      violations.push({ field: at('logo_content_type'), reason: 'UNSUPPORTED_TYPE', description: 'must be image/png or image/svg+xml' });
    }
  }
  const languages = s.languages;
  if (languages.length === 0) violations.push({ field: at('languages'), reason: 'REQUIRED', description: 'at least one language' });
  else if (languages.some((l) => !(SELF_SERVICE_LANGUAGES as readonly string[]).includes(l)) || new Set(languages).size !== languages.length) {
    violations.push({ field: at('languages'), reason: 'UNSUPPORTED_LANGUAGE', description: `each of ${SELF_SERVICE_LANGUAGES.join(', ')}, once` });
  }
  for (const field of ['whatsappNumber', 'smsNumber'] as const) {
    if (s[field] !== '' && !E164.test(s[field])) {
      violations.push({ field: at(SELF_SERVICE_WIRE_NAMES[field]), reason: 'INVALID_PHONE_NUMBER', description: 'must be an E.164 number such as +4930123456' });
    }
  }
  if (!Number.isFinite(s.confirmationTtlMs) || s.confirmationTtlMs < 10 * MINUTE || s.confirmationTtlMs > 7 * DAY) {
    violations.push({ field: at('confirmation_ttl'), reason: 'OUT_OF_RANGE', description: 'must be between 10 minutes and 7 days' });
  }
  if (s.linkVerifies.some((k) => !LINK_VERIFIABLE.includes(k)) || new Set(s.linkVerifies).size !== s.linkVerifies.length) {
    violations.push({ field: at('link_verifies'), reason: 'INVALID_KIND', description: `each of ${LINK_VERIFIABLE.join(', ')}, once` });
  }
  if (!Number.isFinite(s.maxPreferenceLinkTtlMs) || s.maxPreferenceLinkTtlMs < HOUR || s.maxPreferenceLinkTtlMs > 90 * DAY) {
    violations.push({ field: at('max_preference_link_ttl'), reason: 'OUT_OF_RANGE', description: 'must be between 1 hour and 90 days' });
  }
  const embedOrigins: string[] = [];
  if (s.embedOrigins.length > 10) violations.push({ field: at('embed_origins'), reason: 'TOO_MANY', description: 'at most 10 origins' });
  s.embedOrigins.forEach((origin, i) => {
    const canonical = httpsOrigin(origin);
    if (canonical === null) violations.push({ field: `${at('embed_origins')}[${i}]`, reason: 'INVALID_ORIGIN', description: 'must be an https origin such as https://shop.example (no path, no wildcard)' });
    else if (!embedOrigins.includes(canonical)) embedOrigins.push(canonical);
  });
  return { ...s, brandColor, embedOrigins };
}

/** The canonical form of an https origin ("https://host[:port]"), or null. */
function httpsOrigin(value: string): string | null {
  if (value.length > 200 || value.includes('*')) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' || url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) return null;
  if (value.replace(/\/$/, '').toLowerCase() !== url.origin.toLowerCase()) return null;
  return url.origin;
}

/** WCAG 2 contrast ratio of white text on the colour "#rrggbb". */
function contrastWithWhite(hex: string): number {
  const channel = (i: number) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
  return 1.05 / (luminance + 0.05);
}

/**
 * Purpose ids used as validity keys that name no purpose of the tenant: a typo there would mean a
 * consent that never expires. Checked for the maps a call changes (a stored key whose purpose is
 * gone does not block an unrelated change).
 */
function unknownPurposeKeys(settings: TenantSettings, fields: readonly SettingsField[], prefix: string, known: ReadonlySet<string>): FieldViolation[] {
  const violations: FieldViolation[] = [];
  for (const field of ['purposeConsentValidityMs', 'purposeConsentValidityMonths'] as const) {
    if (!(fields as readonly string[]).includes(field)) continue;
    for (const purposeId of Object.keys(settings[field])) {
      if (PURPOSE_ID.test(purposeId) && !known.has(purposeId)) {
        violations.push({
          field: `${prefix}.${SETTINGS_WIRE_NAMES[field]}[${JSON.stringify(purposeId)}]`,
          reason: 'PURPOSE_NOT_FOUND',
          description: 'names no purpose of this tenant (create the purpose first)',
        });
      }
    }
  }
  return violations;
}

function toTenant(record: TenantRecord): Tenant {
  return {
    id: record.id,
    displayName: record.displayName,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    settings: record.settings,
    erasedAt: record.erasedAt,
  };
}

/** The error every call for a shredded tenant gets. */
export function tenantErasedError(tenantId: string): DomainError {
  return failedPrecondition('TENANT_ERASED', `tenants/${tenantId} was erased`, { tenant: `tenants/${tenantId}` });
}

