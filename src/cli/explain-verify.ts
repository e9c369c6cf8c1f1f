import { ExplainDecisionResponse } from '../gen/consent/v1/audit';
import { PurposeCategory, Channel } from '../gen/consent/v1/common';
import { DecisionReason, Verdict } from '../gen/consent/v1/consent';
import { leafHash, ProofError, verifyInclusion } from '../audit/merkle';
import { decide, foldEvents, SubjectFacts } from '../domain/consent-rules';
import { Channel as DomainChannel, EventKind, PurposeCategory as DomainCategory, SendChannel } from '../domain/model';
import { EntryFields, recordIds, recordMismatch, VerificationFailure, VerifiedCheckpoint, verifyCheckpoint } from './audit-verify';

/** One deciding entry, verified. */
export interface VerifiedEntry {
  index: number;
  type: string;
  time: number;
  purpose?: string;
  channel?: string;
  eventTime?: number;
  event?: string;
}

export interface VerifiedExplanation {
  checkpoint: VerifiedCheckpoint;
  verdict: 'ALLOW' | 'DENY';
  reason: string;
  decidingEvent: string;
  time: string;
  subject: string;
  entries: VerifiedEntry[];
  /**
   * What the verifier took from the server unverified: the rules' inputs that are settings, and
   * that the identifier was erased (a tombstone names no subject, so there is nothing to prove it
   * by; only ever a DENY is taken on that word).
   */
  reportedByServer: { category: string; allowedWhileRestricted: boolean; serviceWindowSeconds: number; identifierErased: boolean };
  /**
   * People of the tenant erased after the asked time. Not 0: an erased person's events are not
   * reachable by identifier any more, so the reconstruction may lack what decided the answer.
   */
  erasuresSince: number;
  /** The entries prove the answer and no erasure since may have removed evidence. */
  complete: boolean;
}

/**
 * Checks an ExplainDecision answer without trusting the server: the checkpoint's signature, each
 * entry's leaf hash and inclusion proof against it, that each consent event row says what its
 * entry says (and that none is missing on either side), and finally that the consent rules,
 * replayed over the verified entries alone, give the same decision. Only the purpose's category
 * and the tenant's service window are taken as reported (they are settings, not events).
 */
export async function verifyExplanation(
  response: ExplainDecisionResponse,
  jwks: string,
  question: { tenant: string; purposeId: string | null; channel: SendChannel },
): Promise<VerifiedExplanation> {
  const parent = `tenants/${question.tenant}`;
  const checkpoint = await verifyCheckpoint(response.checkpoint?.signedCheckpoint ?? '', jwks);
  if (checkpoint.tenant !== parent) throw new VerificationFailure(`checkpoint is for ${checkpoint.tenant}, not ${parent}`);
  const root = Buffer.from(checkpoint.rootHash, 'hex');
  const subjectId = response.subject ? response.subject.split('/').pop()! : '';
  const at = response.time?.getTime();
  if (at === undefined) throw new VerificationFailure('the answer names no time');

  const verified: Array<EntryFields & { index: number }> = [];
  for (const item of response.entries) {
    if (!item.entry) {
      throw new VerificationFailure(`consent event ${item.record?.name} has no audit entry: the row was added to the event table behind the service`);
    }
    const { index, entryJson } = item.entry;
    const leaf = leafHash(Buffer.from(entryJson, 'utf8'));
    if (leaf.toString('hex') !== item.entry.leafHash) throw new VerificationFailure(`entry ${index} was altered: its content does not match its leaf hash`);
    try {
      verifyInclusion(BigInt(index), BigInt(checkpoint.treeSize), leaf, item.inclusionProof.map((h) => Buffer.from(h, 'hex')), root);
    } catch (err) {
      if (err instanceof ProofError) throw new VerificationFailure(`entry ${index} is not in the signed tree of ${checkpoint.treeSize} entries: ${err.message}`);
      throw err;
    }
    const fields = JSON.parse(entryJson) as EntryFields;
    if (fields.tenant !== question.tenant || fields.seq !== index) throw new VerificationFailure(`entry ${index} belongs to another log position or tenant`);
    if (fields.subject !== subjectId) throw new VerificationFailure(`entry ${index} is about another subject`);
    if (fields.type.startsWith('CONSENT_EVENT_')) {
      if (!item.record) throw new VerificationFailure(`audit entry ${index} vouches for consent event ${fields.ref}, which is missing from the event table: the row was deleted`);
      const field = recordMismatch(item.record, fields);
      if (field) throw new VerificationFailure(`consent event ${item.record.name} does not match audit entry ${index} (${field}): the row was rewritten`);
      if (recordIds(item.record).event !== fields.ref) throw new VerificationFailure(`entry ${index} is paired with another event's row`);
    }
    verified.push({ ...fields, index });
  }
  verified.sort((a, b) => a.index - b.index);

  // The rules, replayed over what the log vouches for.
  const category = (PurposeCategory[response.category] ?? '').replace('PURPOSE_CATEGORY_', '') as DomainCategory;
  const windowMs = (response.serviceWindow?.seconds ?? 0) * 1000 + Math.trunc((response.serviceWindow?.nanos ?? 0) / 1e6);
  const events = verified
    .filter((e) => e.type.startsWith('CONSENT_EVENT_') && e.time <= at)
    .map((e) => ({ id: e.ref!, kind: e.type.slice('CONSENT_EVENT_'.length) as EventKind, purposeId: e.purpose!, channel: e.channel as DomainChannel, eventTime: e.eventTime!, expireTime: e.expireTime }));
  // A reassigned identifier's fresh subject is known from its IDENTIFIER_REASSIGNED entry on, with no event yet.
  const reassigned = verified.find((e) => e.type === 'IDENTIFIER_REASSIGNED' && e.time <= at);
  const facts: SubjectFacts | null = events.length === 0 && !reassigned ? null : { ...foldEvents(subjectId, events), erased: verified.some((e) => e.type === 'SUBJECT_ERASED') };
  if (facts && reassigned?.eventTime !== undefined) facts.reassignedAt = reassigned.eventTime;
  if (facts) {
    const { objectedAt, restricted } = standingMarks(verified, at);
    if (objectedAt !== undefined) facts.objectedAt = objectedAt;
    if (restricted) facts.restricted = true;
  }
  const allowedWhileRestricted = response.allowedWhileRestricted;
  const expected = decide(facts, { purposeId: question.purposeId, category, channel: question.channel, allowedWhileRestricted }, at, windowMs);

  const reason = (DecisionReason[response.decision?.reason ?? 0] ?? '').replace('DECISION_REASON_', '');
  const verdict = response.decision?.verdict === Verdict.VERDICT_ALLOW ? 'ALLOW' : 'DENY';
  const decidingEvent = response.decision?.decidingEvent ?? '';
  const claimedEventId = decidingEvent ? decidingEvent.split('/').pop() : undefined;
  // An erased identifier names no subject: the service's word that it was erased is taken for a DENY.
  const identifierErased = subjectId === '' && verified.length === 0 && verdict === 'DENY' && reason === 'SUBJECT_ERASED' && !claimedEventId;
  if (!identifierErased && (expected.reason !== reason || expected.allow !== (verdict === 'ALLOW') || expected.decidingEventId !== claimedEventId)) {
    throw new VerificationFailure(
      `the service answered ${verdict} (${reason}${claimedEventId ? `, event ${claimedEventId}` : ''}) but the verified log gives ` +
        `${expected.allow ? 'ALLOW' : 'DENY'} (${expected.reason}${expected.decidingEventId ? `, event ${expected.decidingEventId}` : ''}): ` +
        'the state the service decided from does not match its signed history',
    );
  }
  return {
    checkpoint,
    verdict,
    reason,
    decidingEvent,
    time: new Date(at).toISOString(),
    subject: response.subject,
    entries: verified.map((e) => ({ index: e.index, type: e.type, time: e.time, purpose: e.purpose, channel: e.channel, eventTime: e.eventTime, event: e.ref })),
    reportedByServer: { category, allowedWhileRestricted, serviceWindowSeconds: windowMs / 1000, identifierErased },
    erasuresSince: response.erasuresSince,
    complete: response.erasuresSince === 0 && !identifierErased,
  };
}

/**
 * The person's standing marks at `at`, from the verified entries recorded by then: the objection
 * to direct marketing (Art. 21(3)) of the latest SUBJECT_OBJECTED entry, at its event time, and
 * whether a restriction (Art. 18) was placed and not lifted (entries named by the restriction).
 */
function standingMarks(verified: Array<EntryFields & { index: number }>, at: number): { objectedAt?: number; restricted: boolean } {
  let objectedAt: number | undefined;
  const open = new Set<string>();
  for (const e of verified) {
    if (e.time > at) continue;
    if (e.type === 'SUBJECT_OBJECTED' && e.eventTime !== undefined) objectedAt = e.eventTime;
    else if (e.type === 'RESTRICTION_PLACED' && e.ref !== undefined) open.add(e.ref);
    else if (e.type === 'RESTRICTION_LIFTED' && e.ref !== undefined) open.delete(e.ref);
  }
  return { objectedAt, restricted: open.size > 0 };
}

/** The domain channel of a --channel flag value, or null. */
export function sendChannelOf(value: string): SendChannel | null {
  const name = `CHANNEL_${value.toUpperCase()}`;
  return name in Channel && name !== 'CHANNEL_ANY' && name !== 'CHANNEL_UNSPECIFIED' ? (value.toUpperCase() as SendChannel) : null;
}
