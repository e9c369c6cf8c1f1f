import { MigrationInterface, QueryRunner, Table } from 'typeorm';

/**
 * The erasure ledger: which subjects were erased, kept with the keys rather than the data. A data
 * backup restored after an erasure still says the subject is live; at start the service replays
 * this ledger onto the data before serving, so checks answer SUBJECT_ERASED again.
 */
export class ErasureLedger1764000000004 implements MigrationInterface {
  name = 'ErasureLedger1764000000004';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'subject_erasures',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'subject_id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'erased_at', type: 'bigint' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('subject_erasures');
  }
}
