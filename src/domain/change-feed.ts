import { AuditLog } from '../audit/audit-log';
import { KeyManager } from '../crypto/key-manager';
import { TokenSealer } from '../crypto/token-sealer';
import { authorizeTenant } from './authorization';
import { Violations } from '../shared/errors';
import { decodePageToken, encodePageToken } from './pagination';
import { ChangeFeedRepository, ChangeRecord } from './ports';
import { TransactionRunner } from '../shared/unit-of-work';
import { Principal } from './principal';
import { TenantService } from './tenant-service';

/** How often an idle stream looks for new changes. */
const POLL_MS = 100;
const PAGE = 500;

/** Serves the outbox of opt-outs and erasures as a resumable, at-least-once stream. */
export class ChangeFeed {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly changes: ChangeFeedRepository,
    private readonly audit: AuditLog,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
  ) {}

  /**
   * Sends changes after `cursor` until `stopped()`; `send` resolves when the client can take more.
   * Changes come in the tenant's commit order (their audit log positions): every position below
   * the log's committed size is final, so a change is sent as soon as it committed, and one that
   * commits later can never take a position before one already sent.
   */
  async stream(
    principal: Principal,
    tenantId: string,
    cursor: string,
    send: (change: ChangeRecord, cursor: string) => Promise<void>,
    stopped: () => boolean,
  ): Promise<void> {
    authorizeTenant(principal, tenantId);
    await this.tx.read((tx) => this.tenants.require(tx, tenantId, false));
    const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'change_feed');
    let from = await this.startPosition(tenantId, cursor, sealer);
    while (!stopped()) {
      await this.tx.read((tx) => this.tenants.require(tx, tenantId, true));
      // The committed size first: rows below it are all committed (the head lock orders them).
      const committed = await this.audit.size(tenantId);
      const page = await this.tx.read((tx) => this.changes.between(tx, tenantId, from, committed, PAGE));
      for (const change of page) {
        if (stopped()) return;
        from = change.auditSeq + 1;
        await send(change, encodePageToken(`p${from}`, {}, sealer));
      }
      if (page.length < PAGE) {
        from = Math.max(from, committed);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    }
  }

  /**
   * The log position a cursor continues from. Cursors name a position ("p<n>"); a cursor issued
   * before positions existed names an outbox row, which is looked up.
   */
  private async startPosition(tenantId: string, cursor: string, sealer: TokenSealer): Promise<number> {
    if (!cursor) return 0;
    const v = new Violations();
    const position = decodePageToken<string>(cursor, {}, 'string', sealer, new Violations(), 'cursor');
    if (position !== null && /^p\d{1,16}$/.test(position)) return Number(position.slice(1));
    const legacy = decodePageToken<number>(cursor, {}, 'number', sealer, v, 'cursor');
    v.throwIfAny();
    const found = legacy === null ? null : await this.tx.read((tx) => this.changes.positionOf(tx, tenantId, legacy));
    if (found === null) {
      v.add('cursor', 'INVALID_CURSOR', 'is not a cursor from a previous call with the same parent and filters');
      v.throwIfAny();
    }
    return found! + 1;
  }
}
