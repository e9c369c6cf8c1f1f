import { decryptField, encryptField, FieldContext, FieldDecryptionError } from '../crypto/field-cipher';
import { DomainError } from '../shared/errors';
import { SubjectKey } from '../crypto/key-manager';
import { ConsentEvent, Evidence } from './model';
import { StoredConsentEvent } from './ports';
import { canonicalJson, sha256Hex } from '../shared/hashing';

/** Where an event's evidence ciphertext belongs; bound into the ciphertext. */
function evidenceContext(event: { tenantId: string; subjectId: string; id: string }): FieldContext {
  return { tenant: event.tenantId, subject: event.subjectId, table: 'consent_events', column: 'evidence_ciphertext', row: event.id };
}

/** Whether sealing the event encrypts anything. */
export function hasEvidence(evidence: Evidence): boolean {
  return Object.values(evidence).some((v) => v !== undefined && v !== '');
}

/** Encrypts an event's evidence under the subject key for storage. */
export function sealEvent(event: ConsentEvent, key: SubjectKey, requestFingerprint: string): StoredConsentEvent {
  const { evidence, ...rest } = event;
  return {
    ...rest,
    requestFingerprint,
    evidenceCiphertext: hasEvidence(evidence) ? encryptField(key.key, key.kid, evidenceContext(event), JSON.stringify(evidence)) : null,
  };
}

/** Decrypts a stored event's evidence. Throws FieldDecryptionError if it does not belong there. */
export function openEvent(stored: StoredConsentEvent, key: SubjectKey | null): ConsentEvent {
  const { requestFingerprint: _fingerprint, evidenceCiphertext, ...rest } = stored;
  let evidence: Evidence = {};
  if (evidenceCiphertext !== null && key !== null) {
    try {
      evidence = JSON.parse(decryptField(key.key, evidenceContext(stored), evidenceCiphertext)) as Evidence;
    } catch (err) {
      if (!(err instanceof FieldDecryptionError)) throw err;
      // Authenticated encryption failed: the row was altered or moved. Never return partial data.
      throw new DomainError('DATA_LOSS', 'CIPHERTEXT_INVALID', 'stored evidence of an event failed authentication', {
        event: stored.id,
      });
    }
  }
  return { ...rest, evidence };
}

/**
 * SHA-256 of an event row as stored, every column but the row's position. The event's audit
 * entry carries it, so a row rewritten in the database no longer matches the signed log. The
 * evidence enters by the hash of its ciphertext: the check works after erasure made it unreadable.
 */
export function eventRecordSha256(e: StoredConsentEvent): string {
  return sha256Hex(
    canonicalJson({
      id: e.id,
      tenant: e.tenantId,
      subject: e.subjectId,
      kind: e.kind,
      purpose: e.purposeId,
      channel: e.channel,
      eventTime: e.eventTime,
      recordTime: e.recordTime,
      method: e.method,
      notice: e.notice ? { purpose: e.notice.purposeId, version: e.notice.version, sha256: e.notice.textSha256, language: e.notice.language } : null,
      principal: e.principal,
      lawfulBasis: e.lawfulBasis ?? null,
      jurisdiction: e.jurisdiction,
      expireTime: e.expireTime ?? null,
      requestId: e.requestId,
      requestFingerprint: e.requestFingerprint,
      evidenceSha256: e.evidenceCiphertext ? sha256Hex(e.evidenceCiphertext) : null,
    }),
  );
}
