import { randomBytes } from 'node:crypto';
import { encryptField } from '../crypto/field-cipher';
import { KeyManager, SubjectKey, TenantKeyring } from '../crypto/key-manager';
import { failedPrecondition } from '../shared/errors';
import { CollectionMethod, IdentifierRef } from './model';
import { IdentifierIndex, SubjectRef, SubjectRepository } from './ports';
import { TxContext } from '../shared/unit-of-work';

/** Finds data subjects by identifier (blind index) and creates them with their own key. */
export class SubjectDirectory {
  constructor(
    private readonly subjects: SubjectRepository,
    private readonly keys: KeyManager,
  ) {}

  index(keyring: TenantKeyring, identifier: IdentifierRef): IdentifierIndex {
    return { kind: identifier.kind, blindIndex: this.keys.blindIndex(keyring, identifier) };
  }

  /**
   * The person an identifier names now, or null. After an erasure the identifier names nobody
   * until the person signs up again (then a new, unlinked subject): nothing reachable by an
   * erased identifier leads to what is left of the erased person (docs/keys.md, "Erasure").
   */
  find(tx: TxContext, keyring: TenantKeyring, identifier: IdentifierRef): Promise<SubjectRef | null> {
    return this.subjects.findByIdentifier(tx, keyring.tenantId, this.index(keyring, identifier));
  }

  /** Whether the identifier was erased (a suppression tombstone exists), whoever it names now. */
  async wasErased(tx: TxContext, keyring: TenantKeyring, identifier: IdentifierRef): Promise<boolean> {
    const index = this.index(keyring, identifier);
    return (await this.subjects.findSuppressed(tx, keyring.tenantId, [index])).size > 0;
  }

  /** Whether the subject was erased (a missing subject counts as erased: nothing is left of it). */
  async isErased(tx: TxContext, tenantId: string, subjectId: string): Promise<boolean> {
    const subject = await this.subjects.lock(tx, tenantId, subjectId);
    return !subject || subject.erased;
  }

  /**
   * The subject with this identifier, created (with a fresh subject key and the identifier
   * stored encrypted) if there is none. Two racing creators collide on the identifier's key;
   * the transaction runner runs the loser again, which then finds the winner's subject.
   */
  async findOrCreate(
    tx: TxContext,
    keyring: TenantKeyring,
    identifier: IdentifierRef,
    now: number,
    method: CollectionMethod,
  ): Promise<{ subjectId: string; key: SubjectKey; created: boolean }> {
    const tenantId = keyring.tenantId;
    const index = this.index(keyring, identifier);
    const found = await this.subjects.findByIdentifier(tx, tenantId, index);
    if (!found && method === 'IMPORT') {
      // Art. 21(3): an erased person's objection to direct marketing must survive a re-import of
      // an old list. Only the person's own new consent (any other method) starts a fresh subject.
      const tombstone = (await this.subjects.findSuppressed(tx, tenantId, [index])).get(`${index.kind}:${index.blindIndex}`);
      if (tombstone) throw failedPrecondition('SUBJECT_SUPPRESSED', 'this identifier belongs to an erased subject and cannot be imported again');
    }
    if (found) {
      // The erasure takes the same lock: a write that waited for it sees the subject erased and
      // stops here, so it never encrypts new data for an erased person.
      const locked = await this.subjects.lock(tx, tenantId, found.subjectId);
      if (!locked || locked.erased) {
        throw failedPrecondition('SUBJECT_ERASED', 'the subject was erased', { subject: `tenants/${tenantId}/subjects/${found.subjectId}` });
      }
      return { subjectId: found.subjectId, key: await this.keys.subjectKey(tenantId, found.subjectId), created: false };
    }
    const subjectId = randomBytes(16).toString('hex');
    // The key store is another database: the key is written first, so a crash before the data
    // commits leaves an unused key, never data without a key. It counts the identifier's encryption.
    const key = await this.keys.createSubjectKey(tenantId, subjectId, now, 1);
    await this.subjects.insert(tx, { id: subjectId, tenantId, createdAt: now });
    const valueCiphertext = encryptField(
      key.key,
      key.kid,
      { tenant: tenantId, subject: subjectId, table: 'subject_identifiers', column: 'value_ciphertext', row: `${index.kind}:${index.blindIndex}` },
      identifier.value,
    );
    await this.subjects.insertIdentifier(tx, { ...index, tenantId, subjectId, valueCiphertext, createdAt: now });
    return { subjectId, key, created: true };
  }
}
