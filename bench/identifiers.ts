/**
 * Micro-benchmark of phone number normalisation (issue 15 point 6): normaliseIdentifier with the
 * E.164 fast path (src/domain/phone-fast-path.ts) against the code before it (libphonenumber for
 * every number: phoneByLibrary, the path the fast path falls back to), in the same process and
 * run, for the input kinds senders send.
 *
 *   npx tsx bench/identifiers.ts [--ms 300] [--rounds 7]
 *
 * Each kind runs old and new in alternating rounds of about --ms milliseconds each; the table
 * shows the median ns per normalisation of the rounds (the machine is shared and noisy; the median
 * of alternating rounds keeps a burst of someone else's load from landing on one side only).
 */
import { normaliseIdentifier, phoneByLibrary, type RawIdentifier } from '../src/domain/identifiers';
import type { IdentifierRef } from '../src/domain/model';
import type { FieldViolation } from '../src/shared/errors';
import { machineInfo } from './report';

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}
const ROUND_MS = option('ms', 300);
const ROUNDS = option('rounds', 7);
const FIELD = 'subject_identifier';
type Phone = RawIdentifier & { phoneNumber: string };

/** The library path alone (identifiers.ts): what every number cost before the fast path. */
function before(raw: Phone): IdentifierRef | FieldViolation {
  return phoneByLibrary(raw, FIELD);
}

function after(raw: Phone): IdentifierRef | FieldViolation {
  return normaliseIdentifier(raw, FIELD);
}

/** Inputs of one kind: a few different numbers so no single string is the whole story. */
const KINDS: { kind: string; inputs: Phone[] }[] = [
  { kind: 'E.164, DE mobile', inputs: ['+4915112345678', '+4917612345678', '+4916098765432'].map((p) => ({ phoneNumber: p })) },
  { kind: 'E.164, DE fixed line', inputs: ['+49301234567', '+498912345678', '+4940123456'].map((p) => ({ phoneNumber: p })) },
  { kind: 'E.164, US/CA (+1, 25 regions)', inputs: ['+16502530000', '+14165550123', '+12125551234'].map((p) => ({ phoneNumber: p })) },
  { kind: 'E.164, GB/IM (+44)', inputs: ['+447911123456', '+442071234567', '+447624123456'].map((p) => ({ phoneNumber: p })) },
  { kind: 'international, spaced', inputs: ['+49 151 12345678', '+1 (650) 253-0000', '+44 7911 123456'].map((p) => ({ phoneNumber: p })) },
  {
    kind: 'national + default_region (slow path)',
    inputs: [
      { phoneNumber: '0151 12345678', defaultRegion: 'DE' },
      { phoneNumber: '(650) 253-0000', defaultRegion: 'US' },
      { phoneNumber: '07911 123456', defaultRegion: 'GB' },
    ],
  },
  { kind: 'invalid, "+" (slow path)', inputs: ['+49 30', '+1 555 555 5555', '+999 1234567'].map((p) => ({ phoneNumber: p })) },
  { kind: 'no "+", no region (slow path)', inputs: ['4915112345678', '015112345678', '16502530000'].map((p) => ({ phoneNumber: p })) },
];

let sink = 0;
/** ns per call of fn over the inputs, running for about ROUND_MS. */
function round(fn: (raw: Phone) => IdentifierRef | FieldViolation, inputs: Phone[]): number {
  let calls = 0;
  const started = process.hrtime.bigint();
  const until = started + BigInt(ROUND_MS) * 1_000_000n;
  let now = started;
  while (now < until) {
    for (let i = 0; i < 300; i++) {
      const result = fn(inputs[i % inputs.length]);
      sink += 'value' in result ? result.value.length : 1;
    }
    calls += 300;
    now = process.hrtime.bigint();
  }
  return Number(now - started) / calls;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function main(): void {
  for (const line of machineInfo()) console.log(line);
  console.log(`rounds: ${ROUNDS} x ${ROUND_MS} ms per side and kind, old and new alternating (and which goes first); median ns per normalisation\n`);
  const rows: string[][] = [];
  for (const { kind, inputs } of KINDS) {
    // The benchmark compares like with like only if both give the same answers.
    for (const raw of inputs) {
      if (JSON.stringify(before(raw)) !== JSON.stringify(after(raw))) throw new Error(`old and new disagree on an input of kind "${kind}"`);
    }
    round(before, inputs);
    round(after, inputs);
    const old: number[] = [];
    const now: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Which side goes first alternates too: the second inherits the first's garbage.
      if (r % 2 === 0) {
        old.push(round(before, inputs));
        now.push(round(after, inputs));
      } else {
        now.push(round(after, inputs));
        old.push(round(before, inputs));
      }
    }
    const o = median(old);
    const n = median(now);
    rows.push([kind, o.toFixed(0), n.toFixed(0), `${(o / n).toFixed(1)}x`]);
  }
  const header = ['input kind', 'old ns/op', 'new ns/op', 'old/new'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  console.log(line(header));
  console.log('|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
  for (const row of rows) console.log(line(row));
  if (sink === 0) console.log('');
}

main();
