import { PassThrough } from 'node:stream';
import { CallOptions, credentials, Metadata, ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { AppOptions, startApp, RunningApp } from '../../src/app';
import { Config, loadConfig } from '../../src/config/config';
import { ManualClock } from '../../src/domain/clock';
import { createLogger } from '../../src/logging/logger';
import { AuditServiceClient } from '../../src/gen/consent/v1/audit';
import { ConsentServiceClient } from '../../src/gen/consent/v1/consent';
import { KeyServiceClient } from '../../src/gen/consent/v1/key';
import { SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { Status } from '../../src/gen/google/rpc/status';
import { BadRequest, ErrorInfo } from '../../src/gen/google/rpc/error_details';
import { TestDatabase } from './databases';

/** A real server on an ephemeral port, real clients, and the server's log lines captured. */
export interface TestServer {
  app: RunningApp;
  clock: ManualClock;
  tenants: TenantServiceClient;
  purposes: PurposeServiceClient;
  consent: ConsentServiceClient;
  rights: SubjectRightsServiceClient;
  keys: KeyServiceClient;
  audit: AuditServiceClient;
  address: string;
  /** Every log line the server wrote so far. */
  logs(): string;
  stop(): Promise<void>;
}

/** 2026-03-01T12:00:00Z: tests move the clock from here. */
export const T0 = Date.UTC(2026, 2, 1, 12, 0, 0);

export async function startTestServer(db: TestDatabase, overrides: Partial<Config> = {}, appOptions: Pick<AppOptions, 'spanExporter' | 'erasureSweep' | 'blindIndexWorkerSource'> = {}): Promise<TestServer> {
  const base = loadConfig({ PORT: '0', DATA_DIR: db.dataDir, LOG_LEVEL: 'debug', SHUTDOWN_DRAIN_MS: '0' });
  const config: Config = { ...base, database: db.config, keyStore: db.keyStore, ...overrides };
  const logStream = new PassThrough();
  const chunks: Buffer[] = [];
  logStream.on('data', (c: Buffer) => chunks.push(c));
  const clock = new ManualClock(T0);
  const app = await startApp(config, { logger: createLogger('debug', logStream), clock, ...appOptions });
  const address = `127.0.0.1:${app.port}`;
  const creds = credentials.createInsecure();
  const clients = {
    tenants: new TenantServiceClient(address, creds),
    purposes: new PurposeServiceClient(address, creds),
    consent: new ConsentServiceClient(address, creds),
    rights: new SubjectRightsServiceClient(address, creds),
    keys: new KeyServiceClient(address, creds),
    audit: new AuditServiceClient(address, creds),
  };
  return {
    app,
    clock,
    ...clients,
    address,
    logs: () => Buffer.concat(chunks).toString('utf8'),
    async stop() {
      for (const c of Object.values(clients)) c.close();
      await app.stop();
    },
  };
}

/** The last overload of a ts-proto unary client method, the one inference picks. */
type UnaryMethod<Req, Res> = (
  req: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** Calls a unary method of a ts-proto grpc-js client and returns a promise. */
export function call<Req, Res>(client: object, method: UnaryMethod<Req, Res>, request: Req, metadata = new Metadata()): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, {}, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** The AIP-193 details of a failed call. */
export interface ErrorDetails {
  code: number;
  message: string;
  reason: string;
  domain: string;
  fields: string[];
}

export function errorDetails(err: ServiceError): ErrorDetails {
  const bin = err.metadata.get('grpc-status-details-bin')[0];
  expect(bin, 'grpc-status-details-bin trailer').to.be.instanceOf(Buffer);
  const status = Status.decode(bin as Buffer);
  const info = status.details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
  const bad = status.details.find((d) => d.typeUrl.endsWith('google.rpc.BadRequest'));
  const errorInfo = info ? ErrorInfo.decode(info.value) : undefined;
  return {
    code: status.code,
    message: status.message,
    reason: errorInfo?.reason ?? '',
    domain: errorInfo?.domain ?? '',
    fields: bad ? BadRequest.decode(bad.value).fieldViolations.map((v) => v.field) : [],
  };
}

/** Expects the promise to fail with `code`; returns the error's details. */
export async function expectGrpcError(promise: Promise<unknown>, code: number): Promise<ErrorDetails> {
  try {
    await promise;
  } catch (err) {
    const e = err as ServiceError;
    expect(e.code, `status code (${e.details})`).to.equal(code);
    return errorDetails(e);
  }
  expect.fail(`expected gRPC status ${code}, the call succeeded`);
}
