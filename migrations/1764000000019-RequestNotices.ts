import { MigrationInterface, QueryRunner, TableColumn, TableIndex } from 'typeorm';

/**
 * Art. 12(3)-(4): that the person was told of their request's extension (with its reasons, within
 * one month of receipt) or of its rejection (with its reasons and the right to complain), recorded
 * by SubjectRightsService.RecordRequestNotice. JSON ({"method","notifiedBy","at"}); NULL until
 * recorded. Method and staff reference only: no personal data of the person.
 *
 * Also indexes for what an erasure does in its transaction (SubjectRepository.
 * sealIdentifierReferences): the person's requests and reassignment reports, found by subject id
 * instead of a scan of the tables while the person's lock is held.
 */
export class RequestNotices1764000000019 implements MigrationInterface {
  name = 'RequestNotices1764000000019';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('subject_requests', [
      new TableColumn({ name: 'extension_notice', type: 'text', isNullable: true }),
      new TableColumn({ name: 'rejection_notice', type: 'text', isNullable: true }),
    ]);
    await queryRunner.createIndex('subject_requests', new TableIndex({ name: 'ix_subject_requests_subject', columnNames: ['tenant_id', 'subject_id'] }));
    await queryRunner.createIndex('identifier_reassignments', new TableIndex({ name: 'ix_identifier_reassignments_old', columnNames: ['tenant_id', 'old_subject_id'] }));
    await queryRunner.createIndex('identifier_reassignments', new TableIndex({ name: 'ix_identifier_reassignments_new', columnNames: ['tenant_id', 'new_subject_id'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('identifier_reassignments', 'ix_identifier_reassignments_new');
    await queryRunner.dropIndex('identifier_reassignments', 'ix_identifier_reassignments_old');
    await queryRunner.dropIndex('subject_requests', 'ix_subject_requests_subject');
    await queryRunner.dropColumn('subject_requests', 'rejection_notice');
    await queryRunner.dropColumn('subject_requests', 'extension_notice');
  }
}
