import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { DataSource } from 'typeorm';
import { Channel } from '../src/gen/consent/v1/common';
import { CollectionMethod, ConsentEventKind, RecordConsentRequest } from '../src/gen/consent/v1/consent';
import { createDataSource } from '../src/storage/data-source';
import { unary } from './clients';
import { GeneratorJob, JobContext, JobFactory, JobFailure } from './generator-job';
import { seededRandom } from './stats';

/**
 * The write benchmark's jobs, run inside load-generator processes:
 *
 * - 'record-consent': durable opt-ins through the gRPC API (RecordConsent, OPT_IN with a notice
 *   and evidence, so the evidence is encrypted under the subject's key). Every call has its own
 *   request_id. Most calls name a person this generator has not written before; a share
 *   (`repeatShare`) names one it has, so subject states are updated as well as created.
 * - 'raw-insert': single-row autocommit INSERTs into a table shaped like consent_events (its
 *   DDL copied from the service's own database), on SQLite through a connection built by the
 *   service's own createDataSource (so the same journal and synchronous mode), on MariaDB over a
 *   pool of plain connections (autocommit, the server's durability settings). The database's
 *   own speed at this concurrency: the floor under any write path.
 */

export interface WriteTarget {
  /** "tenants/{tenant}". */
  parent: string;
  /** "tenants/{tenant}/purposes/{purpose}". */
  purpose: string;
  /** The notice version's resource name. */
  notice: string;
}

export interface RecordConsentParams {
  targets: WriteTarget[];
  /** Distinguishes request ids of this run from any earlier one against the same database. */
  runId: string;
  /** Share of calls (0..1) that name a person written before by this generator. */
  repeatShare: number;
  seed: number;
}

export type RawInsertParams = { runId: string } & (
  | { database: 'sqlite'; file: string }
  /** `connectionsPerCall` <= 1: a generator with n calls in flight opens n x that many connections (MariaDB's max_connections may not allow one per call). */
  | { database: 'mariadb'; url: string; connectionsPerCall: number }
);

/** Subjects are numbered per generator: generator g writes +49 151 g0000000 upwards (valid German mobile numbers). */
const SUBJECTS_PER_GENERATOR = 10_000_000;
/** People written so far by this process, per set of targets (jobs on the same tenants share it): [target index, subject number]. */
const history = new Map<string, Array<[number, number]>>();
let nextSubject = 0;
let nextRequest = 0;

const phone = (n: number) => `+49151${String(n).padStart(8, '0')}`;

const recordConsent: JobFactory = async (raw, context) => {
  const params = raw as RecordConsentParams;
  if (!params?.targets?.length) throw new JobFailure('record-consent needs at least one target');
  const random = seededRandom(params.seed * 1000 + context.generator);
  const { consent } = context.clients();
  const base = context.generator * SUBJECTS_PER_GENERATOR;
  const key = params.targets.map((t) => t.parent).join(' ');
  const written = history.get(key) ?? [];
  history.set(key, written);
  return {
    async call() {
      let target: number;
      let subject: number;
      if (written.length > 0 && random() < params.repeatShare) {
        [target, subject] = written[Math.floor(random() * written.length)];
      } else {
        if (nextSubject >= SUBJECTS_PER_GENERATOR) throw new JobFailure('this generator ran out of subject numbers');
        target = Math.floor(random() * params.targets.length);
        subject = base + nextSubject++;
        if (written.length < 100_000) written.push([target, subject]);
      }
      const t = params.targets[target];
      const request = RecordConsentRequest.fromPartial({
        parent: t.parent,
        subjectIdentifier: { kind: { $case: 'phoneNumber', value: phone(subject) }, defaultRegion: '' },
        purpose: t.purpose,
        channel: random() < 0.5 ? Channel.CHANNEL_WHATSAPP : Channel.CHANNEL_SMS,
        kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
        method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
        notice: t.notice,
        evidence: { sourceIp: `198.51.100.${1 + (subject % 250)}`, userAgent: 'Mozilla/5.0 (consent-ledger write benchmark)', pageUrl: 'https://shop.example/newsletter/sign-up' },
        jurisdiction: 'DE',
        requestId: `w-${params.runId}-${context.generator}-${nextRequest++}`,
      });
      const response = await unary(consent, consent.recordConsent, request, context.deadlineMs);
      if (response.event?.kind !== ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN) {
        throw new JobFailure(`RecordConsent answered an event of kind ${response.event?.kind} for an opt-in`);
      }
      return 1;
    },
  };
};

/** The columns of consent_events the service writes (seq is generated). */
const RAW_COLUMNS = [
  'id', 'tenant_id', 'subject_id', 'kind', 'purpose_id', 'channel', 'event_time', 'record_time', 'method', 'notice_purpose_id',
  'notice_version', 'notice_sha256', 'notice_language', 'principal', 'lawful_basis', 'jurisdiction', 'expire_time', 'request_id',
  'request_fingerprint', 'evidence_ciphertext',
];
export const RAW_INSERT_SQL = `INSERT INTO consent_events (${RAW_COLUMNS.join(', ')}) VALUES (${RAW_COLUMNS.map(() => '?').join(', ')})`;
/** A compact JWE of a typical Evidence JSON is about this long (measured on the service's rows). */
const EVIDENCE_CHARS = 700;

let nextRaw = 0;

/** One row like the service's opt-in rows: unique id and request id, subjects spread, evidence of realistic size. */
function rawRow(runId: string, generator: number): unknown[] {
  const n = nextRaw++;
  const now = Date.now();
  return [
    `${runId.padStart(8, '0').slice(-8)}${generator.toString(16).padStart(2, '0')}${n.toString(16).padStart(22, '0')}`,
    'bench',
    ((n * 2654435761) % 4294967296).toString(16).padStart(32, '0'),
    'OPT_IN',
    'newsletter',
    n % 2 === 0 ? 'WHATSAPP' : 'SMS',
    now,
    now,
    'WEB_FORM',
    'newsletter',
    1,
    NOTICE_SHA256,
    'en',
    'development',
    'CONSENT',
    'DE',
    now + 730 * 86_400_000,
    `raw-${runId}-${generator}-${n}`,
    FINGERPRINT,
    EVIDENCE,
  ];
}
const NOTICE_SHA256 = randomBytes(32).toString('hex');
const FINGERPRINT = randomBytes(32).toString('hex');
const EVIDENCE = randomBytes(EVIDENCE_CHARS).toString('base64url').slice(0, EVIDENCE_CHARS);

const rawInsert: JobFactory = async (raw, context) => {
  const params = raw as RawInsertParams;
  if (params.database === 'sqlite') return sqliteInserts(params.file, params.runId, context);
  if (params.database === 'mariadb') {
    const connections = Math.max(1, Math.min(context.concurrency, Math.floor(context.concurrency * params.connectionsPerCall)));
    return mariadbInserts(params.url, connections, params.runId, context);
  }
  throw new JobFailure(`raw-insert: unknown database ${(params as { database?: string }).database}`);
};

/**
 * SQLite through the service's own createDataSource, so the pragmas (journal mode, synchronous,
 * busy timeout) are exactly the service's. One connection, as the service has: SQLite admits one
 * writer at a time, and better-sqlite3 runs each statement synchronously, so the workers take
 * turns whatever their number.
 */
async function sqliteInserts(file: string, runId: string, context: JobContext): Promise<GeneratorJob> {
  const dataSource: DataSource = await createDataSource({ kind: 'sqlite', file });
  await dataSource.initialize();
  const db = (dataSource.driver as unknown as { databaseConnection: { prepare(sql: string): { run(...values: unknown[]): unknown } } }).databaseConnection;
  const insert = db.prepare(RAW_INSERT_SQL);
  return {
    async call() {
      insert.run(...rawRow(runId, context.generator));
      return 1;
    },
    close: () => dataSource.destroy(),
  };
}

/** MariaDB: a pool of `connections` plain connections; each INSERT is its own autocommit transaction. */
async function mariadbInserts(url: string, connections: number, runId: string, context: JobContext): Promise<GeneratorJob> {
  if (new URL(url).hostname !== '127.0.0.1') throw new JobFailure('raw-insert: MariaDB must be on 127.0.0.1');
  const pool = mysql.createPool({ uri: url, connectionLimit: connections, waitForConnections: true, queueLimit: 0, connectTimeout: 5000 });
  // Open every connection before the window, so connection set-up is not counted as insert time.
  const opened = await Promise.all(Array.from({ length: connections }, () => pool.getConnection()));
  for (const c of opened) c.release();
  return {
    async call() {
      await pool.execute(RAW_INSERT_SQL, rawRow(runId, context.generator) as never);
      return 1;
    },
    close: () => pool.end(),
  };
}

export const WRITE_JOBS: Record<string, JobFactory> = {
  'record-consent': recordConsent,
  'raw-insert': rawInsert,
};
