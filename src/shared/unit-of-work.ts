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
   * The read must see every write any replica committed before it began (a consistency token
   * from another replica, or full consistency). On a Galera cluster the node waits until it has
   * applied what the cluster committed (wsrep_sync_wait); on one database server every read
   * already does.
   */
  causal?: boolean;
}
