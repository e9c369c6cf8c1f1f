import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/**
 * A tombstone of an erased identifier: its blind index and when it was erased. It names no
 * subject: nothing leads from the identifier to what is left of the erased person (docs/keys.md).
 */
@Entity({ name: 'suppressions' })
export class SuppressionEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'varchar', length: 16 })
  kind!: string;

  @PrimaryColumn({ name: 'blind_index', type: 'varchar', length: 64 })
  blindIndex!: string;

  @Column({ name: 'erased_at', type: 'bigint', transformer: epochMs })
  erasedAt!: number;
}
