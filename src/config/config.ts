import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { parseRootKeySet } from '../shared/root-key-set';
import { TracingExporter, tracingFromEnv } from './tracing-config';

/** How the database is reached. SQLite is the zero-config default; MySQL/MariaDB is production. */
export type DatabaseConfig =
  | { kind: 'sqlite'; file: string }
  | { kind: 'mysql'; url: string; poolSize: number; flavor?: 'mysql' | 'mariadb' };

/**
 * How long database work may take before the caller is answered UNAVAILABLE instead of waiting
 * (docs/configuration.md, "Database timeouts"). The same values apply to the data database and
 * the key store.
 */
export interface DatabaseTimeouts {
  /** Opening a MySQL connection: TCP connect and handshake. */
  connectMs: number;
  /** Waiting for a free pooled connection (MySQL) or for the process's turn on SQLite. */
  acquireMs: number;
  /** One unit of database work of an RPC (a transaction or a read); never past the RPC's deadline. */
  callMs: number;
  /** One unit of database work outside any RPC: start-up, background jobs, periodic checkpoints. */
  backgroundMs: number;
  /** MySQL/MariaDB: the server stops one statement after this long (not migrations). */
  statementMs: number;
  /** SQLite: how long a statement waits for another process's lock (busy_timeout). */
  sqliteBusyMs: number;
}

export const DEFAULT_DATABASE_TIMEOUTS: DatabaseTimeouts = {
  connectMs: 5000,
  acquireMs: 2000,
  callMs: 2000,
  backgroundMs: 60_000,
  statementMs: 30_000,
  sqliteBusyMs: 1000,
};

/** Where the root key set comes from (see docs/keys.md). */
export type RootKeySource =
  | { kind: 'env'; json: string }
  | { kind: 'file'; file: string }
  | { kind: 'generated-dev'; file: string };

/** Every tunable of the service, with defaults; built once at start by loadConfig. */
export interface Config {
  port: number;
  bindAddress: string;
  dataDir: string;
  database: DatabaseConfig;
  /** Where wrapped keys live: always apart from `database` (docs/keys.md). */
  keyStore: DatabaseConfig;
  runMigrations: boolean;
  /** Timeouts of both databases' work. */
  databaseTimeouts: DatabaseTimeouts;
  /** How often grpc.health.v1 asks both databases whether they answer. */
  healthProbeIntervalMs: number;
  /**
   * On SIGTERM, how long health says NOT_SERVING while calls are still answered, before the
   * server stops taking new ones: load balancers and readiness probes see it and send no more.
   */
  shutdownDrainMs: number;
  /** The check path's cache (docs/architecture.md, "The decision cache"). */
  decisionCache: DecisionCacheConfig;
  /** Worker threads that hash the blind indexes of bulk checks (crypto/blind-index-workers.ts); 0: on the event loop's thread. */
  blindIndexWorkers: number;
  /** Prometheus metrics over HTTP (docs/operations.md); undefined: off. */
  metrics?: MetricsConfig;
  /**
   * A plaintext gRPC port with grpc.health.v1 only (HEALTH_PORT), for probes that cannot speak
   * TLS or present a client certificate (Kubernetes gRPC probes, Docker HEALTHCHECK); undefined: off.
   */
  health?: { port: number; bindAddress: string };
  /** OpenTelemetry trace export, from the OTEL_* variables (docs/operations.md); undefined: off. */
  tracing?: TracingExporter;
  rootKeys: RootKeySource;
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  /** How often every tenant whose audit log grew gets a signed, kept checkpoint; 0: never. */
  auditCheckpointIntervalMs: number;
  /**
   * 'authenticated' once client certificates (TLS_CLIENT_CA_FILE) or bearer tokens
   * (JWT_JWKS_FILE) are configured; otherwise 'development': every call is the fixed principal
   * dev-admin, and only on a loopback address (docs/security.md).
   */
  authMode: 'development' | 'authenticated';
  /** Server TLS; with `clientCaFile`, client certificates are accepted as credentials. */
  tls?: TlsConfig;
  /** Bearer tokens (JWT) and how they are verified. */
  tokens?: TokenConfig;
  limits: Limits;
  /** The web console for the DPO and auditors (CONSOLE_PORT; docs/console.md); undefined: off. */
  console?: ConsoleConfig;
  /** The privacy center, the person's pages (PRIVACY_CENTER_PORT; docs/privacy-center.md); undefined: off. */
  privacyCenter?: PrivacyCenterConfig;
  /**
   * PRIVACY_CENTER_PUBLIC_URL: the privacy center's public https origin (and path prefix), without
   * a trailing slash, for the links the service hands out (docs/privacy-center.md); '' when unset
   * (links are then the path alone, to be prefixed by the tenant's system).
   */
  privacyCenterPublicUrl: string;
  /** The service mails the e-mail sign-up confirmations itself (SMTP_*; docs/privacy-center.md); undefined: off. */
  smtp?: SmtpConfig;
}

/**
 * SMTP_URL and friends (docs/privacy-center.md, "Confirmation mails"). The password stays in its
 * file until the mailer starts: it is in no variable, no config value and no log line.
 */
export interface SmtpConfig {
  host: string;
  port: number;
  /** smtps://: TLS from the first byte. */
  implicitTls: boolean;
  /** smtp://: STARTTLS required (SMTP_REQUIRE_TLS; default true unless the host is loopback). */
  requireTls: boolean;
  /** smtp:// to a loopback relay without SMTP_REQUIRE_TLS: stay in plain text even when STARTTLS is offered. */
  ignoreTls: boolean;
  /** The sender address; the display name is the tenant's brand name. */
  from: string;
  user?: string;
  passwordFile?: string;
  pollIntervalMs: number;
}

/** The SMTP password: the file's first line (a trailing newline is no part of it). */
export function readSmtpPassword(file: string): string {
  return readFileSync(file, 'utf8').split(/\r?\n/)[0];
}

/**
 * The privacy center (docs/privacy-center.md): the public sign-up, confirmation and preference
 * pages. A gRPC client of the API with its own credential (role self_service), which lets it call
 * the person-facing methods only; what a person may do is bound by the signed token they hold.
 */
export interface PrivacyCenterConfig {
  /** HTTP port; 0 picks a free one (tests). */
  port: number;
  bindAddress: string;
  /** host:port of the gRPC API; default this process's API on 127.0.0.1. */
  apiAddress?: string;
  apiCaFile?: string;
  apiServerName?: string;
  /** A file holding the privacy center's bearer token (JWT, role self_service); unset: development mode (no credential). */
  apiTokenFile?: string;
  /**
   * The public https origin (and path prefix) people reach the pages at, without a trailing slash;
   * '' when unset (loopback development). Page addresses in the evidence and cookie security follow it.
   */
  publicUrl: string;
  /**
   * Which proxies' X-Forwarded-For is believed for the person's IP (Fastify trustProxy: addresses,
   * CIDRs, `loopback`, `uniquelocal`...); empty: the socket's address.
   */
  trustProxy: string[];
  /** POST forms one IP may send per minute (sign-up, confirm, withdraw, requests). */
  postsPerMinute: number;
}

/**
 * The web console (docs/console.md). It holds no powers of its own: every API call it makes
 * carries the signed-in person's credential, or none in development mode.
 */
export interface ConsoleConfig {
  /** HTTP port; 0 picks a free one (tests). */
  port: number;
  bindAddress: string;
  /**
   * 'development': no sign-in, calls go without credentials and the API's development principal
   * applies (loopback only). 'proxy': a trusted auth proxy in front of the console signs people in
   * and passes each request's bearer token (JWT) in `proxyHeader`, forwarded as the call's credential.
   * 'oidc': the console signs people in itself at the organisation's OpenID Connect provider
   * (`oidc`) and forwards the token it receives.
   */
  signIn: 'development' | 'proxy' | 'oidc';
  /** Lower-case header name the proxy puts the person's token in. */
  proxyHeader: string;
  /** host:port of the gRPC API; default this process's API on 127.0.0.1. */
  apiAddress?: string;
  /** CA certificates (PEM) the API's TLS certificate is checked against, when the API serves TLS. */
  apiCaFile?: string;
  /** The name the API's certificate is issued for, when it differs from the address's host. */
  apiServerName?: string;
  /** With signIn 'oidc' only: the provider, the client and the session cookie. */
  oidc?: ConsoleOidcConfig;
}

/** CONSOLE_OIDC_* and CONSOLE_SESSION_KEY_FILE (docs/console.md, "Signing in"). */
export interface ConsoleOidcConfig {
  /** The issuer identifier; its discovery document is `<issuer>/.well-known/openid-configuration`. */
  issuer: string;
  clientId: string;
  /** Exactly one of these, or neither for a public client (PKCE only). */
  clientSecret?: string;
  clientSecretFile?: string;
  /** The console's public origin (https://console.example.org); the callback is `<publicUrl>/oidc/callback`. */
  publicUrl: string;
  scopes: string[];
  /** Which token the console forwards to the API as the person's credential (a JWT the API verifies). */
  forwardToken: 'access_token' | 'id_token';
  /** Keys that encrypt the session cookie (first one encrypts, all decrypt); random per process when unset. */
  sessionKeyFile?: string;
}

/**
 * The keys of CONSOLE_SESSION_KEY_FILE: one per line, 32 bytes each in base64 or hex
 * (`openssl rand -base64 32`). The first encrypts new cookies; the others still open cookies made
 * with them, so a key can be rotated without signing everyone out.
 */
export function readSessionKeys(file: string): Buffer[] {
  const lines = readFileSync(file, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (lines.length === 0) throw new Error(`CONSOLE_SESSION_KEY_FILE ${file} holds no key (one key a line: 32 bytes in base64 or hex, e.g. from openssl rand -base64 32)`);
  return lines.map((line, i) => {
    const key = /^[0-9a-f]{64}$/i.test(line) ? Buffer.from(line, 'hex') : Buffer.from(line, 'base64');
    if (key.length !== 32) throw new Error(`CONSOLE_SESSION_KEY_FILE ${file}: key ${i + 1} is not 32 bytes in base64 or hex (got ${key.length} bytes)`);
    return key;
  });
}

export interface MetricsConfig {
  /** The HTTP port of /metrics; 0 picks a free one (tests). */
  port: number;
  /** Where it listens: loopback unless an operator opens it on purpose. */
  bindAddress: string;
  /** Tenants with their own label value; further tenants are counted under "_other". */
  maxTenants: number;
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  /** CA certificates (PEM) that issue client certificates; unset: no client certificates. */
  clientCaFile?: string;
  /** JSON: certificate identity -> { roles, tenants }. Required with `clientCaFile`. */
  principalsFile?: string;
}

/** Asymmetric JWS algorithms only: a configured public key can never act as an HMAC secret. */
export const TOKEN_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

export interface TokenConfig {
  jwksFile: string;
  issuer?: string;
  audience?: string;
  algorithms: TokenAlgorithm[];
  clockSkewMs: number;
}

/** The decision cache: its bound and the staleness it may never exceed. */
export interface DecisionCacheConfig {
  /** Identifiers held at most (LRU); 0 turns the cache off (every check reads the database). */
  entries: number;
  /** B: no check is answered from cached state older than this. */
  stalenessMs: number;
}

/** Request-size and cache limits. Documented in docs/configuration.md. */
export interface Limits {
  defaultPageSize: number;
  maxPageSize: number;
  maxBatchChecks: number;
  /** Rows of one ImportConsents call. */
  maxImportRows: number;
  /** Queries a stream decides together; also the most answers buffered per stream. */
  streamChunkSize: number;
  subjectKeyCacheSize: number;
  subjectKeyCacheTtlMs: number;
  /** AES-GCM encryptions allowed per subject key; NIST SP 800-38D caps random-IV GCM at 2^32. */
  maxEncryptionsPerKey: number;
  maxEventTimeSkewMs: number;
  /** Largest request message accepted (gRPC RESOURCE_EXHAUSTED above). */
  maxMessageBytes: number;
  /** Calls per second one principal may start, sustained; 0: unlimited. */
  ratePerSecond: number;
  /** Calls one principal may start at once after being idle. */
  rateBurst: number;
  /** Streams one principal may hold open at once. */
  maxStreamsPerPrincipal: number;
  /** Calls held at once whose request message has not arrived yet (more: RESOURCE_EXHAUSTED). */
  maxPendingRequests: number;
  /** How long a call may wait for its request message (then DEADLINE_EXCEEDED). */
  requestArrivalTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

/** What is wrong with the configured root key set, or null (a development set not made yet is fine). */
function rootKeySetProblem(rootKeys: RootKeySource): string | null {
  if (rootKeys.kind === 'env') {
    const parsed = parseRootKeySet(rootKeys.json, 'ROOT_KEYS_JSON');
    return typeof parsed === 'string' ? parsed : null;
  }
  if (!existsSync(rootKeys.file)) return rootKeys.kind === 'file' ? `ROOT_KEYS_FILE ${rootKeys.file} does not exist` : null;
  let text: string;
  try {
    text = readFileSync(rootKeys.file, 'utf8');
  } catch (err) {
    return `the root key set ${rootKeys.file} cannot be read (${(err as { code?: string }).code ?? 'error'})`;
  }
  const parsed = parseRootKeySet(text, rootKeys.file);
  return typeof parsed === 'string' ? parsed : null;
}

/**
 * Reads configuration from environment variables, over an optional JSON file named by
 * CONFIG_FILE (same keys as the variables). Collects every problem before failing, so an
 * operator fixes a broken deployment in one round.
 */
export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const problems: string[] = [];
  const source = { ...readConfigFile(env.CONFIG_FILE, cwd, problems), ...definedOnly(env) };

  const int = (key: string, fallback: number, min: number, max: number): number => {
    const raw = source[key];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${key} must be an integer from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return value;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const raw = source[key];
    if (raw === undefined || raw === '') return fallback;
    if (/^(1|true|yes)$/i.test(raw)) return true;
    if (/^(0|false|no)$/i.test(raw)) return false;
    problems.push(`${key} must be true or false (got "${raw}")`);
    return fallback;
  };

  const dataDir = path.resolve(cwd, source.DATA_DIR || 'data');
  const port = int('PORT', 50051, 0, 65535);
  const bindAddress = source.BIND_ADDRESS || '127.0.0.1';

  const poolSize = int('DATABASE_POOL_SIZE', 10, 1, 500);
  const database = parseDatabaseUrl(source.DATABASE_URL, dataDir, poolSize, cwd, problems);
  const keyStore = source.KEYSTORE_URL
    ? parseDatabaseUrl(source.KEYSTORE_URL, dataDir, poolSize, cwd, problems, 'KEYSTORE_URL')
    : defaultKeyStore(database);
  if (sameDatabase(database, keyStore)) {
    problems.push('KEYSTORE_URL must name a different database (or SQLite file) than DATABASE_URL: keys never live with the data');
  }

  let rootKeys: RootKeySource;
  if (source.ROOT_KEYS_JSON && source.ROOT_KEYS_FILE) {
    problems.push('set ROOT_KEYS_JSON or ROOT_KEYS_FILE, not both');
  }
  if (source.ROOT_KEYS_JSON) rootKeys = { kind: 'env', json: source.ROOT_KEYS_JSON };
  else if (source.ROOT_KEYS_FILE) rootKeys = { kind: 'file', file: path.resolve(cwd, source.ROOT_KEYS_FILE) };
  else rootKeys = { kind: 'generated-dev', file: path.join(dataDir, 'root-keys.dev.json') };
  // The set's shape is checked with every other problem (exit 2), not when the keys are loaded.
  const rootKeyProblem = rootKeySetProblem(rootKeys);
  if (rootKeyProblem) problems.push(rootKeyProblem);

  const logLevel = (source.LOG_LEVEL || 'info') as Config['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);

  const file = (key: string): string | undefined => {
    const raw = source[key];
    if (!raw) return undefined;
    const resolved = path.resolve(cwd, raw);
    if (!existsSync(resolved)) problems.push(`${key} ${resolved} does not exist`);
    return resolved;
  };
  let tls: TlsConfig | undefined;
  const certFile = file('TLS_CERT_FILE');
  const keyFile = file('TLS_KEY_FILE');
  const clientCaFile = file('TLS_CLIENT_CA_FILE');
  const principalsFile = file('MTLS_PRINCIPALS_FILE');
  if (Boolean(certFile) !== Boolean(keyFile)) problems.push('set TLS_CERT_FILE and TLS_KEY_FILE together');
  if (certFile && keyFile) tls = { certFile, keyFile, clientCaFile, principalsFile };
  if (clientCaFile && !certFile) problems.push('TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE (client certificates need a TLS server)');
  if (clientCaFile && !principalsFile) problems.push('TLS_CLIENT_CA_FILE needs MTLS_PRINCIPALS_FILE: which roles and tenants each certificate identity has');
  if (principalsFile && !clientCaFile) problems.push('MTLS_PRINCIPALS_FILE is only read with TLS_CLIENT_CA_FILE');

  let tokens: TokenConfig | undefined;
  const jwksFile = file('JWT_JWKS_FILE');
  const algorithms = (source.JWT_ALGORITHMS || 'ES256').split(',').map((a) => a.trim()).filter(Boolean);
  for (const alg of algorithms) {
    if (!(TOKEN_ALGORITHMS as readonly string[]).includes(alg)) problems.push(`JWT_ALGORITHMS: ${alg} is not one of ${TOKEN_ALGORITHMS.join(', ')} (asymmetric only)`);
  }
  const clockSkewMs = int('JWT_CLOCK_SKEW_SECONDS', 60, 0, 300) * 1000;
  if (jwksFile) tokens = { jwksFile, issuer: source.JWT_ISSUER || undefined, audience: source.JWT_AUDIENCE || undefined, algorithms: algorithms as TokenAlgorithm[], clockSkewMs };
  else if (source.JWT_ISSUER || source.JWT_AUDIENCE || source.JWT_ALGORITHMS) problems.push('JWT_ISSUER, JWT_AUDIENCE and JWT_ALGORITHMS need JWT_JWKS_FILE');

  const credentialsConfigured = Boolean(clientCaFile || jwksFile);
  const authMode: Config['authMode'] = credentialsConfigured ? 'authenticated' : 'development';
  if (source.AUTH_MODE && source.AUTH_MODE !== authMode) {
    problems.push(`AUTH_MODE=${source.AUTH_MODE} does not match the credentials configured (${credentialsConfigured ? 'TLS_CLIENT_CA_FILE or JWT_JWKS_FILE is set' : 'neither TLS_CLIENT_CA_FILE nor JWT_JWKS_FILE is set'}); it may be left unset`);
  }
  const loopback = isLoopback(bindAddress);
  if (authMode === 'development' && !loopback && !bool('ALLOW_UNAUTHENTICATED_NON_LOOPBACK', false)) {
    problems.push(
      `refusing to serve without authentication on ${bindAddress}: configure TLS_CLIENT_CA_FILE or JWT_JWKS_FILE (docs/security.md), ` +
        'bind to 127.0.0.1, or set ALLOW_UNAUTHENTICATED_NON_LOOPBACK=true to expose the all-powerful development principal on purpose',
    );
  }
  if (tokens && !tls && !loopback) problems.push(`bearer tokens on ${bindAddress} need TLS (TLS_CERT_FILE, TLS_KEY_FILE): they would cross the network in clear`);

  const limits: Limits = {
    defaultPageSize: int('DEFAULT_PAGE_SIZE', 50, 1, 1000),
    maxPageSize: int('MAX_PAGE_SIZE', 500, 1, 1000),
    maxBatchChecks: int('MAX_BATCH_CHECKS', 1000, 1, 10000),
    maxImportRows: int('MAX_IMPORT_ROWS', 50_000, 1, 1_000_000),
    streamChunkSize: int('STREAM_CHUNK_SIZE', 256, 1, 4096),
    subjectKeyCacheSize: int('SUBJECT_KEY_CACHE_SIZE', 10000, 0, 10_000_000),
    subjectKeyCacheTtlMs: int('SUBJECT_KEY_CACHE_TTL_MS', 60_000, 0, 3_600_000),
    maxEncryptionsPerKey: int('KEY_MAX_ENCRYPTIONS', 2 ** 32, 1, 2 ** 32),
    maxEventTimeSkewMs: 5 * 60 * 1000,
    maxMessageBytes: int('MAX_MESSAGE_BYTES', 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    ratePerSecond: int('RATE_LIMIT_PER_SECOND', 20_000, 0, 1_000_000),
    rateBurst: int('RATE_LIMIT_BURST', 40_000, 1, 10_000_000),
    maxStreamsPerPrincipal: int('MAX_STREAMS_PER_PRINCIPAL', 32, 1, 10_000),
    maxPendingRequests: int('MAX_PENDING_REQUESTS', 1000, 1, 1_000_000),
    requestArrivalTimeoutMs: int('REQUEST_ARRIVAL_TIMEOUT_MS', 10_000, 100, 600_000),
  };
  if (limits.defaultPageSize > limits.maxPageSize) problems.push('DEFAULT_PAGE_SIZE must not exceed MAX_PAGE_SIZE');

  const runMigrations = bool('RUN_MIGRATIONS', true);
  const d = DEFAULT_DATABASE_TIMEOUTS;
  const databaseTimeouts: DatabaseTimeouts = {
    connectMs: int('DATABASE_CONNECT_TIMEOUT_MS', d.connectMs, 100, 600_000),
    acquireMs: int('DATABASE_ACQUIRE_TIMEOUT_MS', d.acquireMs, 10, 600_000),
    callMs: int('DATABASE_CALL_TIMEOUT_MS', d.callMs, 50, 600_000),
    backgroundMs: int('DATABASE_BACKGROUND_TIMEOUT_MS', d.backgroundMs, 1000, 3_600_000),
    statementMs: int('DATABASE_STATEMENT_TIMEOUT_MS', d.statementMs, 0, 3_600_000),
    sqliteBusyMs: int('SQLITE_BUSY_TIMEOUT_MS', d.sqliteBusyMs, 0, 60_000),
  };
  if (databaseTimeouts.statementMs > 0 && databaseTimeouts.statementMs < 1000) {
    problems.push('DATABASE_STATEMENT_TIMEOUT_MS must be 0 (no limit) or at least 1000 (MariaDB counts it in seconds)');
  }
  const healthProbeIntervalMs = int('HEALTH_PROBE_INTERVAL_MS', 1000, 100, 60_000);
  const shutdownDrainMs = int('SHUTDOWN_DRAIN_MS', 5000, 0, 600_000);
  const decisionCache: DecisionCacheConfig = {
    entries: int('DECISION_CACHE_ENTRIES', 100_000, 0, 100_000_000),
    stalenessMs: int('DECISION_CACHE_STALENESS_MS', 1000, 20, 60_000),
  };
  // A worker only helps where there is a second core for it (on one, it adds its copies and gains nothing).
  const blindIndexWorkers = int('BLIND_INDEX_WORKERS', availableParallelism() > 1 ? 1 : 0, 0, 16);
  const metrics: MetricsConfig | undefined =
    (source.METRICS_PORT ?? '') === ''
      ? undefined
      : { port: int('METRICS_PORT', 0, 0, 65_535), bindAddress: source.METRICS_BIND_ADDRESS || '127.0.0.1', maxTenants: int('METRICS_MAX_TENANTS', 100, 1, 10_000) };
  const health =
    (source.HEALTH_PORT ?? '') === '' ? undefined : { port: int('HEALTH_PORT', 0, 0, 65_535), bindAddress: source.HEALTH_BIND_ADDRESS || '127.0.0.1' };
  let tracing: TracingExporter | undefined;
  try {
    tracing = tracingFromEnv(source);
  } catch (err) {
    problems.push((err as Error).message);
  }
  const auditCheckpointIntervalMs = int('AUDIT_CHECKPOINT_INTERVAL_MS', 3_600_000, 0, 7 * 24 * 3_600_000);
  if (auditCheckpointIntervalMs > 0 && auditCheckpointIntervalMs < 1000) problems.push('AUDIT_CHECKPOINT_INTERVAL_MS must be 0 (off) or at least 1000');

  const consoleConfig = consoleFrom(source, { authMode, tls, tokens, int, file }, problems);
  const privacyCenterPublicUrl = (source.PRIVACY_CENTER_PUBLIC_URL ?? '').replace(/\/+$/, '');
  if (privacyCenterPublicUrl !== '' && !/^https?:\/\/[^\s?#]+$/.test(privacyCenterPublicUrl)) {
    problems.push('PRIVACY_CENTER_PUBLIC_URL must be an http(s) URL without query or fragment, e.g. https://privacy.example.com');
  }
  const privacyCenter = privacyCenterFrom(source, { authMode, tls, tokens, int, file, publicUrl: privacyCenterPublicUrl }, problems);
  const smtp = smtpFrom(source, { int, bool, file, publicUrl: privacyCenterPublicUrl }, problems);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    port,
    bindAddress,
    dataDir,
    database,
    keyStore,
    runMigrations,
    databaseTimeouts,
    healthProbeIntervalMs,
    shutdownDrainMs,
    decisionCache,
    blindIndexWorkers,
    metrics,
    health,
    tracing,
    rootKeys,
    logLevel,
    auditCheckpointIntervalMs,
    authMode,
    tls,
    tokens,
    limits,
    console: consoleConfig,
    privacyCenter,
    privacyCenterPublicUrl,
    ...(smtp ? { smtp } : {}),
  };
}

/**
 * The SMTP_* settings; undefined when SMTP_URL is unset. No message quotes SMTP_URL or the
 * password file's content: a URL may carry credentials someone put there by mistake.
 */
function smtpFrom(
  source: Record<string, string>,
  api: {
    int: (key: string, fallback: number, min: number, max: number) => number;
    bool: (key: string, fallback: boolean) => boolean;
    file: (key: string) => string | undefined;
    publicUrl: string;
  },
  problems: string[],
): SmtpConfig | undefined {
  if (source.SMTP_PASSWORD !== undefined) problems.push('SMTP_PASSWORD is not read: put the password in a file readable by the service and name it in SMTP_PASSWORD_FILE');
  if ((source.SMTP_URL ?? '') === '') {
    const stray = Object.keys(source).filter((k) => k.startsWith('SMTP_') && k !== 'SMTP_PASSWORD');
    if (stray.length > 0) problems.push(`${stray.sort().join(', ')} ${stray.length > 1 ? 'are' : 'is'} only read with SMTP_URL (the service sends no mail)`);
    return undefined;
  }
  const before = problems.length;
  let url: URL | undefined;
  try {
    url = new URL(source.SMTP_URL);
  } catch {
    problems.push('SMTP_URL is not a URL (expected smtp://host:port or smtps://host:port)');
  }
  let host = '';
  let port = 0;
  let implicitTls = false;
  if (url) {
    if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') problems.push(`SMTP_URL scheme must be smtp: (STARTTLS) or smtps: (TLS) (got "${url.protocol}")`);
    if (url.username || url.password) problems.push('SMTP_URL must not hold credentials: set SMTP_USER and SMTP_PASSWORD_FILE');
    else if ((url.pathname && url.pathname !== '/') || url.search || url.hash) problems.push('SMTP_URL must be smtp://host:port or smtps://host:port, without path, query or fragment');
    host = url.hostname.replace(/^\[|\]$/g, '');
    if (!host) problems.push('SMTP_URL must name a host, e.g. smtp://mail.example.org:587');
    implicitTls = url.protocol === 'smtps:';
    port = url.port ? Number(url.port) : implicitTls ? 465 : 587;
  }
  const loopbackHost = isLoopback(host);
  const requireTls = api.bool('SMTP_REQUIRE_TLS', !loopbackHost);
  const from = source.SMTP_FROM ?? '';
  if (!from) problems.push('SMTP_URL needs SMTP_FROM, the sender address of the confirmation mails (e.g. noreply@example.org)');
  else if (from.length > 254 || !/^[^\s@<>()"',;:\\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(from)) {
    problems.push('SMTP_FROM must be a plain e-mail address such as noreply@example.org (no display name: the tenant\'s brand name is used)');
  }
  const user = source.SMTP_USER || undefined;
  const passwordFile = api.file('SMTP_PASSWORD_FILE');
  if (user && !source.SMTP_PASSWORD_FILE) problems.push('SMTP_USER needs SMTP_PASSWORD_FILE, a file holding the password');
  if (source.SMTP_PASSWORD_FILE && !user) problems.push('SMTP_PASSWORD_FILE is only read with SMTP_USER');
  if (passwordFile && existsSync(passwordFile)) {
    try {
      if (readSmtpPassword(passwordFile) === '') problems.push(`SMTP_PASSWORD_FILE ${passwordFile} is empty (the password is its first line)`);
    } catch (err) {
      problems.push(`SMTP_PASSWORD_FILE ${passwordFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  if (user && !implicitTls && !requireTls && !loopbackHost) {
    problems.push('SMTP_USER over smtp:// without SMTP_REQUIRE_TLS would send the password in clear: use smtps:// or SMTP_REQUIRE_TLS=true');
  }
  if (!api.publicUrl) problems.push('SMTP_URL needs PRIVACY_CENTER_PUBLIC_URL: the mailed links must be absolute (https://privacy.example.com/t/...)');
  const pollIntervalMs = api.int('SMTP_POLL_INTERVAL_MS', 1000, 50, 3_600_000);
  if (problems.length > before) return undefined;
  return { host, port, implicitTls, requireTls, ignoreTls: loopbackHost && !requireTls, from, ...(user ? { user } : {}), ...(passwordFile ? { passwordFile } : {}), pollIntervalMs };
}

/** The CONSOLE_* settings (docs/console.md); undefined when CONSOLE_PORT is unset. */
function consoleFrom(
  source: Record<string, string>,
  api: {
    authMode: Config['authMode'];
    tls?: TlsConfig;
    tokens?: TokenConfig;
    int: (key: string, fallback: number, min: number, max: number) => number;
    file: (key: string) => string | undefined;
  },
  problems: string[],
): ConsoleConfig | undefined {
  if ((source.CONSOLE_PORT ?? '') === '') {
    const stray = Object.keys(source).filter((k) => k.startsWith('CONSOLE_'));
    if (stray.length > 0) problems.push(`${stray.sort().join(', ')} ${stray.length > 1 ? 'are' : 'is'} only read with CONSOLE_PORT (the web console is off)`);
    return undefined;
  }
  const port = api.int('CONSOLE_PORT', 0, 0, 65_535);
  const bindAddress = source.CONSOLE_BIND_ADDRESS || '127.0.0.1';
  const apiAddress = source.CONSOLE_API_ADDRESS || undefined;
  const signIn = (source.CONSOLE_SIGN_IN || (api.authMode === 'development' && !apiAddress ? 'development' : 'proxy')) as ConsoleConfig['signIn'];
  if (signIn !== 'development' && signIn !== 'proxy' && signIn !== 'oidc') problems.push(`CONSOLE_SIGN_IN must be development, proxy or oidc (got "${String(signIn)}")`);
  if (signIn === 'development') {
    // Anyone who reaches the console acts as the API's development principal: this machine only.
    if (!isLoopback(bindAddress)) problems.push(`CONSOLE_SIGN_IN=development serves without sign-in: CONSOLE_BIND_ADDRESS must be loopback (got ${bindAddress}); use CONSOLE_SIGN_IN=proxy behind the organisation's auth proxy`);
    if (!apiAddress && api.authMode !== 'development') problems.push('CONSOLE_SIGN_IN=development needs the API in development mode (the console has no credential of its own); use CONSOLE_SIGN_IN=proxy');
  }
  if ((signIn === 'proxy' || signIn === 'oidc') && !apiAddress && !api.tokens) {
    // A development-mode API would answer every forwarded token as the all-powerful dev-admin.
    problems.push(`CONSOLE_SIGN_IN=${signIn} forwards bearer tokens: the API must verify them (set JWT_JWKS_FILE)`);
  }
  const proxyHeader = (source.CONSOLE_AUTH_HEADER || 'x-forwarded-access-token').toLowerCase();
  if (!/^[a-z0-9-]+$/.test(proxyHeader)) problems.push(`CONSOLE_AUTH_HEADER must be a header name (got "${proxyHeader}")`);
  const apiCaFile = api.file('CONSOLE_API_CA_FILE');
  if (!apiAddress && api.tls && !apiCaFile) problems.push('the API serves TLS: set CONSOLE_API_CA_FILE to the CA that issued its certificate, so the console can check it');
  const oidc = signIn === 'oidc' ? consoleOidcFrom(source, bindAddress, apiAddress ? undefined : api.tokens, api.file, problems) : undefined;
  if (signIn !== 'oidc') {
    const stray = Object.keys(source).filter((k) => (k.startsWith('CONSOLE_OIDC_') || k === 'CONSOLE_SESSION_KEY_FILE') && source[k] !== '');
    if (stray.length > 0) problems.push(`${stray.sort().join(', ')} ${stray.length > 1 ? 'are' : 'is'} only read with CONSOLE_SIGN_IN=oidc`);
  }
  return { port, bindAddress, signIn, proxyHeader, apiAddress, apiCaFile, apiServerName: source.CONSOLE_API_SERVER_NAME || undefined, ...(oidc ? { oidc } : {}) };
}

/** CONSOLE_OIDC_*: the provider, the client, the public address and the session keys. */
function consoleOidcFrom(
  source: Record<string, string>,
  bindAddress: string,
  tokens: TokenConfig | undefined,
  file: (key: string) => string | undefined,
  problems: string[],
): ConsoleOidcConfig | undefined {
  const before = problems.length;
  const url = (key: string, what: string): URL | undefined => {
    const raw = source[key];
    if (!raw) {
      problems.push(`CONSOLE_SIGN_IN=oidc needs ${key} (${what})`);
      return undefined;
    }
    try {
      const parsed = new URL(raw);
      if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error('not http(s)');
      if (parsed.search || parsed.hash) throw new Error('no query or fragment');
      return parsed;
    } catch (err) {
      problems.push(`${key} must be an http(s) URL without query or fragment (${(err as Error).message})`);
      return undefined;
    }
  };
  const issuer = url('CONSOLE_OIDC_ISSUER', "the issuer URL of the organisation's OpenID Connect provider, e.g. https://sso.example.org/realms/staff");
  // Tokens and codes cross these connections: in clear only between processes on one machine.
  if (issuer && issuer.protocol === 'http:' && !isLoopback(issuer.hostname)) problems.push(`CONSOLE_OIDC_ISSUER must use https (got ${issuer.origin}); http only for a provider on loopback`);
  const publicUrl = url('CONSOLE_OIDC_REDIRECT_URL', "the console's public address, e.g. https://console.example.org; the provider redirects back to <it>/oidc/callback");
  if (publicUrl) {
    if (!/^\/?(oidc\/callback)?$/.test(publicUrl.pathname.replace(/\/$/, ''))) problems.push(`CONSOLE_OIDC_REDIRECT_URL must be the console's origin (or <origin>/oidc/callback); the console serves no path prefix (got path ${publicUrl.pathname})`);
    if (publicUrl.protocol === 'http:' && !(isLoopback(publicUrl.hostname) && isLoopback(bindAddress))) {
      problems.push(`CONSOLE_OIDC_REDIRECT_URL must use https (got ${publicUrl.origin}): the session cookie is Secure; plain http only with the console and the address on loopback`);
    }
  }
  const clientId = source.CONSOLE_OIDC_CLIENT_ID ?? '';
  if (!clientId) problems.push('CONSOLE_SIGN_IN=oidc needs CONSOLE_OIDC_CLIENT_ID (the client registered at the provider)');
  const clientSecretFile = file('CONSOLE_OIDC_CLIENT_SECRET_FILE');
  const clientSecret = source.CONSOLE_OIDC_CLIENT_SECRET || undefined;
  if (clientSecret && clientSecretFile) problems.push('set CONSOLE_OIDC_CLIENT_SECRET or CONSOLE_OIDC_CLIENT_SECRET_FILE, not both');
  const scopes = (source.CONSOLE_OIDC_SCOPES || 'openid').split(/[\s,]+/).filter(Boolean);
  if (!scopes.includes('openid')) problems.push(`CONSOLE_OIDC_SCOPES must include openid (got "${scopes.join(' ')}")`);
  if (scopes.some((s) => !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s))) problems.push('CONSOLE_OIDC_SCOPES must be scope names separated by spaces or commas');
  const forwardToken = (source.CONSOLE_OIDC_TOKEN || 'access_token') as ConsoleOidcConfig['forwardToken'];
  if (forwardToken !== 'access_token' && forwardToken !== 'id_token') problems.push(`CONSOLE_OIDC_TOKEN must be access_token or id_token (got "${String(forwardToken)}")`);
  // An ID token is issued to the console (aud = client id): the API only accepts it when it expects that audience.
  if (forwardToken === 'id_token' && tokens?.audience && tokens.audience !== clientId) {
    problems.push(`CONSOLE_OIDC_TOKEN=id_token forwards ID tokens, whose audience is the client id "${clientId}", but the API expects JWT_AUDIENCE=${tokens.audience}`);
  }
  const sessionKeyFile = file('CONSOLE_SESSION_KEY_FILE');
  if (sessionKeyFile && existsSync(sessionKeyFile)) {
    try {
      readSessionKeys(sessionKeyFile);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > before || !issuer || !publicUrl) return undefined;
  return {
    // Exactly as given: discovery checks the document's issuer against it, trailing slash and all.
    issuer: source.CONSOLE_OIDC_ISSUER,
    clientId,
    ...(clientSecret ? { clientSecret } : {}),
    ...(clientSecretFile ? { clientSecretFile } : {}),
    publicUrl: publicUrl.origin,
    scopes,
    forwardToken,
    ...(sessionKeyFile ? { sessionKeyFile } : {}),
  };
}

/** The PRIVACY_CENTER_* settings (docs/privacy-center.md); undefined when PRIVACY_CENTER_PORT is unset. */
function privacyCenterFrom(
  source: Record<string, string>,
  api: {
    authMode: Config['authMode'];
    tls?: TlsConfig;
    tokens?: TokenConfig;
    int: (key: string, fallback: number, min: number, max: number) => number;
    file: (key: string) => string | undefined;
    /** PRIVACY_CENTER_PUBLIC_URL as checked above (the API's links use it too). */
    publicUrl: string;
  },
  problems: string[],
): PrivacyCenterConfig | undefined {
  const publicUrl = api.publicUrl;
  if ((source.PRIVACY_CENTER_PORT ?? '') === '') {
    // PRIVACY_CENTER_PUBLIC_URL is also read by the API (the links it hands out), so it may stand alone.
    const stray = Object.keys(source).filter((k) => k.startsWith('PRIVACY_CENTER_') && k !== 'PRIVACY_CENTER_PUBLIC_URL');
    if (stray.length > 0) problems.push(`${stray.sort().join(', ')} ${stray.length > 1 ? 'are' : 'is'} only read with PRIVACY_CENTER_PORT (the privacy center is off)`);
    return undefined;
  }
  const port = api.int('PRIVACY_CENTER_PORT', 0, 0, 65_535);
  const bindAddress = source.PRIVACY_CENTER_BIND_ADDRESS || '127.0.0.1';
  const apiAddress = source.PRIVACY_CENTER_API_ADDRESS || undefined;
  const apiTokenFile = api.file('PRIVACY_CENTER_API_TOKEN_FILE');
  if (!apiTokenFile) {
    // No credential: only against a development-mode API, and only on this machine.
    if (!apiAddress && api.authMode !== 'development') problems.push('the API wants credentials: set PRIVACY_CENTER_API_TOKEN_FILE to a file with the privacy center\'s bearer token (JWT with the role self_service)');
    if (!isLoopback(bindAddress)) problems.push(`the privacy center without PRIVACY_CENTER_API_TOKEN_FILE (development mode) serves on loopback only (got PRIVACY_CENTER_BIND_ADDRESS=${bindAddress})`);
  } else if (!apiAddress && !api.tokens) {
    problems.push('PRIVACY_CENTER_API_TOKEN_FILE holds a bearer token: the API must verify it (set JWT_JWKS_FILE)');
  }
  if (!isLoopback(bindAddress) && !publicUrl.startsWith('https://')) {
    // Its cookies are Secure and the links people get point at it: in front of people it is https.
    problems.push(`the privacy center on ${bindAddress} needs PRIVACY_CENTER_PUBLIC_URL, its public https address (TLS terminated by the proxy in front)`);
  }
  const apiCaFile = api.file('PRIVACY_CENTER_API_CA_FILE');
  if (!apiAddress && api.tls && !apiCaFile) problems.push('the API serves TLS: set PRIVACY_CENTER_API_CA_FILE to the CA that issued its certificate, so the privacy center can check it');
  const trustProxy = (source.PRIVACY_CENTER_TRUST_PROXY ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  for (const entry of trustProxy) {
    if (!/^(loopback|linklocal|uniquelocal)$/.test(entry) && !/^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(entry)) {
      problems.push(`PRIVACY_CENTER_TRUST_PROXY: "${entry}" is not an IP address, a CIDR range or one of loopback, linklocal, uniquelocal`);
    }
  }
  const postsPerMinute = api.int('PRIVACY_CENTER_POSTS_PER_MINUTE', 20, 1, 100_000);
  return { port, bindAddress, apiAddress, apiCaFile, apiServerName: source.PRIVACY_CENTER_API_SERVER_NAME || undefined, apiTokenFile, publicUrl, trustProxy, postsPerMinute };
}

/** 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach. */
export function isLoopback(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, '');
  return a === 'localhost' || a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/**
 * The key store next to the data: a second SQLite file in the same folder, or a second database
 * `<name>_keys` on the same MySQL server (created at start when missing).
 */
function defaultKeyStore(database: DatabaseConfig): DatabaseConfig {
  if (database.kind === 'sqlite') {
    return { kind: 'sqlite', file: database.file === ':memory:' || !database.file ? ':memory:' : path.join(path.dirname(database.file), 'consent-keys.sqlite') };
  }
  const url = new URL(database.url);
  url.pathname = `/${url.pathname.replace(/^\//, '')}_keys`;
  return { ...database, url: url.toString() };
}

function sameDatabase(a: DatabaseConfig, b: DatabaseConfig): boolean {
  if (a.kind === 'sqlite' && b.kind === 'sqlite') return a.file !== ':memory:' && a.file === b.file;
  if (a.kind === 'mysql' && b.kind === 'mysql') {
    const x = new URL(a.url);
    const y = new URL(b.url);
    return x.host === y.host && x.pathname === y.pathname;
  }
  return false;
}

function parseDatabaseUrl(
  raw: string | undefined,
  dataDir: string,
  poolSize: number,
  cwd: string,
  problems: string[],
  name = 'DATABASE_URL',
): DatabaseConfig {
  if (!raw) return { kind: 'sqlite', file: path.join(dataDir, 'consent-ledger.sqlite') };
  if (raw.startsWith('sqlite:')) {
    const file = raw.slice('sqlite:'.length).replace(/^\/\//, '');
    if (!file) problems.push(`${name} sqlite: needs a file path, e.g. sqlite:./data/ledger.sqlite`);
    return { kind: 'sqlite', file: file === ':memory:' ? file : path.resolve(cwd, file) };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    problems.push(`${name} is not a URL (expected mysql://user:password@host:3306/database or sqlite:path)`);
    return { kind: 'sqlite', file: '' };
  }
  if (url.protocol !== 'mysql:' && url.protocol !== 'mariadb:') {
    problems.push(`${name} scheme must be mysql:, mariadb: or sqlite: (got "${url.protocol}")`);
  }
  if (url.pathname.replace(/^\//, '') === '') problems.push(`${name} must name a database, e.g. mysql://root@127.0.0.1:3306/consent`);
  // mariadb:// says which server it is; for mysql:// the server is asked at start.
  return { kind: 'mysql', url: raw.replace(/^mariadb:/, 'mysql:'), poolSize, flavor: url.protocol === 'mariadb:' ? 'mariadb' : undefined };
}

function readConfigFile(file: string | undefined, cwd: string, problems: string[]): Record<string, string> {
  if (!file) return {};
  const resolved = path.resolve(cwd, file);
  if (!existsSync(resolved)) {
    problems.push(`CONFIG_FILE ${resolved} does not exist`);
    return {};
  }
  try {
    const parsed: unknown = JSON.parse(readFileSync(resolved, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
  } catch (err) {
    problems.push(`CONFIG_FILE ${resolved} is not a JSON object of settings (${(err as Error).message})`);
    return {};
  }
}

/** An empty variable counts as unset, so `FOO=` does not mask the config file's value. */
function definedOnly(env: Env): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''));
}
