/** Roles a caller can have (docs/api.md lists what each may do). */
export type Role = 'ADMIN' | 'SENDER' | 'RECORDER' | 'DPO' | 'AUDITOR';

/** The caller of an RPC, set once per call by the transport's principal interceptor. */
export interface Principal {
  /** Stable id of the calling service or person, recorded in events and audit entries. */
  id: string;
  role: Role;
  /** Tenant ids this principal may act for; '*' means all. */
  tenants: readonly string[] | '*';
}

/** The fixed principal of development mode (until real authentication exists). */
export const DEVELOPMENT_PRINCIPAL: Principal = Object.freeze({ id: 'dev-admin', role: 'ADMIN', tenants: '*' });
