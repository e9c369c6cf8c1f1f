import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import winston from 'winston';
import { CallLine, createLogger, logCallLine } from '../../src/logging/logger';

/**
 * logCallLine writes the line winston would write for logger.info('rpc', line), without winston's
 * pipeline (call-pipeline.ts logs one per call): compared here byte for byte, the timestamp
 * aside, for lines with personal data planted where a caller could put it.
 */
function capture(logger?: (stream: PassThrough) => winston.Logger) {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { logger: logger ? logger(stream) : createLogger('info', stream), text: () => Buffer.concat(chunks).toString('utf8') };
}

async function settled(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

const TIMESTAMP = /"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"/;

const LINES: CallLine[] = [
  { method: 'CheckConsent', code: 'OK', reason: 'OK', duration_ms: 0.42, request_id: '550e8400-e29b-41d4-a716-446655440000', principal: 'dev-admin' },
  { method: 'RecordConsent', code: 'CANCELLED', reason: 'CALL_ENDED_BY_CLIENT', duration_ms: 1234.5, request_id: 'retry-7', principal: undefined },
  // A principal named by a bearer token's subject or a certificate: it may be an e-mail address or a phone number.
  { method: 'CheckConsent', code: 'OK', reason: 'OK', duration_ms: 0, request_id: 'a', principal: 'jane.doe+consent@example.com' },
  { method: 'CheckConsent', code: 'OK', reason: 'OK', duration_ms: 3, request_id: 'b', principal: 'sender +49 151 8765 4321 "quoted" \\ \u0001 ünï' },
  { method: 'CheckConsent', code: 'OK', reason: 'OK', duration_ms: Number.NaN, request_id: 'c', principal: '' },
  // A status code outside grpc-js's enum: winston leaves the missing field out.
  { method: 'CheckConsent', code: undefined as unknown as string, reason: 'X', duration_ms: 1, request_id: 'd', principal: 'p' },
];

describe('the per-call log line (logCallLine)', () => {
  it('writes what winston writes for the same entry, personal data redacted', async () => {
    const fast = capture();
    const slow = capture();
    for (const line of LINES) {
      logCallLine(fast.logger, line);
      slow.logger.info('rpc', line);
    }
    await settled();
    const fastLines = fast.text().split('\n');
    const slowLines = slow.text().split('\n');
    expect(fastLines).to.have.length(LINES.length + 1);
    for (let i = 0; i < LINES.length; i++) {
      expect(fastLines[i]).to.match(TIMESTAMP);
      expect(fastLines[i].replace(TIMESTAMP, '')).to.equal(slowLines[i].replace(TIMESTAMP, ''), `line ${i}`);
      expect(JSON.parse(fastLines[i])).to.include({ level: 'info', message: 'rpc', service: 'consent-ledger' });
    }
    expect(fast.text()).to.not.include('jane.doe').and.not.include('8765');
    expect(fast.text()).to.include('[redacted:email]').and.include('[redacted:phone]');
  });

  it('goes through winston when the logger is silent, was not made by createLogger, or got another transport', async () => {
    const silent = capture();
    silent.logger.silent = true;
    logCallLine(silent.logger, LINES[0]);

    const foreign = capture((stream) => winston.createLogger({ format: winston.format.printf((info) => `foreign ${String(info.message)}`), transports: [new winston.transports.Stream({ stream })] }));
    logCallLine(foreign.logger, LINES[0]);

    const added = capture();
    const extra = new PassThrough();
    const extraChunks: Buffer[] = [];
    extra.on('data', (c: Buffer) => extraChunks.push(c));
    added.logger.add(new winston.transports.Stream({ stream: extra }));
    logCallLine(added.logger, LINES[0]);
    // Its one transport replaced (configure): the new one gets the line, through winston.
    const replaced = capture();
    const other = new PassThrough();
    const otherChunks: Buffer[] = [];
    other.on('data', (c: Buffer) => otherChunks.push(c));
    replaced.logger.configure({ level: 'info', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: other })] });
    logCallLine(replaced.logger, LINES[0]);
    await settled();

    expect(replaced.text(), 'not the old stream').to.equal('');
    expect(Buffer.concat(otherChunks).toString('utf8')).to.include('"message":"rpc"');
    expect(silent.text()).to.equal('');
    expect(foreign.text()).to.equal('foreign rpc\n');
    expect(added.text()).to.include('"message":"rpc"');
    expect(Buffer.concat(extraChunks).toString('utf8')).to.include('"message":"rpc"');
  });
});
