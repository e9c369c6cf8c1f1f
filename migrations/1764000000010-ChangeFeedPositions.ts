import { MigrationInterface, QueryRunner, TableColumn, TableIndex } from 'typeorm';

/**
 * The change feed follows the tenant's commit order: every change_outbox row carries the position
 * of its audit entry (`audit_seq`), which is allocated under the log's head lock and committed
 * with it. A reader takes the rows below the committed log size and never waits for slow
 * transactions to settle (docs/architecture.md, "The write path").
 *
 * Rows written before are given the position of their entry: an opt-out that of the
 * CONSENT_EVENT_OPT_OUT entry naming its event, an erasure that of the subject's SUBJECT_ERASED
 * entry (both are in the same transaction as the row).
 */
export class ChangeFeedPositions1764000000010 implements MigrationInterface {
  name = 'ChangeFeedPositions1764000000010';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('change_outbox', new TableColumn({ name: 'audit_seq', type: 'bigint', isNullable: true }));
    let after = 0;
    for (;;) {
      const rows: Array<{ seq: unknown; tenant_id: string; kind: string; subject_id: string; event_id: string | null }> = await queryRunner.query(
        'SELECT seq, tenant_id, kind, subject_id, event_id FROM change_outbox WHERE seq > ? ORDER BY seq LIMIT 500',
        [after],
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        const type = row.kind === 'OPT_OUT' ? 'CONSENT_EVENT_OPT_OUT' : 'SUBJECT_ERASED';
        const entries: Array<{ seq: unknown; entry_json: string }> = await queryRunner.query(
          'SELECT seq, entry_json FROM audit_entries WHERE tenant_id = ? AND subject_id = ? AND entry_type = ? ORDER BY seq',
          [row.tenant_id, row.subject_id, type],
        );
        const match = row.kind === 'OPT_OUT' ? entries.find((e) => (JSON.parse(e.entry_json) as { ref?: string }).ref === row.event_id) : entries[0];
        // A row without its entry cannot have been written by the service; it sorts first.
        await queryRunner.query('UPDATE change_outbox SET audit_seq = ? WHERE seq = ?', [match ? Number(match.seq) : 0, row.seq]);
      }
      after = Number(rows[rows.length - 1].seq);
    }
    await queryRunner.changeColumn('change_outbox', 'audit_seq', new TableColumn({ name: 'audit_seq', type: 'bigint', isNullable: false }));
    await queryRunner.createIndex('change_outbox', new TableIndex({ name: 'ix_change_outbox_position', columnNames: ['tenant_id', 'audit_seq'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('change_outbox', 'ix_change_outbox_position');
    await queryRunner.dropColumn('change_outbox', 'audit_seq');
  }
}
