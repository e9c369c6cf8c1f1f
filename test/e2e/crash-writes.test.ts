import { credentials, Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Channel, SubjectIdentifier } from '../../src/gen/consent/v1/common';
import {
  CheckConsentBatchResponse,
  CollectionMethod,
  ConsentEventKind,
  ConsentQuery,
  ConsentServiceClient,
  RecordConsentRequest,
  RecordConsentResponse,
  RecordInboundMessageRequest,
  RecordInboundMessageResponse,
} from '../../src/gen/consent/v1/consent';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import {
  checkAllOrNothing,
  checkChangeFeed,
  checkExactlyOnce,
  checkThroughApi,
  countStoredEvents,
  CrashableServer,
  ExpectedEvent,
  LedgerWrite,
  planKills,
  readStoredEvents,
  RECONNECTING_CLIENT_OPTIONS,
  runUnderKills,
  seededRandom,
  sendUntilAnswered,
  sleep,
  verifyAuditLogs,
  WriteLedger,
} from '../support/crash-harness';
import { forEachDatabase } from '../support/databases';
import { phone, seedTenant } from '../support/fixtures';
import { TestServer } from '../support/test-server';

const TENANTS = ['crash-a', 'crash-b', 'crash-c'];
const PEOPLE_PER_TENANT = 24;
const CLIENTS = 16;
const WRITES_EACH = 50;
const KILLS = 5;
/** The seed of the kill schedule and of the writes; CONSENT_CRASH_SEED explores other schedules. */
const SEED = Number(process.env.CONSENT_CRASH_SEED ?? 1405);
/** Generous for a loaded 2-core machine: a kill answers in-flight calls at once anyway. */
const CALL_DEADLINE_MS = 20_000;
/** The most the writes, kills and restarts may take together. */
const RUN_BUDGET_MS = 75_000;

/** A purpose no tenant has. */
const UNKNOWN_PURPOSE = 'retired-offers';

const person = (tenant: number, p: number): SubjectIdentifier => phone(`+4915155${tenant}${String(p).padStart(5, '0')}`);

/** One planned write: the ledger entry and the call that sends it (with an attempt's deadline). */
interface PlannedWrite {
  write: LedgerWrite;
  send: (client: ConsentServiceClient, deadline: Date) => Promise<RecordConsentResponse | RecordInboundMessageResponse>;
  /** Problems with an answer's shape (an inbound STOP without its keyword event...), or none. */
  checkAnswer: (answer: RecordConsentResponse | RecordInboundMessageResponse) => string[];
}

function unary<Req, Res>(
  method: (req: Req, md: Metadata, opts: { deadline: Date }, cb: (err: Error | null, res: Res) => void) => unknown,
  client: ConsentServiceClient,
  request: Req,
  deadline: Date,
): Promise<Res> {
  return new Promise((resolve, reject) => method.call(client, request, new Metadata(), { deadline }, (err, res) => (err ? reject(err) : resolve(res))));
}

/**
 * Write `i` of client `c`, drawn from the client's seeded generator: an opt-in (a quarter with a
 * signed receipt), an opt-out (of one purpose or all), an inbound "STOP" (the message and the
 * keyword's opt-out: two events) or an inbound message that is no keyword. Evidence on all. A few
 * opt-ins name a purpose the tenant does not have: they must be refused (NOT_FOUND), store
 * nothing, and fail none of the writes committed with them.
 */
function planWrite(ledger: WriteLedger, random: () => number, c: number, i: number): PlannedWrite {
  const t = Math.floor(random() * TENANTS.length);
  const tenant = TENANTS[t];
  const identifier = person(t, Math.floor(random() * PEOPLE_PER_TENANT));
  const channel = random() < 0.5 ? Channel.CHANNEL_WHATSAPP : Channel.CHANNEL_SMS;
  const requestId = `crash-${SEED}-c${c}-w${i}`;
  const roll = random();
  const userAgent = `CrashTest/${c}.${i}`;
  if (roll < 0.03) {
    const request = RecordConsentRequest.fromPartial({
      parent: `tenants/${tenant}`,
      subjectIdentifier: identifier,
      purpose: `tenants/${tenant}/purposes/${UNKNOWN_PURPOSE}`,
      channel,
      kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN,
      method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
      notice: `tenants/${tenant}/purposes/${UNKNOWN_PURPOSE}/notices/1`,
      evidence: { userAgent },
      requestId,
    });
    const write = ledger.add({ tenant, requestId, identifier, events: new Map([[requestId, { kind: request.kind }]]), mustBeRefused: 'NOT_FOUND PURPOSE_NOT_FOUND' });
    return {
      write,
      send: (client, deadline) => unary(client.recordConsent, client, request, deadline),
      checkAnswer: () => [`${tenant}/${requestId}: an opt-in for a purpose that does not exist was acknowledged`],
    };
  }
  if (roll < 0.55) {
    const optIn = roll < 0.35;
    const evidence = optIn ? { userAgent, pageUrl: `https://shop.example/signup?c=${c}&i=${i}` } : { userAgent, freeText: `unsubscribed in settings (${c}.${i})` };
    const allPurposes = !optIn && random() < 0.3;
    const issueReceipt = optIn && random() < 0.25;
    const request = RecordConsentRequest.fromPartial({
      parent: `tenants/${tenant}`,
      subjectIdentifier: identifier,
      purpose: `tenants/${tenant}/purposes/${allPurposes ? '-' : 'newsletter'}`,
      channel: !optIn && random() < 0.2 ? Channel.CHANNEL_ANY : channel,
      kind: optIn ? ConsentEventKind.CONSENT_EVENT_KIND_OPT_IN : ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT,
      method: CollectionMethod.COLLECTION_METHOD_WEB_FORM,
      notice: optIn ? `tenants/${tenant}/purposes/newsletter/notices/1` : '',
      evidence,
      requestId,
      issueReceipt,
    });
    const write = ledger.add({ tenant, requestId, identifier, events: new Map<string, ExpectedEvent>([[requestId, { kind: request.kind, evidence }]]) });
    return {
      write,
      send: (client, deadline) => unary(client.recordConsent, client, request, deadline),
      checkAnswer: (answer) => {
        const a = answer as RecordConsentResponse;
        const problems = [];
        if (!a.event) problems.push(`${tenant}/${requestId}: answered without its event`);
        else write.answered.set(requestId, a.event.name);
        if (issueReceipt && !/^ey/.test(a.receipt)) problems.push(`${tenant}/${requestId}: answered without the receipt it asked for`);
        return problems;
      },
    };
  }
  const stop = roll < 0.8;
  const messageId = `wamid.${c}.${i}`;
  const request = RecordInboundMessageRequest.fromPartial({ parent: `tenants/${tenant}`, subjectIdentifier: identifier, channel, text: stop ? 'STOP' : 'hello, where is my order?', messageId, requestId });
  const events = new Map<string, ExpectedEvent>([[requestId, { kind: ConsentEventKind.CONSENT_EVENT_KIND_INBOUND_MESSAGE, evidence: { inboundMessageId: messageId } }]]);
  if (stop) events.set(`${requestId}#keyword`, { kind: ConsentEventKind.CONSENT_EVENT_KIND_OPT_OUT, evidence: { inboundMessageId: messageId } });
  const write = ledger.add({ tenant, requestId, identifier, events });
  return {
    write,
    send: (client, deadline) => unary(client.recordInboundMessage, client, request, deadline),
    checkAnswer: (answer) => {
      const a = answer as RecordInboundMessageResponse;
      const problems = [];
      if (!a.inboundEvent) problems.push(`${tenant}/${requestId}: answered without its inbound event`);
      else write.answered.set(requestId, a.inboundEvent.name);
      if (stop && !a.keywordEvent) problems.push(`${tenant}/${requestId}: a STOP answered without its keyword event`);
      if (!stop && a.keywordEvent) problems.push(`${tenant}/${requestId}: a message that is no keyword answered with a keyword event`);
      if (a.keywordEvent) write.answered.set(`${requestId}#keyword`, a.keywordEvent.name);
      return problems;
    },
  };
}

/**
 * The state tables (consent_state, service_windows) agree with the event history: a live check
 * reads the former, a check at a past time replays the latter; after the last write both must
 * decide alike for every person, purpose (MARKETING and SERVICE) and channel.
 */
async function stateAgreesWithHistory(address: string): Promise<string[]> {
  const client = new ConsentServiceClient(address, credentials.createInsecure());
  const problems: string[] = [];
  try {
    await sleep(50);
    const past = new Date(Date.now() - 10); // after every write was answered, and before "now"
    for (const [t, tenant] of TENANTS.entries()) {
      const queries: ConsentQuery[] = [];
      for (let p = 0; p < PEOPLE_PER_TENANT; p++) {
        for (const purpose of ['newsletter', 'support']) {
          for (const channel of [Channel.CHANNEL_WHATSAPP, Channel.CHANNEL_SMS]) {
            queries.push(ConsentQuery.fromPartial({ subjectIdentifier: person(t, p), purpose: `tenants/${tenant}/purposes/${purpose}`, channel }));
          }
        }
      }
      const batch = (qs: ConsentQuery[]) =>
        new Promise<CheckConsentBatchResponse>((resolve, reject) =>
          client.checkConsentBatch({ parent: `tenants/${tenant}`, queries: qs }, new Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(err) : resolve(res))),
        );
      const live = await batch(queries);
      const replayed = await batch(queries.map((q) => ({ ...q, at: past })));
      queries.forEach((q, n) => {
        const a = JSON.stringify(live.results[n]);
        const b = JSON.stringify(replayed.results[n]);
        if (a !== b) problems.push(`${tenant}, person ${Math.floor(n / 4)}, ${q.purpose.split('/').pop()}, ${Channel[q.channel]}: live ${a}, replayed ${b}`);
      });
    }
  } finally {
    client.close();
  }
  return problems;
}

forEachDatabase('crash safety of writes: the server killed (SIGKILL) at seeded moments under 16 retrying writers', (db, kind) => {
  let server: CrashableServer | undefined;
  after(async function () {
    this.timeout(30_000);
    await server?.stop();
  });

  it(`every acknowledged write is stored exactly once, unanswered ones all or nothing until their retry converges, and the audit log verifies [seed ${SEED}]`, async function () {
    // The bound of the whole test on this database: run budget, restarts, checks.
    this.timeout(120_000);
    const started = Date.now();
    server = await CrashableServer.start(db());
    const admin = {
      tenants: new TenantServiceClient(server.address, credentials.createInsecure()),
      purposes: new PurposeServiceClient(server.address, credentials.createInsecure()),
    };
    try {
      for (const tenant of TENANTS) await seedTenant(admin as unknown as TestServer, tenant);
    } finally {
      admin.tenants.close();
      admin.purposes.close();
    }

    const ledger = new WriteLedger();
    const problems: string[] = [];
    const seenAtKills = new Set<string>(); // a problem is reported after the first kill that shows it
    const atKills: Array<{ kill: number; unanswered: number; stored: number; absent: number }> = [];
    const plans = Array.from({ length: CLIENTS }, (_, c) => {
      const random = seededRandom(SEED * 7919 + c + 1);
      return Array.from({ length: WRITES_EACH }, (__, i) => planWrite(ledger, random, c, i));
    });
    const plan = planKills(seededRandom(SEED), KILLS, CLIENTS * WRITES_EACH);

    const writer = async (c: number, signal: AbortSignal) => {
      const client = new ConsentServiceClient(server!.address, credentials.createInsecure(), RECONNECTING_CLIENT_OPTIONS);
      const options = { ledger, signal, random: seededRandom(SEED * 31 + c), callDeadlineMs: CALL_DEADLINE_MS };
      try {
        for (const w of plans[c]) {
          const answer = await sendUntilAnswered(w.write, (deadline) => w.send(client, deadline), options);
          if (answer) problems.push(...w.checkAnswer(answer));
          if (signal.aborted) return;
        }
      } finally {
        client.close();
      }
    };

    let run;
    try {
      run = await runUnderKills({
        server,
        plan,
        progress: () => ledger.count('acknowledged') + ledger.count('refused'),
        workload: (signal) => Promise.all(plans.map((_, c) => writer(c, signal))).then(() => undefined),
        // No process runs: what is stored now is what the killed one made durable.
        whileDown: async (kill) => {
          const unanswered = ledger.unanswered();
          const stored = await readStoredEvents(db(), TENANTS);
          const outcome = checkAllOrNothing(unanswered, stored);
          // Everything acknowledged so far is durable, nothing is doubled, nothing unknown stored.
          for (const p of [...outcome.problems, ...checkExactlyOnce(ledger, stored)]) {
            if (!seenAtKills.has(p)) problems.push(`after kill ${kill}: ${p}`);
            seenAtKills.add(p);
          }
          atKills.push({ kill, unanswered: unanswered.length, stored: outcome.present, absent: outcome.absent });
        },
        budgetMs: RUN_BUDGET_MS,
      });
    } catch (err) {
      const refusals = ledger.all().filter((w) => w.state === 'refused' && w.refusal !== w.mustBeRefused).map((w) => `${w.tenant}/${w.requestId}: ${w.refusal}: ${w.refusalMessage}`);
      throw new Error(
        `${(err as Error).message}\nrefused writes: ${JSON.stringify(refusals.slice(0, 20))}\nproblems: ${JSON.stringify(problems.slice(0, 20))}\n` +
          `server output (tail):\n${server.output().slice(-6000)}`,
      );
    }

    const wronglyRefused = ledger.all().filter((w) => w.state === 'refused' && w.refusal !== w.mustBeRefused);
    expect(wronglyRefused.map((w) => `${w.tenant}/${w.requestId}: ${w.refusal}: ${w.refusalMessage}`), 'writes refused that are valid, or refused for another reason').to.deep.equal([]);
    const bad = ledger.all().filter((w) => w.mustBeRefused);
    expect(bad.filter((w) => w.state !== 'refused').map((w) => `${w.tenant}/${w.requestId}: ${w.state}`), 'writes that must be refused').to.deep.equal([]);
    expect(ledger.count('acknowledged'), 'every valid write acknowledged in the end').to.equal(CLIENTS * WRITES_EACH - bad.length);
    expect(problems, 'problems seen during the run').to.deep.equal([]);
    expect(run.kills).to.equal(KILLS);
    expect(
      atKills.some((k) => k.unanswered > 0),
      'at least one kill caught writes unanswered (else no kill hit a write in flight)',
    ).to.equal(true);

    const stored = await readStoredEvents(db(), TENANTS);
    expect(checkExactlyOnce(ledger, stored), 'exactly once, in the database').to.deep.equal([]);
    const storedEvents = ledger.acknowledgedEvents();
    expect(await countStoredEvents(db(), TENANTS), 'events stored').to.equal(storedEvents);
    expect(await checkThroughApi(server.address, ledger), 'exactly once, through the API').to.deep.equal([]);
    expect(await stateAgreesWithHistory(server.address), 'state tables agree with the event history').to.deep.equal([]);
    expect(await checkChangeFeed(server.address, ledger, TENANTS), 'every opt-out once in the change feed').to.deep.equal([]);
    for (const result of await verifyAuditLogs(server.address, TENANTS)) {
      expect(result.code, `audit verify --records of ${result.tenant}: ${result.err}${result.out}`).to.equal(0);
      const rows = stored.rows.filter((r) => r.tenant === result.tenant).length;
      expect(result.out, result.tenant).to.include(`${rows} consent event rows match their entries`);
    }

    // Here rather than only in after(): forEachDatabase's after() drops the database first.
    await server.stop();

    const retried = [...ledger.retriedBy].map(([k, n]) => `${k} ${n}`).join(', ');
    console.log(
      `      [${kind}] seed ${SEED}: ${ledger.all().length} writes (${storedEvents} events; ${bad.length} refused as they must be) by ${CLIENTS} clients over ${TENANTS.length} tenants; ` +
        `${run.kills} kills at answered writes ${plan.atProgress.join(', ')}; restarts took ${run.restartMs.join(', ')} ms; ` +
        `${ledger.retries} retries (${retried}); unanswered at the kills: ${atKills.map((k) => `${k.unanswered} (${k.stored} stored, ${k.absent} not)`).join(', ')}; ` +
        `writes ${(run.elapsedMs / 1000).toFixed(1)} s, whole test ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });
});
