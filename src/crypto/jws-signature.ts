/** Signature length in bytes of each ECDSA algorithm (JWA: R || S, each the curve's size). */
const ECDSA_SIGNATURE_BYTES: Record<string, number> = { ES256: 64, ES384: 96, ES512: 132 };

/**
 * Whether the signature part of a compact JWS is in its one canonical form: base64url that encodes
 * back to the same text, and for ECDSA exactly R || S. node-jose checks an ES256 signature on its
 * first 64 bytes and ignores anything after them, so without this a token with bytes appended to
 * its signature (or other base64url spellings of it) still verified: "altered in any byte" must
 * mean refused (found by an adversarial probe). RSA signatures have the modulus' length, which
 * the RSA check itself enforces; their text must still be canonical.
 */
export function hasCanonicalSignature(token: string, alg: string): boolean {
  const text = token.slice(token.lastIndexOf('.') + 1);
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) return false;
  const expected = ECDSA_SIGNATURE_BYTES[alg];
  return expected === undefined || bytes.length === expected;
}
