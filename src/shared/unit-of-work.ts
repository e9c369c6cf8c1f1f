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
  /** Runs read-only `work`; reads see committed data only. */
  read<T>(work: (tx: TxContext) => Promise<T>, options?: ReadOptions): Promise<T>;
}

export interface ReadOptions {
  /**
   * Whether the read must see every write any replica committed before it began; true unless
   * set to false. On a Galera cluster the node first waits until it has applied what the
   * cluster committed (wsrep_sync_wait), and fails when it is no longer part of the cluster: a
   * node cut off from its peers, or resumed after a pause, would otherwise answer from its old
   * state until it notices. On one database server every read already does. False only where an
   * old answer is harmless and the wait is not worth it (nothing passes false today).
   */
  causal?: boolean;
}
