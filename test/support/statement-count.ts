import { TestServer } from './test-server';

/**
 * Statements that are not a call's own: background work (the health probe, the decision cache
 * following the audit logs) and the tenant row, which every process re-reads at most every 0.5 s.
 */
const NOT_THE_CALLS = [/^SELECT 1$/, /FROM audit_heads WHERE tenant_id IN/, /SELECT seq, entry_type, subject_id FROM audit_entries/, /FROM tenants WHERE id = \?$/];

/**
 * The SQL statements the service's database connection ran for `run` (both drivers: counted
 * where TypeORM's query runner sends them), leaving out the background work's.
 */
export async function countStatements<T>(s: TestServer, run: () => Promise<T>): Promise<{ result: T; count: number }> {
  const runner = s.app.dataSource.createQueryRunner();
  const proto = Object.getPrototypeOf(runner) as { query: (...args: unknown[]) => Promise<unknown> };
  await runner.release();
  const original = proto.query;
  let count = 0;
  proto.query = function (this: unknown, ...args: unknown[]) {
    if (!NOT_THE_CALLS.some((re) => re.test(String(args[0]).trim()))) count++;
    return original.apply(this, args);
  };
  try {
    return { result: await run(), count };
  } finally {
    proto.query = original;
  }
}
