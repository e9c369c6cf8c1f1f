import { readFileSync } from 'node:fs';
import path from 'node:path';
import { create, DescMessage, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { expect } from 'chai';
import { requestChecks } from '../../src/transport/request-checks';
import { protoRegistry } from '../fuzz/support/catalog';

const SET = readFileSync(path.join(__dirname, '..', '..', 'src', 'gen', 'descriptor-set.binpb'));
const checks = requestChecks(SET);

function message(typeName: string): DescMessage {
  const desc = protoRegistry().getMessage(typeName);
  if (!desc) throw new Error(`no message ${typeName}`);
  return desc;
}

/** The violations the server finds in a request built with @bufbuild/protobuf (any values). */
function check(path: string, typeName: string, init: Record<string, unknown>): Array<{ field: string; reason: string }> {
  const desc = message(typeName);
  const bytes = toBinary(desc, create(desc, init as never));
  return checks.get(path)!(bytes).map(({ field, reason }) => ({ field, reason }));
}

const ts = (seconds: bigint, nanos = 0) => ({ seconds, nanos });

describe('request checks (enum values and times the schema allows)', function () {
  it('has a check for every method of every consent.v1 service', function () {
    for (const p of ['/consent.v1.ConsentService/RecordConsent', '/consent.v1.AuditService/ListAuditEntries', '/consent.v1.TenantService/UpdateTenantSettings']) {
      expect(checks.has(p), p).to.equal(true);
    }
  });

  it('a well-formed request passes', function () {
    expect(
      check('/consent.v1.ConsentService/RecordConsent', 'consent.v1.RecordConsentRequest', {
        parent: 'tenants/a',
        channel: 1,
        kind: 1,
        method: 1,
        lawfulBasis: 1,
        eventTime: ts(1_770_000_000n, 5),
      }),
    ).to.deep.equal([]);
  });

  it('unknown enum numbers are named, however deep', function () {
    expect(check('/consent.v1.ConsentService/RecordConsent', 'consent.v1.RecordConsentRequest', { lawfulBasis: 99, channel: -1 })).to.deep.equal([
      { field: 'channel', reason: 'UNKNOWN_ENUM_VALUE' },
      { field: 'lawful_basis', reason: 'UNKNOWN_ENUM_VALUE' },
    ]);
    expect(check('/consent.v1.ConsentService/CheckConsentBatch', 'consent.v1.CheckConsentBatchRequest', { queries: [{ channel: 1 }, { channel: 1, category: 99 }] })).to.deep.equal([
      { field: 'queries[1].category', reason: 'UNKNOWN_ENUM_VALUE' },
    ]);
  });

  it('packed and unpacked repeated enums are checked item by item', function () {
    // consent.v1 has no repeated enum in a request yet: a small schema of its own has one.
    const set = create(FileDescriptorSetSchema, {
      file: [
        {
          name: 't.proto',
          package: 't',
          syntax: 'proto3',
          enumType: [{ name: 'E', value: [{ name: 'E_UNSPECIFIED', number: 0 }, { name: 'E_A', number: 1 }, { name: 'E_B', number: 2 }] }],
          messageType: [{ name: 'Req', field: [{ name: 'kinds', jsonName: 'kinds', number: 3, label: FieldDescriptorProto_Label.REPEATED, type: FieldDescriptorProto_Type.ENUM, typeName: '.t.E' }] }],
          service: [{ name: 'S', method: [{ name: 'M', inputType: '.t.Req', outputType: '.t.Req' }] }],
        },
      ],
    });
    const check = requestChecks(toBinary(FileDescriptorSetSchema, set)).get('/t.S/M')!;
    const packed = new BinaryWriter();
    packed.tag(3, WireType.LengthDelimited).fork();
    for (const v of [1, 77, 2, 78]) packed.int32(v);
    packed.join();
    expect(check(packed.finish()).map((v) => v.field)).to.deep.equal(['kinds[1]', 'kinds[3]']);
    // The same field unpacked (one tag each), as an older encoder may send it.
    const unpacked = new BinaryWriter();
    for (const v of [1, 77]) unpacked.tag(3, WireType.Varint).int32(v);
    expect(check(unpacked.finish()).map((v) => v.field)).to.deep.equal(['kinds[1]']);
  });

  it('timestamps outside 0001-9999 or with nanos outside [0, 1e9) are named', function () {
    const path = '/consent.v1.ConsentService/RecordConsent';
    const type = 'consent.v1.RecordConsentRequest';
    expect(check(path, type, { eventTime: ts(1_770_000_000n, -5) })).to.deep.equal([{ field: 'event_time', reason: 'INVALID_TIMESTAMP' }]);
    expect(check(path, type, { eventTime: ts(1_770_000_000n, 1_000_000_000) })).to.deep.equal([{ field: 'event_time', reason: 'INVALID_TIMESTAMP' }]);
    expect(check(path, type, { expireTime: ts(2_000_000_000n * 31_557_600n) })).to.deep.equal([{ field: 'expire_time', reason: 'INVALID_TIMESTAMP' }]);
    expect(check(path, type, { eventTime: ts(-62_135_596_801n) })).to.deep.equal([{ field: 'event_time', reason: 'INVALID_TIMESTAMP' }]);
    expect(check(path, type, { eventTime: ts(253_402_300_799n, 999_999_999) })).to.deep.equal([]);
  });

  it('durations, also as map values, are checked and named by their key', function () {
    const desc = message('consent.v1.UpdateTenantSettingsRequest');
    const settings = { name: 'tenants/a/settings', serviceWindow: { seconds: 86_400n, nanos: -1 }, purposeConsentValidity: { newsletter: { seconds: 400_000_000_000n, nanos: 0 }, ok: { seconds: 60n, nanos: 0 } } };
    const bytes = toBinary(desc, create(desc, { settings } as never));
    const found = checks.get('/consent.v1.TenantService/UpdateTenantSettings')!(bytes).map((v) => `${v.field} ${v.reason}`);
    expect(found).to.include('settings.service_window INVALID_DURATION');
    expect(found).to.include('settings.purpose_consent_validity["newsletter"] INVALID_DURATION');
    expect(found).to.have.length(2);
  });

  it('64-bit integers beyond what a JS number holds are named (the decoder would throw without a field)', function () {
    const path = '/consent.v1.AuditService/GetInclusionProof';
    const type = 'consent.v1.GetInclusionProofRequest';
    expect(check(path, type, { parent: 'tenants/a', index: 2n ** 53n + 1n, treeSize: 5n })).to.deep.equal([{ field: 'index', reason: 'OUT_OF_RANGE' }]);
    expect(check(path, type, { parent: 'tenants/a', index: -(2n ** 63n), treeSize: 2n ** 63n - 1n })).to.deep.equal([
      { field: 'index', reason: 'OUT_OF_RANGE' },
      { field: 'tree_size', reason: 'OUT_OF_RANGE' },
    ]);
    expect(check(path, type, { parent: 'tenants/a', index: 2n ** 53n - 1n, treeSize: 5n })).to.deep.equal([]);
  });

  it('strings that are not valid UTF-8 are named, in fields, lists and map keys and values', function () {
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).bytes(Buffer.from('tenants/a'));
    w.tag(8, WireType.LengthDelimited).bytes(Buffer.from([0x6e, 0xc3, 0x28])); // notice: invalid 2-byte sequence
    expect(checks.get('/consent.v1.ConsentService/RecordConsent')!(w.finish())).to.deep.equal([{ field: 'notice', reason: 'INVALID_UTF8', description: 'is not valid UTF-8 text' }]);
    const keywords = new BinaryWriter();
    keywords.tag(3, WireType.LengthDelimited).bytes(Buffer.from('STOP'));
    keywords.tag(3, WireType.LengthDelimited).bytes(Buffer.from([0xff]));
    const settings = new BinaryWriter();
    settings.tag(1, WireType.LengthDelimited).bytes(keywords.finish());
    expect(checks.get('/consent.v1.TenantService/UpdateTenantSettings')!(settings.finish()).map((v) => v.field)).to.deep.equal(['settings.opt_out_keywords[1]']);
    expect(check('/consent.v1.ConsentService/RecordConsent', 'consent.v1.RecordConsentRequest', { parent: 'tenants/ä/😀', notice: 'ok' })).to.deep.equal([]);
  });

  it('a field sent with the wrong wire type is skipped, as the generated decoder does', function () {
    const w = new BinaryWriter();
    w.tag(4, 5).fixed32(99); // RecordConsentRequest.channel as fixed32
    expect(checks.get('/consent.v1.ConsentService/RecordConsent')!(w.finish())).to.deep.equal([]);
  });
});
