import { readFileSync } from 'node:fs';
import path from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { expect } from 'chai';
import { requestItemLimits } from '../../src/transport/request-item-limits';
import { protoRegistry } from '../fuzz/support/catalog';

const SET = readFileSync(path.join(__dirname, '..', '..', 'src', 'gen', 'descriptor-set.binpb'));
const BATCH = '/consent.v1.ConsentService/CheckConsentBatch';
const limits = requestItemLimits(SET, {
  defaultLimit: 100,
  byMethod: { [BATCH]: { limit: 10, field: 'queries', reason: 'BATCH_SIZE', description: 'must hold 1 to 10 queries' } },
});

function bytesOf(typeName: string, init: Record<string, unknown>): Uint8Array {
  const desc = protoRegistry().getMessage(typeName)!;
  return toBinary(desc, create(desc, init as never));
}

/** `count` copies of `item` (field 2, length-delimited) after a parent: a list of empty messages. */
function emptyItems(count: number): Buffer {
  const parent = Buffer.from([0x0a, 0x0c, ...Buffer.from('tenants/acme')]);
  return Buffer.concat([parent, Buffer.alloc(count * 2).map((_, i) => (i % 2 === 0 ? 0x12 : 0x00))]);
}

describe('list items of a request, counted on the wire before decoding', function () {
  it('a method of its own limit: at the limit passes, one more is refused with its own field and reason', function () {
    const check = limits.get(BATCH)!;
    expect(check(emptyItems(10))).to.equal(null);
    expect(check(emptyItems(11))).to.deep.include({ field: 'queries', reason: 'BATCH_SIZE' });
    // Two million empty items (the probe's 4 MiB request) are refused without an object made of each.
    const before = process.memoryUsage().heapUsed;
    expect(check(emptyItems(2_000_000))).to.deep.include({ field: 'queries', reason: 'BATCH_SIZE' });
    expect(process.memoryUsage().heapUsed - before, 'heap bytes the count allocated').to.be.below(50 * 1024 * 1024);
  });

  it('nested lists and map entries count, and the refusal names the field where the budget ran out', function () {
    const check = limits.get('/consent.v1.TenantService/UpdateTenantSettings')!;
    const keywords = (n: number) => Array.from({ length: n }, (_, i) => `KW${i}`);
    expect(check(bytesOf('consent.v1.UpdateTenantSettingsRequest', { settings: { optOutKeywords: keywords(60), optInKeywords: keywords(40) } }))).to.equal(null);
    expect(check(bytesOf('consent.v1.UpdateTenantSettingsRequest', { settings: { optOutKeywords: keywords(60), optInKeywords: keywords(41) } }))).to.deep.include({
      field: 'settings.opt_in_keywords',
      reason: 'TOO_MANY',
    });
    const validity = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`p${i}`, 12]));
    expect(check(bytesOf('consent.v1.UpdateTenantSettingsRequest', { settings: { purposeConsentValidityMonths: validity } }))).to.deep.include({
      field: 'settings.purpose_consent_validity_months',
      reason: 'TOO_MANY',
    });
  });

  it('a method without lists has no count; unreadable bytes are left to the decoder', function () {
    expect(limits.get('/consent.v1.TenantService/GetTenant')).to.equal(undefined);
    expect(limits.get(BATCH)!(Buffer.from([0x12, 0xff, 0xff]))).to.equal(null);
  });
});
