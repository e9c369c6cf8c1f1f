import { FieldViolation } from '../shared/errors';
import { TxContext } from '../shared/unit-of-work';
import { isViolation, normaliseIdentifier, RawIdentifier } from './identifiers';
import { IdentifierRef } from './model';
import { ConsentRepository, IdentifierIndex, RequestIdentifierRecord, SubjectRepository, SubjectRequestRecord, SubjectRightsRepository } from './ports';

/** At most this many identifiers in one request (named by the requester; linked ones add to it). */
export const MAX_REQUEST_IDENTIFIERS = 10;

/** Verification recorded for a subject reached through an identity link: the link holds the evidence. */
export const VERIFIED_BY_LINK = 'IDENTITY_LINK';

/**
 * The identifiers of a new request, normalised: `subject_identifier` first (when set), then
 * `subject_identifiers` in order. Violations name the field and position, never the value.
 */
export function requestIdentifiers(single: RawIdentifier | undefined, many: RawIdentifier[], violations: FieldViolation[]): IdentifierRef[] {
  const raw: Array<{ identifier: RawIdentifier; field: string }> = [];
  if (single) raw.push({ identifier: single, field: 'subject_identifier' });
  many.forEach((identifier, i) => raw.push({ identifier, field: `subject_identifiers[${i}]` }));
  if (raw.length === 0) {
    violations.push({ field: 'subject_identifier', reason: 'REQUIRED', description: 'set subject_identifier or subject_identifiers (the identifiers of the person)' });
    return [];
  }
  if (raw.length > MAX_REQUEST_IDENTIFIERS) {
    violations.push({ field: 'subject_identifiers', reason: 'TOO_MANY', description: `at most ${MAX_REQUEST_IDENTIFIERS} identifiers in one request` });
    return [];
  }
  const result: IdentifierRef[] = [];
  const seen = new Set<string>();
  for (const { identifier, field } of raw) {
    const ref = normaliseIdentifier(identifier, field);
    if (isViolation(ref)) {
      violations.push(ref);
      continue;
    }
    const key = `${ref.kind}:${ref.value}`;
    if (seen.has(key)) violations.push({ field, reason: 'DUPLICATE', description: 'the same identifier is named twice in this request' });
    seen.add(key);
    result.push(ref);
  }
  return result;
}

/** Subjects reached through identity links (the closure over open links), excluding the given ones: IdentityLinks. */
export interface LinkedSubjects {
  linkedSubjects(tx: TxContext, tenantId: string, subjectIds: string[]): Promise<Array<{ subjectId: string; viaLink: string; from: string }>>;
  /** Whether the link named `linkName` was undone by UnlinkIdentifiers (false for an open link, and for one deleted with an erased person). */
  wasUnlinked(tx: TxContext, tenantId: string, linkName: string): Promise<boolean>;
}

/** The outcome of a row that reaches nobody now. */
export function unreachedOutcome(row: { viaLink: string | null }): string {
  return row.viaLink === null ? 'no data held' : 'not reached: the identity link was undone (UnlinkIdentifiers)';
}

/**
 * Which persons a request reaches, kept on its identifier rows: for each identifier the requester
 * named, the subject it found when the request was received or, if none, the one it finds now (a
 * consent recorded after the request was received counts; a subject erased since keeps its row,
 * so the outcome says so; a number reassigned since never leads to its new owner), and every
 * subject linked to them,
 * added as rows of their own (verified through the link). Called when the request is created and
 * again when it is carried out, so links made in between are followed, and links undone in
 * between (UnlinkIdentifiers: "two different people") no longer reach anyone: such a row keeps its
 * identifier and link but loses its subject, and its outcome says why.
 */
export class RequestSubjectResolver {
  constructor(
    private readonly subjects: SubjectRepository,
    private readonly consent: ConsentRepository,
    private readonly requests: SubjectRightsRepository,
    private readonly links: LinkedSubjects,
  ) {}

  /**
   * The request's identifier rows brought up to date in `tx` (subjects found since it was
   * received, persons linked since), new and changed rows saved, and the request row's subject
   * kept to the first identifier's.
   */
  async refresh(tx: TxContext, request: SubjectRequestRecord, now: number): Promise<RequestIdentifierRecord[]> {
    const rows = (await this.requests.requestIdentifiers(tx, [request.id])).get(request.id) ?? [];
    const resolved = await this.resolve(tx, request.tenantId, rows, now, request.receiveTime, {
      insert: (added) => this.requests.insertRequestIdentifiers(tx, added),
      update: (position, change) => this.requests.updateRequestIdentifier(tx, request.id, position, change),
    });
    if (resolved[0] && resolved[0].subjectId !== request.subjectId) await this.requests.updateRequest(tx, request.id, { subjectId: resolved[0].subjectId });
    return resolved;
  }

  /**
   * The rows after resolving (new linked rows included, numbered after the last); `save` is called
   * for each changed or new row so the caller persists them in its transaction.
   */
  async resolve(
    tx: TxContext,
    tenantId: string,
    rows: RequestIdentifierRecord[],
    now: number,
    receivedAt: number,
    save: { insert(rows: RequestIdentifierRecord[]): Promise<void>; update(position: number, change: Partial<RequestIdentifierRecord>): Promise<void> },
  ): Promise<RequestIdentifierRecord[]> {
    const result = rows.map((r) => ({ ...r }));
    for (const row of result) {
      // A row that found its person keeps them: the identifier may name someone else by now (a
      // number reassigned since, an identifier rectified away), and the request is about the person
      // who made it. One that found nobody takes the person recorded since, unless the identifier
      // passed to that person (a reassigned number's new owner) after the request was received.
      if (row.viaLink !== null || row.subjectId !== null) continue;
      const seen = await this.subjects.findByIdentifier(tx, tenantId, { kind: row.identifierKind, blindIndex: row.blindIndex });
      // Under the person's lock: an erasure that committed meanwhile shows (it seals the rows that
      // pair its person with a blind index; none may be added behind it).
      const found = seen && !seen.erased ? await this.subjects.lock(tx, tenantId, seen.subjectId) : seen;
      if (found && !found.erased && !(found.reassignedAt !== undefined && found.reassignedAt > receivedAt)) {
        row.subjectId = found.subjectId;
        await save.update(row.position, { subjectId: found.subjectId });
      }
    }
    // Persons reached by a link the DPO has undone since are no longer part of the request, and
    // neither is anyone reached only through them. An erasure deletes the erased person's links
    // (without undoing them): while a person the request reaches is erased, the links that are
    // left do not say who else the request reached, so only rows whose own link was undone go.
    const direct = new Set(result.filter((r) => r.viaLink === null && r.subjectId !== null).map((r) => r.subjectId!));
    const linked = direct.size > 0 ? await this.links.linkedSubjects(tx, tenantId, [...direct]) : [];
    const reachable = new Set([...direct, ...linked.map((l) => l.subjectId)]);
    const unreached = result.filter((r) => r.viaLink !== null && r.subjectId !== null && !reachable.has(r.subjectId));
    if (unreached.length > 0) {
      let someoneErased = false;
      for (const subjectId of new Set(result.map((r) => r.subjectId).filter((s): s is string => s !== null))) {
        if ((await this.subjects.find(tx, tenantId, subjectId))?.erased) someoneErased = true;
      }
      for (const row of unreached) {
        if (someoneErased && !(await this.links.wasUnlinked(tx, tenantId, row.viaLink!))) continue;
        row.subjectId = null;
        await save.update(row.position, { subjectId: null });
      }
    }
    const known = new Set(result.map((r) => r.subjectId).filter((s): s is string => s !== null));
    if (known.size === 0) return result;
    const added: RequestIdentifierRecord[] = [];
    let position = Math.max(...result.map((r) => r.position));
    for (const link of linked) {
      if (known.has(link.subjectId)) continue;
      known.add(link.subjectId);
      // The row names the linked person by one of their identifiers' blind index (never a value).
      const index = (await this.consent.identifiersOf(tx, tenantId, link.subjectId))[0] as IdentifierIndex | undefined;
      if (!index) continue; // erased meanwhile: nothing left to reach
      const verifiedBy = result.find((r) => r.subjectId === link.from);
      added.push({
        requestId: result[0].requestId,
        tenantId,
        position: ++position,
        identifierKind: index.kind,
        blindIndex: index.blindIndex,
        subjectId: link.subjectId,
        viaLink: link.viaLink,
        verificationMethod: VERIFIED_BY_LINK,
        verifiedBy: link.viaLink.slice(0, 128),
        verifiedAt: verifiedBy?.verifiedAt ?? now,
        outcome: null,
      });
    }
    if (added.length > 0) await save.insert(added);
    return [...result, ...added];
  }
}

/** One row per distinct subject, the first (lowest position) that reached it. */
export function distinctSubjects(rows: RequestIdentifierRecord[]): Array<RequestIdentifierRecord & { subjectId: string }> {
  const seen = new Set<string>();
  const result: Array<RequestIdentifierRecord & { subjectId: string }> = [];
  for (const row of rows) {
    if (row.subjectId === null || seen.has(row.subjectId)) continue;
    seen.add(row.subjectId);
    result.push(row as RequestIdentifierRecord & { subjectId: string });
  }
  return result;
}

/** The outcome of a row whose subject an earlier row reached already (null when it is the first). */
export function sameAsEarlier(rows: RequestIdentifierRecord[], row: RequestIdentifierRecord): string | null {
  if (row.subjectId === null) return null;
  const first = rows.find((r) => r.subjectId === row.subjectId)!;
  return first.position === row.position ? null : `same person as identifier ${first.position}`;
}

/** How a row is named in notes and exports: by position and kind, never by value. */
export function identifierLabel(row: { position: number; identifierKind: string; viaLink: string | null }): string {
  return `identifier ${row.position} (${row.identifierKind}${row.viaLink ? ', linked' : ''})`;
}
