import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A subject key, wrapped by the tenant key of `epoch`. */
@Entity({ name: 'subject_keys' })
export class SubjectKeyEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  @Column({ type: 'integer' })
  epoch!: number;

  @Column({ name: 'wrapped_key', type: 'text' })
  wrappedKey!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;
}
