import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A tombstone of an erased identifier: blind index, the erased subject's opaque id, when. */
@Entity({ name: 'suppressions' })
export class SuppressionEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'varchar', length: 16 })
  kind!: string;

  @PrimaryColumn({ name: 'blind_index', type: 'varchar', length: 64 })
  blindIndex!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ name: 'erased_at', type: 'bigint', transformer: epochMs })
  erasedAt!: number;
}
