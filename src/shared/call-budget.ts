import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * How long the work of the current RPC may take: its deadline and its cancellation. The
 * transport opens one around each handler; storage bounds every unit of database work by it, so
 * no database call outlives the RPC that asked for it. The domain in between passes nothing:
 * the budget travels with the asynchronous context, which keeps the layers apart (storage never
 * sees a gRPC call) and leaves domain signatures alone.
 */
export interface CallBudget {
  /** Epoch milliseconds after which nobody waits for the answer; Infinity without a deadline. */
  readonly deadline: number;
  /** Aborted when the caller cancels or the deadline passes. */
  readonly signal: AbortSignal;
}

const scope = new AsyncLocalStorage<CallBudget>();

/** Runs `work` (and everything it starts) under `budget`. */
export function withCallBudget<T>(budget: CallBudget, work: () => T): T {
  return scope.run(budget, work);
}

/**
 * Runs `work` outside any RPC's budget: for work that outlives the call that started it (a
 * background job started by an RPC must not end with that call's deadline). Work shared by
 * several calls (one promise awaited by many) should start here too, or it carries the budget
 * of the call that happened to start it.
 */
export function withoutCallBudget<T>(work: () => T): T {
  return scope.exit(work);
}

/** The budget of the RPC this code runs for, or undefined outside any RPC (start-up, background jobs). */
export function currentCallBudget(): CallBudget | undefined {
  return scope.getStore();
}
