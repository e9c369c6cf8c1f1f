import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, KeyObject, randomFillSync } from 'node:crypto';

/**
 * The primitives our code calls, all from node:crypto, in one place so they can be tested
 * against published vectors (test/unit/vectors.test.ts) with the exact parameters we use.
 */

/** AES-GCM accepts only 96-bit IVs here: other lengths go through GHASH and weaken GCM (SP 800-38D). */
export const GCM_IV_BYTES = 12;
export const GCM_TAG_BYTES = 16;

export class GcmError extends Error {
  constructor(reason: string) {
    super(`AES-GCM: ${reason}`);
    this.name = 'GcmError';
  }
}

/** AES-GCM encryption (key size from the key: 16, 24 or 32 bytes) with a 96-bit IV and a 128-bit tag. */
export function gcmSeal(key: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): { ciphertext: Buffer; tag: Buffer } {
  if (iv.length !== GCM_IV_BYTES) throw new GcmError('IV must be 96 bits');
  const cipher = createCipheriv(gcmAlgorithm(key), key, iv, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

/** AES-GCM decryption; throws GcmError unless IV, tag length and authentication are all right. */
export function gcmOpen(key: Buffer, iv: Buffer, aad: Buffer, ciphertext: Buffer, tag: Buffer): Buffer {
  if (iv.length !== GCM_IV_BYTES) throw new GcmError('IV must be 96 bits');
  if (tag.length !== GCM_TAG_BYTES) throw new GcmError('tag must be 128 bits');
  try {
    const decipher = createDecipheriv(gcmAlgorithm(key), key, iv, { authTagLength: GCM_TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new GcmError('authentication failed');
  }
}

export function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/**
 * HMAC-SHA-256 as lower-case hex, for keys used on hot paths (blind index, request fingerprints):
 * a KeyObject made once saves importing the key on every call, and the hex digest skips the
 * intermediate Buffer (together ~40% of an HMAC of a short identifier, measured with node:crypto).
 */
export function hmacSha256Hex(key: KeyObject, data: Buffer | string): string {
  return createHmac('sha256', key).update(data).digest('hex');
}

/** A secret key made once for repeated HMACs (hmacSha256Hex). */
export function hmacKey(key: Buffer): KeyObject {
  return createSecretKey(key);
}

export function hkdfSha256(ikm: Buffer, salt: Buffer, info: Buffer | string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, length));
}

function gcmAlgorithm(key: Buffer): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  switch (key.length) {
    case 16:
      return 'aes-128-gcm';
    case 24:
      return 'aes-192-gcm';
    case 32:
      return 'aes-256-gcm';
    default:
      throw new GcmError('key must be 128, 192 or 256 bits');
  }
}

/** Bytes of the CSPRNG fetched at a time for freshRandom. */
const RANDOM_BLOCK_BYTES = 64 * 1024;
let randomBlock = Buffer.alloc(0);
let randomOffset = 0;

/**
 * `size` bytes from node:crypto's CSPRNG, in a buffer of their own. Drawn from a block fetched
 * 64 KiB at a time (as Node.js does for randomUUID): every crypto.randomBytes call crosses into
 * OpenSSL for about 4 microseconds, and a bulk import of new people needs six random values per
 * row (subject id, key, key-encryption CEK, three IVs). Each byte is handed out once and wiped
 * from the block; the caller's buffer is its own, so key material never shares memory with
 * other values.
 */
export function freshRandom(size: number): Buffer {
  if (size > 1024) return randomFillSync(Buffer.alloc(size));
  if (randomOffset + size > randomBlock.length) {
    randomBlock = randomFillSync(Buffer.allocUnsafeSlow(RANDOM_BLOCK_BYTES));
    randomOffset = 0;
  }
  const out = Buffer.alloc(size);
  randomBlock.copy(out, 0, randomOffset, randomOffset + size);
  randomBlock.fill(0, randomOffset, randomOffset + size);
  randomOffset += size;
  return out;
}
