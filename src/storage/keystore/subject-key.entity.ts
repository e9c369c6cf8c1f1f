import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from '../entities/columns';

/** A subject key, wrapped by the tenant key of `epoch`; deleted when the subject is erased. */
@Entity({ name: 'subject_keys' })
@Index('ix_subject_keys_epoch', ['tenantId', 'epoch'])
export class SubjectKeyEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ type: 'integer' })
  epoch!: number;

  @Column({ name: 'wrapped_key', type: 'text' })
  wrappedKey!: string;

  /** AES-GCM encryptions made with this key so far (NIST SP 800-38D: at most 2^32 with random IVs). */
  @Column({ name: 'encryptions', type: 'bigint', transformer: epochMs })
  encryptions!: number;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;
}
