import { readFileSync } from 'node:fs';
import jose from 'node-jose';

/** Algorithms a receipt may be signed with; anything else (none, HS256 with a public key as secret...) is refused. */
const RECEIPT_ALGORITHMS = ['ES256'];
/** The receipts the service signs. */
const RECEIPT_TYPES = ['consent-receipt+jwt', 'erasure-receipt+jwt', 'export-manifest+jwt', 'audit-checkpoint+jwt'];

export interface VerifiedReceipt {
  kid: string;
  payload: Record<string, unknown>;
}

/** A receipt that is not what it claims: the message says which check failed. */
export class ReceiptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReceiptError';
  }
}

/**
 * Verifies a consent or erasure receipt offline: only the tenant's published JWK set (GetPublicKeys) and
 * the receipt are needed. Keys embedded in the token are never trusted. The header is read first so
 * that a failure says what failed: not a receipt at all, an algorithm or type not accepted, a key
 * the set does not hold, or a signature that does not verify (the receipt was altered).
 */
export async function verifyReceipt(receipt: string, jwksJson: string): Promise<VerifiedReceipt> {
  let jwks: { keys?: unknown[] };
  try {
    jwks = JSON.parse(jwksJson) as { keys?: unknown[] };
  } catch {
    throw new ReceiptError('the JWK set is not JSON');
  }
  if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) throw new ReceiptError('the JWK set holds no keys');
  const compact = receipt.trim();
  const parts = compact.split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p)) || !parts[0] || !parts[2]) {
    throw new ReceiptError('not a signed receipt: expected a compact JWS (three base64url parts separated by dots)');
  }
  let header: { alg?: unknown; typ?: unknown; kid?: unknown };
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as typeof header;
  } catch {
    throw new ReceiptError('not a signed receipt: its header is not JSON');
  }
  if (typeof header.alg !== 'string' || !RECEIPT_ALGORITHMS.includes(header.alg)) {
    throw new ReceiptError(`signed with algorithm ${JSON.stringify(header.alg ?? null)}; only ${RECEIPT_ALGORITHMS.join(', ')} is accepted`);
  }
  if (typeof header.typ !== 'string' || !RECEIPT_TYPES.includes(header.typ)) throw new ReceiptError('not a consent or erasure receipt (typ)');
  const publicOnly = jwks.keys.filter((k) => !(k as { d?: unknown }).d);
  const keystore = await jose.JWK.asKeyStore({ keys: publicOnly }).catch(() => {
    throw new ReceiptError('the JWK set holds a key that is not a valid JWK');
  });
  const kid = typeof header.kid === 'string' ? header.kid : '';
  if (!kid || keystore.all({ kid }).length === 0) {
    throw new ReceiptError(`the signature does not verify: the receipt names signing key ${JSON.stringify(kid)}, which the JWK set does not hold`);
  }
  let result: jose.JWS.VerificationResult;
  try {
    result = await jose.JWS.createVerify(keystore, { algorithms: RECEIPT_ALGORITHMS, allowEmbeddedKey: false }).verify(compact);
  } catch {
    throw new ReceiptError(`the signature does not verify with key ${kid}: the receipt was altered after it was signed, or not signed with that key`);
  }
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(result.payload.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new ReceiptError('the signed payload is not JSON');
  }
  return { kid, payload };
}

/** `consent-ledger verify-receipt --jwks FILE RECEIPT_FILE|-`: prints the payload, exit 0 if valid, 1 if not, 2 on usage errors. */
export async function verifyReceiptCommand(args: string[], stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): Promise<number> {
  const jwksAt = args.indexOf('--jwks');
  const jwksFile = jwksAt >= 0 ? args[jwksAt + 1] : undefined;
  const rest = args.filter((_, i) => i !== jwksAt && i !== jwksAt + 1);
  const receiptFile = rest[0];
  if (!jwksFile || !receiptFile || rest.length !== 1) {
    stderr.write('usage: consent-ledger verify-receipt --jwks JWKS_FILE RECEIPT_FILE   (RECEIPT_FILE "-" reads standard input)\n');
    return 2;
  }
  let receipt: string;
  let jwks: string;
  try {
    receipt = readFileSync(receiptFile === '-' ? 0 : receiptFile, 'utf8');
    jwks = readFileSync(jwksFile, 'utf8');
  } catch (err) {
    stderr.write(`cannot read input: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const verified = await verifyReceipt(receipt, jwks);
    stdout.write(`${JSON.stringify({ valid: true, kid: verified.kid, payload: verified.payload }, null, 2)}\n`);
    return 0;
  } catch (err) {
    stdout.write(`${JSON.stringify({ valid: false, error: (err as Error).message })}\n`);
    return 1;
  }
}
