import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from '../entities/columns';

/** One erased subject (opaque ids and a time only), replayed onto restored data at start. */
@Entity({ name: 'subject_erasures' })
export class SubjectErasureEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ name: 'erased_at', type: 'bigint', transformer: epochMs })
  erasedAt!: number;
}
