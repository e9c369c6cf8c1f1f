import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** A tenant key rotation job; durable so that a restarted server finishes it. */
@Entity({ name: 'key_rotations' })
@Index('uq_key_rotations_request', ['tenantId', 'requestId'], { unique: true })
@Index('ix_key_rotations_state', ['state'])
export class KeyRotationEntity {
  @PrimaryColumn({ type: 'varchar', length: 32 })
  id!: string;

  @Column({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @Column({ name: 'request_id', type: 'varchar', length: 128 })
  requestId!: string;

  /** RUNNING, SUCCEEDED or FAILED. */
  @Column({ type: 'varchar', length: 16 })
  state!: string;

  @Column({ name: 'from_epoch', type: 'integer' })
  fromEpoch!: number;

  @Column({ name: 'to_epoch', type: 'integer' })
  toEpoch!: number;

  @Column({ type: 'integer' })
  total!: number;

  @Column({ type: 'integer' })
  done!: number;

  @Column({ type: 'varchar', length: 200, nullable: true })
  error!: string | null;

  @Column({ type: 'varchar', length: 128 })
  principal!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;

  @Column({ name: 'ended_at', type: 'bigint', nullable: true, transformer: epochMs })
  endedAt!: number | null;
}
