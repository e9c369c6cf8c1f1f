import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A data subject, by opaque random id. Holds no personal data itself. */
@Entity({ name: 'subjects' })
@Index('ix_subjects_tenant', ['tenantId'])
export class SubjectEntity {
  @PrimaryColumn({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;

  @Column({ name: 'erased_at', type: 'bigint', nullable: true, transformer: epochMs })
  erasedAt!: number | null;

  /** Art. 21(3): when the person objected to direct marketing (event-time axis); null: no objection. */
  @Column({ name: 'objected_at', type: 'bigint', nullable: true, transformer: epochMs })
  objectedAt!: number | null;

  /** Art. 18: since when the person's processing is restricted (a restriction in force); null: none. */
  @Column({ name: 'restricted_since', type: 'bigint', nullable: true, transformer: epochMs })
  restrictedSince!: number | null;

  /** A fresh subject made for the new owner of a reassigned identifier: when it passed to them; null: not one. */
  @Column({ name: 'reassigned_at', type: 'bigint', nullable: true, transformer: epochMs })
  reassignedAt!: number | null;

  /** When an identifier last moved off this subject (rectified or reassigned); null: never. */
  @Column({ name: 'identifiers_changed_at', type: 'bigint', nullable: true, transformer: epochMs })
  identifiersChangedAt!: number | null;
}
