import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { bigintNumber, epochMs } from './columns';

/** The size of a tenant's audit log; its row lock serialises appends. */
@Entity({ name: 'audit_heads' })
export class AuditHeadEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ type: 'bigint', transformer: bigintNumber })
  size!: number;
}

/**
 * One audit log entry: canonical JSON without personal data, and its RFC 6962 leaf hash. The
 * columns after them repeat fields of the JSON for filtering; only the JSON is hashed.
 */
@Entity({ name: 'audit_entries' })
@Index('ix_audit_entries_subject', ['tenantId', 'subjectId', 'seq'])
@Index('ix_audit_entries_time', ['tenantId', 'entryTime'])
export class AuditEntryEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'bigint', transformer: bigintNumber })
  seq!: number;

  @Column({ name: 'entry_json', type: 'text' })
  entryJson!: string;

  @Column({ name: 'leaf_hash', type: 'varchar', length: 64 })
  leafHash!: string;

  @Column({ name: 'entry_type', type: 'varchar', length: 40, nullable: true })
  entryType!: string | null;

  @Column({ name: 'subject_id', type: 'varchar', length: 32, nullable: true })
  subjectId!: string | null;

  @Column({ name: 'purpose_id', type: 'varchar', length: 63, nullable: true })
  purposeId!: string | null;

  @Column({ type: 'varchar', length: 128, nullable: true })
  principal!: string | null;

  @Column({ name: 'entry_time', type: 'bigint', nullable: true, transformer: epochMs })
  entryTime!: number | null;
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

/** A checkpoint the service signed on its own schedule, kept for auditors (AuditService.ListCheckpoints). */
@Entity({ name: 'audit_checkpoints' })
export class AuditCheckpointEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'tree_size', type: 'bigint', transformer: bigintNumber })
  treeSize!: number;

  @Column({ name: 'root_hash', type: 'varchar', length: 64 })
  rootHash!: string;

  @Column({ name: 'signed_at', type: 'bigint', transformer: epochMs })
  signedAt!: number;

  /** The compact JWS, as GetCheckpoint returns it. */
  @Column({ type: 'text' })
  jws!: string;
}
