import { AuditLog } from '../audit/audit-log';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { invalidArgument, Violations } from './errors';
import { PageLimits, resolvePageSize } from './pagination';
import { TransactionRunner } from './ports';
import { Principal } from './principal';
import { names } from './resource-names';
import { TenantService } from './tenant-service';

export interface SignedCheckpoint {
  size: number;
  rootHex: string;
  time: number;
  signed: string;
}

/**
 * The auditor's view of a tenant's log: signed checkpoints, entries and proofs. Everything it
 * returns is checkable without trusting the server (consentctl audit verify).
 */
export class AuditService {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly log: AuditLog,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly pages: PageLimits,
  ) {}

  async checkpoint(principal: Principal, tenantId: string): Promise<SignedCheckpoint> {
    await this.requireTenant(principal, tenantId);
    const size = await this.log.size(tenantId);
    const root = await this.log.root(tenantId, size);
    const time = this.clock.now();
    const signed = await this.keys.sign(
      tenantId,
      { tenant: names.tenant(tenantId), treeSize: size, rootHash: root.toString('hex'), time: new Date(time).toISOString() },
      'audit-checkpoint+jwt',
      time,
    );
    return { size, rootHex: root.toString('hex'), time, signed };
  }

  async entries(principal: Principal, tenantId: string, start: number, pageSize: number) {
    const v = new Violations();
    const size = resolvePageSize(pageSize, this.pages, v);
    v.check(Number.isInteger(start) && start >= 0, 'start_index', 'OUT_OF_RANGE', 'must not be negative');
    v.throwIfAny();
    await this.requireTenant(principal, tenantId);
    const entries = await this.log.entries(tenantId, start, size);
    return { entries, nextIndex: entries.length > 0 ? entries[entries.length - 1].seq + 1 : Math.max(start, 0) };
  }

  async inclusionProof(principal: Principal, tenantId: string, index: number, treeSize: number): Promise<Buffer[]> {
    await this.requireTenant(principal, tenantId);
    const size = await this.log.size(tenantId);
    const v = new Violations();
    v.check(treeSize >= 1 && treeSize <= size, 'tree_size', 'OUT_OF_RANGE', `must be 1 to the log size ${size}`);
    v.check(index >= 0 && index < treeSize, 'index', 'OUT_OF_RANGE', 'must be below tree_size');
    v.throwIfAny();
    return this.log.inclusionProof(tenantId, index, treeSize);
  }

  async consistencyProof(principal: Principal, tenantId: string, first: number, second: number): Promise<Buffer[]> {
    await this.requireTenant(principal, tenantId);
    const size = await this.log.size(tenantId);
    const violations = [];
    if (!(second >= 0 && second <= size)) violations.push({ field: 'second_size', reason: 'OUT_OF_RANGE', description: `must be 0 to the log size ${size}` });
    if (!(first >= 0 && first <= second)) violations.push({ field: 'first_size', reason: 'OUT_OF_RANGE', description: 'must be 0 to second_size' });
    if (violations.length > 0) throw invalidArgument(violations);
    return this.log.consistencyProof(tenantId, first, second);
  }

  private async requireTenant(principal: Principal, tenantId: string): Promise<void> {
    authorizeTenant(principal, tenantId);
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
  }
}
