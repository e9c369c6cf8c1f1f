import { credentials, Metadata } from '@grpc/grpc-js';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../gen/grpc/health/v1/health';

/**
 * `consent-ledger health`: asks this machine's server, on its plaintext health port (HEALTH_PORT),
 * whether it is SERVING. Exit 0 when it is, 1 when it answers anything else or nothing within
 * `timeoutMs`: what Docker's HEALTHCHECK and exec probes need, without the API's credentials.
 */
export async function healthProbe(port: number, timeoutMs: number, out: NodeJS.WritableStream): Promise<number> {
  const client = new HealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    const status = await new Promise<string>((resolve) => {
      client.check({ service: '' }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        resolve(err ? `no answer (${err.details || err.message})` : HealthCheckResponse_ServingStatus[res.status]),
      );
    });
    out.write(`${status}\n`);
    return status === 'SERVING' ? 0 : 1;
  } finally {
    client.close();
  }
}
