import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, Metadata, Server, ServerCredentials, ServerReadableStream, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import { expect } from 'chai';
import { describeSummary, importFile } from '../../src/cli/import-consents';
import { ConsentServiceService, ImportConsentsRequest, ImportConsentsResponse } from '../../src/gen/consent/v1/consent';

/**
 * consentctl import's Ctrl-C while it waits for the service's answer to its last call (found by a
 * probe: the call was not cancelled, the program waited for the answer, then said it stopped
 * "before the end of the file"). The service here is a stand-in over a real gRPC connection that
 * takes every row and never answers, as a service whose commit hangs would.
 */
describe('consentctl import: Ctrl-C while the last answer is awaited', function () {
  let server: Server;
  let address: string;
  const seen = { rows: 0, ended: false, cancelled: false };

  before(async function () {
    server = new Server();
    const importConsents = (call: ServerReadableStream<ImportConsentsRequest, ImportConsentsResponse>, _answer: sendUnaryData<ImportConsentsResponse>) => {
      call.on('data', (m: ImportConsentsRequest) => (seen.rows += m.rows.length));
      call.on('end', () => (seen.ended = true));
      call.on('cancelled', () => (seen.cancelled = true));
    };
    server.addService(ConsentServiceService, { importConsents } as unknown as UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  after(() => server?.forceShutdown());

  it('cancels the awaited call at once and says the service confirmed nothing of it, the file having been read to its end', async function () {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'import-interrupt-'));
    const file = path.join(dir, 'list.csv');
    const rows = Array.from({ length: 5 }, (_, i) => `+49151123499${String(i).padStart(2, '0')},newsletter,sms,opt_in,2024-03-01T10:00:00Z,1`);
    writeFileSync(file, `phone,purpose,channel,kind,event_time,notice\n${rows.join('\n')}\n`);
    const interrupt = new AbortController();
    const running = importFile({ address, credentials: credentials.createInsecure(), metadata: () => new Metadata() }, { file, tenant: 'acme', format: 'csv', rowsPerCall: 1000, rowsPerMessage: 100 }, null, interrupt.signal);
    for (let i = 0; i < 100 && !seen.ended; i++) await new Promise((r) => setTimeout(r, 20));
    expect(seen, 'every row sent, the call half-closed').to.include({ rows: 5, ended: true });
    const abortedAt = Date.now();
    interrupt.abort();
    const { summary, failure } = await running;
    expect(Date.now() - abortedAt, 'at once, not when an answer comes').to.be.below(1000);
    for (let i = 0; i < 50 && !seen.cancelled; i++) await new Promise((r) => setTimeout(r, 20));
    expect(seen.cancelled, 'the service saw the call cancelled').to.equal(true);
    expect(failure).to.equal(null);
    expect(summary).to.include({ rows: 5, recorded: 0, unconfirmed: 5, stopped: 'interrupted', readToEnd: true });
    expect(describeSummary(summary)).to.include('STOPPED (interrupted) before the service confirmed every row');
  });
});
