import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { startFlags } from '../../bench/server-process';

const ROOT = path.join(__dirname, '..', '..');

/**
 * The server runs with the same Node.js flags wherever it is started: `npm start`, the Docker
 * image, and the benchmarks (which measure "the server as npm start runs it"). The heap cap keeps
 * its resident memory bounded (docs/configuration.md, "Memory").
 */
describe('the start command', function () {
  it('npm start caps the heap, and the Dockerfile runs the same flags', function () {
    const flags = startFlags(ROOT);
    expect(flags).to.include('--max-old-space-size=384');
    const cmd = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').match(/^CMD (\[.*\])$/m);
    expect(cmd, 'a CMD in exec form').to.not.equal(null);
    expect(JSON.parse(cmd![1])).to.deep.equal(['node', ...flags, 'dist/src/main.js']);
  });
});
