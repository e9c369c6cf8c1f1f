import { MigrationInterface, QueryRunner, Table, TableIndex } from 'typeorm';

/**
 * The outbox of the change feed: opt-outs and erasures, written in the transaction that makes
 * them, served in order by ConsentService.StreamChanges. Opaque ids only.
 */
export class ChangeOutbox1764000000006 implements MigrationInterface {
  name = 'ChangeOutbox1764000000006';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'change_outbox',
        columns: [
          { name: 'seq', type: 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'kind', type: 'varchar', length: '16' },
          { name: 'subject_id', type: 'varchar', length: '32' },
          { name: 'purpose_id', type: 'varchar', length: '63', isNullable: true },
          { name: 'channel', type: 'varchar', length: '16', isNullable: true },
          { name: 'event_id', type: 'varchar', length: '32', isNullable: true },
          { name: 'at', type: 'bigint' },
        ],
        indices: [new TableIndex({ name: 'ix_change_outbox_tenant', columnNames: ['tenant_id', 'seq'] })],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('change_outbox');
  }
}
