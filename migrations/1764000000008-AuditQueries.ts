import { MigrationInterface, QueryRunner, Table, TableColumn, TableIndex } from 'typeorm';

/**
 * The checkpoints the service signs on its own (AUDIT_CHECKPOINT_INTERVAL_MS), kept so an auditor
 * can fetch earlier ones; and columns that let auditors filter the audit log (ListAuditEntries) without reading every entry:
 * entry type, subject, purpose, principal and time, copied from the entry's JSON when it is
 * appended. They are not hashed: the leaf hash covers entry_json, and a client checks that what
 * a filter returned says what it asked for. Existing entries are filled from their JSON here.
 */
export class AuditQueries1764000000008 implements MigrationInterface {
  name = 'AuditQueries1764000000008';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('audit_entries', [
      new TableColumn({ name: 'entry_type', type: 'varchar', length: '40', isNullable: true }),
      new TableColumn({ name: 'subject_id', type: 'varchar', length: '32', isNullable: true }),
      new TableColumn({ name: 'purpose_id', type: 'varchar', length: '63', isNullable: true }),
      new TableColumn({ name: 'principal', type: 'varchar', length: '128', isNullable: true }),
      new TableColumn({ name: 'entry_time', type: 'bigint', isNullable: true }),
    ]);
    let last: { tenant_id: string; seq: number } | null = null;
    for (;;) {
      const rows: Array<{ tenant_id: string; seq: unknown; entry_json: string }> = await queryRunner.query(
        last
          ? 'SELECT tenant_id, seq, entry_json FROM audit_entries WHERE tenant_id > ? OR (tenant_id = ? AND seq > ?) ORDER BY tenant_id, seq LIMIT 1000'
          : 'SELECT tenant_id, seq, entry_json FROM audit_entries ORDER BY tenant_id, seq LIMIT 1000',
        last ? [last.tenant_id, last.tenant_id, last.seq] : [],
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        const e = JSON.parse(row.entry_json) as { type?: string; subject?: string; purpose?: string; principal?: string; time?: number };
        await queryRunner.query('UPDATE audit_entries SET entry_type = ?, subject_id = ?, purpose_id = ?, principal = ?, entry_time = ? WHERE tenant_id = ? AND seq = ?', [
          e.type ?? null,
          e.subject ?? null,
          e.purpose ?? null,
          e.principal ?? null,
          e.time ?? null,
          row.tenant_id,
          row.seq,
        ]);
      }
      const tail = rows[rows.length - 1];
      last = { tenant_id: tail.tenant_id, seq: Number(tail.seq) };
    }
    await queryRunner.createIndex('audit_entries', new TableIndex({ name: 'ix_audit_entries_subject', columnNames: ['tenant_id', 'subject_id', 'seq'] }));
    await queryRunner.createIndex('audit_entries', new TableIndex({ name: 'ix_audit_entries_time', columnNames: ['tenant_id', 'entry_time'] }));
    await queryRunner.createTable(
      new Table({
        name: 'audit_checkpoints',
        columns: [
          { name: 'tenant_id', type: 'varchar', length: '63', isPrimary: true },
          { name: 'tree_size', type: 'bigint', isPrimary: true },
          { name: 'root_hash', type: 'varchar', length: '64' },
          { name: 'signed_at', type: 'bigint' },
          { name: 'jws', type: 'text' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('audit_checkpoints');
    await queryRunner.dropIndex('audit_entries', 'ix_audit_entries_time');
    await queryRunner.dropIndex('audit_entries', 'ix_audit_entries_subject');
    for (const column of ['entry_time', 'principal', 'purpose_id', 'subject_id', 'entry_type']) await queryRunner.dropColumn('audit_entries', column);
  }
}
