import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Checkpoint, ExplainDecisionResponse, ListAuditEntriesRequest } from '../../gen/consent/v1/audit';
import { Channel, SubjectIdentifier } from '../../gen/consent/v1/common';
import { CollectionMethod, ConsentEvent, ConsentEventKind } from '../../gen/consent/v1/consent';
import { Notice } from '../../gen/consent/v1/purpose';
import { ProofError, verifyConsistency } from '../../audit/merkle';
import { VerificationFailure, VerifiedCheckpoint, verifyCheckpoint } from '../../cli/audit-verify';
import { sendChannelOf, verifyExplanation, VerifiedExplanation } from '../../cli/explain-verify';
import { ApiError } from '../api-client';
import { httpStatusOf } from '../http-errors';
import type { Credential } from '../principal';
import type { ConsolePageContext } from '../server';
import { timelineSvg, TimelineEvent } from './auditor-timeline';

/**
 * Read-only pages for auditors (and DPOs): find a person by an identifier typed into a POST form,
 * their consent timeline (a server-drawn SVG and tables of the same facts), "was a message allowed
 * at time T, and why" verified with consentctl's own verifier, and the tenant's signed checkpoints
 * with a consistency check between two of them.
 *
 * A person's page is addressed by the opaque subject id and drawn from their audit entries
 * (ListAuditEntries by subject), which hold no personal data and outlive an erasure: so it works
 * for anyone allowed to read the log, without a lookup, also for an erased person (reached from
 * the erasure request's page). The identifier never appears in an address, a log line or a page;
 * after a lookup it stays in this process's memory only, for the person who typed it, for
 * LOOKUP_TTL_MS, because two things are still asked by identifier only: the event rows'
 * provenance (ListConsentEvents) and ExplainDecision.
 */
const LOOKUP_TTL_MS = 15 * 60_000;
const TENANT = { type: 'string', pattern: '^[a-z][a-z0-9-]{1,62}$' } as const;
const SUBJECT = { type: 'string', pattern: '^[0-9a-f]{32}$' } as const;
const MAX_EVENT_PAGES = 20;
/** Audit entries of one subject read at most (pages of ENTRY_PAGE): the page says when it stopped. */
const MAX_ENTRY_PAGES = 20;
const ENTRY_PAGE = 500;
/** Lookups kept at most (the oldest go first): memory stays bounded whatever the traffic. */
const MAX_LOOKUPS = 10_000;

/** One of the subject's audit entries, as its canonical JSON says (docs/audit.md). */
export interface SubjectEntry {
  index: number;
  leafHash: string;
  type: string;
  time: number;
  principal: string;
  purpose?: string;
  channel?: string;
  ref: string;
  eventTime?: number;
  expireTime?: number;
  noticeSha256?: string;
}

export function parseEntry(index: number, leafHash: string, entryJson: string): SubjectEntry {
  const j = JSON.parse(entryJson) as Record<string, unknown>;
  const str = (k: string) => (typeof j[k] === 'string' ? (j[k] as string) : undefined);
  const num = (k: string) => (typeof j[k] === 'number' ? (j[k] as number) : undefined);
  return {
    index,
    leafHash,
    type: str('type') ?? 'UNKNOWN',
    time: num('time') ?? 0,
    principal: str('principal') ?? '',
    purpose: str('purpose'),
    channel: str('channel'),
    ref: str('ref') ?? '',
    eventTime: num('eventTime'),
    expireTime: num('expireTime'),
    noticeSha256: str('noticeSha256'),
  };
}

interface Lookup {
  identifier: SubjectIdentifier;
  expires: number;
}

const IDENTIFIER_KINDS: Record<string, (v: string) => SubjectIdentifier['kind']> = {
  phone: (v) => ({ $case: 'phoneNumber', value: v }),
  email: (v) => ({ $case: 'email', value: v }),
  customer: (v) => ({ $case: 'customerId', value: v }),
};

export const CHANNEL_OPTIONS = ['whatsapp', 'sms', 'email', 'push', 'voice'];

const label = (e: Record<number, string>, v: number, prefix: string) => (e[v] ?? 'UNSPECIFIED').replace(prefix, '').toLowerCase().replace(/_/g, ' ');
export const kindLabel = (k: ConsentEventKind) => label(ConsentEventKind, k, 'CONSENT_EVENT_KIND_');
export const channelLabel = (c: Channel) => label(Channel, c, 'CHANNEL_');
const methodLabel = (m: CollectionMethod) => label(CollectionMethod, m, 'COLLECTION_METHOD_');
const last = (name: string) => name.slice(name.lastIndexOf('/') + 1);

export function auditorPages(app: FastifyInstance, ctx: ConsolePageContext): void {
  const { consent, audit, keys, purposes } = ctx.api;

  /** Identifiers looked up, per signed-in person and subject: never written anywhere. */
  const lookups = new Map<string, Lookup>();
  const key = (credential: Credential, tenant: string, subject: string) => `${credential.who}\u0000${tenant}\u0000${subject}`;
  const remembered = (credential: Credential, tenant: string, subject: string): SubjectIdentifier | undefined => {
    const now = Date.now();
    for (const [k, v] of lookups) if (v.expires < now) lookups.delete(k);
    return lookups.get(key(credential, tenant, subject))?.identifier;
  };

  const html = (reply: FastifyReply, request: FastifyRequest, template: string, data: Record<string, unknown>, code = 200) =>
    reply.code(code).type('text/html').send(ctx.views.page(template, ctx.credential(request), data));
  const apiFailure = (reply: FastifyReply, request: FastifyRequest, tenant: string, err: unknown, heading: string) => {
    if (!(err instanceof ApiError)) throw err;
    return html(reply, request, 'auditor-error', { title: heading, heading, tenant, error: err }, httpStatusOf(err));
  };
  const jwksOf = async (tenant: string, credential: Credential) => (await ctx.api.call(keys, keys.getPublicKeys, { name: `tenants/${tenant}` }, credential)).jwks;

  app.get<{ Params: { tenant: string } }>('/tenants/:tenant/audit', { schema: { params: { type: 'object', properties: { tenant: TENANT }, required: ['tenant'] } } }, async (request, reply) =>
    html(reply, request, 'auditor-find', { title: 'Find a person', tenant: request.params.tenant, csrfToken: reply.generateCsrf({ userInfo: ctx.credential(request).who }) }),
  );

  // The lookup: the identifier comes in the body only, and the answer is a redirect to the opaque subject.
  app.post<{ Params: { tenant: string }; Body: { kind?: string; identifier?: string } }>(
    '/tenants/:tenant/audit/find',
    { preHandler: ctx.csrf, schema: { params: { type: 'object', properties: { tenant: TENANT }, required: ['tenant'] } } },
    async (request, reply) => {
      const { tenant } = request.params;
      const credential = ctx.credential(request);
      // Own keys only: a form's kind of "__proto__" or "toString" names no identifier kind.
      const asked = request.body?.kind ?? '';
      const make = Object.hasOwn(IDENTIFIER_KINDS, asked) ? IDENTIFIER_KINDS[asked] : undefined;
      const value = (request.body?.identifier ?? '').trim();
      const again = (message: string, code: number) =>
        html(reply, request, 'auditor-find', { title: 'Find a person', tenant, csrfToken: reply.generateCsrf({ userInfo: ctx.credential(request).who }), message }, code);
      if (!make || !value) return again('Choose the kind of identifier and type it.', 400);
      const identifier: SubjectIdentifier = { kind: make(value), defaultRegion: '' };
      try {
        const first = await ctx.api.call(consent, consent.listConsentEvents, { parent: `tenants/${tenant}`, subjectIdentifier: identifier, purpose: '', channel: 0, pageSize: 1, pageToken: '' }, credential);
        const subject = first.consentEvents[0]?.subject;
        // Not echoed: the message names no identifier.
        if (!subject) return again('No person with recorded consent events has this identifier in this tenant (or they were erased).', 404);
        const k = key(credential, tenant, last(subject));
        lookups.delete(k);
        if (lookups.size >= MAX_LOOKUPS) lookups.delete(lookups.keys().next().value!);
        lookups.set(k, { identifier, expires: Date.now() + LOOKUP_TTL_MS });
        return reply.redirect(`/tenants/${tenant}/subjects/${last(subject)}`, 303);
      } catch (err) {
        return apiFailure(reply, request, tenant, err, 'Lookup refused');
      }
    },
  );

  const subjectSchema = { params: { type: 'object', properties: { tenant: TENANT, subject: SUBJECT }, required: ['tenant', 'subject'] } };

  /**
   * The subject's audit entries, oldest first, parsed: what the page knows without an identifier.
   * Entries hold no personal data (opaque ids, kinds, times, hashes) and outlive an erasure.
   */
  const subjectEntries = async (tenant: string, subject: string, credential: Credential): Promise<{ entries: SubjectEntry[]; truncated: boolean }> => {
    const entries: SubjectEntry[] = [];
    let startIndex = 0;
    for (let i = 0; i < MAX_ENTRY_PAGES; i++) {
      const page = await ctx.api.call(
        audit,
        audit.listAuditEntries,
        ListAuditEntriesRequest.fromPartial({ parent: `tenants/${tenant}`, subject: `tenants/${tenant}/subjects/${subject}`, startIndex, pageSize: ENTRY_PAGE }),
        credential,
      );
      for (const e of page.entries) entries.push(parseEntry(Number(e.index), e.leafHash, e.entryJson));
      if (page.entries.length < ENTRY_PAGE) return { entries, truncated: false };
      startIndex = Number(page.nextIndex);
    }
    return { entries, truncated: true };
  };

  const timelinePage = async (
    request: FastifyRequest<{ Params: { tenant: string; subject: string } }>,
    reply: FastifyReply,
    explained?: { question: Record<string, string>; result?: VerifiedExplanation; failure?: string; response?: ExplainDecisionResponse },
  ) => {
    const { tenant, subject } = request.params;
    const credential = ctx.credential(request);
    try {
      // 1. The audit log, by opaque subject id: kinds, purposes, channels, times, erasure, rights.
      const { entries, truncated } = await subjectEntries(tenant, subject, credential);
      if (entries.length === 0) {
        return html(reply, request, 'auditor-find', { title: 'Find a person', tenant, csrfToken: reply.generateCsrf({ userInfo: credential.who }), message: 'No audit entry names this subject in this tenant.' }, 404);
      }
      const erasure = entries.find((e) => e.type === 'SUBJECT_ERASED');
      const erasedAt = erasure?.time;
      const restrictions = new Map<string, { name: string; from: number; to?: number; noticeRecorded?: number }>();
      const objections: Array<{ time: number; ref: string }> = [];
      const others: SubjectEntry[] = [];
      for (const e of entries) {
        if (e.type === 'RESTRICTION_PLACED') restrictions.set(e.ref, { name: e.ref, from: e.time });
        else if (e.type === 'RESTRICTION_LIFTED' && restrictions.has(e.ref)) restrictions.get(e.ref)!.to = e.time;
        else if (e.type === 'RESTRICTION_NOTICE_RECORDED' && restrictions.has(e.ref)) restrictions.get(e.ref)!.noticeRecorded = e.time;
        else if (e.type === 'SUBJECT_OBJECTED') objections.push({ time: e.time, ref: e.ref });
        else if (!e.type.startsWith('CONSENT_EVENT_') && e.type !== 'SUBJECT_ERASED') others.push(e);
      }
      const eventEntries = entries.filter((e) => e.type.startsWith('CONSENT_EVENT_'));

      // 2. Provenance (method, evidence, collector, notice version, jurisdiction) is in the event
      // rows, listed by identifier only: shown while this person's own lookup lasts, never after
      // an erasure (the identifiers are gone and the contents shredded).
      const identifier = erasedAt === undefined ? remembered(credential, tenant, subject) : undefined;
      const details = new Map<string, ConsentEvent>();
      if (identifier) {
        let pageToken = '';
        for (let i = 0; i < MAX_EVENT_PAGES; i++) {
          const page = await ctx.api.call(consent, consent.listConsentEvents, { parent: `tenants/${tenant}`, subjectIdentifier: identifier, purpose: '', channel: 0, pageSize: 500, pageToken }, credential);
          for (const e of page.consentEvents) if (last(e.subject) === subject) details.set(last(e.name), e);
          pageToken = page.nextPageToken;
          if (!pageToken) break;
        }
      }

      // 3. Notice texts (ListNotices, open to every role): by the version an event names, or else
      // by the text hash its audit entry carries, so an erased person's notices are still shown.
      const notices = new Map<string, Notice>();
      const byHash = new Map<string, Notice>();
      for (const purpose of new Set(eventEntries.filter((e) => e.noticeSha256 && e.purpose && e.purpose !== '-').map((e) => e.purpose!))) {
        const listed = await ctx.api.call(purposes, purposes.listNotices, { parent: `tenants/${tenant}/purposes/${purpose}`, pageSize: 100, pageToken: '' }, credential).catch(() => ({ notices: [] as Notice[] }));
        for (const n of listed.notices) {
          notices.set(n.name, n);
          if (!byHash.has(n.textSha256)) byHash.set(n.textSha256, n);
        }
      }

      // 4. Service windows: the rules apply the window length in force at the moment asked about
      // (docs/consent-rules.md). The API gives today's length (GetTenant); the log says whether the
      // settings changed since the first inbound message, i.e. whether today's length is the one
      // that applied while those windows were open. A role that may not read settings sees none.
      const inbound = eventEntries.filter((e) => e.type === 'CONSENT_EVENT_INBOUND_MESSAGE');
      let windowMs = 0;
      let window: { hours: number; changesSince: number } | undefined;
      if (inbound.length > 0) {
        windowMs = await ctx.api
          .call(ctx.api.tenants, ctx.api.tenants.getTenant, { name: `tenants/${tenant}` }, credential)
          .then((r) => Number(r.tenant?.settings?.serviceWindow?.seconds ?? 0) * 1000)
          .catch(() => 0);
        if (windowMs > 0) {
          const since = Math.min(...inbound.map((e) => e.eventTime ?? e.time));
          const changes = await ctx.api.call(
            audit,
            audit.listAuditEntries,
            ListAuditEntriesRequest.fromPartial({ parent: `tenants/${tenant}`, entryTypes: ['TENANT_SETTINGS_UPDATED'], startTime: new Date(since), pageSize: ENTRY_PAGE }),
            credential,
          );
          window = { hours: windowMs / 3_600_000, changesSince: changes.entries.length };
        }
      }

      const rows: TimelineEvent[] = eventEntries.map((a) => {
        const e = details.get(a.ref);
        const kind = a.type.replace('CONSENT_EVENT_', '').toLowerCase().replace(/_/g, ' ');
        const eventTime = a.eventTime ?? a.time;
        const notice = e?.notice || (a.noticeSha256 ? byHash.get(a.noticeSha256)?.name : undefined);
        return {
          id: a.ref,
          kind,
          purpose: !a.purpose || a.purpose === '-' ? 'all purposes' : a.purpose,
          channel: (a.channel ?? 'any').toLowerCase(),
          eventTime,
          recordTime: a.time,
          expireTime: a.expireTime,
          windowEnd: a.type === 'CONSENT_EVENT_INBOUND_MESSAGE' && windowMs > 0 ? eventTime + windowMs : undefined,
          auditIndex: a.index,
          leafHash: a.leafHash,
          shredded: erasedAt !== undefined && a.time <= erasedAt,
          method: e ? methodLabel(e.method) : undefined,
          principal: a.principal,
          collectedBy: e?.collectedBy,
          notice,
          noticeSha256: a.noticeSha256 ?? '',
          noticeLanguage: e?.noticeLanguage || (notice ? notices.get(notice)?.language ?? byHash.get(a.noticeSha256 ?? '')?.language : undefined),
          noticeText: notice ? notices.get(notice)?.text : undefined,
          evidence: e ? (Object.entries(e.evidence ?? {}).filter(([, v]) => v !== '' && v !== undefined) as Array<[string, string]>) : undefined,
          jurisdiction: e?.jurisdiction,
        };
      });
      rows.sort((a, b) => a.eventTime - b.eventTime || (a.auditIndex ?? 0) - (b.auditIndex ?? 0));
      const restrictionList = [...restrictions.values()];
      return html(reply, request, 'auditor-subject', {
        title: 'Consent timeline',
        tenant,
        subject,
        events: rows,
        // A restriction never lifted ends, in the picture, with the person: nothing is processed after an erasure.
        svg: timelineSvg(rows, ctx.now(), { erasedAt, restrictions: restrictionList.map((r) => ({ from: r.from, to: r.to ?? erasedAt })), objections: objections.map((o) => o.time) }),
        erasure: erasure ? { time: erasure.time, index: erasure.index, leafHash: erasure.leafHash, principal: erasure.principal } : undefined,
        restrictions: restrictionList,
        objections,
        others,
        truncated,
        window,
        lookup: identifier !== undefined,
        csrfToken: reply.generateCsrf({ userInfo: credential.who }),
        channels: CHANNEL_OPTIONS,
        explained,
      }, explained?.failure && !explained.result && !explained.response ? 400 : 200);
    } catch (err) {
      return apiFailure(reply, request, tenant, err, 'Timeline refused');
    }
  };

  app.get<{ Params: { tenant: string; subject: string } }>('/tenants/:tenant/subjects/:subject', { schema: subjectSchema }, (request, reply) => timelinePage(request, reply));

  // "Was a message allowed at time T, and why": ExplainDecision, verified as consentctl audit explain does.
  app.post<{ Params: { tenant: string; subject: string }; Body: { purpose?: string; channel?: string; at?: string } }>(
    '/tenants/:tenant/subjects/:subject/explain',
    { preHandler: ctx.csrf, schema: subjectSchema },
    async (request, reply) => {
      const { tenant, subject } = request.params;
      const credential = ctx.credential(request);
      const question = { purpose: (request.body?.purpose ?? '').trim(), channel: request.body?.channel ?? '', at: request.body?.at ?? '' };
      const identifier = remembered(credential, tenant, subject);
      // ExplainDecision asks by identifier: without this person's own lookup there is none to ask with.
      if (!identifier) return timelinePage(request, reply, { question, failure: 'ExplainDecision asks by identifier: find the person by an identifier first (an erased person has none left).' });
      const sendChannel = sendChannelOf(question.channel);
      const at = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(question.at) ? Date.parse(`${question.at}:00Z`) : NaN;
      if (!sendChannel || !/^[a-z][a-z0-9-]{0,62}$/.test(question.purpose) || Number.isNaN(at)) {
        return timelinePage(request, reply, { question, failure: 'Give a purpose id, a channel and a time (UTC).' });
      }
      let response: ExplainDecisionResponse;
      try {
        response = await ctx.api.call(
          audit,
          audit.explainDecision,
          { parent: `tenants/${tenant}`, query: { subjectIdentifier: identifier, purpose: `tenants/${tenant}/purposes/${question.purpose}`, category: 0, channel: Channel[`CHANNEL_${sendChannel}` as keyof typeof Channel] as Channel, at: new Date(at) } },
          credential,
          30_000,
        );
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return timelinePage(request, reply, { question, failure: `The API refused: ${err.statusName}${err.reason ? ` (${err.reason})` : ''}: ${err.message}` });
      }
      // ExplainDecision asks by identifier, which names whoever holds it now: after a reassignment
      // or rectification that is someone else, whose decision must not appear on this person's page.
      if (response.subject !== '' && response.subject !== `tenants/${tenant}/subjects/${subject}`) {
        lookups.delete(key(credential, tenant, subject));
        return timelinePage(request, reply, {
          question,
          failure: "The identifier this person was looked up by no longer names them (it was reassigned or corrected since): the answer would be about someone else, so it is not shown. Find the person again by an identifier they hold now.",
        });
      }
      try {
        const jwks = await jwksOf(tenant, credential);
        const result = await verifyExplanation(response, jwks, { tenant, purposeId: question.purpose, channel: sendChannel });
        return timelinePage(request, reply, { question, result, response });
      } catch (err) {
        if (err instanceof VerificationFailure || err instanceof ApiError) return timelinePage(request, reply, { question, response, failure: err.message });
        throw err;
      }
    },
  );

  // The tenant's checkpoints, each signature verified, and a consistency check between two of them.
  app.get<{ Params: { tenant: string }; Querystring: { first?: string; second?: string } }>(
    '/tenants/:tenant/checkpoints',
    { schema: { params: { type: 'object', properties: { tenant: TENANT }, required: ['tenant'] }, querystring: { type: 'object', properties: { first: { type: 'string', pattern: '^[0-9]{0,15}$' }, second: { type: 'string', pattern: '^[0-9]{0,15}$' } } } } },
    async (request, reply) => {
      const { tenant } = request.params;
      const credential = ctx.credential(request);
      try {
        const jwks = await jwksOf(tenant, credential);
        const listed: Checkpoint[] = [];
        let pageToken = '';
        for (let i = 0; i < 10; i++) {
          const page = await ctx.api.call(audit, audit.listCheckpoints, { parent: `tenants/${tenant}`, pageSize: 100, pageToken }, credential);
          listed.push(...page.checkpoints);
          pageToken = page.nextPageToken;
          if (!pageToken) break;
        }
        const rows: Array<{ checkpoint: Checkpoint; verified?: VerifiedCheckpoint; failure?: string }> = [];
        for (const checkpoint of listed) {
          try {
            const verified = await verifyCheckpoint(checkpoint.signedCheckpoint, jwks);
            if (verified.tenant !== `tenants/${tenant}`) throw new VerificationFailure(`checkpoint is for ${verified.tenant}`);
            if (verified.treeSize !== Number(checkpoint.treeSize) || verified.rootHash !== checkpoint.rootHash) throw new VerificationFailure('the listed size or root differs from the signed one');
            rows.push({ checkpoint, verified });
          } catch (err) {
            if (!(err instanceof VerificationFailure)) throw err;
            rows.push({ checkpoint, failure: err.message });
          }
        }
        let consistency: { first: number; second: number; ok: boolean; message: string } | undefined;
        const { first, second } = request.query;
        if (first && second) {
          const a = rows.find((r) => r.verified?.treeSize === Number(first))?.verified;
          const b = rows.find((r) => r.verified?.treeSize === Number(second))?.verified;
          if (!a || !b) consistency = { first: Number(first), second: Number(second), ok: false, message: 'VERIFICATION FAILED: choose two listed checkpoints whose signatures verified' };
          else if (a.treeSize > b.treeSize) consistency = { first: a.treeSize, second: b.treeSize, ok: false, message: 'VERIFICATION FAILED: the first checkpoint must be the smaller tree' };
          else {
            const { hashes } = await ctx.api.call(audit, audit.getConsistencyProof, { parent: `tenants/${tenant}`, firstSize: a.treeSize, secondSize: b.treeSize }, credential);
            try {
              verifyConsistency(BigInt(a.treeSize), BigInt(b.treeSize), hashes.map((h) => Buffer.from(h, 'hex')), Buffer.from(a.rootHash, 'hex'), Buffer.from(b.rootHash, 'hex'));
              consistency = { first: a.treeSize, second: b.treeSize, ok: true, message: `Consistency proof verified: the log of ${b.treeSize} entries extends the log of ${a.treeSize} entries unchanged.` };
            } catch (err) {
              if (!(err instanceof ProofError)) throw err;
              consistency = { first: a.treeSize, second: b.treeSize, ok: false, message: `VERIFICATION FAILED: the log was rewritten since the checkpoint of size ${a.treeSize}: ${err.message}` };
            }
          }
        }
        return html(reply, request, 'auditor-checkpoints', { title: 'Checkpoints', tenant, rows, consistency, first, second });
      } catch (err) {
        return apiFailure(reply, request, tenant, err, 'Checkpoints refused');
      }
    },
  );
}
