import { ChannelOptions } from '@grpc/grpc-js';

/**
 * How a client talks to several replicas of the service (docs/scaling.md): one channel over all
 * their addresses, calls spread by `round_robin`, a replica that keeps failing set aside for a
 * while (`outlier_detection`), and calls that a replica answered UNAVAILABLE (its database is
 * gone, it is draining, it was killed mid-call) tried again on the next replica.
 *
 * grpc-js does not implement active client-side health checking (gRFC A17, `healthCheckConfig`):
 * it implements outlier detection (gRFC A50), which sets aside a replica whose calls fail, and
 * round_robin skips replicas it cannot connect to. Readiness as such (grpc.health.v1) is for the
 * orchestrator: a Kubernetes gRPC readiness probe takes a NOT_SERVING replica out of the Service's
 * endpoints, so DNS-based clients stop seeing it.
 *
 * Retrying is safe for every method this applies to: reads change nothing, and every write of
 * the API is idempotent by its request_id (a write whose answer was lost is answered, on retry,
 * with what it recorded), so a client must send request ids for this to hold.
 */

/** The services whose calls are retried on UNAVAILABLE; all of consent.v1 and health. */
const RETRIED_SERVICES = [
  'consent.v1.ConsentService',
  'consent.v1.PurposeService',
  'consent.v1.TenantService',
  'consent.v1.SubjectRightsService',
  'consent.v1.AuditService',
  'consent.v1.KeyService',
  'consent.v1.IdentityService',
  'grpc.health.v1.Health',
];

export interface ReplicaChannelSettings {
  /** Attempts per call, the first included (gRPC caps it at 5). */
  maxAttempts?: number;
  /** The first pause before a retry; it doubles up to `maxBackoffMs`, randomised by gRPC. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long a replica whose calls failed is set aside (doubling while it keeps failing). */
  ejectionMs?: number;
}

/** The target naming every replica: `ipv4:h1:p1,h2:p2,...` (or ipv6:). */
export function replicaTarget(addresses: string[]): string {
  if (addresses.length === 0) throw new Error('at least one replica address is needed');
  const v6 = addresses.every((a) => a.startsWith('['));
  return `${v6 ? 'ipv6' : 'ipv4'}:${addresses.join(',')}`;
}

/** Channel options for a client of several replicas (see the module's comment). */
export function replicaChannelOptions(settings: ReplicaChannelSettings = {}): ChannelOptions {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(3)}s`;
  // grpc-js reads the outlier detection policy in snake_case with durations as {seconds, nanos}
  // (an unreadable policy makes it fall back to pick_first silently: one replica gets every call).
  const duration = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
  const serviceConfig = {
    loadBalancingConfig: [
      {
        outlier_detection: {
          interval: duration(1000),
          base_ejection_time: duration(settings.ejectionMs ?? 5000),
          max_ejection_time: duration(30_000),
          // Never set aside more than all but one replica: with every replica failing, calls go on
          // and fail fast with the replicas' own status rather than with "no ready endpoint".
          max_ejection_percent: 66,
          failure_percentage_ejection: { threshold: 80, enforcement_percentage: 100, minimum_hosts: 2, request_volume: 10 },
          child_policy: [{ round_robin: {} }],
        },
      },
    ],
    methodConfig: [
      {
        name: RETRIED_SERVICES.map((service) => ({ service })),
        retryPolicy: {
          maxAttempts: settings.maxAttempts ?? 5,
          initialBackoff: seconds(settings.initialBackoffMs ?? 50),
          maxBackoff: seconds(settings.maxBackoffMs ?? 1000),
          backoffMultiplier: 2,
          retryableStatusCodes: ['UNAVAILABLE'],
        },
      },
    ],
  };
  return { 'grpc.service_config': JSON.stringify(serviceConfig), 'grpc.enable_retries': 1 };
}
