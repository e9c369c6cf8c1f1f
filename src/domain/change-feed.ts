import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { Violations } from '../shared/errors';
import { decodePageToken, encodePageToken } from './pagination';
import { ChangeFeedRepository, ChangeRecord } from './ports';
import { TransactionRunner } from '../shared/unit-of-work';
import { Principal } from './principal';
import { TenantService } from './tenant-service';

/**
 * A change is delivered once it is this old: the outbox sequence is assigned at insert, so a
 * transaction that commits later than a younger one would otherwise be overtaken and missed.
 */
export const CHANGE_SETTLE_MS = 5000;
const POLL_MS = 250;
const PAGE = 500;

/** Serves the outbox of opt-outs and erasures as a resumable, at-least-once stream. */
export class ChangeFeed {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly changes: ChangeFeedRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
  ) {}

  /** Sends changes after `cursor` until `stopped()`; `send` resolves when the client can take more. */
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
    const v = new Violations();
    let after = decodePageToken<number>(cursor, {}, 'number', sealer, v, 'cursor') ?? 0;
    v.throwIfAny();
    while (!stopped()) {
      await this.tx.read((tx) => this.tenants.require(tx, tenantId, true));
      const settled = this.clock.now() - CHANGE_SETTLE_MS;
      const page = await this.tx.read((tx) => this.changes.after(tx, tenantId, after, PAGE));
      let sent = 0;
      for (const change of page) {
        if (change.at > settled || stopped()) break;
        after = change.seq;
        await send(change, encodePageToken(after, {}, sealer));
        sent++;
      }
      if (sent < PAGE) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
