import { decryptField, encryptField, FieldContext, FieldDecryptionError } from '../crypto/field-cipher';
import { DomainError } from '../shared/errors';
import { SubjectKey } from '../crypto/key-manager';
import { ConsentEvent, Evidence } from './model';
import { StoredConsentEvent } from './ports';
import { sha256Hex } from '../shared/hashing';

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
  // Field by field rather than a rest spread: one object of a fixed shape per recorded event.
  return {
    id: event.id,
    tenantId: event.tenantId,
    subjectId: event.subjectId,
    kind: event.kind,
    purposeId: event.purposeId,
    channel: event.channel,
    eventTime: event.eventTime,
    recordTime: event.recordTime,
    method: event.method,
    notice: event.notice,
    principal: event.principal,
    lawfulBasis: event.lawfulBasis,
    jurisdiction: event.jurisdiction,
    expireTime: event.expireTime,
    requestId: event.requestId,
    requestFingerprint,
    evidenceCiphertext: hasEvidence(event.evidence) ? encryptField(key.key, key.kid, evidenceContext(event), JSON.stringify(event.evidence)) : null,
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
 * evidence enters by the hash of its ciphertext (`evidenceSha256`: pass it when it is known
 * already): the check works after erasure made it unreadable.
 */
export function eventRecordSha256(e: StoredConsentEvent, evidenceSha256?: string | null): string {
  return sha256Hex(eventRecordJson(e, evidenceSha256 === undefined ? (e.evidenceCiphertext ? sha256Hex(e.evidenceCiphertext) : null) : evidenceSha256));
}

/**
 * The hashed form of an event row: canonicalJson of recordFields, as every recorded event needs
 * it. JSON.stringify writes an object's fields in the order they were added and leaves out
 * undefined ones, as canonicalJson does, so an object built with its keys already in
 * canonicalJson's order (code units) gives the same bytes in one native call, without a key
 * sort; test/unit/event-record-hash.test.ts holds it to canonicalJson(recordFields(...)).
 */
export function eventRecordJson(e: StoredConsentEvent, evidenceSha256: string | null): string {
  const n = e.notice;
  return JSON.stringify({
    channel: e.channel,
    eventTime: e.eventTime,
    evidenceSha256,
    expireTime: e.expireTime ?? null,
    id: e.id,
    jurisdiction: e.jurisdiction,
    kind: e.kind,
    lawfulBasis: e.lawfulBasis ?? null,
    method: e.method,
    notice: n ? { language: n.language, purpose: n.purposeId, sha256: n.textSha256, version: n.version } : null,
    principal: e.principal,
    purpose: e.purposeId,
    recordTime: e.recordTime,
    requestFingerprint: e.requestFingerprint,
    requestId: e.requestId,
    subject: e.subjectId,
    tenant: e.tenantId,
  });
}

/** What of an event row its record hash covers, by name: the definition eventRecordJson writes. */
export function recordFields(e: StoredConsentEvent, evidenceSha256: string | null): Record<string, unknown> {
  return {
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
    evidenceSha256,
  };
}
