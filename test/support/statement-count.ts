import { currentCallBudget } from '../../src/shared/call-budget';
import { TestServer } from './test-server';

/** The tenant row, which every process re-reads at most every 0.5 s: not a call's own cost. */
const TENANT_REFRESH = /FROM tenants WHERE id = \?$/;

/**
 * The SQL statements the service's database connection ran for `run` (both drivers: counted
 * where TypeORM's query runner sends them). Only statements made for an RPC count (they run
 * under its call budget): the background work of any server in this process (health probes, the
 * decision cache following the audit logs, checkpoints, purges) runs outside every budget.
 */
export async function countStatements<T>(s: TestServer, run: () => Promise<T>): Promise<{ result: T; count: number; statements: string[] }> {
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
