import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/**
 * One identifier of a data-subject request, by kind and blind index (never in clear): the subject
 * it found, its own identity verification, and what carrying out the request did for it.
 */
@Entity({ name: 'subject_request_identifiers' })
@Index('ix_subject_request_identifiers_subject', ['tenantId', 'subjectId'])
export class SubjectRequestIdentifierEntity {
  @PrimaryColumn({ name: 'request_id', type: 'varchar', length: 32 })
  requestId!: string;

  @PrimaryColumn({ type: 'integer' })
  position!: number;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ name: 'identifier_kind', type: 'varchar', length: 16 })
  identifierKind!: string;

  @Column({ name: 'blind_index', type: 'varchar', length: 64 })
  blindIndex!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32, nullable: true })
  subjectId!: string | null;

  /** For a subject reached through an identity link: the link's resource name. */
  @Column({ name: 'via_link', type: 'varchar', length: 200, nullable: true })
  viaLink!: string | null;

  @Column({ name: 'verification_method', type: 'varchar', length: 64, nullable: true })
  verificationMethod!: string | null;

  @Column({ name: 'verified_by', type: 'varchar', length: 128, nullable: true })
  verifiedBy!: string | null;

  @Column({ name: 'verified_at', type: 'bigint', nullable: true, transformer: epochMs })
  verifiedAt!: number | null;

  @Column({ type: 'varchar', length: 200, nullable: true })
  outcome!: string | null;

  /** An ERASURE request's erasure of this row's subject, as recorded in its transaction (JSON: time and counts). */
  @Column({ type: 'varchar', length: 200, nullable: true })
  erasure!: string | null;
}
