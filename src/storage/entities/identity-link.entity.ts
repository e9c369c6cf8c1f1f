import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** Two identifiers linked as one person (issue 18); see migrations/1764000000014-IdentityLinks.ts. */
@Entity({ name: 'identity_links' })
@Index('uq_identity_links_request', ['tenantId', 'requestId'], { unique: true })
@Index('ix_identity_links_subject_a', ['tenantId', 'subjectA'])
@Index('ix_identity_links_subject_b', ['tenantId', 'subjectB'])
export class IdentityLinkEntity {
  @PrimaryColumn({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ name: 'subject_a', type: 'varchar', length: 32 })
  subjectA!: string;

  @Column({ name: 'kind_a', type: 'varchar', length: 16 })
  kindA!: string;

  @Column({ name: 'blind_index_a', type: 'varchar', length: 64 })
  blindIndexA!: string;

  @Column({ name: 'subject_b', type: 'varchar', length: 32 })
  subjectB!: string;

  @Column({ name: 'kind_b', type: 'varchar', length: 16 })
  kindB!: string;

  @Column({ name: 'blind_index_b', type: 'varchar', length: 64 })
  blindIndexB!: string;

  @Column({ name: 'evidence_ciphertext', type: 'text' })
  evidenceCiphertext!: string;

  @Column({ name: 'linked_by', type: 'varchar', length: 128 })
  linkedBy!: string;

  @Column({ name: 'linked_at', type: 'bigint', transformer: epochMs })
  linkedAt!: number;

  @Column({ name: 'unlinked_by', type: 'varchar', length: 128, nullable: true })
  unlinkedBy!: string | null;

  @Column({ name: 'unlinked_at', type: 'bigint', nullable: true, transformer: epochMs })
  unlinkedAt!: number | null;

  @Column({ name: 'unlink_reason', type: 'text', nullable: true })
  unlinkReason!: string | null;

  @Column({ name: 'request_id', type: 'varchar', length: 128 })
  requestId!: string;

  @Column({ type: 'varchar', length: 64 })
  fingerprint!: string;
}
