import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A legal hold (Art. 17(3)) on a subject: erasure is refused while released_at is null. */
@Entity({ name: 'legal_holds' })
@Index('uq_legal_holds_request', ['tenantId', 'requestId'], { unique: true })
@Index('ix_legal_holds_subject', ['tenantId', 'subjectId'])
export class LegalHoldEntity {
  @PrimaryColumn({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ type: 'varchar', length: 40 })
  ground!: string;

  @Column({ type: 'text' })
  note!: string;

  @Column({ name: 'placed_by', type: 'varchar', length: 128 })
  placedBy!: string;

  @Column({ name: 'placed_at', type: 'bigint', transformer: epochMs })
  placedAt!: number;

  @Column({ name: 'released_by', type: 'varchar', length: 128, nullable: true })
  releasedBy!: string | null;

  @Column({ name: 'released_at', type: 'bigint', nullable: true, transformer: epochMs })
  releasedAt!: number | null;

  @Column({ name: 'release_note', type: 'text', nullable: true })
  releaseNote!: string | null;

  @Column({ name: 'request_id', type: 'varchar', length: 128 })
  requestId!: string;
}
