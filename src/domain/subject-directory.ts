import { KeyManager, TenantKeyring } from '../crypto/key-manager';
import { IdentifierRef } from './model';
import { IdentifierIndex, SubjectRef, SubjectRepository } from './ports';
import { TxContext } from '../shared/unit-of-work';

/** Finds data subjects by identifier (blind index); ConsentWriter creates them, with their own key. */
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
}
