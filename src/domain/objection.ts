import { encryptField } from '../crypto/field-cipher';
import { KeyManager, SubjectKey } from '../crypto/key-manager';
import { AuditEntry, AuditTrail } from '../audit/audit-types';
import { TxContext } from '../shared/unit-of-work';
import { applyToScope, ScopeState } from './consent-rules';
import { auditEntryOf, newId } from './consent-writer';
import { sealEvent } from './event-codec';
import { ConsentEvent, IdentifierRef } from './model';
import { ChangeFeedRepository, ConsentRepository, IdentifierIndex, PurposeRepository, StoredConsentEvent, SubjectRepository } from './ports';

/** Audit entry type of an objection to direct marketing; names the subject and, as `ref`, the request. */
export const SUBJECT_OBJECTED = 'SUBJECT_OBJECTED';

/** Whom an objection is about, found before its transaction (keys before data). */
export interface PreparedObjection {
  tenantId: string;
  identifier: IdentifierRef;
  index: IdentifierIndex;
  /** The person's subject when found (null: a new person, or an erased identifier). */
  subjectId: string | null;
  /** For a person the tenant never recorded: the subject id their key was made for. */
  newSubjectId?: string;
  /** The key of the person: found, or made for a new person. Null: an erased identifier. */
  key: SubjectKey | null;
  /** The identifier names an erased person (being erased, or reached by subject): every check denies it; nothing is created. */
  erased: boolean;
}

/** What an objection did, inside the request's transaction. */
export interface AppliedObjection {
  subjectId: string | null;
  createdSubject: boolean;
  /** MARKETING purposes an OPT_OUT was recorded for. */
  purposes: number;
  /** The objection's time on the event-time axis (absent when nothing was recorded). */
  objectedAt?: number;
  /** What the request's completion says (no personal data). */
  note: string;
}

/**
 * Art. 21(2)-(3): the objection to direct marketing. In the transaction that registers the
 * request, under the subject's lock (the lock every consent write of the person takes): an
 * OPT_OUT of channel ANY for every MARKETING purpose of the tenant (provenance: the request, by
 * the event's request id "objection:{request}#{purpose}", "objection:{request}.{position}#{purpose}"
 * for a request's further identifiers, and the DPO as principal), their audit
 * entries and change-feed rows, the folded state, the person's standing objection
 * (`subjects.objected_at`) and a SUBJECT_OBJECTED audit entry naming the person, which other
 * processes' decision caches follow (docs/architecture.md, "The decision cache").
 *
 * Ordering: the rules order consents by event time, so the objection takes the later of now and
 * the latest opt-in time the person has: every opt-in recorded before the objection (including one
 * that raced it and committed first) is then not later than it and allows nothing; only an opt-in
 * recorded after it, for the purpose itself and with a later event time, allows marketing again.
 *
 * Everything is per subject (`apply` takes one person under their lock), so when identifiers can
 * be linked as one person (issue 18, point 2) an objection reaches each linked subject by applying
 * it to each, with the same request as provenance, and a later link can apply a standing objection
 * to the newly linked subject the same way.
 */
export class ObjectionRecorder {
  constructor(
    private readonly subjects: SubjectRepository,
    private readonly consent: ConsentRepository,
    private readonly purposes: PurposeRepository,
    private readonly changes: ChangeFeedRepository,
    private readonly keys: KeyManager,
    private readonly audit: AuditTrail,
  ) {}

  /**
   * Whether the person consented to a MARKETING purpose after `since` (their own standing
   * objection): one that objected and opted in again. A later objection of someone linked to
   * them must reach that consent (identity-links.ts, carryObjection); one that objected and did
   * not consent since is covered by their own objection already.
   */
  async consentedToMarketingSince(tx: TxContext, tenantId: string, subjectId: string, since: number): Promise<boolean> {
    const scopes = (await this.consent.loadState(tx, tenantId, [subjectId])).get(subjectId)?.scopes ?? [];
    const later = new Set(scopes.filter((s) => s.optIn && s.optIn.eventTime > since).map((s) => s.purposeId));
    if (later.size === 0) return false;
    for (const purposeId of later) if ((await this.purposes.find(tx, tenantId, purposeId))?.category === 'MARKETING') return true;
    return false;
  }

  /** Outside any transaction: the person (and key), or a key for a new person. */
  async prepare(tx: TxContext, tenantId: string, identifier: IdentifierRef, index: IdentifierIndex): Promise<PreparedObjection> {
    const found = await this.subjects.findByIdentifier(tx, tenantId, index);
    if (found && !found.erased) return { tenantId, identifier, index, subjectId: found.subjectId, key: await this.keys.subjectKey(tenantId, found.subjectId), erased: false };
    // The row of a person being erased: every check denies them already.
    if (found) return { tenantId, identifier, index, subjectId: null, key: null, erased: true };
    // A person the tenant never recorded, or an erased person's identifier (its tombstone): the
    // objection is kept for them (Art. 21(3): a consent imported or recorded later with an earlier
    // time must not allow marketing; a consent recorded after an erasure starts a fresh subject,
    // which would not know of it), so they become a subject with just the objection; their key is
    // made by `withKey`, outside this read.
    return { tenantId, identifier, index, subjectId: null, newSubjectId: newId(), key: null, erased: false };
  }

  /**
   * An objection for a person already known by subject (one reached through an identity link,
   * `index` one of their identifiers). Called in the request's transaction: the person's key is
   * read from the key store there, as `apply` does for a person created concurrently.
   */
  async prepareSubject(tx: TxContext, tenantId: string, subjectId: string, index: IdentifierIndex): Promise<PreparedObjection> {
    const found = await this.subjects.lock(tx, tenantId, subjectId);
    if (!found || found.erased) return { tenantId, identifier: { kind: index.kind, value: '' }, index, subjectId: null, key: null, erased: true };
    return { tenantId, identifier: { kind: index.kind, value: '' }, index, subjectId, key: await this.keys.subjectKey(tenantId, subjectId), erased: false };
  }

  /** Outside any transaction: the key of a new person (keys before data, in the key store). */
  async withKey(prepared: PreparedObjection, now: number): Promise<PreparedObjection> {
    if (!prepared.newSubjectId || prepared.key) return prepared;
    const key = (await this.keys.createSubjectKeys(prepared.tenantId, [{ subjectId: prepared.newSubjectId, use: 1 }], now)).get(prepared.newSubjectId)!;
    return { ...prepared, key };
  }

  /**
   * In the request's transaction: records the objection (see the class). `request.ref` is its
   * provenance when it is not the request `id` itself: the identity link that carried a standing
   * objection over to a linked subject (then `id` only keys the events' request ids).
   */
  async apply(tx: TxContext, prepared: PreparedObjection, request: { id: string; principal: string; now: number; position?: number; ref?: string }): Promise<AppliedObjection> {
    const { tenantId } = prepared;
    if (prepared.erased || !prepared.key) return { subjectId: null, createdSubject: false, purposes: 0, note: 'objection: the identifier was erased; every check denies it' };
    let subjectId = prepared.subjectId;
    let createdSubject = false;
    if (subjectId === null) {
      // Created meanwhile by a consent write: object for that person (the key made is not used).
      const now = await this.subjects.findByIdentifier(tx, tenantId, prepared.index);
      if (now) return this.apply(tx, { ...prepared, subjectId: now.subjectId, key: await this.keys.subjectKey(tenantId, now.subjectId) }, request);
      subjectId = prepared.newSubjectId!;
      await this.subjects.insertMany(
        tx,
        [{ id: subjectId, tenantId, createdAt: request.now }],
        [
          {
            ...prepared.index,
            tenantId,
            subjectId,
            createdAt: request.now,
            valueCiphertext: encryptField(
              prepared.key.key,
              prepared.key.kid,
              { tenant: tenantId, subject: subjectId, table: 'subject_identifiers', column: 'value_ciphertext', row: `${prepared.index.kind}:${prepared.index.blindIndex}` },
              prepared.identifier.value,
            ),
          },
        ],
      );
      createdSubject = true;
    }
    const locked = await this.subjects.lock(tx, tenantId, subjectId);
    if (!locked || locked.erased) return { subjectId: null, createdSubject: false, purposes: 0, note: 'objection: the person was erased; every check denies them' };

    const state = (await this.consent.loadState(tx, tenantId, [subjectId])).get(subjectId)?.scopes ?? [];
    let objectedAt = Math.max(request.now, locked.objectedAt ?? 0);
    for (const scope of state) if (scope.optIn && scope.optIn.eventTime > objectedAt) objectedAt = scope.optIn.eventTime;

    const marketing: string[] = [];
    for (let after: string | null = null; ; ) {
      const page = await this.purposes.list(tx, tenantId, after, 500);
      for (const p of page) if (p.category === 'MARKETING') marketing.push(p.id);
      if (page.length < 500) break;
      after = page[page.length - 1].id;
    }

    const scopes = new Map(state.map((s) => [`${s.purposeId}\u0000${s.channel}`, s]));
    const changed: Array<{ subjectId: string; scope: ScopeState }> = [];
    const rows: StoredConsentEvent[] = [];
    const entries: AuditEntry[] = [];
    const events: ConsentEvent[] = [];
    for (const purposeId of marketing) {
      const event: ConsentEvent = {
        id: newId(),
        tenantId,
        subjectId,
        kind: 'OPT_OUT',
        purposeId,
        channel: 'ANY',
        eventTime: objectedAt,
        recordTime: request.now,
        method: 'API',
        principal: request.principal,
        evidence: {},
        lawfulBasis: null,
        jurisdiction: '',
        // One request may reach several persons: those after its first identifier get the position.
        requestId: request.position && request.position > 1 ? `objection:${request.id}.${request.position}#${purposeId}` : `objection:${request.id}#${purposeId}`,
      };
      const sealed = sealEvent(event, prepared.key, '');
      events.push(event);
      rows.push(sealed);
      entries.push(auditEntryOf(event, sealed));
      const key = `${purposeId}\u0000ANY`;
      const after = applyToScope(scopes.get(key) ?? { purposeId, channel: 'ANY' }, { id: event.id, kind: 'OPT_OUT', eventTime: objectedAt });
      scopes.set(key, after);
      changed.push({ subjectId, scope: after });
    }
    entries.push({ type: SUBJECT_OBJECTED, time: request.now, principal: request.principal, subject: subjectId, ref: request.ref ?? `tenants/${tenantId}/requests/${request.id}`, eventTime: objectedAt });
    const first = await this.audit.appendAfter(tx, tenantId, async () => {
      if (rows.length > 0) await this.consent.insertEvents(tx, rows);
      return entries;
    });
    // The opt-outs of the MARKETING purposes there are, and the standing objection itself (its
    // SUBJECT_OBJECTED entry, the last one): a copy kept from the feed must deny marketing
    // purposes made later too (found by a probe: with none there yet, the feed said nothing).
    await this.changes.append(tx, [
      ...events.map((event, i) => ({ tenantId, kind: 'OPT_OUT' as const, subjectId, purposeId: event.purposeId, channel: event.channel, eventId: event.id, at: request.now, auditSeq: first + i })),
      { tenantId, kind: 'OBJECTED' as const, subjectId, purposeId: null, channel: null, eventId: null, at: request.now, auditSeq: first + events.length },
    ]);
    if (events.length > 0) await this.consent.saveStates(tx, tenantId, changed, []);
    await this.subjects.setObjection(tx, tenantId, subjectId, objectedAt);
    return {
      subjectId,
      createdSubject,
      purposes: marketing.length,
      objectedAt,
      note: `objection applied: OPT_OUT on every channel for ${marketing.length} MARKETING purpose(s); standing objection from ${new Date(objectedAt).toISOString()}`,
    };
  }
}
