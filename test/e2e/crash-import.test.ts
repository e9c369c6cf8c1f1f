import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { PurposeCategory } from '../../src/gen/consent/v1/common';
import { ConsentEventKind } from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import {
  checkExactlyOnce,
  checkThroughApi,
  countStoredEvents,
  CrashableServer,
  planKills,
  queryDatabase,
  readStoredEvents,
  runUnderKills,
  seededRandom,
  sleep,
  verifyAuditLogs,
  WriteLedger,
} from '../support/crash-harness';
import { forEachDatabase } from '../support/databases';
import { phone } from '../support/fixtures';
import { ROOT, runConsentctl } from '../support/processes';

/**
 * Crash safety of an import (issue 14 point 5): `consentctl import` of a file while the server is
 * killed with SIGKILL at seeded moments and restarted at once, run again until it exits 0; and
 * consentctl itself killed (SIGKILL) and interrupted (Ctrl-C) half way, then run again. Every row
 * ends up stored exactly once with its audit entry (rows with their own request_id checked one by
 * one, through the database and the API; rows whose request_id the service derives checked as
 * one event per person), and the audit log verifies.
 */
const ROWS = 2500;
const SEED = 1414;

/** Valid German mobile numbers, one per person. */
const mobile = (tenantIndex: number, i: number) => `+4915${String(130000000 + tenantIndex * 1_000_000 + i).padStart(9, '0')}`;

interface Row {
  phone: string;
  requestId: string;
  eventTime: string;
}

function rowsOf(tenantIndex: number, ownRequestIds: boolean): Row[] {
  return Array.from({ length: ROWS }, (_, i) => ({
    phone: mobile(tenantIndex, i),
    requestId: ownRequestIds ? `crash-import-${tenantIndex}-${i}` : '',
    eventTime: new Date(Date.UTC(2023, 0, 1) + i * 3_600_000).toISOString(),
  }));
}

function csvOf(rows: Row[]): string {
  return ['phone,purpose,channel,kind,event_time,method,notice,source_ip,page_url,request_id', ...rows.map((r) => `${r.phone},newsletter,email,opt_in,${r.eventTime},web_form,1,198.51.100.7,https://shop.example/join,${r.requestId}`)].join('\n') + '\n';
}

async function seed(address: string, tenants: string[]): Promise<void> {
  const tenantsClient = new TenantServiceClient(address, credentials.createInsecure());
  const purposes = new PurposeServiceClient(address, credentials.createInsecure());
  const unary = <Req, Res>(client: object, method: (r: Req, md: Metadata, cb: (e: Error | null, r: Res) => void) => unknown, request: Req) =>
    new Promise<Res>((resolve, reject) => method.call(client, request, new Metadata(), (e, r) => (e ? reject(e) : resolve(r))));
  try {
    for (const tenantId of tenants) {
      await unary(tenantsClient, tenantsClient.createTenant, { tenantId, displayName: tenantId, requestId: '', settings: undefined });
      await unary(purposes, purposes.createPurpose, {
        parent: `tenants/${tenantId}`,
        purposeId: 'newsletter',
        purpose: { name: '', displayName: 'Newsletter', category: PurposeCategory.PURPOSE_CATEGORY_MARKETING, description: '', createTime: undefined, allowedWhileRestricted: false },
        requestId: '',
      });
      await unary(purposes, purposes.publishNotice, { parent: `tenants/${tenantId}/purposes/newsletter`, language: 'en', text: 'Newsletter', requestId: 'notice-1' });
    }
  } finally {
    tenantsClient.close();
    purposes.close();
  }
}

/** Every person of the tenant holds exactly one event, and there are `expected` people with events. */
async function oneEventPerPerson(db: Parameters<typeof countStoredEvents>[0], tenant: string, expected: number): Promise<string[]> {
  const rows = await queryDatabase(db, 'SELECT subject_id, COUNT(*) AS n FROM consent_events WHERE tenant_id = ? GROUP BY subject_id', [tenant]);
  const problems = rows.filter((r) => Number(r.n) !== 1).map((r) => `${tenant}: subject ${String(r.subject_id)} holds ${Number(r.n)} events`);
  if (rows.length !== expected) problems.push(`${tenant}: ${rows.length} people hold events, expected ${expected}`);
  const people = await queryDatabase(db, 'SELECT COUNT(*) AS n FROM subject_identifiers WHERE tenant_id = ?', [tenant]);
  if (Number(people[0].n) !== expected) problems.push(`${tenant}: ${Number(people[0].n)} identifiers stored, expected ${expected}`);
  return problems;
}

/** consentctl import as its own process (one process: tsx as a loader, so a signal reaches it). */
/** consentctl import in a child process; each call of `rowsPerCall` rows is committed when answered. */
function startImport(address: string, file: string, tenant: string, rowsPerCall = 1000): ChildProcess {
  return spawn(process.execPath, ['--require', 'tsx/cjs', 'src/cli/consentctl.ts', '--address', address, '--json', 'import', file, '--tenant', tenant, '--rows-per-call', String(rowsPerCall)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

forEachDatabase('crash safety: an import', (db, kind) => {
  let server: CrashableServer;
  const OWN = 'crash-import-own';
  const DERIVED = 'crash-import-derived';
  const CLI = 'crash-import-cli';

  before(async function () {
    this.timeout(120_000);
    server = await CrashableServer.start(db());
    await seed(server.address, [OWN, DERIVED, CLI]);
  });
  after(async function () {
    this.timeout(30_000);
    await server?.stop();
  });

  it(`the server killed twice during the import, the import run again until it exits 0: every row once [${kind}]`, async function () {
    this.timeout(300_000);
    const own = rowsOf(1, true);
    const derived = rowsOf(2, false);
    const files = { own: path.join(db().dataDir, 'own.csv'), derived: path.join(db().dataDir, 'derived.csv') };
    writeFileSync(files.own, csvOf(own));
    writeFileSync(files.derived, csvOf(derived));
    const ledger = new WriteLedger();
    for (const row of own) {
      ledger.add({
        tenant: OWN,
        requestId: row.requestId,
        identifier: phone(row.phone),
        events: new Map([[row.requestId, { kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN, evidence: { pageUrl: 'https://shop.example/join', sourceIp: '198.51.100.0' } }]]),
      });
    }
    const exits: number[] = [];
    const run = await runUnderKills({
      server,
      budgetMs: 240_000,
      plan: planKills(seededRandom(SEED), 2, 2 * ROWS),
      progress: () => countStoredEvents(db(), [OWN, DERIVED]),
      workload: async (signal) => {
        for (const [tenant, file] of [[OWN, files.own], [DERIVED, files.derived]]) {
          for (;;) {
            if (signal.aborted) return;
            // --rows-per-call keeps several calls in a run, so a kill can fall between them too.
            const result = await runConsentctl(server.address, 'import', file, '--tenant', tenant, '--rows-per-call', '1000');
            exits.push(result.code);
            if (result.code === 0) break;
            // 3: the server went away under it; anything else would be a refusal, which must not happen.
            if (result.code !== 3) throw new Error(`consentctl import exited ${result.code}: ${result.err.slice(-2000)}`);
            await sleep(200);
          }
        }
      },
    });
    expect(run.kills).to.equal(2);
    expect(exits.filter((c) => c === 3).length, `exit codes ${exits.join(', ')}`).to.be.at.least(1);
    ledger.acknowledgeAll();
    expect(checkExactlyOnce(ledger, await readStoredEvents(db(), [OWN]))).to.deep.equal([]);
    expect(await oneEventPerPerson(db(), DERIVED, ROWS)).to.deep.equal([]);
    expect(await countStoredEvents(db(), [OWN, DERIVED])).to.equal(2 * ROWS);
    expect(await checkThroughApi(server.address, ledger)).to.deep.equal([]);
    const verified = await verifyAuditLogs(server.address, [OWN, DERIVED]);
    for (const v of verified) expect(v.code, `${v.tenant}: ${v.err}`).to.equal(0);
    // Once more: everything is there already.
    const again = await runConsentctl(server.address, '--json', 'import', files.derived, '--tenant', DERIVED);
    expect(again.code, again.err).to.equal(0);
    expect(JSON.parse(again.out)).to.include({ rows: ROWS, recorded: 0, alreadyRecorded: ROWS, rejected: 0 });
  });

  it(`consentctl killed with SIGKILL, then interrupted with Ctrl-C, half way; run again: every row once [${kind}]`, async function () {
    this.timeout(240_000);
    const rows = rowsOf(3, false);
    const file = path.join(db().dataDir, 'cli.csv');
    writeFileSync(file, csvOf(rows));
    const waitFor = async (atLeast: number) => {
      const until = Date.now() + 120_000;
      while ((await countStoredEvents(db(), [CLI])) < atLeast) {
        if (Date.now() > until) throw new Error(`fewer than ${atLeast} rows stored within 120 s`);
        await sleep(20);
      }
    };
    // 'close', not 'exit': the process can end before its last output has been read from the
    // pipe (seen in CI: the summary printed before the SIGINT ending was not in `out` yet).
    const exited = (child: ChildProcess) => new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));

    // Small calls (each is committed when answered), so that both runs stop with rows still to go.
    const killed = startImport(server.address, file, CLI, 250);
    const killedEnd = exited(killed);
    await waitFor(ROWS * 0.2);
    killed.kill('SIGKILL');
    expect((await killedEnd).signal).to.equal('SIGKILL');
    // The server goes on committing the killed run's call in flight: wait until that has settled,
    // so that what is stored next is the next run's own. (Counting from before let the killed
    // run's last call reach the mark while the next consentctl was still starting, before its
    // Ctrl-C handler existed: it ended by the signal's default action, without a summary.)
    let settled = await countStoredEvents(db(), [CLI]);
    for (let quiet = 0, until = Date.now() + 60_000; quiet < 10 && Date.now() < until; ) {
      await sleep(100);
      const now = await countStoredEvents(db(), [CLI]);
      quiet = now === settled ? quiet + 1 : 0;
      settled = now;
    }
    expect(settled, 'the killed run left rows for the next one').to.be.at.most(ROWS * 0.6);

    const interrupted = startImport(server.address, file, CLI, 100);
    // Listened for from the start: a run that ended before the Ctrl-C would otherwise be waited for forever.
    const interruptedEnd = exited(interrupted);
    let out = '';
    interrupted.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    // Rows stored beyond what the killed run left: this run is importing (its Ctrl-C handler is in place).
    await waitFor(settled + 100);
    interrupted.kill('SIGINT');
    const end = await interruptedEnd;
    expect(end.signal, 'ends as an interrupted program, after its summary').to.equal('SIGINT');
    const summary = JSON.parse(out) as { stopped: string; recorded: number; alreadyRecorded: number };
    expect(summary.stopped).to.equal('interrupted');

    // What the service had received when consentctl went away is committed (each row once):
    // up to every row of a small file. The server may still be committing a batch it received
    // just before the interruption when `before` is counted, so the run again finds at least
    // `before` rows already there, and records exactly the others.
    const before = await countStoredEvents(db(), [CLI]);
    const last = await runConsentctl(server.address, '--json', 'import', file, '--tenant', CLI);
    expect(last.code, last.err).to.equal(0);
    const final = JSON.parse(last.out) as { rows: number; recorded: number; alreadyRecorded: number };
    expect(final.rows, last.out).to.equal(ROWS);
    expect(final.alreadyRecorded, last.out).to.be.at.least(before);
    expect(final.recorded + final.alreadyRecorded, last.out).to.equal(ROWS);
    expect(await countStoredEvents(db(), [CLI]), 'every row stored').to.equal(ROWS);
    expect(await oneEventPerPerson(db(), CLI, ROWS)).to.deep.equal([]);
    const [verified] = await verifyAuditLogs(server.address, [CLI]);
    expect(verified.code, verified.err).to.equal(0);
  });
});
