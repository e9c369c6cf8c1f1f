import { currentCallBudget } from '../../src/shared/call-budget';
import { TestServer } from './test-server';

/** The tenant row, which every process re-reads at most every 0.5 s: not a call's own cost. */
const TENANT_REFRESH = /FROM tenants WHERE id = \?$/;

/**
 * The SQL statements the service's database connection ran for `run` (both drivers: counted
 * where TypeORM's query runner sends them). Only statements made for an RPC count (they run
 * under its call budget): the background work of any server in this process (health probes, the
 * decision cache following the audit logs, checkpoints, purges) runs outside every budget.
 *
 * On MySQL the server's pool is filled first (fillPool), so the count is the call's own
 * statements, never the session set-up of a connection the pool happened to open for it.
 */
export async function countStatements<T>(s: TestServer, run: () => Promise<T>): Promise<{ result: T; count: number; statements: string[] }> {
  await fillPool(s);
  const runner = s.app.dataSource.createQueryRunner();
  const proto = Object.getPrototypeOf(runner) as { query: (...args: unknown[]) => Promise<unknown> };
  await runner.release();
  const original = proto.query;
  const statements: string[] = [];
  proto.query = function (this: unknown, ...args: unknown[]) {
    const sql = String(args[0]).trim();
    if (currentCallBudget() !== undefined && !TENANT_REFRESH.test(sql)) statements.push(sql.slice(0, 120));
    return original.apply(this, args);
  };
  try {
    const result = await run();
    return { result, count: statements.length, statements };
  } finally {
    proto.query = original;
  }
}

/**
 * Opens every connection of the server's MySQL pool (DATABASE_POOL_SIZE) and lets the transaction
 * runner prepare each one's session, all at once (each unit holds its connection until all have
 * one). The runner prepares a connection the first time a unit of work gets it (three statements:
 * isolation level, limits, wsrep_on); the pool opens one whenever a caller finds all the others
 * busy, and the decision cache's catch-up (every 100 ms) or a health probe holds one at
 * unpredictable moments, more often on a loaded machine. Without this, a counted call that came
 * while the pool's only connection was busy ran those three statements besides its own (CI saw
 * "statements of a miss: expected 4 to equal 1"). A full pool never opens another connection
 * (mysql2 closes idle ones only above maxIdle, which is the pool size), so none is opened while
 * the call is counted.
 */
async function fillPool(s: TestServer): Promise<void> {
  const database = s.app.config.database;
  if (database.kind !== 'mysql') return;
  let arrived = 0;
  let allHere!: () => void;
  const together = new Promise<void>((resolve) => (allHere = resolve));
  await Promise.all(
    Array.from({ length: database.poolSize }, () =>
      s.app.services.tx.read(async () => {
        if (++arrived === database.poolSize) allHere();
        await together;
      }),
    ),
  );
}
