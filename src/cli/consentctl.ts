#!/usr/bin/env node
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { ChannelCredentials, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import { Channel as PbChannel, PurposeCategory, SubjectIdentifier } from '../gen/consent/v1/common';
import { KeyServiceClient } from '../gen/consent/v1/key';
import {
  CreateRequestRequest,
  DataSubjectRequest,
  ExportSubjectDataResponse,
  LegalHold,
  LegalHoldGround,
  ListRequestsRequest,
  ReceivedVia,
  RequestKind,
  RequestState,
  SubjectRightsServiceClient,
} from '../gen/consent/v1/subject_rights';
import { Status } from '../gen/google/rpc/status';
import { ErrorInfo } from '../gen/google/rpc/error_details';
import { renderTable } from './table';
import { verifyReceipt } from './verify-receipt';
import { EntryFields, EXPORT_FORMAT, ExportedEntry, ExportedLog, VerificationFailure, verifyAuditLog, verifyCheckpoint, verifyExportedLog } from './audit-verify';
import { sendChannelOf, verifyExplanation } from './explain-verify';
import { AuditServiceClient, ListAuditEntriesRequest } from '../gen/consent/v1/audit';
import { leafHash } from '../audit/merkle';
import { TENANT_ID } from '../domain/resource-names';

/**
 * consentctl: the command line of data-protection officers and auditors. Human-readable
 * tables by default, --json for scripts. Exit codes: 0 done, 1 refused by the service (the
 * reason is printed), 2 usage error, 3 service unreachable, 4 a signature or hash did not verify.
 */
const EXIT = { OK: 0, REFUSED: 1, USAGE: 2, UNREACHABLE: 3, UNVERIFIED: 4 } as const;

class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface Globals {
  address: string;
  token?: string;
  json?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
}

/** TLS when a CA (or a client certificate) is given; plaintext only for a development server. */
function channelCredentials(g: Globals): ChannelCredentials {
  if (!g.ca && !g.cert && !g.key) return credentials.createInsecure();
  if (Boolean(g.cert) !== Boolean(g.key)) throw new CliError('give --cert and --key together', EXIT.USAGE);
  const read = (file: string | undefined, flag: string) => {
    if (!file) return null;
    try {
      return readFileSync(file);
    } catch (e) {
      throw new CliError(`${flag}: cannot read ${file} (${(e as Error).message})`, EXIT.USAGE);
    }
  };
  return credentials.createSsl(read(g.ca, '--ca'), read(g.key, '--key'), read(g.cert, '--cert'));
}

function clients(g: Globals) {
  const creds = channelCredentials(g);
  return { rights: new SubjectRightsServiceClient(g.address, creds), keys: new KeyServiceClient(g.address, creds) };
}

function metadata(g: Globals): Metadata {
  const md = new Metadata();
  if (g.token) md.set('authorization', `Bearer ${g.token}`);
  return md;
}

type Unary<Req, Res> = (req: Req, md: Metadata, opts: object, cb: (err: ServiceError | null, res: Res) => void) => unknown;

function rpc<Req, Res>(client: object, method: Unary<Req, Res>, req: Req, g: Globals): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, metadata(g), { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(toCliError(err)) : resolve(res)));
  });
}

function toCliError(err: ServiceError): CliError {
  if (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED) {
    return new CliError(`the service is unreachable (${status[err.code]}: ${err.details})`, EXIT.UNREACHABLE);
  }
  let reason = '';
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (bin instanceof Buffer) {
    const info = Status.decode(bin).details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
    if (info) reason = ` [${ErrorInfo.decode(info.value).reason}]`;
  }
  return new CliError(`refused: ${status[err.code]}${reason}: ${err.details}`, EXIT.REFUSED);
}

function identifier(o: { phone?: string; email?: string; customerId?: string; region?: string }): SubjectIdentifier {
  const given = [o.phone, o.email, o.customerId].filter(Boolean).length;
  if (given !== 1) throw new CliError('give exactly one of --phone, --email, --customer-id', EXIT.USAGE);
  const kind = o.phone
    ? { $case: 'phoneNumber' as const, value: o.phone }
    : o.email
      ? { $case: 'email' as const, value: o.email }
      : { $case: 'customerId' as const, value: o.customerId! };
  return { kind, defaultRegion: o.region ?? '' };
}

function enumValue<E extends Record<string, string | number>>(e: E, prefix: string, value: string, flag: string): E[keyof E] {
  const key = `${prefix}${value.toUpperCase().replace(/-/g, '_')}`;
  if (!(key in e)) {
    const choices = Object.keys(e).filter((k) => k.startsWith(prefix) && !k.endsWith('UNSPECIFIED')).map((k) => k.slice(prefix.length).toLowerCase());
    throw new CliError(`${flag} must be one of ${choices.join(', ')}`, EXIT.USAGE);
  }
  return e[key as keyof E];
}

const shortEnum = (e: Record<number, string>, prefix: string, v: number) => (e[v] ?? '').replace(prefix, '').toLowerCase();
const iso = (d?: Date) => (d ? d.toISOString().replace('.000Z', 'Z') : '');

function printRequests(requests: DataSubjectRequest[], g: Globals): void {
  if (g.json) return void process.stdout.write(JSON.stringify(requests.map((r) => DataSubjectRequest.toJSON(r)), null, 2) + '\n');
  process.stdout.write(
    renderTable(
      ['REQUEST', 'KIND', 'STATE', 'RECEIVED', 'DUE', 'OVERDUE'],
      requests.map((r) => [r.name, shortEnum(RequestKind, 'REQUEST_KIND_', r.kind), shortEnum(RequestState, 'REQUEST_STATE_', r.state), iso(r.receiveTime), iso(r.dueTime), r.overdue ? 'OVERDUE' : '']),
    ),
  );
}

function printRequest(r: DataSubjectRequest, g: Globals): void {
  if (g.json) return void process.stdout.write(JSON.stringify(DataSubjectRequest.toJSON(r), null, 2) + '\n');
  printRequests([r], g);
  if (r.extensionReason) process.stdout.write(`\nextended: ${r.extensionReason}\n`);
  if (r.rejectionReason) process.stdout.write(`\nrejected: ${r.rejectionReason}\n`);
  process.stdout.write(
    '\n' + renderTable(['WHEN', 'STATE', 'BY', 'NOTE'], r.transitions.map((t) => [iso(t.time), shortEnum(RequestState, 'REQUEST_STATE_', t.toState), t.principal, t.note])),
  );
}

function printHolds(holds: LegalHold[], g: Globals): void {
  if (g.json) return void process.stdout.write(JSON.stringify(holds.map((h) => LegalHold.toJSON(h)), null, 2) + '\n');
  process.stdout.write(
    renderTable(
      ['HOLD', 'SUBJECT', 'GROUND', 'PLACED', 'RELEASED', 'NOTE'],
      holds.map((h) => [h.name, h.subject, shortEnum(LegalHoldGround, 'LEGAL_HOLD_GROUND_', h.ground), iso(h.placeTime), iso(h.releaseTime), h.note]),
    ),
  );
}

async function listAll(g: Globals, req: ListRequestsRequest): Promise<DataSubjectRequest[]> {
  const { rights } = clients(g);
  const all: DataSubjectRequest[] = [];
  let pageToken = '';
  do {
    const page = await rpc(rights, rights.listRequests, { ...req, pageToken }, g);
    all.push(...page.requests);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

/** A failed verification exits 4; a refusal by the service is reported as one. */
function verificationError(e: Error): never {
  if (e instanceof VerificationFailure) throw new CliError(`VERIFICATION FAILED: ${e.message}`, EXIT.UNVERIFIED);
  if ((e as unknown as ServiceError).code !== undefined) throw toCliError(e as unknown as ServiceError);
  throw e;
}

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new CliError(`${flag} must be a positive whole number`, EXIT.USAGE);
  return n;
}

function nonNegativeInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`${flag} must be a whole number, 0 or more`, EXIT.USAGE);
  return n;
}

function isoTime(value: string, flag: string): Date {
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(d.getTime())) throw new CliError(`${flag} must be an ISO 8601 time such as 2026-11-25T10:00:00Z`, EXIT.USAGE);
  return d;
}

const isoMs = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

function tenantName(tenant: string): string {
  if (!TENANT_ID.test(tenant)) throw new CliError('--tenant must be a tenant id such as "acme"', EXIT.USAGE);
  return `tenants/${tenant}`;
}

export function buildProgram(): Command {
  const program = new Command('consentctl')
    .description("The command line of data-protection officers and auditors for Consent Ledger: data-subject requests, exports, erasures, legal holds; the audit log, its checkpoints and explained decisions.")
    .addOption(new Option('--address <host:port>', 'the Consent Ledger server').env('CONSENT_ADDRESS').default('127.0.0.1:50051'))
    .addOption(new Option('--token <token>', 'bearer token (JWT) for a server with authentication').env('CONSENT_TOKEN'))
    .addOption(new Option('--ca <file>', "CA certificate (PEM) to verify a TLS server; turns TLS on (default: the system's CAs with --cert)").env('CONSENT_CA'))
    .addOption(new Option('--cert <file>', 'client certificate (PEM) for mutual TLS').env('CONSENT_CERT'))
    .addOption(new Option('--key <file>', "the client certificate's private key (PEM)").env('CONSENT_KEY'))
    .option('--json', 'machine-readable JSON instead of tables')
    // Set before the subcommands are made, so they inherit it: usage errors exit 2, not 1.
    .exitOverride()
    .showHelpAfterError()
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 refused by the service, 2 usage error, 3 service unreachable, 4 signature or hash did not verify.\n' +
        'Typical flow: requests create -> requests verify -> export (ACCESS/PORTABILITY) or erase (ERASURE); requests overdue every morning.\n' +
        'Auditors: audit checkpoint --out cp.jws (keep it) -> later audit verify --since cp.jws --records; audit explain for a past decision; audit history for who did what.',
    );
  const g = () => program.opts<Globals>();
  const who = (c: Command) =>
    c
      .option('--phone <number>', 'phone number (E.164, or national with --region)')
      .option('--email <address>', 'e-mail address')
      .option('--customer-id <id>', "the tenant's customer id")
      .option('--region <CC>', 'region for national phone numbers, e.g. DE');

  const requests = program.command('requests').description('data-subject requests (Art. 15, 17, 20)');
  who(requests.command('create').description('register a request as received (deadline: one calendar month)'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--kind <kind>', 'access, portability or erasure')
    .option('--received-via <channel>', 'email, web-form, letter, phone, in-person, chat, other', 'email')
    .option('--received-at <iso-time>', 'when it was received (default: now)')
    .option('--request-id <id>', 'idempotency key (default: random)')
    .action(async (o) => {
      const { rights } = clients(g());
      const receivedAt = o.receivedAt ? new Date(o.receivedAt) : undefined;
      if (receivedAt && Number.isNaN(receivedAt.getTime())) throw new CliError('--received-at must be an ISO time', EXIT.USAGE);
      const res = await rpc(rights, rights.createRequest, CreateRequestRequest.fromPartial({
        parent: tenantName(o.tenant),
        kind: enumValue(RequestKind, 'REQUEST_KIND_', o.kind, '--kind'),
        subjectIdentifier: identifier(o),
        receivedVia: enumValue(ReceivedVia, 'RECEIVED_VIA_', o.receivedVia, '--received-via'),
        receiveTime: receivedAt,
        requestId: o.requestId ?? `consentctl-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`,
      }), g());
      printRequest(res.request!, g());
    });
  requests.command('get <name>').description('one request and its history').action(async (name: string) => {
    const { rights } = clients(g());
    printRequest((await rpc(rights, rights.getRequest, { name }, g())).request!, g());
  });
  requests
    .command('list')
    .description('requests, newest first')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--state <state>', 'received, verified, in-progress, completed, rejected')
    .option('--kind <kind>', 'access, portability, erasure')
    .option('--overdue', 'only overdue requests')
    .option('--due-before <iso-time>', 'only open requests due before this time')
    .action(async (o) => {
      printRequests(await listAll(g(), ListRequestsRequest.fromPartial({
        parent: tenantName(o.tenant),
        state: o.state ? enumValue(RequestState, 'REQUEST_STATE_', o.state, '--state') : 0,
        kind: o.kind ? enumValue(RequestKind, 'REQUEST_KIND_', o.kind, '--kind') : 0,
        overdue: Boolean(o.overdue),
        dueBefore: o.dueBefore ? new Date(o.dueBefore) : undefined,
        pageSize: 500,
      })), g());
    });
  requests
    .command('overdue')
    .description('open requests past their deadline, and those due within --days (default 7)')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--days <n>', 'also list requests due within this many days', '7')
    .action(async (o) => {
      const days = Number(o.days);
      if (!Number.isInteger(days) || days < 0) throw new CliError('--days must be a whole number', EXIT.USAGE);
      printRequests(await listAll(g(), ListRequestsRequest.fromPartial({ parent: tenantName(o.tenant), dueBefore: new Date(Date.now() + days * 86_400_000), pageSize: 500 })), g());
    });
  requests.command('verify <name>').description('record that the requester\'s identity was verified')
    .requiredOption('--method <method>', 'e.g. ID_DOCUMENT, EMAIL_CONFIRMATION')
    .requiredOption('--by <staff>', 'who verified it')
    .action(async (name: string, o) => {
      const { rights } = clients(g());
      printRequest((await rpc(rights, rights.verifyIdentity, { name, method: o.method, verifiedBy: o.by }, g())).request!, g());
    });
  requests.command('extend <name>').description('extend the deadline once by 1 or 2 months (Art. 12(3))')
    .requiredOption('--months <n>', '1 or 2')
    .requiredOption('--reason <text>', 'why (the person must be told)')
    .action(async (name: string, o) => {
      const { rights } = clients(g());
      printRequest((await rpc(rights, rights.extendDeadline, { name, months: Number(o.months), reason: o.reason }, g())).request!, g());
    });
  requests.command('reject <name>').description('reject a request, with a reason').requiredOption('--reason <text>', 'why')
    .action(async (name: string, o) => {
      const { rights } = clients(g());
      printRequest((await rpc(rights, rights.rejectRequest, { name, reason: o.reason }, g())).request!, g());
    });

  program
    .command('export <name>')
    .description('export a verified ACCESS/PORTABILITY request: writes package.json, package.html and manifest.jws, and verifies them')
    .requiredOption('--out <dir>', 'folder to write the files to')
    .action(async (name: string, o) => {
      const { rights, keys } = clients(g());
      mkdirSync(o.out, { recursive: true });
      const pkg: Buffer[] = [];
      const html: Buffer[] = [];
      let manifest: { packageSha256: string; htmlSha256: string; events: number; signedManifest: string } | undefined;
      await new Promise<void>((resolve, reject) => {
        const stream = rights.exportSubjectData({ name }, metadata(g()));
        stream.on('data', (p: ExportSubjectDataResponse) => {
          const part = p.part!;
          if (part.$case === 'progress' && !g().json) process.stderr.write(`\rexporting: ${part.value.eventsDone}/${part.value.eventsTotal}`);
          if (part.$case === 'packageChunk') pkg.push(part.value);
          if (part.$case === 'htmlChunk') html.push(part.value);
          if (part.$case === 'manifest') manifest = part.value;
        });
        stream.on('error', (err: ServiceError) => reject(toCliError(err)));
        stream.on('end', () => resolve());
      });
      if (!g().json) process.stderr.write('\n');
      if (!manifest) throw new CliError('the export ended without a manifest', EXIT.UNVERIFIED);
      const files = { package: path.join(o.out, 'package.json'), html: path.join(o.out, 'package.html'), manifest: path.join(o.out, 'manifest.jws') };
      writeFileSync(files.package, Buffer.concat(pkg));
      writeFileSync(files.html, Buffer.concat(html));
      writeFileSync(files.manifest, manifest.signedManifest + '\n');
      const tenant = name.split('/').slice(0, 2).join('/');
      const jwks = (await rpc(keys, keys.getPublicKeys, { name: tenant }, g())).jwks;
      const signed = await verifyReceipt(manifest.signedManifest, jwks).catch(() => null);
      const hashes = {
        package: createHash('sha256').update(Buffer.concat(pkg)).digest('hex'),
        html: createHash('sha256').update(Buffer.concat(html)).digest('hex'),
      };
      const ok = signed !== null && signed.payload.packageSha256 === hashes.package && signed.payload.htmlSha256 === hashes.html;
      const summary = { request: name, events: manifest.events, files, packageSha256: hashes.package, verified: ok };
      process.stdout.write(g().json ? JSON.stringify(summary, null, 2) + '\n' : `${manifest.events} events exported to ${o.out}; signature and hashes ${ok ? 'verified' : 'DO NOT VERIFY'}\n`);
      if (!ok) throw new CliError('the export did not verify against the tenant\'s published keys', EXIT.UNVERIFIED);
    });

  program
    .command('erase <name>')
    .description('carry out a verified ERASURE request (irreversible) and print the signed erasure receipt')
    .option('--yes', 'do not ask for confirmation')
    .action(async (name: string, o) => {
      if (!o.yes) {
        if (!process.stdin.isTTY) throw new CliError('refusing to erase without confirmation: run in a terminal or pass --yes', EXIT.USAGE);
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question(`Erase the person of ${name}? This destroys their key and cannot be undone. Type "erase" to go on: `);
        rl.close();
        if (answer.trim() !== 'erase') throw new CliError('not erased', EXIT.USAGE);
      }
      const { rights, keys } = clients(g());
      const res = await rpc(rights, rights.eraseSubject, { name }, g());
      const tenant = name.split('/').slice(0, 2).join('/');
      const verified = await verifyReceipt(res.erasureReceipt, (await rpc(keys, keys.getPublicKeys, { name: tenant }, g())).jwks).catch(() => null);
      if (g().json) {
        process.stdout.write(JSON.stringify({ request: DataSubjectRequest.toJSON(res.request!), receipt: res.erasureReceipt, verified: verified !== null, payload: verified?.payload }, null, 2) + '\n');
      } else {
        printRequest(res.request!, g());
        process.stdout.write(`\nerasure receipt (${verified ? 'signature verified' : 'SIGNATURE DOES NOT VERIFY'}):\n${JSON.stringify(verified?.payload ?? {}, null, 2)}\n\n${res.erasureReceipt}\n`);
      }
      if (!verified) throw new CliError('the erasure receipt did not verify', EXIT.UNVERIFIED);
    });

  const holds = program.command('holds').description('legal holds (Art. 17(3)): block erasure while open');
  who(holds.command('place').description('place a legal hold on a person'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--ground <a-e>', 'Art. 17(3) ground: a (expression), b (legal obligation), c (public health), d (archiving/research), e (legal claims)')
    .option('--note <text>', 'why (no personal data)', '')
    .option('--request-id <id>', 'idempotency key (default: random)')
    .action(async (o) => {
      const grounds: Record<string, LegalHoldGround> = {
        a: LegalHoldGround.LEGAL_HOLD_GROUND_A_FREEDOM_OF_EXPRESSION,
        b: LegalHoldGround.LEGAL_HOLD_GROUND_B_LEGAL_OBLIGATION,
        c: LegalHoldGround.LEGAL_HOLD_GROUND_C_PUBLIC_HEALTH,
        d: LegalHoldGround.LEGAL_HOLD_GROUND_D_ARCHIVING_RESEARCH,
        e: LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS,
      };
      const ground = grounds[String(o.ground).toLowerCase()];
      if (!ground) throw new CliError('--ground must be one of a, b, c, d, e', EXIT.USAGE);
      const { rights } = clients(g());
      const res = await rpc(rights, rights.placeLegalHold, {
        parent: tenantName(o.tenant),
        subjectIdentifier: identifier(o),
        ground,
        note: o.note,
        requestId: o.requestId ?? `consentctl-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`,
      }, g());
      printHolds([res.hold!], g());
    });
  holds.command('release <name>').description('release a legal hold').requiredOption('--note <text>', 'why')
    .action(async (name: string, o) => {
      const { rights } = clients(g());
      printHolds([(await rpc(rights, rights.releaseLegalHold, { name, note: o.note }, g())).hold!], g());
    });
  who(holds.command('list').description('legal holds, newest first'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--include-released', 'released holds too')
    .action(async (o) => {
      const { rights } = clients(g());
      const filter = o.phone || o.email || o.customerId ? identifier(o) : undefined;
      const all: LegalHold[] = [];
      let pageToken = '';
      do {
        const page = await rpc(rights, rights.listLegalHolds, { parent: tenantName(o.tenant), subjectIdentifier: filter, includeReleased: Boolean(o.includeReleased), pageSize: 500, pageToken }, g());
        all.push(...page.holds);
        pageToken = page.nextPageToken;
      } while (pageToken);
      printHolds(all, g());
    });
  const auditClient = () => new AuditServiceClient(g().address, channelCredentials(g()));
  const jwksFor = async (tenant: string, file?: string) => {
    if (file) return readFileSync(file, 'utf8');
    const { keys } = clients(g());
    return (await rpc(keys, keys.getPublicKeys, { name: tenantName(tenant) }, g())).jwks;
  };
  /** The server, credentials, tenant and pinned keys an audit log verification works with. */
  const logTarget = (o: { tenant: string; jwks?: string }) => {
    tenantName(o.tenant);
    return { address: g().address, credentials: channelCredentials(g()), metadata: metadata(g()), tenant: o.tenant, jwks: o.jwks ? readFileSync(o.jwks, 'utf8') : undefined };
  };
  const audit = program
    .command('audit')
    .description("the auditor's tools: signed checkpoints, who did what, explained decisions, and independent verification of the audit log and the event rows")
    .addHelpText('after', '\nStart by saving the tenant\'s public keys (audit keys --out keys.json) and pass them as --jwks from then on: nothing is then taken on the server\'s word.');
  audit
    .command('keys')
    .description("fetch the tenant's public signing keys (JWK set) to pin for later verifications")
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--out <file>', 'where to write the JWK set')
    .action(async (o) => {
      const jwks = await jwksFor(o.tenant);
      writeFileSync(o.out, jwks + '\n');
      const kids = (JSON.parse(jwks) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
      process.stdout.write(g().json ? JSON.stringify({ file: o.out, kids }, null, 2) + '\n' : `wrote ${kids.length} public key(s) of tenants/${o.tenant} to ${o.out}: ${kids.join(', ')}\n`);
    });
  audit
    .command('checkpoint')
    .description('fetch and verify a signed checkpoint of the tenant\'s log (save it to check consistency later)')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--jwks <file>', 'the tenant\'s public keys, pinned earlier (default: fetched from the server)')
    .option('--out <file>', 'also write the signed checkpoint (JWS) to this file')
    .action(async (o) => {
      const client = auditClient();
      const res = await rpc(client, client.getCheckpoint, { parent: tenantName(o.tenant) }, g());
      client.close();
      const jwks = await jwksFor(o.tenant, o.jwks);
      const verified = await verifyCheckpoint(res.checkpoint!.signedCheckpoint, jwks).catch((e: Error) => {
        throw new CliError(e.message, EXIT.UNVERIFIED);
      });
      if (o.out) writeFileSync(o.out, res.checkpoint!.signedCheckpoint + '\n');
      process.stdout.write(g().json ? JSON.stringify(verified, null, 2) + '\n' : `${verified.tenant}: ${verified.treeSize} entries, root ${verified.rootHash} at ${verified.time} (signature verified, key ${verified.kid})\n`);
    });
  audit
    .command('checkpoints')
    .description('checkpoints the service signed on its own schedule (AUDIT_CHECKPOINT_INTERVAL_MS), newest first, each signature verified')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--jwks <file>', "the tenant's public keys, pinned earlier (default: fetched from the server)")
    .option('--limit <n>', 'at most this many', '20')
    .action(async (o) => {
      const client = auditClient();
      const limit = positiveInt(o.limit, '--limit');
      const page = await rpc(client, client.listCheckpoints, { parent: tenantName(o.tenant), pageSize: Math.min(limit, 500), pageToken: '' }, g());
      client.close();
      const jwks = await jwksFor(o.tenant, o.jwks);
      const rows = [];
      for (const c of page.checkpoints.slice(0, limit)) {
        const v = await verifyCheckpoint(c.signedCheckpoint, jwks).catch((e: Error) => {
          throw new CliError(e.message, EXIT.UNVERIFIED);
        });
        rows.push({ ...v, signed: c.signedCheckpoint });
      }
      if (g().json) return void process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      process.stdout.write(renderTable(['TREE SIZE', 'ROOT HASH', 'SIGNED', 'KEY'], rows.map((r) => [String(r.treeSize), r.rootHash, r.time, r.kid])));
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
      const filter = o.phone || o.email || o.customerId ? identifier(o) : undefined;
      const limit = positiveInt(o.limit, '--limit');
      const client = auditClient();
      const found: Array<{ index: number; fields: EntryFields; entryJson: string; leafHash: string }> = [];
      let next = nonNegativeInt(o.start, '--start');
      try {
        while (found.length < limit) {
          const page = await rpc(
            client,
            client.listAuditEntries,
            ListAuditEntriesRequest.fromPartial({
              parent,
              startIndex: next,
              pageSize: Math.min(500, limit - found.length),
              subjectIdentifier: filter,
              subject: o.subject ?? '',
              purpose: o.purpose ? `${parent}/purposes/${o.purpose}` : '',
              entryTypes: o.type ?? [],
              principal: o.principal ?? '',
              startTime: o.since ? isoTime(o.since, '--since') : undefined,
              endTime: o.until ? isoTime(o.until, '--until') : undefined,
            }),
            g(),
          );
          for (const e of page.entries) {
            if (leafHash(Buffer.from(e.entryJson, 'utf8')).toString('hex') !== e.leafHash) {
              throw new CliError(`VERIFICATION FAILED: entry ${e.index} was altered: its content does not match its leaf hash`, EXIT.UNVERIFIED);
            }
            found.push({ index: e.index, fields: JSON.parse(e.entryJson) as EntryFields, entryJson: e.entryJson, leafHash: e.leafHash });
          }
          if (page.entries.length === 0 || page.nextIndex <= next) break;
          next = page.nextIndex;
        }
      } finally {
        client.close();
      }
      if (g().json) return void process.stdout.write(JSON.stringify(found.map((f) => ({ index: f.index, entry: f.fields, leafHash: f.leafHash })), null, 2) + '\n');
      process.stdout.write(
        renderTable(
          ['INDEX', 'TIME', 'TYPE', 'PRINCIPAL', 'SUBJECT', 'PURPOSE', 'CHANNEL', 'REF'],
          found.map(({ index, fields: e }) => [String(index), isoMs(e.time), e.type, e.principal, e.subject ?? '', e.purpose ?? '', e.channel ?? '', e.ref ?? '']),
        ),
      );
      if (found.length >= limit) process.stdout.write(`(the first ${limit}; more with --start ${found[found.length - 1].index + 1})\n`);
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
      if (!channel) throw new CliError('--channel must be one of whatsapp, sms, email, push, voice', EXIT.USAGE);
      if (Boolean(o.purpose) === Boolean(o.category)) throw new CliError('give --purpose or --category', EXIT.USAGE);
      const category = o.category ? enumValue(PurposeCategory, 'PURPOSE_CATEGORY_', String(o.category), '--category') : PurposeCategory.PURPOSE_CATEGORY_UNSPECIFIED;
      const client = auditClient();
      const response = await rpc(
        client,
        client.explainDecision,
        {
          parent,
          query: {
            subjectIdentifier: identifier(o),
            purpose: o.purpose ? `${parent}/purposes/${o.purpose}` : '',
            category,
            channel: PbChannel[`CHANNEL_${channel}` as keyof typeof PbChannel],
            at: o.at ? isoTime(o.at, '--at') : undefined,
          },
        },
        g(),
      ).finally(() => client.close());
      const verified = await verifyExplanation(response, await jwksFor(o.tenant, o.jwks), { tenant: o.tenant, purposeId: o.purpose ?? null, channel }).catch(verificationError);
      if (g().json) return void process.stdout.write(JSON.stringify(verified, null, 2) + '\n');
      const lines = [
        `decision at ${verified.time}: ${verified.verdict} (${verified.reason})${verified.decidingEvent ? ` by ${verified.decidingEvent}` : ''}`,
        verified.subject ? `subject: ${verified.subject}` : 'subject: unknown to the tenant',
        `checkpoint: ${verified.checkpoint.treeSize} entries, root ${verified.checkpoint.rootHash}, signature verified (key ${verified.checkpoint.kid})`,
        '',
      ];
      process.stdout.write(lines.join('\n'));
      if (verified.entries.length > 0) {
        process.stdout.write(
          renderTable(
            ['INDEX', 'TYPE', 'PURPOSE', 'CHANNEL', 'EVENT TIME', 'RECORDED', 'EVENT'],
            verified.entries.map((e) => [String(e.index), e.type, e.purpose ?? '', e.channel ?? '', e.eventTime !== undefined ? isoMs(e.eventTime) : '', isoMs(e.time), e.event ?? '']),
          ),
        );
      }
      process.stdout.write(
        `\nverified: every entry is in the signed log, every event row matches its entry, and the rules replayed over the entries give the same decision ` +
          `(category ${verified.reportedByServer.category} and service window ${verified.reportedByServer.serviceWindowSeconds}s as reported by the service)\n`,
      );
    });
  audit
    .command('export')
    .description('write a signed checkpoint and every entry it covers to a file, verified on the way (check it later with verify-export)')
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--out <file>', 'where to write the export (JSON)')
    .option('--jwks <file>', "the tenant's public keys, pinned earlier (default: fetched from the server)")
    .action(async (o) => {
      const entries: ExportedEntry[] = [];
      const result = await verifyAuditLog({ ...logTarget(o), collect: entries }).catch(verificationError);
      const exported: ExportedLog = { format: EXPORT_FORMAT, tenant: o.tenant, checkpoint: result.signedCheckpoint, entries };
      writeFileSync(o.out, JSON.stringify(exported) + '\n');
      process.stdout.write(g().json ? JSON.stringify(result.checkpoint, null, 2) + '\n' : `wrote ${entries.length} entries and the checkpoint (root ${result.checkpoint.rootHash}) to ${o.out}\n`);
    });
  audit
    .command('verify-export <file>')
    .description('verify an export offline: the checkpoint signature against pinned keys, every entry, the root recomputed from all of them')
    .requiredOption('--jwks <file>', "the tenant's public keys (from KeyService.GetPublicKeys, kept apart from the export)")
    .action(async (file: string, o) => {
      let exported: ExportedLog;
      try {
        exported = JSON.parse(readFileSync(file, 'utf8')) as ExportedLog;
      } catch (e) {
        throw new CliError(`cannot read ${file} as JSON: ${(e as Error).message}`, EXIT.USAGE);
      }
      const result = await verifyExportedLog(exported, readFileSync(o.jwks, 'utf8')).catch(verificationError);
      process.stdout.write(
        g().json ? JSON.stringify(result, null, 2) + '\n' : `${result.checkpoint.tenant}: ${result.entriesChecked} entries re-hashed; they add up to the root signed at ${result.checkpoint.time} (key ${result.checkpoint.kid})\nverified\n`,
      );
    });
  audit
    .command('verify')
    .description('verify the log independently: checkpoint signature, consistency with an earlier checkpoint (--since), every entry (--entries), every consent event row (--records)')
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--jwks <file>', 'the tenant\'s public keys, pinned earlier (default: fetched from the server)')
    .option('--since <file>', 'an earlier signed checkpoint (from `audit checkpoint --out`): prove nothing before it was rewritten')
    .option('--entries', 're-hash every entry and recompute the root')
    .option('--records', 'also match every consent event row with its entry (detects rows changed, deleted, added or reordered in the database); implies --entries')
    .action(async (o) => {
      const result = await verifyAuditLog({
        ...logTarget(o),
        since: o.since ? readFileSync(o.since, 'utf8').trim() : undefined,
        entries: Boolean(o.entries),
        records: Boolean(o.records),
      }).catch(verificationError);
      const lines = [`checkpoint: ${result.checkpoint.treeSize} entries, root ${result.checkpoint.rootHash}, signature verified`];
      if (result.consistentWith) lines.push(`consistent with the earlier checkpoint of ${result.consistentWith.treeSize} entries: nothing before it was rewritten`);
      if (result.entriesChecked !== undefined) lines.push(`${result.entriesChecked} entries re-hashed; they add up to the signed root`);
      if (result.recordsChecked !== undefined) lines.push(`${result.recordsChecked} consent event rows match their entries, in order; no entry lacks its row`);
      process.stdout.write(g().json ? JSON.stringify(result, null, 2) + '\n' : lines.join('\n') + '\nverified\n');
    });
  return program;
}

export async function runConsentctl(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message: string };
    if (err instanceof CliError) {
      process.stderr.write(`consentctl: ${err.message}\n`);
      return err.exitCode;
    }
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.OK;
    if (e.code?.startsWith('commander.')) return EXIT.USAGE;
    process.stderr.write(`consentctl: ${e.message}\n`);
    return EXIT.REFUSED;
  }
}

if (require.main === module) {
  runConsentctl(process.argv.slice(2)).then((code) => process.exit(code));
}
