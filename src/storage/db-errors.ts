import { DomainError } from '../shared/errors';

/**
 * What a database failure means for the caller:
 * - `retryable`: the transaction lost a race (deadlock, Galera certification conflict, a stale
 *   SQLite snapshot); running it again is expected to succeed. ABORTED once retries run out.
 * - `conflict`: a unique key a racing call inserted first; the retry reads what it wrote. ABORTED
 *   once retries run out.
 * - `busy`: a lock was not granted in time (InnoDB lock wait timeout, SQLite busy_timeout). Worth
 *   one more try inside the call's budget, else UNAVAILABLE: the database is there but stuck.
 * - `unavailable`: the database cannot be reached, is not ready (starting, shutting down, a Galera
 *   node not synced, read-only, out of connections or resources) or did not answer in time.
 *   UNAVAILABLE: a retry later, maybe on another replica, can succeed.
 * - `unexpected`: a bug or a schema problem; INTERNAL, logged in full.
 */
export type DbFailure = 'retryable' | 'conflict' | 'busy' | 'unavailable' | 'unexpected';

/** MySQL/MariaDB server error numbers (errno), which name the condition even where mysql2 has no code name for it. */
const MYSQL_ERRNO: Record<number, DbFailure> = {
  1213: 'retryable', // ER_LOCK_DEADLOCK; also Galera's certification failure ("WSREP detected deadlock/conflict")
  1615: 'retryable', // ER_NEED_REPREPARE: a table changed under a prepared statement (a concurrent migration)
  1062: 'conflict', // ER_DUP_ENTRY
  1205: 'busy', // ER_LOCK_WAIT_TIMEOUT
  1021: 'unavailable', // ER_DISK_FULL
  1037: 'unavailable', // ER_OUTOFMEMORY
  1038: 'unavailable', // ER_OUT_OF_SORTMEMORY
  1040: 'unavailable', // ER_CON_COUNT_ERROR: too many connections
  1041: 'unavailable', // ER_OUT_OF_RESOURCES
  1045: 'unavailable', // ER_ACCESS_DENIED_ERROR: credentials rotated under a running service
  1047: 'unavailable', // ER_UNKNOWN_COM_ERROR: Galera "WSREP has not yet prepared node for application use"
  1049: 'unavailable', // ER_BAD_DB_ERROR
  1053: 'unavailable', // ER_SERVER_SHUTDOWN
  1077: 'unavailable', // ER_NORMAL_SHUTDOWN
  1078: 'unavailable', // ER_GOT_SIGNAL
  1079: 'unavailable', // ER_SHUTDOWN_COMPLETE
  1080: 'unavailable', // ER_FORCING_CLOSE
  1129: 'unavailable', // ER_HOST_IS_BLOCKED
  1152: 'unavailable', // ER_ABORTING_CONNECTION
  1158: 'unavailable', // ER_NET_READ_ERROR
  1159: 'unavailable', // ER_NET_READ_INTERRUPTED
  1160: 'unavailable', // ER_NET_ERROR_ON_WRITE
  1161: 'unavailable', // ER_NET_WRITE_INTERRUPTED
  1180: 'unavailable', // ER_ERROR_DURING_COMMIT
  1184: 'unavailable', // ER_NEW_ABORTING_CONNECTION
  1203: 'unavailable', // ER_TOO_MANY_USER_CONNECTIONS
  1226: 'unavailable', // ER_USER_LIMIT_REACHED
  1290: 'unavailable', // ER_OPTION_PREVENTS_STATEMENT: --read-only (a replica, or a primary being switched)
  1317: 'unavailable', // ER_QUERY_INTERRUPTED: KILL QUERY, or a server shutting down
  1637: 'unavailable', // ER_TOO_MANY_CONCURRENT_TRXS
  1792: 'unavailable', // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
  1836: 'unavailable', // ER_READ_ONLY_MODE
  1927: 'unavailable', // ER_CONNECTION_KILLED (MariaDB)
  1969: 'unavailable', // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
  3024: 'unavailable', // ER_QUERY_TIMEOUT (MySQL max_execution_time)
  4031: 'unavailable', // ER_CLIENT_INTERACTION_TIMEOUT (MySQL: idle connection closed by the server)
};

/** Codes of the client side (mysql2, Node's sockets) and of SQLite. */
const CODES: Record<string, DbFailure> = {
  ER_LOCK_DEADLOCK: 'retryable',
  ER_DUP_ENTRY: 'conflict',
  ER_LOCK_WAIT_TIMEOUT: 'busy',
  ECONNREFUSED: 'unavailable',
  ECONNRESET: 'unavailable',
  ECONNABORTED: 'unavailable',
  ETIMEDOUT: 'unavailable',
  EPIPE: 'unavailable',
  ENOTFOUND: 'unavailable',
  EAI_AGAIN: 'unavailable',
  EHOSTUNREACH: 'unavailable',
  ENETUNREACH: 'unavailable',
  PROTOCOL_CONNECTION_LOST: 'unavailable',
  PROTOCOL_SEQUENCE_TIMEOUT: 'unavailable',
  PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR: 'unavailable',
  PROTOCOL_ENQUEUE_AFTER_QUIT: 'unavailable',
  /** Our own: a unit of work given up because the database did not answer in time (transaction-runner.ts). */
  CONSENT_DB_ABANDONED: 'unavailable',
  SQLITE_BUSY: 'busy', // busy_timeout passed while another process held the lock
  SQLITE_BUSY_RECOVERY: 'busy', // another process is recovering the WAL
  SQLITE_BUSY_TIMEOUT: 'busy',
  SQLITE_BUSY_SNAPSHOT: 'retryable', // another process wrote since this transaction's read: run it again
  SQLITE_LOCKED: 'retryable',
  SQLITE_LOCKED_SHAREDCACHE: 'retryable',
  SQLITE_CONSTRAINT_PRIMARYKEY: 'conflict',
  SQLITE_CONSTRAINT_UNIQUE: 'conflict',
  SQLITE_CANTOPEN: 'unavailable',
  SQLITE_FULL: 'unavailable',
  SQLITE_PROTOCOL: 'unavailable',
  SQLITE_NOTADB: 'unavailable',
};

/** Prefixes of SQLite's extended codes that all mean the file cannot be used right now. */
const SQLITE_UNAVAILABLE_PREFIXES = ['SQLITE_IOERR', 'SQLITE_READONLY', 'SQLITE_CORRUPT', 'SQLITE_CANTOPEN'];

/** Messages of errors that carry no code: a pool or data source that is closed or not connected. */
const NOT_CONNECTED =
  /CannotExecuteNotConnected|DataSource is not initialized|Pool is closed|connection is not open|database connection is not open|Can't add new command when connection is in closed state|Can't write in closed state|Queue limit reached/i;

interface DriverErrorShape {
  code?: unknown;
  errno?: unknown;
  sqlState?: unknown;
  fatal?: unknown;
  message?: unknown;
  name?: unknown;
  driverError?: unknown;
}

/** Sorts a driver error (mysql2 or better-sqlite3, possibly wrapped by TypeORM) into a DbFailure. */
export function classifyDbError(err: unknown): DbFailure {
  if (!err || typeof err !== 'object') return 'unexpected';
  const outer = err as DriverErrorShape;
  const driver = (outer.driverError && typeof outer.driverError === 'object' ? outer.driverError : outer) as DriverErrorShape;
  const code = typeof driver.code === 'string' ? driver.code : typeof outer.code === 'string' ? outer.code : '';
  const errno = typeof driver.errno === 'number' ? driver.errno : typeof outer.errno === 'number' ? outer.errno : undefined;
  const sqlState = typeof driver.sqlState === 'string' ? driver.sqlState : '';

  if (Object.hasOwn(CODES, code)) return CODES[code];
  if (errno !== undefined && Object.hasOwn(MYSQL_ERRNO, errno)) return MYSQL_ERRNO[errno];
  if (SQLITE_UNAVAILABLE_PREFIXES.some((p) => code.startsWith(p))) return 'unavailable';
  if (code.startsWith('SQLITE_BUSY')) return 'busy';
  // SQLSTATE class 08 is "connection exception" (08S01 communication link failure, 08004 server
  // rejected the connection); 40001 is a serialization failure (a deadlock under another number).
  if (sqlState.startsWith('08')) return 'unavailable';
  if (sqlState === '40001') return 'retryable';
  // mysql2 marks errors after which the connection is unusable (network, protocol) as fatal.
  if (driver.fatal === true) return 'unavailable';
  const message = `${String(outer.name ?? '')} ${String(driver.message ?? outer.message ?? '')}`;
  if (NOT_CONNECTED.test(message)) return 'unavailable';
  return 'unexpected';
}

/** The error a caller sees when the database cannot be used now; retrying later can help. */
export function databaseUnavailable(message = 'the database is unavailable'): DomainError {
  // google.rpc.RetryInfo: a client that waits a second before retrying gives a restarting or
  // rejoining database (a Galera node catching up) time, instead of adding to its load at once.
  return new DomainError('UNAVAILABLE', 'DATABASE_UNAVAILABLE', message, {}, [], DATABASE_RETRY_DELAY_MS);
}

/** The wait a client is told before it retries a call the database could not answer. */
const DATABASE_RETRY_DELAY_MS = 1000;

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
    case 'busy':
      return databaseUnavailable('the database is busy: a lock it needed was not granted in time; retry');
    case 'unavailable':
      return databaseUnavailable();
    default:
      return err;
  }
}
