import { createHash } from 'node:crypto';
import { decryptField } from '../crypto/field-cipher';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { deadlineInForce } from './deadlines';
import { scopeStatus } from './consent-rules';
import { DomainError, failedPrecondition, notFound } from '../shared/errors';
import { sha256Hex } from '../shared/hashing';
import { openEvent } from './event-codec';
import { ConsentEvent } from './model';
import { AuditTrail } from '../audit/audit-types';
import { ConsentRepository, PurposeRepository, RequestIdentifierRecord, SubjectRepository, SubjectRightsRepository } from './ports';
import { distinctSubjects, identifierLabel, RequestSubjectResolver, sameAsEarlier, unreachedOutcome } from './request-identifiers';
import { TransactionRunner } from '../shared/unit-of-work';
import { Principal } from './principal';
import { names } from './resource-names';
import { TenantService } from './tenant-service';

export const EXPORT_FORMAT = 'consent-ledger.export/v1';

/** One part of an export, in the order the stream sends them. */
export type ExportPart =
  | { kind: 'progress'; done: number; total: number }
  | { kind: 'package'; bytes: Buffer }
  | { kind: 'html'; bytes: Buffer }
  | { kind: 'manifest'; packageSha256: string; htmlSha256: string; events: number; signed: string };

/** Where parts go; `write` resolves when the receiver can take more (back-pressure). */
export interface ExportSink {
  write(part: ExportPart): Promise<void>;
}

const PAGE = 500;
const CHUNK = 64 * 1024;

/**
 * Builds the Art. 15 / Art. 20 export of one person as a stream: the JSON package and its HTML
 * rendering are written page by page of events, so memory stays bounded however long the
 * history is; both are hashed as they go and the manifest carrying the hashes is signed by the
 * tenant. Every export is recorded on the request (who, when, how many events).
 */
export class SubjectExporter {
  constructor(
    private readonly tx: TransactionRunner,
    private readonly rights: SubjectRightsRepository,
    private readonly subjects: SubjectRepository,
    private readonly consent: ConsentRepository,
    private readonly tenants: TenantService,
    private readonly keys: KeyManager,
    private readonly clock: Clock,
    private readonly audit: AuditTrail,
    private readonly resolver: RequestSubjectResolver,
    private readonly purposes: PurposeRepository,
  ) {}

  async export(principal: Principal, tenantId: string, requestId: string, sink: ExportSink): Promise<void> {
    authorizeTenant(principal, tenantId);
    const startedAt = this.clock.now();
    const request = await this.tx.write(async (tx) => {
      await this.tenants.require(tx, tenantId, false);
      const r = await this.rights.lockRequest(tx, tenantId, requestId);
      if (!r) throw notFound('REQUEST', `tenants/${tenantId}/requests/${requestId}`);
      const name = { request: `tenants/${tenantId}/requests/${requestId}` };
      // Only these kinds are exported: an OBJECTION in particular is completed without identity
      // verification (Art. 21(3)) and must never lead to the person's data.
      if (r.kind !== 'ACCESS' && r.kind !== 'PORTABILITY') throw failedPrecondition('NOT_AN_EXPORT', `this is an ${r.kind} request; only ACCESS and PORTABILITY requests are exported`, name);
      if (r.state === 'RECEIVED') throw failedPrecondition('IDENTITY_NOT_VERIFIED', 'verify the identity of the requester first (VerifyIdentity)', name);
      if (r.state === 'REJECTED') throw failedPrecondition('INVALID_TRANSITION', 'the request was rejected', name);
      // Every person the request reaches now (found since, linked since); erased ones are named
      // in the package as erased, and a request whose every person was erased has nothing left.
      const rows = r.state === 'VERIFIED' ? await this.resolver.refresh(tx, r, startedAt) : ((await this.rights.requestIdentifiers(tx, [r.id])).get(r.id) ?? []);
      const erased = new Set<string>();
      const objections = new Map<string, number>();
      for (const row of distinctSubjects(rows)) {
        const subject = await this.subjects.lock(tx, tenantId, row.subjectId);
        if (!subject || subject.erased) erased.add(row.subjectId);
        else if (subject.objectedAt !== undefined) objections.set(row.subjectId, subject.objectedAt);
      }
      const found = distinctSubjects(rows);
      if (found.length > 0 && found.every((row) => erased.has(row.subjectId))) {
        if (r.state === 'COMPLETED') throw failedPrecondition('SUBJECT_ERASED', 'the person was erased after this request was made; nothing is left to export', name);
        // Answered: the controller holds nothing of the person any more (Art. 15(1) asks for
        // that confirmation too). Left VERIFIED or IN_PROGRESS, the request could never be
        // closed (a rejection is refused once it is in progress) and turned overdue for good.
        await this.rights.updateRequest(tx, r.id, { state: 'COMPLETED', updatedAt: startedAt });
        const note = 'nothing left to export: every person the request reached was erased';
        await this.rights.addTransition(tx, { requestId: r.id, fromState: r.state, toState: 'COMPLETED', principal: principal.id, at: startedAt, note });
        await this.audit.append(tx, tenantId, { type: 'REQUEST_COMPLETED', time: startedAt, principal: principal.id, ref: r.id, payloadSha256: sha256Hex(note) });
        // null: every person the request reaches was erased; the request is closed, then SUBJECT_ERASED answered.
        return null;
      }
      if (r.state === 'VERIFIED') {
        await this.rights.updateRequest(tx, r.id, { state: 'IN_PROGRESS', updatedAt: startedAt });
        await this.rights.addTransition(tx, { requestId: r.id, fromState: 'VERIFIED', toState: 'IN_PROGRESS', principal: principal.id, at: startedAt, note: 'export started' });
        await this.audit.append(tx, tenantId, { type: 'REQUEST_IN_PROGRESS', time: startedAt, principal: principal.id, ref: r.id, subject: r.subjectId ?? undefined });
      }
      return { ...r, rows, erased, objections };
    });
    if (!request) {
      // Closed: its identifiers under which nothing was held no longer pair with the erased persons.
      const keyring = await this.keys.tenantKeyring(tenantId);
      await this.tx.write((tx) => this.rights.sealUnreachedIdentifiers(tx, requestId, (blindIndex) => this.keys.erasedReference(keyring, blindIndex)));
      throw failedPrecondition('SUBJECT_ERASED', 'the person was erased after this request was made; nothing is left to export (the request is completed with this note)', { request: `tenants/${tenantId}/requests/${requestId}` });
    }

    // The parts of the package: one per identifier, each person's data under the first
    // identifier that found them (the others say "same person as identifier N").
    const parts = request.rows.map((row) => partOf(tenantId, request.rows, row, request.erased));
    const exported = distinctSubjects(request.rows).filter((row) => !request.erased.has(row.subjectId));
    const facts = await this.facts(tenantId, exported, request.objections);
    const pkg = new HashedWriter(sink, 'package');
    const html = new HashedWriter(sink, 'html');
    await sink.write({ kind: 'progress', done: 0, total: facts.total * 2 });

    const head = {
      format: EXPORT_FORMAT,
      generatedAt: new Date(startedAt).toISOString(),
      tenant: names.tenant(tenantId),
      request: `tenants/${tenantId}/requests/${request.id}`,
      subject: exported[0] ? names.subject(tenantId, exported[0].subjectId) : null,
      parts,
      identifiers: facts.identifiers,
      consentState: facts.state,
      serviceWindows: facts.windows,
      requests: facts.requests,
      legalHolds: facts.holds,
      restrictions: facts.restrictions,
      objections: facts.objections,
      purposes: facts.purposes,
    };
    // The package is the head object with "consentEvents" streamed in as its last member.
    await pkg.write(JSON.stringify(head).slice(0, -1) + ',"consentEvents":[');
    let done = 0;
    let first = true;
    await this.eachEvent(tenantId, request.id, exported, async (event, row) => {
      await pkg.write((first ? '' : ',') + JSON.stringify({ ...eventJson(event), foundBy: row.position }));
      first = false;
      if (++done % PAGE === 0) await sink.write({ kind: 'progress', done, total: facts.total * 2 });
    });
    await pkg.write(']}');
    await pkg.flush();

    const purposeNames = new Map(facts.purposes.map((p) => [p.name, p.displayName]));
    await html.write(renderHead(head));
    let section: number | null = null;
    await this.eachEvent(tenantId, request.id, exported, async (event, row) => {
      if (section !== row.position) {
        await html.write(renderSection(row));
        section = row.position;
      }
      await html.write(renderEvent(event, purposeNames));
      if (++done % PAGE === 0) await sink.write({ kind: 'progress', done, total: facts.total * 2 });
    });
    await html.write('</tbody></table></body></html>\n');
    await html.flush();
    await sink.write({ kind: 'progress', done: facts.total * 2, total: facts.total * 2 });

    const manifest = {
      format: EXPORT_FORMAT,
      iss: names.tenant(tenantId),
      sub: head.subject,
      subjects: exported.map((row) => names.subject(tenantId, row.subjectId)),
      request: head.request,
      generatedAt: head.generatedAt,
      packageSha256: pkg.digest(),
      htmlSha256: html.digest(),
      events: facts.total,
    };
    const now = this.clock.now();
    const signed = await this.keys.sign(tenantId, manifest, 'export-manifest+jwt', now);
    await this.tx.write(async (tx) => {
      const current = await this.rights.lockRequest(tx, tenantId, request.id);
      if (!current) return;
      // An erasure that committed while the package was sent (eachEvent stops at its rows; one
      // after the last page is caught here): the export is not recorded as done.
      for (const row of exported) {
        const subject = await this.subjects.lock(tx, tenantId, row.subjectId);
        if (!subject || subject.erased) throw erasedDuringExport(tenantId, request.id);
      }
      if (current.state !== 'COMPLETED') await this.rights.updateRequest(tx, request.id, { state: 'COMPLETED', updatedAt: now });
      await this.rights.addTransition(tx, {
        requestId: request.id,
        fromState: current.state,
        toState: 'COMPLETED',
        principal: principal.id,
        at: now,
        note: `exported ${facts.total} events (package sha256 ${manifest.packageSha256.slice(0, 16)}…)`,
      });
      // Who read what: every export of personal data is in the audit log.
      for (const row of request.rows) {
        const part = parts.find((p) => p.position === row.position)!;
        await this.rights.updateRequestIdentifier(tx, request.id, row.position, { outcome: part.outcome });
      }
      // One entry per person whose data went out (each person's own history shows the export);
      // an export that found nobody is recorded once, without a subject.
      const subjects = [...new Set(exported.map((row) => row.subjectId))];
      for (const subject of subjects.length > 0 ? subjects : [undefined]) {
        await this.audit.append(tx, tenantId, { type: 'SUBJECT_EXPORTED', time: now, principal: principal.id, ref: request.id, subject, payloadSha256: manifest.packageSha256 });
      }
    });
    await sink.write({ kind: 'manifest', packageSha256: manifest.packageSha256, htmlSha256: manifest.htmlSha256, events: facts.total, signed });
  }

  /** Everything about the persons except the events (small), decrypted where it is personal data. */
  private async facts(tenantId: string, exported: Array<RequestIdentifierRecord & { subjectId: string }>, objections: Map<string, number>) {
    const result = {
      total: 0,
      identifiers: [] as Array<{ subject: string; kind: string; value: string }>,
      state: [] as Array<{ subject: string; purpose: string; channel: string; status: string }>,
      windows: [] as Array<{ subject: string; channel: string; lastInboundTime: string }>,
      requests: [] as Array<{
        subject: string;
        name: string;
        kind: string;
        state: string;
        receiveTime: string;
        dueTime: string;
        extensionReason: string | null;
        rejectionReason: string | null;
        history: Array<{ state: string; time: string; note: string }>;
      }>,
      holds: [] as Array<{ subject: string; name: string; ground: string; placeTime: string; releaseTime: string | null }>,
      restrictions: [] as Array<{ subject: string; name: string; ground: string; request: string; placeTime: string; notifyTime: string | null; liftTime: string | null; liftReason: string | null }>,
      objections: [] as Array<{ subject: string; objectTime: string }>,
      purposes: [] as Array<{ name: string; displayName: string; category: string; description: string; allowedWhileRestricted: boolean }>,
    };
    const purposeIds = new Set<string>();
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    for (const { subjectId } of exported) {
      const key = await this.keys.subjectKey(tenantId, subjectId);
      const subject = names.subject(tenantId, subjectId);
      await this.tx.read(async (tx) => {
        for (const r of await this.consent.identifiersOf(tx, tenantId, subjectId)) {
          const value = decryptField(key.key, { tenant: tenantId, subject: subjectId, table: 'subject_identifiers', column: 'value_ciphertext', row: `${r.kind}:${r.blindIndex}` }, r.valueCiphertext);
          result.identifiers.push({ subject, kind: r.kind, value });
        }
        const now = this.clock.now();
        const stateRows = (await this.consent.loadState(tx, tenantId, [subjectId])).get(subjectId) ?? { scopes: [], windows: [] };
        for (const st of stateRows.scopes) {
          result.state.push({ subject, purpose: names.purpose(tenantId, st.purposeId), channel: st.channel, status: scopeStatus(st, now) });
          purposeIds.add(st.purposeId);
        }
        for (const w of stateRows.windows) result.windows.push({ subject, channel: w.channel, lastInboundTime: new Date(w.lastInboundTime).toISOString() });
        // Art. 15(1): the person's own requests, with what was done and why (the steps, the reasons
        // for an extension or a rejection); the staff who took the steps are not named.
        const requests = await this.rights.requestsOfSubject(tx, tenantId, subjectId);
        const transitions = await this.rights.transitions(tx, requests.map((r) => r.id));
        for (const r of requests) {
          const receiveTime = new Date(r.receiveTime).toISOString();
          result.requests.push({
            subject,
            name: `tenants/${tenantId}/requests/${r.id}`,
            kind: r.kind,
            state: r.state,
            receiveTime,
            // The deadline in force: an extension the person was not told of in time does not hold.
            dueTime: new Date(deadlineInForce(r, this.clock.now())).toISOString(),
            extensionReason: r.extensionReason,
            rejectionReason: r.rejectionReason,
            history: (transitions.get(r.id) ?? []).map((t) => ({ state: t.toState, time: new Date(t.at).toISOString(), note: t.note })),
          });
        }
        for (const h of await this.rights.listHolds(tx, tenantId, { subjectId, includeReleased: true }, null, 1000)) {
          const releaseTime = h.releasedAt ? new Date(h.releasedAt).toISOString() : null;
          result.holds.push({ subject, name: `tenants/${tenantId}/legalHolds/${h.id}`, ground: h.ground, placeTime: new Date(h.placedAt).toISOString(), releaseTime });
        }
        // Art. 18 and Art. 21: the person's restrictions (in force and lifted) and standing objection.
        for (const r of await this.rights.listRestrictions(tx, tenantId, { subjectId, includeLifted: true }, null, 1000)) {
          const request = `tenants/${tenantId}/requests/${r.requestId}`;
          result.restrictions.push({ subject, name: `tenants/${tenantId}/restrictions/${r.id}`, ground: r.ground, request, placeTime: iso(r.placedAt)!, notifyTime: iso(r.notifiedAt), liftTime: iso(r.liftedAt), liftReason: r.liftReason });
        }
        const objectedAt = objections.get(subjectId);
        if (objectedAt !== undefined) result.objections.push({ subject, objectTime: iso(objectedAt)! });
        result.total += await this.consent.countEvents(tx, tenantId, subjectId);
      });
    }
    // Art. 15(1)(a): the purposes the person's data is processed for, as the tenant describes them.
    await this.tx.read(async (tx) => {
      for (const id of [...purposeIds].filter((p) => p !== '-').sort()) {
        const p = await this.purposes.find(tx, tenantId, id);
        if (p) result.purposes.push({ name: names.purpose(tenantId, p.id), displayName: p.displayName, category: p.category, description: p.description, allowedWhileRestricted: p.allowedWhileRestricted });
      }
    });
    return result;
  }

  /** Calls `visit` for each event of each person, person by person, oldest first, one page in memory at a time. */
  private async eachEvent(
    tenantId: string,
    requestId: string,
    exported: Array<RequestIdentifierRecord & { subjectId: string }>,
    visit: (event: ConsentEvent, row: RequestIdentifierRecord) => Promise<void>,
  ): Promise<void> {
    for (const row of exported) {
      const key = await this.keys.subjectKey(tenantId, row.subjectId);
      let after = 0;
      for (;;) {
        const page = await this.tx.read((tx) => this.consent.list(tx, tenantId, { subjectId: row.subjectId }, after, PAGE));
        // The person was erased meanwhile: nothing more of theirs goes out, from the cached key either.
        if (page.some((r) => r.subjectErased)) throw erasedDuringExport(tenantId, requestId);
        for (const r of page) await visit(openEvent(r.event, r.event.evidenceCiphertext === null ? null : key), row);
        if (page.length < PAGE) break;
        after = page[page.length - 1].seq;
      }
    }
  }
}

function erasedDuringExport(tenantId: string, requestId: string): DomainError {
  return failedPrecondition('SUBJECT_ERASED', 'a person of this request was erased while the export ran: the export stopped and is not complete; export again for what is left', { request: `tenants/${tenantId}/requests/${requestId}` });
}

/** One identifier's part of the package: what it found, labelled by position and kind. */
function partOf(tenantId: string, rows: RequestIdentifierRecord[], row: RequestIdentifierRecord, erased: Set<string>) {
  const earlier = sameAsEarlier(rows, row);
  const outcome = row.subjectId === null ? unreachedOutcome(row) : earlier ? earlier : erased.has(row.subjectId) ? 'erased: nothing left to export' : 'exported';
  return {
    position: row.position,
    label: identifierLabel(row),
    identifierKind: row.identifierKind,
    subject: row.subjectId ? names.subject(tenantId, row.subjectId) : null,
    viaLink: row.viaLink,
    outcome,
  };
}

/** Buffers text into chunks of at most 64 KiB for the sink, hashing every byte. */
class HashedWriter {
  private readonly hash = createHash('sha256');
  private buffered: Buffer[] = [];
  private size = 0;

  constructor(
    private readonly sink: ExportSink,
    private readonly kind: 'package' | 'html',
  ) {}

  async write(text: string): Promise<void> {
    const bytes = Buffer.from(text, 'utf8');
    this.hash.update(bytes);
    this.buffered.push(bytes);
    this.size += bytes.length;
    if (this.size >= CHUNK) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.size === 0) return;
    const all = Buffer.concat(this.buffered);
    this.buffered = [];
    this.size = 0;
    for (let i = 0; i < all.length; i += CHUNK) await this.sink.write({ kind: this.kind, bytes: all.subarray(i, i + CHUNK) });
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

function eventJson(e: ConsentEvent) {
  return {
    name: names.consentEvent(e.tenantId, e.subjectId, e.id),
    kind: e.kind,
    purpose: names.purpose(e.tenantId, e.purposeId),
    channel: e.channel,
    eventTime: new Date(e.eventTime).toISOString(),
    recordTime: new Date(e.recordTime).toISOString(),
    method: e.method,
    notice: e.notice ? { name: names.notice(e.tenantId, e.notice.purposeId, e.notice.version), textSha256: e.notice.textSha256, language: e.notice.language } : null,
    recordedBy: e.principal,
    requestId: e.requestId,
    evidence: e.evidence,
    lawfulBasis: e.lawfulBasis,
    jurisdiction: e.jurisdiction || null,
    expireTime: e.expireTime ? new Date(e.expireTime).toISOString() : null,
  };
}

const escape = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A table of rows (cells already text); "None." when there are none. */
function table(headings: string[], rows: Array<Array<string | null>>): string {
  if (rows.length === 0) return '<p>None.</p>';
  const head = `<table><thead><tr>${headings.map((h) => `<th>${escape(h)}</th>`).join('')}</tr></thead><tbody>`;
  return [head, ...rows.map((r) => `<tr>${r.map((c) => `<td>${escape(c ?? '')}</td>`).join('')}</tr>`), '</tbody></table>'].join('\n');
}

/** Everything of the package but the events, for people: the same content as package.json. */
function renderHead(head: {
  tenant: string;
  request: string;
  subject: string | null;
  generatedAt: string;
  identifiers: Array<{ kind: string; value: string }>;
  parts: Array<{ label: string; outcome: string }>;
  purposes: Array<{ name: string; displayName: string; category: string; description: string; allowedWhileRestricted: boolean }>;
  consentState: Array<{ purpose: string; channel: string; status: string }>;
  serviceWindows: Array<{ channel: string; lastInboundTime: string }>;
  objections: Array<{ objectTime: string }>;
  restrictions: Array<{ name: string; ground: string; placeTime: string; notifyTime: string | null; liftTime: string | null; liftReason: string | null }>;
  legalHolds: Array<{ name: string; ground: string; placeTime: string; releaseTime: string | null }>;
  requests: Array<{ name: string; kind: string; state: string; receiveTime: string; dueTime: string; extensionReason: string | null; rejectionReason: string | null }>;
}): string {
  const purposeName = new Map(head.purposes.map((p) => [p.name, p.displayName]));
  const purposeLabel = (name: string) => (name.endsWith('/purposes/-') ? 'all purposes' : purposeName.get(name) ?? name);
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Your data</title>',
    '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}</style></head><body>',
    `<h1>The data ${escape(head.tenant)} holds about you</h1>`,
    `<p>Request ${escape(head.request)}, generated ${escape(head.generatedAt)}.</p>`,
    '<h2>How we know you</h2><ul>',
    ...head.identifiers.map((i) => `<li>${escape(i.kind)}: ${escape(i.value)}</li>`),
    '</ul><h2>What each identifier of your request found</h2><ul>',
    ...head.parts.map((p) => `<li>${escape(p.label)}: ${escape(p.outcome)}</li>`),
    '</ul><h2>What your data is used for</h2>',
    table(['Purpose', 'Kind', 'Description', 'Also while processing is restricted'], head.purposes.map((p) => [p.displayName || p.name, p.category, p.description, p.allowedWhileRestricted ? 'yes' : 'no'])),
    '<h2>Your consents now</h2>',
    table(['Purpose', 'Channel', 'Status'], head.consentState.map((s) => [purposeLabel(s.purpose), s.channel, s.status])),
    '<h2>Your last messages to us (customer-service window)</h2>',
    table(['Channel', 'Last message'], head.serviceWindows.map((w) => [w.channel, w.lastInboundTime])),
    '<h2>Your objection to direct marketing</h2>',
    table(['Since'], head.objections.map((o) => [o.objectTime])),
    '<h2>Restrictions of processing</h2>',
    table(['Restriction', 'Ground', 'Placed', 'You were told', 'Lifted', 'Why lifted'], head.restrictions.map((r) => [r.name, r.ground, r.placeTime, r.notifyTime, r.liftTime, r.liftReason])),
    '<h2>Legal holds</h2>',
    table(['Hold', 'Ground', 'Placed', 'Released'], head.legalHolds.map((h) => [h.name, h.ground, h.placeTime, h.releaseTime])),
    '<h2>Your requests</h2>',
    table(['Request', 'Kind', 'State', 'Received', 'Due', 'Extended because', 'Rejected because'], head.requests.map((r) => [r.name, r.kind, r.state, r.receiveTime, r.dueTime, r.extensionReason, r.rejectionReason])),
    '<h2>Your consent history</h2><table><thead><tr><th>When</th><th>What</th><th>Purpose</th><th>Channel</th><th>How</th><th>Notice</th><th>Evidence</th></tr></thead><tbody>',
  ].join('\n');
}

/** The heading row of the events one identifier found. */
function renderSection(row: RequestIdentifierRecord): string {
  return `<tr><th colspan="7">Found by ${escape(identifierLabel(row))}</th></tr>\n`;
}

function renderEvent(e: ConsentEvent, purposeNames: Map<string, string>): string {
  const evidence = Object.entries(e.evidence)
    .filter(([, v]) => v)
    .map(([k, v]) => `${escape(k)}: ${escape(v)}`)
    .join('<br>');
  const notice = e.notice ? `v${e.notice.version} (${escape(e.notice.language)}, sha256 ${escape(e.notice.textSha256.slice(0, 12))}…)` : '';
  return `<tr><td>${escape(new Date(e.eventTime).toISOString())}</td><td>${escape(e.kind)}</td><td>${escape(e.purposeId === '-' ? 'all purposes' : purposeNames.get(names.purpose(e.tenantId, e.purposeId)) || e.purposeId)}</td><td>${escape(e.channel)}</td><td>${escape(e.method)}</td><td>${notice}</td><td>${evidence}</td></tr>\n`;
}
