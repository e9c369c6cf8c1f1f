import { MigrationInterface, QueryRunner, Table, TableIndex } from 'typeorm';

/**
 * The key store's schema, kept in its own database (or SQLite file) apart from the data: a copy of
 * the data database alone decrypts nothing, and destroying a key here makes every copy of the
 * data it protected unreadable.
 */
export class KeyStoreSchema1764000000001 implements MigrationInterface {
  name = 'KeyStoreSchema1764000000001';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'tenant_keys',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'epoch', type: 'integer', isPrimary: true },
          { name: 'state', type: 'varchar', length: '16' },
          { name: 'wrapped_key', type: 'text', isNullable: true },
          { name: 'root_key_id', type: 'varchar', length: '128' },
          { name: 'created_at', type: 'bigint' },
          { name: 'destroyed_at', type: 'bigint', isNullable: true },
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'subject_keys',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'subject_id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'epoch', type: 'integer' },
          { name: 'wrapped_key', type: 'text' },
          { name: 'encryptions', type: 'bigint' },
          { name: 'created_at', type: 'bigint' },
        ],
        indices: [new TableIndex({ name: 'ix_subject_keys_epoch', columnNames: ['tenant_id', 'epoch'] })],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('subject_keys');
    await queryRunner.dropTable('tenant_keys');
  }
}
