import { MigrationInterface, QueryRunner, Table, TableColumn, TableIndex } from 'typeorm';

/**
 * Issue 18, point 5: identifiers that change.
 *
 * Rectification (Art. 16): a RECTIFICATION request carries the person's correct identifier, as
 * its blind index and its value encrypted under the person's subject key (never in clear), in
 * `subject_requests.rectified_*` until it is carried out.
 *
 * Reassigned numbers: `identifier_reassignments` holds each report (who reported it, the source,
 * the time the identifier passed to someone else, the subject it moved off and the fresh subject
 * it moved to), and is the report's idempotency record; `subjects.reassigned_at` marks a fresh
 * subject made for an identifier's new owner, so the check path reads it with the subject.
 *
 * `subjects.identifiers_changed_at`: when an identifier last moved off the subject (rectified or
 * reassigned). A consent write found the subject by identifier before it took the subject's lock;
 * it compares the value it found with the one under the lock and looks the identifier up again
 * when they differ, so no write lands on a person the identifier no longer names.
 */
export class IdentifierChanges1764000000015 implements MigrationInterface {
  name = 'IdentifierChanges1764000000015';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('subjects', new TableColumn({ name: 'reassigned_at', type: 'bigint', isNullable: true }));
    await queryRunner.addColumn('subjects', new TableColumn({ name: 'identifiers_changed_at', type: 'bigint', isNullable: true }));
    await queryRunner.addColumn('subject_requests', new TableColumn({ name: 'rectified_kind', type: 'varchar', length: '16', isNullable: true }));
    await queryRunner.addColumn('subject_requests', new TableColumn({ name: 'rectified_blind_index', type: 'varchar', length: '64', isNullable: true }));
    await queryRunner.addColumn('subject_requests', new TableColumn({ name: 'rectified_ciphertext', type: 'text', isNullable: true }));
    await queryRunner.createTable(
      new Table({
        name: 'identifier_reassignments',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'request_id', type: 'varchar', length: '128' },
          { name: 'request_fingerprint', type: 'varchar', length: '64' },
          { name: 'kind', type: 'varchar', length: '16' },
          { name: 'blind_index', type: 'varchar', length: '64' },
          { name: 'old_subject_id', type: 'varchar', length: '32', isNullable: true },
          { name: 'new_subject_id', type: 'varchar', length: '32' },
          { name: 'reassign_time', type: 'bigint' },
          { name: 'source', type: 'varchar', length: '64' },
          { name: 'reported_by', type: 'varchar', length: '128' },
          { name: 'created_at', type: 'bigint' },
        ],
        indices: [new TableIndex({ name: 'uq_identifier_reassignments_request', columnNames: ['tenant_id', 'request_id'], isUnique: true })],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('identifier_reassignments');
    await queryRunner.dropColumn('subject_requests', 'rectified_ciphertext');
    await queryRunner.dropColumn('subject_requests', 'rectified_blind_index');
    await queryRunner.dropColumn('subject_requests', 'rectified_kind');
    await queryRunner.dropColumn('subjects', 'identifiers_changed_at');
    await queryRunner.dropColumn('subjects', 'reassigned_at');
  }
}
