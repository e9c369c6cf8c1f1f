import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A restriction of processing (Art. 18) of a subject: in force while lifted_at is null. */
@Entity({ name: 'subject_restrictions' })
@Index('uq_subject_restrictions_request', ['tenantId', 'requestId', 'subjectId'], { unique: true })
@Index('ix_subject_restrictions_subject', ['tenantId', 'subjectId'])
export class SubjectRestrictionEntity {
  @PrimaryColumn({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ type: 'varchar', length: 40 })
  ground!: string;

  /** The RESTRICTION request (subject_requests.id) it carries out. */
  @Column({ name: 'request_id', type: 'varchar', length: 32 })
  requestId!: string;

  @Column({ type: 'text' })
  note!: string;

  @Column({ name: 'placed_by', type: 'varchar', length: 128 })
  placedBy!: string;

  @Column({ name: 'placed_at', type: 'bigint', transformer: epochMs })
  placedAt!: number;

  @Column({ name: 'notified_by', type: 'varchar', length: 128, nullable: true })
  notifiedBy!: string | null;

  @Column({ name: 'notice_method', type: 'varchar', length: 64, nullable: true })
  noticeMethod!: string | null;

  @Column({ name: 'notified_at', type: 'bigint', nullable: true, transformer: epochMs })
  notifiedAt!: number | null;

  @Column({ name: 'lifted_by', type: 'varchar', length: 128, nullable: true })
  liftedBy!: string | null;

  @Column({ name: 'lifted_at', type: 'bigint', nullable: true, transformer: epochMs })
  liftedAt!: number | null;

  @Column({ name: 'lift_reason', type: 'text', nullable: true })
  liftReason!: string | null;
}
