import winston from 'winston';

/**
 * JSON-lines logger. Callers log ids, codes and durations only: personal data (identifiers,
 * IPs, message texts) never reaches a log line; test/logging.test.ts plants some and looks.
 */
export type Logger = winston.Logger;

export function createLogger(level: string, stream?: NodeJS.WritableStream): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: 'consent-ledger' },
    transports: [stream ? new winston.transports.Stream({ stream }) : new winston.transports.Console()],
  });
}
