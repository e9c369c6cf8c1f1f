import { MigrationInterface, QueryRunner, TableColumn } from 'typeorm';

/**
 * Art. 21(2)-(3): a person's objection to direct marketing is a standing state of the subject,
 * not only the OPT_OUT events it records. `subjects.objected_at` is the objection's time on the
 * event-time axis (never before any opt-in recorded before it); a MARKETING check is denied
 * (DECISION_REASON_OBJECTED) unless an opt-in for the purpose later than it is in force, so a
 * marketing purpose created after the objection is covered too. NULL: no objection.
 */
export class SubjectObjections1764000000011 implements MigrationInterface {
  name = 'SubjectObjections1764000000011';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('subjects', new TableColumn({ name: 'objected_at', type: 'bigint', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('subjects', 'objected_at');
  }
}
