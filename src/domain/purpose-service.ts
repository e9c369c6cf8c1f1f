import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { alreadyExists, failedPrecondition, FieldViolation, invalidArgument, notFound, Violations } from '../shared/errors';
import { checkRequestId } from './request-id';
import { Notice, Purpose, PURPOSE_CATEGORIES, PurposeCategory } from './model';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from './pagination';
import { AuditTrail } from '../audit/audit-types';
import { NoticeRecord, PurposeRecord, PurposeRepository } from './ports';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { sha256Hex } from '../shared/hashing';
import { Principal } from './principal';
import { names, PURPOSE_ID } from './resource-names';
import { TenantService } from './tenant-service';
import { characterCount } from '../shared/text';

/** What a MySQL TEXT column holds (65,535 bytes); SQLite holds more, the limit is the same. */
const MAX_NOTICE_BYTES = 65_535;
const LANGUAGE_TAG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$/;

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** Purposes (immutable category) and their versioned notices. */
export class PurposeService {
  /** Purposes never change or disappear once created, so a cached copy is always right. */
  private readonly cache = new LRUCache<string, Purpose>({ max: 100_000 });
  /** Notice versions are immutable too. */
  private readonly notices = new LRUCache<string, Notice>({ max: 100_000 });

  constructor(
    private readonly tx: TransactionRunner,
    private readonly purposes: PurposeRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly pages: PageLimits,
    private readonly audit: AuditTrail,
  ) {}

  async create(
    principal: Principal,
    tenantId: string,
    input: { purposeId: string; displayName: string; category: PurposeCategory | null; description: string; requestId: string; allowedWhileRestricted?: boolean },
  ): Promise<Purpose> {
    const v = new Violations();
    v.check(PURPOSE_ID.test(input.purposeId), 'purpose_id', 'INVALID_ID', '1-63 characters: lower-case letters, digits and "-", starting with a letter');
    v.check(input.category !== null && PURPOSE_CATEGORIES.includes(input.category), 'purpose.category', 'REQUIRED', 'one of MARKETING, UTILITY, AUTHENTICATION, SERVICE');
    v.check(characterCount(input.displayName) <= 200, 'purpose.display_name', 'TOO_LONG', 'at most 200 characters');
    v.check(characterCount(input.description) <= 4000, 'purpose.description', 'TOO_LONG', 'at most 4,000 characters');
    const ids: FieldViolation[] = [];
    checkRequestId(input.requestId, false, ids);
    for (const id of ids) v.add(id.field, id.reason, id.description);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    return this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const existing = await this.purposes.find(tx, tenantId, input.purposeId);
      if (existing) {
        if (input.requestId && existing.createRequestId === input.requestId) return existing;
        throw alreadyExists('PURPOSE', names.purpose(tenantId, input.purposeId));
      }
      const record: PurposeRecord = {
        tenantId,
        id: input.purposeId,
        displayName: input.displayName || input.purposeId,
        category: input.category!,
        description: input.description,
        createRequestId: input.requestId || null,
        createdAt: this.clock.now(),
        allowedWhileRestricted: input.allowedWhileRestricted === true,
      };
      await this.purposes.insert(tx, record);
      await this.audit.append(tx, tenantId, { type: 'PURPOSE_CREATED', time: record.createdAt, principal: principal.id, purpose: record.id, payloadSha256: sha256Hex(record.allowedWhileRestricted ? `${record.category} allowed_while_restricted` : record.category) });
      return record;
    });
  }

  async list(principal: Principal, tenantId: string, pageSize: number, pageToken: string): Promise<Page<Purpose>> {
    const v = new Violations();
    const size = resolvePageSize(pageSize, this.pages, v);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    return this.tx.read(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'purposes');
      const after = decodePageToken<string>(pageToken, {}, 'string', sealer, v);
      v.throwIfAny();
      const rows = await this.purposes.list(tx, tenantId, after, size + 1);
      const items = rows.slice(0, size);
      const next = rows.length > size ? encodePageToken(items[items.length - 1].id, {}, sealer) : '';
      return { items, nextPageToken: next };
    });
  }

  async publishNotice(
    principal: Principal,
    tenantId: string,
    purposeId: string,
    input: { language: string; text: string; requestId: string },
  ): Promise<Notice> {
    const violations: FieldViolation[] = [];
    if (!LANGUAGE_TAG.test(input.language)) violations.push({ field: 'language', reason: 'INVALID_LANGUAGE', description: 'must be a BCP 47 tag such as "de" or "en-GB"' });
    const bytes = Buffer.byteLength(input.text, 'utf8');
    if (bytes === 0 || bytes > MAX_NOTICE_BYTES) violations.push({ field: 'text', reason: 'INVALID_LENGTH', description: `must be 1 to ${MAX_NOTICE_BYTES} bytes` });
    checkRequestId(input.requestId, true, violations);
    if (violations.length > 0) throw invalidArgument(violations);
    authorizeTenant(principal, tenantId);
    return this.tx.write(async (tx) => {
      await this.requirePurpose(tx, tenantId, purposeId);
      const replay = await this.purposes.findNoticeByRequest(tx, tenantId, input.requestId);
      if (replay) {
        if (replay.purposeId !== purposeId || replay.language !== input.language || replay.text !== input.text) {
          throw failedPrecondition('REQUEST_ID_REUSED', 'request_id was already used for a different request', { request_id: input.requestId });
        }
        return replay;
      }
      const notice: NoticeRecord = {
        tenantId,
        purposeId,
        version: (await this.purposes.latestNoticeVersion(tx, tenantId, purposeId)) + 1,
        language: input.language,
        text: input.text,
        textSha256: createHash('sha256').update(input.text, 'utf8').digest('hex'),
        requestId: input.requestId,
        createdAt: this.clock.now(),
      };
      await this.purposes.insertNotice(tx, notice);
      await this.audit.append(tx, tenantId, { type: 'NOTICE_PUBLISHED', time: notice.createdAt, principal: principal.id, purpose: purposeId, noticeSha256: notice.textSha256, ref: String(notice.version) });
      return notice;
    });
  }

  async listNotices(principal: Principal, tenantId: string, purposeId: string, pageSize: number, pageToken: string): Promise<Page<Notice>> {
    const v = new Violations();
    const size = resolvePageSize(pageSize, this.pages, v);
    v.throwIfAny();
    authorizeTenant(principal, tenantId);
    const scope = { purposeId };
    return this.tx.read(async (tx) => {
      await this.requirePurpose(tx, tenantId, purposeId);
      const sealer = this.keys.pageTokenSealer(await this.keys.tenantKeyring(tenantId), 'notices');
      const before = decodePageToken<number>(pageToken, scope, 'number', sealer, v);
      v.throwIfAny();
      const rows = await this.purposes.listNotices(tx, tenantId, purposeId, before, size + 1);
      const items = rows.slice(0, size);
      return { items, nextPageToken: rows.length > size ? encodePageToken(items[items.length - 1].version, scope, sealer) : '' };
    });
  }

  /**
   * The purpose, or NOT_FOUND (also when the tenant does not exist); FAILED_PRECONDITION
   * TENANT_ERASED once the tenant was shredded. The tenant is checked before the cache: a purpose
   * never changes, but its tenant can be shredded after the purpose was cached.
   */
  async requirePurpose(tx: TxContext, tenantId: string, purposeId: string): Promise<Purpose> {
    await this.tenants.require(tx, tenantId, true);
    const key = `${tenantId}/${purposeId}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const purpose = await this.purposes.find(tx, tenantId, purposeId);
    if (!purpose) throw notFound('PURPOSE', names.purpose(tenantId, purposeId));
    this.cache.set(key, purpose);
    return purpose;
  }

  /** The notice version, or NOT_FOUND. */
  async requireNotice(tx: TxContext, tenantId: string, purposeId: string, version: number): Promise<Notice> {
    const key = `${tenantId}/${purposeId}/${version}`;
    const cached = this.notices.get(key);
    if (cached) return cached;
    const notice = await this.purposes.findNotice(tx, tenantId, purposeId, version);
    if (!notice) throw notFound('NOTICE', names.notice(tenantId, purposeId, version));
    this.notices.set(key, notice);
    return notice;
  }

  /**
   * The purpose and notice version from this process's caches, without a database read, when
   * both are there (they never change); undefined otherwise. The tenant is not checked here.
   */
  cached(tenantId: string, purposeId: string | null, notice?: { purposeId: string; version: number }): { purpose?: Purpose; notice?: Notice } | undefined {
    const purpose = purposeId === null ? undefined : this.cache.get(`${tenantId}/${purposeId}`);
    if (purposeId !== null && !purpose) return undefined;
    const cachedNotice = notice ? this.notices.get(`${tenantId}/${notice.purposeId}/${notice.version}`) : undefined;
    if (notice && !cachedNotice) return undefined;
    return { purpose, notice: cachedNotice };
  }
}
