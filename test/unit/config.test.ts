import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../src/config/config';

/** Runs `fn`, expects a ConfigError and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  expect.fail('expected a ConfigError');
}

describe('loadConfig', () => {
  // A cwd that is certainly not the project, so no test depends on where mocha runs.
  const cwd = path.resolve(os.tmpdir(), 'consent-ledger-config-test-cwd');

  describe('defaults (empty environment)', () => {
    const config = loadConfig({}, cwd);

    it('listens on 127.0.0.1:50051', () => {
      expect(config.port).to.equal(50051);
      expect(config.bindAddress).to.equal('127.0.0.1');
    });

    it('keeps its data in ./data relative to cwd', () => {
      expect(config.dataDir).to.equal(path.join(cwd, 'data'));
    });

    it('uses a SQLite file under ./data', () => {
      expect(config.database).to.deep.equal({ kind: 'sqlite', file: path.join(cwd, 'data', 'consent-ledger.sqlite') });
    });

    it('generates development root keys under ./data', () => {
      expect(config.rootKeys).to.deep.equal({ kind: 'generated-dev', file: path.join(cwd, 'data', 'root-keys.dev.json') });
    });

    it('runs migrations, logs at info, development auth', () => {
      expect(config.runMigrations).to.equal(true);
      expect(config.logLevel).to.equal('info');
      expect(config.authMode).to.equal('development');
    });

    it('has the documented limits', () => {
      expect(config.limits).to.deep.equal({
        defaultPageSize: 50,
        maxPageSize: 500,
        maxBatchChecks: 1000,
        streamChunkSize: 256,
        subjectKeyCacheSize: 10000,
        subjectKeyCacheTtlMs: 60_000,
        maxEncryptionsPerKey: 2 ** 32,
        maxEventTimeSkewMs: 5 * 60 * 1000,
        maxMessageBytes: 4 * 1024 * 1024,
        ratePerSecond: 20_000,
        rateBurst: 40_000,
        maxStreamsPerPrincipal: 32,
        maxImportRows: 50_000,
        maxPendingRequests: 1000,
        requestArrivalTimeoutMs: 10_000,
      });
    });

    it('puts the key store beside the data, never in the same database', () => {
      expect(config.keyStore).to.deep.equal({ kind: 'sqlite', file: path.join(cwd, 'data', 'consent-keys.sqlite') });
      const mysql = loadConfig({ DATABASE_URL: 'mysql://root@127.0.0.1:3306/consent' }, cwd);
      expect(mysql.keyStore).to.deep.include({ kind: 'mysql', url: 'mysql://root@127.0.0.1:3306/consent_keys' });
      const explicit = loadConfig({ DATABASE_URL: 'mysql://root@db/consent', KEYSTORE_URL: 'mysql://root@keys/vault' }, cwd);
      expect(explicit.keyStore).to.deep.include({ url: 'mysql://root@keys/vault' });
      for (const env of [
        { DATABASE_URL: 'mysql://root@db/consent', KEYSTORE_URL: 'mysql://root@db/consent' },
        { DATABASE_URL: 'sqlite:./x.sqlite', KEYSTORE_URL: 'sqlite:./x.sqlite' },
      ]) {
        expect(() => loadConfig(env, cwd)).to.throw(ConfigError, /KEYSTORE_URL must name a different database/);
      }
    });

    it('uses pool size 10 for MySQL when DATABASE_POOL_SIZE is unset', () => {
      const mysql = loadConfig({ DATABASE_URL: 'mysql://root@127.0.0.1:3306/consent' }, cwd);
      expect(mysql.database).to.deep.include({ kind: 'mysql', poolSize: 10 });
    });

    it('treats empty variables as unset', () => {
      const c = loadConfig({ PORT: '', LOG_LEVEL: '', DATABASE_URL: '', BIND_ADDRESS: '', RUN_MIGRATIONS: '' }, cwd);
      expect(c.port).to.equal(50051);
      expect(c.logLevel).to.equal('info');
      expect(c.database.kind).to.equal('sqlite');
      expect(c.bindAddress).to.equal('127.0.0.1');
      expect(c.runMigrations).to.equal(true);
    });
  });

  describe('values from the environment', () => {
    it('reads port, bind address, log level, data dir and limits', () => {
      const c = loadConfig(
        {
          PORT: '6000',
          BIND_ADDRESS: '0.0.0.0',
          ALLOW_UNAUTHENTICATED_NON_LOOPBACK: 'true',
          LOG_LEVEL: 'debug',
          DATA_DIR: '/var/lib/consent',
          DEFAULT_PAGE_SIZE: '20',
          MAX_PAGE_SIZE: '100',
          MAX_BATCH_CHECKS: '7',
          STREAM_CHUNK_SIZE: '16',
          SUBJECT_KEY_CACHE_SIZE: '0',
          SUBJECT_KEY_CACHE_TTL_MS: '1000',
        },
        cwd,
      );
      expect(c.port).to.equal(6000);
      expect(c.bindAddress).to.equal('0.0.0.0');
      expect(c.logLevel).to.equal('debug');
      expect(c.dataDir).to.equal('/var/lib/consent');
      expect(c.database).to.deep.equal({ kind: 'sqlite', file: '/var/lib/consent/consent-ledger.sqlite' });
      expect(c.limits).to.deep.include({
        defaultPageSize: 20,
        maxPageSize: 100,
        maxBatchChecks: 7,
        streamChunkSize: 16,
        subjectKeyCacheSize: 0,
        subjectKeyCacheTtlMs: 1000,
      });
    });

    it('accepts the port range bounds 0 and 65535', () => {
      expect(loadConfig({ PORT: '0' }, cwd).port).to.equal(0);
      expect(loadConfig({ PORT: '65535' }, cwd).port).to.equal(65535);
    });

    it('parses RUN_MIGRATIONS spellings', () => {
      for (const v of ['1', 'true', 'YES', 'True']) expect(loadConfig({ RUN_MIGRATIONS: v }, cwd).runMigrations, v).to.equal(true);
      for (const v of ['0', 'false', 'NO', 'False']) expect(loadConfig({ RUN_MIGRATIONS: v }, cwd).runMigrations, v).to.equal(false);
    });

    // Regression (was BUG, fixed in 53f4069): src/config/config.ts evaluated
    // bool('RUN_MIGRATIONS') only after the `if (problems.length > 0) throw`, so its problem was
    // pushed into an array nobody read: RUN_MIGRATIONS=maybe silently became `true`.
    it('reports an invalid RUN_MIGRATIONS', () => {
      const err = configError(() => loadConfig({ RUN_MIGRATIONS: 'maybe' }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.contain('RUN_MIGRATIONS');
    });

    // Regression (was BUG, fixed in 53f4069): same cause; with other problems present the
    // RUN_MIGRATIONS one was missing from the list.
    it('reports an invalid RUN_MIGRATIONS together with other problems', () => {
      const err = configError(() => loadConfig({ RUN_MIGRATIONS: 'maybe', PORT: 'x' }, cwd));
      expect(err.problems.some((p) => p.includes('RUN_MIGRATIONS'))).to.equal(true, err.message);
      expect(err.problems.some((p) => p.includes('PORT'))).to.equal(true, err.message);
    });

    it('refuses DEFAULT_PAGE_SIZE above MAX_PAGE_SIZE', () => {
      const err = configError(() => loadConfig({ DEFAULT_PAGE_SIZE: '200', MAX_PAGE_SIZE: '100' }, cwd));
      expect(err.problems).to.deep.equal(['DEFAULT_PAGE_SIZE must not exceed MAX_PAGE_SIZE']);
    });

    it('signs audit checkpoints hourly by default; 0 turns it off; below a second is refused', () => {
      expect(loadConfig({}, cwd).auditCheckpointIntervalMs).to.equal(3_600_000);
      expect(loadConfig({ AUDIT_CHECKPOINT_INTERVAL_MS: '0' }, cwd).auditCheckpointIntervalMs).to.equal(0);
      expect(loadConfig({ AUDIT_CHECKPOINT_INTERVAL_MS: '60000' }, cwd).auditCheckpointIntervalMs).to.equal(60_000);
      expect(configError(() => loadConfig({ AUDIT_CHECKPOINT_INTERVAL_MS: '500' }, cwd)).problems).to.deep.equal(['AUDIT_CHECKPOINT_INTERVAL_MS must be 0 (off) or at least 1000']);
      expect(configError(() => loadConfig({ AUDIT_CHECKPOINT_INTERVAL_MS: 'hourly' }, cwd)).problems[0]).to.contain('AUDIT_CHECKPOINT_INTERVAL_MS must be an integer');
    });

    it('refuses AUTH_MODE other than development', () => {
      const err = configError(() => loadConfig({ AUTH_MODE: 'jwt' }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.contain('AUTH_MODE');
    });
  });

  describe('DATABASE_URL', () => {
    /** The MySQL config, failing the test if the database is not MySQL. */
    const mysqlOf = (c: ReturnType<typeof loadConfig>) => {
      if (c.database.kind !== 'mysql') expect.fail(`expected a mysql database, got ${JSON.stringify(c.database)}`);
      return c.database;
    };

    it('mysql:// gives a MySQL config with the URL unchanged, the pool size and no flavor (detected at start)', () => {
      const url = 'mysql://app:secret@db.internal:3306/consent';
      const db = mysqlOf(loadConfig({ DATABASE_URL: url, DATABASE_POOL_SIZE: '25' }, cwd));
      expect(db).to.deep.include({ kind: 'mysql', url, poolSize: 25 });
      expect(db.flavor).to.equal(undefined);
    });

    it('mariadb:// is normalised to mysql:// and remembers the MariaDB flavor', () => {
      const db = mysqlOf(loadConfig({ DATABASE_URL: 'mariadb://app:secret@db.internal:3306/consent' }, cwd));
      expect(db).to.deep.include({ kind: 'mysql', url: 'mysql://app:secret@db.internal:3306/consent', poolSize: 10, flavor: 'mariadb' });
    });

    it('only the scheme is rewritten, not "mariadb:" elsewhere in the URL', () => {
      const db = mysqlOf(loadConfig({ DATABASE_URL: 'mariadb://mariadb:mariadb:@db/mariadb:x' }, cwd));
      expect(db.url).to.equal('mysql://mariadb:mariadb:@db/mariadb:x');
    });

    it('sqlite:relative resolves against cwd', () => {
      const c = loadConfig({ DATABASE_URL: 'sqlite:./db/ledger.sqlite' }, cwd);
      expect(c.database).to.deep.equal({ kind: 'sqlite', file: path.join(cwd, 'db', 'ledger.sqlite') });
    });

    it('sqlite:/absolute and sqlite:///absolute keep the absolute path', () => {
      expect(loadConfig({ DATABASE_URL: 'sqlite:/srv/ledger.sqlite' }, cwd).database).to.deep.equal({
        kind: 'sqlite',
        file: '/srv/ledger.sqlite',
      });
      expect(loadConfig({ DATABASE_URL: 'sqlite:///srv/ledger.sqlite' }, cwd).database).to.deep.equal({
        kind: 'sqlite',
        file: '/srv/ledger.sqlite',
      });
    });

    it('sqlite::memory: stays :memory:', () => {
      expect(loadConfig({ DATABASE_URL: 'sqlite::memory:' }, cwd).database).to.deep.equal({ kind: 'sqlite', file: ':memory:' });
    });

    it('sqlite: without a path is a problem', () => {
      const err = configError(() => loadConfig({ DATABASE_URL: 'sqlite:' }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.contain('sqlite: needs a file path');
    });

    it('a string that is no URL is a problem', () => {
      const err = configError(() => loadConfig({ DATABASE_URL: 'not a url' }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.contain('DATABASE_URL is not a URL');
    });

    it('a mysql URL without a database name is a problem (with and without trailing slash)', () => {
      for (const url of ['mysql://root@127.0.0.1:3306', 'mysql://root@127.0.0.1:3306/']) {
        const err = configError(() => loadConfig({ DATABASE_URL: url }, cwd));
        expect(err.problems, url).to.have.length(1);
        expect(err.problems[0]).to.contain('DATABASE_URL must name a database');
      }
    });

    it('problems about the URL never echo its password', () => {
      const err = configError(() => loadConfig({ DATABASE_URL: 'postgres://app:hunter2@db:5432/' }, cwd));
      expect(err.message).not.to.contain('hunter2');
    });
  });

  describe('root keys', () => {
    it('ROOT_KEYS_JSON gives an env source', () => {
      const json = JSON.stringify({ keys: [{ kty: 'oct', kid: 'k1', k: Buffer.alloc(32, 1).toString('base64url') }] });
      expect(loadConfig({ ROOT_KEYS_JSON: json }, cwd).rootKeys).to.deep.equal({ kind: 'env', json });
    });

    it('ROOT_KEYS_FILE resolves against cwd', () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'rootkeys-cwd-'));
      try {
        mkdirSync(path.join(dir, 'keys'));
        writeFileSync(path.join(dir, 'keys', 'root.json'), JSON.stringify({ keys: [{ kty: 'oct', kid: 'k1', k: Buffer.alloc(32, 1).toString('base64url') }] }));
        expect(loadConfig({ ROOT_KEYS_FILE: 'keys/root.json' }, dir).rootKeys).to.deep.equal({
          kind: 'file',
          file: path.join(dir, 'keys', 'root.json'),
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('the generated-dev file follows DATA_DIR', () => {
      expect(loadConfig({ DATA_DIR: 'state' }, cwd).rootKeys).to.deep.equal({
        kind: 'generated-dev',
        file: path.join(cwd, 'state', 'root-keys.dev.json'),
      });
    });
  });

  describe('problems are collected into one ConfigError', () => {
    it('lists every problem at once', () => {
      const err = configError(() =>
        loadConfig(
          {
            PORT: '70000',
            LOG_LEVEL: 'verbose',
            DATABASE_URL: 'postgres://db/consent',
            ROOT_KEYS_JSON: '{"keys":[]}',
            ROOT_KEYS_FILE: '/etc/keys.json',
          },
          cwd,
        ),
      );
      expect(err.name).to.equal('ConfigError');
      // ...and the set's own problem (the JSON one is used when both are set).
      expect(err.problems).to.have.length(5);
      expect(err.problems).to.include('root key set from ROOT_KEYS_JSON must be a JWK set {"keys":[...]} with at least one key');
      expect(err.problems.some((p) => p.startsWith('PORT must be an integer from 0 to 65535 (got "70000")'))).to.equal(true);
      expect(err.problems.some((p) => p.startsWith('LOG_LEVEL must be one of') && p.includes('"verbose"'))).to.equal(true);
      expect(err.problems.some((p) => p.includes('scheme must be mysql:, mariadb: or sqlite:') && p.includes('"postgres:"'))).to.equal(true);
      expect(err.problems).to.include('set ROOT_KEYS_JSON or ROOT_KEYS_FILE, not both');
      // The message lists them all too, one per line.
      for (const p of err.problems) expect(err.message).to.contain(p);
    });

    it('collects a missing database name together with a bad port and pool size', () => {
      const err = configError(() =>
        loadConfig({ PORT: 'abc', DATABASE_URL: 'mariadb://root@db:3306/', DATABASE_POOL_SIZE: '0' }, cwd),
      );
      expect(err.problems).to.have.length(3);
      expect(err.problems.some((p) => p.startsWith('PORT'))).to.equal(true);
      expect(err.problems.some((p) => p.startsWith('DATABASE_POOL_SIZE'))).to.equal(true);
      expect(err.problems.some((p) => p.startsWith('DATABASE_URL must name a database'))).to.equal(true);
    });

    it('reports a bad scheme and a missing database name of the same URL', () => {
      const err = configError(() => loadConfig({ DATABASE_URL: 'postgres://db:5432' }, cwd));
      expect(err.problems).to.have.length(2);
    });

    it('refuses non-integer and out-of-range numbers', () => {
      for (const bad of ['-1', '65536', '1.5', 'abc', '80x']) {
        const err = configError(() => loadConfig({ PORT: bad }, cwd));
        expect(err.problems, bad).to.deep.equal([`PORT must be an integer from 0 to 65535 (got "${bad}")`]);
      }
    });

    it('refuses log levels in the wrong case', () => {
      const err = configError(() => loadConfig({ LOG_LEVEL: 'INFO' }, cwd));
      expect(err.problems).to.have.length(1);
    });
  });

  describe('CONFIG_FILE', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'consent-ledger-config-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    const write = (name: string, content: string): string => {
      const file = path.join(dir, name);
      writeFileSync(file, content);
      return file;
    };

    it('supplies settings (numbers and booleans become strings)', () => {
      const file = write(
        'settings.json',
        JSON.stringify({ PORT: 7000, LOG_LEVEL: 'warn', RUN_MIGRATIONS: false, DATABASE_URL: 'mysql://root@db/consent' }),
      );
      const c = loadConfig({ CONFIG_FILE: file }, cwd);
      expect(c.port).to.equal(7000);
      expect(c.logLevel).to.equal('warn');
      expect(c.runMigrations).to.equal(false);
      expect(c.database).to.deep.include({ kind: 'mysql', url: 'mysql://root@db/consent', poolSize: 10 });
    });

    it('is merged under the environment: the environment wins', () => {
      const file = write('merge.json', JSON.stringify({ PORT: 7000, LOG_LEVEL: 'warn', BIND_ADDRESS: '10.0.0.1', ALLOW_UNAUTHENTICATED_NON_LOOPBACK: true }));
      const c = loadConfig({ CONFIG_FILE: file, PORT: '8000' }, cwd);
      expect(c.port).to.equal(8000);
      expect(c.logLevel).to.equal('warn');
      expect(c.bindAddress).to.equal('10.0.0.1');
    });

    it('an undefined environment entry does not mask the file', () => {
      const file = write('undef.json', JSON.stringify({ PORT: 7000 }));
      expect(loadConfig({ CONFIG_FILE: file, PORT: undefined }, cwd).port).to.equal(7000);
    });

    // Regression (was BUG, fixed in 53f4069): definedOnly() let an empty variable override the
    // file while int()/bool()/`||` treat '' as "unset" and fall back to the built-in default, so
    // PORT= (as docker-compose produces for `PORT=${PORT}`) replaced the file's 7000 with 50051.
    it('an empty environment variable does not mask the file value', () => {
      const file = write('empty.json', JSON.stringify({ PORT: 7000, LOG_LEVEL: 'warn' }));
      const c = loadConfig({ CONFIG_FILE: file, PORT: '', LOG_LEVEL: '' }, cwd);
      expect(c.port).to.equal(7000);
      expect(c.logLevel).to.equal('warn');
    });

    it('is resolved against cwd', () => {
      write('relative.json', JSON.stringify({ PORT: 7001 }));
      expect(loadConfig({ CONFIG_FILE: 'relative.json' }, dir).port).to.equal(7001);
    });

    it('a missing file is reported with its resolved path', () => {
      const err = configError(() => loadConfig({ CONFIG_FILE: 'nope.json' }, dir));
      expect(err.problems).to.deep.equal([`CONFIG_FILE ${path.join(dir, 'nope.json')} does not exist`]);
    });

    it('a missing file is reported together with the other problems', () => {
      const err = configError(() => loadConfig({ CONFIG_FILE: 'nope.json', PORT: 'x' }, dir));
      expect(err.problems).to.have.length(2);
    });

    it('a file that is not a JSON object is reported', () => {
      for (const [name, content] of [
        ['broken.json', '{"PORT": '],
        ['array.json', '[1,2]'],
        ['null.json', 'null'],
      ]) {
        const file = write(name, content);
        const err = configError(() => loadConfig({ CONFIG_FILE: file }, cwd));
        expect(err.problems, name).to.have.length(1);
        expect(err.problems[0]).to.contain('is not a JSON object of settings');
      }
    });

    it('invalid values in the file are reported like variables', () => {
      const file = write('invalid.json', JSON.stringify({ PORT: 'http', LOG_LEVEL: 'loud' }));
      const err = configError(() => loadConfig({ CONFIG_FILE: file }, cwd));
      expect(err.problems).to.have.length(2);
    });
  });
});

describe('loadConfig: authentication', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'consent-auth-config-'));
  const file = (name: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, '{}');
    return p;
  };
  const jwks = file('jwks.json');
  const ca = file('ca.pem');
  const cert = file('server.pem');
  const key = file('server-key.pem');
  const principals = file('principals.json');
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('without credentials runs in development mode on loopback addresses', () => {
    for (const address of ['127.0.0.1', '127.3.2.1', '::1', '[::1]', 'localhost']) {
      const c = loadConfig({ BIND_ADDRESS: address });
      expect(c.authMode, address).to.equal('development');
      expect(c.tls).to.equal(undefined);
      expect(c.tokens).to.equal(undefined);
    }
  });

  it('refuses development mode on any other address unless forced by name', () => {
    for (const address of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2']) {
      const err = configError(() => loadConfig({ BIND_ADDRESS: address }));
      expect(err.problems[0]).to.include(`refusing to serve without authentication on ${address}`).and.include('ALLOW_UNAUTHENTICATED_NON_LOOPBACK');
    }
    expect(loadConfig({ BIND_ADDRESS: '0.0.0.0', ALLOW_UNAUTHENTICATED_NON_LOOPBACK: 'true' }).authMode).to.equal('development');
  });

  it('bearer tokens turn authentication on, with pinned algorithms, issuer, audience and skew', () => {
    const c = loadConfig({ JWT_JWKS_FILE: jwks, JWT_ISSUER: 'https://issuer.example', JWT_AUDIENCE: 'ledger', JWT_ALGORITHMS: 'ES256, RS256', JWT_CLOCK_SKEW_SECONDS: '30' });
    expect(c.authMode).to.equal('authenticated');
    expect(c.tokens).to.deep.equal({ jwksFile: jwks, issuer: 'https://issuer.example', audience: 'ledger', algorithms: ['ES256', 'RS256'], clockSkewMs: 30_000 });
    expect(loadConfig({ JWT_JWKS_FILE: jwks }).tokens!.algorithms).to.deep.equal(['ES256']);
  });

  it('refuses symmetric or unknown algorithms, and token settings without a key set', () => {
    expect(configError(() => loadConfig({ JWT_JWKS_FILE: jwks, JWT_ALGORITHMS: 'HS256' })).problems[0]).to.include('HS256 is not one of');
    expect(configError(() => loadConfig({ JWT_JWKS_FILE: jwks, JWT_ALGORITHMS: 'none' })).problems[0]).to.include('none is not one of');
    expect(configError(() => loadConfig({ JWT_ISSUER: 'x' })).problems[0]).to.include('need JWT_JWKS_FILE');
    expect(configError(() => loadConfig({ JWT_JWKS_FILE: path.join(dir, 'missing.json') })).problems[0]).to.include('does not exist');
  });

  it('refuses bearer tokens in clear beyond loopback; TLS makes them acceptable', () => {
    expect(configError(() => loadConfig({ JWT_JWKS_FILE: jwks, BIND_ADDRESS: '0.0.0.0' })).problems[0]).to.include('need TLS');
    const c = loadConfig({ JWT_JWKS_FILE: jwks, BIND_ADDRESS: '0.0.0.0', TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
    expect(c.tls).to.deep.equal({ certFile: cert, keyFile: key, clientCaFile: undefined, principalsFile: undefined });
  });

  it('client certificates need a TLS server and a principals file', () => {
    const c = loadConfig({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key, TLS_CLIENT_CA_FILE: ca, MTLS_PRINCIPALS_FILE: principals, BIND_ADDRESS: '0.0.0.0' });
    expect(c.authMode).to.equal('authenticated');
    expect(c.tls).to.deep.equal({ certFile: cert, keyFile: key, clientCaFile: ca, principalsFile: principals });
    expect(configError(() => loadConfig({ TLS_CLIENT_CA_FILE: ca, MTLS_PRINCIPALS_FILE: principals })).problems).to.include('TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE (client certificates need a TLS server)');
    expect(configError(() => loadConfig({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key, TLS_CLIENT_CA_FILE: ca })).problems[0]).to.include('needs MTLS_PRINCIPALS_FILE');
    expect(configError(() => loadConfig({ TLS_CERT_FILE: cert })).problems[0]).to.equal('set TLS_CERT_FILE and TLS_KEY_FILE together');
  });

  it('AUTH_MODE may state the mode but not contradict the credentials', () => {
    expect(loadConfig({ AUTH_MODE: 'development' }).authMode).to.equal('development');
    expect(loadConfig({ AUTH_MODE: 'authenticated', JWT_JWKS_FILE: jwks }).authMode).to.equal('authenticated');
    expect(configError(() => loadConfig({ AUTH_MODE: 'authenticated' })).problems[0]).to.include('does not match the credentials configured');
  });

  it('reads the request, rate and stream limits', () => {
    const c = loadConfig({ MAX_MESSAGE_BYTES: '65536', RATE_LIMIT_PER_SECOND: '100', RATE_LIMIT_BURST: '200', MAX_STREAMS_PER_PRINCIPAL: '4' });
    expect(c.limits).to.include({ maxMessageBytes: 65536, ratePerSecond: 100, rateBurst: 200, maxStreamsPerPrincipal: 4 });
    expect(configError(() => loadConfig({ MAX_MESSAGE_BYTES: '10' })).problems[0]).to.include('MAX_MESSAGE_BYTES must be an integer from 1024');
    expect(loadConfig({ MAX_PENDING_REQUESTS: '50', REQUEST_ARRIVAL_TIMEOUT_MS: '2500' }).limits).to.include({ maxPendingRequests: 50, requestArrivalTimeoutMs: 2500 });
    expect(configError(() => loadConfig({ MAX_PENDING_REQUESTS: '0' })).problems[0]).to.include('MAX_PENDING_REQUESTS must be an integer from 1');
    expect(configError(() => loadConfig({ REQUEST_ARRIVAL_TIMEOUT_MS: '10' })).problems[0]).to.include('REQUEST_ARRIVAL_TIMEOUT_MS must be an integer from 100');
  });

  describe('root key set (found by a probe: checked only at start, exit 1, not with the other problems)', () => {
    const cwd = path.resolve(os.tmpdir(), 'consent-ledger-config-test-cwd');
    const key = (bytes: number) => Buffer.alloc(bytes, 7).toString('base64url');
    it('a malformed ROOT_KEYS_JSON, a short key, an unknown active key are listed with every other problem', () => {
      const err = configError(() => loadConfig({ PORT: 'abc', ROOT_KEYS_JSON: '{"keys": [' }, cwd));
      expect(err.problems.some((p) => p.includes('PORT'))).to.equal(true);
      expect(err.problems).to.include('root key set from ROOT_KEYS_JSON is not valid JSON');
      const short = configError(() => loadConfig({ ROOT_KEYS_JSON: JSON.stringify({ keys: [{ kty: 'oct', kid: 'k1', k: key(16) }] }) }, cwd));
      expect(short.problems).to.deep.equal(['root key 0 from ROOT_KEYS_JSON must be {"kty":"oct","kid":...,"k":<256-bit base64url>}']);
      const active = configError(() => loadConfig({ ROOT_KEYS_JSON: JSON.stringify({ active: 'k9', keys: [{ kty: 'oct', kid: 'k1', k: key(32) }] }) }, cwd));
      expect(active.problems).to.deep.equal(['root key set from ROOT_KEYS_JSON: active key "k9" is not in the set']);
      expect(JSON.stringify([short.problems, active.problems])).to.not.include(key(16)).and.not.include(key(32));
      expect(loadConfig({ ROOT_KEYS_JSON: JSON.stringify({ keys: [{ kty: 'oct', kid: 'k1', k: key(32) }] }) }, cwd).rootKeys.kind).to.equal('env');
    });

    it('a ROOT_KEYS_FILE that does not exist or holds no valid set is a problem too', () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'rootkeys-'));
      try {
        const missing = configError(() => loadConfig({ ROOT_KEYS_FILE: path.join(dir, 'none.json'), PORT: 'abc' }, cwd));
        expect(missing.problems.some((p) => p.startsWith('ROOT_KEYS_FILE') && p.endsWith('does not exist'))).to.equal(true);
        expect(missing.problems.some((p) => p.includes('PORT'))).to.equal(true);
        writeFileSync(path.join(dir, 'bad.json'), '{"keys": []}');
        const empty = configError(() => loadConfig({ ROOT_KEYS_FILE: path.join(dir, 'bad.json') }, cwd));
        expect(empty.problems).to.deep.equal([`root key set from ${path.join(dir, 'bad.json')} must be a JWK set {"keys":[...]} with at least one key`]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
