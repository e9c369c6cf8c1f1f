import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ConsentServiceClient, Evidence, ListConsentEventsRequest } from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { builtCheckout, Checkout, cleanEnv } from '../support/built-checkout';
import { forEachDatabase } from '../support/databases';
import { docExample, ShellSession } from '../support/doc-examples';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { freePort } from '../support/processes';
import { call, TestServer } from '../support/test-server';

const DOC = 'docs/keys.md';
const PERSON = phone('+4915150000201');

/**
 * docs/keys.md, "Moving a development install to ROOT_KEYS_FILE", run step by step as written in
 * a built checkout (test/support/built-checkout.ts): a service started with the generated
 * development key records a consent; after every step that restarts the service, that consent's
 * evidence still decrypts. The one change to the text: SECRETS points into the checkout instead
 * of /etc. On MariaDB the service and the re-wrap get DATABASE_URL and KEYSTORE_URL as well.
 */
forEachDatabase(`${DOC}: moving a development install to ROOT_KEYS_FILE`, (db, kind) => {
  let checkout: Checkout;
  let session: ShellSession;
  let port: number;
  let env: Record<string, string>;

  before(async function () {
    checkout = builtCheckout();
    port = await freePort();
    env = { PORT: String(port) };
    if (kind === 'mariadb') {
      env.DATABASE_URL = (db().config as { url: string }).url;
      env.KEYSTORE_URL = (db().keyStore as { url: string }).url;
    }
    session = new ShellSession(checkout.dir, cleanEnv(env));
  });
  after(async function () {
    await session?.close();
    checkout?.remove();
  });

  const step = async (name: string) => {
    const example = docExample(DOC, name);
    const code = example.code.replace(/^SECRETS=\S+/m, `SECRETS="$PWD/tmp/secrets"`);
    const r = await session.run(code, `${DOC}:${example.line} (${name})`);
    expect(r.status, `${name}: ${r.out}${r.err}`).to.equal(0);
    return r;
  };

  /** gRPC clients to the checkout's server, shaped as the fixtures expect. */
  const clients = () => {
    const address = `127.0.0.1:${port}`;
    const creds = credentials.createInsecure();
    return {
      tenants: new TenantServiceClient(address, creds),
      purposes: new PurposeServiceClient(address, creds),
      consent: new ConsentServiceClient(address, creds),
      close() {
        this.tenants.close();
        this.purposes.close();
        this.consent.close();
      },
    };
  };

  /** The consent recorded under the development key, read back with its evidence decrypted. */
  const expectConsentReadable = async (when: string) => {
    const c = clients();
    try {
      const list = await call(c.consent, c.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: 'tenants/migrate', subjectIdentifier: PERSON }));
      expect(list.consentEvents, when).to.have.length(1);
      expect(list.consentEvents[0].evidence?.sourceIp, `${when}: the evidence decrypts`).to.equal('203.0.113.0');
    } finally {
      c.close();
    }
  };

  /** Starts `node dist/src/main.js` with `extra` and expects it to refuse: exit code and output. */
  const refusedStart = (extra: Record<string, string>) =>
    new Promise<{ code: number | string; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['dist/src/main.js'], { cwd: checkout.dir, env: cleanEnv({ ...env, ...extra }), stdio: ['ignore', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => chunks.push(b));
      child.stderr.on('data', (b: Buffer) => chunks.push(b));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      // 'close' (after its output has been read), not 'exit': the message is asserted on.
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? signal ?? 'unknown', out: Buffer.concat(chunks).toString('utf8') });
      });
    });

  it('runs the steps as written: the consent stays readable, and a wrong or missing ROOT_KEYS_FILE refuses to start', async function () {
    this.timeout(300_000);
    const devFile = path.join(checkout.dir, 'data', 'root-keys.dev.json');
    const secretFile = path.join(checkout.dir, 'tmp', 'secrets', 'root-keys.json');

    // A development install: first start, a tenant, a consent with evidence.
    await session.run('npm start', 'first start with the development key');
    const devKid = (JSON.parse(readFileSync(devFile, 'utf8')) as { keys: Array<{ kid: string }> }).keys[0].kid;
    const c = clients();
    try {
      await seedTenant(c as unknown as TestServer, 'migrate');
      await call(c.consent, c.consent.recordConsent, consentRequest('migrate', { subjectIdentifier: PERSON, evidence: Evidence.fromPartial({ sourceIp: '203.0.113.77' }) }));
    } finally {
      c.close();
    }
    await session.stopServers();

    // 1. the key set moves out of the data folder.
    await step('move-dev-key');
    expect(existsSync(devFile), 'moved out of DATA_DIR').to.equal(false);
    expect(statSync(secretFile).mode & 0o777).to.equal(0o600);
    expect(statSync(path.dirname(secretFile)).mode & 0o777).to.equal(0o700);

    // A wrong file, or none at all, is refused before serving, naming the root key ids.
    const wrong = path.join(checkout.dir, 'tmp', 'wrong-root-keys.json');
    writeFileSync(wrong, JSON.stringify({ keys: [{ kty: 'oct', kid: 'root-wrong', k: randomBytes(32).toString('base64url') }] }));
    const refused = await refusedStart({ ROOT_KEYS_FILE: wrong });
    expect(refused.code, refused.out).to.not.equal(0);
    expect(refused.out).to.include(`root key "${devKid}" is needed by 1 tenant(s) (tenants/migrate) but is not configured`).and.include('Configured root key ids: root-wrong');
    const forgotten = await refusedStart({});
    expect(forgotten.code, forgotten.out).to.not.equal(0);
    // The key generated now gets the same date-based id as the first (or another one past
    // midnight): either way the refusal names the id the tenant keys need.
    expect(forgotten.out).to.include(`root key "${devKid}"`).and.match(/is not the key the tenant keys were wrapped with|is needed by 1 tenant/);
    expect(existsSync(devFile), 'the development key generated meanwhile was removed again').to.equal(false);

    // 2. started with ROOT_KEYS_FILE, everything is readable.
    await step('start-with-root-keys-file');
    await expectConsentReadable('after step 2');

    // 3. a new active root key; restart as in step 2.
    await step('add-root-key');
    const set = JSON.parse(readFileSync(secretFile, 'utf8')) as { keys: Array<{ kid: string }>; active: string };
    expect(set.keys.map((k) => k.kid)).to.deep.equal([devKid, set.active]);
    await session.stopServers();
    await step('start-with-root-keys-file');
    await expectConsentReadable('after step 3');

    // 4. re-wrap while the service runs.
    const rewrap = await step('rewrap');
    const logged = rewrap.out.split('\n').filter((l) => l.includes('tenant keys re-wrapped under the active root key')).map((l) => JSON.parse(l) as { epochs: number });
    expect(logged, rewrap.out).to.have.length(1);
    expect(logged[0].epochs, 'the one epoch of the one tenant').to.equal(1);

    // 5. the development key goes; the restarted service reads everything under the new key.
    await step('remove-dev-key');
    expect((JSON.parse(readFileSync(secretFile, 'utf8')) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)).to.deep.equal([set.active]);
    await session.stopServers();
    const logBefore = session.serverLogText().length;
    await step('start-with-root-keys-file');
    await expectConsentReadable('after step 5');
    const lastStart = session.serverLogText().slice(logBefore);
    expect(lastStart).to.include('consent ledger listening');
    expect(lastStart, 'no development key in use').to.not.include('DEVELOPMENT ROOT KEY').and.not.include('development root key');
  });
});
