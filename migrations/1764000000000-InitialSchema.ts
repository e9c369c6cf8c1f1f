import { MigrationInterface, QueryRunner, Table, TableColumnOptions, TableIndex } from 'typeorm';

/**
 * The first schema of the data database: tenants, purposes, notices, subjects, identifiers, the
 * append-only event log, and the current-state tables that serve checks. Keys live elsewhere
 * (migrations/keystore). Written with the Table API so the
 * same migration runs on SQLite and MySQL/MariaDB; times are BIGINT epoch milliseconds.
 */
export class InitialSchema1764000000000 implements MigrationInterface {
  name = 'InitialSchema1764000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const varchar = (name: string, length: number, extra: Partial<TableColumnOptions> = {}): TableColumnOptions => ({
      name,
      type: 'varchar',
      length: String(length),
      ...extra,
    });
    const bigint = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'bigint', isNullable: nullable });
    const text = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'text', isNullable: nullable });
    const int = (name: string, extra: Partial<TableColumnOptions> = {}): TableColumnOptions => ({ name, type: 'integer', ...extra });
    const tenantPk = varchar('tenant_id', 63, { isPrimary: true });

    await queryRunner.createTable(
      new Table({
        name: 'tenants',
        columns: [
          varchar('id', 63, { isPrimary: true }),
          varchar('display_name', 200),
          text('settings_json'),
          varchar('create_request_id', 128, { isNullable: true }),
          bigint('created_at'),
          bigint('updated_at'),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'purposes',
        columns: [
          tenantPk,
          varchar('id', 63, { isPrimary: true }),
          varchar('display_name', 200),
          varchar('category', 16),
          text('description'),
          varchar('create_request_id', 128, { isNullable: true }),
          bigint('created_at'),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'notices',
        columns: [
          tenantPk,
          varchar('purpose_id', 63, { isPrimary: true }),
          int('version', { isPrimary: true }),
          varchar('language', 35),
          text('text'),
          varchar('text_sha256', 64),
          varchar('request_id', 128),
          bigint('created_at'),
        ],
        indices: [new TableIndex({ name: 'uq_notices_request', columnNames: ['tenant_id', 'request_id'], isUnique: true })],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'subjects',
        columns: [varchar('id', 32, { isPrimary: true }), varchar('tenant_id', 63), bigint('created_at'), bigint('erased_at', true)],
        indices: [new TableIndex({ name: 'ix_subjects_tenant', columnNames: ['tenant_id'] })],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'subject_identifiers',
        columns: [
          tenantPk,
          varchar('kind', 16, { isPrimary: true }),
          varchar('blind_index', 64, { isPrimary: true }),
          varchar('subject_id', 32),
          text('value_ciphertext'),
          bigint('created_at'),
        ],
        indices: [new TableIndex({ name: 'ix_subject_identifiers_subject', columnNames: ['tenant_id', 'subject_id'] })],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'consent_events',
        columns: [
          int('seq', { isPrimary: true, isGenerated: true, generationStrategy: 'increment' }),
          varchar('id', 32),
          varchar('tenant_id', 63),
          varchar('subject_id', 32),
          varchar('kind', 24),
          varchar('purpose_id', 63),
          varchar('channel', 16),
          bigint('event_time'),
          bigint('record_time'),
          varchar('method', 24),
          varchar('notice_purpose_id', 63, { isNullable: true }),
          int('notice_version', { isNullable: true }),
          varchar('notice_sha256', 64, { isNullable: true }),
          varchar('notice_language', 35, { isNullable: true }),
          varchar('principal', 128),
          varchar('lawful_basis', 24, { isNullable: true }),
          varchar('jurisdiction', 16),
          bigint('expire_time', true),
          varchar('request_id', 140),
          varchar('request_fingerprint', 64),
          text('evidence_ciphertext', true),
        ],
        indices: [
          new TableIndex({ name: 'uq_consent_events_id', columnNames: ['id'], isUnique: true }),
          new TableIndex({ name: 'uq_consent_events_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }),
          new TableIndex({ name: 'ix_consent_events_subject', columnNames: ['tenant_id', 'subject_id', 'seq'] }),
          new TableIndex({ name: 'ix_consent_events_tenant', columnNames: ['tenant_id', 'seq'] }),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'consent_state',
        columns: [
          tenantPk,
          varchar('subject_id', 32, { isPrimary: true }),
          varchar('purpose_id', 63, { isPrimary: true }),
          varchar('channel', 16, { isPrimary: true }),
          varchar('opt_in_event_id', 32, { isNullable: true }),
          varchar('opt_in_kind', 24, { isNullable: true }),
          bigint('opt_in_time', true),
          bigint('opt_in_expire_time', true),
          varchar('opt_out_event_id', 32, { isNullable: true }),
          bigint('opt_out_time', true),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'service_windows',
        columns: [
          tenantPk,
          varchar('subject_id', 32, { isPrimary: true }),
          varchar('channel', 16, { isPrimary: true }),
          varchar('event_id', 32),
          bigint('last_inbound_time'),
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of [
      'service_windows',
      'consent_state',
      'consent_events',
      'subject_identifiers',
      'subjects',
      'notices',
      'purposes',
      'tenants',
    ]) {
      await queryRunner.dropTable(table);
    }
  }
}
