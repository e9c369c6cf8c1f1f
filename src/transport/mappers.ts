import { Channel as PbChannel, PurposeCategory as PbCategory, SubjectIdentifier } from '../gen/consent/v1/common';
import {
  CollectionMethod as PbMethod,
  ConsentEvent as PbEvent,
  ConsentEventKind as PbKind,
  DecisionReason as PbReason,
  LawfulBasis as PbBasis,
  Verdict,
  ConsentDecision as PbDecision,
} from '../gen/consent/v1/consent';
import { Duration } from '../gen/google/protobuf/duration';
import { Decision } from '../domain/consent-rules';
import { DomainError, FieldViolation, invalidArgument } from '../shared/errors';
import { RawIdentifier } from '../domain/identifiers';
import { Channel, CollectionMethod, ConsentEvent, EventKind, LawfulBasis, PurposeCategory } from '../domain/model';
import { names, parsePurposeName, parseTenantName } from '../domain/resource-names';

/**
 * Proto <-> domain conversions. Proto enums are `PREFIX_NAME`; domain values are `NAME`, so the
 * mapping is the enum's name without its prefix, and UNSPECIFIED maps to null.
 */
export function enumMapper<E extends Record<string, string | number>, D extends string>(pbEnum: E, prefix: string) {
  // Both directions worked out once: every check maps a channel, a category and a reason.
  const toDomain = new Map<number, D>();
  const toProto = new Map<string, E[keyof E]>();
  for (const [name, value] of Object.entries(pbEnum)) {
    if (typeof value !== 'number' || name.endsWith('_UNSPECIFIED') || name === 'UNRECOGNIZED') continue;
    toDomain.set(value, name.slice(prefix.length) as D);
    toProto.set(name.slice(prefix.length), value as E[keyof E]);
  }
  return {
    toDomain(value: number): D | null {
      return toDomain.get(value) ?? null;
    },
    toProto(value: D): E[keyof E] {
      return toProto.get(value) ?? pbEnum[(prefix + value) as keyof E];
    },
  };
}

export const channels = enumMapper<typeof PbChannel, Channel>(PbChannel, 'CHANNEL_');
export const categories = enumMapper<typeof PbCategory, PurposeCategory>(PbCategory, 'PURPOSE_CATEGORY_');
export const eventKinds = enumMapper<typeof PbKind, EventKind>(PbKind, 'CONSENT_EVENT_KIND_');
export const methods = enumMapper<typeof PbMethod, CollectionMethod>(PbMethod, 'COLLECTION_METHOD_');
export const lawfulBases = enumMapper<typeof PbBasis, LawfulBasis>(PbBasis, 'LAWFUL_BASIS_');
export const reasons = enumMapper<typeof PbReason, Decision['reason']>(PbReason, 'DECISION_REASON_');

export function durationToMs(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : d.seconds * 1000 + Math.trunc(d.nanos / 1e6);
}

export function msToDuration(ms: number): Duration {
  return { seconds: Math.trunc(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

/** The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z (in ms). */
const MIN_TIMESTAMP_MS = -62_135_596_800_000;
const MAX_TIMESTAMP_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * A timestamp of a request, in ms: undefined when unset. A set one that is no valid
 * google.protobuf.Timestamp (outside 0001-9999, or beyond what a Date holds, which decodes as an
 * invalid Date) is a field violation: it must not pass for "unset" and default to now.
 */
export function requestTimeMs(d: Date | undefined, field: string, violations: FieldViolation[]): number | undefined {
  if (d === undefined) return undefined;
  const ms = d.getTime();
  if (Number.isFinite(ms) && ms >= MIN_TIMESTAMP_MS && ms <= MAX_TIMESTAMP_MS) return ms;
  violations.push({ field, reason: 'INVALID_TIMESTAMP', description: 'must be a time between 0001-01-01 and 9999-12-31 (UTC)' });
  return undefined;
}

export function dateToMs(d: Date | undefined): number | undefined {
  if (d === undefined) return undefined;
  const ms = d.getTime();
  return Number.isFinite(ms) ? ms : undefined;
}

export function msToDate(ms: number | undefined): Date | undefined {
  return ms === undefined ? undefined : new Date(ms);
}

export function toRawIdentifier(id: SubjectIdentifier | undefined): RawIdentifier | undefined {
  if (!id || !id.kind) return id ? {} : undefined;
  const region = id.defaultRegion || undefined;
  switch (id.kind.$case) {
    case 'phoneNumber':
      return { phoneNumber: id.kind.value, defaultRegion: region };
    case 'email':
      return { email: id.kind.value };
    case 'customerId':
      return { customerId: id.kind.value };
  }
}

/**
 * A parser of resource names that remembers the names it could parse: every check names its
 * tenant and purpose (a batch a thousand times), and a regular expression per name was ~0.3 µs.
 * Valid names are short and few; what is not a name (any text a caller sent, personal data
 * included) is parsed each time and never kept. The memory is dropped when it holds MEMO_NAMES.
 */
export class NameMemo<T> {
  private readonly parsed = new Map<string, T>();

  constructor(private readonly parser: (name: string) => T | null) {}

  parse(name: string): T | null {
    const known = this.parsed.get(name);
    if (known !== undefined) return known;
    const parsed = this.parser(name);
    if (parsed !== null) {
      if (this.parsed.size >= MEMO_NAMES) this.parsed.clear();
      this.parsed.set(name, parsed);
    }
    return parsed;
  }
}

const MEMO_NAMES = 1000;
// The parsed names are shared: callers only read them.
const purposeNames = new NameMemo((name) => parsePurposeName(name, false));
const purposeNamesWithAll = new NameMemo((name) => parsePurposeName(name, true));

/** Parses a purpose name of `tenantId`; pushes a violation and returns null if it is not one. */
export function purposeIdOf(
  name: string,
  tenantId: string,
  field: string,
  violations: FieldViolation[],
  allowAll = false,
): string | null {
  const parsed = (allowAll ? purposeNamesWithAll : purposeNames).parse(name);
  if (!parsed || parsed.tenantId !== tenantId) {
    violations.push({
      field,
      reason: 'INVALID_PURPOSE_NAME',
      description: `must be tenants/${tenantId}/purposes/{purpose}${allowAll ? ' (or .../purposes/- for all purposes)' : ''}`,
    });
    return null;
  }
  return parsed.purposeId;
}

export function eventToProto(e: ConsentEvent): PbEvent {
  return {
    name: names.consentEvent(e.tenantId, e.subjectId, e.id),
    subject: names.subject(e.tenantId, e.subjectId),
    kind: eventKinds.toProto(e.kind),
    purpose: names.purpose(e.tenantId, e.purposeId),
    channel: channels.toProto(e.channel),
    eventTime: msToDate(e.eventTime),
    recordTime: msToDate(e.recordTime),
    method: methods.toProto(e.method),
    notice: e.notice ? names.notice(e.tenantId, e.notice.purposeId, e.notice.version) : '',
    noticeTextSha256: e.notice?.textSha256 ?? '',
    noticeLanguage: e.notice?.language ?? '',
    principal: e.principal,
    collectedBy: e.evidence.collectedBy ?? '',
    evidence: {
      sourceIp: e.evidence.sourceIp ?? '',
      userAgent: e.evidence.userAgent ?? '',
      pageUrl: e.evidence.pageUrl ?? '',
      inboundMessageId: e.evidence.inboundMessageId ?? '',
      freeText: e.evidence.freeText ?? '',
    },
    lawfulBasis: e.lawfulBasis ? lawfulBases.toProto(e.lawfulBasis) : PbBasis.LAWFUL_BASIS_UNSPECIFIED,
    jurisdiction: e.jurisdiction,
    expireTime: msToDate(e.expireTime),
    requestId: e.requestId,
  };
}

export function decisionToProto(tenantId: string, d: Decision): PbDecision {
  return {
    verdict: d.allow ? Verdict.VERDICT_ALLOW : Verdict.VERDICT_DENY,
    reason: reasons.toProto(d.reason),
    decidingEvent: d.decidingEventId && d.subjectId ? names.consentEvent(tenantId, d.subjectId, d.decidingEventId) : '',
    validUntil: msToDate(d.validUntil),
  };
}

/** The resource kinds named `tenants/{tenant}/{collection}/{id}` with server-assigned ids. */
const CHILD_RESOURCES: Record<string, string> = { requests: 'REQUEST', legalHolds: 'LEGAL_HOLD', keyRotations: 'KEY_ROTATION', restrictions: 'RESTRICTION', identityLinks: 'IDENTITY_LINK', confirmationDeliveries: 'CONFIRMATION_DELIVERY' };

/**
 * Parses `tenants/{tenant}/{collection}/{id}`. A name of another shape is INVALID_ARGUMENT; a
 * well-formed name whose id is not one the service assigns (32 hex characters) names nothing and
 * is NOT_FOUND, like any other unknown id. Neither error echoes the id: callers have put personal
 * data into names.
 */
export function childName(name: string, collection: string, field = 'name'): { tenantId: string; id: string } {
  const m = new RegExp(`^tenants/([^/]+)/${collection}/([^/]{1,128})$`).exec(name);
  const tenantId = m ? parseTenantName(`tenants/${m[1]}`) : null;
  if (!m || !tenantId) throw invalidArgument([{ field, reason: 'INVALID_NAME', description: `must be tenants/{tenant}/${collection}/{id}, a name the service returned` }]);
  const resource = CHILD_RESOURCES[collection];
  if (!/^[0-9a-f]{32}$/.test(m[2])) {
    throw new DomainError('NOT_FOUND', `${resource}_NOT_FOUND`, `no ${resource.toLowerCase().replace('_', ' ')} with this name in tenants/${tenantId}/${collection} (ids are the 32 hexadecimal characters the service assigned)`, {
      resource: `tenants/${tenantId}/${collection}`,
    });
  }
  return { tenantId, id: m[2] };
}
