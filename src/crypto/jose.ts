import jose from 'node-jose';

/**
 * node-jose behind two calls, with the algorithm list pinned: node-jose's decrypt accepts
 * every algorithm by default, and compression is never enabled (compression before
 * encryption leaks length information).
 */
export const KEY_WRAP_ALGORITHMS = ['A256KW', 'A256GCM'];

/** Wraps `material` for `key` as a compact JWE (A256KW + A256GCM) whose protected header carries `bind`. */
export async function wrapKey(key: jose.JWK.Key, material: Buffer, bind: Record<string, string | number>): Promise<string> {
  return jose.JWE.createEncrypt(
    { format: 'compact', contentAlg: 'A256GCM', fields: { alg: 'A256KW', kid: key.kid, ...bind } },
    key,
  )
    .update(material)
    .final() as unknown as Promise<string>;
}

/**
 * Unwraps a compact JWE made by wrapKey and checks that its protected header binds exactly
 * `bind`: a wrapped key copied to another tenant, subject or epoch fails here.
 */
export async function unwrapKey(
  keys: jose.JWK.Key | jose.JWK.KeyStore,
  wrapped: string,
  bind: Record<string, string | number>,
): Promise<Buffer> {
  const result = await jose.JWE.createDecrypt(keys, { algorithms: KEY_WRAP_ALGORITHMS }).decrypt(wrapped);
  const header = result.header as Record<string, unknown>;
  if (header.zip !== undefined) throw new KeyBindingError('compressed key envelope refused');
  for (const [name, value] of Object.entries(bind)) {
    if (header[name] !== value) throw new KeyBindingError(`key envelope is bound to another ${name}`);
  }
  return result.plaintext;
}

/** A wrapped key does not belong where it was found. Never carries key material. */
export class KeyBindingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyBindingError';
  }
}

/** An AES-256 key (kty oct) for A256KW from raw material. */
export function aesKeyWrapKey(material: Buffer, kid: string): Promise<jose.JWK.Key> {
  return jose.JWK.asKey({ kty: 'oct', kid, alg: 'A256KW', use: 'enc', k: jose.util.base64url.encode(material) });
}
