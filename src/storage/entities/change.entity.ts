import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { epochMs } from './columns';

/** One entry of the change feed (opt-out or erasure), in commit order per tenant. */
@Entity({ name: 'change_outbox' })
@Index('ix_change_outbox_tenant', ['tenantId', 'seq'])
export class ChangeEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  seq!: number;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  /** OPT_OUT or ERASURE. */
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
}
