import { MigrationInterface, QueryRunner, TableColumn } from 'typeorm';

/**
 * What an ERASURE request's erasure of each person came to, recorded in the transaction that
 * erases them (`subject_request_identifiers.erasure`, JSON: erasedAt and the counts of the
 * receipt). A request interrupted after erasing some of its persons (a crash, the database
 * gone for a moment) is finished by a retry or at the next start; the persons erased by the
 * first attempt are then already erased, and without this record the receipt said "erased
 * earlier" with every count 0 for them.
 */
export class ErasureRecords1764000000018 implements MigrationInterface {
  name = 'ErasureRecords1764000000018';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('subject_request_identifiers', new TableColumn({ name: 'erasure', type: 'varchar', length: '200', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('subject_request_identifiers', 'erasure');
  }
}
