/**
 * The shape of a root key set (ROOT_KEYS_JSON, ROOT_KEYS_FILE): a JWK set of 256-bit symmetric
 * keys, optionally naming the active one. Checked here without any crypto library so that the
 * configuration can report a bad set with every other problem at start (exit 2) instead of failing
 * later; crypto/root-key-provider.ts loads the keys from the same parse. Messages never quote key
 * material.
 */
export interface RootKeySet {
  keys: Array<{ kty: string; kid?: string; k?: string; alg?: string }>;
  /** Which key wraps new tenant keys; default: the first. */
  active?: string;
}

/** The parsed set, or the problem with it (naming `origin`). */
export function parseRootKeySet(json: string, origin: string): RootKeySet | string {
  let parsed: RootKeySet;
  try {
    parsed = JSON.parse(json) as RootKeySet;
  } catch {
    return `root key set from ${origin} is not valid JSON`;
  }
  if (!parsed || !Array.isArray(parsed.keys) || parsed.keys.length === 0) {
    return `root key set from ${origin} must be a JWK set {"keys":[...]} with at least one key`;
  }
  for (const [i, jwk] of parsed.keys.entries()) {
    if (!jwk || jwk.kty !== 'oct' || !jwk.kid || typeof jwk.k !== 'string' || Buffer.from(jwk.k, 'base64url').length !== 32) {
      return `root key ${i} from ${origin} must be {"kty":"oct","kid":...,"k":<256-bit base64url>}`;
    }
  }
  const active = parsed.active ?? parsed.keys[0].kid!;
  if (!parsed.keys.some((k) => k.kid === active)) return `root key set from ${origin}: active key "${active}" is not in the set`;
  return parsed;
}
