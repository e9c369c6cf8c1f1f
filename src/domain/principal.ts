/** Roles a caller can have; docs/security.md shows what each may call. */
/**
 * SELF_SERVICE: the privacy center's own credential (issue 20). It may call only the person-facing
 * methods of SelfServiceService, whose tokens bind what a person may do, and read what its pages
 * show (GetTenant, ListPurposes, ListNotices).
 */
export const ROLES = ['SENDER', 'RECORDER', 'DPO', 'AUDITOR', 'ADMIN', 'SELF_SERVICE'] as const;
export type Role = (typeof ROLES)[number];

/** The caller of an RPC, set once per call by the transport's call pipeline. */
export interface Principal {
  /** Stable id of the calling service or person, recorded in events and audit entries. */
  id: string;
  roles: readonly Role[];
  /** Tenant ids this principal may act for; '*' means all. */
  tenants: readonly string[] | '*';
}

/** The fixed principal of development mode (no credentials configured, loopback only). */
export const DEVELOPMENT_PRINCIPAL: Principal = Object.freeze({ id: 'dev-admin', roles: Object.freeze([...ROLES]), tenants: '*' as const });
