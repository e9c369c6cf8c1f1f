import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { epochMs } from './columns';

/** The append-only consent history. Rows are inserted, never updated. */
@Entity({ name: 'consent_events' })
@Index('uq_consent_events_id', ['id'], { unique: true })
@Index('uq_consent_events_request', ['tenantId', 'requestId'], { unique: true })
@Index('ix_consent_events_subject', ['tenantId', 'subjectId', 'seq'])
@Index('ix_consent_events_tenant', ['tenantId', 'seq'])
export class ConsentEventEntity {
  /** Recording order; also the pagination cursor. */
  @PrimaryGeneratedColumn({ type: 'integer' })
  seq!: number;

  /** Opaque random id, the last segment of the event's resource name. */
  @Column({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ type: 'varchar', length: 24 })
  kind!: string;

  /** A purpose id, or '-' for all purposes. */
  @Column({ name: 'purpose_id', type: 'varchar', length: 63 })
  purposeId!: string;

  @Column({ type: 'varchar', length: 16 })
  channel!: string;

  @Column({ name: 'event_time', type: 'bigint', transformer: epochMs })
  eventTime!: number;

  @Column({ name: 'record_time', type: 'bigint', transformer: epochMs })
  recordTime!: number;

  @Column({ type: 'varchar', length: 24 })
  method!: string;

  @Column({ name: 'notice_purpose_id', type: 'varchar', length: 63, nullable: true })
  noticePurposeId!: string | null;

  @Column({ name: 'notice_version', type: 'integer', nullable: true })
  noticeVersion!: number | null;

  @Column({ name: 'notice_sha256', type: 'varchar', length: 64, nullable: true })
  noticeSha256!: string | null;

  @Column({ name: 'notice_language', type: 'varchar', length: 35, nullable: true })
  noticeLanguage!: string | null;

  @Column({ type: 'varchar', length: 128 })
  principal!: string;

  @Column({ name: 'lawful_basis', type: 'varchar', length: 24, nullable: true })
  lawfulBasis!: string | null;

  @Column({ type: 'varchar', length: 16 })
  jurisdiction!: string;

  @Column({ name: 'expire_time', type: 'bigint', nullable: true, transformer: epochMs })
  expireTime!: number | null;

  @Column({ name: 'request_id', type: 'varchar', length: 140 })
  requestId!: string;

  /** Keyed HMAC of the request, to tell a retry from a reused request_id. */
  @Column({ name: 'request_fingerprint', type: 'varchar', length: 64 })
  requestFingerprint!: string;

  /** Compact JWE (subject key) of the Evidence JSON; null when there was none. */
  @Column({ name: 'evidence_ciphertext', type: 'text', nullable: true })
  evidenceCiphertext!: string | null;
}
