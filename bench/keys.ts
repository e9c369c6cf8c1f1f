/**
 * Key-lifecycle benchmarks (npm run bench:keys): erasure cost against data size, tenant shred cost
 * against tenant size, and field-encryption throughput against a JOSE library, each measured
 * against its baseline in the same run, on SQLite and MariaDB. Everything runs in this process
 * against real databases on this machine; it stops by itself.
 *
 *   npm run bench:keys -- [--db sqlite|mariadb|both] [--quick]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import jose from 'node-jose';
import { benchDatabase } from './databases';
import { RatioRow } from './report';
import { startApp, RunningApp } from '../src/app';
import { Config, loadConfig } from '../src/config/config';
import { decryptField, encryptField } from '../src/crypto/field-cipher';
import { createLogger } from '../src/logging/logger';
import { DEVELOPMENT_PRINCIPAL } from '../src/domain/principal';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const dbArg = args.includes('--db') ? args[args.indexOf('--db') + 1] : 'both';

const SMALL_EVENTS = 10;
const LARGE_EVENTS = quick ? 1_000 : 10_000;
const SMALL_TENANT = 100;
const LARGE_TENANT = quick ? 10_000 : 100_000;
const REPEATS = quick ? 3 : 7;

type Row = RatioRow;

async function main(): Promise<void> {
  const kinds = dbArg === 'both' ? ['sqlite', 'mariadb'] : [dbArg];
  const out: string[] = [`## Key lifecycle benchmark (${new Date().toISOString()})`, '', `Machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, Node ${process.version}${quick ? ' (quick run)' : ''}`, ''];
  out.push('### Field encryption (200-byte values, one core)', '', ...table(await encryptionRows()), '');
  for (const kind of kinds) {
    const env = await benchDatabase(kind, 'keys');
    if (!env) {
      out.push(`### ${kind}: skipped (not reachable)`, '');
      continue;
    }
    try {
      out.push(`### ${kind}`, '', ...table(await lifecycleRows(env.config)), '');
    } finally {
      await env.drop();
    }
  }
  console.log(out.join('\n'));
}

/** encryptField (node:crypto AES-256-GCM in JWE framing) vs node-jose JWE (dir, A256GCM). */
async function encryptionRows(): Promise<Row[]> {
  const key = randomBytes(32);
  const value = 'x'.repeat(200);
  const context = { tenant: 't', subject: 's', table: 'consent_events', column: 'evidence_ciphertext', row: 'r' };
  const n = quick ? 5_000 : 50_000;
  let start = process.hrtime.bigint();
  const sealed: string[] = [];
  for (let i = 0; i < n; i++) sealed.push(encryptField(key, 'k', context, value));
  const ours = rate(n, start);
  start = process.hrtime.bigint();
  for (const jwe of sealed) decryptField(key, context, jwe);
  const oursOpen = rate(n, start);
  const jwk = await jose.JWK.asKey({ kty: 'oct', k: key.toString('base64url'), alg: 'A256GCM' });
  const m = quick ? 1_000 : 5_000;
  start = process.hrtime.bigint();
  const joseSealed: string[] = [];
  for (let i = 0; i < m; i++) {
    joseSealed.push((await jose.JWE.createEncrypt({ format: 'compact', fields: { alg: 'dir', enc: 'A256GCM' } }, jwk).update(value).final()) as unknown as string);
  }
  const theirs = rate(m, start);
  start = process.hrtime.bigint();
  for (const jwe of joseSealed) await jose.JWE.createDecrypt(jwk, { algorithms: ['dir', 'A256GCM'] }).decrypt(jwe);
  const theirsOpen = rate(m, start);
  return [
    { workload: 'encrypt a field', baseline: `node-jose ${fmt(theirs)}/s`, measured: `${fmt(ours)}/s`, ratio: ours / theirs, goal: 'faster than JOSE library' },
    { workload: 'decrypt a field', baseline: `node-jose ${fmt(theirsOpen)}/s`, measured: `${fmt(oursOpen)}/s`, ratio: oursOpen / theirsOpen, goal: 'faster than JOSE library' },
  ];
}

/** Erasure time vs events per subject, and shred time vs subjects per tenant (until unreadable). */
async function lifecycleRows(database: Config['database'] & object): Promise<Row[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'consent-bench-keys-'));
  const base = loadConfig({ PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'error' });
  const keyStore = database.kind === 'sqlite' ? { kind: 'sqlite' as const, file: path.join(dataDir, 'keys.sqlite') } : { ...database, url: `${database.url}_keys` };
  const app = await startApp({ ...base, database, keyStore }, { logger: createLogger('error', new PassThrough()) });
  try {
    const small: number[] = [];
    const large: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      small.push(await timeErasure(app, `s${r}`, SMALL_EVENTS));
      large.push(await timeErasure(app, `l${r}`, LARGE_EVENTS));
    }
    const smallShred = await timeShred(app, 'shred-small', SMALL_TENANT);
    const largeShred = await timeShred(app, 'shred-large', LARGE_TENANT);
    return [
      {
        workload: `erase a subject with ${fmt(LARGE_EVENTS)} events (median of ${REPEATS})`,
        baseline: `${SMALL_EVENTS} events: ${ms(median(small))}`,
        measured: ms(median(large)),
        ratio: median(large) / median(small),
        goal: '<= 2',
      },
      {
        workload: `ShredTenant with ${fmt(LARGE_TENANT)} subjects (until unreadable)`,
        baseline: `${SMALL_TENANT} subjects: ${ms(smallShred)}`,
        measured: ms(largeShred),
        ratio: largeShred / smallShred,
        goal: '<= 2',
      },
    ];
  } finally {
    await app.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Seeds one subject with `events` events (bulk SQL copies of a real one), then times its erasure. */
async function timeErasure(app: RunningApp, tag: string, events: number): Promise<number> {
  const tenantId = `erase-${tag}`;
  const subjectId = await seedTenantWithSubjects(app, tenantId, 1);
  const [template] = await app.dataSource.query('SELECT * FROM consent_events WHERE subject_id = ?', [subjectId]);
  const rows: unknown[][] = [];
  for (let i = 1; i < events; i++) {
    rows.push([randomBytes(16).toString('hex'), tenantId, subjectId, template.kind, template.purpose_id, template.channel, Number(template.event_time) + i, Number(template.record_time) + i, template.method, template.principal, template.jurisdiction, `bulk-${i}`, template.request_fingerprint, template.evidence_ciphertext]);
  }
  await bulkInsert(app, 'consent_events', ['id', 'tenant_id', 'subject_id', 'kind', 'purpose_id', 'channel', 'event_time', 'record_time', 'method', 'principal', 'jurisdiction', 'request_id', 'request_fingerprint', 'evidence_ciphertext'], rows);
  await settle();
  const start = process.hrtime.bigint();
  await app.services.subjectEraser.erase(tenantId, subjectId);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Seeds a tenant with `subjects` subjects (one real, the rest bulk rows with keys), times ShredTenant. */
async function timeShred(app: RunningApp, tenantId: string, subjects: number): Promise<number> {
  const first = await seedTenantWithSubjects(app, tenantId, 1);
  const [key] = await app.keyDataSource.query('SELECT * FROM subject_keys WHERE subject_id = ?', [first]);
  const subjectRows: unknown[][] = [];
  const keyRows: unknown[][] = [];
  for (let i = 1; i < subjects; i++) {
    const id = randomBytes(16).toString('hex');
    subjectRows.push([id, tenantId, 1]);
    keyRows.push([tenantId, id, key.epoch, key.wrapped_key, 1, 1]);
  }
  await bulkInsert(app, 'subjects', ['id', 'tenant_id', 'created_at'], subjectRows);
  await bulkInsert(app, 'subject_keys', ['tenant_id', 'subject_id', 'epoch', 'wrapped_key', 'encryptions', 'created_at'], keyRows, true);
  await settle();
  const start = process.hrtime.bigint();
  await shredThroughDomain(app, tenantId);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function shredThroughDomain(app: RunningApp, tenantId: string): Promise<void> {
  await app.services.keyAdministration.shredTenant(DEVELOPMENT_PRINCIPAL, tenantId, tenantId, '');
}

async function seedTenantWithSubjects(app: RunningApp, tenantId: string, subjects: number): Promise<string> {
  const { tenants, purposes, recorder } = app.services;
  await tenants.create(DEVELOPMENT_PRINCIPAL, { tenantId, displayName: tenantId, settings: {}, requestId: '' });
  await purposes.create(DEVELOPMENT_PRINCIPAL, tenantId, { purposeId: 'news', displayName: 'news', category: 'MARKETING', description: '', requestId: '' });
  await purposes.publishNotice(DEVELOPMENT_PRINCIPAL, tenantId, 'news', { language: 'en', text: 'news', requestId: 'n1' });
  let subjectId = '';
  for (let i = 0; i < subjects; i++) {
    const { event } = await recorder.record(DEVELOPMENT_PRINCIPAL, {
      tenantId,
      identifier: { phoneNumber: `+4915180${String(i).padStart(6, '0')}` },
      purposeId: 'news',
      channel: 'WHATSAPP',
      kind: 'OPT_IN',
      method: 'WEB_FORM',
      notice: { purposeId: 'news', version: 1 },
      evidence: { userAgent: 'bench', sourceIp: '198.51.100.1' },
      jurisdiction: 'DE',
      requestId: `seed-${i}`,
      fingerprintSource: `seed-${i}`,
    });
    subjectId = event.subjectId;
  }
  return subjectId;
}

async function bulkInsert(app: RunningApp, table: string, columns: string[], rows: unknown[][], keyStore = false): Promise<void> {
  const ds = keyStore ? app.keyDataSource : app.dataSource;
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    const values = chunk.map(() => `(${columns.map(() => '?').join(', ')})`).join(', ');
    await ds.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${values}`, chunk.flat());
  }
}


function table(rows: Row[]): string[] {
  return [
    '| workload | baseline (same run) | measured | ratio | goal |',
    '| --- | --- | --- | --: | --- |',
    ...rows.map((r) => `| ${r.workload} | ${r.baseline} | ${r.measured} | ${r.ratio.toFixed(2)}x | ${r.goal} |`),
  ];
}

/** Lets the database finish flushing the bulk load, so the timed operation does not pay for it. */
const settle = () => new Promise((r) => setTimeout(r, 500));
const rate = (n: number, start: bigint) => n / (Number(process.hrtime.bigint() - start) / 1e9);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => `${n.toFixed(1)} ms`;

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
