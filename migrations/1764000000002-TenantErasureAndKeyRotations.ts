import { MigrationInterface, QueryRunner, Table, TableColumn, TableIndex } from 'typeorm';

/** Tenant erasure (crypto-shredding) and tenant key rotation jobs. */
export class TenantErasureAndKeyRotations1764000000002 implements MigrationInterface {
  name = 'TenantErasureAndKeyRotations1764000000002';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('tenants', [
      new TableColumn({ name: 'erased_at', type: 'bigint', isNullable: true }),
      new TableColumn({ name: 'purged_at', type: 'bigint', isNullable: true }),
    ]);
    await queryRunner.createTable(
      new Table({
        name: 'key_rotations',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'request_id', type: 'varchar', length: '128' },
          { name: 'state', type: 'varchar', length: '16' },
          { name: 'from_epoch', type: 'integer' },
          { name: 'to_epoch', type: 'integer' },
          { name: 'total', type: 'integer' },
          { name: 'done', type: 'integer' },
          { name: 'error', type: 'varchar', length: '200', isNullable: true },
          { name: 'principal', type: 'varchar', length: '128' },
          { name: 'created_at', type: 'bigint' },
          { name: 'ended_at', type: 'bigint', isNullable: true },
        ],
        indices: [
          new TableIndex({ name: 'uq_key_rotations_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }),
          new TableIndex({ name: 'ix_key_rotations_state', columnNames: ['state'] }),
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('key_rotations');
    await queryRunner.dropColumn('tenants', 'purged_at');
    await queryRunner.dropColumn('tenants', 'erased_at');
  }
}
