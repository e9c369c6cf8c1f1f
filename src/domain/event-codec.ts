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
 * The hashed form of an event row: canonicalJson of recordFields. Written field by field in
 * canonicalJson's key order, as every recorded event needs it (no object, no key sort), unless a
 * field is missing (canonicalJson leaves it out); test/unit/event-record-hash.test.ts holds it to
 * canonicalJson(recordFields(...)).
 */
export function eventRecordJson(e: StoredConsentEvent, evidenceSha256: string | null): string {
  const n = e.notice;
  if (
    e.id === undefined || e.tenantId === undefined || e.subjectId === undefined || e.kind === undefined || e.purposeId === undefined ||
    e.channel === undefined || e.eventTime === undefined || e.recordTime === undefined || e.method === undefined || e.principal === undefined ||
    e.jurisdiction === undefined || e.requestId === undefined || e.requestFingerprint === undefined ||
    (n && (n.purposeId === undefined || n.version === undefined || n.textSha256 === undefined || n.language === undefined))
  ) {
    return canonicalJson(recordFields(e, evidenceSha256));
  }
  return (
    `{"channel":${json(e.channel)},"eventTime":${json(e.eventTime)},"evidenceSha256":${json(evidenceSha256)},"expireTime":${json(e.expireTime ?? null)}` +
    `,"id":${json(e.id)},"jurisdiction":${json(e.jurisdiction)},"kind":${json(e.kind)},"lawfulBasis":${json(e.lawfulBasis ?? null)},"method":${json(e.method)}` +
    `,"notice":${n ? `{"language":${json(n.language)},"purpose":${json(n.purposeId)},"sha256":${json(n.textSha256)},"version":${json(n.version)}}` : 'null'}` +
    `,"principal":${json(e.principal)},"purpose":${json(e.purposeId)},"recordTime":${json(e.recordTime)},"requestFingerprint":${json(e.requestFingerprint)}` +
    `,"requestId":${json(e.requestId)},"subject":${json(e.subjectId)},"tenant":${json(e.tenantId)}}`
  );
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

/** A defined member's JSON as canonicalJson writes it. */
function json(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : canonicalJson(value);
}
