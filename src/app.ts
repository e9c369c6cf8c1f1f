import { existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import { DataSource } from 'typeorm';
import { Server } from '@grpc/grpc-js';
import { Config, readSmtpPassword } from './config/config';
import { DEFAULT_REQUEST_ITEMS, ItemLimits } from './transport/request-item-limits';
import { KeyManager } from './crypto/key-manager';
import { loadRootKeys } from './crypto/root-key-provider';
import { Clock, systemClock } from './domain/clock';
import { ConsentChecker } from './domain/consent-checker';
import { DomainError } from './shared/errors';
import { DecisionCache } from './domain/decision-cache';
import { CacheInvalidator } from './domain/cache-invalidator';
import { SqlDecisionStateRepository } from './storage/repositories/decision-state-repository';
import { ConsentHistory } from './domain/consent-history';
import { ConsentRecorder } from './domain/consent-recorder';
import { ConsentWriter } from './domain/consent-writer';
import { PurposeService } from './domain/purpose-service';
import { SubjectDirectory } from './domain/subject-directory';
import { TenantService } from './domain/tenant-service';
import { createLogger, Logger } from './logging/logger';
import { createDataSource, ensureMysqlDatabase } from './storage/data-source';
import { DatabaseProbe } from './storage/database-probe';
import { SqliteCheckpointer } from './storage/sqlite-checkpointer';
import { BlindIndexWorkers } from './crypto/blind-index-workers';
import { checkSchema, migrateSchema, MigrationEvents, Store } from './storage/schema';
import { TypeormConsentRepository } from './storage/repositories/consent-repository';
import { TypeormKeyStore } from './storage/keystore/typeorm-key-store';
import { TypeormPurposeRepository } from './storage/repositories/purpose-repository';
import { TypeormSubjectRepository } from './storage/repositories/subject-repository';
import { TypeormTenantRepository } from './storage/repositories/tenant-repository';
import { TypeormTransactionRunner } from './storage/transaction-runner';
import { CallPipeline } from './transport/call-pipeline';
import { CallLimits } from './transport/auth/call-limits';
import { createAuthenticator, createServerCredentials } from './transport/auth/credentials-setup';
import { consentHandlers } from './transport/handlers/consent-handlers';
import { purposeHandlers } from './transport/handlers/purpose-handlers';
import { tenantHandlers } from './transport/handlers/tenant-handlers';
import { keyHandlers } from './transport/handlers/key-handlers';
import { KeyAdministration } from './domain/key-administration';
import { SubjectEraser } from './domain/subject-eraser';
import { RequestSubjectResolver } from './domain/request-identifiers';
import { ObjectionRecorder } from './domain/objection';
import { IdentifierReassignment } from './domain/identifier-reassignment';
import { IdentifierRectification } from './domain/identifier-rectification';
import { AuditLog } from './audit/audit-log';
import { AuditService } from './domain/audit-service';
import { auditHandlers } from './transport/handlers/audit-handlers';
import { TypeormAuditRepository } from './storage/repositories/audit-repository';
import { SubjectRightsService } from './domain/subject-rights-service';
import { SubjectExporter } from './domain/subject-exporter';
import { ChangeFeed } from './domain/change-feed';
import { TypeormSubjectRightsRepository } from './storage/repositories/subject-rights-repository';
import { SqlIdentifierChangeRepository } from './storage/repositories/identifier-change-repository';
import { subjectRightsHandlers } from './transport/handlers/subject-rights-handlers';
import { identityHandlers } from './transport/handlers/identity-handlers';
import { selfServiceSignUpHandlers } from './transport/handlers/self-service-signup-handlers';
import { SelfServiceSignUp } from './domain/self-service-signup';
import { ConfirmationMailQueue } from './domain/confirmation-mail-queue';
import { SelfServiceTokens } from './domain/self-service-tokens';
import { SqlSignUpRepository } from './storage/repositories/signup-repository';
import { selfServiceLinkHandlers } from './transport/handlers/self-service-link-handlers';
import { PreferenceLinks } from './domain/preference-links';
import { IdentityLinks } from './domain/identity-links';
import { TypeormIdentityLinkRepository } from './storage/repositories/identity-link-repository';
import { BackgroundJobs } from './jobs/background-jobs';
import { ConfirmationMailer, smtpSender } from './jobs/confirmation-mailer';
import { TypeormKeyRotationRepository } from './storage/repositories/key-rotation-repository';
import { TypeormChangeFeedRepository } from './storage/repositories/change-feed-repository';
import { addHealth, bind, createGrpcServer, createHealth, SERVICE_NAMES } from './transport/server';
import { ArrivalGuardEvents, requestArrivalGuard } from './transport/request-arrival-guard';
import { routeGrpcJsLogs } from './transport/grpc-js-log';
import type { HealthImplementation } from 'grpc-health-check';
import { MetricSources, ServiceMetrics } from './observability/metrics';
import { RpcTelemetry } from './observability/rpc-telemetry';
import { withCallBudget } from './shared/call-budget';
import { startMetricsServer } from './observability/metrics-server';
import type { Tracing } from './observability/tracing';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OperationsRepository } from './storage/repositories/operations-repository';

export interface AppOptions {
  logger?: Logger;
  clock?: Clock;
  /** Where spans go instead of what OTEL_* configures (tests: an in-memory exporter). */
  spanExporter?: SpanExporter;
  /** How often stalled erasure requests are looked for, and after how long one counts as stalled (tests: shorter). */
  erasureSweep?: { intervalMs: number; stalledMs: number };
  /** The blind-index workers' code instead of the real one (tests: one that answers late). */
  blindIndexWorkerSource?: string;
}

/** A started service: its bound port, and how to stop it. */
export interface RunningApp {
  port: number;
  /** The port of /metrics (METRICS_PORT), when metrics are on. */
  metricsPort?: number;
  /** The plaintext health-only port (HEALTH_PORT), when on. */
  healthPort?: number;
  /** The metrics, when on: the transport and the domain report to them. */
  metrics?: ServiceMetrics;
  /** Tracing, when on. */
  tracing?: Tracing;
  server: Server;
  dataSource: DataSource;
  keyDataSource: DataSource;
  /** The checkpointers of the SQLite files (data, key store); none on MySQL/MariaDB or in memory. */
  sqliteCheckpointers: SqliteCheckpointer[];
  /** The worker threads of bulk checks' blind indexes (BLIND_INDEX_WORKERS); none when 0. */
  blindIndexWorkers?: BlindIndexWorkers;
  config: Config;
  logger: Logger;
  /** The domain services, for operations without an RPC yet (subject erasure), tools and benchmarks. */
  services: {
    tenants: TenantService;
    purposes: PurposeService;
    recorder: ConsentRecorder;
    writer: ConsentWriter;
    subjectEraser: SubjectEraser;
    keyAdministration: KeyAdministration;
    keys: KeyManager;
    subjectRights: SubjectRightsService;
    subjectExporter: SubjectExporter;
    identityLinks: IdentityLinks;
    audit: AuditLog;
    auditService: AuditService;
    /** Null when DECISION_CACHE_ENTRIES=0. */
    decisionCache: DecisionCache | null;
    invalidator: CacheInvalidator | null;
    /** The data store's units of work (the one runner every service uses: its connections' sessions are prepared once). */
    tx: TypeormTransactionRunner;
  };
  stop(): Promise<void>;
}

/**
 * Crash tests stop the process at a named point: CONSENT_FAILPOINT=erasure.started makes the
 * process exit (as a kill would) right after an erasure was durably started, erasure.subject-erased
 * after it erased the first person of a request. Unset in production.
 */
/** The request-arrival guard's reports, at most one warning per 10 s each (an attack must not flood the log). */
function arrivalGuardLog(logger: Logger): ArrivalGuardEvents {
  const every = 10_000;
  const state = { refused: 0, timedOut: 0, refusedAt: 0, timedOutAt: 0 };
  return {
    refused(pending) {
      state.refused++;
      if (Date.now() - state.refusedAt < every) return;
      state.refusedAt = Date.now();
      logger.warn('calls refused: too many calls wait for their request message (MAX_PENDING_REQUESTS)', { refused: state.refused, pending });
      state.refused = 0;
    },
    timedOut(count) {
      state.timedOut += count;
      if (Date.now() - state.timedOutAt < every) return;
      state.timedOutAt = Date.now();
      logger.warn('calls ended: their request message did not arrive in time (REQUEST_ARRIVAL_TIMEOUT_MS)', { ended: state.timedOut });
      state.timedOut = 0;
    },
  };
}

/** How often the service looks for erasure requests a failed call left IN_PROGRESS, and how long one must have been so. */
const ERASURE_SWEEP_INTERVAL_MS = 10_000;
const ERASURE_STALLED_MS = 30_000;

/**
 * List items a request may hold (request-item-limits.ts): an ImportConsents message the rows a
 * whole call may hold, a StreamCheckConsent message MAX_BATCH_CHECKS items, any other request
 * DEFAULT_REQUEST_ITEMS. The wire count stops requests built to exhaust memory; a
 * CheckConsentBatch over MAX_BATCH_CHECKS (at most 10,000) but under that is answered by its
 * handler, which names every problem of the request (BATCH_SIZE, parent).
 */
function itemLimitsOf(limits: Config['limits']): ItemLimits {
  return {
    defaultLimit: DEFAULT_REQUEST_ITEMS,
    byMethod: {
      '/consent.v1.ConsentService/ImportConsents': {
        limit: limits.maxImportRows,
        field: 'rows',
        reason: 'TOO_MANY',
        description: `at most ${limits.maxImportRows} rows per call; send the rest in another call`,
      },
      // A packed message's items: refused on the wire with the reason its handler would give.
      '/consent.v1.ConsentService/StreamCheckConsent': {
        limit: limits.maxBatchChecks,
        field: 'items',
        reason: 'BATCH_SIZE',
        description: `must hold 1 to ${limits.maxBatchChecks} items`,
      },
    },
  };
}

function failpoint(name: string): void {
  if (process.env.CONSENT_FAILPOINT === name) process.kill(process.pid, 'SIGKILL');
}

/** Connects the database, runs migrations (unless disabled), loads keys, wires and starts the server. */
export async function startApp(config: Config, options: AppOptions = {}): Promise<RunningApp> {
  const logger = options.logger ?? createLogger(config.logLevel);
  // grpc-js's own lines go through this logger too (one of them quotes request headers).
  routeGrpcJsLogs(logger);
  const clock = options.clock ?? systemClock;

  // Before anything changes on disk or in a database: a second instance on the same port fails here.
  await ensurePortFree(config);
  // Readiness from the start: the health-only port (HEALTH_PORT) opens before the databases are
  // opened and migrated, and says NOT_SERVING until the service is started (a probe sees "not
  // ready" rather than a refused connection while migrations run or wait for another replica's
  // lock). The API port, with the same health service, opens only once everything is ready.
  const health = createHealth('NOT_SERVING');
  const healthEndpoint = config.health ? await startHealthServer(health, config.health, logger) : null;
  try {
    return await startService(config, options, logger, clock, health, healthEndpoint);
  } catch (err) {
    healthEndpoint?.server.forceShutdown();
    throw err;
  }
}

/** grpc.health.v1 alone on a plaintext port (HEALTH_PORT), for probes that cannot present the API's credentials. */
async function startHealthServer(health: HealthImplementation, where: { port: number; bindAddress: string }, logger: Logger): Promise<{ server: Server; port: number }> {
  const server = new Server();
  addHealth(server, health);
  const port = await bind(server, where.bindAddress, where.port).catch((err: Error) => {
    server.forceShutdown();
    throw new Error(`cannot listen on ${where.bindAddress}:${where.port} for health (HEALTH_PORT): ${err.message}. Nothing was started or migrated`);
  });
  logger.info('health listening', { address: where.bindAddress, port });
  return { server, port };
}

/** The rest of startApp, once the health port (if any) answers NOT_SERVING. */
async function startService(
  config: Config,
  options: AppOptions,
  logger: Logger,
  clock: Clock,
  health: HealthImplementation,
  healthEndpoint: { server: Server; port: number } | null,
): Promise<RunningApp> {
  const { provider: rootKeys, generatedFile } = await loadRootKeys(config.rootKeys);
  if (generatedFile) {
    logger.warn(
      'DEVELOPMENT ROOT KEY GENERATED: no ROOT_KEYS_FILE or ROOT_KEYS_JSON was configured, so a new root key was written ' +
        'to the data folder. Anyone who can read that file can decrypt this database. Never run production like this ' +
        '(docs/keys.md).',
      { file: generatedFile },
    );
  } else if (config.rootKeys.kind === 'generated-dev') {
    logger.warn('using the development root key from the data folder; configure ROOT_KEYS_FILE for production', {
      file: config.rootKeys.file,
    });
  }

  const dataSource = await openDatabase(config, logger);
  const keyDataSource = await openKeyStore(config, logger).catch(async (err: unknown) => {
    await dataSource.destroy();
    throw err;
  });
  const tx = new TypeormTransactionRunner(dataSource);
  // Traces when configured (OTEL_* environment, docs/operations.md): RPCs, units of database work, statements.
  const traceTo = options.spanExporter ?? config.tracing;
  // Loaded only when on: with tracing off, none of the SDK is loaded.
  /* eslint-disable @typescript-eslint/no-require-imports */
  const tracing = traceTo ? new (require('./observability/tracing') as typeof import('./observability/tracing')).Tracing(traceTo) : null;
  if (tracing) {
    tx.tracing = tracing;
    (require('./storage/statement-tracing') as typeof import('./storage/statement-tracing')).traceStatements(dataSource, tracing.tracer);
  }
  /* eslint-enable @typescript-eslint/no-require-imports */
  const audit = new AuditLog(tx, new TypeormAuditRepository());
  // Bulk checks hash their blind indexes beside the event loop (crypto/blind-index-workers.ts).
  const blindIndexWorkers = config.blindIndexWorkers > 0 ? new BlindIndexWorkers(config.blindIndexWorkers, logger, options.blindIndexWorkerSource) : undefined;
  const keys = new KeyManager(rootKeys, new TypeormKeyStore(keyDataSource), config.limits, blindIndexWorkers);
  // Refuse to start, rather than start and fail every call, when the root keys cannot unwrap the
  // stored tenant keys; a development key generated just now is useless then and is removed.
  await keys.checkRootKeysCoverStoredKeys().catch(async (err: unknown) => {
    await Promise.all([dataSource.destroy(), keyDataSource.destroy(), blindIndexWorkers?.stop()]);
    if (generatedFile) rmSync(generatedFile, { force: true });
    throw err;
  });
  const subjects = new TypeormSubjectRepository();
  const changeRows = new TypeormChangeFeedRepository();
  const consent = new TypeormConsentRepository();
  const tenantRows = new TypeormTenantRepository();
  const purposeRows = new TypeormPurposeRepository();
  const tenants = new TenantService(tx, tenantRows, purposeRows, keys, clock, audit);
  const purposes = new PurposeService(tx, purposeRows, tenants, keys, clock, config.limits, audit);
  const directory = new SubjectDirectory(subjects, keys);
  const writer = new ConsentWriter(tx, consent, subjects, tenants, keys, changeRows, audit);
  const recorder = new ConsentRecorder(tx, writer, directory, tenants, purposes, keys, clock, config.limits.maxEventTimeSkewMs, config.databaseTimeouts.callMs);
  // A span per group-commit batch, linked to the calls it carries (only when tracing is on).
  if (tracing) recorder.batchTracing = tracing;
  const jobs = new BackgroundJobs(logger);
  const linkRows = new TypeormIdentityLinkRepository();
  const signUpRows = new SqlSignUpRepository();
  const subjectEraser = new SubjectEraser(tx, subjects, keys, clock, changeRows, consent, audit, linkRows, signUpRows);
  const signUp = new SelfServiceSignUp(tx, signUpRows, recorder, subjects, purposeRows, tenants, keys, new SelfServiceTokens(keys), changeRows, audit, clock, config.limits, config.privacyCenterPublicUrl, Boolean(config.smtp));
  const mailQueue = new ConfirmationMailQueue(tx, signUpRows, tenants, keys, clock, config.privacyCenterPublicUrl);
  // The confirmation mails, when SMTP_URL is set (docs/privacy-center.md, "Confirmation mails").
  // The password is read from its file here, once, and handed to the transport only; the mailer
  // starts once the service is up (below).
  const mailer = config.smtp
    ? new ConfirmationMailer(
        mailQueue,
        smtpSender({
          host: config.smtp.host,
          port: config.smtp.port,
          implicitTls: config.smtp.implicitTls,
          requireTls: config.smtp.requireTls,
          ignoreTls: config.smtp.ignoreTls,
          user: config.smtp.user,
          password: config.smtp.passwordFile ? readSmtpPassword(config.smtp.passwordFile) : undefined,
        }),
        { from: config.smtp.from, pollIntervalMs: config.smtp.pollIntervalMs, onResult: (result) => metrics?.confirmationMail(result) },
        logger,
      )
    : null;
  const subjectRightsRepo = new TypeormSubjectRightsRepository();
  const objections = new ObjectionRecorder(subjects, consent, purposeRows, changeRows, keys, audit);
  const identityLinks = new IdentityLinks(tx, linkRows, subjects, subjectRightsRepo, tenants, keys, clock, config.limits, audit, objections, changeRows);
  // A request reaches the persons its identifiers find and everyone linked to them.
  const requestSubjects = new RequestSubjectResolver(subjects, consent, subjectRightsRepo, identityLinks);
  const subjectRights = new SubjectRightsService(tx, subjectRightsRepo, subjects, tenants, keys, subjectEraser, clock, config.limits, audit, objections, requestSubjects, changeRows, failpoint);
  const subjectExporter = new SubjectExporter(tx, subjectRightsRepo, subjects, consent, tenants, keys, clock, audit, requestSubjects, purposeRows);
  const preferenceLinks = new PreferenceLinks(tx, subjects, consent, directory, purposeRows, tenants, keys, new SelfServiceTokens(keys), recorder, subjectRights, clock, config.privacyCenterPublicUrl, identityLinks);
  const identifierChanges = new SqlIdentifierChangeRepository();
  const reassignment = new IdentifierReassignment(tx, subjects, consent, changeRows, identifierChanges, tenants, keys, clock, audit, signUpRows);
  const rectification = new IdentifierRectification(tx, subjectRightsRepo, subjects, identifierChanges, tenants, keys, clock, audit, changeRows, signUpRows);
  subjectRights.rectification = rectification;
  const keyAdmin = new KeyAdministration(tx, tenantRows, tenants, new TypeormKeyRotationRepository(), keys, jobs, clock, audit, failpoint);
  // The decision cache follows the audit logs of the tenants it holds (CacheInvalidator) and
  // forgets this process's own writes at once, before they are answered (read your writes).
  const monotonic = () => performance.now();
  const decisionCache = config.decisionCache.entries > 0 ? new DecisionCache({ maxEntries: config.decisionCache.entries, stalenessMs: config.decisionCache.stalenessMs, monotonic, onTenantChange: (tenantId) => tenants.evict(tenantId) }) : null;
  const decisionState = new SqlDecisionStateRepository();
  let lastInvalidatorWarning = 0;
  const invalidator = decisionCache
    ? new CacheInvalidator(tx, decisionState, decisionCache, {
        intervalMs: Math.max(10, Math.min(100, Math.floor(config.decisionCache.stalenessMs / 4))),
        monotonic,
        onError: (err) => {
          // Once per 10 s at most: a database that is down would otherwise log ten lines a second.
          if (Date.now() - lastInvalidatorWarning < 10_000) return;
          lastInvalidatorWarning = Date.now();
          logger.warn('the decision cache cannot follow the audit logs; checks read the database until it can', { error: errorSummary(err) });
        },
      })
    : null;
  if (decisionCache) {
    writer.observer = (tenantId, committed) => decisionCache.written(tenantId, committed.subjectIds, committed.createdSubjects, committed.logSize);
    subjectEraser.observer = (tenantId: string, subjectId: string, logSize: number) => decisionCache.written(tenantId, [subjectId], false, logSize);
    subjectRights.observer = (tenantId, subjectId, createdSubject, logSize) => decisionCache.written(tenantId, [subjectId], createdSubject, logSize);
    identityLinks.observer = (tenantId, changed, logSize) => {
      if (changed.created.length > 0) decisionCache.written(tenantId, changed.created, true, logSize);
      const carried = changed.carried.filter((id) => !changed.created.includes(id));
      if (carried.length > 0) decisionCache.written(tenantId, carried, false, logSize);
    };
    reassignment.observer = (tenantId, subjectIds, createdSubject, logSize) => decisionCache.written(tenantId, subjectIds, createdSubject, logSize);
    // The new identifier may be cached as naming nobody: as for a new person.
    rectification.observer = (tenantId, subjectId, logSize) => decisionCache.written(tenantId, [subjectId], true, logSize);
  }
  const checker = new ConsentChecker(tx, subjects, consent, decisionState, tenants, purposes, keys, clock, decisionCache, monotonic);
  const history = new ConsentHistory(tx, directory, consent, tenants, purposes, keys, clock, config.limits);

  const auditService = new AuditService(tx, audit, tenants, directory, consent, checker, keys, clock, config.limits);

  const authenticator = await createAuthenticator(config);
  const limits = new CallLimits({ ratePerSecond: config.limits.ratePerSecond, burst: config.limits.rateBurst, maxStreamsPerPrincipal: config.limits.maxStreamsPerPrincipal });
  // Metrics (when METRICS_PORT is set) and traces (when OTEL_* says so) of every call.
  const metrics = config.metrics ? new ServiceMetrics(config.metrics.maxTenants, metricSources()) : null;
  const telemetry = new RpcTelemetry(metrics ?? undefined, tracing ?? undefined);
  if (metrics) writer.metrics = metrics;
  const openStreams = new Set<() => void>();
  const pipeline = (service: string) => new CallPipeline(logger, authenticator, limits, service, telemetry, openStreams);
  const arrivalGuard = requestArrivalGuard({ maxPending: config.limits.maxPendingRequests, timeoutMs: config.limits.requestArrivalTimeoutMs, events: arrivalGuardLog(logger) });
  const { server } = createGrpcServer(
    {
      tenant: tenantHandlers(pipeline('consent.v1.TenantService'), tenants),
      purpose: purposeHandlers(pipeline('consent.v1.PurposeService'), purposes),
      consent: consentHandlers(pipeline('consent.v1.ConsentService'), recorder, checker, history, new ChangeFeed(tx, changeRows, audit, tenants, keys), reassignment, config.limits, metrics ?? undefined, signUp),
      key: keyHandlers(pipeline('consent.v1.KeyService'), keyAdmin),
      audit: auditHandlers(pipeline('consent.v1.AuditService'), auditService),
      subjectRights: subjectRightsHandlers(
        pipeline('consent.v1.SubjectRightsService'),
        subjectRights,
        subjectExporter,
      ),
      identity: identityHandlers(pipeline('consent.v1.IdentityService'), identityLinks),
      selfService: { ...selfServiceSignUpHandlers(pipeline('consent.v1.SelfServiceService'), signUp), ...selfServiceLinkHandlers(pipeline('consent.v1.SelfServiceService'), preferenceLinks) },
    },
    { maxMessageBytes: config.limits.maxMessageBytes, itemLimits: itemLimitsOf(config.limits), health, interceptors: [arrivalGuard.interceptor], openStreams },
  );
  await keyAdmin.resume();
  const replayed = await subjectEraser.replayLedger();
  if (replayed > 0) logger.warn('erasures replayed onto the data (restored from a backup?)', { subjects: replayed });
  const resumed = await subjectRights.resumeErasures();
  if (resumed.finished > 0) logger.warn('erasure requests left in progress were finished', { requests: resumed.finished });
  if (resumed.failed > 0) logger.error('erasure requests left in progress could not be finished; tried again every 10 s', { requests: resumed.failed, reason: resumed.reason });
  const port = await bind(server, config.bindAddress, config.port, createServerCredentials(config));
  invalidator?.start();


  // Load balancers read grpc.health.v1: NOT_SERVING while either database does not answer within
  // DATABASE_CALL_TIMEOUT_MS (unreachable, stopped, not ready such as a Galera node that is not
  // synced), SERVING again by itself once both answer.
  const probes = [new DatabaseProbe(dataSource), new DatabaseProbe(keyDataSource)];
  // What health says: SERVING once started, while both databases answer and until draining.
  let started = false;
  let healthy = true;
  let draining = false;
  const publishHealth = () => {
    const status = started && healthy && !draining ? 'SERVING' : 'NOT_SERVING';
    for (const name of ['', ...SERVICE_NAMES]) health.setStatus(name, status);
  };
  let probing = false;
  const probe = setInterval(() => {
    if (probing) return;
    probing = true;
    void Promise.all(probes.map((p) => p.answers())).then((answers) => {
      probing = false;
      setHealth(answers.every(Boolean));
    });
  }, config.healthProbeIntervalMs);
  probe.unref();
  const setHealth = (ok: boolean) => {
    if (ok === healthy || draining) return;
    healthy = ok;
    publishHealth();
    logger.warn(ok ? 'database reachable again' : 'database unreachable: health is NOT_SERVING');
  };

  // grpc.health.v1 alone on a plaintext port, when configured (opened by startApp before the
  // databases): for probes that cannot present the API's credentials. The same statuses.
  const healthServer = healthEndpoint?.server ?? null;
  const healthPort = healthEndpoint?.port;

  // Prometheus metrics on a port of their own, when configured (docs/operations.md).
  function metricSources(): MetricSources {
    const operations = new OperationsRepository();
    return {
      decisionCache: decisionCache ? () => ({ ...decisionCache.stats, entries: decisionCache.size, oldestCatchUpMs: decisionCache.oldestCatchUpAgeMs() }) : undefined,
      writer: () => writer.stats,
      retries: () => tx.stats,
      ready: () => started && healthy && !draining,
      pools: () => [poolState('data', dataSource), poolState('keys', keyDataSource)].filter((p) => p !== null),
      // Two gauges show it: one read serves both within a scrape.
      auditLogs: sharedWhileRunning(
        scrapeRead(async () => {
          const now = clock.now();
          const logs = await tx.read((t) => operations.auditLogs(t));
          return logs.map((l) => ({ tenant: l.tenant, size: l.size, checkpointAgeSeconds: l.lastCheckpoint === null ? null : Math.max(0, (now - l.lastCheckpoint) / 1000) }));
        }),
      ),
      subjectRequests: scrapeRead(() => tx.read((t) => operations.openSubjectRequests(t, clock.now()))),
      oldestConfirmationDeliveryMs: scrapeRead(() => mailQueue.oldestOpenAgeMs()),
    };
  }
  /**
   * A scrape's database read: within min(DATABASE_CALL_TIMEOUT_MS, 5 s), under a scraper's usual
   * timeout (10 s), and never failing the scrape. A database that is down or hung leaves those
   * gauges without samples while the rest, `consent_ready 0` among them, is still exported (it
   * answered 503 before, after 60 s when the database hung, so `up` said the process was down).
   */
  /** `read`, its answer shared by the calls made while it is under way (the gauges of one scrape collect at once). */
  function sharedWhileRunning<T>(read: () => Promise<T>): () => Promise<T> {
    let running: Promise<T> | null = null;
    return () => {
      if (!running) running = read().finally(() => (running = null));
      return running;
    };
  }
  let scrapeReadsFailing = false;
  function scrapeRead<T>(read: () => Promise<T>): () => Promise<T | undefined> {
    return async () => {
      const ms = Math.min(config.databaseTimeouts.callMs, 5000);
      try {
        const value = await withCallBudget({ deadline: Date.now() + ms, signal: AbortSignal.timeout(ms) }, read);
        if (scrapeReadsFailing) logger.info('metrics read the database again');
        scrapeReadsFailing = false;
        return value;
      } catch (err) {
        if (!scrapeReadsFailing) logger.warn('metrics could not read the database; those gauges are left out until it answers', { error: errorSummary(err) });
        scrapeReadsFailing = true;
        return undefined;
      }
    };
  }
  const metricsServer = metrics && config.metrics ? await startMetricsServer(metrics, config.metrics.port, config.metrics.bindAddress, (err) => logger.warn('metrics could not be collected', { error: errorSummary(err) })) : null;
  if (metricsServer) logger.info('metrics listening', { address: config.metrics!.bindAddress, port: metricsServer.port, path: '/metrics' });

  // Periodic checkpoints: an auditor who saved one can later prove nothing before it changed,
  // even for a period nobody asked for a checkpoint in.
  let checkpointing: Promise<void> = Promise.resolve();
  const checkpointTimer =
    config.auditCheckpointIntervalMs > 0
      ? setInterval(() => {
          checkpointing = checkpointing
            .then(() => auditService.checkpointAll())
            .then(
              ({ signed, failed, inconsistent }) => {
                if (signed > 0) logger.info('audit checkpoints signed', { tenants: signed });
                for (const { tenantId, problem } of inconsistent) {
                  logger.error('audit log tampered with: not signed; verify it with consentctl audit verify --since <a kept checkpoint>', { tenant: tenantId, problem });
                }
                if (failed > 0) logger.warn('audit checkpoints could not be signed for some tenants; retried at the next interval', { tenants: failed });
              },
              (err: unknown) => {
                logger.warn('audit checkpoints failed; retried at the next interval', { error: (err as Error)?.name });
              },
            );
        }, config.auditCheckpointIntervalMs)
      : undefined;
  checkpointTimer?.unref();

  // Erasure requests a failed call left half done (some persons erased, others not) are finished
  // by the service itself after a while, not only by a retry or the next start.
  let sweepingErasures = false;
  const erasureSweep = setInterval(() => {
    if (sweepingErasures) return;
    sweepingErasures = true;
    jobs.start('finish stalled erasures', async () => {
      try {
        const { finished, failed, reason } = await subjectRights.resumeStalledErasures(options.erasureSweep?.stalledMs ?? ERASURE_STALLED_MS);
        if (finished > 0) logger.warn('erasure requests left half done by a failed call were finished', { requests: finished });
        if (failed > 0) logger.error('erasure requests left half done could not be finished; tried again in 10 s', { requests: failed, reason });
      } finally {
        sweepingErasures = false;
      }
    });
    if (jobs.shuttingDown) sweepingErasures = false;
  }, options.erasureSweep?.intervalMs ?? ERASURE_SWEEP_INTERVAL_MS);
  erasureSweep.unref();

  // The mailer starts with the service (created above, before the port was bound).
  mailer?.start((name, work) => jobs.start(name, work));

  // SQLite files are checkpointed from a worker thread, not inside commits (sqlite-checkpointer.ts).
  const checkpointers = [config.database, config.keyStore].flatMap((db) => (db.kind === 'sqlite' && db.file !== ':memory:' ? [new SqliteCheckpointer(db.file, logger)] : []));

  // Started: health says SERVING (unless a database probe said otherwise meanwhile).
  started = true;
  publishHealth();
  logger.info('consent ledger listening', {
    address: config.bindAddress,
    port,
    database: config.database.kind,
    auth_mode: config.authMode,
    tls: config.tls ? (config.tls.clientCaFile ? 'client certificates' : 'server only') : 'off',
    bearer_tokens: config.tokens ? 'on' : 'off',
    confirmation_mails: config.smtp ? `${config.smtp.implicitTls ? 'smtps' : 'smtp'}://${config.smtp.host}:${config.smtp.port}${config.smtp.implicitTls || config.smtp.requireTls ? ' (TLS required)' : ''}` : 'off',
  });
  if (config.authMode === 'development') {
    logger.warn(
      'DEVELOPMENT MODE: no credentials are configured, so every call runs as the all-powerful principal "dev-admin". ' +
        'Configure TLS_CLIENT_CA_FILE or JWT_JWKS_FILE before anyone else can reach this port (docs/security.md).',
    );
  }

  return {
    port,
    metricsPort: metricsServer?.port,
    healthPort,
    metrics: metrics ?? undefined,
    tracing: tracing ?? undefined,
    server,
    dataSource,
    keyDataSource,
    sqliteCheckpointers: checkpointers,
    blindIndexWorkers,
    config,
    logger,
    services: { tenants, purposes, recorder, writer, subjectEraser, keyAdministration: keyAdmin, keys, subjectRights, subjectExporter, identityLinks, audit, auditService, decisionCache, invalidator, tx },
    async stop() {
      // Draining: NOT_SERVING first, so that probes and load balancers stop sending calls, while
      // the calls that still arrive meanwhile are answered; then no new calls.
      draining = true;
      publishHealth();
      if (config.shutdownDrainMs > 0) {
        logger.info('draining: health is NOT_SERVING; stopping after the drain period', { drain_ms: config.shutdownDrainMs });
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
      }
      clearInterval(probe);
      await metricsServer?.close();
      healthServer?.forceShutdown();
      await invalidator?.stop();
      for (const p of probes) p.close();
      clearInterval(checkpointTimer);
      clearInterval(erasureSweep);
      await checkpointing;
      await mailer?.stop();
      await jobs.stop();
      // No new calls from here. Unary and client-streaming calls in flight finish: each waits for
      // the database at most DATABASE_CALL_TIMEOUT_MS, so they are cut (CANCELLED) only after
      // that and a margin. Server-streaming and bidi streams would stay open as long as their
      // clients read: they end now with UNAVAILABLE SHUTTING_DOWN, which clients retry elsewhere.
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, Math.max(5000, config.databaseTimeouts.callMs + 2000));
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
        for (const end of [...openStreams]) end();
      });
      arrivalGuard.stop();
      await Promise.all(checkpointers.map((c) => c.stop()));
      await blindIndexWorkers?.stop();
      // Every call is answered by now: a database that does not let its connections be closed
      // (it hangs, or went away) is noted, and the process still ends normally.
      for (const [name, source] of [['data', dataSource], ['keys', keyDataSource]] as const) {
        if (!source.isInitialized) continue;
        await source.destroy().catch((err: unknown) => logger.warn('database connections could not be closed cleanly', { database: name, error: errorSummary(err) }));
      }
      await tracing?.shutdown().catch(() => undefined);
      // Until metrics exist (issue 17), what the write path did is said once, at the end: how
      // the writes batched, and how often a transaction was run again after losing a race at
      // commit (on Galera: certification conflicts) or after a lock wait or racing insert.
      logger.info('write path totals', {
        batches: writer.stats.batches,
        writes: writer.stats.writes,
        largest_batch: writer.stats.largestBatch,
        race_retries: tx.stats.raceRetries,
        other_retries: tx.stats.otherRetries,
      });
    },
  };
}

/** Opens the data database and brings its schema up to date (or checks that it is). */
export function openDatabase(config: Config, logger: Logger): Promise<DataSource> {
  return openStore(config, logger, 'data');
}

/** Opens the key store (its own database) and brings its schema up to date. */
export function openKeyStore(config: Config, logger: Logger): Promise<DataSource> {
  return openStore(config, logger, 'keys');
}

/**
 * Connects one store. With RUN_MIGRATIONS=true its schema is brought up to date under the
 * migration lock (replicas started together take turns; the waiting is logged). With false,
 * nothing in the database changes: no file, database or table is created, no collation altered;
 * an outdated or missing schema is refused with what to run.
 */
async function openStore(config: Config, logger: Logger, store: Store): Promise<DataSource> {
  const db = store === 'data' ? config.database : config.keyStore;
  const what = store === 'data' ? 'data database' : 'key store';
  const where = db.kind === 'sqlite' ? db.file : store === 'data' ? 'DATABASE_URL' : 'KEYSTORE_URL';
  if (!config.runMigrations && db.kind === 'sqlite' && db.file !== ':memory:' && !existsSync(db.file)) {
    throw new Error(`the ${what} ${db.file} does not exist; create it with \`npm run migrate\` (or start with RUN_MIGRATIONS=true)`);
  }
  let dataSource: DataSource;
  try {
    if (store === 'keys' && db.kind === 'mysql' && config.runMigrations) await ensureMysqlDatabase(db.url, config.databaseTimeouts);
    dataSource = await createDataSource(db, store, config.databaseTimeouts);
    await dataSource.initialize();
  } catch (err) {
    throw new Error(`cannot open the ${what} (${db.kind}, ${where}): ${(err as Error).message}`);
  }
  try {
    if (config.runMigrations) {
      const applied = await migrateSchema(dataSource, store, migrationEvents(logger, store));
      for (const migration of applied) logger.info('migration applied', { store, migration });
    } else {
      await checkSchema(dataSource, store);
    }
  } catch (err) {
    await dataSource.destroy();
    throw err;
  }
  return dataSource;
}

/** What a starting process says about the migration lock and the schema. */
function migrationEvents(logger: Logger, store: Store): MigrationEvents {
  return {
    waiting: ({ holder, expiresInMs, waitedMs }) =>
      logger.info('waiting for another process to finish migrations', { store, holder, lease_expires_in_ms: expiresInMs, waited_ms: waitedMs }),
    acquired: ({ waited, waitedMs }) => {
      if (waited) logger.info('migration lock acquired after waiting', { store, waited_ms: waitedMs });
    },
    tookOver: ({ previousHolder }) =>
      logger.warn('took over the migration lock of a process that stopped renewing it (it ended or hung while migrating)', { store, previous_holder: previousHolder }),
    lost: () => logger.error('another process took over the migration lock while this one was migrating; check the schema', { store }),
    collationSwitched: (previous) => logger.warn('empty database switched to collation utf8mb4_bin', { store, previous }),
  };
}

/**
 * Fails fast, before any migration, when the configured port cannot be listened on (another
 * instance is running, most often). The server binds it for real only once the stores are ready.
 */
async function ensurePortFree(config: Config): Promise<void> {
  if (config.port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      const where = `${config.bindAddress}:${config.port}`;
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `port ${config.port} is already in use on ${config.bindAddress}: another process listens there (is the service already running?); stop it or set PORT. Nothing was started or migrated`
            : `cannot listen on ${where} (${err.code ?? err.message}); check BIND_ADDRESS and PORT. Nothing was started or migrated`,
        ),
      );
    });
    probe.listen({ port: config.port, host: config.bindAddress, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** What a log line may say of an error: its kind, never a message that could carry statement values. */
function errorSummary(err: unknown): string {
  if (err instanceof DomainError) return `${err.kind} ${err.reason}`;
  return err instanceof Error ? err.name : typeof err;
}

/** A MySQL pool's connections in use, idle, and calls waiting (null on SQLite: one connection, no pool). */
function poolState(database: string, dataSource: DataSource): { database: string; inUse: number; idle: number; waiting: number } | null {
  const pool = (dataSource.driver as unknown as { pool?: { _allConnections?: { length: number }; _freeConnections?: { length: number }; _connectionQueue?: { length: number } } }).pool;
  if (!pool?._allConnections || !pool._freeConnections || !pool._connectionQueue) return null;
  const idle = pool._freeConnections.length;
  return { database, inUse: pool._allConnections.length - idle, idle, waiting: pool._connectionQueue.length };
}
