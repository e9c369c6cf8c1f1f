import { randomBytes } from 'node:crypto';
import { KeyManager } from '../crypto/key-manager';
import { BackgroundJobs } from '../jobs/background-jobs';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { failedPrecondition, FieldViolation, invalidArgument, notFound } from '../shared/errors';
import { AuditTrail } from '../audit/audit-types';
import { KeyRotationRecord, KeyRotationRepository, TenantRepository } from './ports';
import { TransactionRunner } from '../shared/unit-of-work';
import { Principal } from './principal';
import { checkRequestId } from './request-id';
import { names } from './resource-names';
import { TenantService } from './tenant-service';

/** What ShredTenant did. */
export interface TenantShred {
  shredTime: number;
  destroyedEpochs: number[];
}

/** Rows deleted per purge transaction: small enough not to hold locks for long. */
const PURGE_BATCH = 1000;

/**
 * Tenant key lifecycle: rotation (new epoch, subject keys re-wrapped in the background, old epoch
 * destroyed), inspection, and tenant erasure by destroying every epoch (crypto-shredding).
 */
export class KeyAdministration {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly tenantRows: TenantRepository,
    private readonly tenants: TenantService,
    private readonly rotations: KeyRotationRepository,
    private readonly keys: KeyManager,
    private readonly jobs: BackgroundJobs,
    private readonly clock: Clock,
    private readonly audit: AuditTrail,
    /** Test hook: kills the process at a named point (app.ts, CONSENT_FAILPOINT). */
    private readonly failpoint: (name: string) => void = () => undefined,
  ) {}

  /**
   * Destroys every epoch of the tenant's key. The tenant is marked erased first (every call for it
   * fails from that commit on), then the keys are destroyed; a repeat finishes a half-done shred.
   * Cost is independent of the tenant's size; its rows are purged afterwards in the background.
   */
  async shredTenant(principal: Principal, tenantId: string, confirmTenantId: string, requestId: string): Promise<TenantShred> {
    const violations: FieldViolation[] = [];
    if (confirmTenantId !== tenantId) {
      violations.push({ field: 'confirm_tenant_id', reason: 'CONFIRMATION_MISMATCH', description: 'must repeat the tenant id of `name`' });
    }
    checkRequestId(requestId, false, violations);
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    const shredTime = await this.tx.write(async (tx) => {
      // Locked: of concurrent shreds one marks the tenant and writes the audit entry, the others
      // wait and answer its time.
      const tenant = await this.tenantRows.lock(tx, tenantId);
      if (!tenant) throw notFound('TENANT', names.tenant(tenantId));
      if (tenant.erasedAt !== null) return tenant.erasedAt;
      await this.tenantRows.markErased(tx, tenantId, now);
      await this.audit.append(tx, tenantId, { type: 'TENANT_SHREDDED', time: now, principal: principal.id });
      return now;
    });
    this.tenants.evict(tenantId);
    const destroyedEpochs = await this.keys.destroyTenantKeys(tenantId, shredTime);
    this.jobs.start(`purge tenants/${tenantId}`, () => this.purge(tenantId));
    return { shredTime, destroyedEpochs };
  }

  /** Opens a new epoch and starts re-wrapping subject keys under it. Idempotent by request_id. */
  async rotate(principal: Principal, tenantId: string, requestId: string): Promise<KeyRotationRecord> {
    const violations: FieldViolation[] = [];
    checkRequestId(requestId, true, violations);
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    const rotation = await this.tx.write(async (tx) => {
      // The tenant's row locked first: concurrent rotations of a tenant take turns, so only one
      // opens an epoch (in the key store, outside this transaction); the others then find it
      // (the same request_id) or find it running (ROTATION_IN_PROGRESS).
      await this.tenantRows.lock(tx, tenantId);
      await this.tenants.require(tx, tenantId, false);
      const replay = await this.rotations.findByRequest(tx, tenantId, requestId);
      if (replay) return replay;
      if ((await this.rotations.running(tx, tenantId)).length > 0) {
        throw failedPrecondition('ROTATION_IN_PROGRESS', 'a key rotation of this tenant is still running');
      }
      const now = this.clock.now();
      const { from, to } = await this.keys.openEpoch(tenantId, now);
      const record: KeyRotationRecord = {
        id: randomBytes(16).toString('hex'),
        tenantId,
        requestId,
        state: 'RUNNING',
        fromEpoch: from,
        toEpoch: to,
        total: 0,
        done: 0,
        error: null,
        principal: principal.id,
        createdAt: now,
        endedAt: null,
      };
      await this.rotations.insert(tx, record);
      await this.audit.append(tx, tenantId, { type: 'KEY_ROTATION_STARTED', time: now, principal: principal.id, ref: `${from}->${to}` });
      return record;
    });
    // A retry of a rotation that is still RUNNING resumes it here unless this process runs it
    // already (its process may have died).
    if (rotation.state === 'RUNNING') this.startRewrap(rotation);
    return rotation;
  }

  async getRotation(principal: Principal, tenantId: string, rotationId: string): Promise<KeyRotationRecord> {
    authorizeTenant(principal, tenantId);
    return this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const rotation = await this.rotations.find(tx, tenantId, rotationId);
      if (!rotation) throw notFound('KEY_ROTATION', `tenants/${tenantId}/keyRotations/${rotationId}`);
      return rotation;
    });
  }

  /** The tenant's public signing keys as a JWK set. */
  async publicKeys(principal: Principal, tenantId: string): Promise<{ keys: object[] }> {
    authorizeTenant(principal, tenantId);
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
    return this.keys.publicKeys(tenantId, this.clock.now());
  }

  async keyInfo(principal: Principal, tenantId: string): ReturnType<KeyManager['tenantKeyInfo']> {
    authorizeTenant(principal, tenantId);
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
    return this.keys.tenantKeyInfo(tenantId);
  }

  /** Resumes what a stopped process left: running rotations and purges of erased tenants. */
  async resume(): Promise<void> {
    const [running, unpurged] = await this.tx.read(async (tx) => [await this.rotations.running(tx), await this.tenantRows.listUnpurged(tx)] as const);
    for (const rotation of running) this.startRewrap(rotation);
    for (const tenantId of unpurged) {
      // A shred that stopped between marking and destroying: finish destroying first.
      await this.keys.destroyTenantKeys(tenantId, this.clock.now());
      this.jobs.start(`purge tenants/${tenantId}`, () => this.purge(tenantId));
    }
  }

  /** Rotations this process is re-wrapping now, by id: one job each. */
  private readonly rewrapping = new Set<string>();

  private startRewrap(rotation: KeyRotationRecord): void {
    if (this.rewrapping.has(rotation.id)) return;
    this.rewrapping.add(rotation.id);
    this.jobs.start(`rotate tenants/${rotation.tenantId}`, () => this.rewrap(rotation).finally(() => this.rewrapping.delete(rotation.id)));
  }

  /**
   * Re-wraps the rotation's subject keys and ends it. Another process may run the same rotation
   * (a retry or a restart resumed it while the first was still alive): re-wrapping a key twice is
   * harmless (a row moves only off the old epoch), and only the first to end the rotation records
   * its end and its audit entry.
   */
  private async rewrap(rotation: KeyRotationRecord): Promise<void> {
    // A resumed rotation counts only the keys still to re-wrap; what an earlier process recorded
    // (total, done) is carried over, so the progress reads as one rotation and never goes back.
    const earlier = { total: rotation.total, done: rotation.done };
    let latest = earlier;
    try {
      await this.keys.rewrapSubjectKeys(rotation.tenantId, () => this.clock.now(), async (p) => {
        if (this.jobs.shuttingDown) throw new Error('stopped for shutdown; resumed at the next start');
        latest = resumedProgress(earlier, p);
        const progress = latest;
        await this.tx.write((tx) => this.rotations.updateRunning(tx, rotation.id, progress));
        if (p.done > 0) this.failpoint('key-rotation.progress');
      });
      await this.tx.write(async (tx) => {
        // Also over a FAILED mark another process left meanwhile: this run moved every key and
        // destroyed the old epoch, and that is what the audit log must say.
        // Every key is moved: done is the total, whatever another process running the same
        // rotation last wrote as its own progress.
        const ended = { state: 'SUCCEEDED' as const, endedAt: this.clock.now(), error: null, total: latest.total, done: latest.total };
        if (!(await this.rotations.updateRunning(tx, rotation.id, ended, ['RUNNING', 'FAILED']))) return;
        await this.audit.append(tx, rotation.tenantId, { type: 'KEY_EPOCH_DESTROYED', time: this.clock.now(), principal: rotation.principal, ref: String(rotation.fromEpoch) });
      });
    } catch (err) {
      if (this.jobs.shuttingDown) return; // stays RUNNING; resume() picks it up
      const reason = (err as { reason?: string }).reason ?? 'INTERNAL';
      await this.tx.write((tx) => this.rotations.updateRunning(tx, rotation.id, { state: 'FAILED', error: reason, endedAt: this.clock.now() }));
      throw err;
    }
  }

  private async purge(tenantId: string): Promise<void> {
    while (!this.jobs.shuttingDown) {
      const done = await this.tx.write((tx) => this.tenantRows.purgeBatch(tx, tenantId, PURGE_BATCH, this.clock.now()));
      if (done) break;
    }
    while (!this.jobs.shuttingDown && (await this.keys.purgeSubjectKeys(tenantId, PURGE_BATCH)) > 0) {
      // batches until none are left
    }
  }
}


/**
 * A rotation's progress from what an earlier process recorded (`earlier`: zero for a new rotation)
 * and this run's count (`run`: the keys this run found left, and how many of them it has done).
 * Keys re-wrapped after the earlier process last recorded its progress count as done: the total is
 * the first run's, and done is the total less what is left.
 */
export function resumedProgress(earlier: { total: number; done: number }, run: { total: number; done: number }): { total: number; done: number } {
  const total = Math.max(earlier.total, earlier.done + run.total);
  return { total, done: total - (run.total - run.done) };
}
