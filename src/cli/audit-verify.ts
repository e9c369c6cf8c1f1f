import { ChannelCredentials, Metadata, ServiceError } from '@grpc/grpc-js';
import { AuditServiceClient, ListAuditEntriesRequest } from '../gen/consent/v1/audit';
import { KeyServiceClient } from '../gen/consent/v1/key';
import { leafHash, ProofError, rootFromLeafHashes, verifyConsistency, verifyInclusion } from '../audit/merkle';
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
  /** Set when an earlier checkpoint was given: it is a prefix of the current one. */
  consistentWith?: VerifiedCheckpoint;
  /** Set with `entries`: every entry re-hashed and the root recomputed. */
  entriesChecked?: number;
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
}): Promise<AuditVerification> {
  const audit = new AuditServiceClient(options.address, options.credentials);
  const keys = new KeyServiceClient(options.address, options.credentials);
  const rpc = <Req, Res>(client: object, method: Unary<Req, Res>, req: Req) =>
    new Promise<Res>((resolve, reject) => method.call(client, req, options.metadata, { deadline: Date.now() + 60_000 }, (e, r) => (e ? reject(e) : resolve(r))));
  try {
    const parent = `tenants/${options.tenant}`;
    const jwks = options.jwks ?? (await rpc(keys, keys.getPublicKeys, { name: parent })).jwks;
    const { checkpoint } = await rpc(audit, audit.getCheckpoint, { parent });
    const current = await verifyCheckpoint(checkpoint!.signedCheckpoint, jwks);
    if (current.tenant !== parent) throw new VerificationFailure(`checkpoint is for ${current.tenant}, not ${parent}`);
    const result: AuditVerification = { checkpoint: current };

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

    if (options.entries) {
      const leaves: Buffer[] = [];
      let next = 0;
      while (next < current.treeSize) {
        const page = await rpc(audit, audit.listAuditEntries, ListAuditEntriesRequest.fromPartial({ parent, startIndex: next, pageSize: 500 }));
        if (page.entries.length === 0) break;
        for (const e of page.entries) {
          if (e.index !== leaves.length) throw new VerificationFailure(`entry ${leaves.length} is missing or out of order (got index ${e.index})`);
          const recomputed = leafHash(Buffer.from(e.entryJson, 'utf8'));
          if (recomputed.toString('hex') !== e.leafHash) throw new VerificationFailure(`entry ${e.index} was altered: its content does not match its leaf hash`);
          leaves.push(recomputed);
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
      result.entriesChecked = leaves.length;
    }
    return result;
  } finally {
    audit.close();
    keys.close();
  }
}

function hex(value: string): Buffer {
  return Buffer.from(value, 'hex');
}
