import { createHash, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PurposeCategory } from '../../gen/consent/v1/common';
import { JobState, KeyEpoch, KeyEpochState, KeyRotation } from '../../gen/consent/v1/key';
import { Notice, Purpose } from '../../gen/consent/v1/purpose';
import { SelfServiceSettings, Tenant, TenantSettings } from '../../gen/consent/v1/tenant';
import { Duration } from '../../gen/google/protobuf/duration';
import { ApiError } from '../api-client';
import { httpStatusOf } from '../http-errors';
import type { Credential } from '../principal';
import type { ConsolePageContext } from '../server';

/**
 * Issue 19 point 5: the tenant admin pages. The tenant's settings (GetTenant, changed with
 * UpdateTenantSettings), its purposes (ListPurposes, CreatePurpose) and each purpose's notice
 * versions (ListNotices, PublishNotice: the published text and its SHA-256 shown afterwards), and
 * the tenant key's state (GetTenantKeyInfo, GetKeyRotation, RotateTenantKey behind a confirmation
 * page). ShredTenant is deliberately not offered: destroying a whole tenant is for consentctl.
 * Forms are offered to the `admin` role only (the API's role table: security.md); the API
 * decides either way and a refusal is shown with its status, reason and message.
 */

type TenantParams = { tenant: string };
type PurposeParams = { tenant: string; purpose: string };
type RotationParams = { tenant: string; rotation: string };

const TENANT = { type: 'string', pattern: '^[a-z][a-z0-9-]{1,62}$' } as const;
const PURPOSE = { type: 'string', pattern: '^[a-z][a-z0-9-]{0,62}$' } as const;
const ROTATION = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } as const;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The most purposes or notice versions a page reads (pages of 500). */
const LIST_LIMIT = 2000;

export const CATEGORY_OPTIONS: Array<[string, string, PurposeCategory]> = [
  ['marketing', 'marketing (only with a confirmed, unexpired opt-in)', PurposeCategory.PURPOSE_CATEGORY_MARKETING],
  ['utility', 'utility (inside a service window or with an opt-in)', PurposeCategory.PURPOSE_CATEGORY_UTILITY],
  ['authentication', 'authentication (one-time codes: only with an opt-in)', PurposeCategory.PURPOSE_CATEGORY_AUTHENTICATION],
  ['service', 'service (replies: only inside a service window)', PurposeCategory.PURPOSE_CATEGORY_SERVICE],
];
const categoryLabel = (c: PurposeCategory): string => CATEGORY_OPTIONS.find(([, , v]) => v === c)?.[0] ?? 'unspecified';
const EPOCH_STATES: Record<number, string> = {
  [KeyEpochState.KEY_EPOCH_STATE_ACTIVE]: 'active',
  [KeyEpochState.KEY_EPOCH_STATE_RETIRING]: 'retiring (being replaced)',
  [KeyEpochState.KEY_EPOCH_STATE_DESTROYED]: 'destroyed',
};
const JOB_STATES: Record<number, string> = {
  [JobState.JOB_STATE_RUNNING]: 'running',
  [JobState.JOB_STATE_SUCCEEDED]: 'succeeded',
  [JobState.JOB_STATE_FAILED]: 'failed',
};

const isAdmin = (credential: Credential): boolean => credential.roles.includes('admin');
const idOf = (name: string): string => name.slice(name.lastIndexOf('/') + 1);
const idempotencyKey = (submitted: unknown): string => (REQUEST_ID.test(String(submitted ?? '')) ? String(submitted) : `console-${randomUUID()}`);

// Durations as people type them: "24h", "90m", "730d", "1d12h"; validity also in calendar months: "24mo".
const DURATION = /^(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,9})s)?$/;

/** "1d12h" for 129,600 s; "" for no duration. */
export function formatDuration(d: Duration | undefined): string {
  let s = d ? Math.round(d.seconds + d.nanos / 1e9) : 0;
  if (s <= 0) return '';
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.join('');
}

/** Seconds of "1d12h" and the like; undefined when it is not such a duration. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim().toLowerCase());
  if (!m || !text.trim()) return undefined;
  const [d, h, min, s] = m.slice(1).map((x) => Number(x ?? 0));
  return d * 86_400 + h * 3600 + min * 60 + s;
}

/** A validity as shown in the form: "24mo" (calendar months), "730d", or "" (none). */
type Validity = { months: number } | { seconds: number } | undefined;
function parseValidity(text: string): Validity | 'bad' {
  const t = text.trim().toLowerCase();
  if (!t) return undefined;
  const months = /^(\d{1,4})\s*(?:mo|months?)$/.exec(t);
  if (months) return { months: Number(months[1]) };
  const seconds = parseDuration(t);
  return seconds === undefined ? 'bad' : { seconds };
}

const keywordsOf = (text: string): string[] => text.split(/[\s,]+/).filter((k) => k.length > 0);

/** The settings as the form shows them (and sends back as the "orig_" values, to change only what was edited). */
export function settingsForm(s: TenantSettings | undefined): Record<string, string> {
  if (!s) return {};
  const perPurpose = [
    ...Object.entries(s.purposeConsentValidity).map(([id, d]) => `${id} ${formatDuration(d)}`),
    ...Object.entries(s.purposeConsentValidityMonths).map(([id, m]) => `${id} ${m}mo`),
  ].sort();
  return {
    service_window: formatDuration(s.serviceWindow),
    opt_out_keywords: s.optOutKeywords.join(' '),
    opt_in_keywords: s.optInKeywords.join(' '),
    default_validity: s.defaultConsentValidityMonths ? `${s.defaultConsentValidityMonths}mo` : formatDuration(s.defaultConsentValidity),
    purpose_validity: perPurpose.join('\n'),
    ...selfServiceForm(s.selfService),
  };
}

/**
 * The privacy center's settings (TenantSettings.self_service) as form fields: form field, the API
 * field under `self_service`, and how the text is read. The logo is not edited here (it is bytes;
 * the page says whether one is set and how to change it).
 */
const SELF_SERVICE_FORM = [
  ['pc_brand_name', 'brand_name', 'text'],
  ['pc_brand_color', 'brand_color', 'text'],
  ['pc_languages', 'languages', 'words'],
  ['pc_whatsapp_number', 'whatsapp_number', 'text'],
  ['pc_sms_number', 'sms_number', 'text'],
  ['pc_confirmation_ttl', 'confirmation_ttl', 'duration'],
  ['pc_link_verifies', 'link_verifies', 'words'],
  ['pc_max_preference_link_ttl', 'max_preference_link_ttl', 'duration'],
  ['pc_embed_origins', 'embed_origins', 'lines'],
] as const;
type SelfServiceFormField = (typeof SELF_SERVICE_FORM)[number][0];

function selfServiceForm(s: SelfServiceSettings | undefined): Record<SelfServiceFormField, string> {
  return {
    pc_brand_name: s?.brandName ?? '',
    pc_brand_color: s?.brandColor ?? '',
    pc_languages: (s?.languages ?? []).join(' '),
    pc_whatsapp_number: s?.whatsappNumber ?? '',
    pc_sms_number: s?.smsNumber ?? '',
    pc_confirmation_ttl: formatDuration(s?.confirmationTtl),
    pc_link_verifies: (s?.linkVerifies ?? []).join(' '),
    pc_max_preference_link_ttl: formatDuration(s?.maxPreferenceLinkTtl),
    pc_embed_origins: (s?.embedOrigins ?? []).join('\n'),
  };
}

const SETTINGS_FIELDS = [
  'service_window',
  'opt_out_keywords',
  'opt_in_keywords',
  'default_validity',
  'purpose_validity',
  ...SELF_SERVICE_FORM.map(([f]) => f),
] as const;
type SettingsFormField = 'service_window' | 'opt_out_keywords' | 'opt_in_keywords' | 'default_validity' | 'purpose_validity' | SelfServiceFormField;

/** Which form field an API field violation ("settings.default_consent_validity_months") belongs to. */
export function formFieldOf(apiField: string): SettingsFormField | undefined {
  const f = apiField.replace(/^settings\./, '');
  if (f.startsWith('service_window')) return 'service_window';
  if (f.startsWith('opt_out_keywords')) return 'opt_out_keywords';
  if (f.startsWith('opt_in_keywords')) return 'opt_in_keywords';
  if (f.startsWith('default_consent_validity')) return 'default_validity';
  if (f.startsWith('purpose_consent_validity')) return 'purpose_validity';
  const sub = /^self_service\.([a-z_]+)/.exec(f)?.[1];
  return SELF_SERVICE_FORM.find(([, api]) => api === sub)?.[0];
}

/**
 * The UpdateTenantSettings request for the fields the person changed (compared with the values the
 * form was opened with), so that a field someone else changed meanwhile is not overwritten with a
 * stale value. Returns the form's own violations when a value cannot be read at all.
 */
export function settingsUpdate(
  tenant: string,
  body: Record<string, string>,
): { settings: TenantSettings; mask: string[]; violations: Array<{ field: string; description: string }> } {
  const settings = TenantSettings.fromPartial({ name: `tenants/${tenant}/settings` });
  const mask: string[] = [];
  const violations: Array<{ field: string; description: string }> = [];
  const changed = (f: SettingsFormField) => String(body[f] ?? '').trim() !== String(body[`orig_${f}`] ?? '').trim();
  const value = (f: SettingsFormField) => String(body[f] ?? '').trim();
  if (changed('service_window')) {
    const seconds = parseDuration(value('service_window'));
    if (seconds === undefined) violations.push({ field: 'settings.service_window', description: 'write a duration such as 24h, 90m or 2d' });
    else {
      settings.serviceWindow = { seconds, nanos: 0 };
      mask.push('service_window');
    }
  }
  for (const [f, key] of [['opt_out_keywords', 'optOutKeywords'], ['opt_in_keywords', 'optInKeywords']] as const) {
    if (!changed(f)) continue;
    settings[key] = keywordsOf(value(f));
    mask.push(f);
  }
  if (changed('default_validity')) {
    // One form field for the two API fields: both are masked, the one not given is cleared.
    const v = parseValidity(value('default_validity'));
    if (v === 'bad') violations.push({ field: 'settings.default_consent_validity', description: 'write a duration such as 730d, months such as 24mo, or nothing for no expiry' });
    else {
      if (v && 'months' in v) settings.defaultConsentValidityMonths = v.months;
      if (v && 'seconds' in v) settings.defaultConsentValidity = { seconds: v.seconds, nanos: 0 };
      mask.push('default_consent_validity', 'default_consent_validity_months');
    }
  }
  if (changed('purpose_validity')) {
    let ok = true;
    for (const line of value('purpose_validity').split(/\r?\n/)) {
      if (!line.trim()) continue;
      const m = /^\s*([^\s:=]+)\s*[:=]?\s*(\S+)\s*$/.exec(line);
      const v = m ? parseValidity(m[2]) : 'bad';
      if (!m || v === 'bad' || v === undefined) {
        ok = false;
        violations.push({ field: 'settings.purpose_consent_validity', description: 'one purpose per line: the purpose id and a duration (730d) or months (24mo)' });
        break;
      }
      if ('months' in v) settings.purposeConsentValidityMonths[m[1]] = v.months;
      else settings.purposeConsentValidity[m[1]] = { seconds: v.seconds, nanos: 0 };
    }
    if (ok) mask.push('purpose_consent_validity', 'purpose_consent_validity_months');
  }
  // Privacy center: each changed field masked on its own; an emptied field goes back to its default.
  const selfService = SelfServiceSettings.fromPartial({});
  for (const [f, api, kind] of SELF_SERVICE_FORM) {
    if (!changed(f)) continue;
    const text = value(f);
    switch (api) {
      case 'brand_name':
        selfService.brandName = text;
        break;
      case 'brand_color':
        selfService.brandColor = text;
        break;
      case 'whatsapp_number':
        selfService.whatsappNumber = text.replace(/[\s()-]/g, '');
        break;
      case 'sms_number':
        selfService.smsNumber = text.replace(/[\s()-]/g, '');
        break;
      case 'languages':
        selfService.languages = keywordsOf(text.toLowerCase());
        break;
      case 'link_verifies':
        selfService.linkVerifies = keywordsOf(text.toUpperCase());
        break;
      case 'embed_origins':
        selfService.embedOrigins = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
        break;
      case 'confirmation_ttl':
      case 'max_preference_link_ttl': {
        if (kind !== 'duration' || !text) break;
        const seconds = parseDuration(text);
        if (seconds === undefined) {
          violations.push({ field: `settings.self_service.${api}`, description: 'write a duration such as 24h, 90m or 30d, or nothing for the default' });
          continue;
        }
        if (api === 'confirmation_ttl') selfService.confirmationTtl = { seconds, nanos: 0 };
        else selfService.maxPreferenceLinkTtl = { seconds, nanos: 0 };
        break;
      }
    }
    mask.push(`self_service.${api}`);
  }
  if (mask.some((m) => m.startsWith('self_service.'))) settings.selfService = selfService;
  return { settings, mask, violations };
}

export function adminPages(app: FastifyInstance, ctx: ConsolePageContext): void {
  const { api, views } = ctx;
  const tenantParam = { type: 'object', properties: { tenant: TENANT }, required: ['tenant'] } as const;
  const purposeParam = { type: 'object', properties: { tenant: TENANT, purpose: PURPOSE }, required: ['tenant', 'purpose'] } as const;
  const rotationParam = { type: 'object', properties: { tenant: TENANT, rotation: ROTATION }, required: ['tenant', 'rotation'] } as const;

  /** A refused read: the error page with the API's status, and nothing else of the tenant. */
  const refused = (reply: FastifyReply, credential: Credential, tenant: string, heading: string, err: ApiError) => {
    reply.code(httpStatusOf(err));
    return reply.type('text/html').send(views.page('error', credential, { title: heading, heading, tenant, error: err }));
  };

  const listPurposes = async (tenant: string, credential: Credential): Promise<{ purposes: Purpose[]; truncated: boolean }> => {
    const purposes: Purpose[] = [];
    let pageToken = '';
    do {
      const page = await api.call(api.purposes, api.purposes.listPurposes, { parent: `tenants/${tenant}`, pageSize: 500, pageToken }, credential);
      purposes.push(...page.purposes);
      pageToken = page.nextPageToken;
    } while (pageToken && purposes.length < LIST_LIMIT);
    return { purposes, truncated: pageToken !== '' };
  };

  /**
   * The tenant page: settings and purposes. It opens with GetTenant (admin, DPO, auditor): a role
   * that may not read the tenant gets that refusal and nothing else.
   */
  const tenantPage = async (
    request: FastifyRequest<{ Params: TenantParams }>,
    reply: FastifyReply,
    opts: { settingsError?: ApiError; settingsForm?: Record<string, string>; purposeError?: ApiError; purposeForm?: Record<string, string> } = {},
  ) => {
    const { tenant } = request.params;
    const credential = ctx.credential(request);
    let found: Tenant;
    try {
      found = (await api.call(api.tenants, api.tenants.getTenant, { name: `tenants/${tenant}` }, credential)).tenant!;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return refused(reply, credential, tenant, `Administration of ${tenant}`, err);
    }
    let listed: { purposes: Purpose[]; truncated: boolean } = { purposes: [], truncated: false };
    let listError: ApiError | undefined;
    try {
      listed = await listPurposes(tenant, credential);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      listError = err;
    }
    const shown = opts.settingsError ?? opts.purposeError ?? listError;
    if (shown) reply.code(httpStatusOf(shown));
    const admin = isAdmin(credential);
    const current = settingsForm(found.settings);
    const fieldErrors: Record<string, string[]> = {};
    for (const v of opts.settingsError?.violations ?? []) {
      const f = formFieldOf(v.field);
      if (f) (fieldErrors[f] ??= []).push(`${v.field}: ${v.description}`);
    }
    const purposeFieldErrors: Record<string, string[]> = {};
    for (const v of opts.purposeError?.violations ?? []) {
      const f = v.field.replace(/^purpose\./, '');
      (purposeFieldErrors[f] ??= []).push(`${v.field}: ${v.description}`);
    }
    return reply.type('text/html').send(
      views.page('admin-tenant', credential, {
        title: `Administration of ${tenant}`,
        tenant,
        found,
        settings: found.settings,
        current,
        // After a refused update the form keeps what was typed, against the values it was opened with.
        form: opts.settingsForm ?? current,
        orig: opts.settingsForm ? Object.fromEntries(SETTINGS_FIELDS.map((f) => [f, String(opts.settingsForm![`orig_${f}`] ?? '')])) : current,
        fieldErrors,
        settingsError: opts.settingsError,
        purposes: listed.purposes.map((p) => ({ ...p, id: idOf(p.name), categoryText: categoryLabel(p.category) })),
        truncated: listed.truncated,
        listError,
        purposeError: opts.purposeError,
        purposeFieldErrors,
        purposeForm: opts.purposeForm ?? {},
        categoryOptions: CATEGORY_OPTIONS,
        admin,
        csrf: admin ? reply.generateCsrf({ userInfo: credential.who }) : '',
        settingsRequestKey: `console-${randomUUID()}`,
        purposeRequestId: idempotencyKey(opts.purposeForm?.request_id),
        duration: formatDuration,
        done: shown ? undefined : ctx.confirmations.take(request, reply, { settings: 'The settings were saved.', unchanged: 'Nothing was changed: the form held the settings as they were.' }),
      }),
    );
  };

  app.get('/tenants/:tenant/admin', { schema: { params: tenantParam } }, (request: FastifyRequest<{ Params: TenantParams; Querystring: { done?: string } }>, reply) => tenantPage(request, reply));

  app.post(
    '/tenants/:tenant/admin/settings',
    { schema: { params: tenantParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: TenantParams; Body: Record<string, string> }>, reply) => {
      const { tenant } = request.params;
      const body = request.body ?? {};
      const form = Object.fromEntries([...SETTINGS_FIELDS, ...SETTINGS_FIELDS.map((f) => `orig_${f}`)].map((f) => [f, String(body[f] ?? '')]));
      const update = settingsUpdate(tenant, body);
      if (update.violations.length > 0) {
        // The console could not read a value: nothing is sent, the field is marked like an API refusal.
        const described = update.violations.map((v) => `${v.field}: ${v.description}`).join('; ');
        return tenantPage(request, reply, { settingsError: new ApiError(3, 'INVALID_ARGUMENT', 'UNREADABLE_VALUE', `nothing was changed: ${described}`, update.violations), settingsForm: form });
      }
      if (update.mask.length === 0) return ctx.confirmations.redirect(reply, `/tenants/${tenant}/admin`, 'unchanged');
      try {
        await api.call(api.tenants, api.tenants.updateTenantSettings, { settings: update.settings, updateMask: update.mask }, ctx.credential(request));
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/admin`, 'settings');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return tenantPage(request, reply, { settingsError: err, settingsForm: form });
      }
    },
  );

  app.post(
    '/tenants/:tenant/admin/purposes',
    { schema: { params: tenantParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: TenantParams; Body: Record<string, string> }>, reply) => {
      const { tenant } = request.params;
      const body = request.body ?? {};
      const form = {
        purpose_id: String(body.purpose_id ?? '').trim(),
        display_name: String(body.display_name ?? '').trim(),
        category: String(body.category ?? ''),
        description: String(body.description ?? '').trim(),
        allowed_while_restricted: body.allowed_while_restricted === 'yes' ? 'yes' : '',
        request_id: idempotencyKey(body.request_id),
      };
      try {
        const created = await api.call(
          api.purposes,
          api.purposes.createPurpose,
          {
            parent: `tenants/${tenant}`,
            purposeId: form.purpose_id,
            purpose: Purpose.fromPartial({
              displayName: form.display_name,
              category: CATEGORY_OPTIONS.find(([k]) => k === form.category)?.[2] ?? PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED,
              description: form.description,
              allowedWhileRestricted: form.allowed_while_restricted === 'yes',
            }),
            requestId: form.request_id,
          },
          ctx.credential(request),
        );
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/admin/purposes/${idOf(created.purpose!.name)}`, 'created');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return tenantPage(request, reply, { purposeError: err, purposeForm: form });
      }
    },
  );

  /** A purpose and its notice versions (newest first), with the publish form for an admin. */
  const purposePage = async (request: FastifyRequest<{ Params: PurposeParams }>, reply: FastifyReply, error?: ApiError, form: Record<string, string> = {}) => {
    const { tenant, purpose } = request.params;
    const credential = ctx.credential(request);
    let found: Purpose | undefined;
    const notices: Notice[] = [];
    let truncated = false;
    try {
      // Same gate as the tenant page: the tenant must be readable by this person.
      await api.call(api.tenants, api.tenants.getTenant, { name: `tenants/${tenant}` }, credential);
      found = (await listPurposes(tenant, credential)).purposes.find((p) => idOf(p.name) === purpose);
      if (found) {
        let pageToken = '';
        do {
          const page = await api.call(api.purposes, api.purposes.listNotices, { parent: found.name, pageSize: 500, pageToken }, credential);
          notices.push(...page.notices);
          pageToken = page.nextPageToken;
        } while (pageToken && notices.length < LIST_LIMIT);
        truncated = pageToken !== '';
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return refused(reply, credential, tenant, `Purpose ${purpose}`, err);
    }
    if (!found) {
      return refused(reply, credential, tenant, `Purpose ${purpose}`, new ApiError(5, 'NOT_FOUND', 'PURPOSE_NOT_FOUND', `purpose tenants/${tenant}/purposes/${purpose} not found`));
    }
    if (error) reply.code(httpStatusOf(error));
    const query = (request.query ?? {}) as { published?: string; done?: string };
    const rows = notices.map((n) => ({
      ...n,
      // The console recomputes the hash of the text it received, so a reader sees that the two agree.
      consoleSha256: createHash('sha256').update(n.text, 'utf8').digest('hex'),
    }));
    const published = !error && /^\d{1,9}$/.test(String(query.published ?? '')) ? rows.find((n) => n.version === Number(query.published)) : undefined;
    const admin = isAdmin(credential);
    const fieldErrors: Record<string, string[]> = {};
    for (const v of error?.violations ?? []) (fieldErrors[v.field] ??= []).push(`${v.field}: ${v.description}`);
    return reply.type('text/html').send(
      views.page('admin-purpose', credential, {
        title: `Purpose ${purpose} of ${tenant}`,
        tenant,
        purposeId: purpose,
        purpose: found,
        categoryText: categoryLabel(found.category),
        notices: rows,
        truncated,
        published,
        done: error ? undefined : ctx.confirmations.take(request, reply, { created: 'The purpose was created. Publish the text of its notice below.' }),
        admin,
        csrf: admin ? reply.generateCsrf({ userInfo: credential.who }) : '',
        // PublishNotice requires an idempotency key: a fresh one per form, kept when the form comes back refused.
        requestId: idempotencyKey(form.request_id),
        form,
        fieldErrors,
        error,
      }),
    );
  };

  app.get('/tenants/:tenant/admin/purposes/:purpose', { schema: { params: purposeParam } }, (request: FastifyRequest<{ Params: PurposeParams; Querystring: { published?: string; done?: string } }>, reply) =>
    purposePage(request, reply),
  );

  app.post(
    '/tenants/:tenant/admin/purposes/:purpose/notices',
    { schema: { params: purposeParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: PurposeParams; Body: Record<string, string> }>, reply) => {
      const { tenant, purpose } = request.params;
      const body = request.body ?? {};
      // The text is published exactly as typed (its hash is over these bytes) except line ends:
      // browsers send a textarea's line breaks as CRLF, and the text is stored with LF as typed elsewhere.
      const form = { language: String(body.language ?? '').trim(), text: String(body.text ?? '').replace(/\r\n/g, '\n'), request_id: idempotencyKey(body.request_id) };
      try {
        const published = await api.call(
          api.purposes,
          api.purposes.publishNotice,
          { parent: `tenants/${tenant}/purposes/${purpose}`, language: form.language, text: form.text, requestId: form.request_id },
          ctx.credential(request),
        );
        return reply.redirect(`/tenants/${tenant}/admin/purposes/${purpose}?published=${published.notice!.version}`, 303);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return purposePage(request, reply, err, form);
      }
    },
  );

  /** The tenant key: its epochs (GetTenantKeyInfo, admin only), whether a rotation runs, the last one. */
  app.get('/tenants/:tenant/admin/keys', { schema: { params: tenantParam } }, async (request: FastifyRequest<{ Params: TenantParams; Querystring: { rotation?: string } }>, reply) => {
    const { tenant } = request.params;
    const credential = ctx.credential(request);
    // The rotation lookup form (a GET: rotation ids are not personal data).
    const asked = String(request.query.rotation ?? '').trim();
    const askedId = idOf(asked);
    if (asked && /^[A-Za-z0-9_-]{1,64}$/.test(askedId)) return reply.redirect(`/tenants/${tenant}/admin/keys/rotations/${askedId}`, 303);
    let epochs: KeyEpoch[];
    try {
      epochs = (await api.call(api.keys, api.keys.getTenantKeyInfo, { name: `tenants/${tenant}` }, credential)).epochs;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return refused(reply, credential, tenant, `Key of ${tenant}`, err);
    }
    const active = epochs.filter((e) => e.state === KeyEpochState.KEY_EPOCH_STATE_ACTIVE).at(-1);
    const retiring = epochs.filter((e) => e.state === KeyEpochState.KEY_EPOCH_STATE_RETIRING);
    if (asked) reply.code(400);
    return reply.type('text/html').send(
      views.page('admin-keys', credential, {
        title: `Key of ${tenant}`,
        tenant,
        epochs: epochs.map((e) => ({ ...e, stateText: EPOCH_STATES[e.state] ?? 'unknown' })),
        active,
        retiring,
        // Every epoch after the first was opened by a rotation: the newest one's creation is the last rotation.
        lastRotation: epochs.length > 1 ? epochs[epochs.length - 1] : undefined,
        badRotationId: asked !== '',
        admin: isAdmin(credential),
      }),
    );
  });

  const rotatePage = async (request: FastifyRequest<{ Params: TenantParams }>, reply: FastifyReply, error?: ApiError, notConfirmed = false) => {
    const { tenant } = request.params;
    const credential = ctx.credential(request);
    let epochs: KeyEpoch[];
    try {
      epochs = (await api.call(api.keys, api.keys.getTenantKeyInfo, { name: `tenants/${tenant}` }, credential)).epochs;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return refused(reply, credential, tenant, `Rotate the key of ${tenant}`, err);
    }
    if (error) reply.code(httpStatusOf(error));
    else if (notConfirmed) reply.code(400);
    const admin = isAdmin(credential);
    const body = (request.body ?? {}) as Record<string, string>;
    return reply.type('text/html').send(
      views.page('admin-rotate', credential, {
        title: `Rotate the key of ${tenant}`,
        tenant,
        active: epochs.filter((e) => e.state === KeyEpochState.KEY_EPOCH_STATE_ACTIVE).at(-1),
        running: epochs.some((e) => e.state === KeyEpochState.KEY_EPOCH_STATE_RETIRING),
        admin,
        csrf: admin ? reply.generateCsrf({ userInfo: credential.who }) : '',
        requestId: idempotencyKey(body.request_id),
        error,
        notConfirmed,
      }),
    );
  };

  // A confirmation page first (a GET that changes nothing), like the erasure.
  app.get('/tenants/:tenant/admin/keys/rotate', { schema: { params: tenantParam } }, (request: FastifyRequest<{ Params: TenantParams }>, reply) => rotatePage(request, reply));

  app.post(
    '/tenants/:tenant/admin/keys/rotate',
    { schema: { params: tenantParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: TenantParams; Body: Record<string, string> }>, reply) => {
      const { tenant } = request.params;
      if (request.body?.confirm !== 'rotate') return rotatePage(request, reply, undefined, true);
      try {
        const started = await api.call(api.keys, api.keys.rotateTenantKey, { name: `tenants/${tenant}`, requestId: idempotencyKey(request.body?.request_id) }, ctx.credential(request));
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/admin/keys/rotations/${idOf(started.rotation!.name)}`, 'started');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return rotatePage(request, reply, err);
      }
    },
  );

  app.get(
    '/tenants/:tenant/admin/keys/rotations/:rotation',
    { schema: { params: rotationParam } },
    async (request: FastifyRequest<{ Params: RotationParams; Querystring: { done?: string } }>, reply) => {
      const { tenant, rotation } = request.params;
      const credential = ctx.credential(request);
      let job: KeyRotation;
      try {
        job = (await api.call(api.keys, api.keys.getKeyRotation, { name: `tenants/${tenant}/keyRotations/${rotation}` }, credential)).rotation!;
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return refused(reply, credential, tenant, `Key rotation ${rotation}`, err);
      }
      const total = Number(job.subjectKeysTotal);
      const done = Number(job.subjectKeysDone);
      return reply.type('text/html').send(
        views.page('admin-rotation', credential, {
          title: `Key rotation of ${tenant}`,
          tenant,
          id: rotation,
          job,
          stateText: JOB_STATES[job.state] ?? 'unknown',
          running: job.state === JobState.JOB_STATE_RUNNING,
          percent: total > 0 ? Math.floor((100 * done) / total) : job.state === JobState.JOB_STATE_SUCCEEDED ? 100 : 0,
          done: ctx.confirmations.take(request, reply, { started: 'The rotation was started. Reload this page to follow it.' }),
        }),
      );
    },
  );
}
