import { MigrationInterface, QueryRunner, TableColumn } from 'typeorm';

/**
 * Art. 12(3)-(4): that the person was told of their request's extension (with its reasons, within
 * one month of receipt) or of its rejection (with its reasons and the right to complain), recorded
 * by SubjectRightsService.RecordRequestNotice. JSON ({"method","notifiedBy","at"}); NULL until
 * recorded. Method and staff reference only: no personal data of the person.
 */
export class RequestNotices1764000000019 implements MigrationInterface {
  name = 'RequestNotices1764000000019';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('subject_requests', [
      new TableColumn({ name: 'extension_notice', type: 'varchar', length: '300', isNullable: true }),
      new TableColumn({ name: 'rejection_notice', type: 'varchar', length: '300', isNullable: true }),
    ]);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('subject_requests', 'rejection_notice');
    await queryRunner.dropColumn('subject_requests', 'extension_notice');
  }
}
