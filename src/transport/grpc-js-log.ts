import { setLogger } from '@grpc/grpc-js';
import { Logger } from '../logging/logger';

/** At most one warning per this long for grpc-js's refused-header lines (a caller can cause one per call). */
const REFUSED_HEADER_EVERY_MS = 10_000;

/**
 * grpc-js writes lines of its own to stderr (console.error), past the service's logger and its
 * redaction. One of them, "Failed to add metadata entry KEY: VALUE ...", quotes a request header's
 * value in full: any caller could put a bearer token (a tab after "Bearer" is enough) or personal
 * data into the log (found by an adversarial probe). From now on grpc-js logs through the service's
 * logger (JSON, redacted): that line names the header only, at most once per 10 s with a count, and
 * the rest keep their text, redacted.
 */
export function routeGrpcJsLogs(logger: Logger): void {
  let refused = 0;
  let refusedAt = 0;
  const line = (level: 'warn' | 'debug') => (message?: unknown, ...rest: unknown[]) => {
    const text = [message, ...rest].map((part) => String(part)).join(' ');
    const header = /^Failed to add metadata entry ([^:]{1,100}): /.exec(text);
    if (header) {
      refused++;
      const now = Date.now();
      if (now - refusedAt < REFUSED_HEADER_EVERY_MS) return;
      refusedAt = now;
      logger.warn('grpc-js dropped request headers whose values HTTP/2 metadata does not allow', { header: header[1], dropped: refused });
      refused = 0;
      return;
    }
    logger[level]('grpc-js', { detail: text.slice(0, 2000) });
  };
  setLogger({ error: line('warn'), info: line('debug'), debug: line('debug') });
}
