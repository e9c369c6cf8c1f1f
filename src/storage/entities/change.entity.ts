import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { bigintNumber, epochMs } from './columns';

/**
 * One entry of the change feed (opt-out or erasure). `auditSeq` is the position of the change's
 * audit entry in its tenant's log: allocated under the log's head lock and committed with it, so
 * it is the tenant's commit order, gap-free, and a reader never sees a later position before an
 * earlier one (the AUTO_INCREMENT `seq` is allocated at insert and, on Galera, per node).
 */
@Entity({ name: 'change_outbox' })
@Index('ix_change_outbox_tenant', ['tenantId', 'seq'])
@Index('ix_change_outbox_position', ['tenantId', 'auditSeq'])
export class ChangeEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  seq!: number;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  /** OPT_OUT, ERASURE, RESTRICTED or UNRESTRICTED. */
  @Column({ type: 'varchar', length: 16 })
  kind!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ name: 'purpose_id', type: 'varchar', length: 63, nullable: true })
  purposeId!: string | null;

  @Column({ type: 'varchar', length: 16, nullable: true })
  channel!: string | null;

  @Column({ name: 'event_id', type: 'varchar', length: 32, nullable: true })
  eventId!: string | null;

  @Column({ type: 'bigint', transformer: epochMs })
  at!: number;

  @Column({ name: 'audit_seq', type: 'bigint', transformer: bigintNumber })
  auditSeq!: number;
}
