import { DomainError, notFound } from '../shared/errors';
import { Principal } from './principal';
import { names } from './resource-names';

/**
 * The one place that decides whether a principal may act for a tenant. A tenant the principal
 * may not reach answers exactly as a tenant that does not exist (same status, reason, message),
 * so a caller cannot learn which other businesses use the service. Role rules per method are
 * checked before, in the transport (src/transport/auth/access-policy.ts).
 */
export function authorizeTenant(principal: Principal, tenantId: string): void {
  if (mayReach(principal, tenantId)) return;
  throw notFound('TENANT', names.tenant(tenantId));
}

/**
 * Creating a tenant: refused alike whether the id is taken or not, so the answer reveals nothing
 * about other tenants either.
 */
export function authorizeTenantCreation(principal: Principal, tenantId: string): void {
  if (mayReach(principal, tenantId)) return;
  throw new DomainError('PERMISSION_DENIED', 'TENANT_ACCESS_DENIED', `this principal may not create tenants/${tenantId}`);
}

function mayReach(principal: Principal, tenantId: string): boolean {
  return principal.tenants === '*' || principal.tenants.includes(tenantId);
}
