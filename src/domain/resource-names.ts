import { ALL_PURPOSES } from './model';

/**
 * Resource names (AIP-122) and their ids. Ids are lower-case letters, digits and '-',
 * starting with a letter, so names parse without escaping.
 */
export const TENANT_ID = /^[a-z][a-z0-9-]{2,62}$/;
export const PURPOSE_ID = /^[a-z][a-z0-9-]{0,62}$/;

export const names = {
  tenant: (tenantId: string) => `tenants/${tenantId}`,
  settings: (tenantId: string) => `tenants/${tenantId}/settings`,
  purpose: (tenantId: string, purposeId: string) => `tenants/${tenantId}/purposes/${purposeId}`,
  notice: (tenantId: string, purposeId: string, version: number) => `tenants/${tenantId}/purposes/${purposeId}/notices/${version}`,
  subject: (tenantId: string, subjectId: string) => `tenants/${tenantId}/subjects/${subjectId}`,
  consentEvent: (tenantId: string, subjectId: string, eventId: string) =>
    `tenants/${tenantId}/subjects/${subjectId}/consentEvents/${eventId}`,
};

export function parseTenantName(name: string): string | null {
  const m = /^tenants\/([^/]+)$/.exec(name);
  return m && TENANT_ID.test(m[1]) ? m[1] : null;
}

/** Parses "tenants/{tenant}/subjects/{subject}" (a subject id is 32 lower-case hex digits). */
export function parseSubjectName(name: string): { tenantId: string; subjectId: string } | null {
  const m = /^tenants\/([^/]+)\/subjects\/([0-9a-f]{32})$/.exec(name);
  return m && TENANT_ID.test(m[1]) ? { tenantId: m[1], subjectId: m[2] } : null;
}

export function parseSettingsName(name: string): string | null {
  const m = /^tenants\/([^/]+)\/settings$/.exec(name);
  return m && TENANT_ID.test(m[1]) ? m[1] : null;
}

/** Parses a purpose name; `allowAll` also accepts the all-purposes wildcard "-". */
export function parsePurposeName(name: string, allowAll = false): { tenantId: string; purposeId: string } | null {
  const m = /^tenants\/([^/]+)\/purposes\/([^/]+)$/.exec(name);
  if (!m || !TENANT_ID.test(m[1])) return null;
  if (m[2] === ALL_PURPOSES) return allowAll ? { tenantId: m[1], purposeId: ALL_PURPOSES } : null;
  return PURPOSE_ID.test(m[2]) ? { tenantId: m[1], purposeId: m[2] } : null;
}

export function parseNoticeName(name: string): { tenantId: string; purposeId: string; version: number } | null {
  const m = /^tenants\/([^/]+)\/purposes\/([^/]+)\/notices\/([1-9][0-9]{0,8})$/.exec(name);
  if (!m || !TENANT_ID.test(m[1]) || !PURPOSE_ID.test(m[2])) return null;
  return { tenantId: m[1], purposeId: m[2], version: Number(m[3]) };
}
