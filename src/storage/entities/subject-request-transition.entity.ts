import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** One state change of a data-subject request, with its principal. Append-only. */
@Entity({ name: 'subject_request_transitions' })
export class SubjectRequestTransitionEntity {
  @PrimaryColumn({ name: 'request_id', type: 'varchar', length: 32 })
  requestId!: string;

  @PrimaryColumn({ type: 'integer' })
  seq!: number;

  @Column({ name: 'from_state', type: 'varchar', length: 16, nullable: true })
  fromState!: string | null;

  @Column({ name: 'to_state', type: 'varchar', length: 16 })
  toState!: string;

  @Column({ type: 'varchar', length: 128 })
  principal!: string;

  @Column({ type: 'bigint', transformer: epochMs })
  at!: number;

  @Column({ type: 'varchar', length: 200 })
  note!: string;
}
