import { ChannelOptions, Client, credentials, makeClientConstructor, Metadata, ServiceDefinition, ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { ConsentServiceClient } from '../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../src/gen/consent/v1/tenant';

/**
 * gRPC clients of the server under test, and a promise wrapper for unary calls with a deadline
 * (a benchmark must never hang on a lost call).
 */

/** grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING as proto-loader decodes it (enums: 'String'). */
const SERVING = 'SERVING';

/** The generic grpc-js client grpc-health-check's service definition produces. */
interface HealthClient extends Client {
  Check(
    request: { service: string },
    metadata: Metadata,
    options: { deadline: number },
    callback: (err: ServiceError | null, response?: { status: string | number }) => void,
  ): unknown;
}

const HealthClientCtor = makeClientConstructor(healthService as unknown as ServiceDefinition, 'grpc.health.v1.Health');

export interface Clients {
  tenants: TenantServiceClient;
  purposes: PurposeServiceClient;
  consent: ConsentServiceClient;
  health: HealthClient;
  close(): void;
}

/**
 * One client per service. grpc-js shares the underlying HTTP/2 connection between clients with
 * the same target and options, so every workload runs over the same kind of connection.
 */
export function createClients(address: string, options: ChannelOptions = {}): Clients {
  const creds = credentials.createInsecure();
  const clients = {
    tenants: new TenantServiceClient(address, creds, options),
    purposes: new PurposeServiceClient(address, creds, options),
    consent: new ConsentServiceClient(address, creds, options),
    health: new HealthClientCtor(address, creds, options) as unknown as HealthClient,
  };
  return { ...clients, close: () => Object.values(clients).forEach((c) => c.close()) };
}

const DEFAULT_DEADLINE_MS = 30_000;

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: { deadline: number },
  callback: (err: ServiceError | null, response: Res) => void,
) => unknown;

/** Calls a unary method of a grpc-js client; rejects on any non-OK status or after the deadline. */
export function unary<Req, Res>(client: object, method: UnaryMethod<Req, Res>, request: Req, deadlineMs = DEFAULT_DEADLINE_MS): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

/** grpc.health.v1.Health/Check for the whole server; resolves true when it answers SERVING. */
export async function healthCheck(health: HealthClient, deadlineMs = DEFAULT_DEADLINE_MS): Promise<boolean> {
  const response = await new Promise<{ status: string | number } | undefined>((resolve, reject) => {
    health.Check({ service: '' }, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
  return response?.status === SERVING || response?.status === 1;
}

/** A readable one-liner for a failed call. */
export function describeError(err: unknown): string {
  const e = err as Partial<ServiceError>;
  if (typeof e?.code === 'number') return `gRPC status ${e.code} ${e.details ?? ''}`.trim();
  return err instanceof Error ? err.message : String(err);
}
