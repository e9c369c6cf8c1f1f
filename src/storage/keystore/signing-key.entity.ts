import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from '../entities/columns';

/**
 * A tenant's signing key (ES256) of one tenant-key epoch. The private key is stored only wrapped
 * by that epoch's key and deleted with it; the public key stays published so that receipts
 * signed earlier can still be verified.
 */
@Entity({ name: 'tenant_signing_keys' })
export class SigningKeyEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'varchar', length: 63 })
  tenantId!: string;

  @PrimaryColumn({ type: 'varchar', length: 64 })
  kid!: string;

  @Column({ type: 'integer' })
  epoch!: number;

  /** ACTIVE (signs), RETIRED (verifies only) or DESTROYED (tenant shredded). */
  @Column({ type: 'varchar', length: 16 })
  state!: string;

  @Column({ name: 'wrapped_private_key', type: 'text', nullable: true })
  wrappedPrivateKey!: string | null;

  @Column({ name: 'public_jwk', type: 'text' })
  publicJwk!: string;

  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs })
  createdAt!: number;
}
