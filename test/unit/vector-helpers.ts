import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Loading and small helpers for the published test vectors in test/vectors/ (see its README
 * for sources, commits and checksums). The files are read, never modified.
 */

export const VECTORS_DIR = join(__dirname, '..', 'vectors');

export type WycheproofResult = 'valid' | 'invalid' | 'acceptable';

export interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  result: WycheproofResult;
}

export interface WycheproofGroup<T extends WycheproofTest> {
  type: string;
  keySize?: number;
  ivSize?: number;
  tagSize?: number;
  tests: T[];
}

export interface WycheproofFile<T extends WycheproofTest> {
  algorithm: string;
  numberOfTests: number;
  testGroups: WycheproofGroup<T>[];
}

export interface AeadTest extends WycheproofTest {
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}

export interface MacTest extends WycheproofTest {
  key: string;
  msg: string;
  tag: string;
}

export interface HkdfTest extends WycheproofTest {
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
}

export interface KeywrapTest extends WycheproofTest {
  key: string;
  msg: string;
  ct: string;
}

/** Reads test/vectors/wycheproof/<name> and checks it holds exactly numberOfTests vectors. */
export function loadWycheproof<T extends WycheproofTest>(name: string): WycheproofFile<T> {
  const file = JSON.parse(readFileSync(join(VECTORS_DIR, 'wycheproof', name), 'utf8')) as WycheproofFile<T>;
  const total = file.testGroups.reduce((sum, group) => sum + group.tests.length, 0);
  if (total !== file.numberOfTests || total === 0) {
    throw new Error(`${name}: ${total} vectors found, numberOfTests says ${file.numberOfTests}`);
  }
  return file;
}

/** Every vector of a Wycheproof file with the group it belongs to. */
export function* eachVector<T extends WycheproofTest>(file: WycheproofFile<T>): Generator<{ group: WycheproofGroup<T>; test: T }> {
  for (const group of file.testGroups) {
    for (const test of group.tests) yield { group, test };
  }
}

/** One RFC 7520 example as rendered by the ietf-jose cookbook (the fields the tests use). */
export interface CookbookJweExample {
  title: string;
  input: {
    plaintext: string;
    key: { kty: string; kid: string; use: string; alg: string; k: string };
    alg: string;
    enc: string;
  };
  generated: { cek?: string; iv: string };
  encrypting_key?: { encrypted_key: string };
  encrypting_content: {
    protected: Record<string, unknown>;
    protected_b64u: string;
    ciphertext: string;
    tag: string;
  };
  output: { compact: string; json: Record<string, unknown>; json_flat: Record<string, unknown> };
}

export function loadCookbook(name: string): CookbookJweExample {
  return JSON.parse(readFileSync(join(VECTORS_DIR, 'rfc7520', name), 'utf8')) as CookbookJweExample;
}

export const hex = (value: string): Buffer => Buffer.from(value, 'hex');
export const unb64 = (value: string): Buffer => Buffer.from(value, 'base64url');

/** The error a call throws, or undefined when it returns. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err ?? new Error('threw a nullish value');
  }
  return undefined;
}

/** The error a promise rejects with, or undefined when it resolves. */
export async function rejected(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err ?? new Error('rejected with a nullish value');
  }
  return undefined;
}

/** Counts by label, for asserting how many vectors of each kind ran. */
export class Tally {
  private readonly counts = new Map<string, number>();

  add(label: string): void {
    this.counts.set(label, (this.counts.get(label) ?? 0) + 1);
  }

  get(label: string): number {
    return this.counts.get(label) ?? 0;
  }

  toObject(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
}
