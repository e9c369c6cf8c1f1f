import { MigrationInterface, QueryRunner, Table, TableIndex } from 'typeorm';

/**
 * Linked identities (issue 18): `identity_links` holds each link of two identifiers as one
 * person: the two subjects, the kinds and blind indexes of the two identifiers (keyed hashes, no
 * personal data), the evidence (method, verifier, verified request) encrypted under the first
 * subject's key, who linked and unlinked and when. No identifier value is stored here. A link is
 * deleted with either person's erasure, in the erasure's transaction.
 */
export class IdentityLinks1764000000014 implements MigrationInterface {
  name = 'IdentityLinks1764000000014';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'identity_links',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'subject_a', type: 'varchar', length: '32' },
          { name: 'kind_a', type: 'varchar', length: '16' },
          { name: 'blind_index_a', type: 'varchar', length: '64' },
          { name: 'subject_b', type: 'varchar', length: '32' },
          { name: 'kind_b', type: 'varchar', length: '16' },
          { name: 'blind_index_b', type: 'varchar', length: '64' },
          { name: 'evidence_ciphertext', type: 'text' },
          { name: 'linked_by', type: 'varchar', length: '128' },
          { name: 'linked_at', type: 'bigint' },
          { name: 'unlinked_by', type: 'varchar', length: '128', isNullable: true },
          { name: 'unlinked_at', type: 'bigint', isNullable: true },
          { name: 'unlink_reason', type: 'text', isNullable: true },
          { name: 'request_id', type: 'varchar', length: '128' },
          { name: 'fingerprint', type: 'varchar', length: '64' },
        ],
        indices: [
          new TableIndex({ name: 'uq_identity_links_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }),
          new TableIndex({ name: 'ix_identity_links_subject_a', columnNames: ['tenant_id', 'subject_a'] }),
          new TableIndex({ name: 'ix_identity_links_subject_b', columnNames: ['tenant_id', 'subject_b'] }),
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('identity_links');
  }
}
