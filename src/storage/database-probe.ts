import mysql from 'mysql2/promise';
import { DataSource } from 'typeorm';
import { timeoutsOf } from './data-source';

/**
 * Asks one database whether it answers a query now, within the time a call would wait
 * (DATABASE_CALL_TIMEOUT_MS): the health probe behind grpc.health.v1.
 *
 * MySQL/MariaDB: on a connection of its own, not from the pool, so that a pool busy with
 * legitimate work does not read as an outage, and an outage is seen even when no call is made.
 * `SELECT 1` rather than a protocol ping: a Galera node that is not synced answers pings but
 * refuses queries ("WSREP has not yet prepared node for application use"). On a Galera node
 * (`wsrep_on`) the probe asks `wsrep_ready` instead: a node cut off from the cluster (non-Primary)
 * still answers `SELECT 1`, which reads no table, while every real query fails. A connection that did
 * not answer in time is destroyed and the next probe opens a new one, so the probe recovers by
 * itself when the server does.
 *
 * SQLite: `SELECT 1` on the one connection (there is no server that could stop answering; the
 * file becoming unreadable is what this sees).
 */
export class DatabaseProbe {
  private connection: mysql.Connection | null = null;
  /** Whether the probe's connection is to a Galera node (asked once per connection). */
  private galera = false;
  private readonly timeoutMs: number;

  constructor(private readonly dataSource: DataSource) {
    this.timeoutMs = timeoutsOf(dataSource).callMs;
  }

  /** True when the database answered in time; never throws. */
  async answers(): Promise<boolean> {
    if (!this.dataSource.isInitialized) return false;
    if (this.dataSource.options.type === 'better-sqlite3') {
      return this.dataSource.query('SELECT 1').then(
        () => true,
        () => false,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), this.timeoutMs);
    });
    try {
      const answered = await Promise.race([this.selectOne(), timedOut]);
      if (!answered) this.drop();
      return answered;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the probe's own connection. */
  close(): void {
    this.drop();
  }

  private async selectOne(): Promise<boolean> {
    try {
      if (!this.connection) {
        const options = this.dataSource.options as { url?: string; connectTimeout?: number };
        const connection = await mysql.createConnection({ uri: options.url, connectTimeout: Math.min(options.connectTimeout ?? this.timeoutMs, this.timeoutMs) });
        connection.on('error', () => this.drop());
        this.connection = connection;
        // MariaDB reports wsrep_ready OFF without Galera too: only a node with wsrep_on is asked.
        const [on] = (await connection.query("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")) as unknown as [Array<{ Value?: string }>];
        this.galera = on.length > 0 && String(on[0].Value).toUpperCase() === 'ON';
      }
      if (!this.galera) {
        await this.connection.query('SELECT 1');
        return true;
      }
      const [ready] = (await this.connection.query("SHOW GLOBAL STATUS LIKE 'wsrep_ready'")) as unknown as [Array<{ Value?: string }>];
      if (ready.length === 0 || String(ready[0].Value).toUpperCase() !== 'ON') return false;
      // A node an operator drains (wsrep_reject_queries) stays ready but refuses every query.
      const [reject] = (await this.connection.query("SHOW GLOBAL VARIABLES LIKE 'wsrep_reject_queries'")) as unknown as [Array<{ Value?: string }>];
      return reject.length === 0 || String(reject[0].Value).toUpperCase() === 'NONE';
    } catch {
      this.drop();
      return false;
    }
  }

  private drop(): void {
    const connection = this.connection;
    this.connection = null;
    if (!connection) return;
    // Not end(): a server that stopped answering would never acknowledge a polite close. Destroying
    // the socket with an error also settles the query still waiting on it.
    const socket = (connection as unknown as { connection?: { stream?: { destroy(err?: Error): void } } }).connection?.stream;
    socket?.destroy(Object.assign(new Error('the health probe gave up on this connection'), { code: 'CONSENT_DB_ABANDONED' }));
    connection.destroy();
  }
}
