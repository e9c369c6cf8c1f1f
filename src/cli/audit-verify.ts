import { ChannelCredentials, Metadata, ServiceError } from '@grpc/grpc-js';
import { AuditServiceClient, ConsentRecord, ListAuditEntriesRequest } from '../gen/consent/v1/audit';
import { Channel } from '../gen/consent/v1/common';
import { ConsentEventKind } from '../gen/consent/v1/consent';
import { KeyServiceClient } from '../gen/consent/v1/key';
import { leafHash, ProofError, rootFromLeafHashes, verifyConsistency, verifyInclusion } from '../audit/merkle';
import { AuditEntry } from '../audit/audit-types';
import { verifyReceipt } from './verify-receipt';

/** What a verified checkpoint says, taken from its signed payload only. */
export interface VerifiedCheckpoint {
  tenant: string;
  treeSize: number;
  rootHash: string;
  time: string;
  kid: string;
}

export interface AuditVerification {
  checkpoint: VerifiedCheckpoint;
  /** The checkpoint as signed (compact JWS). */
  signedCheckpoint: string;
  /** Set when an earlier checkpoint was given: it is a prefix of the current one. */
  consistentWith?: VerifiedCheckpoint;
  /** Set with `entries`: every entry re-hashed and the root recomputed. */
  entriesChecked?: number;
  /** Set with `records`: consent event rows matched one to one, in order, with their entries. */
  recordsChecked?: number;
}

/** An audit entry's fields as the verifier reads them: the entry as appended, plus position and tenant. */
export type EntryFields = AuditEntry & { seq: number; tenant: string };

const CONSENT_EVENT = 'CONSENT_EVENT_';

/** A consent event row's name split into its ids. */
export function recordIds(record: ConsentRecord): { subject: string; event: string; purpose: string } {
  const [, , , subject, , event] = record.name.split('/');
  return { subject, event, purpose: record.purpose.split('/').pop() ?? '' };
}

/**
 * The first field in which a consent event row differs from the audit entry that vouches for it,
 * or null when they agree. The row's hash covers every column the listing does not show.
 */
export function recordMismatch(record: ConsentRecord, entry: EntryFields): string | null {
  const ids = recordIds(record);
  const ms = (d?: Date) => (d ? d.getTime() : undefined);
  const checks: Array<[string, unknown, unknown]> = [
    ['kind', `${CONSENT_EVENT}${(ConsentEventKind[record.kind] ?? '').replace('CONSENT_EVENT_KIND_', '')}`, entry.type],
    ['subject', ids.subject, entry.subject],
    ['purpose', ids.purpose, entry.purpose],
    ['channel', (Channel[record.channel] ?? '').replace('CHANNEL_', ''), entry.channel],
    ['event time', ms(record.eventTime), entry.eventTime],
    ['record time', ms(record.recordTime), entry.time],
    ['expiry', ms(record.expireTime), entry.expireTime],
    ['stored row (record hash)', record.recordSha256, entry.recordSha256],
  ];
  const differing = checks.find(([, row, logged]) => row !== logged);
  return differing ? differing[0] : null;
}

export class VerificationFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VerificationFailure';
  }
}

/** Verifies a checkpoint JWS with the tenant's JWK set and returns its signed content. */
export async function verifyCheckpoint(jws: string, jwks: string): Promise<VerifiedCheckpoint> {
  let verified;
  try {
    verified = await verifyReceipt(jws, jwks);
  } catch (err) {
    throw new VerificationFailure(`checkpoint signature does not verify: ${(err as Error).message}`);
  }
  const p = verified.payload as { tenant?: string; treeSize?: number; rootHash?: string; time?: string };
  if (typeof p.treeSize !== 'number' || typeof p.rootHash !== 'string' || !/^[0-9a-f]{64}$/.test(p.rootHash)) {
    throw new VerificationFailure('checkpoint payload is not a tree size and root hash');
  }
  return { tenant: String(p.tenant), treeSize: p.treeSize, rootHash: p.rootHash, time: String(p.time), kid: verified.kid };
}

type Unary<Req, Res> = (req: Req, md: Metadata, opts: object, cb: (err: ServiceError | null, res: Res) => void) => unknown;

/**
 * Independent verification of a tenant's audit log: trusts only the JWK set it is given (pin it
 * from an earlier GetPublicKeys) and checks everything the server returns: the checkpoint's
 * signature, the consistency proof from an earlier checkpoint, and (with `entries`) every entry's
 * leaf hash and the root recomputed from all of them. Names the first entry that does not fit.
 */
export async function verifyAuditLog(options: {
  address: string;
  credentials: ChannelCredentials;
  metadata: Metadata;
  tenant: string;
  jwks?: string;
  since?: string;
  entries?: boolean;
  /** Also cross-check every consent event row with its entry (implies `entries`). */
  records?: boolean;
  /** Filled with every verified entry (implies `entries`): for `consentctl audit export`. */
  collect?: ExportedEntry[];
}): Promise<AuditVerification> {
  const audit = new AuditServiceClient(options.address, options.credentials, { 'grpc.max_receive_message_length': AUDIT_ANSWER_BYTES });
  const keys = new KeyServiceClient(options.address, options.credentials);
  const rpc = <Req, Res>(client: object, method: Unary<Req, Res>, req: Req) =>
    new Promise<Res>((resolve, reject) => method.call(client, req, options.metadata, { deadline: Date.now() + 60_000 }, (e, r) => (e ? reject(e) : resolve(r))));
  try {
    const parent = `tenants/${options.tenant}`;
    const jwks = options.jwks ?? (await rpc(keys, keys.getPublicKeys, { name: parent })).jwks;
    const { checkpoint } = await rpc(audit, audit.getCheckpoint, { parent });
    const current = await verifyCheckpoint(checkpoint!.signedCheckpoint, jwks);
    if (current.tenant !== parent) throw new VerificationFailure(`checkpoint is for ${current.tenant}, not ${parent}`);
    const result: AuditVerification = { checkpoint: current, signedCheckpoint: checkpoint!.signedCheckpoint };

    if (options.since) {
      const earlier = await verifyCheckpoint(options.since, jwks);
      if (earlier.tenant !== parent) throw new VerificationFailure(`the earlier checkpoint is for ${earlier.tenant}`);
      if (earlier.treeSize > current.treeSize) throw new VerificationFailure(`the log shrank from ${earlier.treeSize} to ${current.treeSize} entries`);
      const { hashes } = await rpc(audit, audit.getConsistencyProof, { parent, firstSize: earlier.treeSize, secondSize: current.treeSize });
      try {
        verifyConsistency(BigInt(earlier.treeSize), BigInt(current.treeSize), hashes.map(hex), hex(earlier.rootHash), hex(current.rootHash));
      } catch (err) {
        if (err instanceof ProofError) throw new VerificationFailure(`the log was rewritten since the checkpoint of size ${earlier.treeSize}: ${err.message}`);
        throw err;
      }
      result.consistentWith = earlier;
    }

    if (options.entries || options.records || options.collect) {
      const leaves: Buffer[] = [];
      const eventEntries = new Map<string, EntryFields>();
      let indexProblem: { index: number; problem: string } | null = null;
      let next = 0;
      while (next < current.treeSize) {
        const page = await rpc(audit, audit.listAuditEntries, ListAuditEntriesRequest.fromPartial({ parent, startIndex: next, pageSize: 500 }));
        if (page.entries.length === 0) break;
        for (const e of page.entries) {
          leaves.push(rehash(e, leaves.length));
          if (e.indexProblem && !indexProblem) indexProblem = { index: e.index, problem: e.indexProblem };
          options.collect?.push({ index: e.index, entryJson: e.entryJson, leafHash: e.leafHash });
          const fields = JSON.parse(e.entryJson) as EntryFields;
          if (options.records && fields.type.startsWith(CONSENT_EVENT) && fields.ref) eventEntries.set(fields.ref, fields);
          if (leaves.length === current.treeSize) break;
        }
        next = leaves.length;
      }
      if (leaves.length < current.treeSize) throw new VerificationFailure(`the log holds ${leaves.length} entries, the checkpoint says ${current.treeSize}`);
      if (!rootFromLeafHashes(leaves).equals(hex(current.rootHash))) {
        // Locate the first entry the signed root does not vouch for.
        for (let i = 0; i < leaves.length; i++) {
          const { hashes } = await rpc(audit, audit.getInclusionProof, { parent, index: i, treeSize: current.treeSize });
          try {
            verifyInclusion(BigInt(i), BigInt(current.treeSize), leaves[i], hashes.map(hex), hex(current.rootHash));
          } catch {
            throw new VerificationFailure(`entry ${i} does not belong to the signed tree: the log was altered at or before it`);
          }
        }
        throw new VerificationFailure('the entries do not add up to the signed root');
      }
      // The entries are the signed ones; the columns the service finds them by in filtered listings
      // are not hashed, and the service reports where they disagree with an entry.
      if (indexProblem) {
        throw new VerificationFailure(`entry ${indexProblem.index}: ${indexProblem.problem}: the log's index was changed behind the service, so filtered listings (a person's history, audit explain) may miss this entry`);
      }
      result.entriesChecked = leaves.length;
      if (options.records) result.recordsChecked = await crossCheckRecords(audit, rpc, parent, eventEntries, current.treeSize);
    }
    return result;
  } finally {
    audit.close();
    keys.close();
  }
}

/** One entry as exported: the exact hashed bytes and the leaf hash. */
export interface ExportedEntry {
  index: number;
  entryJson: string;
  leafHash: string;
}

/** What `consentctl audit export` writes: a signed checkpoint and every entry it covers. */
export interface ExportedLog {
  format: typeof EXPORT_FORMAT;
  tenant: string;
  checkpoint: string;
  entries: ExportedEntry[];
}

export const EXPORT_FORMAT = 'consent-ledger-audit-log/1';

/** Largest answer the audit commands take (an explanation of a long history is several MB). */
export const AUDIT_ANSWER_BYTES = 64 * 1024 * 1024;

/** Re-hashes a listed entry expected at `position`; names it when it is out of place or altered. */
function rehash(e: ExportedEntry, position: number): Buffer {
  if (e.index !== position) throw new VerificationFailure(`entry ${position} is missing or out of order (got index ${e.index})`);
  const recomputed = leafHash(Buffer.from(e.entryJson, 'utf8'));
  if (recomputed.toString('hex') !== e.leafHash) throw new VerificationFailure(`entry ${e.index} was altered: its content does not match its leaf hash`);
  return recomputed;
}

/**
 * Verifies an exported log with no server at all: the checkpoint's signature against the given
 * keys, every entry's leaf hash, and the root recomputed from all of them.
 */
export async function verifyExportedLog(exported: ExportedLog, jwks: string): Promise<AuditVerification> {
  if (exported?.format !== EXPORT_FORMAT || !Array.isArray(exported.entries) || typeof exported.checkpoint !== 'string') {
    throw new VerificationFailure(`not an audit log export (format ${EXPORT_FORMAT})`);
  }
  const checkpoint = await verifyCheckpoint(exported.checkpoint, jwks);
  if (checkpoint.tenant !== `tenants/${exported.tenant}`) throw new VerificationFailure(`the checkpoint is for ${checkpoint.tenant}, not tenants/${exported.tenant}`);
  if (exported.entries.length !== checkpoint.treeSize) throw new VerificationFailure(`the export holds ${exported.entries.length} entries, the checkpoint says ${checkpoint.treeSize}`);
  const leaves = exported.entries.map((e, i) => rehash(e, i));
  if (!rootFromLeafHashes(leaves).equals(hex(checkpoint.rootHash))) {
    throw new VerificationFailure('the entries do not add up to the signed root: an entry was changed together with its leaf hash, or entries were reordered');
  }
  return { checkpoint, signedCheckpoint: exported.checkpoint, entriesChecked: leaves.length };
}

type Rpc = <Req, Res>(client: object, method: Unary<Req, Res>, req: Req) => Promise<Res>;

/**
 * Every consent event row against the verified entries: each row needs an entry that says the
 * same, in the same order, and each entry needs its row. Rows are listed after the checkpoint
 * was fetched, so an event recorded in between may have its entry beyond the checkpoint: it is
 * looked up there (leaf hash checked) rather than reported.
 */
async function crossCheckRecords(audit: AuditServiceClient, rpc: Rpc, parent: string, entries: Map<string, EntryFields>, treeSize: number): Promise<number> {
  const seen = new Set<string>();
  let lastSeq = -1;
  let lastEvent = '';
  let pageToken = '';
  let checked = 0;
  do {
    const page = await rpc(audit, audit.listConsentRecords, { parent, pageSize: 500, pageToken });
    for (const record of page.records) {
      const { event } = recordIds(record);
      let entry = entries.get(event);
      if (!entry) {
        entry = await findLaterEntry(audit, rpc, parent, recordIds(record).subject, event, treeSize);
        if (!entry) throw new VerificationFailure(`consent event ${record.name} has no audit entry: the row was added to the event table behind the service`);
        continue;
      }
      const field = recordMismatch(record, entry);
      if (field) throw new VerificationFailure(`consent event ${record.name} does not match audit entry ${entry.seq} (${field}): the row was rewritten`);
      if (entry.seq < lastSeq) throw new VerificationFailure(`consent events ${lastEvent} and ${record.name} are out of recording order (audit entries ${lastSeq} and ${entry.seq}): rows were reordered`);
      lastSeq = entry.seq;
      lastEvent = record.name;
      seen.add(event);
      checked++;
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  for (const [event, entry] of entries) {
    if (!seen.has(event)) throw new VerificationFailure(`audit entry ${entry.seq} vouches for consent event ${event} (subject ${entry.subject}), which is missing from the event table: the row was deleted`);
  }
  return checked;
}

/** The entry of `event` appended after the checkpoint, if there is one (its leaf hash checked). */
async function findLaterEntry(audit: AuditServiceClient, rpc: Rpc, parent: string, subject: string, event: string, from: number): Promise<EntryFields | undefined> {
  if (!/^[0-9a-f]{32}$/.test(subject)) return undefined;
  const page = await rpc(audit, audit.listAuditEntries, ListAuditEntriesRequest.fromPartial({ parent, startIndex: from, pageSize: 500, subject: `${parent}/subjects/${subject}` }));
  for (const e of page.entries) {
    const fields = JSON.parse(e.entryJson) as EntryFields;
    if (fields.ref === event && leafHash(Buffer.from(e.entryJson, 'utf8')).toString('hex') === e.leafHash) return fields;
  }
  return undefined;
}

function hex(value: string): Buffer {
  return Buffer.from(value, 'hex');
}
