import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

/** The project root, where child processes run. */
export const ROOT = path.join(__dirname, '..', '..');

/** `node <tsx cli>`: runs a TypeScript entry point of the project as its own process. */
export const TSX = [process.execPath, path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs')] as const;

/** A free TCP port on 127.0.0.1 for a child server. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Runs consentctl as a user would, in its own process; resolves with its exit code and output. */
export function runConsentctl(address: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(TSX[0], [TSX[1], 'src/cli/consentctl.ts', '--address', address, ...args], { cwd: ROOT, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}
