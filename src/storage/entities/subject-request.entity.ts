import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A data-subject request. The requester is referenced by blind index and opaque subject id only. */
@Entity({ name: 'subject_requests' })
@Index('uq_subject_requests_request', ['tenantId', 'requestId'], { unique: true })
@Index('ix_subject_requests_due', ['tenantId', 'state', 'dueTime'])
@Index('ix_subject_requests_created', ['tenantId', 'createdAt'])
@Index('ix_subject_requests_subject', ['tenantId', 'subjectId'])
export class SubjectRequestEntity {
  @PrimaryColumn({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ type: 'varchar', length: 16 })
  kind!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: string;

  @Column({ name: 'identifier_kind', type: 'varchar', length: 16 })
  identifierKind!: string;

  @Column({ name: 'blind_index', type: 'varchar', length: 64 })
  blindIndex!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32, nullable: true })
  subjectId!: string | null;

  @Column({ name: 'received_via', type: 'varchar', length: 16 })
  receivedVia!: string;

  @Column({ name: 'receive_time', type: 'bigint', transformer: epochMs })
  receiveTime!: number;

  @Column({ name: 'due_time', type: 'bigint', transformer: epochMs })
  dueTime!: number;

  @Column({ name: 'extension_reason', type: 'text', nullable: true })
  extensionReason!: string | null;

  @Column({ name: 'verification_method', type: 'varchar', length: 64, nullable: true })
  verificationMethod!: string | null;

  @Column({ name: 'verified_by', type: 'varchar', length: 128, nullable: true })
  verifiedBy!: string | null;

  @Column({ name: 'rejection_reason', type: 'text', nullable: true })
  rejectionReason!: string | null;

  /** The outcome: for an erasure, the signed erasure receipt (JWS). */
  @Column({ type: 'text', nullable: true })
  result!: string | null;

  @Column({ name: 'request_id', type: 'varchar', length: 128 })
  requestId!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;

  @Column({ name: 'updated_at', type: 'bigint', transformer: epochMs })
  updatedAt!: number;

  /** RECTIFICATION: the correct identifier's kind, blind index and value (under the subject key). */
  @Column({ name: 'rectified_kind', type: 'varchar', length: 16, nullable: true })
  rectifiedKind!: string | null;

  @Column({ name: 'rectified_blind_index', type: 'varchar', length: 64, nullable: true })
  rectifiedBlindIndex!: string | null;

  @Column({ name: 'rectified_ciphertext', type: 'text', nullable: true })
  rectifiedCiphertext!: string | null;

  /** Art. 12(3)-(4): the person told of the extension / the rejection (JSON of RequestNotice), NULL until recorded. */
  @Column({ name: 'extension_notice', type: 'text', nullable: true })
  extensionNotice!: string | null;

  @Column({ name: 'rejection_notice', type: 'text', nullable: true })
  rejectionNotice!: string | null;
}
