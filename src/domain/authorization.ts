import { DomainError } from './errors';
import { Principal } from './principal';

/**
 * The one place that decides whether a principal may act for a tenant. Role rules per method
 * come with authentication; tenant isolation holds from the first call.
 */
export function authorizeTenant(principal: Principal, tenantId: string): void {
  if (principal.tenants === '*' || principal.tenants.includes(tenantId)) return;
  throw new DomainError('PERMISSION_DENIED', 'TENANT_ACCESS_DENIED', `principal may not act for tenants/${tenantId}`, {
    tenant: `tenants/${tenantId}`,
  });
}
