import { MigrationInterface, QueryRunner, TableColumn, TableIndex } from 'typeorm';

/**
 * Issue 20: the service mails the e-mail confirmations itself when SMTP_URL is set
 * (src/jobs/confirmation-mailer.ts, docs/privacy-center.md "Confirmation mails").
 *
 * The mailer's state lives on the delivery row, so that any replica may pick up any delivery and
 * a process that dies mid-send loses nothing:
 * - `mail_lease_owner`, `mail_lease_until`: a replica claims a delivery with one conditional
 *   UPDATE (only when no unexpired lease is held), then sends; another replica skips it until the
 *   lease ends. Two replicas on one database so never send one mail twice in normal operation.
 * - `mail_attempts`, `mail_next_attempt_at`: transient failures (SMTP unreachable, 4xx) are tried
 *   again after a growing delay.
 * - `mail_state`: NULL while the mailer still tries, 'SENT' (then `acknowledged_at` is set too),
 *   'FAILED' after a permanent refusal (5xx for the recipient or the message) or too many attempts,
 *   'EXPIRED' when it expired unsent (so the scan from the oldest open delivery skips it),
 *   'OBSOLETE' when its sign-up was confirmed before it was sent or acknowledged (set by the
 *   confirmation, with `acknowledged_at`: no mail for a sign-up that needs none).
 * - `mail_last_error`: the failure's class and SMTP reply code only ("EENVELOPE 550"); never the
 *   server's text, which may repeat the address.
 * The index serves the mailer's scan over all tenants, oldest first.
 */
export class ConfirmationMailer1764000000017 implements MigrationInterface {
  name = 'ConfirmationMailer1764000000017';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('confirmation_deliveries', [
      new TableColumn({ name: 'mail_state', type: 'varchar', length: '8', isNullable: true }),
      new TableColumn({ name: 'mail_attempts', type: 'integer', default: 0 }),
      new TableColumn({ name: 'mail_next_attempt_at', type: 'bigint', isNullable: true }),
      new TableColumn({ name: 'mail_lease_owner', type: 'varchar', length: '64', isNullable: true }),
      new TableColumn({ name: 'mail_lease_until', type: 'bigint', isNullable: true }),
      new TableColumn({ name: 'mail_last_error', type: 'varchar', length: '64', isNullable: true }),
    ]);
    await queryRunner.createIndex('confirmation_deliveries', new TableIndex({ name: 'ix_confirmation_deliveries_mail', columnNames: ['acknowledged_at', 'mail_state', 'created_at', 'id'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('confirmation_deliveries', 'ix_confirmation_deliveries_mail');
    for (const column of ['mail_last_error', 'mail_lease_until', 'mail_lease_owner', 'mail_next_attempt_at', 'mail_attempts', 'mail_state']) {
      await queryRunner.dropColumn('confirmation_deliveries', column);
    }
  }
}
