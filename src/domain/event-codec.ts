import { decryptField, encryptField, FieldContext } from '../crypto/field-cipher';
import { SubjectKey } from '../crypto/key-manager';
import { ConsentEvent, Evidence } from './model';
import { StoredConsentEvent } from './ports';

/** Where an event's evidence ciphertext belongs; bound into the ciphertext. */
function evidenceContext(event: { tenantId: string; subjectId: string; id: string }): FieldContext {
  return { tenant: event.tenantId, subject: event.subjectId, table: 'consent_events', column: 'evidence_ciphertext', row: event.id };
}

/** Encrypts an event's evidence under the subject key for storage. */
export function sealEvent(event: ConsentEvent, key: SubjectKey, requestFingerprint: string): StoredConsentEvent {
  const { evidence, ...rest } = event;
  const hasEvidence = Object.values(evidence).some((v) => v !== undefined && v !== '');
  return {
    ...rest,
    requestFingerprint,
    evidenceCiphertext: hasEvidence ? encryptField(key.key, key.kid, evidenceContext(event), JSON.stringify(evidence)) : null,
  };
}

/** Decrypts a stored event's evidence. Throws FieldDecryptionError if it does not belong there. */
export function openEvent(stored: StoredConsentEvent, key: SubjectKey | null): ConsentEvent {
  const { requestFingerprint: _fingerprint, evidenceCiphertext, ...rest } = stored;
  const evidence: Evidence =
    evidenceCiphertext === null || key === null
      ? {}
      : (JSON.parse(decryptField(key.key, evidenceContext(stored), evidenceCiphertext)) as Evidence);
  return { ...rest, evidence };
}
