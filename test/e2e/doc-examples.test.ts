import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { loadConfig } from '../../src/config/config';
import { SERVICE_NAMES } from '../../src/transport/server';
import { builtCheckout, Checkout, cleanEnv } from '../support/built-checkout';
import { docBlocks, DocExample, ShellSession } from '../support/doc-examples';
import { freePort, ROOT } from '../support/processes';

/**
 * The shell examples of README.md, of docs/api.md's opening and of docs/security.md, run as
 * written, in document order, in one shell per document, in a fresh checkout (dist/ built from
 * the current sources, an empty ./data) against a fresh server, and their output checked. Two
 * things differ from a reader's terminal, both to share the machine with other tests: the server
 * listens on a free port instead of 50051 (PORT and CONSENT_ADDRESS are set, and
 * `127.0.0.1:50051` in an example is read as that port), and `npm ci` / `npm run build` were done
 * by the test. Blocks marked "not run" (they need certificates or are the test suite itself)
 * must only name settings that exist.
 */
describe('documentation examples', function () {
  this.timeout(600_000);

  const sessions: ShellSession[] = [];
  const checkouts: Checkout[] = [];
  after(async function () {
    for (const s of sessions) await s.close();
    for (const c of checkouts) c.remove();
  });

  /** A new checkout and shell with a server port of its own; `npm start` there serves on it. */
  async function shellFor(): Promise<{ session: ShellSession; checkout: Checkout; port: number }> {
    const checkout = builtCheckout();
    checkouts.push(checkout);
    const port = await freePort();
    const session = new ShellSession(checkout.dir, cleanEnv({ PORT: String(port), CONSENT_ADDRESS: `127.0.0.1:${port}` }));
    sessions.push(session);
    return { session, checkout, port };
  }

  /** Runs the examples of `file` in order, returning each one's output by name. */
  async function runAll(file: string, session: ShellSession, port: number, only?: (e: DocExample) => boolean): Promise<Map<string, { out: string; err: string }>> {
    const results = new Map<string, { out: string; err: string }>();
    for (const example of docBlocks(file).examples) {
      if (example.notRun || (only && !only(example))) continue;
      const code = example.code.replaceAll('127.0.0.1:50051', `127.0.0.1:${port}`);
      const r = await session.run(code, `${file}:${example.line} (${example.name})`);
      expect(r.status, `${file}:${example.line} (${example.name}) exited ${r.status}:\n${r.out}\n${r.err}`).to.equal(0);
      results.set(example.name, { out: r.out, err: r.err });
    }
    return results;
  }

  /** Every KEY= a not-run block sets must be a setting the service (or the test suite) reads. */
  function expectKnownSettings(file: string): void {
    const known = readFileSync(path.join(ROOT, 'src/config/config.ts'), 'utf8') + readFileSync(path.join(ROOT, 'test/support/databases.ts'), 'utf8');
    for (const example of docBlocks(file).examples.filter((e) => e.notRun)) {
      for (const [, name] of example.code.matchAll(/\b([A-Z][A-Z0-9_]{2,})=/g)) {
        expect(known, `${file}:${example.line} (${example.name}) sets ${name}, which nothing reads`).to.match(new RegExp(`['\`]${name}['\`]|\\.${name}\\b`));
      }
    }
  }

  it('README: every shell block is marked, and the marked ones run as written', async function () {
    const { examples, unmarked } = docBlocks('README.md');
    expect(unmarked, 'README.md shell blocks without an example marker (lines)').to.deep.equal([]);
    expect(examples.filter((e) => !e.notRun).map((e) => e.name)).to.deep.equal(['quick-start', 'try-it', 'auditor', 'dpo']);
    expectKnownSettings('README.md');

    // The defaults the README states are the configuration's.
    const defaults = loadConfig({}, '/somewhere');
    expect(`${defaults.bindAddress}:${defaults.port}`).to.equal('127.0.0.1:50051');
    expect(defaults.database).to.deep.equal({ kind: 'sqlite', file: '/somewhere/data/consent-ledger.sqlite' });
    expect(defaults.keyStore).to.deep.equal({ kind: 'sqlite', file: '/somewhere/data/consent-keys.sqlite' });
    expect(defaults.rootKeys).to.deep.equal({ kind: 'generated-dev', file: '/somewhere/data/root-keys.dev.json' });

    const { session, checkout, port } = await shellFor();
    const out = await runAll('README.md', session, port);

    for (const file of ['consent-ledger.sqlite', 'consent-keys.sqlite', 'root-keys.dev.json']) {
      expect(existsSync(path.join(checkout.dir, 'data', file)), `./data/${file} after npm start`).to.equal(true);
    }
    expect(session.serverLogText()).to.include('DEVELOPMENT ROOT KEY GENERATED').and.include(`"port":${port}`);

    const tryIt = out.get('try-it')!.out;
    const allow = tryIt.indexOf('"VERDICT_ALLOW"');
    const optedOut = tryIt.indexOf('"DECISION_REASON_OPTED_OUT"');
    expect(allow, 'step 3 answers ALLOW').to.be.greaterThan(-1);
    expect(tryIt.indexOf('"DECISION_REASON_OPTED_IN"')).to.be.greaterThan(-1);
    expect(optedOut, 'step 5 answers DENY OPTED_OUT after step 3').to.be.greaterThan(allow);
    expect(tryIt.slice(optedOut - 300, optedOut)).to.include('"VERDICT_DENY"');
    expect(tryIt, 'the IP is stored truncated').to.include('"203.0.113.0"');

    const auditor = out.get('auditor')!.out;
    expect(auditor).to.match(/wrote \d+ public key\(s\) of tenants\/acme to acme-keys\.json/);
    expect(auditor).to.include('signature verified');
    expect(auditor).to.include('consistent with the earlier checkpoint').and.include('consent event rows match their entries');
    expect(auditor).to.match(/decision at .*: DENY \(OPTED_OUT\)/);
    expect(auditor).to.include('INDEX').and.include('CONSENT_EVENT_OPT_OUT');
    expect(auditor).to.match(/wrote \d+ entries and the checkpoint/);
    expect(auditor.trimEnd().endsWith('verified'), 'verify-export ends with "verified"').to.equal(true);

    const dpo = out.get('dpo')!;
    expect(dpo.out).to.match(/\d+ events exported to \.\/export-1; signature and hashes verified/);
    expect(existsSync(path.join(checkout.dir, 'export-1', 'manifest.jws'))).to.equal(true);
    expect(dpo.out, 'the first erase is refused with exit 1').to.include('not erased (exit 1)');
    expect(dpo.err, 'the refusal decodes the details').to.include('FAILED_PRECONDITION').and.include('reason: LEGAL_HOLD').and.match(/hold: tenants\/acme\/legalHolds\/[0-9a-f]{32}/);
    expect(dpo.out, 'the erasure receipt verifies').to.include('erasure receipt (signature verified)');
    expect(dpo.out + dpo.err, 'no phone number in the output').to.not.match(/4915112345678/);
    // The request for three identifiers: the phone's person (the objection above made them one) erased, the others held nothing.
    expect(dpo.out, 'each identifier of the request with its outcome').to.match(/1\s+PHONE\s+tenants\/acme\/subjects\/[0-9a-f]{32}\s+SMS_CODE by dpo-anna\s+erased: subject key destroyed/);
    expect(dpo.out).to.match(/2\s+EMAIL\s+\(nothing held\)\s+EMAIL_CONFIRMATION by dpo-anna\s+no data held/).and.match(/3\s+CUSTOMER_ID\s+\(nothing held\)\s+EMAIL_CONFIRMATION by dpo-anna\s+no data held/);
    expect(dpo.out + dpo.err, 'no identifier value in the output').to.not.match(/anna@example\.com|C-1042/);
    expect(dpo.out, 'the rectification completes').to.include('rectified: the phone identifier was replaced');
    expect(dpo.out, 'the reassignment names the fresh subject').to.match(/new owner's subject: tenants\/acme\/subjects\/[0-9a-f]{32}/);
  });

  it("docs/api.md's opening: the services and the first calls as written", async function () {
    const opening = readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8').split('\n## 1. Conventions')[0];
    for (const service of SERVICE_NAMES) expect(opening, `api.md's opening names ${service}`).to.include(`\`${service}\``);
    const { session, port } = await shellFor();
    await session.run('npm start', 'start a development server');
    const opened = (e: DocExample) => opening.includes(e.code);
    const out = await runAll('docs/api.md', session, port, opened);
    expect([...out.keys()]).to.deep.equal(['calling-the-api']);
    const text = out.get('calling-the-api')!.out + out.get('calling-the-api')!.err;
    for (const service of SERVICE_NAMES) expect(text, `--list-methods lists ${service}`).to.include(`${service}/`);
    expect(text).to.include('"status": "SERVING"');
    expect(text).to.include('"code": "not_found"').and.include('tenant tenants/acme not found').and.include('exit 40');
  });

  it("docs/security.md: the token issuer script, a server that trusts it, and calls with its tokens (iss and aud checked)", async function () {
    expectKnownSettings('docs/security.md');
    const { session, port } = await shellFor();
    const out = await runAll('docs/security.md', session, port);
    expect([...out.keys()]).to.deep.equal(['issue-tokens', 'call-with-tokens']);
    const calls = out.get('call-with-tokens')!.out + out.get('call-with-tokens')!.err;
    expect(calls, 'the admin token created the tenant').to.include('"name": "tenants/acme"');
    expect(calls, 'the sender token checked').to.include('"verdict": "VERDICT_DENY"');
    expect(calls).to.include('"code": "permission_denied"').and.include('exit 56');
    expect(calls).to.include('"code": "unauthenticated"').and.include('exit 128');
    const token = (await session.run('node issue-token.js sender-svc sender acme', 'issue one more token')).out;
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
    expect(claims).to.include({ iss: 'https://issuer.example', aud: 'consent-ledger', sub: 'sender-svc' });
    // The server checks aud: a token for another audience is refused.
    const other = await session.run(
      `node -e 'const fs=require("fs"),jose=require("node-jose");(async()=>{const k=await jose.JWK.asKey(JSON.parse(fs.readFileSync("issuer-key.json","utf8")));const n=Math.floor(Date.now()/1000);process.stdout.write(await jose.JWS.createSign({format:"compact",fields:{alg:"ES256",kid:k.kid}},k).update(JSON.stringify({sub:"x",roles:["sender"],tenants:["acme"],iss:"https://issuer.example",aud:"someone-else",exp:n+60})).final())})()' > other-aud.jwt
$CURL -H "authorization: Bearer $(cat other-aud.jwt)" -d '{"name":"tenants/acme"}' $URL.TenantService/GetTenant || echo "exit $?"`,
      'a token for another audience',
    );
    expect(other.out + other.err).to.include('"code": "unauthenticated"').and.include('another audience');
  });
});
