import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/**
 * Current consent state per (subject, purpose or '-', channel or ANY): the latest opt-in-type and
 * opt-out event, kept in the transaction that appends the event. Serves live checks in one lookup.
 */
@Entity({ name: 'consent_state' })
export class ConsentStateEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @PrimaryColumn({ name: 'purpose_id', type: 'varchar', length: 63 })
  purposeId!: string;

  @PrimaryColumn({ type: 'varchar', length: 16 })
  channel!: string;

  @Column({ name: 'opt_in_event_id', type: 'varchar', length: 32, nullable: true })
  optInEventId!: string | null;

  @Column({ name: 'opt_in_kind', type: 'varchar', length: 24, nullable: true })
  optInKind!: string | null;

  @Column({ name: 'opt_in_time', type: 'bigint', nullable: true, transformer: epochMs })
  optInTime!: number | null;

  @Column({ name: 'opt_in_expire_time', type: 'bigint', nullable: true, transformer: epochMs })
  optInExpireTime!: number | null;

  @Column({ name: 'opt_out_event_id', type: 'varchar', length: 32, nullable: true })
  optOutEventId!: string | null;

  @Column({ name: 'opt_out_time', type: 'bigint', nullable: true, transformer: epochMs })
  optOutTime!: number | null;
}
