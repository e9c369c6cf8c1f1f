import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { scopeStatus, ScopeState, WindowState } from './consent-rules';
import { Clock } from './clock';
import { DomainError, failedPrecondition, invalidArgument, Violations } from '../shared/errors';
import { openEvent } from './event-codec';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { Channel, ConsentEvent } from './model';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from './pagination';
import { ConsentRepository } from './ports';
import { TransactionRunner } from '../shared/unit-of-work';
import { SubjectDirectory } from './subject-directory';
import { Principal } from './principal';
import { PurposeService, Page } from './purpose-service';
import { TenantService } from './tenant-service';

export interface SubjectState {
  subjectId: string;
  scopes: Array<ScopeState & { status: ReturnType<typeof scopeStatus> }>;
  windows: Array<WindowState & { expireTime: number; open: boolean }>;
}

export interface EventListQuery {
  identifier?: RawIdentifier;
  /** A purpose id or ALL_PURPOSES. */
  purposeId?: string;
  channel?: Channel;
  startTime?: number;
  endTime?: number;
  pageSize: number;
  pageToken: string;
}

/** Read models for people and auditors: current state and the event history. */
export class ConsentHistory {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly directory: SubjectDirectory,
    private readonly consent: ConsentRepository,
    private readonly tenants: TenantService,
    private readonly purposes: PurposeService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly pages: PageLimits,
  ) {}

  async state(principal: Principal, tenantId: string, raw: RawIdentifier | undefined): Promise<SubjectState> {
    const identifier = normaliseIdentifier(raw, 'subject_identifier');
    if (isViolation(identifier)) throw invalidArgument([identifier]);
    authorizeTenant(principal, tenantId);
    const now = this.clock.now();
    return this.tx.read(async (tx) => {
      const tenant = await this.tenants.require(tx, tenantId, false);
      const keyring = await this.keys.tenantKeyring(tenantId);
      const subject = await this.directory.find(tx, keyring, identifier);
      // Messages name no identifier (personal data), and an erased one names no subject either.
      if (!subject && (await this.directory.wasErased(tx, keyring, identifier))) {
        throw failedPrecondition('SUBJECT_ERASED', 'the person with this identifier was erased; nothing is kept under it');
      }
      if (!subject) throw new DomainError('NOT_FOUND', 'SUBJECT_NOT_FOUND', 'no subject with this identifier');
      const rows = (await this.consent.loadState(tx, tenantId, [subject.subjectId])).get(subject.subjectId) ?? { scopes: [], windows: [] };
      return {
        subjectId: subject.subjectId,
        scopes: rows.scopes
          .sort((a, b) => a.purposeId.localeCompare(b.purposeId) || a.channel.localeCompare(b.channel))
          .map((s) => ({ ...s, status: scopeStatus(s, now) })),
        windows: rows.windows.map((w) => {
          const expireTime = w.lastInboundTime + tenant.settings.serviceWindowMs;
          return { ...w, expireTime, open: now < expireTime };
        }),
      };
    });
  }

  async list(principal: Principal, tenantId: string, query: EventListQuery): Promise<Page<ConsentEvent>> {
    const v = new Violations();
    const size = resolvePageSize(query.pageSize, this.pages, v);
    const identifier = query.identifier ? normaliseIdentifier(query.identifier, 'subject_identifier') : undefined;
    if (identifier && isViolation(identifier)) v.add(identifier.field, identifier.reason, identifier.description);
    if (query.startTime !== undefined && query.endTime !== undefined) {
      v.check(query.startTime < query.endTime, 'end_time', 'INVALID_RANGE', 'must be after start_time');
    }
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    // The token's scope includes the filters, so a token cannot continue a different listing.
    const scope = { ...query, pageSize: undefined, pageToken: undefined };

    return this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'consent_events');
      const afterSeq = decodePageToken<number>(query.pageToken, scope, 'number', sealer, v) ?? 0;
      v.throwIfAny();
      if (query.purposeId && query.purposeId !== '-') await this.purposes.requirePurpose(tx, tenantId, query.purposeId);
      let subjectId: string | undefined;
      if (identifier && !isViolation(identifier)) {
        const keyring = await this.keys.tenantKeyring(tenantId);
        const subject = await this.directory.find(tx, keyring, identifier);
        if (!subject) return { items: [], nextPageToken: '' };
        subjectId = subject.subjectId;
      }
      // Erased people's events are not listed (docs/keys.md, "Erasure"); the auditor's record of
      // them is the audit log, by opaque id.
      const rows = await this.consent.list(
        tx,
        tenantId,
        { subjectId, purposeId: query.purposeId, channel: query.channel, startTime: query.startTime, endTime: query.endTime, excludeErased: true },
        afterSeq,
        size + 1,
      );
      const page = rows.slice(0, size);
      const items: ConsentEvent[] = [];
      for (const { event, subjectErased } of page) {
        // An erasure that committed after the read above: its evidence is not decrypted.
        const key = event.evidenceCiphertext === null || subjectErased ? null : await this.keys.subjectKey(tenantId, event.subjectId);
        items.push(openEvent(event, key));
      }
      return { items, nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1].seq, scope, sealer) : '' };
    });
  }
}
