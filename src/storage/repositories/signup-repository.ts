import { ConfirmationDeliveryRecord, ConfirmationMethod, MailOutcome, PendingScope, SignUpConfirmationRecord, SignUpRepository } from '../../domain/self-service-signup';
import { IdentifierKind, SendChannel } from '../../domain/model';
import { TxContext } from '../../shared/unit-of-work';
import { managerOf } from '../transaction-runner';
import { forUpdate, num, placeholders } from './sql-dialect';

const CONFIRMATION_COLUMNS = [
  'id', 'tenant_id', 'subject_id', 'identifier_kind', 'blind_index', 'method', 'code_sha256', 'token_jti', 'channel', 'language', 'scopes_json',
  'created_at', 'expires_at', 'confirmed_at', 'confirmed_event_ids', 'confirmed_ref', 'request_id', 'request_fingerprint', 'mailbox_index',
];
const DELIVERY_COLUMNS = ['id', 'tenant_id', 'subject_id', 'confirmation_id', 'address_ciphertext', 'link_ciphertext', 'language', 'created_at', 'expires_at', 'acknowledged_at'];

/**
 * A delivery the mailer may take now (three `?`: now, now, now): not handed out or sent, not given
 * up on, not expired, its retry time reached, no unexpired lease.
 */
const MAILABLE =
  'acknowledged_at IS NULL AND mail_state IS NULL AND expires_at > ? AND (mail_next_attempt_at IS NULL OR mail_next_attempt_at <= ?) AND (mail_lease_until IS NULL OR mail_lease_until <= ?)';

/** Sign-up confirmations and e-mail deliveries (migration 1764000000016). Plain SQL, no entity. */
export class SqlSignUpRepository implements SignUpRepository {
  async insertConfirmation(tx: TxContext, r: SignUpConfirmationRecord): Promise<void> {
    await managerOf(tx).query(`INSERT INTO signup_confirmations (${CONFIRMATION_COLUMNS.join(', ')}) VALUES (${placeholders(CONFIRMATION_COLUMNS.length)})`, [
      r.id, r.tenantId, r.subjectId, r.identifierKind, r.blindIndex, r.method, r.codeSha256, r.tokenJti, r.channel, r.language, JSON.stringify(r.scopes),
      r.createdAt, r.expiresAt, r.confirmedAt, r.confirmedEventIds ? JSON.stringify(r.confirmedEventIds) : null, r.confirmedRef, r.requestId, r.fingerprint, r.mailboxIndex,
    ]);
  }

  async findByRequestId(tx: TxContext, tenantId: string, requestId: string): Promise<SignUpConfirmationRecord | null> {
    return this.one(tx, 'tenant_id = ? AND request_id = ?', [tenantId, requestId]);
  }

  async findByJti(tx: TxContext, tenantId: string, jti: string): Promise<SignUpConfirmationRecord | null> {
    return this.one(tx, 'tenant_id = ? AND token_jti = ?', [tenantId, jti]);
  }

  async findByCodes(tx: TxContext, tenantId: string, subjectId: string, codeHashes: string[]): Promise<SignUpConfirmationRecord[]> {
    if (codeHashes.length === 0) return [];
    const rows: Array<Record<string, unknown>> = await managerOf(tx).query(
      `SELECT * FROM signup_confirmations WHERE tenant_id = ? AND subject_id = ? AND code_sha256 IN (${placeholders(codeHashes.length)}) ORDER BY created_at, id`,
      [tenantId, subjectId, ...codeHashes],
    );
    return rows.map(confirmationOf);
  }

  async lockConfirmation(tx: TxContext, tenantId: string, id: string): Promise<SignUpConfirmationRecord | null> {
    const m = managerOf(tx);
    const rows: Array<Record<string, unknown>> = await m.query(`SELECT * FROM signup_confirmations WHERE tenant_id = ? AND id = ?${forUpdate(m)}`, [tenantId, id]);
    return rows.length ? confirmationOf(rows[0]) : null;
  }

  async createdSince(tx: TxContext, tenantId: string, mailboxIndex: string, since: number): Promise<number[]> {
    const rows: Array<{ created_at: unknown }> = await managerOf(tx).query('SELECT created_at FROM signup_confirmations WHERE tenant_id = ? AND mailbox_index = ? AND created_at > ? ORDER BY created_at', [tenantId, mailboxIndex, since]);
    return rows.map((r) => num(r.created_at));
  }

  async markConfirmed(tx: TxContext, tenantId: string, id: string, at: number, eventIds: string[], ref: string): Promise<void> {
    const m = managerOf(tx);
    await m.query('UPDATE signup_confirmations SET confirmed_at = ?, confirmed_event_ids = ?, confirmed_ref = ? WHERE tenant_id = ? AND id = ?', [at, JSON.stringify(eventIds), ref, tenantId, id]);
    // A confirmed sign-up needs no confirmation mail any more: its delivery, if not yet handed out
    // or sent (a tenant's mailer that sent it but crashed before acknowledging, or one made before
    // SMTP was configured), is neither listed nor mailed again.
    await m.query(
      "UPDATE confirmation_deliveries SET acknowledged_at = ?, mail_state = 'OBSOLETE', mail_lease_owner = NULL, mail_lease_until = NULL WHERE tenant_id = ? AND confirmation_id = ? AND acknowledged_at IS NULL AND (mail_state IS NULL OR mail_state = 'FAILED')",
      [at, tenantId, id],
    );
  }

  async supersedeDeliveries(tx: TxContext, tenantId: string, subjectId: string, identifier: { kind: string; blindIndex: string }, at: number): Promise<void> {
    await managerOf(tx).query(
      "UPDATE confirmation_deliveries SET acknowledged_at = ?, mail_state = 'OBSOLETE', mail_lease_owner = NULL, mail_lease_until = NULL WHERE tenant_id = ? AND subject_id = ? AND acknowledged_at IS NULL AND (mail_state IS NULL OR mail_state = 'FAILED') AND confirmation_id IN (SELECT id FROM signup_confirmations WHERE tenant_id = ? AND subject_id = ? AND identifier_kind = ? AND blind_index = ? AND confirmed_at IS NULL)",
      [at, tenantId, subjectId, tenantId, subjectId, identifier.kind, identifier.blindIndex],
    );
  }

  async insertDelivery(tx: TxContext, d: ConfirmationDeliveryRecord): Promise<void> {
    await managerOf(tx).query(`INSERT INTO confirmation_deliveries (${DELIVERY_COLUMNS.join(', ')}) VALUES (${placeholders(DELIVERY_COLUMNS.length)})`, [
      d.id, d.tenantId, d.subjectId, d.confirmationId, d.addressCiphertext, d.linkCiphertext, d.language, d.createdAt, d.expiresAt, d.acknowledgedAt,
    ]);
  }

  async deliveryOf(tx: TxContext, tenantId: string, confirmationId: string): Promise<ConfirmationDeliveryRecord | null> {
    const rows: Array<Record<string, unknown>> = await managerOf(tx).query('SELECT * FROM confirmation_deliveries WHERE tenant_id = ? AND confirmation_id = ?', [tenantId, confirmationId]);
    return rows.length ? deliveryOf(rows[0]) : null;
  }

  async openDeliveries(tx: TxContext, tenantId: string, now: number, after: { createdAt: number; id: string } | null, limit: number, mailFailedOnly = false): Promise<ConfirmationDeliveryRecord[]> {
    const cursor = after ? ' AND (created_at > ? OR (created_at = ? AND id > ?))' : '';
    const failed = mailFailedOnly ? " AND mail_state = 'FAILED'" : '';
    const rows: Array<Record<string, unknown>> = await managerOf(tx).query(
      `SELECT * FROM confirmation_deliveries WHERE tenant_id = ? AND acknowledged_at IS NULL AND expires_at > ?${failed}${cursor} ORDER BY created_at, id LIMIT ${Math.floor(limit)}`,
      after ? [tenantId, now, after.createdAt, after.createdAt, after.id] : [tenantId, now],
    );
    return rows.map(deliveryOf);
  }

  async acknowledge(tx: TxContext, tenantId: string, ids: string[], now: number): Promise<number> {
    const m = managerOf(tx);
    const open: Array<{ id: unknown }> = await m.query(
      `SELECT id FROM confirmation_deliveries WHERE tenant_id = ? AND id IN (${placeholders(ids.length)}) AND acknowledged_at IS NULL AND expires_at > ?${forUpdate(m)}`,
      [tenantId, ...ids, now],
    );
    if (open.length === 0) return 0;
    const openIds = open.map((r) => String(r.id));
    await m.query(`UPDATE confirmation_deliveries SET acknowledged_at = ? WHERE tenant_id = ? AND id IN (${placeholders(openIds.length)})`, [now, tenantId, ...openIds]);
    return openIds.length;
  }

  async mailCandidates(tx: TxContext, now: number, limit: number): Promise<string[]> {
    const rows: Array<{ id: unknown }> = await managerOf(tx).query(
      `SELECT id FROM confirmation_deliveries WHERE ${MAILABLE} ORDER BY created_at, id LIMIT ${Math.floor(limit)}`,
      [now, now, now],
    );
    return rows.map((r) => String(r.id));
  }

  async leaseForMail(tx: TxContext, ids: string[], owner: string, now: number, until: number): Promise<Array<{ delivery: ConfirmationDeliveryRecord; attempts: number }>> {
    if (ids.length === 0) return [];
    const m = managerOf(tx);
    // One conditional UPDATE: a row another replica leased (or sent, or that expired) since the
    // candidates were read no longer matches MAILABLE and stays theirs. On MySQL the UPDATE waits
    // for a competing lease's commit and then sees it; SQLite serialises writers (BEGIN IMMEDIATE).
    await m.query(
      `UPDATE confirmation_deliveries SET mail_lease_owner = ?, mail_lease_until = ?, mail_attempts = mail_attempts + 1 WHERE id IN (${placeholders(ids.length)}) AND ${MAILABLE}`,
      [owner, until, ...ids, now, now, now],
    );
    // By primary key: the rows just leased are among `ids`.
    const rows: Array<Record<string, unknown>> = await m.query(`SELECT * FROM confirmation_deliveries WHERE id IN (${placeholders(ids.length)}) AND mail_lease_owner = ? ORDER BY created_at, id`, [...ids, owner]);
    return rows.map((r) => ({ delivery: deliveryOf(r), attempts: num(r.mail_attempts) }));
  }

  async finishMail(tx: TxContext, id: string, owner: string, outcome: MailOutcome): Promise<boolean> {
    const m = managerOf(tx);
    const held: Array<{ id: unknown }> = await m.query(`SELECT id FROM confirmation_deliveries WHERE id = ? AND mail_lease_owner = ?${forUpdate(m)}`, [id, owner]);
    if (held.length === 0) return false;
    const release = 'mail_lease_owner = NULL, mail_lease_until = NULL';
    if (outcome.kind === 'SENT') {
      await m.query(`UPDATE confirmation_deliveries SET mail_state = 'SENT', acknowledged_at = ?, mail_last_error = NULL, ${release} WHERE id = ?`, [outcome.at, id]);
    } else if (outcome.kind === 'RETRY') {
      await m.query(`UPDATE confirmation_deliveries SET mail_next_attempt_at = ?, mail_last_error = ?, ${release} WHERE id = ?`, [outcome.nextAttemptAt, outcome.error, id]);
    } else if (outcome.kind === 'FAILED') {
      await m.query(`UPDATE confirmation_deliveries SET mail_state = 'FAILED', mail_last_error = ?, ${release} WHERE id = ?`, [outcome.error, id]);
    } else {
      // Not attempted after all (shutdown between lease and send): as if never leased.
      await m.query(`UPDATE confirmation_deliveries SET mail_attempts = mail_attempts - 1, ${release} WHERE id = ?`, [id]);
    }
    return true;
  }

  async expireUnmailed(tx: TxContext, now: number): Promise<number> {
    const m = managerOf(tx);
    const rows: Array<{ id: unknown }> = await m.query('SELECT id FROM confirmation_deliveries WHERE acknowledged_at IS NULL AND mail_state IS NULL AND expires_at <= ?', [now]);
    if (rows.length === 0) return 0;
    const ids = rows.map((r) => String(r.id));
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      await m.query(`UPDATE confirmation_deliveries SET mail_state = 'EXPIRED', mail_lease_owner = NULL, mail_lease_until = NULL WHERE id IN (${placeholders(chunk.length)}) AND acknowledged_at IS NULL AND mail_state IS NULL AND expires_at <= ?`, [...chunk, now]);
    }
    return ids.length;
  }

  async oldestMailable(tx: TxContext, now: number): Promise<number | null> {
    const rows: Array<{ oldest: unknown }> = await managerOf(tx).query(
      'SELECT MIN(created_at) AS oldest FROM confirmation_deliveries WHERE acknowledged_at IS NULL AND mail_state IS NULL AND expires_at > ?',
      [now],
    );
    return rows[0]?.oldest === null || rows[0]?.oldest === undefined ? null : num(rows[0].oldest);
  }

  async deleteOfSubject(tx: TxContext, tenantId: string, subjectId: string): Promise<number> {
    const m = managerOf(tx);
    let count = 0;
    for (const table of ['confirmation_deliveries', 'signup_confirmations']) {
      const rows: Array<{ n: unknown }> = await m.query(`SELECT COUNT(*) AS n FROM ${table} WHERE tenant_id = ? AND subject_id = ?`, [tenantId, subjectId]);
      const n = Number(rows[0]?.n ?? 0);
      if (n > 0) await m.query(`DELETE FROM ${table} WHERE tenant_id = ? AND subject_id = ?`, [tenantId, subjectId]);
      count += n;
    }
    return count;
  }

  private async one(tx: TxContext, where: string, params: unknown[]): Promise<SignUpConfirmationRecord | null> {
    const rows: Array<Record<string, unknown>> = await managerOf(tx).query(`SELECT * FROM signup_confirmations WHERE ${where}`, params);
    return rows.length ? confirmationOf(rows[0]) : null;
  }
}

function str(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

function confirmationOf(r: Record<string, unknown>): SignUpConfirmationRecord {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    subjectId: String(r.subject_id),
    identifierKind: String(r.identifier_kind) as IdentifierKind,
    blindIndex: String(r.blind_index),
    mailboxIndex: str(r.mailbox_index),
    method: String(r.method) as ConfirmationMethod,
    codeSha256: str(r.code_sha256),
    tokenJti: str(r.token_jti),
    channel: String(r.channel) as SendChannel,
    language: String(r.language),
    scopes: JSON.parse(String(r.scopes_json)) as PendingScope[],
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    confirmedAt: r.confirmed_at === null ? null : num(r.confirmed_at),
    confirmedEventIds: r.confirmed_event_ids === null ? null : (JSON.parse(String(r.confirmed_event_ids)) as string[]),
    confirmedRef: str(r.confirmed_ref),
    requestId: String(r.request_id),
    fingerprint: String(r.request_fingerprint),
  };
}

function deliveryOf(r: Record<string, unknown>): ConfirmationDeliveryRecord {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    subjectId: String(r.subject_id),
    confirmationId: String(r.confirmation_id),
    addressCiphertext: String(r.address_ciphertext),
    linkCiphertext: String(r.link_ciphertext),
    language: String(r.language),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    acknowledgedAt: r.acknowledged_at === null ? null : num(r.acknowledged_at),
  };
}
