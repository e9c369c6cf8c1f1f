import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';

/**
 * The dependency arrows between the source folders point one way (docs/architecture.md):
 * shared primitives at the bottom, crypto and the audit log on them, the domain above those,
 * storage and transport implementing and serving the domain, the CLI and the composition root
 * on top ("root": src/app.ts, the composition root). A folder may import only the folders listed
 * for it here.
 */
const ALLOWED: Record<string, string[]> = {
  shared: [],
  config: ['shared'],
  logging: ['shared', 'config'],
  crypto: ['shared', 'config'],
  audit: ['shared'],
  jobs: ['shared', 'logging'],
  // Metrics and traces: read by the composition root and the transport, knowing nothing of the domain.
  observability: ['shared', 'config'],
  // What clients of several replicas configure (src/client/replica-channel.ts): nothing of the service.
  client: [],
  domain: ['shared', 'config', 'crypto', 'audit', 'jobs'],
  storage: ['shared', 'config', 'crypto', 'audit', 'domain'],
  transport: ['shared', 'config', 'logging', 'crypto', 'audit', 'domain', 'gen', 'observability'],
  cli: ['shared', 'config', 'logging', 'crypto', 'audit', 'domain', 'storage', 'transport', 'gen', 'root'],
  gen: [],
  // What both web front ends share of being a gRPC client (src/web/grpc-errors.ts): the generated
  // messages only.
  web: ['gen'],
  // The web console is a client of the gRPC API with no powers of its own: never the domain,
  // storage or keys, only the generated clients (docs/console.md).
  console: ['config', 'logging', 'gen', 'web'],
  // The privacy center likewise (docs/privacy-center.md): a gRPC client with its own self_service
  // credential; never the domain, storage or keys, and not the console either.
  'privacy-center': ['config', 'logging', 'gen', 'web'],
};

/**
 * Single modules a folder may import beyond its table row. The console's auditor pages check
 * proofs with the offline verifiers `consentctl` uses (public keys and hashes only, no storage,
 * no keys of the service): one implementation, not a second copy of the checks.
 */
const ALLOWED_MODULES: Record<string, string[]> = {
  console: ['cli/explain-verify', 'cli/audit-verify', 'audit/merkle'],
};

const SRC = path.join(__dirname, '..', '..', 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

/** The top-level folder of src/ a file is in, or null for files directly in src/ (main, app). */
function layerOf(file: string): string | null {
  const parts = path.relative(SRC, file).split(path.sep);
  return parts.length > 1 ? parts[0] : null;
}

function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)].map((m) => path.resolve(path.dirname(file), m[1]));
}

describe('source layering', function () {
  it('every folder of src/ is in the table', function () {
    const folders = readdirSync(SRC).filter((n) => statSync(path.join(SRC, n)).isDirectory());
    expect(folders.filter((f) => !(f in ALLOWED)), 'folders missing from ALLOWED').to.deep.equal([]);
  });

  it('imports only point down the layers', function () {
    const wrong: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const from = layerOf(file);
      if (from === null || from === 'gen') continue;
      for (const target of relativeImports(file)) {
        if (!target.startsWith(SRC + path.sep)) continue; // migrations/ and the like sit beside src/
        const to = layerOf(target + '.ts') ?? 'root';
        if (to === from) continue;
        if (ALLOWED_MODULES[from]?.includes(path.relative(SRC, target).split(path.sep).join('/'))) continue;
        if (!ALLOWED[from].includes(to)) wrong.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, target)}`);
      }
    }
    expect(wrong, 'imports against the layering').to.deep.equal([]);
  });

  it('the table itself has no cycle', function () {
    const visiting = new Set<string>();
    const done = new Set<string>();
    const visit = (layer: string, trail: string[]): void => {
      if (done.has(layer)) return;
      expect(visiting.has(layer), `cycle: ${[...trail, layer].join(' -> ')}`).to.equal(false);
      visiting.add(layer);
      for (const next of ALLOWED[layer] ?? []) visit(next, [...trail, layer]); // root imports everything and nothing imports it but cli
      visiting.delete(layer);
      done.add(layer);
    };
    for (const layer of Object.keys(ALLOWED)) visit(layer, []);
  });
});
