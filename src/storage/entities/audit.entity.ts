import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintNumber } from './columns';

/** The size of a tenant's audit log; its row lock serialises appends. */
@Entity({ name: 'audit_heads' })
export class AuditHeadEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ type: 'bigint', transformer: bigintNumber })
  size!: number;
}

/** One audit log entry: canonical JSON without personal data, and its RFC 6962 leaf hash. */
@Entity({ name: 'audit_entries' })
export class AuditEntryEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'bigint', transformer: bigintNumber })
  seq!: number;

  @Column({ name: 'entry_json', type: 'text' })
  entryJson!: string;

  @Column({ name: 'leaf_hash', type: 'varchar', length: 64 })
  leafHash!: string;
}

/** The hash of a complete subtree: level L, index i covers leaves [i*2^L, (i+1)*2^L). */
@Entity({ name: 'audit_nodes' })
export class AuditNodeEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'integer' })
  level!: number;

  @PrimaryColumn({ type: 'bigint', transformer: bigintNumber })
  idx!: number;

  @Column({ type: 'varchar', length: 64 })
  hash!: string;
}
