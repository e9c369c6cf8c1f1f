import { KeyManager } from '../crypto/key-manager';
import { Clock } from './clock';
import { notFound } from '../shared/errors';
import { AuditTrail } from '../audit/audit-types';
import { ChangeFeedRepository, ConsentRepository, SubjectRepository } from './ports';
import { TransactionRunner, TxContext } from '../shared/unit-of-work';
import { names } from './resource-names';
import { IdentityLinkRepository } from './identity-links';
import { SignUpRepository } from './self-service-signup';

/** What erasing a person came to, as an ERASURE request keeps it. */
export interface ErasureRecord {
  erasedAt: number;
  counts: SubjectErasure['counts'];
}

/** What an erasure did. */
export interface SubjectErasure {
  erasedAt: number;
  /** The key destroyed, by id (never material). */
  keyId: string;
  /**
   * Identifiers replaced by tombstones, events kept without readable evidence, and identity links
   * (open or closed) and sign-up confirmations and e-mail deliveries (issue 20) deleted with the
   * person (0 on a repeat).
   */
  counts: { identifiers: number; eventsRetained: number; links: number; signUps: number };
  /** False when a repeat found the key already gone. */
  keyDestroyed: boolean;
  alreadyErased: boolean;
  /** The tenant's audit log size once the erasure committed (0 on a repeat): its consistency token's position. */
  logSize: number;
}

/**
 * The subject-shredding primitive (crypto-shredding). Under the subject's row lock it marks the
 * subject erased and clears its identifier ciphertext (every check answers SUBJECT_ERASED and no
 * writer encrypts anything for it from that commit on), then destroys the subject key in the key
 * store, after which no copy of its data, backups included, can be decrypted. Idempotent: a
 * repeat (or a restart after a crash between the two steps) finishes the key destruction.
 * Its cost is a handful of rows, whatever the number of the subject's events.
 */
/** Who the audit log names for an erasure written again onto restored data (replayLedger). */
const REPLAY_PRINCIPAL = 'system:erasure-replay';

export class SubjectEraser {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly subjects: SubjectRepository,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly changes: ChangeFeedRepository,
    private readonly consent: ConsentRepository,
    private readonly audit: AuditTrail,
    /** Identity links (issue 18): deleted with either person, in the erasure's transaction. */
    private readonly links: IdentityLinkRepository,
    /** Sign-up confirmations and e-mail deliveries (issue 20): deleted with the person. */
    private readonly signUps?: Pick<SignUpRepository, 'deleteOfSubject'>,
  ) {}

  /** Told about each committed erasure before it is answered (the decision cache forgets the person at once). */
  observer?: (tenantId: string, subjectId: string, logSize: number) => void;

  /**
   * Erases the person. `by` names who asks (the SUBJECT_ERASED entry's principal; the service's
   * own name when unset) and, for an ERASURE request, `record` runs in the erasure's transaction
   * with what it came to (the request keeps it: a finish after an interruption reports it).
   */
  async erase(
    tenantId: string,
    subjectId: string,
    by: { principal?: string; record?: (tx: TxContext, erasure: ErasureRecord) => Promise<void> } = {},
  ): Promise<SubjectErasure> {
    const now = this.clock.now();
    const keyring = await this.keys.tenantKeyring(tenantId);
    const { erasedAt, alreadyErased, counts, logSize } = await this.tx.write(async (tx) => {
      const locked = await this.subjects.lock(tx, tenantId, subjectId);
      if (!locked) throw notFound('SUBJECT', names.subject(tenantId, subjectId));
      if (locked.erased) return { erasedAt: now, alreadyErased: true, counts: { identifiers: 0, eventsRetained: 0, links: 0, signUps: 0 }, logSize: 0 };
      const identifiers = await this.subjects.markErased(tx, tenantId, subjectId, now);
      // The tombstones carry the identifiers' blind indexes: no other row may pair them with the person.
      await this.subjects.sealIdentifierReferences(tx, tenantId, subjectId, (blindIndex) => this.keys.erasedReference(keyring, blindIndex));
      await this.subjects.redactFreeTexts(tx, tenantId, subjectId);
      const eventsRetained = await this.consent.countEvents(tx, tenantId, subjectId);
      // A link names the person and holds evidence under their key: it goes with them.
      const links = await this.links.deleteOfSubject(tx, tenantId, subjectId);
      // Pending sign-ups hold the address (deliveries) and codes of the person: useless once erased.
      const signUps = (await this.signUps?.deleteOfSubject(tx, tenantId, subjectId)) ?? 0;
      const auditSeq = await this.audit.append(tx, tenantId, { type: 'SUBJECT_ERASED', time: now, principal: by.principal ?? 'system:subject-eraser', subject: subjectId, ref: `tenants/${tenantId}/subjects/${subjectId}/key` });
      // Other systems erase their copies from the feed; same transaction as the erasure mark.
      await this.changes.append(tx, [{ tenantId, kind: 'ERASURE', subjectId, purposeId: null, channel: null, eventId: null, at: now, auditSeq }]);
      const counts = { identifiers, eventsRetained, links, signUps };
      await by.record?.(tx, { erasedAt: now, counts });
      return { erasedAt: now, alreadyErased: false, counts, logSize: auditSeq + 1 };
    });
    if (!alreadyErased) this.observer?.(tenantId, subjectId, logSize);
    const keyDestroyed = await this.keys.destroySubjectKey(tenantId, subjectId, erasedAt);
    return { erasedAt, keyId: `tenants/${tenantId}/subjects/${subjectId}/key`, keyDestroyed, alreadyErased, counts, logSize };
  }

  /**
   * Replays the key store's erasure ledger onto the data before serving: a data backup restored
   * after an erasure would otherwise answer checks for the erased person. Returns how many
   * subjects had to be marked again.
   */
  async replayLedger(): Promise<number> {
    let replayed = 0;
    for (const entry of await this.keys.subjectErasures()) {
      // A shredded tenant has no keyring: its blind indexes are keyed hashes nobody can compute any more.
      const keyring = await this.keys.tenantKeyring(entry.tenantId).catch(() => null);
      const changed = await this.tx.write(async (tx) => {
        const locked = await this.subjects.lock(tx, entry.tenantId, entry.subjectId);
        if (!locked || locked.erased) return false;
        await this.subjects.markErased(tx, entry.tenantId, entry.subjectId, entry.erasedAt);
        if (keyring) await this.subjects.sealIdentifierReferences(tx, entry.tenantId, entry.subjectId, (blindIndex) => this.keys.erasedReference(keyring, blindIndex));
        await this.subjects.redactFreeTexts(tx, entry.tenantId, entry.subjectId);
        await this.links.deleteOfSubject(tx, entry.tenantId, entry.subjectId);
        await this.signUps?.deleteOfSubject(tx, entry.tenantId, entry.subjectId);
        // The restored log predates the erasure: its entry (and the feed's change) were lost with
        // the backup's cut-off. Written again, at the erasure's time, by the replay.
        if (keyring) {
          const auditSeq = await this.audit.append(tx, entry.tenantId, { type: 'SUBJECT_ERASED', time: entry.erasedAt, principal: REPLAY_PRINCIPAL, subject: entry.subjectId, ref: `tenants/${entry.tenantId}/subjects/${entry.subjectId}/key` });
          await this.changes.append(tx, [{ tenantId: entry.tenantId, kind: 'ERASURE', subjectId: entry.subjectId, purposeId: null, channel: null, eventId: null, at: entry.erasedAt, auditSeq }]);
        }
        return true;
      });
      if (changed) replayed++;
    }
    return replayed;
  }
}
