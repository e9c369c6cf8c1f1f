import { MigrationInterface, QueryRunner, TableColumn, TableIndex } from 'typeorm';

/**
 * `signup_confirmations.mailbox_index`: the blind index of the mailbox a sign-up's confirmation
 * goes to (an e-mail address without its +tag; a phone number's own index), which the limit of
 * five sign-ups per identifier and hour counts. Counted by the exact address, sub-addresses of one
 * mailbox (someone+1@, someone+2@, ...) each had five, and a third party's mailbox could be sent
 * confirmations without bound. Rows made before are given their own blind index (their mailbox
 * as far as is known without decrypting anything).
 */
export class SignUpMailboxes1764000000020 implements MigrationInterface {
  name = 'SignUpMailboxes1764000000020';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('signup_confirmations', new TableColumn({ name: 'mailbox_index', type: 'varchar', length: '64', isNullable: true }));
    await queryRunner.query('UPDATE signup_confirmations SET mailbox_index = blind_index');
    await queryRunner.createIndex('signup_confirmations', new TableIndex({ name: 'ix_signup_confirmations_mailbox', columnNames: ['tenant_id', 'mailbox_index', 'created_at'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('signup_confirmations', 'ix_signup_confirmations_mailbox');
    await queryRunner.dropColumn('signup_confirmations', 'mailbox_index');
  }
}
