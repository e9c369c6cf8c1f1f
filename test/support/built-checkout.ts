import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './processes';

/**
 * The project as a user has it after `npm ci && npm run build`, in a temporary folder of its own:
 * dist/ compiled from the current sources, package.json and node_modules linked to the project's.
 * Commands from the docs (`node dist/src/main.js`, `node dist/src/cli/consentctl.js`, `npx buf`)
 * run in it as written, and the default DATA_DIR (./data) is its own.
 */
export interface Checkout {
  dir: string;
  remove(): void;
}

let built: string | null = null;

/** Compiles the sources once per test process, as `npm run build` does, into a private folder. */
function buildOnce(): string {
  if (built) return built;
  const out = mkdtempSync(path.join(os.tmpdir(), 'consent-build-'));
  // `npm run build` is `tsc -p tsconfig.build.json` plus the descriptor set beside the generated
  // code and the console's views and assets (test/e2e/console.test.ts checks the two agree); the same here, into a private outDir, so parallel builds never share dist/.
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', path.join(out, 'dist')], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (tsc.status !== 0) throw new Error(`the build failed:\n${tsc.stdout}${tsc.stderr}`);
  copyFileSync(path.join(ROOT, 'src', 'gen', 'descriptor-set.binpb'), path.join(out, 'dist', 'src', 'gen', 'descriptor-set.binpb'));
  // And the web console's templates and stylesheet, which it reads at run time.
  for (const folder of ['views', 'assets']) cpSync(path.join(ROOT, 'src', 'console', folder), path.join(out, 'dist', 'src', 'console', folder), { recursive: true });
  process.once('exit', () => rmSync(out, { recursive: true, force: true }));
  built = out;
  return out;
}

/** A fresh checkout with its own copy of dist/ and an empty working folder. */
export function builtCheckout(): Checkout {
  const build = buildOnce();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'consent-checkout-'));
  cpSync(path.join(build, 'dist'), path.join(dir, 'dist'), { recursive: true });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  symlinkSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  mkdirSync(path.join(dir, 'tmp'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The environment documented commands run with: nothing of the test runner's own configuration
 * (DATABASE_URL, ROOT_KEYS_*, CONSENT_* ...) leaks into them, only what a shell needs.
 */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ['PATH', 'HOME', 'LANG', 'TERM', 'npm_config_cache']) if (process.env[key]) env[key] = process.env[key]!;
  return { ...env, ...extra };
}

/** Runs `node dist/src/main.js <args>` in the checkout (one-off commands: migrate, rewrap-tenant-keys). */
export function runMain(checkout: Checkout, args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['dist/src/main.js', ...args], { cwd: checkout.dir, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.on('close', (code) => resolve({ code: code ?? 1, out: Buffer.concat(chunks).toString('utf8') }));
  });
}
