import { createHash } from 'node:crypto';
import { ApiClient } from './api-client';
import { Channel } from '../gen/consent/v1/common';
import { Notice } from '../gen/consent/v1/purpose';

export const DEFAULT_BRAND_COLOR = '#1f4e79';

/** One purpose as the sign-up page offers it: its label and current notice per language. */
export interface OfferedPurpose {
  /** "tenants/{tenant}/purposes/{purpose}". */
  name: string;
  id: string;
  displayName: string;
  /** The newest notice per exact language tag ("de", "en"). */
  notices: Record<string, Notice>;
}

/** What the pages of one tenant need from the API: branding, languages, numbers, purposes and notices. */
export interface TenantPage {
  id: string;
  brandName: string;
  brandColor: string;
  /** Hash of the generated brand stylesheet (its ETag and cache-busting query). */
  brandCssHash: string;
  brandCss: string;
  logo?: { bytes: Buffer; contentType: string; hash: string };
  languages: string[];
  whatsappNumber: string;
  smsNumber: string;
  embedOrigins: string[];
  purposes: OfferedPurpose[];
}

/**
 * Reads a tenant's page model through the API (GetTenant, ListPurposes, ListNotices) and keeps it
 * for `ttlMs` (a few seconds: the pages of a busy tenant do not cost four calls each, and a new
 * notice or colour shows soon; a sign-up with an outdated notice is refused by the API anyway).
 */
export class TenantPages {
  private readonly cache = new Map<string, { at: number; page: Promise<TenantPage> }>();

  constructor(
    private readonly api: ApiClient,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(tenantId: string): Promise<TenantPage> {
    const hit = this.cache.get(tenantId);
    if (hit && this.now() - hit.at < this.ttlMs) return hit.page;
    const page = this.load(tenantId);
    this.cache.set(tenantId, { at: this.now(), page });
    // A failure is not kept: the next page asks again.
    page.catch(() => this.cache.delete(tenantId));
    if (this.cache.size > 1000) this.cache.delete(this.cache.keys().next().value as string);
    return page;
  }

  private async load(tenantId: string): Promise<TenantPage> {
    const api = this.api;
    const tenant = (await api.call(api.tenants, api.tenants.getTenant, { name: `tenants/${tenantId}` })).tenant!;
    const ss = tenant.settings?.selfService;
    const purposes: OfferedPurpose[] = [];
    let pageToken = '';
    do {
      const res = await api.call(api.purposes, api.purposes.listPurposes, { parent: `tenants/${tenantId}`, pageSize: 500, pageToken });
      for (const p of res.purposes) purposes.push({ name: p.name, id: p.name.slice(p.name.lastIndexOf('/') + 1), displayName: p.displayName, notices: {} });
      pageToken = res.nextPageToken;
    } while (pageToken);
    for (const p of purposes) {
      // Newest first: the first notice seen per language is the current one.
      let noticeToken = '';
      do {
        const res = await api.call(api.purposes, api.purposes.listNotices, { parent: p.name, pageSize: 500, pageToken: noticeToken });
        for (const n of res.notices) if (!p.notices[n.language]) p.notices[n.language] = n;
        noticeToken = res.nextPageToken;
      } while (noticeToken);
    }
    // The API validated the colour; checked again because it goes into a stylesheet.
    const brandColor = /^#[0-9a-f]{6}$/.test(ss?.brandColor ?? '') ? ss!.brandColor : DEFAULT_BRAND_COLOR;
    const brandCss = brandStylesheet(brandColor);
    const logoBytes = ss?.logo && ss.logo.length > 0 ? Buffer.from(ss.logo) : undefined;
    const logoType = ss?.logoContentType ?? '';
    return {
      id: tenantId,
      brandName: ss?.brandName || tenant.displayName || tenantId,
      brandColor,
      brandCss,
      brandCssHash: sha256(brandCss).slice(0, 16),
      logo: logoBytes && (logoType === 'image/png' || logoType === 'image/svg+xml') ? { bytes: logoBytes, contentType: logoType, hash: sha256(logoBytes).slice(0, 16) } : undefined,
      languages: ss?.languages?.length ? ss.languages : ['en', 'de'],
      whatsappNumber: ss?.whatsappNumber ?? '',
      smsNumber: ss?.smsNumber ?? '',
      embedOrigins: ss?.embedOrigins ?? [],
      purposes,
    };
  }
}

/** Which channels the sign-up page offers: WhatsApp and SMS only with the tenant's number; e-mail always. */
export function offeredChannels(page: TenantPage): Channel[] {
  const channels: Channel[] = [];
  if (page.whatsappNumber) channels.push(Channel.CHANNEL_WHATSAPP);
  if (page.smsNumber) channels.push(Channel.CHANNEL_SMS);
  channels.push(Channel.CHANNEL_EMAIL);
  return channels;
}

/**
 * The per-tenant stylesheet: the brand colour as custom properties the main stylesheet uses.
 * A stylesheet of its own because the CSP allows no inline style.
 */
function brandStylesheet(color: string): string {
  return `:root {\n  --brand: ${color};\n  --brand-text: #ffffff;\n}\n`;
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
