import { MigrationInterface, QueryRunner, Table } from 'typeorm';

/**
 * The per-tenant RFC 6962 audit log: entries (no personal data) with their leaf hashes, the hashes
 * of every complete subtree (so roots and proofs cost O(log n) reads), and a head row per tenant
 * whose lock serialises appends into one gap-free sequence.
 */
export class AuditLog1764000000007 implements MigrationInterface {
  name = 'AuditLog1764000000007';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'audit_heads',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'size', type: 'bigint' },
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'audit_entries',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'seq', type: 'bigint', isPrimary: true },
          { name: 'entry_json', type: 'text' },
          { name: 'leaf_hash', type: 'varchar', length: '64' },
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'audit_nodes',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'level', type: 'integer', isPrimary: true },
          { name: 'idx', type: 'bigint', isPrimary: true },
          { name: 'hash', type: 'varchar', length: '64' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('audit_nodes');
    await queryRunner.dropTable('audit_entries');
    await queryRunner.dropTable('audit_heads');
  }
}
