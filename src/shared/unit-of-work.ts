/**
 * An open unit of work, opaque to the domain: storage knows what it is (a TypeORM
 * EntityManager); domain code only passes it along, so it never touches the ORM.
 */
export interface TxContext {
  readonly __unitOfWork: unique symbol;
}

/** Runs domain work inside a database transaction (writes) or a consistent read. */
export interface TransactionRunner {
  /** Runs `work` in a transaction; commits when it resolves, rolls back when it throws. */
  write<T>(work: (tx: TxContext) => Promise<T>): Promise<T>;
  /**
   * Runs read-only `work`; reads see committed data only. On a Galera cluster every unit of work
   * (read or write) is causal: it sees every write any replica committed before it began, or
   * fails on a node that is no longer part of the cluster (docs/architecture.md).
   */
  read<T>(work: (tx: TxContext) => Promise<T>): Promise<T>;
}
