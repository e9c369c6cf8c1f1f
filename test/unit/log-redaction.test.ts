import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { createLogger, Logger, redactPersonalData, redactString } from '../../src/logging/logger';

// Planted personal data. Each value is distinctive, so its absence from the output means something.
const EMAIL = 'jane.doe+consent@example.com';
const EMAIL_2 = 'Jürgen.Müller@beispiel.de';
const PHONE_E164 = '+4915187654321';
const PHONE_SPACED = '+49 151 8765 4321';
const PHONE_NATIONAL = '0151 87654321';
const PHONE_AREA = '(030) 7654321';
const IPV4 = '203.0.113.42';
const IPV6 = '2001:db8:85a3::8a2e:370:7334';
const IPV6_MAPPED = '::ffff:198.51.100.7';
const PLANTED = [EMAIL, EMAIL_2, PHONE_E164, PHONE_SPACED, PHONE_NATIONAL, PHONE_AREA, IPV4, IPV6, IPV6_MAPPED];

// Values that look a bit like personal data but are not, and must come through unchanged.
const ISO = '2026-03-01T12:00:00.000Z';
const UUID = '550e8400-e29b-41d4-a716-446655440000';
const UUID_DIGITS = '01234567-8901-4abc-9def-012345678901';
const HEX32 = '0123456789abcdef0123456789abcdef';
const SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const METHOD = '/consent.v1.ConsentService/RecordConsent';

/** A logger writing to a PassThrough, as test/support/test-server.ts wires it. */
function capture(): { logger: Logger; lines(count: number): Promise<Record<string, unknown>[]>; text(): string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const text = () => Buffer.concat(chunks).toString('utf8');
  return {
    logger: createLogger('debug', stream),
    text,
    /** Waits until `count` lines were written (winston hands them over asynchronously). */
    async lines(count) {
      for (let i = 0; i < 100 && text().split('\n').filter(Boolean).length < count; i++) {
        await new Promise((resolve) => setImmediate(resolve));
      }
      const lines = text().split('\n').filter(Boolean);
      expect(lines, 'log lines written').to.have.length(count);
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
  };
}

function expectNoPlantedData(text: string): void {
  for (const value of PLANTED) expect(text, `log output leaks ${value}`).not.to.contain(value);
  // The digits of the phone numbers, however they were written.
  expect(text.replace(/[^\d]/g, '')).not.to.contain('87654321');
  expect(text).not.to.match(/8765\D?4321/);
}

describe('log redaction', () => {
  it('redacts the message, keeps what is not personal', async () => {
    const { logger, lines, text } = capture();
    logger.info(`receipt for ${EMAIL} via ${PHONE_SPACED} from ${IPV4} took 12.34 ms at ${ISO} on 127.0.0.1:50051`);
    const [line] = await lines(1);
    expect(line.message).to.equal(
      `receipt for [redacted:email] via [redacted:phone] from [redacted:ip] took 12.34 ms at ${ISO} on 127.0.0.1:50051`,
    );
    expect(line.level).to.equal('info');
    expect(line.service).to.equal('consent-ledger');
    expect(line.timestamp).to.be.a('string').and.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expectNoPlantedData(text());
  });

  it('redacts nested metadata, arrays and keys; leaves ids, hashes, numbers and bind addresses alone', async () => {
    const { logger, lines, text } = capture();
    logger.info('rpc', {
      method: METHOD,
      code: 'OK',
      duration_ms: 12.34,
      request_id: UUID,
      ids: [UUID_DIGITS, HEX32, SHA256],
      at: ISO,
      bind: { address: '127.0.0.1', port: 50051, v6: '[::1]:50051', any: '0.0.0.0:50051' },
      counts: { subjects: 1234567, text: 'count 1234567 in 1500ms' },
      subject: {
        contact: { email: EMAIL, phones: [PHONE_E164, PHONE_SPACED, PHONE_NATIONAL, PHONE_AREA] },
        peers: [IPV4, `[${IPV6}]:443`, IPV6_MAPPED],
        note: [[`nested ${EMAIL_2}`]],
      },
      [EMAIL]: 'keyed by an address',
    });
    const [line] = await lines(1);
    expect(line).to.deep.include({
      message: 'rpc',
      method: METHOD,
      code: 'OK',
      duration_ms: 12.34,
      request_id: UUID,
      ids: [UUID_DIGITS, HEX32, SHA256],
      at: ISO,
      bind: { address: '127.0.0.1', port: 50051, v6: '[::1]:50051', any: '0.0.0.0:50051' },
      counts: { subjects: 1234567, text: 'count 1234567 in 1500ms' },
      subject: {
        contact: { email: '[redacted:email]', phones: Array(4).fill('[redacted:phone]') },
        peers: ['[redacted:ip]', '[[redacted:ip]]:443', '[redacted:ip]'],
        note: [['nested [redacted:email]']],
      },
      '[redacted:email]': 'keyed by an address',
    });
    expectNoPlantedData(text());
  });

  it('redacts error messages and stacks in every shape the service logs them', async () => {
    const { logger, lines, text } = capture();
    const err = new Error(`duplicate entry '${EMAIL}' for ${PHONE_E164}`);
    // As call-pipeline.ts logs an INTERNAL error: a plain object copied from the Error.
    logger.error('rpc failed', { method: METHOD, error: { name: err.name, message: err.message, stack: err.stack } });
    // The Error as metadata: winston appends its message to the line's and copies the stack.
    logger.error('rpc failed', err);
    // A lone Error.
    logger.error(err as unknown as string);
    const [first, second, third] = await lines(3);
    const error = first.error as Record<string, string>;
    expect(error.message).to.equal("duplicate entry '[redacted:email]' for [redacted:phone]");
    expect(error.stack.startsWith("Error: duplicate entry '[redacted:email]' for [redacted:phone]\n    at ")).to.equal(true);
    expect(error.stack).to.contain('log-redaction.test.ts:'); // frames (file:line:column) survive
    expect(second.message).to.equal("rpc failed duplicate entry '[redacted:email]' for [redacted:phone]");
    expect(second.stack).to.equal(error.stack);
    expect(third.level).to.equal('error');
    expectNoPlantedData(text());
  });

  it('redacts the message, stack and cause of an Error nested in metadata, keeping it an Error', () => {
    const cause = new Error(`connect ECONNREFUSED ${IPV4}:3306`);
    const err = new Error(`lookup of ${EMAIL} failed`, { cause });
    const info = { level: 'error', message: 'rpc failed', error: err };
    const out = redactPersonalData().transform(info, {}) as unknown as { error: Error & { cause: Error } };
    expect(out.error).to.be.instanceOf(Error);
    expect(out.error.message).to.equal('lookup of [redacted:email] failed');
    expect(out.error.stack).to.match(/^Error: lookup of \[redacted:email\] failed\n/);
    expect(out.error.cause.message).to.equal('connect ECONNREFUSED [redacted:ip]:3306');
    // Property flags are kept: message is still not enumerable, as on the original.
    expect(Object.keys(out.error)).to.deep.equal(Object.keys(err));
  });

  it("never changes the caller's objects", async () => {
    const { logger, lines } = capture();
    const err = new Error(`mail ${EMAIL} bounced`);
    const meta = { subject: { email: EMAIL, phones: [PHONE_E164] }, error: err, peer: IPV4 };
    const snapshot = structuredClone({ ...meta, error: undefined });
    logger.info('contact', meta);
    const lone = new Error(`lone ${EMAIL}`);
    logger.error(lone as unknown as string);
    const clean = new Error('nothing personal'); // nothing to redact: no copy for that reason
    logger.error(clean as unknown as string);
    await lines(3);
    expect({ ...meta, error: undefined }).to.deep.equal(snapshot);
    expect(meta.error).to.equal(err);
    expect(err.message).to.equal(`mail ${EMAIL} bounced`);
    expect(lone.message).to.equal(`lone ${EMAIL}`);
    expect(lone.stack).to.contain(EMAIL);
    // winston itself tags a lone Error with level and defaultMeta, but the formats after the
    // redaction (timestamp, json) write onto the redaction's copy, not onto the caller's Error.
    expect(lone).not.to.have.property('timestamp');
    expect(clean).not.to.have.property('timestamp');
  });

  it('survives a circular structure', async () => {
    const { logger, lines, text } = capture();
    const a: Record<string, unknown> = { email: EMAIL };
    a.self = a;
    logger.info('cycle', { a });
    const [line] = await lines(1);
    expect(line.a).to.deep.equal({ email: '[redacted:email]', self: '[Circular]' });
    expectNoPlantedData(text());
  });

  it("keeps our own bind addresses in the startup line (they identify no person)", async () => {
    const { logger, lines } = capture();
    for (const address of ['127.0.0.1', '::1', '0.0.0.0', '::']) {
      logger.info('consent ledger listening', { address, port: 50051 });
    }
    const written = await lines(4);
    expect(written.map((l) => l.address)).to.deep.equal(['127.0.0.1', '::1', '0.0.0.0', '::']);
    expect(written.map((l) => l.port)).to.deep.equal([50051, 50051, 50051, 50051]);
  });

  describe('redactString', () => {
    const personal: [string, string][] = [
      [EMAIL, '[redacted:email]'],
      [`<${EMAIL_2}>`, '<[redacted:email]>'],
      [PHONE_E164, '[redacted:phone]'],
      [`call ${PHONE_SPACED}.`, 'call [redacted:phone].'],
      ['+49 (0)151 87654321', '[redacted:phone]'],
      ['+1 (555) 123-4567', '[redacted:phone]'],
      ['0049 151 87654321', '[redacted:phone]'],
      [PHONE_NATIONAL, '[redacted:phone]'],
      ['0151/87654321', '[redacted:phone]'],
      [PHONE_AREA, '[redacted:phone]'],
      [`tel:${PHONE_E164}`, 'tel:[redacted:phone]'],
      [IPV4, '[redacted:ip]'],
      ['10.0.0.7:8080', '[redacted:ip]:8080'],
      [IPV6, '[redacted:ip]'],
      ['fe80::1%eth0', '[redacted:ip]%eth0'],
      ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', '[redacted:ip]'],
      [IPV6_MAPPED, '[redacted:ip]'],
      // Credentials (found by an adversarial probe: grpc-js quoted a refused header's bearer token).
      ['Failed to add metadata entry authorization: Bearer\teyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln contains illegal characters', 'Failed to add metadata entry authorization: Bearer [redacted:token] contains illegal characters'],
      ['token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_x end', 'token [redacted:token] end'],
      ['jwe eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVy.dGFn', 'jwe [redacted:token]'],
      ['authorization: basic dXNlcjpwYXNz', 'authorization: basic [redacted:token]'],
    ];
    for (const [input, expected] of personal) {
      it(`redacts ${JSON.stringify(input)}`, () => expect(redactString(input)).to.equal(expected));
    }

    const notPersonal = [
      ISO,
      'at 12:00:00',
      UUID,
      UUID_DIGITS,
      HEX32,
      '01234567890123456789012345678901', // a 32-digit id: longer than any phone number
      SHA256,
      `0${SHA256.slice(1)}`,
      METHOD,
      'took 12.34 ms',
      'duration 1500ms, 1234567 rows',
      'port 50051',
      '127.0.0.1:50051',
      '[::1]:50051',
      '0.0.0.0:50051',
      '[::]:50051',
      'req-0001234567',
      '01.03.2026',
      '0.1234567',
      'version 1.2.3.4.5',
      '00:1a:2b:3c:4d:5e',
      'Foo::bar',
      'winston@3.19',
      '0 1 2 3 4 5 6 7',
      '    at CallPipeline.fail (/work/main/src/transport/call-pipeline.ts:168:12)',
      'already [redacted:ip] and [redacted:phone]',
    ];
    for (const input of notPersonal) {
      it(`keeps ${JSON.stringify(input)}`, () => expect(redactString(input)).to.equal(input));
    }

    it('returns the same string when there is nothing to scan', () => {
      const s = 'OK /consent.v1.PurposeService/ListPurposes';
      expect(redactString(s)).to.equal(s);
    });

    it('stays linear on long hostile strings (no catastrophic backtracking)', () => {
      const hostile = [
        // 40 digits: the earlier nested (\d{2,})+ took ~2 s here (1.5x per digit), finite but failing.
        // Far longer runs would hang the event loop, where mocha's timeout cannot stop them.
        `0${'1'.repeat(40)}a`,
        `+${'1'.repeat(40)}a`,
        `0${' 11'.repeat(2000)}a`,
        `${'a:'.repeat(3000)}x`,
        `${'1.'.repeat(3000)}a`,
        `${'a.'.repeat(3000)}@b`,
        `${'a@b.'.repeat(1500)}1`,
        `${'(0)'.repeat(2000)}a`,
      ];
      const started = process.hrtime.bigint();
      for (const s of hostile) redactString(s);
      // A few milliseconds when linear.
      expect(Number(process.hrtime.bigint() - started) / 1e6).to.be.below(500);
    });
  });
});
