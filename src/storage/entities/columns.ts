import { ValueTransformer } from 'typeorm';

/**
 * Times are stored as BIGINT epoch milliseconds on both databases: no time-zone or
 * fractional-second differences between SQLite and MySQL, and exact ordering.
 * MySQL drivers return BIGINT as strings; this turns them back into numbers.
 */
export const epochMs: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null || value === undefined ? value : Number(value)),
};

/** BIGINT counters and positions (audit sequence numbers, node indexes), read back as numbers. */
export const bigintNumber: ValueTransformer = epochMs;
