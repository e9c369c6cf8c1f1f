import { MigrationInterface, QueryRunner, Table, TableColumn, TableIndex } from 'typeorm';

/**
 * Art. 18, restriction of processing. `subject_restrictions` holds each restriction of a person
 * (its Art. 18(1) ground, the request it carries out, who placed it, the Art. 18(3) notice to the
 * person, who lifted it and why); `subjects.restricted_since` is set while one is in force, so the
 * check path reads it with the subject (every check then answers RESTRICTED). A purpose marked
 * `allowed_while_restricted` (Art. 18(2)) keeps following the consent rules meanwhile.
 */
export class Restrictions1764000000012 implements MigrationInterface {
  name = 'Restrictions1764000000012';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('subjects', new TableColumn({ name: 'restricted_since', type: 'bigint', isNullable: true }));
    await queryRunner.addColumn('purposes', new TableColumn({ name: 'allowed_while_restricted', type: 'boolean', default: 0 }));
    await queryRunner.createTable(
      new Table({
        name: 'subject_restrictions',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'subject_id', type: 'varchar', length: '32' },
          { name: 'ground', type: 'varchar', length: '40' },
          { name: 'request_id', type: 'varchar', length: '32' },
          { name: 'note', type: 'text' },
          { name: 'placed_by', type: 'varchar', length: '128' },
          { name: 'placed_at', type: 'bigint' },
          { name: 'notified_by', type: 'varchar', length: '128', isNullable: true },
          { name: 'notice_method', type: 'varchar', length: '64', isNullable: true },
          { name: 'notified_at', type: 'bigint', isNullable: true },
          { name: 'lifted_by', type: 'varchar', length: '128', isNullable: true },
          { name: 'lifted_at', type: 'bigint', isNullable: true },
          { name: 'lift_reason', type: 'text', isNullable: true },
        ],
        indices: [
          new TableIndex({ name: 'uq_subject_restrictions_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }),
          new TableIndex({ name: 'ix_subject_restrictions_subject', columnNames: ['tenant_id', 'subject_id'] }),
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('subject_restrictions');
    await queryRunner.dropColumn('purposes', 'allowed_while_restricted');
    await queryRunner.dropColumn('subjects', 'restricted_since');
  }
}
