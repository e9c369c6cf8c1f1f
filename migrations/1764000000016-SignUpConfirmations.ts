import { MigrationInterface, QueryRunner, Table, TableIndex } from 'typeorm';

/**
 * Issue 20: sign-up with double opt-in on the privacy center (docs/privacy-center.md, "API").
 *
 * `signup_confirmations`: one row per sign-up (SelfServiceService.SignUp), its idempotency record
 * (`request_id`, `request_fingerprint`) and what confirms it: the SHA-256 of the normalised
 * one-time code (phone sign-ups; never the code itself) or the `jti` of the signed e-mail link,
 * the channel the code must arrive on, the pending scopes (purpose, channel, notice, pending
 * event id; JSON), expiry, and once confirmed the time, the OPT_IN_CONFIRMED event ids and what
 * confirmed it (the inbound message's event id, or "link"). The identifier's kind and blind index
 * bound the sign-ups per identifier and hour (no value in clear).
 *
 * `confirmation_deliveries`: the e-mail confirmations the tenant's system sends; the address and
 * the link (it holds the token, a bearer secret) are encrypted under the subject key. Both tables'
 * rows of a person go with the person's erasure.
 */
export class SignUpConfirmations1764000000016 implements MigrationInterface {
  name = 'SignUpConfirmations1764000000016';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'signup_confirmations',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'subject_id', type: 'varchar', length: '32' },
          { name: 'identifier_kind', type: 'varchar', length: '16' },
          { name: 'blind_index', type: 'varchar', length: '64' },
          { name: 'method', type: 'varchar', length: '16' },
          { name: 'code_sha256', type: 'varchar', length: '64', isNullable: true },
          { name: 'token_jti', type: 'varchar', length: '64', isNullable: true },
          { name: 'channel', type: 'varchar', length: '16' },
          { name: 'language', type: 'varchar', length: '8' },
          { name: 'scopes_json', type: 'text' },
          { name: 'created_at', type: 'bigint' },
          { name: 'expires_at', type: 'bigint' },
          { name: 'confirmed_at', type: 'bigint', isNullable: true },
          { name: 'confirmed_event_ids', type: 'text', isNullable: true },
          { name: 'confirmed_ref', type: 'varchar', length: '32', isNullable: true },
          { name: 'request_id', type: 'varchar', length: '128' },
          { name: 'request_fingerprint', type: 'varchar', length: '64' },
        ],
        indices: [
          new TableIndex({ name: 'uq_signup_confirmations_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }),
          new TableIndex({ name: 'ix_signup_confirmations_identifier', columnNames: ['tenant_id', 'blind_index', 'created_at'] }),
          new TableIndex({ name: 'ix_signup_confirmations_subject', columnNames: ['tenant_id', 'subject_id'] }),
          new TableIndex({ name: 'ix_signup_confirmations_jti', columnNames: ['tenant_id', 'token_jti'] }),
        ],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'confirmation_deliveries',
        columns: [
          { name: 'id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'subject_id', type: 'varchar', length: '32' },
          { name: 'confirmation_id', type: 'varchar', length: '32' },
          { name: 'address_ciphertext', type: 'text' },
          { name: 'link_ciphertext', type: 'text' },
          { name: 'language', type: 'varchar', length: '8' },
          { name: 'created_at', type: 'bigint' },
          { name: 'expires_at', type: 'bigint' },
          { name: 'acknowledged_at', type: 'bigint', isNullable: true },
        ],
        indices: [
          new TableIndex({ name: 'ix_confirmation_deliveries_open', columnNames: ['tenant_id', 'acknowledged_at', 'created_at', 'id'] }),
          new TableIndex({ name: 'ix_confirmation_deliveries_subject', columnNames: ['tenant_id', 'subject_id'] }),
          new TableIndex({ name: 'ix_confirmation_deliveries_confirmation', columnNames: ['confirmation_id'] }),
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('confirmation_deliveries');
    await queryRunner.dropTable('signup_confirmations');
  }
}
