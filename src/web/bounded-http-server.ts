import http from 'node:http';

/**
 * A whole request (headers and body) must arrive within this long, or Node answers 408 and closes
 * the connection. Fastify's default (0) turns Node's own limit off, so a client that sent a body a
 * byte at a time held its connection and buffers for ever (found by an adversarial probe: 2,000
 * such connections to the console, +140 MB that stayed).
 */
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;

/**
 * A Fastify `serverFactory` for the web front ends: plain HTTP (TLS ends at the proxy) with the
 * request bounded by `requestTimeoutMs`, its headers by at most 60 s of it, checked every second
 * (Node's default check runs every 30 s, which would let a request outlive its limit by as much).
 */
export function boundedHttpServer(requestTimeoutMs = HTTP_REQUEST_TIMEOUT_MS): (handler: http.RequestListener) => http.Server {
  return (handler) =>
    http.createServer({ requestTimeout: requestTimeoutMs, headersTimeout: Math.min(60_000, requestTimeoutMs), connectionsCheckingInterval: Math.min(1_000, requestTimeoutMs) }, handler);
}
