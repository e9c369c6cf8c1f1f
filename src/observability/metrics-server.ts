import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { ServiceMetrics } from './metrics';

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * GET /metrics in Prometheus' text format, on a port of its own (so it can be exposed to the
 * scraper without exposing the API, and the API's authentication does not apply to it). It
 * answers nothing else. A scrape reads some gauges from the database; a failure there is
 * answered 503 with a generic message (the details go to the log, never to the scraper).
 */
export async function startMetricsServer(metrics: ServiceMetrics, port: number, host: string, onError: (err: unknown) => void): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: GET /metrics\n');
      return;
    }
    metrics.exposition().then(
      (body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body),
      (err: unknown) => {
        onError(err);
        res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics are not available right now\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
