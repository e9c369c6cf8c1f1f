import { MigrationInterface, QueryRunner, Table } from 'typeorm';

/** Per-tenant signing keys (consent receipts now; erasure receipts and audit checkpoints later). */
export class SigningKeys1764000000003 implements MigrationInterface {
  name = 'SigningKeys1764000000003';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'tenant_signing_keys',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'kid', type: 'varchar', length: '64', isPrimary: true },
          { name: 'epoch', type: 'integer' },
          { name: 'state', type: 'varchar', length: '16' },
          { name: 'wrapped_private_key', type: 'text', isNullable: true },
          { name: 'public_jwk', type: 'text' },
          { name: 'created_at', type: 'bigint' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('tenant_signing_keys');
  }
}
