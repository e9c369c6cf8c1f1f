import { MigrationInterface, QueryRunner, Table, TableIndex } from 'typeorm';

/** Data-subject requests with their transitions, legal holds and suppression tombstones. No personal data in clear. */
export class SubjectRequests1764000000005 implements MigrationInterface {
  name = 'SubjectRequests1764000000005';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'subject_requests',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'kind', type: 'varchar', length: '16' },
          { name: 'state', type: 'varchar', length: '16' },
          { name: 'identifier_kind', type: 'varchar', length: '16' },
          { name: 'blind_index', type: 'varchar', length: '64' },
          { name: 'subject_id', type: 'varchar', length: '32', isNullable: true },
          { name: 'received_via', type: 'varchar', length: '16' },
          { name: 'receive_time', type: 'bigint' },
          { name: 'due_time', type: 'bigint' },
          { name: 'extension_reason', type: 'text', isNullable: true },
          { name: 'verification_method', type: 'varchar', length: '64', isNullable: true },
          { name: 'verified_by', type: 'varchar', length: '128', isNullable: true },
          { name: 'rejection_reason', type: 'text', isNullable: true },
          { name: 'result', type: 'text', isNullable: true },
          { name: 'request_id', type: 'varchar', length: '128' },
          { name: 'created_at', type: 'bigint' },
          { name: 'updated_at', type: 'bigint' },
        ],
        indices: [
          new TableIndex({ name: 'uq_subject_requests_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }),
          new TableIndex({ name: 'ix_subject_requests_due', columnNames: ['tenant_id', 'state', 'due_time'] }),
          new TableIndex({ name: 'ix_subject_requests_created', columnNames: ['tenant_id', 'created_at'] }),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'subject_request_transitions',
        columns: [
          { name: 'request_id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'seq', type: 'integer', isPrimary: true },
          { name: 'from_state', type: 'varchar', length: '16', isNullable: true },
          { name: 'to_state', type: 'varchar', length: '16' },
          { name: 'principal', type: 'varchar', length: '128' },
          { name: 'at', type: 'bigint' },
          { name: 'note', type: 'varchar', length: '200' },
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'legal_holds',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'subject_id', type: 'varchar', length: '32' },
          { name: 'ground', type: 'varchar', length: '40' },
          { name: 'note', type: 'text' },
          { name: 'placed_by', type: 'varchar', length: '128' },
          { name: 'placed_at', type: 'bigint' },
          { name: 'released_by', type: 'varchar', length: '128', isNullable: true },
          { name: 'released_at', type: 'bigint', isNullable: true },
          { name: 'release_note', type: 'text', isNullable: true },
          { name: 'request_id', type: 'varchar', length: '128' },
        ],
        indices: [
          new TableIndex({ name: 'uq_legal_holds_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }),
          new TableIndex({ name: 'ix_legal_holds_subject', columnNames: ['tenant_id', 'subject_id'] }),
        ],
      }),
    );
    // Tombstones of erased identifiers: a keyed hash (blind index), the erased subject's opaque id
    // and when; no personal data. They keep an erased person from being messaged after a re-import.
    await queryRunner.createTable(
      new Table({
        name: 'suppressions',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'kind', type: 'varchar', length: '16', isPrimary: true },
          { name: 'blind_index', type: 'varchar', length: '64', isPrimary: true },
          { name: 'subject_id', type: 'varchar', length: '32' },
          { name: 'erased_at', type: 'bigint' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('suppressions');
    await queryRunner.dropTable('legal_holds');
    await queryRunner.dropTable('subject_request_transitions');
    await queryRunner.dropTable('subject_requests');
  }
}
