import { LRUCache } from 'lru-cache';
import { AuditChange, DecisionStateRead, IdentifierIndex, SubjectRef, SubjectStateRows } from './ports';

/** An identifier whose person was erased and that names nobody since (its tombstone). */
export const ERASED = Symbol('erased identifier');

/** What the cache knows of one identifier: whom it names, and that person's scopes and windows. */
export interface CachedIdentifier {
  /** The subject; ERASED for a tombstone; null when the identifier names nobody. */
  subject: SubjectRef | typeof ERASED | null;
  rows: SubjectStateRows;
}

interface Entry {
  /** The tenant and kind of the identifier: the key (its blind index) alone does not say them. */
  tenantId: string;
  kind: IdentifierIndex['kind'];
  value: CachedIdentifier;
  /** The tenant's epoch when stored: a key change or a shred empties the tenant by moving it. */
  epoch: number;
  /** For entries naming no subject (nobody, or a tombstone): the tenant's generation of such entries. */
  negative?: number;
}

interface TenantTrack {
  /** Log position up to which every change of the tenant was applied to the cache. */
  position: number;
  epoch: number;
  /** Moves when a change names a subject the cache does not know: perhaps a new person, whom an entry naming nobody would hide. */
  negatives: number;
  /** Monotonic time before which every committed change of the tenant is applied. */
  caughtUpAt: number;
}

export interface DecisionCacheOptions {
  /** Identifiers held at most (LRU beyond). */
  maxEntries: number;
  /** B: a cached answer is used only while the cache is proven at most this far behind the database. */
  stalenessMs: number;
  /** Monotonic milliseconds (performance.now in the service). */
  monotonic: () => number;
  /** Told when a change of the tenant itself is applied (settings, shred): its cached row must go. */
  onTenantChange?: (tenantId: string) => void;
}

export interface DecisionCacheStats {
  hits: number;
  misses: number;
  /** Lookups refused because the cache could not prove it was within the staleness bound. */
  stale: number;
  evictions: number;
  invalidations: number;
  /** Reads not kept because a newer change had been applied meanwhile. */
  discarded: number;
}

/** Audit entry types after which nothing cached for the tenant is trusted (keys changed, tenant gone). */
const TENANT_WIDE = new Set(['KEY_ROTATION_STARTED', 'KEY_EPOCH_DESTROYED', 'TENANT_SHREDDED']);
/**
 * Audit entry types after which an identifier may name another subject (a rectification, a
 * reassigned number): an entry cached as naming nobody may now name someone, so such entries go.
 */
const IDENTIFIER_MOVED = new Set(['IDENTIFIER_RECTIFIED', 'IDENTIFIER_REASSIGNED']);
/** Audit entry types that change the tenant row the checks read (its settings: the service window). */
const TENANT_ROW = new Set(['TENANT_SETTINGS_UPDATED', 'TENANT_SHREDDED']);

/**
 * The check path's cache (per process): for each identifier a check named, keyed by its blind
 * index (never the plaintext), whom it names and that person's consent scopes and service
 * windows, as read at a version (the tenant's committed audit log size). Bounded by entries (LRU).
 *
 * Invalidation follows the tenant's audit log, which orders every write of the tenant in commit
 * order (CacheInvalidator tails it): an entry is dropped when a change of its subject is applied;
 * entries naming nobody are dropped when a change names a subject the cache does not know. A read
 * is stored only if it is at least as new as every change applied so far (otherwise the change
 * that overtook it could be lost), so an entry is never older than what the cache has applied.
 *
 * Staleness: the cache answers only while its last complete catch-up started at most B ago (every
 * change committed before that moment has been applied); otherwise lookups miss, the caller reads
 * the database, and when that fails the check fails (UNAVAILABLE): never an ALLOW from state older
 * than B. Writes of this process are applied at once (read your writes).
 */
export class DecisionCache {
  /**
   * Keyed by the blind index alone: the string the HMAC gave, hashed once by V8 and then looked up
   * as it is (a key joined with the tenant and kind was a new string to flatten and hash on every
   * check). Blind indexes are HMACs of kind and value under a key of the tenant's, so two entries
   * never share one in practice; each entry still names its tenant and kind, and a hit must match both.
   */
  private readonly entries: LRUCache<string, Entry>;
  /** `${tenant}\0${subjectId}` -> the keys of the entries that name the subject. */
  private readonly bySubject = new Map<string, string[]>();
  private readonly tenants = new Map<string, TenantTrack>();
  /** Per tenant, the log size after this process's latest write: no read older than it is kept. */
  private readonly ownWritesUpTo = new Map<string, number>();
  readonly stats: DecisionCacheStats = { hits: 0, misses: 0, stale: 0, evictions: 0, invalidations: 0, discarded: 0 };

  constructor(private readonly options: DecisionCacheOptions) {
    this.entries = new LRUCache<string, Entry>({
      max: options.maxEntries,
      dispose: (entry, key, reason) => {
        if (reason === 'evict') this.stats.evictions++;
        this.unlink(key, entry);
      },
    });
  }

  get stalenessMs(): number {
    return this.options.stalenessMs;
  }

  get size(): number {
    return this.entries.size;
  }

  /** How long ago the least recently caught-up tenant was caught up (null: no tenant followed); for metrics. */
  oldestCatchUpAgeMs(): number | null {
    let oldest: number | null = null;
    for (const track of this.tenants.values()) if (oldest === null || track.caughtUpAt < oldest) oldest = track.caughtUpAt;
    return oldest === null ? null : this.options.monotonic() - oldest;
  }

  /** Whether the tenant's cached state may be used now: its last catch-up started at most B ago. */
  isFresh(tenantId: string): boolean {
    const track = this.tenants.get(tenantId);
    return track !== undefined && this.options.monotonic() - track.caughtUpAt <= this.options.stalenessMs;
  }

  /** The log position up to which the tenant's changes are applied (undefined: not followed yet). */
  position(tenantId: string): number | undefined {
    return this.tenants.get(tenantId)?.position;
  }

  /** Tenants whose changes the cache follows. */
  followedTenants(): string[] {
    return [...this.tenants.keys()];
  }

  /**
   * The cached state of an identifier, if held, the tenant's cache is within B, and its changes
   * are applied at least up to `minPosition` (a consistency token's).
   */
  get(tenantId: string, index: IdentifierIndex, minPosition = 0): CachedIdentifier | undefined {
    const track = this.tenants.get(tenantId);
    if (!track) {
      this.stats.misses++;
      return undefined;
    }
    if (this.options.monotonic() - track.caughtUpAt > this.options.stalenessMs || track.position < minPosition) {
      this.stats.stale++;
      return undefined;
    }
    const entry = this.entries.get(index.blindIndex);
    if (!entry || entry.tenantId !== tenantId || entry.kind !== index.kind || entry.epoch !== track.epoch || (entry.negative !== undefined && entry.negative !== track.negatives)) {
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    return entry.value;
  }

  /**
   * Keeps what a miss read (the read started at monotonic `readAt`). Not kept if a change after
   * `read.version` was applied meanwhile: it might be a change of these identifiers' people that
   * the read did not see. The first read of a tenant starts following it from its version.
   */
  store(tenantId: string, indexes: IdentifierIndex[], read: DecisionStateRead, readAt: number): void {
    // A read that began before one of this process's own writes committed may miss it.
    if (read.version < (this.ownWritesUpTo.get(tenantId) ?? 0)) {
      this.stats.discarded++;
      return;
    }
    let track = this.tenants.get(tenantId);
    if (!track) this.tenants.set(tenantId, (track = { position: read.version, epoch: 0, negatives: 0, caughtUpAt: readAt }));
    if (read.version < track.position) {
      this.stats.discarded++;
      return;
    }
    for (const index of indexes) {
      const value = identifierState(read, index);
      const key = index.blindIndex;
      const person = value.subject !== null && value.subject !== ERASED ? value.subject : null;
      this.entries.set(key, { tenantId, kind: index.kind, value, epoch: track.epoch, negative: person ? undefined : track.negatives });
      if (person) this.link(tenantId, person.subjectId, key);
    }
  }

  /**
   * Applies changes of the tenant's log up to `position` (exclusive), in one synchronous step, so
   * no read can be stored between the changes being applied and the position moving.
   */
  apply(tenantId: string, changes: AuditChange[], position: number): void {
    const track = this.tenants.get(tenantId);
    if (!track || position <= track.position) return;
    track.position = position;
    for (const change of changes) {
      if (change.type !== null && TENANT_ROW.has(change.type)) this.options.onTenantChange?.(tenantId);
      if (change.type !== null && TENANT_WIDE.has(change.type)) {
        track.epoch++;
        this.stats.invalidations++;
        continue;
      }
      if (change.type !== null && IDENTIFIER_MOVED.has(change.type)) track.negatives++;
      if (change.subjectId === null) continue;
      const keys = this.bySubject.get(`${tenantId}\0${change.subjectId}`);
      if (keys) {
        for (const key of [...keys]) this.entries.delete(key);
        this.stats.invalidations++;
      } else {
        // Someone the cache holds nothing of: perhaps a new person behind an identifier cached as nobody's.
        track.negatives++;
      }
    }
  }

  /**
   * This process committed writes of these subjects (read your writes): their entries go at once,
   * before the writes are answered, and no read older than `logSize` (the log's size after the
   * commit) is kept from now on: a check that read before the commit and stores after it would
   * otherwise put the old state back. `createdSubjects`: the writes made new people.
   */
  written(tenantId: string, subjectIds: Iterable<string>, createdSubjects: boolean, logSize: number): void {
    this.ownWritesUpTo.set(tenantId, Math.max(this.ownWritesUpTo.get(tenantId) ?? 0, logSize));
    const track = this.tenants.get(tenantId);
    if (!track) return;
    for (const subjectId of subjectIds) {
      const keys = this.bySubject.get(`${tenantId}\0${subjectId}`);
      if (keys) for (const key of [...keys]) this.entries.delete(key);
    }
    if (createdSubjects) track.negatives++;
  }

  /** Drops everything held for the tenant (its keys changed, it was erased, or a change could not be read). */
  forgetTenant(tenantId: string): void {
    const track = this.tenants.get(tenantId);
    if (track) track.epoch++;
  }

  /** A catch-up that started at `startedAt` applied these tenants' changes committed before then. */
  caughtUp(tenantIds: string[], startedAt: number): void {
    for (const tenantId of tenantIds) {
      const track = this.tenants.get(tenantId);
      if (track) track.caughtUpAt = Math.max(track.caughtUpAt, startedAt);
    }
  }

  private link(tenantId: string, subjectId: string, key: string): void {
    const s = `${tenantId}\0${subjectId}`;
    const keys = this.bySubject.get(s);
    if (!keys) this.bySubject.set(s, [key]);
    else if (!keys.includes(key)) keys.push(key);
  }

  private unlink(key: string, entry: Entry): void {
    const subject = entry.value.subject;
    if (!subject || subject === ERASED) return;
    const s = `${entry.tenantId}\0${subject.subjectId}`;
    const keys = this.bySubject.get(s);
    if (!keys) return;
    const rest = keys.filter((k) => k !== key);
    if (rest.length === 0) this.bySubject.delete(s);
    else this.bySubject.set(s, rest);
  }
}

/** What a read says of one identifier. */
export function identifierState(read: DecisionStateRead, index: IdentifierIndex): CachedIdentifier {
  const id = `${index.kind}:${index.blindIndex}`;
  const found = read.subjects.get(id);
  if (found) return { subject: found, rows: read.state.get(found.subjectId) ?? EMPTY_ROWS };
  return { subject: read.suppressed.has(id) ? ERASED : null, rows: EMPTY_ROWS };
}

const EMPTY_ROWS: SubjectStateRows = Object.freeze({ scopes: [], windows: [] }) as unknown as SubjectStateRows;
