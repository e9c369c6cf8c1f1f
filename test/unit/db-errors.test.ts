import { expect } from 'chai';
import { QueryFailedError } from 'typeorm';
import { DomainError } from '../../src/shared/errors';
import { classifyDbError, DbFailure, toDomainError } from '../../src/storage/db-errors';

/** An error as mysql2 reports a server error: code name, errno, SQLSTATE, message. */
function mysqlError(errno: number, code: string | undefined, sqlState: string, message: string): Error {
  return Object.assign(new Error(message), { errno, code, sqlState, sqlMessage: message, fatal: false });
}

/** The same, as TypeORM throws it from a query. */
function wrapped(driverError: Error): QueryFailedError {
  return new QueryFailedError('SELECT 1', [], driverError);
}

function sqliteError(code: string): Error {
  return Object.assign(new Error(code.toLowerCase()), { name: 'SqliteError', code });
}

describe('database error classification', function () {
  const cases: Array<[string, Error, DbFailure]> = [
    // MySQL/MariaDB: lost races, retried
    ['deadlock (also Galera certification conflict)', mysqlError(1213, 'ER_LOCK_DEADLOCK', '40001', 'Deadlock found when trying to get lock; try restarting transaction'), 'retryable'],
    ['WSREP certification failure without a code name', mysqlError(1213, undefined, '40001', 'WSREP detected deadlock/conflict and aborted the transaction. Try restarting the transaction'), 'retryable'],
    ['table changed under a prepared statement', mysqlError(1615, 'ER_NEED_REPREPARE', 'HY000', 'Prepared statement needs to be re-prepared'), 'retryable'],
    ['serialization failure by SQLSTATE only', mysqlError(9999, undefined, '40001', 'serialization failure'), 'retryable'],
    ['duplicate key of a racing insert', mysqlError(1062, 'ER_DUP_ENTRY', '23000', "Duplicate entry 'x' for key 'PRIMARY'"), 'conflict'],
    ['lock wait timeout', mysqlError(1205, 'ER_LOCK_WAIT_TIMEOUT', 'HY000', 'Lock wait timeout exceeded; try restarting transaction'), 'busy'],
    // MySQL/MariaDB: reachable but not ready, or gone
    ['Galera node not ready', mysqlError(1047, 'ER_UNKNOWN_COM_ERROR', '08S01', 'WSREP has not yet prepared node for application use'), 'unavailable'],
    ['server shutting down', mysqlError(1053, 'ER_SERVER_SHUTDOWN', '08S01', 'Server shutdown in progress'), 'unavailable'],
    ['normal shutdown', mysqlError(1077, 'ER_NORMAL_SHUTDOWN', 'HY000', 'Normal shutdown'), 'unavailable'],
    ['too many connections', mysqlError(1040, 'ER_CON_COUNT_ERROR', '08004', 'Too many connections'), 'unavailable'],
    ['too many connections of this user', mysqlError(1203, 'ER_TOO_MANY_USER_CONNECTIONS', '42000', 'User already has more than max_user_connections active connections'), 'unavailable'],
    ['read-only server', mysqlError(1290, 'ER_OPTION_PREVENTS_STATEMENT', 'HY000', 'The MariaDB server is running with the --read-only option so it cannot execute this statement'), 'unavailable'],
    ['read-only mode', mysqlError(1836, 'ER_READ_ONLY_MODE', 'HY000', 'Running in read-only mode'), 'unavailable'],
    ['read-only transaction', mysqlError(1792, 'ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION', '25006', 'Cannot execute statement in a READ ONLY transaction'), 'unavailable'],
    ['connection killed', mysqlError(1927, 'ER_CONNECTION_KILLED', '70100', 'Connection was killed'), 'unavailable'],
    ['query interrupted', mysqlError(1317, 'ER_QUERY_INTERRUPTED', '70100', 'Query execution was interrupted'), 'unavailable'],
    ['MariaDB max_statement_time', mysqlError(1969, 'ER_STATEMENT_TIMEOUT', '70100', 'Query execution was interrupted (max_statement_time exceeded)'), 'unavailable'],
    ['MySQL max_execution_time', mysqlError(3024, 'ER_QUERY_TIMEOUT', 'HY000', 'Query execution was interrupted, maximum statement execution time exceeded'), 'unavailable'],
    ['out of resources', mysqlError(1041, 'ER_OUT_OF_RESOURCES', 'HY000', 'Out of memory'), 'unavailable'],
    ['disk full', mysqlError(1021, 'ER_DISK_FULL', 'HY000', 'Disk full'), 'unavailable'],
    ['access denied (credentials rotated)', mysqlError(1045, 'ER_ACCESS_DENIED_ERROR', '28000', "Access denied for user 'x'@'y'"), 'unavailable'],
    ['unknown database', mysqlError(1049, 'ER_BAD_DB_ERROR', '42000', "Unknown database 'x'"), 'unavailable'],
    ['network error by SQLSTATE class 08 only', mysqlError(9998, undefined, '08S01', 'Communication link failure'), 'unavailable'],
    // mysql2 client side
    ['connection lost', Object.assign(new Error('Connection lost: The server closed the connection.'), { code: 'PROTOCOL_CONNECTION_LOST', fatal: true }), 'unavailable'],
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED', errno: -111, fatal: true }), 'unavailable'],
    ['connect timeout', Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT', fatal: true }), 'unavailable'],
    ['reset', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104 }), 'unavailable'],
    ['a command after the connection broke', Object.assign(new Error("Can't add new command when connection is in closed state"), { fatal: true }), 'unavailable'],
    ['pool closed', new Error('Pool is closed.'), 'unavailable'],
    ['a unit of work given up by the runner', Object.assign(new Error('given up'), { code: 'CONSENT_DB_ABANDONED' }), 'unavailable'],
    // SQLite
    ['SQLite busy beyond busy_timeout', sqliteError('SQLITE_BUSY'), 'busy'],
    ['SQLite WAL recovery by another process', sqliteError('SQLITE_BUSY_RECOVERY'), 'busy'],
    ['SQLite stale snapshot', sqliteError('SQLITE_BUSY_SNAPSHOT'), 'retryable'],
    ['SQLite table locked', sqliteError('SQLITE_LOCKED'), 'retryable'],
    ['SQLite unique key', sqliteError('SQLITE_CONSTRAINT_UNIQUE'), 'conflict'],
    ['SQLite primary key', sqliteError('SQLITE_CONSTRAINT_PRIMARYKEY'), 'conflict'],
    ['SQLite I/O error', sqliteError('SQLITE_IOERR_WRITE'), 'unavailable'],
    ['SQLite read-only file', sqliteError('SQLITE_READONLY_DBMOVED'), 'unavailable'],
    ['SQLite disk full', sqliteError('SQLITE_FULL'), 'unavailable'],
    ['SQLite cannot open', sqliteError('SQLITE_CANTOPEN'), 'unavailable'],
    // Bugs stay bugs
    ['SQL syntax error', mysqlError(1064, 'ER_PARSE_ERROR', '42000', 'You have an error in your SQL syntax'), 'unexpected'],
    ['unknown column', mysqlError(1054, 'ER_BAD_FIELD_ERROR', '42S22', "Unknown column 'x'"), 'unexpected'],
    ['data too long', mysqlError(1406, 'ER_DATA_TOO_LONG', '22001', "Data too long for column 'x'"), 'unexpected'],
    ['SQLite NOT NULL constraint', sqliteError('SQLITE_CONSTRAINT_NOTNULL'), 'unexpected'],
    ['a plain TypeError', new TypeError('x is undefined'), 'unexpected'],
    ['an error code named like an Object property', Object.assign(new Error('odd'), { code: 'constructor' }), 'unexpected'],
  ];

  for (const [what, err, expected] of cases) {
    it(`${what}: ${expected}`, function () {
      expect(classifyDbError(err)).to.equal(expected);
      if (err.message !== 'odd' && !(err instanceof TypeError)) expect(classifyDbError(wrapped(err)), 'wrapped by TypeORM').to.equal(expected);
    });
  }

  it('not an error at all: unexpected', function () {
    for (const value of [undefined, null, 'text', 42]) expect(classifyDbError(value)).to.equal('unexpected');
  });

  it('unavailable and busy become UNAVAILABLE DATABASE_UNAVAILABLE; lost races ABORTED CONCURRENT_UPDATE; bugs pass through', function () {
    const as = (err: Error) => toDomainError(wrapped(err)) as DomainError;
    const notReady = as(mysqlError(1047, 'ER_UNKNOWN_COM_ERROR', '08S01', 'WSREP has not yet prepared node for application use'));
    expect([notReady.kind, notReady.reason]).to.deep.equal(['UNAVAILABLE', 'DATABASE_UNAVAILABLE']);
    const busy = as(sqliteError('SQLITE_BUSY'));
    expect([busy.kind, busy.reason]).to.deep.equal(['UNAVAILABLE', 'DATABASE_UNAVAILABLE']);
    const lockWait = as(mysqlError(1205, 'ER_LOCK_WAIT_TIMEOUT', 'HY000', 'Lock wait timeout exceeded'));
    expect([lockWait.kind, lockWait.reason]).to.deep.equal(['UNAVAILABLE', 'DATABASE_UNAVAILABLE']);
    const deadlock = as(mysqlError(1213, 'ER_LOCK_DEADLOCK', '40001', 'Deadlock'));
    expect([deadlock.kind, deadlock.reason]).to.deep.equal(['ABORTED', 'CONCURRENT_UPDATE']);
    const bug = wrapped(mysqlError(1064, 'ER_PARSE_ERROR', '42000', 'syntax'));
    expect(toDomainError(bug)).to.equal(bug);
    const domain = new DomainError('NOT_FOUND', 'TENANT_NOT_FOUND', 'no such tenant');
    expect(toDomainError(domain)).to.equal(domain);
  });
});
