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

/**
 * Verifies a consent or erasure receipt offline: only the tenant's published JWK set (GetPublicKeys) and
 * the receipt are needed. Keys embedded in the token are never trusted.
 */
export async function verifyReceipt(receipt: string, jwksJson: string): Promise<VerifiedReceipt> {
  const jwks = JSON.parse(jwksJson) as { keys?: unknown[] };
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new Error('the JWK set holds no keys');
  const publicOnly = jwks.keys.filter((k) => !(k as { d?: unknown }).d);
  const keystore = await jose.JWK.asKeyStore({ keys: publicOnly });
  const result = await jose.JWS.createVerify(keystore, { algorithms: RECEIPT_ALGORITHMS, allowEmbeddedKey: false }).verify(receipt.trim());
  const header = result.header as { typ?: string; kid?: string };
  if (!RECEIPT_TYPES.includes(header.typ ?? '')) throw new Error('not a consent or erasure receipt (typ)');
  return { kid: header.kid ?? '', payload: JSON.parse(result.payload.toString('utf8')) as Record<string, unknown> };
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
