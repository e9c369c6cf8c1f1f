import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** An identifier of a subject: looked up by keyed blind index, the value only encrypted. */
@Entity({ name: 'subject_identifiers' })
@Index('ix_subject_identifiers_subject', ['tenantId', 'subjectId'])
export class SubjectIdentifierEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'varchar', length: 16 })
  kind!: string;

  @PrimaryColumn({ name: 'blind_index', type: 'varchar', length: 64 })
  blindIndex!: string;

  @Column({ name: 'subject_id', type: 'varchar', length: 32 })
  subjectId!: string;

  /** Compact JWE of the normalised identifier under the subject key. */
  @Column({ name: 'value_ciphertext', type: 'text' })
  valueCiphertext!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;
}
