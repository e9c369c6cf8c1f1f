import { createHash } from 'node:crypto';
import { decryptField } from '../crypto/field-cipher';
import { KeyManager } from '../crypto/key-manager';
import { authorizeTenant } from './authorization';
import { Clock } from './clock';
import { scopeStatus } from './consent-rules';
import { failedPrecondition, notFound } from '../shared/errors';
import { openEvent } from './event-codec';
import { ConsentEvent } from './model';
import { AuditTrail } from '../audit/audit-types';
import { ConsentRepository, SubjectRepository, SubjectRequestRecord, SubjectRightsRepository } from './ports';
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
      if (r.subjectId) {
        const subject = await this.subjects.lock(tx, tenantId, r.subjectId);
        if (!subject || subject.erased) throw failedPrecondition('SUBJECT_ERASED', 'the person was erased after this request was made; nothing is left to export', name);
      }
      if (r.state === 'VERIFIED') {
        await this.rights.updateRequest(tx, r.id, { state: 'IN_PROGRESS', updatedAt: startedAt });
        await this.rights.addTransition(tx, { requestId: r.id, fromState: 'VERIFIED', toState: 'IN_PROGRESS', principal: principal.id, at: startedAt, note: 'export started' });
        await this.audit.append(tx, tenantId, { type: 'REQUEST_IN_PROGRESS', time: startedAt, principal: principal.id, ref: r.id, subject: r.subjectId ?? undefined });
      }
      return r;
    });

    const facts = await this.facts(request);
    const pkg = new HashedWriter(sink, 'package');
    const html = new HashedWriter(sink, 'html');
    await sink.write({ kind: 'progress', done: 0, total: facts.total * 2 });

    const head = {
      format: EXPORT_FORMAT,
      generatedAt: new Date(startedAt).toISOString(),
      tenant: names.tenant(tenantId),
      request: `tenants/${tenantId}/requests/${request.id}`,
      subject: request.subjectId ? names.subject(tenantId, request.subjectId) : null,
      identifiers: facts.identifiers,
      consentState: facts.state,
      serviceWindows: facts.windows,
      requests: facts.requests,
      legalHolds: facts.holds,
    };
    // The package is the head object with "consentEvents" streamed in as its last member.
    await pkg.write(JSON.stringify(head).slice(0, -1) + ',"consentEvents":[');
    let done = 0;
    let first = true;
    await this.eachEvent(request, async (event) => {
      await pkg.write((first ? '' : ',') + JSON.stringify(eventJson(event)));
      first = false;
      if (++done % PAGE === 0) await sink.write({ kind: 'progress', done, total: facts.total * 2 });
    });
    await pkg.write(']}');
    await pkg.flush();

    await html.write(renderHead(head));
    await this.eachEvent(request, async (event) => {
      await html.write(renderEvent(event));
      if (++done % PAGE === 0) await sink.write({ kind: 'progress', done, total: facts.total * 2 });
    });
    await html.write('</tbody></table></body></html>\n');
    await html.flush();
    await sink.write({ kind: 'progress', done: facts.total * 2, total: facts.total * 2 });

    const manifest = {
      format: EXPORT_FORMAT,
      iss: names.tenant(tenantId),
      sub: head.subject,
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
      await this.audit.append(tx, tenantId, { type: 'SUBJECT_EXPORTED', time: now, principal: principal.id, ref: request.id, subject: request.subjectId ?? undefined, payloadSha256: manifest.packageSha256 });
    });
    await sink.write({ kind: 'manifest', packageSha256: manifest.packageSha256, htmlSha256: manifest.htmlSha256, events: facts.total, signed });
  }

  /** Everything about the person except the events (small), decrypted where it is personal data. */
  private async facts(request: SubjectRequestRecord) {
    const tenantId = request.tenantId;
    if (!request.subjectId) return { total: 0, identifiers: [], state: [], windows: [], requests: [], holds: [] };
    const subjectId = request.subjectId;
    const key = await this.keys.subjectKey(tenantId, subjectId);
    return this.tx.read(async (tx) => {
      const rows = await this.consent.identifiersOf(tx, tenantId, subjectId);
      const identifiers = rows.map((r) => ({
        kind: r.kind,
        value: decryptField(key.key, { tenant: tenantId, subject: subjectId, table: 'subject_identifiers', column: 'value_ciphertext', row: `${r.kind}:${r.blindIndex}` }, r.valueCiphertext),
      }));
      const now = this.clock.now();
      const stateRows = (await this.consent.loadState(tx, tenantId, [subjectId])).get(subjectId) ?? { scopes: [], windows: [] };
      const requests = await this.rights.requestsOfSubject(tx, tenantId, subjectId);
      const holds = await this.rights.listHolds(tx, tenantId, { subjectId, includeReleased: true }, null, 1000);
      return {
        total: await this.consent.countEvents(tx, tenantId, subjectId),
        identifiers,
        state: stateRows.scopes.map((s) => ({ purpose: names.purpose(tenantId, s.purposeId), channel: s.channel, status: scopeStatus(s, now) })),
        windows: stateRows.windows.map((w) => ({ channel: w.channel, lastInboundTime: new Date(w.lastInboundTime).toISOString() })),
        requests: requests.map((r) => ({ name: `tenants/${tenantId}/requests/${r.id}`, kind: r.kind, state: r.state, receiveTime: new Date(r.receiveTime).toISOString(), dueTime: new Date(r.dueTime).toISOString() })),
        holds: holds.map((h) => ({ name: `tenants/${tenantId}/legalHolds/${h.id}`, ground: h.ground, placeTime: new Date(h.placedAt).toISOString(), releaseTime: h.releasedAt ? new Date(h.releasedAt).toISOString() : null })),
      };
    });
  }

  /** Calls `visit` for each event of the subject, oldest first, one page in memory at a time. */
  private async eachEvent(request: SubjectRequestRecord, visit: (event: ConsentEvent) => Promise<void>): Promise<void> {
    if (!request.subjectId) return;
    const key = await this.keys.subjectKey(request.tenantId, request.subjectId);
    let after = 0;
    for (;;) {
      const page = await this.tx.read((tx) => this.consent.list(tx, request.tenantId, { subjectId: request.subjectId! }, after, PAGE));
      for (const row of page) await visit(openEvent(row.event, row.event.evidenceCiphertext === null ? null : key));
      if (page.length < PAGE) return;
      after = page[page.length - 1].seq;
    }
  }
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
    evidence: e.evidence,
    lawfulBasis: e.lawfulBasis,
    jurisdiction: e.jurisdiction || null,
    expireTime: e.expireTime ? new Date(e.expireTime).toISOString() : null,
  };
}

const escape = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function renderHead(head: { tenant: string; request: string; subject: string | null; generatedAt: string; identifiers: Array<{ kind: string; value: string }> }): string {
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Your data</title>',
    '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}</style></head><body>',
    `<h1>The data ${escape(head.tenant)} holds about you</h1>`,
    `<p>Request ${escape(head.request)}, generated ${escape(head.generatedAt)}.</p>`,
    '<h2>How we know you</h2><ul>',
    ...head.identifiers.map((i) => `<li>${escape(i.kind)}: ${escape(i.value)}</li>`),
    '</ul><h2>Your consent history</h2><table><thead><tr><th>When</th><th>What</th><th>Purpose</th><th>Channel</th><th>How</th><th>Notice</th><th>Evidence</th></tr></thead><tbody>',
  ].join('\n');
}

function renderEvent(e: ConsentEvent): string {
  const evidence = Object.entries(e.evidence)
    .filter(([, v]) => v)
    .map(([k, v]) => `${escape(k)}: ${escape(v)}`)
    .join('<br>');
  const notice = e.notice ? `v${e.notice.version} (${escape(e.notice.language)}, sha256 ${escape(e.notice.textSha256.slice(0, 12))}…)` : '';
  return `<tr><td>${escape(new Date(e.eventTime).toISOString())}</td><td>${escape(e.kind)}</td><td>${escape(e.purposeId === '-' ? 'all purposes' : e.purposeId)}</td><td>${escape(e.channel)}</td><td>${escape(e.method)}</td><td>${notice}</td><td>${evidence}</td></tr>\n`;
}
