#!/usr/bin/env node
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { ChannelCredentials, credentials, Metadata, ServiceError } from '@grpc/grpc-js';
import { Command, CommanderError, Option } from 'commander';
import { Channel as PbChannel, PurposeCategory, SubjectIdentifier } from '../gen/consent/v1/common';
import { KeyServiceClient } from '../gen/consent/v1/key';
import { IdentifierKind, IdentityLink, IdentityServiceClient } from '../gen/consent/v1/identity';
import { ConsentServiceClient } from '../gen/consent/v1/consent';
import {
  CreateRequestRequest,
  DataSubjectRequest,
  RequestIdentifier,
  ExportSubjectDataResponse,
  LegalHold,
  LegalHoldGround,
  ListRequestsRequest,
  ReceivedVia,
  RequestKind,
  RequestNoticeTopic,
  RequestState,
  Restriction,
  RestrictionGround,
  SubjectRightsServiceClient,
} from '../gen/consent/v1/subject_rights';
import { AuditServiceClient, ListAuditEntriesRequest } from '../gen/consent/v1/audit';
import { leafHash } from '../audit/merkle';
import { renderTable } from './table';
import { verifyReceipt } from './verify-receipt';
import { EntryFields, EXPORT_FORMAT, ExportedEntry, ExportedLog, VerificationFailure, verifyAuditLog, verifyCheckpoint, verifyExportedLog, AUDIT_ANSWER_BYTES } from './audit-verify';
import { sendChannelOf, verifyExplanation } from './explain-verify';
import { CliError, EXIT, EXIT_CODE_TABLE, usageError, verificationFailed } from './exit-codes';
import { grpcFailure, isServiceError } from './grpc-errors';
import { endQuietlyWhenReaderLeaves, progressOn } from './terminal-output';
import { describeSummary, exitCodeOf, importableFile, importFile, importFormatOf, MAX_IMPORT_ROWS, rejectsApartFromInput, ROWS_PER_MESSAGE } from './import-consents';
import {
  address as checkAddress,
  childName,
  enumValue,
  hasIdentifier,
  identifier,
  isoTime,
  jwksFile,
  nonNegativeInt,
  positiveInt,
  purposeId,
  readableFile,
  requestId,
  requiredText,
  codeText,
  subjectName,
  tenantName,
  taggedIdentifier,
  tenantOf,
  writableFile,
  writableFolder,
} from './arguments';

/**
 * consentctl: the command line of data-protection officers and auditors. Human-readable tables
 * by default, --json for scripts. Every command checks its arguments before it sends anything,
 * reports a failed call with its decoded details (reason, field violations, preconditions) on
 * stderr, and ends with one exit code of one table (exit-codes.ts).
 */

interface GlobalOptions {
  address: string;
  token?: string;
  json?: boolean;
  nameOnly?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
}

/** The checked global options: where the server is and how to talk to it. */
interface Session {
  address: string;
  credentials: ChannelCredentials;
  metadata(): Metadata;
  json: boolean;
  /** Print only the names of requests and holds (for scripts: REQ=$(consentctl --name-only ...)). */
  nameOnly: boolean;
}

/** Checks the global options (files readable, address well-formed) before any call. */
function openSession(g: GlobalOptions): Session {
  const target = checkAddress(g.address);
  if (g.json && g.nameOnly) throw usageError('give --json or --name-only, not both');
  if (g.token !== undefined && !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(g.token.trim())) {
    throw usageError('--token must be a JWT (three base64url parts separated by dots)');
  }
  let creds: ChannelCredentials;
  if (!g.ca && !g.cert && !g.key) {
    creds = credentials.createInsecure();
  } else {
    if (Boolean(g.cert) !== Boolean(g.key)) throw usageError('give --cert and --key together');
    const read = (file: string | undefined, flag: string) => (file ? Buffer.from(readableFile(file, flag)) : null);
    creds = credentials.createSsl(read(g.ca, '--ca'), read(g.key, '--key'), read(g.cert, '--cert'));
  }
  return {
    address: target,
    credentials: creds,
    json: Boolean(g.json),
    nameOnly: Boolean(g.nameOnly),
    metadata() {
      const md = new Metadata();
      if (g.token) md.set('authorization', `Bearer ${g.token.trim()}`);
      return md;
    },
  };
}

type Unary<Req, Res> = (req: Req, md: Metadata, opts: object, cb: (err: ServiceError | null, res: Res) => void) => unknown;

function rpc<Req, Res>(s: Session, client: object, method: Unary<Req, Res>, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, s.metadata(), { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(grpcFailure(err, s.address)) : resolve(res)));
  });
}

const shortEnum = (e: Record<number, string>, prefix: string, v: number) => (e[v] ?? '').replace(prefix, '').toLowerCase();
const iso = (d?: Date) => (d ? d.toISOString().replace('.000Z', 'Z') : '');
const isoMs = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

/** The last day to answer, as people read a deadline (due_time is the midnight after it). */
function dueDay(r: { dueDate?: { year: number; month: number; day: number }; dueTime?: Date }): string {
  if (r.dueDate && r.dueDate.year > 0) return `${r.dueDate.year}-${String(r.dueDate.month).padStart(2, '0')}-${String(r.dueDate.day).padStart(2, '0')}`;
  return r.dueTime ? new Date(r.dueTime.getTime() - 1).toISOString().slice(0, 10) : '';
}
const out = (text: string) => void process.stdout.write(text);
const json = (value: unknown) => out(JSON.stringify(value, null, 2) + '\n');

function printRequests(requests: DataSubjectRequest[], s: Session): void {
  if (s.json) return json(requests.map((r) => DataSubjectRequest.toJSON(r)));
  if (s.nameOnly) return out(requests.map((r) => `${r.name}\n`).join(''));
  out(
    renderTable(
      ['REQUEST', 'KIND', 'STATE', 'RECEIVED', 'DUE BY (END OF DAY, UTC)', 'OVERDUE'],
      requests.map((r) => [r.name, shortEnum(RequestKind, 'REQUEST_KIND_', r.kind), shortEnum(RequestState, 'REQUEST_STATE_', r.state), iso(r.receiveTime), dueDay(r), r.overdue ? 'OVERDUE' : '']),
    ),
  );
}

function printRequest(r: DataSubjectRequest, s: Session): void {
  if (s.json) return json(DataSubjectRequest.toJSON(r));
  if (s.nameOnly) return out(`${r.name}\n`);
  printRequests([r], s);
  if (r.extensionReason) out(`\nextended: ${r.extensionReason}\n`);
  if (r.extensionNotice) out(`person told of the extension: ${r.extensionNotice.method} by ${r.extensionNotice.notifiedBy}, ${r.extensionNotice.notifyTime?.toISOString() ?? ''}\n`);
  if (r.rejectionReason) out(`\nrejected: ${r.rejectionReason}\n`);
  if (r.rejectionNotice) out(`person told of the rejection: ${r.rejectionNotice.method} by ${r.rejectionNotice.notifiedBy}, ${r.rejectionNotice.notifyTime?.toISOString() ?? ''}\n`);
  if (r.identifiers.length > 0) {
    const verified = (i: RequestIdentifier) => (i.verificationMethod ? `${i.verificationMethod} by ${i.verifiedBy}` : '-');
    out('\n' + renderTable(['#', 'KIND', 'SUBJECT', 'VERIFIED', 'OUTCOME'], r.identifiers.map((i) => [String(i.position), i.kind, i.subject || '(nothing held)', verified(i), i.outcome || '-'])));
  }
  out('\n' + renderTable(['WHEN', 'STATE', 'BY', 'NOTE'], r.transitions.map((t) => [iso(t.time), shortEnum(RequestState, 'REQUEST_STATE_', t.toState), t.principal, t.note])));
}

/** Commander's collector for a repeatable option. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function printHolds(holds: LegalHold[], s: Session): void {
  if (s.json) return json(holds.map((h) => LegalHold.toJSON(h)));
  if (s.nameOnly) return out(holds.map((h) => `${h.name}\n`).join(''));
  out(
    renderTable(
      ['HOLD', 'SUBJECT', 'GROUND', 'PLACED', 'RELEASED', 'NOTE'],
      holds.map((h) => [h.name, h.subject, shortEnum(LegalHoldGround, 'LEGAL_HOLD_GROUND_', h.ground), iso(h.placeTime), iso(h.releaseTime), h.note]),
    ),
  );
}

/** A failed verification is exit 1 with what did not verify; a failed call keeps its own report. */
function verificationError(s: Session): (e: unknown) => never {
  return (e) => {
    if (e instanceof VerificationFailure) throw verificationFailed(e.message);
    if (isServiceError(e)) throw grpcFailure(e, s.address);
    throw e;
  };
}

const RESTRICTION_GROUNDS: Record<string, RestrictionGround> = {
  a: RestrictionGround.RESTRICTION_GROUND_A_ACCURACY_CONTESTED,
  b: RestrictionGround.RESTRICTION_GROUND_B_UNLAWFUL_PROCESSING,
  c: RestrictionGround.RESTRICTION_GROUND_C_LEGAL_CLAIMS,
  d: RestrictionGround.RESTRICTION_GROUND_D_OBJECTION_PENDING,
};

function printRestrictions(restrictions: Restriction[], s: Session): void {
  if (s.json) return json(restrictions.map((r) => Restriction.toJSON(r)));
  if (s.nameOnly) return out(restrictions.map((r) => `${r.name}\n`).join(''));
  out(
    renderTable(
      ['RESTRICTION', 'SUBJECT', 'GROUND', 'PLACED', 'NOTIFIED', 'LIFTED', 'NOTE'],
      restrictions.map((r) => [r.name, r.subject, shortEnum(RestrictionGround, 'RESTRICTION_GROUND_', r.ground), iso(r.placeTime), iso(r.notifyTime), iso(r.liftTime), r.liftReason || r.note]),
    ),
  );
}

function printLinks(links: IdentityLink[], s: Session): void {
  if (s.json) return json(links.map((l) => IdentityLink.toJSON(l)));
  if (s.nameOnly) return out(links.map((l) => `${l.name}\n`).join(''));
  out(
    renderTable(
      ['LINK', 'SUBJECTS', 'KINDS', 'METHOD', 'VERIFIED BY', 'LINKED', 'UNLINKED', 'REASON'],
      links.map((l) => [l.name, l.subjects.join(' '), l.kinds.map((k) => shortEnum(IdentifierKind, 'IDENTIFIER_KIND_', k)).join('+'), l.method, l.verifiedBy, iso(l.linkTime), iso(l.unlinkTime), l.unlinkReason]),
    ),
  );
}

const LEGAL_HOLD_GROUNDS: Record<string, LegalHoldGround> = {
  a: LegalHoldGround.LEGAL_HOLD_GROUND_A_FREEDOM_OF_EXPRESSION,
  b: LegalHoldGround.LEGAL_HOLD_GROUND_B_LEGAL_OBLIGATION,
  c: LegalHoldGround.LEGAL_HOLD_GROUND_C_PUBLIC_HEALTH,
  d: LegalHoldGround.LEGAL_HOLD_GROUND_D_ARCHIVING_RESEARCH,
  e: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS,
};

/** Longest free text (reason, note) the service keeps; checked here so nothing is sent in vain. */
const MAX_TEXT = 1000;

/** consentctl's commands; `active()` is the command being run (for its usage on a usage error). */
export function buildProgram(): Command & { active(): Command } {
  let activeCommand: Command | undefined;
  let session: Session | undefined;
  const program = new Command('consentctl')
    .description("The command line of data-protection officers and auditors for Consent Ledger: data-subject requests, exports, erasures, legal holds; the audit log, its checkpoints and explained decisions.")
    .addOption(new Option('--address <host:port>', 'the Consent Ledger server').env('CONSENT_ADDRESS').default('127.0.0.1:50051'))
    .addOption(new Option('--token <token>', 'bearer token (JWT) for a server with authentication').env('CONSENT_TOKEN'))
    .addOption(new Option('--ca <file>', "CA certificate (PEM) to verify a TLS server; turns TLS on (default: the system's CAs with --cert)").env('CONSENT_CA'))
    .addOption(new Option('--cert <file>', 'client certificate (PEM) for mutual TLS').env('CONSENT_CERT'))
    .addOption(new Option('--key <file>', "the client certificate's private key (PEM)").env('CONSENT_KEY'))
    .option('--json', 'machine-readable JSON instead of tables')
    .option('--name-only', 'print only the names of the requests and legal holds made or listed, one per line (for scripts)')
    // Set before the subcommands are made, so they inherit it: usage errors exit 2 with the usage.
    .exitOverride()
    .showHelpAfterError()
    .addHelpText(
      'after',
      `\n${EXIT_CODE_TABLE}\n\n` +
        'Typical flow: requests create -> requests verify -> export (ACCESS/PORTABILITY) or erase (ERASURE); requests overdue every morning.\n' +
        'Auditors: audit keys --out keys.json (pin them) -> audit checkpoint --jwks keys.json --out cp.jws (keep it) -> later audit verify --jwks keys.json --since cp.jws --records;\n' +
        'audit explain for a past decision; audit history for who did what.',
    );
  // Global options are checked once the command is known, before its action sends anything.
  program.hook('preAction', (_root, actionCommand) => {
    activeCommand = actionCommand;
    session = openSession(program.opts<GlobalOptions>());
  });
  const g = (): Session => session!;
  const who = (c: Command) =>
    c
      .option('--phone <number>', 'phone number (E.164, or national with --region)')
      .option('--email <address>', 'e-mail address')
      .option('--customer-id <id>', "the tenant's customer id")
      .option('--region <CC>', 'region for national phone numbers, e.g. DE');
  const rightsClient = () => new SubjectRightsServiceClient(g().address, g().credentials);
  const keysClient = () => new KeyServiceClient(g().address, g().credentials);
  const identityClient = () => new IdentityServiceClient(g().address, g().credentials);
  // An explanation carries every deciding entry of a person with its proof and record: a long
  // history (a daily chat for years) is several MB, beyond grpc-js's 4 MiB default.
  const auditClient = () => new AuditServiceClient(g().address, g().credentials, { 'grpc.max_receive_message_length': AUDIT_ANSWER_BYTES });
  const publicKeys = async (tenant: string) => {
    const keys = keysClient();
    try {
      return (await rpc(g(), keys, keys.getPublicKeys, { name: tenant })).jwks;
    } finally {
      keys.close();
    }
  };

  async function listAllRequests(req: ListRequestsRequest): Promise<DataSubjectRequest[]> {
    const rights = rightsClient();
    const all: DataSubjectRequest[] = [];
    let pageToken = '';
    do {
      const page = await rpc(g(), rights, rights.listRequests, { ...req, pageToken });
      all.push(...page.requests);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return all;
  }

  const requests = program.command('requests').description('data-subject requests (Art. 15, 17, 20)');
  who(requests.command('create').description('register a request as received (deadline: one calendar month)'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--kind <kind>', 'access, portability, erasure, objection (takes effect at once), restriction or rectification')
    .option('--new-phone <number>', 'rectification: the correct phone number (with --phone)')
    .option('--new-email <address>', 'rectification: the correct e-mail address (with --email)')
    .option('--new-customer-id <id>', 'rectification: the correct customer id (with --customer-id)')
    .option('--received-via <channel>', 'email, web-form, letter, phone, in-person, chat, other', 'email')
    .option('--received-at <iso-time>', 'when it was received (default: now)')
    .option('--request-id <id>', 'idempotency key (default: random)')
    .option('--also-phone <number>', 'a further phone number of the same person (repeatable; --region applies)', collect, [])
    .option('--also-email <address>', 'a further e-mail address of the same person (repeatable)', collect, [])
    .option('--also-customer-id <id>', 'a further customer id of the same person (repeatable)', collect, [])
    .action(async (o) => {
      const further = [
        ...(o.alsoPhone as string[]).map((phone) => identifier({ phone, region: o.region })),
        ...(o.alsoEmail as string[]).map((email) => identifier({ email })),
        ...(o.alsoCustomerId as string[]).map((customerId) => identifier({ customerId })),
      ];
      const req = CreateRequestRequest.fromPartial({
        parent: tenantName(o.tenant),
        kind: enumValue(RequestKind, 'REQUEST_KIND_', o.kind, '--kind'),
        subjectIdentifier: identifier(o),
        subjectIdentifiers: further,
        rectifiedIdentifier: rectifiedIdentifier(o),
        receivedVia: enumValue(ReceivedVia, 'RECEIVED_VIA_', o.receivedVia, '--received-via'),
        receiveTime: o.receivedAt !== undefined ? isoTime(o.receivedAt, '--received-at') : undefined,
        requestId: requestId(o.requestId),
      });
      const rights = rightsClient();
      printRequest((await rpc(g(), rights, rights.createRequest, req)).request!, g());
    });
  requests.command('get <name>').description('one request and its history').action(async (name: string) => {
    const req = { name: childName(name, 'requests', 'the request') };
    const rights = rightsClient();
    printRequest((await rpc(g(), rights, rights.getRequest, req)).request!, g());
  });
  requests
    .command('list')
    .description('requests, newest first')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--state <state>', 'received, verified, in-progress, completed, rejected')
    .option('--kind <kind>', 'access, portability, erasure, objection, restriction')
    .option('--overdue', 'only overdue requests')
    .option('--due-before <iso-time>', 'only open requests due before this time')
    .action(async (o) => {
      const req = ListRequestsRequest.fromPartial({
        parent: tenantName(o.tenant),
        state: o.state !== undefined ? enumValue(RequestState, 'REQUEST_STATE_', o.state, '--state') : 0,
        kind: o.kind !== undefined ? enumValue(RequestKind, 'REQUEST_KIND_', o.kind, '--kind') : 0,
        overdue: Boolean(o.overdue),
        dueBefore: o.dueBefore !== undefined ? isoTime(o.dueBefore, '--due-before') : undefined,
        pageSize: 500,
      });
      printRequests(await listAllRequests(req), g());
    });
  requests
    .command('overdue')
    .description('open requests past their deadline, and those due within --days (default 7)')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--days <n>', 'also list requests due within this many days', '7')
    .action(async (o) => {
      const days = nonNegativeInt(o.days, '--days');
      const req = ListRequestsRequest.fromPartial({ parent: tenantName(o.tenant), dueBefore: new Date(Date.now() + days * 86_400_000), pageSize: 500 });
      printRequests(await listAllRequests(req), g());
    });
  requests
    .command('verify <name>')
    .description("record that the requester's identity was verified")
    .requiredOption('--method <method>', 'how, e.g. ID_DOCUMENT, EMAIL_CONFIRMATION (1-64 characters of A-Z a-z 0-9 _ . : -)')
    .requiredOption('--by <staff>', 'who verified it (a staff reference, not a name)')
    .option('--identifier <positions>', "only these identifiers of the request, by position (\"1\" or \"2,3\"; default: all not yet verified)")
    .action(async (name: string, o) => {
      codeText(o.method, '--method', 'ID_DOCUMENT');
      const positions = o.identifier === undefined ? [] : String(o.identifier).split(',').map((p) => positiveInt(p.trim(), '--identifier'));
      const req = { name: childName(name, 'requests', 'the request'), method: o.method as string, verifiedBy: requiredText(o.by, '--by', 128), identifierPositions: positions };
      const rights = rightsClient();
      printRequest((await rpc(g(), rights, rights.verifyIdentity, req)).request!, g());
    });
  requests
    .command('extend <name>')
    .description('extend the deadline once by 1 or 2 months (Art. 12(3))')
    .requiredOption('--months <n>', '1 or 2')
    .requiredOption('--reason <text>', 'why (the person must be told)')
    .action(async (name: string, o) => {
      if (o.months !== '1' && o.months !== '2') throw usageError('--months must be 1 or 2 (Art. 12(3) allows two further months at most)');
      const req = { name: childName(name, 'requests', 'the request'), months: Number(o.months), reason: requiredText(o.reason, '--reason', MAX_TEXT) };
      const rights = rightsClient();
      printRequest((await rpc(g(), rights, rights.extendDeadline, req)).request!, g());
    });
  requests
    .command('notify <name>')
    .description('record that the person was told of the extension and its reasons (Art. 12(3)) or of the rejection and their right to complain (Art. 12(4))')
    .requiredOption('--topic <topic>', 'extension or rejection')
    .requiredOption('--method <method>', 'how they were told, e.g. LETTER, EMAIL')
    .requiredOption('--by <staff>', 'who told them (a staff reference, not a name)')
    .action(async (name: string, o) => {
      const topics: Record<string, RequestNoticeTopic> = { extension: RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION, rejection: RequestNoticeTopic.REQUEST_NOTICE_TOPIC_REJECTION };
      const given = String(o.topic).toLowerCase();
      if (!Object.hasOwn(topics, given)) throw usageError('--topic must be extension or rejection');
      const topic = topics[given];
      codeText(o.method, '--method', 'LETTER');
      const req = { name: childName(name, 'requests', 'the request'), topic, method: o.method as string, notifiedBy: requiredText(o.by, '--by', 128) };
      const rights = rightsClient();
      printRequest((await rpc(g(), rights, rights.recordRequestNotice, req)).request!, g());
    });
  requests
    .command('reject <name>')
    .description('reject a request, with a reason')
    .requiredOption('--reason <text>', 'why')
    .action(async (name: string, o) => {
      const req = { name: childName(name, 'requests', 'the request'), reason: requiredText(o.reason, '--reason', MAX_TEXT) };
      const rights = rightsClient();
      printRequest((await rpc(g(), rights, rights.rejectRequest, req)).request!, g());
    });

  program
    .command('export <name>')
    .description('export a verified ACCESS/PORTABILITY request: writes package.json, package.html and manifest.jws, and verifies them')
    .requiredOption('--out <dir>', 'folder to write the files to')
    .action(async (name: string, o) => {
      const request = childName(name, 'requests', 'the request');
      const folder = writableFolder(o.out, '--out');
      const s = g();
      const rights = rightsClient();
      const pkg: Buffer[] = [];
      const html: Buffer[] = [];
      let manifest: { packageSha256: string; htmlSha256: string; events: number; signedManifest: string } | undefined;
      const progress = progressOn(process.stderr);
      await new Promise<void>((resolve, reject) => {
        const stream = rights.exportSubjectData({ name: request }, s.metadata());
        stream.on('data', (p: ExportSubjectDataResponse) => {
          const part = p.part;
          // Nothing is taken on the server's word: a message that is none of the parts ends the export.
          if (!part) {
            stream.cancel();
            reject(verificationFailed('the server sent an export message that holds no part; nothing was written'));
            return;
          }
          if (part.$case === 'progress' && !s.json) progress.update(`exporting: ${part.value.eventsDone}/${part.value.eventsTotal}`);
          if (part.$case === 'packageChunk') pkg.push(part.value);
          if (part.$case === 'htmlChunk') html.push(part.value);
          if (part.$case === 'manifest') manifest = part.value;
        });
        stream.on('error', (err: ServiceError) => reject(grpcFailure(err, s.address)));
        stream.on('end', () => resolve());
      }).finally(() => progress.end());
      if (!manifest) throw verificationFailed('the export ended without a manifest');
      mkdirSync(folder, { recursive: true });
      const files = { package: path.join(folder, 'package.json'), html: path.join(folder, 'package.html'), manifest: path.join(folder, 'manifest.jws') };
      writeFileSync(files.package, Buffer.concat(pkg));
      writeFileSync(files.html, Buffer.concat(html));
      writeFileSync(files.manifest, manifest.signedManifest + '\n');
      const signed = await verifyReceipt(manifest.signedManifest, await publicKeys(tenantOf(request))).then(
        (v) => ({ ok: true as const, payload: v.payload }),
        (e: Error) => ({ ok: false as const, error: e.message }),
      );
      const hashes = {
        package: createHash('sha256').update(Buffer.concat(pkg)).digest('hex'),
        html: createHash('sha256').update(Buffer.concat(html)).digest('hex'),
      };
      const problem = !signed.ok
        ? `the manifest's ${signed.error}`
        : signed.payload.packageSha256 !== hashes.package
          ? 'package.json does not match the SHA-256 the signed manifest names'
          : signed.payload.htmlSha256 !== hashes.html
            ? 'package.html does not match the SHA-256 the signed manifest names'
            : null;
      const summary = { request, events: manifest.events, files, packageSha256: hashes.package, verified: problem === null };
      out(s.json ? JSON.stringify(summary, null, 2) + '\n' : `${manifest.events} events exported to ${folder}; signature and hashes ${problem === null ? 'verified' : 'DO NOT VERIFY'}\n`);
      if (problem) throw verificationFailed(`the export did not verify against the tenant's published keys: ${problem}`);
    });

  program
    .command('rectify <name>')
    .description('carry out a verified RECTIFICATION request (Art. 16): the correct identifier replaces the old one; history and consents follow it')
    .action(async (name: string) => {
      const rights = rightsClient();
      const res = await rpc(g(), rights, rights.rectifyIdentifier, { name: childName(name, 'requests', 'the request') });
      printRequest(res.request!, g());
    });

  who(program.command('reassigned').description("report that a phone number or e-mail address now belongs to someone else: the old owner's consents end, a fresh subject takes it"))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--source <source>', 'who says so: CARRIER_NOTICE, REASSIGNED_NUMBERS_DB, NEW_OWNER, ... (1-64 of A-Z a-z 0-9 _ . : -)')
    .option('--at <iso-time>', 'when it passed to the new owner (default: now)')
    .option('--request-id <id>', 'idempotency key (default: random)')
    .action(async (o) => {
      codeText(o.source, '--source', 'CARRIER_NOTICE');
      const s = g();
      const consent = new ConsentServiceClient(s.address, s.credentials);
      const res = await rpc(s, consent, consent.reportReassignedIdentifier, {
        parent: tenantName(o.tenant),
        subjectIdentifier: identifier(o),
        reassignTime: o.at !== undefined ? isoTime(o.at, '--at') : undefined,
        source: o.source as string,
        requestId: requestId(o.requestId),
      });
      if (s.json) return json({ subject: res.subject, consistencyToken: res.consistencyToken });
      out(s.nameOnly ? `${res.subject}\n` : `reassigned: checks answer IDENTIFIER_REASSIGNED until the new owner opts in\nnew owner's subject: ${res.subject}\nconsistency token: ${res.consistencyToken}\n`);
    });

  program
    .command('erase <name>')
    .description('carry out a verified ERASURE request (irreversible) and print the signed erasure receipt')
    .option('--yes', 'do not ask for confirmation')
    .action(async (name: string, o) => {
      const request = childName(name, 'requests', 'the request');
      if (!o.yes) {
        if (!process.stdin.isTTY) throw usageError('refusing to erase without confirmation: run in a terminal or pass --yes');
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question(`Erase the person of ${request}? This destroys their key and cannot be undone. Type "erase" to go on: `);
        rl.close();
        if (answer.trim() !== 'erase') throw usageError('not erased: the confirmation was not "erase"');
      }
      const s = g();
      const rights = rightsClient();
      const res = await rpc(s, rights, rights.eraseSubject, { name: request });
      const verified = await verifyReceipt(res.erasureReceipt, await publicKeys(tenantOf(request))).then(
        (v) => ({ ok: true as const, payload: v.payload }),
        (e: Error) => ({ ok: false as const, error: e.message }),
      );
      if (s.json) {
        json({ request: DataSubjectRequest.toJSON(res.request!), receipt: res.erasureReceipt, verified: verified.ok, payload: verified.ok ? verified.payload : undefined });
      } else {
        printRequest(res.request!, s);
        out(`\nerasure receipt (${verified.ok ? 'signature verified' : 'SIGNATURE DOES NOT VERIFY'}):\n${JSON.stringify(verified.ok ? verified.payload : {}, null, 2)}\n\n${res.erasureReceipt}\n`);
      }
      if (!verified.ok) throw verificationFailed(`the erasure receipt: ${verified.error}`);
    });

  program
    .command('import <file>')
    .description("import a business's existing consents and withdrawals from CSV or JSON Lines (columns: docs/import.md); rejected rows go to --rejects with their lines; run again after an interruption: nothing is imported twice")
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--format <format>', 'csv or jsonl (default: from the file name)')
    .option('--rejects <file>', 'write every rejected row (line, reason, field, message) to this file: CSV, or JSON Lines if it ends in .jsonl')
    .option('--rows-per-call <n>', `rows per ImportConsents call, at most the service's MAX_IMPORT_ROWS`, String(MAX_IMPORT_ROWS))
    .action(async (file: string, o) => {
      tenantName(o.tenant);
      importableFile(file);
      const format = importFormatOf(file, o.format);
      const rejectsFile = o.rejects !== undefined ? writableFile(o.rejects, '--rejects') : undefined;
      const rowsPerCall = positiveInt(o.rowsPerCall, '--rows-per-call');
      // After every other argument, before any file is opened: --rejects must not be the input.
      if (rejectsFile !== undefined) rejectsApartFromInput(file, rejectsFile);
      const s = g();
      const interrupt = new AbortController();
      const onSigint = () => interrupt.abort();
      process.once('SIGINT', onSigint);
      const progress = s.json ? null : progressOn(process.stderr);
      let result;
      try {
        result = await importFile(s, { file, tenant: o.tenant, format, rejectsFile, rowsPerCall, rowsPerMessage: ROWS_PER_MESSAGE }, progress, interrupt.signal);
      } finally {
        progress?.end();
        process.removeListener('SIGINT', onSigint);
      }
      const { summary, failure } = result;
      out(s.json ? JSON.stringify(summary, null, 2) + '\n' : describeSummary(summary));
      if (interrupt.signal.aborted) {
        // Ends as an interrupted program does (by the signal, exit status 130 in a shell), after the summary.
        process.kill(process.pid, 'SIGINT');
        await new Promise(() => undefined);
      }
      if (failure) throw failure;
      if (exitCodeOf(summary) !== EXIT.OK) throw new CliError(`${summary.rejected.toLocaleString('en')} of ${summary.rows.toLocaleString('en')} rows rejected; the others are imported`, EXIT.FAILED);
    });

  const holds = program.command('holds').description('legal holds (Art. 17(3)): block erasure while open');
  who(holds.command('place').description('place a legal hold on a person'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--ground <a-e>', 'Art. 17(3) ground: a (expression), b (legal obligation), c (public health), d (archiving/research), e (legal claims)')
    .option('--note <text>', 'why (no personal data)', '')
    .option('--request-id <id>', 'idempotency key (default: random)')
    .action(async (o) => {
      const ground = LEGAL_HOLD_GROUNDS[String(o.ground).toLowerCase()];
      if (!ground) throw usageError('--ground must be one of a, b, c, d, e');
      if (o.note.length > MAX_TEXT) throw usageError(`--note must be at most ${MAX_TEXT} characters`);
      const req = { parent: tenantName(o.tenant), subjectIdentifier: identifier(o), ground, note: o.note as string, requestId: requestId(o.requestId) };
      const rights = rightsClient();
      printHolds([(await rpc(g(), rights, rights.placeLegalHold, req)).hold!], g());
    });
  holds
    .command('release <name>')
    .description('release a legal hold')
    .requiredOption('--note <text>', 'why')
    .action(async (name: string, o) => {
      const req = { name: childName(name, 'legalHolds', 'the legal hold'), note: requiredText(o.note, '--note', MAX_TEXT) };
      const rights = rightsClient();
      printHolds([(await rpc(g(), rights, rights.releaseLegalHold, req)).hold!], g());
    });
  who(holds.command('list').description('legal holds, newest first'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--include-released', 'released holds too')
    .action(async (o) => {
      const parent = tenantName(o.tenant);
      const filter = hasIdentifier(o) ? identifier(o) : undefined;
      const rights = rightsClient();
      const all: LegalHold[] = [];
      let pageToken = '';
      do {
        const page = await rpc(g(), rights, rights.listLegalHolds, { parent, subjectIdentifier: filter, includeReleased: Boolean(o.includeReleased), pageSize: 500, pageToken });
        all.push(...page.holds);
        pageToken = page.nextPageToken;
      } while (pageToken);
      printHolds(all, g());
    });

  const restrictions = program.command('restrictions').description('restrictions of processing (Art. 18): checks answer RESTRICTED while one is in force');
  restrictions
    .command('place <request>')
    .description('carry out a verified RESTRICTION request: restrict the person and complete the request')
    .requiredOption('--ground <a-d>', 'Art. 18(1) ground: a (accuracy contested), b (unlawful, restriction instead of erasure), c (legal claims), d (objection pending)')
    .option('--note <text>', 'why (no personal data)', '')
    .action(async (name: string, o) => {
      const ground = RESTRICTION_GROUNDS[String(o.ground).toLowerCase()];
      if (!ground) throw usageError('--ground must be one of a, b, c, d');
      if (o.note.length > MAX_TEXT) throw usageError(`--note must be at most ${MAX_TEXT} characters`);
      const rights = rightsClient();
      const done = await rpc(g(), rights, rights.restrictProcessing, { name: childName(name, 'requests', 'the request'), ground, note: o.note as string });
      if (done.restriction) printRestrictions([done.restriction], g());
      else printRequest(done.request!, g());
    });
  restrictions
    .command('notify <name>')
    .description('record that the person was informed before the restriction is lifted (Art. 18(3))')
    .requiredOption('--method <method>', 'how, e.g. LETTER, EMAIL (1-64 characters of A-Z a-z 0-9 _ . : -)')
    .requiredOption('--by <staff>', 'who informed them (a staff reference, not a name)')
    .action(async (name: string, o) => {
      codeText(o.method, '--method', 'LETTER');
      const req = { name: childName(name, 'restrictions', 'the restriction'), method: o.method as string, notifiedBy: requiredText(o.by, '--by', 128) };
      const rights = rightsClient();
      printRestrictions([(await rpc(g(), rights, rights.recordRestrictionNotice, req)).restriction!], g());
    });
  restrictions
    .command('lift <name>')
    .description('lift a restriction (after the notice to the person is recorded)')
    .requiredOption('--reason <text>', 'why')
    .action(async (name: string, o) => {
      const rights = rightsClient();
      const req = { name: childName(name, 'restrictions', 'the restriction'), reason: requiredText(o.reason, '--reason', MAX_TEXT) };
      printRestrictions([(await rpc(g(), rights, rights.liftRestriction, req)).restriction!], g());
    });
  who(restrictions.command('list').description('restrictions, newest first'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--include-lifted', 'lifted restrictions too')
    .action(async (o) => {
      const parent = tenantName(o.tenant);
      const filter = hasIdentifier(o) ? identifier(o) : undefined;
      const rights = rightsClient();
      const all: Restriction[] = [];
      let pageToken = '';
      do {
        const page = await rpc(g(), rights, rights.listRestrictions, { parent, subjectIdentifier: filter, includeLifted: Boolean(o.includeLifted), pageSize: 500, pageToken });
        all.push(...page.restrictions);
        pageToken = page.nextPageToken;
      } while (pageToken);
      printRestrictions(all, g());
    });

  // Linked identities (issue 18): one person's identifiers, so that requests reach all of them.
  program
    .command('link')
    .description("link two identifiers as one person, with the evidence (never widens consent: each identifier keeps its own)")
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--first <kind:value>', 'one identifier: phone:<number>, email:<address> or customer:<id>')
    .requiredOption('--second <kind:value>', 'the other identifier, written the same way')
    .option('--region <CC>', 'region for national phone numbers, e.g. DE')
    .option('--method <method>', 'how the link was verified, e.g. ID_DOCUMENT (1-64 characters of A-Z a-z 0-9 _ . : -); default with --request: the request\'s')
    .option('--by <staff>', "who verified it (a staff reference, not a name); default with --request: the request's verifier")
    .option('--request <name>', "a verified data-subject request by one of the two identifiers: the person's verified path")
    .option('--request-id <id>', 'idempotency key (default: random)')
    .action(async (o) => {
      const request = o.request === undefined ? '' : childName(o.request, 'requests', '--request');
      if (!request && (o.method === undefined || o.by === undefined)) throw usageError('give --method and --by, or --request (a verified request)');
      if (o.method !== undefined) codeText(o.method, '--method', 'ID_DOCUMENT');
      const req = {
        parent: tenantName(o.tenant),
        first: taggedIdentifier(o.first, '--first', o.region),
        second: taggedIdentifier(o.second, '--second', o.region),
        method: (o.method as string | undefined) ?? '',
        verifiedBy: o.by === undefined ? '' : requiredText(o.by, '--by', 128),
        request,
        requestId: requestId(o.requestId),
      };
      const identity = identityClient();
      printLinks([(await rpc(g(), identity, identity.linkIdentifiers, req)).link!], g());
    });
  program
    .command('unlink <name>')
    .description('close an identity link, with the reason')
    .requiredOption('--reason <text>', 'why (no personal data)')
    .action(async (name: string, o) => {
      const req = { name: childName(name, 'identityLinks', 'the link'), reason: requiredText(o.reason, '--reason', MAX_TEXT) };
      const identity = identityClient();
      printLinks([(await rpc(g(), identity, identity.unlinkIdentifiers, req)).link!], g());
    });
  who(program.command('links').description('identity links, newest first (of one identifier when given)'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--include-unlinked', 'closed links too')
    .action(async (o) => {
      const parent = tenantName(o.tenant);
      const filter = hasIdentifier(o) ? identifier(o) : undefined;
      const identity = identityClient();
      const all: IdentityLink[] = [];
      let pageToken = '';
      do {
        const page = await rpc(g(), identity, identity.listIdentityLinks, { parent, subjectIdentifier: filter, includeUnlinked: Boolean(o.includeUnlinked), pageSize: 500, pageToken });
        all.push(...page.links);
        pageToken = page.nextPageToken;
      } while (pageToken);
      printLinks(all, g());
    });

  /** The pinned JWK set (--jwks, checked before any call), or the server's if none was pinned. */
  const pinnedKeys = (file: string | undefined) => (file !== undefined ? jwksFile(file) : undefined);
  /** The server, credentials, tenant and pinned keys an audit log verification works with. */
  const logTarget = (o: { tenant: string; jwks?: string }) => {
    tenantName(o.tenant);
    return { address: g().address, credentials: g().credentials, metadata: g().metadata(), tenant: o.tenant, jwks: pinnedKeys(o.jwks) };
  };
  const audit = program
    .command('audit')
    .description("the auditor's tools: signed checkpoints, who did what, explained decisions, and independent verification of the audit log and the event rows")
    .addHelpText('after', "\nStart by saving the tenant's public keys (audit keys --out keys.json) and pass them as --jwks from then on: nothing is then taken on the server's word.");
  audit
    .command('keys')
    .description("fetch the tenant's public signing keys (JWK set) to pin for later verifications")
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--out <file>', 'where to write the JWK set')
    .action(async (o) => {
      const tenant = tenantName(o.tenant);
      const file = writableFile(o.out, '--out');
      const jwks = await publicKeys(tenant);
      writeFileSync(file, jwks + '\n');
      const kids = (JSON.parse(jwks) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
      out(g().json ? JSON.stringify({ file, kids }, null, 2) + '\n' : `wrote ${kids.length} public key(s) of ${tenant} to ${file}: ${kids.join(', ')}\n`);
    });
  audit
    .command('checkpoint')
    .description("fetch and verify a signed checkpoint of the tenant's log (save it to check consistency later)")
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--jwks <file>', "the tenant's public keys, pinned earlier (default: fetched from the server)")
    .option('--out <file>', 'also write the signed checkpoint (JWS) to this file')
    .action(async (o) => {
      const parent = tenantName(o.tenant);
      const pinned = pinnedKeys(o.jwks);
      const file = o.out !== undefined ? writableFile(o.out, '--out') : undefined;
      const client = auditClient();
      const res = await rpc(g(), client, client.getCheckpoint, { parent }).finally(() => client.close());
      const verified = await verifyCheckpoint(res.checkpoint!.signedCheckpoint, pinned ?? (await publicKeys(parent))).catch(verificationError(g()));
      if (file) writeFileSync(file, res.checkpoint!.signedCheckpoint + '\n');
      out(g().json ? JSON.stringify(verified, null, 2) + '\n' : `${verified.tenant}: ${verified.treeSize} entries, root ${verified.rootHash} at ${verified.time} (signature verified, key ${verified.kid})\n`);
    });
  audit
    .command('checkpoints')
    .description('checkpoints the service signed on its own schedule (AUDIT_CHECKPOINT_INTERVAL_MS), newest first, each signature verified')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--jwks <file>', "the tenant's public keys, pinned earlier (default: fetched from the server)")
    .option('--limit <n>', 'at most this many', '20')
    .action(async (o) => {
      const parent = tenantName(o.tenant);
      const limit = positiveInt(o.limit, '--limit');
      const pinned = pinnedKeys(o.jwks);
      const client = auditClient();
      const page = await rpc(g(), client, client.listCheckpoints, { parent, pageSize: Math.min(limit, 500), pageToken: '' }).finally(() => client.close());
      const jwks = pinned ?? (await publicKeys(parent));
      const rows = [];
      for (const c of page.checkpoints.slice(0, limit)) {
        const v = await verifyCheckpoint(c.signedCheckpoint, jwks).catch(verificationError(g()));
        rows.push({ ...v, signed: c.signedCheckpoint });
      }
      if (g().json) return json(rows);
      out(renderTable(['TREE SIZE', 'ROOT HASH', 'SIGNED', 'KEY'], rows.map((r) => [String(r.treeSize), r.rootHash, r.time, r.kid])));
    });
  who(audit.command('history').description('audit entries, oldest first, optionally about one person, purpose, type, principal or period; each entry re-hashed'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--subject <name>', 'only this subject: tenants/{tenant}/subjects/{id}')
    .option('--purpose <id>', 'only this purpose id ("-" for all-purpose events)')
    .option('--type <type...>', 'only these entry types, e.g. CONSENT_EVENT_OPT_OUT SUBJECT_ERASED')
    .option('--principal <id>', 'only entries made by this principal')
    .option('--since <time>', 'only entries made at or after this ISO 8601 time')
    .option('--until <time>', 'only entries made before this ISO 8601 time')
    .option('--start <index>', 'first log index to look at', '0')
    .option('--limit <n>', 'at most this many entries', '100')
    .action(async (o) => {
      const parent = tenantName(o.tenant);
      const types = ((o.type ?? []) as string[]).map((t) => t.toUpperCase());
      const wrongType = types.find((t) => !/^[A-Z][A-Z0-9_]{0,39}$/.test(t));
      if (wrongType !== undefined) throw usageError('--type must be entry types such as CONSENT_EVENT_OPT_OUT SUBJECT_ERASED');
      const filter = ListAuditEntriesRequest.fromPartial({
        parent,
        subjectIdentifier: hasIdentifier(o) ? identifier(o) : undefined,
        subject: o.subject !== undefined ? subjectName(o.subject, '--subject') : '',
        purpose: o.purpose !== undefined ? `${parent}/purposes/${purposeId(o.purpose, '--purpose', true)}` : '',
        entryTypes: types,
        principal: o.principal !== undefined ? requiredText(o.principal, '--principal', 200) : '',
        startTime: o.since !== undefined ? isoTime(o.since, '--since') : undefined,
        endTime: o.until !== undefined ? isoTime(o.until, '--until') : undefined,
      });
      const limit = positiveInt(o.limit, '--limit');
      let next = nonNegativeInt(o.start, '--start');
      const client = auditClient();
      const found: Array<{ index: number; fields: EntryFields; entryJson: string; leafHash: string }> = [];
      try {
        while (found.length < limit) {
          const page = await rpc(g(), client, client.listAuditEntries, { ...filter, startIndex: next, pageSize: Math.min(500, limit - found.length) });
          for (const e of page.entries) {
            if (leafHash(Buffer.from(e.entryJson, 'utf8')).toString('hex') !== e.leafHash) {
              throw verificationFailed(`entry ${e.index} was altered: its content does not match its leaf hash`);
            }
            found.push({ index: e.index, fields: JSON.parse(e.entryJson) as EntryFields, entryJson: e.entryJson, leafHash: e.leafHash });
          }
          if (page.entries.length === 0 || page.nextIndex <= next) break;
          next = page.nextIndex;
        }
      } finally {
        client.close();
      }
      if (g().json) return json(found.map((f) => ({ index: f.index, entry: f.fields, leafHash: f.leafHash })));
      out(
        renderTable(
          ['INDEX', 'TIME', 'TYPE', 'PRINCIPAL', 'SUBJECT', 'PURPOSE', 'CHANNEL', 'REF'],
          found.map(({ index, fields: e }) => [String(index), isoMs(e.time), e.type, e.principal, e.subject ?? '', e.purpose ?? '', e.channel ?? '', e.ref ?? '']),
        ),
      );
      if (found.length >= limit) out(`(the first ${limit}; more with --start ${found[found.length - 1].index + 1})\n`);
    });
  who(audit.command('explain').description('explain a decision (now or at --at) with the events that decided it, and verify it independently'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--purpose <id>', 'the purpose id of the message')
    .option('--category <category>', 'instead of --purpose: service or utility')
    .requiredOption('--channel <channel>', 'whatsapp, sms, email, push or voice')
    .option('--at <time>', 'the time to answer for (ISO 8601; default: now)')
    .option('--jwks <file>', "the tenant's public keys, pinned earlier (default: fetched from the server)")
    .action(async (o) => {
      const parent = tenantName(o.tenant);
      const channel = sendChannelOf(String(o.channel));
      if (!channel) throw usageError('--channel must be one of whatsapp, sms, email, push, voice');
      if ((o.purpose === undefined) === (o.category === undefined)) throw usageError('give --purpose or --category (one of them)');
      const category = o.category !== undefined ? enumValue(PurposeCategory, 'PURPOSE_CATEGORY_', String(o.category), '--category') : PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED;
      const query = {
        subjectIdentifier: identifier(o),
        purpose: o.purpose !== undefined ? `${parent}/purposes/${purposeId(o.purpose, '--purpose')}` : '',
        category,
        channel: PbChannel[`CHANNEL_${channel}` as keyof typeof PbChannel],
        at: o.at !== undefined ? isoTime(o.at, '--at') : undefined,
      };
      const pinned = pinnedKeys(o.jwks);
      const client = auditClient();
      const response = await rpc(g(), client, client.explainDecision, { parent, query }).finally(() => client.close());
      const verified = await verifyExplanation(response, pinned ?? (await publicKeys(parent)), { tenant: o.tenant, purposeId: o.purpose ?? null, channel }).catch(verificationError(g()));
      if (g().json) return json(verified);
      const lines = [
        `decision at ${verified.time}: ${verified.verdict} (${verified.reason})${verified.decidingEvent ? ` by ${verified.decidingEvent}` : ''}`,
        verified.subject ? `subject: ${verified.subject}` : 'subject: unknown to the tenant',
        `checkpoint: ${verified.checkpoint.treeSize} entries, root ${verified.checkpoint.rootHash}, signature verified (key ${verified.checkpoint.kid})`,
        '',
      ];
      out(lines.join('\n'));
      if (verified.entries.length > 0) {
        out(
          renderTable(
            ['INDEX', 'TYPE', 'PURPOSE', 'CHANNEL', 'EVENT TIME', 'RECORDED', 'EVENT'],
            verified.entries.map((e) => [String(e.index), e.type, e.purpose ?? '', e.channel ?? '', e.eventTime !== undefined ? isoMs(e.eventTime) : '', isoMs(e.time), e.event ?? '']),
          ),
        );
      }
      if (verified.reportedByServer.identifierErased) {
        out('\nthe service reports this identifier as erased: nothing of the person is reachable by it, so there is nothing to verify; the answer is a DENY\n');
        return;
      }
      out(
        `\nverified: every entry is in the signed log, every event row matches its entry, and the rules replayed over the entries give the same decision ` +
          `(category ${verified.reportedByServer.category}${verified.reportedByServer.allowedWhileRestricted ? ', allowed while restricted' : ''} and service window ${verified.reportedByServer.serviceWindowSeconds}s, in force then, as reported by the service)\n`,
      );
      if (!verified.complete) {
        out(
          `NOT COMPLETE: ${verified.erasuresSince} ${verified.erasuresSince === 1 ? 'person was' : 'people were'} erased in this tenant after ${verified.time}. ` +
            "An erased person's events are no longer reachable by their identifiers, so evidence that decided the answer then may be missing here.\n",
        );
      }
    });
  audit
    .command('export')
    .description('write a signed checkpoint and every entry it covers to a file, verified on the way (check it later with verify-export)')
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--out <file>', 'where to write the export (JSON)')
    .option('--jwks <file>', "the tenant's public keys, pinned earlier (default: fetched from the server)")
    .action(async (o) => {
      const target = logTarget(o);
      const file = writableFile(o.out, '--out');
      const entries: ExportedEntry[] = [];
      const result = await verifyAuditLog({ ...target, collect: entries }).catch(verificationError(g()));
      const exported: ExportedLog = { format: EXPORT_FORMAT, tenant: o.tenant, checkpoint: result.signedCheckpoint, entries };
      writeFileSync(file, JSON.stringify(exported) + '\n');
      out(g().json ? JSON.stringify(result.checkpoint, null, 2) + '\n' : `wrote ${entries.length} entries and the checkpoint (root ${result.checkpoint.rootHash}) to ${file}\n`);
    });
  audit
    .command('verify-export <file>')
    .description('verify an export offline: the checkpoint signature against pinned keys, every entry, the root recomputed from all of them')
    .requiredOption('--jwks <file>', "the tenant's public keys (from audit keys --out, kept apart from the export)")
    .action(async (file: string, o) => {
      let exported: ExportedLog;
      try {
        exported = JSON.parse(readableFile(file, 'the export')) as ExportedLog;
      } catch (e) {
        if (e instanceof CliError) throw e;
        throw usageError(`cannot read ${file} as JSON: ${(e as Error).message}`);
      }
      const result = await verifyExportedLog(exported, jwksFile(o.jwks)).catch(verificationError(g()));
      out(
        g().json
          ? JSON.stringify(result, null, 2) + '\n'
          : `${result.checkpoint.tenant}: ${result.entriesChecked} entries re-hashed; they add up to the root signed at ${result.checkpoint.time} (key ${result.checkpoint.kid})\nverified\n`,
      );
    });
  audit
    .command('verify')
    .description('verify the log independently: checkpoint signature, consistency with an earlier checkpoint (--since), every entry (--entries), every consent event row (--records)')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--jwks <file>', "the tenant's public keys, pinned earlier (default: fetched from the server)")
    .option('--since <file>', 'an earlier signed checkpoint (from `audit checkpoint --out`): prove nothing before it was rewritten')
    .option('--entries', 're-hash every entry and recompute the root')
    .option('--records', 'also match every consent event row with its entry (detects rows changed, deleted, added or reordered in the database); implies --entries')
    .action(async (o) => {
      const target = logTarget(o);
      const since = o.since !== undefined ? readableFile(o.since, '--since').trim() : undefined;
      if (since !== undefined && !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(since)) {
        throw usageError(`--since: ${o.since} is not a signed checkpoint (a compact JWS, as written by audit checkpoint --out)`);
      }
      const result = await verifyAuditLog({ ...target, since, entries: Boolean(o.entries), records: Boolean(o.records) }).catch(verificationError(g()));
      const lines = [`checkpoint: ${result.checkpoint.treeSize} entries, root ${result.checkpoint.rootHash}, signature verified`];
      if (result.consistentWith) lines.push(`consistent with the earlier checkpoint of ${result.consistentWith.treeSize} entries: nothing before it was rewritten`);
      if (result.entriesChecked !== undefined) lines.push(`${result.entriesChecked} entries re-hashed; they add up to the signed root`);
      if (result.recordsChecked !== undefined) lines.push(`${result.recordsChecked} consent event rows match their entries, in order; no entry lacks its row`);
      out(g().json ? JSON.stringify(result, null, 2) + '\n' : lines.join('\n') + '\nverified\n');
    });
  return Object.assign(program, { active: () => activeCommand ?? program });
}

/** Writes a failure to stderr: the message, then each decoded detail indented under it. */
function report(err: CliError): void {
  process.stderr.write(`consentctl: ${err.message}\n${err.details.map((d) => `  ${d}\n`).join('')}`);
}

/** Runs consentctl with `argv` (without node and the script) and returns its exit code (exit-codes.ts). */
export async function runConsentctl(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too; every other commander error is a usage error whose
      // message and usage commander has already printed.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.OK : EXIT.USAGE;
    }
    if (err instanceof CliError && err.exitCode === EXIT.USAGE) {
      // The same form as commander's own usage errors: the message, then the command's usage.
      try {
        program.active().error(`error: ${err.message}`, { exitCode: EXIT.USAGE, code: 'consentctl.usage' });
      } catch {
        // error() prints and then throws (exitOverride): the exit code is ours.
      }
      return EXIT.USAGE;
    }
    if (err instanceof CliError) {
      report(err);
      return err.exitCode;
    }
    if (isServiceError(err)) {
      const failure = grpcFailure(err, program.opts<GlobalOptions>().address);
      report(failure);
      return failure.exitCode;
    }
    report(new CliError((err as Error)?.message ?? String(err), EXIT.FAILED));
    return EXIT.FAILED;
  }
}

if (require.main === module) {
  endQuietlyWhenReaderLeaves();
  runConsentctl(process.argv.slice(2)).then((code) => process.exit(code));
}

/** `requests create --new-*`: the correct identifier of a rectification (the same kind as the old one). */
function rectifiedIdentifier(o: { newPhone?: string; newEmail?: string; newCustomerId?: string; region?: string }): SubjectIdentifier | undefined {
  if (o.newPhone === undefined && o.newEmail === undefined && o.newCustomerId === undefined) return undefined;
  try {
    return identifier({ phone: o.newPhone, email: o.newEmail, customerId: o.newCustomerId, region: o.newPhone !== undefined ? o.region : undefined });
  } catch (err) {
    // The same checks as the person's identifier, named by the flags of the new one.
    if (err instanceof CliError) throw usageError(err.message.replace('--phone', '--new-phone').replace('--email', '--new-email').replace('--customer-id', '--new-customer-id'));
    throw err;
  }
}
