import { DomainError } from '../shared/errors';

/** What a database failure means for the caller. */
export type DbFailure = 'retryable' | 'conflict' | 'unavailable' | 'unexpected';

const MYSQL_RETRYABLE = new Set(['ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT']);
const MYSQL_CONFLICT = new Set(['ER_DUP_ENTRY']);
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_CON_COUNT_ERROR',
  'ER_SERVER_SHUTDOWN',
  'ER_ACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'SQLITE_CANTOPEN',
  'SQLITE_READONLY',
  'SQLITE_CORRUPT',
  'SQLITE_NOTADB',
  'SQLITE_FULL',
]);

/** Sorts a driver error (mysql2 or better-sqlite3, possibly wrapped by TypeORM) into a DbFailure. */
export function classifyDbError(err: unknown): DbFailure {
  const e = err as { code?: string; errno?: number; fatal?: boolean; driverError?: unknown; name?: string; message?: string };
  const driver = (e?.driverError ?? e) as { code?: string; fatal?: boolean; message?: string };
  const code = driver?.code ?? e?.code ?? '';
  if (MYSQL_RETRYABLE.has(code) || code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
    return 'retryable';
  }
  if (MYSQL_CONFLICT.has(code) || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
    return 'conflict';
  }
  if (CONNECTION_CODES.has(code) || code.startsWith('SQLITE_IOERR') || driver?.fatal === true) return 'unavailable';
  const message = `${e?.name ?? ''} ${driver?.message ?? e?.message ?? ''}`;
  if (
    /CannotExecuteNotConnected|DataSource is not initialized|Pool is closed|connection is not open|database connection is not open|Can't add new command when connection is in closed state/i.test(
      message,
    )
  ) {
    return 'unavailable';
  }
  return 'unexpected';
}

/**
 * Turns a database failure into the domain error the caller sees. Unexpected errors pass
 * through unchanged: the transport logs them in full and answers INTERNAL with a generic message.
 */
export function toDomainError(err: unknown): unknown {
  if (err instanceof DomainError) return err;
  switch (classifyDbError(err)) {
    case 'retryable':
    case 'conflict':
      return new DomainError('ABORTED', 'CONCURRENT_UPDATE', 'the write collided with a concurrent one; retry');
    case 'unavailable':
      return new DomainError('UNAVAILABLE', 'DATABASE_UNAVAILABLE', 'the database is unavailable');
    default:
      return err;
  }
}
