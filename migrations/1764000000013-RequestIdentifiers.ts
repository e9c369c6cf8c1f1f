import { MigrationInterface, QueryRunner, Table, TableIndex } from 'typeorm';

/**
 * One request for all of a person's identifiers (issue 18). `subject_request_identifiers` holds
 * each identifier of a data-subject request, by kind and blind index only (never in clear), the
 * subject it found, its own identity verification and, once the request was carried out, what was
 * done for it; subjects reached through an identity link are rows too. Existing requests get
 * their one identifier as position 1, with their verification.
 *
 * A restriction request now places one restriction per person it reaches, so the restrictions'
 * unique key becomes (tenant, request, subject).
 */
export class RequestIdentifiers1764000000013 implements MigrationInterface {
  name = 'RequestIdentifiers1764000000013';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'subject_request_identifiers',
        columns: [
          { name: 'request_id', type: 'varchar', length: '32', isPrimary: true },
          { name: 'position', type: 'integer', isPrimary: true },
          { name: 'tenant_id', type: 'varchar', length: '63' },
          { name: 'identifier_kind', type: 'varchar', length: '16' },
          { name: 'blind_index', type: 'varchar', length: '64' },
          { name: 'subject_id', type: 'varchar', length: '32', isNullable: true },
          { name: 'via_link', type: 'varchar', length: '200', isNullable: true },
          { name: 'verification_method', type: 'varchar', length: '64', isNullable: true },
          { name: 'verified_by', type: 'varchar', length: '128', isNullable: true },
          { name: 'verified_at', type: 'bigint', isNullable: true },
          { name: 'outcome', type: 'varchar', length: '200', isNullable: true },
        ],
        indices: [new TableIndex({ name: 'ix_subject_request_identifiers_subject', columnNames: ['tenant_id', 'subject_id'] })],
      }),
    );
    await queryRunner.query(
      `INSERT INTO subject_request_identifiers
         (request_id, position, tenant_id, identifier_kind, blind_index, subject_id, verification_method, verified_by, verified_at)
       SELECT r.id, 1, r.tenant_id, r.identifier_kind, r.blind_index, r.subject_id, r.verification_method, r.verified_by,
              (SELECT MIN(t.at) FROM subject_request_transitions t WHERE t.request_id = r.id AND t.to_state = 'VERIFIED')
         FROM subject_requests r`,
    );
    await queryRunner.dropIndex('subject_restrictions', 'uq_subject_restrictions_request');
    await queryRunner.createIndex(
      'subject_restrictions',
      new TableIndex({ name: 'uq_subject_restrictions_request', columnNames: ['tenant_id', 'request_id', 'subject_id'], isUnique: true }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('subject_restrictions', 'uq_subject_restrictions_request');
    await queryRunner.createIndex('subject_restrictions', new TableIndex({ name: 'uq_subject_restrictions_request', columnNames: ['tenant_id', 'request_id'], isUnique: true }));
    await queryRunner.dropTable('subject_request_identifiers');
  }
}
