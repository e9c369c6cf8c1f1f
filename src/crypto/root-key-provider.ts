import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import jose from 'node-jose';
import { RootKeySource } from '../config/config';
import { parseRootKeySet, RootKeySet } from '../shared/root-key-set';
import { unwrapKey, wrapKey } from './jose';

/**
 * The top of the key hierarchy: wraps and unwraps tenant keys. The built-in provider holds a
 * JWK set; an external KMS (Vault Transit, AWS KMS) implements the same interface
 * (docs/keys.md). Implementations never expose root key material.
 */
export interface RootKeyProvider {
  /** The key id new tenant keys are wrapped with. */
  readonly activeKeyId: string;
  /** Every root key id this provider can unwrap with. */
  keyIds(): string[];
  wrap(tenantKeyMaterial: Buffer, bind: { tenant: string; epoch: number }): Promise<string>;
  unwrap(wrapped: string, bind: { tenant: string; epoch: number }): Promise<Buffer>;
}

/** Root keys from a JWK set of 256-bit symmetric keys (kty "oct", alg "A256KW"). */
export class JwkSetRootKeyProvider implements RootKeyProvider {
  private constructor(
    private readonly store: jose.JWK.KeyStore,
    readonly activeKeyId: string,
  ) {}

  static async fromJson(json: string, origin: string): Promise<JwkSetRootKeyProvider> {
    const parsed = parseRootKeySet(json, origin);
    if (typeof parsed === 'string') throw new Error(parsed);
    const store = jose.JWK.createKeyStore();
    for (const jwk of parsed.keys) await store.add({ ...jwk, alg: 'A256KW', use: 'enc' });
    return new JwkSetRootKeyProvider(store, parsed.active ?? parsed.keys[0].kid!);
  }

  keyIds(): string[] {
    return this.store.all().map((k) => k.kid);
  }

  wrap(material: Buffer, bind: { tenant: string; epoch: number }): Promise<string> {
    return wrapKey(this.store.get(this.activeKeyId), material, bind);
  }

  unwrap(wrapped: string, bind: { tenant: string; epoch: number }): Promise<Buffer> {
    return unwrapKey(this.store, wrapped, bind);
  }
}

export interface RootKeyLoadResult {
  provider: RootKeyProvider;
  /** Set when a development key was generated: the caller logs it loudly. */
  generatedFile?: string;
}

/** Loads the configured root key set; on a first development start, generates one. */
export async function loadRootKeys(source: RootKeySource): Promise<RootKeyLoadResult> {
  switch (source.kind) {
    case 'env':
      return { provider: await JwkSetRootKeyProvider.fromJson(source.json, 'ROOT_KEYS_JSON') };
    case 'file':
      if (!existsSync(source.file)) throw new Error(`ROOT_KEYS_FILE ${source.file} does not exist`);
      return { provider: await JwkSetRootKeyProvider.fromJson(readFileSync(source.file, 'utf8'), source.file) };
    case 'generated-dev': {
      if (existsSync(source.file)) {
        return { provider: await JwkSetRootKeyProvider.fromJson(readFileSync(source.file, 'utf8'), source.file) };
      }
      mkdirSync(path.dirname(source.file), { recursive: true });
      const kid = `root-dev-${new Date().toISOString().slice(0, 10)}`;
      const jwks: RootKeySet = { keys: [{ kty: 'oct', kid, alg: 'A256KW', k: randomBytes(32).toString('base64url') }] };
      writeFileSync(source.file, JSON.stringify(jwks, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
      chmodSync(source.file, 0o600);
      return { provider: await JwkSetRootKeyProvider.fromJson(JSON.stringify(jwks), source.file), generatedFile: source.file };
    }
  }
}
