import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { epochMs } from './columns';

/** One immutable notice version. The text is the tenant's, not personal data: stored in clear. */
@Entity({ name: 'notices' })
@Index('uq_notices_request', ['tenantId', 'requestId'], { unique: true })
export class NoticeEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ name: 'purpose_id', type: 'varchar', length: 63 })
  purposeId!: string;

  @PrimaryColumn({ type: 'integer' })
  version!: number;

  @Column({ type: 'varchar', length: 35 })
  language!: string;

  @Column({ type: 'text' })
  text!: string;

  @Column({ name: 'text_sha256', type: 'varchar', length: 64 })
  textSha256!: string;

  @Column({ name: 'request_id', type: 'varchar', length: 128 })
  requestId!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;
}
