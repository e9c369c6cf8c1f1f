import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Metadata, Server, ServerCredentials, ServiceDefinition, status, UntypedHandleCall } from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { expect } from 'chai';
import { runConsentctl } from '../../src/cli/consentctl';
import { EXIT } from '../../src/cli/exit-codes';
import { AuditServiceService } from '../../src/gen/consent/v1/audit';
import { IdentityServiceService } from '../../src/gen/consent/v1/identity';
import { KeyServiceService } from '../../src/gen/consent/v1/key';
import { SubjectRightsServiceService } from '../../src/gen/consent/v1/subject_rights';
import { BadRequest, ErrorInfo, RetryInfo } from '../../src/gen/google/rpc/error_details';
import { Status } from '../../src/gen/google/rpc/status';
import { builtCheckout, Checkout } from '../support/built-checkout';

const REQUEST = 'tenants/acme/requests/0123456789abcdef0123456789abcdef';
const RESTRICTION = 'tenants/acme/restrictions/0123456789abcdef0123456789abcdef';

/** The status a fake service answers every call with. */
interface Answer {
  code: status;
  message: string;
  details?: Array<{ type: string; value: Uint8Array }>;
}

/**
 * A gRPC server that serves consentctl's three services and answers every call (unary or
 * streamed) with one configured status and details trailer, and counts the calls it got: to see
 * how consentctl reports what a server may send, and that a usage error sends nothing.
 */
async function fakeService(): Promise<{ address: string; calls: string[]; answer: Answer; stop(): Promise<void> }> {
  const state = { calls: [] as string[], answer: { code: status.INTERNAL, message: 'not set' } as Answer };
  const reply = () => {
    const metadata = new Metadata();
    const packed = (state.answer.details ?? []).map((d) => ({ typeUrl: `type.googleapis.com/${d.type}`, value: Buffer.from(d.value) }));
    metadata.set('grpc-status-details-bin', Buffer.from(Status.encode({ code: state.answer.code, message: state.answer.message, details: packed }).finish()));
    return { code: state.answer.code, details: state.answer.message, metadata };
  };
  const server = new Server();
  for (const definition of [SubjectRightsServiceService, KeyServiceService, AuditServiceService, IdentityServiceService] as unknown as ServiceDefinition[]) {
    const handlers: Record<string, UntypedHandleCall> = {};
    for (const [name, method] of Object.entries(definition)) {
      handlers[name] = method.responseStream
        ? (call: { emit(event: 'error', e: unknown): void }) => {
            state.calls.push(method.path);
            call.emit('error', reply());
          }
        : ((_call: unknown, callback: (e: unknown) => void) => {
            state.calls.push(method.path);
            callback(reply());
          }) as UntypedHandleCall;
    }
    server.addService(definition, handlers);
  }
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    calls: state.calls,
    get answer() {
      return state.answer;
    },
    set answer(a: Answer) {
      state.answer = a;
    },
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** Runs consentctl in this process, capturing what it writes; the exit code is what the process would exit with. */
async function ctl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const [writeOut, writeErr] = [process.stdout.write, process.stderr.write];
  process.stdout.write = ((chunk: string | Uint8Array) => ((out += chunk.toString()), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((err += chunk.toString()), true)) as typeof process.stderr.write;
  try {
    const code = await runConsentctl(args);
    return { code, out, err };
  } finally {
    process.stdout.write = writeOut;
    process.stderr.write = writeErr;
  }
}

/** google.rpc.PreconditionFailure, encoded by hand as any server would send it. */
function preconditionFailure(violations: Array<{ type: string; subject: string; description: string }>): Uint8Array {
  const w = new BinaryWriter();
  for (const v of violations) w.uint32(10).fork().uint32(10).string(v.type).uint32(18).string(v.subject).uint32(26).string(v.description).join();
  return w.finish();
}

describe('consentctl: errors, usage and exit codes', function () {
  this.timeout(120_000);
  let fake: Awaited<ReturnType<typeof fakeService>>;
  let dir: string;

  before(async function () {
    fake = await fakeService();
    dir = mkdtempSync(path.join(os.tmpdir(), 'consentctl-'));
    writeFileSync(path.join(dir, 'not-json.json'), 'hello');
    writeFileSync(path.join(dir, 'keys.json'), JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] }));
    writeFileSync(path.join(dir, 'not-a-jws.txt'), 'hello');
    writeFileSync(path.join(dir, 'a-file'), '');
  });
  after(async function () {
    await fake?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('decodes ErrorInfo (reason and metadata), BadRequest, PreconditionFailure and RetryInfo into readable lines, exit 1', async function () {
    fake.answer = {
      code: status.FAILED_PRECONDITION,
      message: 'the request cannot be carried out',
      details: [
        { type: 'google.rpc.ErrorInfo', value: ErrorInfo.encode({ reason: 'LEGAL_HOLD', domain: 'consent-ledger', metadata: { hold: 'tenants/acme/legalHolds/abc', ground: 'E_LEGAL_CLAIMS' } }).finish() },
        { type: 'google.rpc.BadRequest', value: BadRequest.encode({ fieldViolations: [{ field: 'receive_time', description: 'must not be in the future', reason: 'IN_THE_FUTURE' }] }).finish() },
        { type: 'google.rpc.PreconditionFailure', value: preconditionFailure([{ type: 'LEGAL_HOLD', subject: 'tenants/acme/legalHolds/abc', description: 'release the hold first' }]) },
        { type: 'google.rpc.RetryInfo', value: RetryInfo.encode({ retryDelay: { seconds: 2, nanos: 500_000_000 } }).finish() },
        { type: 'google.rpc.Help', value: new Uint8Array() },
      ],
    };
    const r = await ctl('--address', fake.address, 'requests', 'get', REQUEST);
    expect(r.code).to.equal(1);
    expect(r.err.split('\n')).to.deep.equal([
      'consentctl: refused: FAILED_PRECONDITION: the request cannot be carried out',
      '  reason: LEGAL_HOLD (consent-ledger)',
      '    ground: E_LEGAL_CLAIMS',
      '    hold: tenants/acme/legalHolds/abc',
      '  field receive_time: must not be in the future [IN_THE_FUTURE]',
      '  precondition failed: LEGAL_HOLD tenants/acme/legalHolds/abc: release the hold first',
      '  retry after: 2.5 s',
      '  detail: google.rpc.Help (not decoded)',
      '',
    ]);
  });

  it('reports the same way for every kind of command: unary, paged, streamed, and the audit verifiers', async function () {
    fake.answer = { code: status.PERMISSION_DENIED, message: 'the role sender may not call this', details: [{ type: 'google.rpc.ErrorInfo', value: ErrorInfo.encode({ reason: 'ROLE_NOT_ALLOWED', domain: 'consent-ledger', metadata: {} }).finish() }] };
    const commands = [
      ['requests', 'create', '--tenant', 'acme', '--kind', 'access', '--email', 'a@example.com'],
      ['requests', 'list', '--tenant', 'acme'],
      ['requests', 'overdue', '--tenant', 'acme'],
      ['requests', 'verify', REQUEST, '--method', 'ID_DOCUMENT', '--by', 'dpo-1'],
      ['requests', 'extend', REQUEST, '--months', '1', '--reason', 'complex case'],
      ['requests', 'notify', REQUEST, '--topic', 'extension', '--method', 'LETTER', '--by', 'dpo-1'],
      ['requests', 'reject', REQUEST, '--reason', 'manifestly unfounded'],
      ['export', REQUEST, '--out', path.join(dir, 'export')],
      ['erase', REQUEST, '--yes'],
      ['holds', 'place', '--tenant', 'acme', '--email', 'a@example.com', '--ground', 'e'],
      ['holds', 'release', 'tenants/acme/legalHolds/0123456789abcdef0123456789abcdef', '--note', 'settled'],
      ['holds', 'list', '--tenant', 'acme'],
      ['link', '--tenant', 'acme', '--first', 'email:a@example.com', '--second', 'customer:C-1', '--method', 'ID_DOCUMENT', '--by', 'dpo-1'],
      ['unlink', 'tenants/acme/identityLinks/0123456789abcdef0123456789abcdef', '--reason', 'not the same person'],
      ['links', '--tenant', 'acme'],
      ['audit', 'keys', '--tenant', 'acme', '--out', path.join(dir, 'k.json')],
      ['audit', 'checkpoint', '--tenant', 'acme'],
      ['audit', 'checkpoints', '--tenant', 'acme'],
      ['audit', 'history', '--tenant', 'acme'],
      ['audit', 'explain', '--tenant', 'acme', '--email', 'a@example.com', '--purpose', 'newsletter', '--channel', 'email'],
      ['audit', 'export', '--tenant', 'acme', '--out', path.join(dir, 'log.json')],
      ['audit', 'verify', '--tenant', 'acme', '--records'],
    ];
    for (const command of commands) {
      const r = await ctl('--address', fake.address, ...command);
      expect(r.code, `${command.join(' ')}: ${r.err}`).to.equal(1);
      expect(r.err, command.join(' ')).to.equal('consentctl: refused: PERMISSION_DENIED: the role sender may not call this\n  reason: ROLE_NOT_ALLOWED (consent-ledger)\n');
    }
  });

  it('exit 3 when the service is unavailable (UNAVAILABLE with details, DEADLINE_EXCEEDED, nothing listening), with the details still decoded', async function () {
    fake.answer = { code: status.UNAVAILABLE, message: 'the database is unavailable', details: [{ type: 'google.rpc.ErrorInfo', value: ErrorInfo.encode({ reason: 'DATABASE_UNAVAILABLE', domain: 'consent-ledger', metadata: {} }).finish() }] };
    const unavailable = await ctl('--address', fake.address, 'requests', 'list', '--tenant', 'acme');
    expect(unavailable.code).to.equal(3);
    expect(unavailable.err).to.equal('consentctl: the service is unavailable (UNAVAILABLE): the database is unavailable\n  reason: DATABASE_UNAVAILABLE (consent-ledger)\n');
    fake.answer = { code: status.DEADLINE_EXCEEDED, message: 'the call ran past its deadline' };
    const late = await ctl('--address', fake.address, 'audit', 'verify', '--tenant', 'acme');
    expect(late.code).to.equal(3);
    expect(late.err).to.include('did not answer in time (DEADLINE_EXCEEDED)');
    const nobody = await ctl('--address', '127.0.0.1:1', 'holds', 'list', '--tenant', 'acme');
    expect(nobody.code).to.equal(3);
    expect(nobody.err).to.match(/^consentctl: cannot reach the service at 127\.0\.0\.1:1 \(UNAVAILABLE\): .*ECONNREFUSED.*is it running, and is --address right\?\n$/);
  });

  it('export: a server message that holds no part ends the export as a verification failure, nothing written (found by a probe: an uncaught TypeError)', async function () {
    const server = new Server();
    server.addService({ exportSubjectData: SubjectRightsServiceService.exportSubjectData } as unknown as ServiceDefinition, {
      exportSubjectData: (call: { write(m: object): void; end(): void }) => {
        call.write({});
        call.end();
      },
    } as unknown as Record<string, UntypedHandleCall>);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    const out = mkdtempSync(path.join(os.tmpdir(), 'ctl-export-'));
    try {
      const r = await ctl('--address', `127.0.0.1:${port}`, 'export', 'tenants/acme/requests/0123456789abcdef0123456789abcdef', '--out', path.join(out, 'files'));
      expect(r.code, r.err).to.equal(EXIT.FAILED);
      expect(r.err).to.include('VERIFICATION FAILED').and.include('holds no part').and.not.include('TypeError');
      expect(existsSync(path.join(out, 'files')), 'nothing written').to.equal(false);
    } finally {
      server.forceShutdown();
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('checks every argument before sending anything: exit 2, the reason and the command\'s usage, no call', async function () {
    const file = (name: string) => path.join(dir, name);
    const cases: Array<[string[], string]> = [
      [['requests', 'create', '--tenant', 'acme', '--kind', 'nonsense', '--email', 'a@example.com'], '--kind must be one of access, portability, erasure'],
      [['requests', 'create', '--tenant', 'acme', '--kind', 'access', '--phone', '12'], '--phone is not a valid phone number'],
      [['requests', 'create', '--tenant', 'acme', '--kind', 'access', '--email', 'not-an-address'], '--email is not an e-mail address'],
      [['requests', 'create', '--tenant', 'acme', '--kind', 'access', '--email', 'a@example.com', '--phone', '+4915112345678'], 'give exactly one of --phone, --email, --customer-id'],
      [['requests', 'create', '--tenant', 'acme', '--kind', 'access', '--email', 'a@example.com', '--received-at', 'yesterday'], '--received-at must be an ISO 8601 time'],
      [['requests', 'create', '--tenant', 'acme', '--kind', 'access', '--email', 'a@example.com', '--request-id', 'has space'], '--request-id must be 1-128 characters'],
      [['requests', 'create', '--tenant', 'ACME', '--kind', 'access', '--email', 'a@example.com'], '--tenant must be a tenant id'],
      [['requests', 'create', '--tenant', 'acme', '--kind', 'access'], 'give exactly one of --phone, --email, --customer-id'],
      [['requests', 'get', 'acme/123'], 'the request must be a name such as tenants/acme/requests/'],
      [['requests', 'list', '--tenant', 'acme', '--state', 'lost'], '--state must be one of received, verified, in-progress, completed, rejected'],
      [['requests', 'list', '--tenant', 'acme', '--due-before', 'tomorrow'], '--due-before must be an ISO 8601 time'],
      [['requests', 'overdue', '--tenant', 'acme', '--days', '-1'], '--days must be a whole number'],
      [['requests', 'verify', REQUEST, '--method', 'ID DOCUMENT', '--by', 'dpo-1'], '--method must be 1-64 characters'],
      [['requests', 'verify', REQUEST, '--method', 'ID_DOCUMENT', '--by', ' '], '--by must not be empty'],
      [['requests', 'extend', REQUEST, '--months', '3', '--reason', 'x'], '--months must be 1 or 2'],
      [['requests', 'notify', REQUEST, '--topic', 'delay', '--method', 'LETTER', '--by', 'dpo-1'], '--topic must be extension or rejection'],
      [['requests', 'notify', REQUEST, '--topic', '__proto__', '--method', 'LETTER', '--by', 'dpo-1'], '--topic must be extension or rejection'],
      [['requests', 'notify', REQUEST, '--topic', 'extension', '--method', 'by phone', '--by', 'dpo-1'], '--method must be 1-64 characters'],
      [['requests', 'notify', REQUEST, '--topic', 'extension', '--method', 'LETTER', '--by', ' '], '--by must not be empty'],
      [['requests', 'reject', REQUEST, '--reason', ''], '--reason must not be empty'],
      [['export', REQUEST, '--out', file('a-file')], '--out: '],
      [['export', 'tenants/acme/legalHolds/0123456789abcdef0123456789abcdef', '--out', file('x')], 'the request must be a name'],
      [['erase', 'nonsense', '--yes'], 'the request must be a name'],
      [['holds', 'place', '--tenant', 'acme', '--email', 'a@example.com', '--ground', 'z'], '--ground must be one of a, b, c, d, e'],
      [['holds', 'release', REQUEST, '--note', 'x'], 'the legal hold must be a name such as tenants/acme/legalHolds/'],
      [['holds', 'list', '--tenant', 'ab'], '--tenant must be a tenant id'],
      [['restrictions', 'place', REQUEST, '--ground', 'e'], '--ground must be one of a, b, c, d'],
      [['restrictions', 'place', REQUEST, '--ground', 'a', '--note', 'x'.repeat(1001)], '--note must be at most 1000 characters'],
      [['restrictions', 'place', 'tenants/acme/legalHolds/0123456789abcdef0123456789abcdef', '--ground', 'a'], 'the request must be a name'],
      [['restrictions', 'notify', REQUEST, '--method', 'LETTER', '--by', 'dpo-1'], 'the restriction must be a name such as tenants/acme/restrictions/'],
      [['restrictions', 'notify', RESTRICTION, '--method', 'BY LETTER', '--by', 'dpo-1'], '--method must be 1-64 characters'],
      [['restrictions', 'notify', RESTRICTION, '--method', 'LETTER', '--by', ' '], '--by must not be empty'],
      [['restrictions', 'lift', RESTRICTION, '--reason', ''], '--reason must not be empty'],
      [['restrictions', 'list', '--tenant', 'ab'], '--tenant must be a tenant id'],
      [['link', '--tenant', 'acme', '--first', 'a@example.com', '--second', 'customer:C-1', '--method', 'ID_DOCUMENT', '--by', 'dpo-1'], '--first must be phone:<number>, email:<address> or customer:<id>'],
      [['link', '--tenant', 'acme', '--first', 'email:a@example.com', '--second', 'phone:12', '--method', 'ID_DOCUMENT', '--by', 'dpo-1'], '--second is not a valid phone number'],
      [['link', '--tenant', 'acme', '--first', 'email:not-an-address', '--second', 'customer:C-1', '--method', 'ID_DOCUMENT', '--by', 'dpo-1'], '--first is not an e-mail address'],
      [['link', '--tenant', 'acme', '--first', 'email:a@example.com', '--second', 'customer:C-1'], 'give --method and --by, or --request'],
      [['link', '--tenant', 'acme', '--first', 'email:a@example.com', '--second', 'customer:C-1', '--method', 'ID DOCUMENT', '--by', 'dpo-1'], '--method must be 1-64 characters'],
      [['link', '--tenant', 'acme', '--first', 'email:a@example.com', '--second', 'customer:C-1', '--request', 'requests/1'], '--request must be a name such as tenants/acme/requests/'],
      [['unlink', REQUEST, '--reason', 'x'], 'the link must be a name such as tenants/acme/identityLinks/'],
      [['unlink', 'tenants/acme/identityLinks/0123456789abcdef0123456789abcdef', '--reason', ' '], '--reason must not be empty'],
      [['links', '--tenant', 'acme', '--email', 'nope'], '--email is not an e-mail address'],
      [['audit', 'keys', '--tenant', 'acme', '--out', file('missing-folder/keys.json')], '--out: cannot write into'],
      [['audit', 'checkpoint', '--tenant', 'acme', '--jwks', file('missing.json')], '--jwks: cannot read'],
      [['audit', 'checkpoints', '--tenant', 'acme', '--limit', '0'], '--limit must be a positive whole number'],
      [['audit', 'history', '--tenant', 'acme', '--since', 'yesterday'], '--since must be an ISO 8601 time'],
      [['audit', 'history', '--tenant', 'acme', '--subject', 'tenants/acme/subjects/x'], '--subject must be a subject name'],
      [['audit', 'history', '--tenant', 'acme', '--type', 'opt out'], '--type must be entry types'],
      [['audit', 'history', '--tenant', 'acme', '--purpose', 'News!'], '--purpose must be a purpose id'],
      [['audit', 'explain', '--tenant', 'acme', '--email', 'a@example.com', '--purpose', 'newsletter', '--channel', 'fax'], '--channel must be one of whatsapp, sms, email, push, voice'],
      [['audit', 'explain', '--tenant', 'acme', '--email', 'a@example.com', '--channel', 'sms'], 'give --purpose or --category'],
      [['audit', 'export', '--tenant', 'acme', '--out', file('log.json'), '--jwks', file('not-json.json')], 'is not JSON'],
      [['audit', 'verify-export', file('missing.json'), '--jwks', file('keys.json')], 'cannot read'],
      [['audit', 'verify', '--tenant', 'acme', '--since', file('not-a-jws.txt')], '--since: '],
      [['--address', 'no-port', 'requests', 'list', '--tenant', 'acme'], '--address must be host:port'],
      [['--cert', file('a-file'), 'requests', 'list', '--tenant', 'acme'], 'give --cert and --key together'],
      [['--ca', file('missing.pem'), 'requests', 'list', '--tenant', 'acme'], '--ca: cannot read'],
      [['--token', 'not a token', 'requests', 'list', '--tenant', 'acme'], '--token must be a JWT'],
      [['--json', '--name-only', 'requests', 'list', '--tenant', 'acme'], 'give --json or --name-only, not both'],
      [['requests', 'list'], "required option '--tenant <id>' not specified"],
      [['requests', 'frobnicate'], "unknown command 'frobnicate'"],
      [['requests'], 'Usage: consentctl requests'],
    ];
    fake.answer = { code: status.INTERNAL, message: 'a call was made' };
    for (const [args, message] of cases) {
      const before = fake.calls.length;
      const withAddress = args[0].startsWith('--address') ? args : ['--address', fake.address, ...args];
      const r = await ctl(...withAddress);
      const label = args.join(' ');
      expect(r.code, `${label}: ${r.err}`).to.equal(2);
      expect(r.err, label).to.include(message);
      expect(r.err, `${label}: the command's usage`).to.match(/Usage: consentctl \S+/);
      expect(fake.calls.length, `${label}: nothing sent`).to.equal(before);
      expect(r.err, `${label}: no personal data repeated`).to.not.include('a@example.com');
    }
  });

  it('--help documents the exit codes and exits 0', async function () {
    const r = await ctl('--help');
    expect(r.code).to.equal(0);
    expect(r.out).to.include('Exit codes (the same for every command):').and.match(/ 0 +done/).and.match(/ 1 +the service refused/).and.match(/ 2 +usage error/).and.match(/ 3 +the service is unavailable/);
  });

  describe('as built (node dist/src/cli/consentctl.js)', function () {
    let checkout: Checkout;
    before(function () {
      this.timeout(180_000);
      checkout = builtCheckout();
    });
    after(() => checkout?.remove());

    /** Runs the built CLI with its stdout closed by the reader before anything is written (`| head` that has seen enough). */
    const withClosedStdout = (...args: string[]) =>
      new Promise<{ code: number | null; signal: string | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, ['dist/src/cli/consentctl.js', ...args], { cwd: checkout.dir, stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout.destroy();
        let err = '';
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        child.on('close', (code, signal) => resolve({ code, signal, err }));
      });

    it('ends quietly when the reader of its output goes away (consentctl --help | head)', async function () {
      for (const args of [['--help'], ['audit', '--help'], ['requests', 'create', '--help']]) {
        const r = await withClosedStdout(...args);
        expect(r.err, `${args.join(' ')}: nothing on stderr`).to.equal('');
        expect(r.code, args.join(' ')).to.equal(0);
      }
    });
  });
});
