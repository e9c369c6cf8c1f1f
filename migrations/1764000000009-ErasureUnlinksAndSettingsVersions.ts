import { MigrationInterface, QueryRunner, Table, TableColumn } from 'typeorm';

/**
 * Erasure means erased (docs/keys.md, "Erasure"): a suppression tombstone keeps the erased
 * identifier's blind index and time but no longer names the erased subject, so nothing reachable
 * by the identifier leads to what is left of the person; an erased subject's derived state
 * (consent_state, service_windows) goes with the erasure. Both are applied here to erasures made
 * before this version.
 *
 * tenant_settings_versions keeps every version of a tenant's settings with the time it took
 * effect: checks and explained decisions for a past time apply the settings in force then. The
 * history before this version is unknown, so each tenant's current settings are taken to have
 * been in force since the tenant was created (the best available; said in docs/audit.md).
 */
export class ErasureUnlinksAndSettingsVersions1764000000009 implements MigrationInterface {
  name = 'ErasureUnlinksAndSettingsVersions1764000000009';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('suppressions', 'subject_id');
    for (const table of ['consent_state', 'service_windows']) {
      await queryRunner.query(`DELETE FROM ${table} WHERE subject_id IN (SELECT id FROM subjects WHERE erased_at IS NOT NULL)`);
    }
    await queryRunner.createTable(
      new Table({
        name: 'tenant_settings_versions',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'effective_from', type: 'bigint', isPrimary: true },
          { name: 'settings_json', type: 'text' },
        ],
      }),
    );
    await queryRunner.query('INSERT INTO tenant_settings_versions (tenant_id, effective_from, settings_json) SELECT id, created_at, settings_json FROM tenants');
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('tenant_settings_versions');
    // The link from tombstone to subject cannot be restored: erased is erased.
    await queryRunner.addColumn('suppressions', new TableColumn({ name: 'subject_id', type: 'varchar', length: '32', default: "''" }));
  }
}
