import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** The latest inbound message per (subject, channel): the start of its service window. */
@Entity({ name: 'service_windows' })
export class ServiceWindowEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @PrimaryColumn({ type: 'varchar', length: 16 })
  channel!: string;

  @Column({ name: 'event_id', type: 'varchar', length: 32 })
  eventId!: string;

  @Column({ name: 'last_inbound_time', type: 'bigint', transformer: epochMs })
  lastInboundTime!: number;
}
