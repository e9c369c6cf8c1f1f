import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { credentials } from '@grpc/grpc-js';
import { Channel } from '../../src/gen/consent/v1/common';
import { ListConsentEventsRequest, RecordInboundMessageRequest, Verdict } from '../../src/gen/consent/v1/consent';
import { ListAuditEntriesRequest } from '../../src/gen/consent/v1/audit';
import { JobState, KeyEpochState, KeyRotation, KeyServiceClient } from '../../src/gen/consent/v1/key';
import { forEachDatabase } from '../support/databases';
import { dropRestored, dumpDatabase } from '../support/dumps';
import { consentRequest, phone, query, seedTenant } from '../support/fixtures';
import { startServerProcess } from '../support/server-process';
import { call, expectGrpcError, startTestServer, TestServer } from '../support/test-server';

const evidence = { sourceIp: '198.51.100.7', userAgent: 'KeyTest/1.0', pageUrl: '', inboundMessageId: '', freeText: '' };
const person = (i: number) => phone(`+4915130${String(i).padStart(6, '0')}`);

forEachDatabase('KeyService', (db) => {
  let s: TestServer;
  let keys: KeyServiceClient;
  before(async function () {
    s = await startTestServer(db());
    keys = new KeyServiceClient(s.address, credentials.createInsecure());
  });
  after(async () => {
    keys?.close();
    await s?.stop();
  });

  async function waitForRotation(rotation: KeyRotation): Promise<KeyRotation> {
    for (let i = 0; i < 200; i++) {
      const { rotation: r } = await call(keys, keys.getKeyRotation, { name: rotation.name });
      if (r!.state !== JobState.JOB_STATE_RUNNING) return r!;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error('rotation did not finish');
  }

  it('rotates the tenant key while reads and writes go on; nothing becomes unreadable', async function () {
    this.timeout(60_000);
    const T = 'rot';
    await seedTenant(s, T);
    for (let i = 0; i < 25; i++) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(i), evidence, requestId: `rot-${i}` }));
    const before = await call(keys, keys.getTenantKeyInfo, { name: `tenants/${T}` });
    expect(before.epochs.map((e) => [e.epoch, e.state, e.subjectKeys])).to.deep.equal([[1, KeyEpochState.KEY_EPOCH_STATE_ACTIVE, 25]]);
    // 50 encryptions made (identifier and evidence of each person), counted ahead in leases of 256 per key: an upper bound.
    expect(before.epochs[0].encryptions).to.be.at.least(50).and.at.most(25 * 256);

    const { rotation } = await call(keys, keys.rotateTenantKey, { name: `tenants/${T}`, requestId: 'rotate-1' });
    expect(rotation!.fromEpoch).to.equal(1);
    expect(rotation!.toEpoch).to.equal(2);
    // Writes and reads during the rotation.
    const during = await Promise.all([
      call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(100), evidence, requestId: 'rot-during' })),
      call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(3) }) }),
      call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(4) })),
    ]);
    expect(during[1].decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
    expect(during[2].consentEvents[0].evidence!.userAgent).to.equal('KeyTest/1.0');

    const done = await waitForRotation(rotation!);
    expect(done.state).to.equal(JobState.JOB_STATE_SUCCEEDED);
    expect(done.subjectKeysDone).to.equal(done.subjectKeysTotal);
    const again = await call(keys, keys.rotateTenantKey, { name: `tenants/${T}`, requestId: 'rotate-1' });
    expect(again.rotation!.name, 'a retry returns the same rotation').to.equal(rotation!.name);

    const info = await call(keys, keys.getTenantKeyInfo, { name: `tenants/${T}` });
    expect(info.epochs.map((e) => [e.epoch, e.state, e.subjectKeys])).to.deep.equal([
      [1, KeyEpochState.KEY_EPOCH_STATE_DESTROYED, 0],
      [2, KeyEpochState.KEY_EPOCH_STATE_ACTIVE, 26],
    ]);
    expect(info.epochs[0].destroyTime).to.be.instanceOf(Date);
    // Everything still decrypts, blind indexes still find people, retries still match.
    for (const i of [0, 12, 24]) {
      const list = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(i) }));
      expect(list.consentEvents[0].evidence!.sourceIp).to.equal('198.51.100.0');
      const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(i) }) });
      expect(check.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
    }
    const replay = await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(0), evidence, requestId: 'rot-0' }));
    expect(replay.event!.evidence!.userAgent).to.equal('KeyTest/1.0');
  });

  it('concurrent rotations with one request_id open one epoch; with another request_id a second rotation is ROTATION_IN_PROGRESS', async function () {
    this.timeout(60_000);
    const T = 'rot-race';
    await seedTenant(s, T);
    for (let i = 0; i < 40; i++) await call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(300 + i), evidence, requestId: `race-${i}` }));
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        call(keys, keys.rotateTenantKey, { name: `tenants/${T}`, requestId: i < 6 ? 'one-rotation' : `another-${i}` }).then(
          (r) => ({ ok: true as const, rotation: r.rotation! }),
          (e: { code: number; details: string }) => ({ ok: false as const, code: e.code, details: e.details }),
        ),
      ),
    );
    const same = answers.slice(0, 6);
    for (const a of same) expect(a.ok, JSON.stringify(a)).to.equal(true);
    const names = new Set(same.map((a) => (a.ok ? `${a.rotation.name} ${a.rotation.fromEpoch}->${a.rotation.toEpoch}` : '')));
    // The two other request ids may have come first, or after this rotation ended: then they rotated on.
    const others = answers.slice(6);
    for (const a of others) if (!a.ok) expect([a.code, a.details]).to.deep.equal([status.FAILED_PRECONDITION, 'a key rotation of this tenant is still running']);
    expect(names.size, [...names].join(', ')).to.equal(1);
    for (const a of answers) if (a.ok) await waitForRotation(a.rotation);
    const rotations = answers.filter((a) => a.ok).map((a) => (a.ok ? a.rotation : null)!);
    const opened = new Set(rotations.map((r) => r.toEpoch));
    const info = await call(keys, keys.getTenantKeyInfo, { name: `tenants/${T}` });
    // Every epoch in the key store was opened by a rotation someone was told about; the last is active.
    expect(info.epochs.map((e) => e.epoch).sort()).to.deep.equal([1, ...[...opened].sort()]);
    expect(info.epochs.filter((e) => e.state === KeyEpochState.KEY_EPOCH_STATE_ACTIVE).map((e) => e.epoch)).to.deep.equal([Math.max(...opened)]);
    const check = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(305) }));
    expect(check.consentEvents[0].evidence!.userAgent, 'still readable').to.equal('KeyTest/1.0');
  });

  it('a rotation resumed after a crash reports the whole rotation, also when two processes resume it at once', async function () {
    this.timeout(120_000);
    const T = 'rot-resume';
    await seedTenant(s, T);
    // More subject keys than one re-wrap batch (200), so the killed process has recorded progress.
    for (let i = 0; i < 250; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(1000 + i + j), evidence, requestId: `resume-${i + j}` }))),
      );
    }
    // A second process rotates and is killed right after recording its first batch.
    const doomed = await startServerProcess(db(), { env: { CONSENT_FAILPOINT: 'key-rotation.progress', LOG_LEVEL: 'warn' } });
    const other = new KeyServiceClient(doomed.address, credentials.createInsecure());
    try {
      // The background job may kill the process before the answer leaves it.
      await call(other, other.rotateTenantKey, { name: `tenants/${T}`, requestId: 'resume-rotation' }).catch((e: { code: number }) => expect(e.code).to.equal(status.UNAVAILABLE));
      expect(['SIGKILL', 137], 'killed at the failpoint').to.include(await doomed.exited);
    } finally {
      other.close();
      await doomed.stop(1000);
    }
    const rows = (await s.app.dataSource.query('SELECT id, state, total, done FROM key_rotations WHERE tenant_id = ?', [T])) as { id: string; state: string; total: number; done: number }[];
    expect(rows.map((r) => [r.state, Number(r.total), Number(r.done)])).to.deep.equal([['RUNNING', 250, 200]]);

    // Two resume it at once: a restarted process, and a retry of the call here (which resumes a
    // rotation whose process died).
    const restarted = await startServerProcess(db(), { env: { LOG_LEVEL: 'warn' } });
    try {
      const retried = (await call(keys, keys.rotateTenantKey, { name: `tenants/${T}`, requestId: 'resume-rotation' })).rotation!;
      expect(retried.name).to.equal(`tenants/${T}/keyRotations/${rows[0].id}`);
      const done = await waitForRotation(retried);
      expect([done.state, done.subjectKeysTotal, done.subjectKeysDone]).to.deep.equal([JobState.JOB_STATE_SUCCEEDED, 250, 250]);
      // Both processes' jobs have ended once the epoch is destroyed and nothing is left to move.
      await s.app.services.keyAdministration.resume();
    } finally {
      await restarted.stop();
    }
    const info = await call(keys, keys.getTenantKeyInfo, { name: `tenants/${T}` });
    expect(info.epochs.map((e) => [e.epoch, e.state, e.subjectKeys])).to.deep.equal([
      [1, KeyEpochState.KEY_EPOCH_STATE_DESTROYED, 0],
      [2, KeyEpochState.KEY_EPOCH_STATE_ACTIVE, 250],
    ]);
    const { entries } = await call(s.audit, s.audit.listAuditEntries, ListAuditEntriesRequest.fromPartial({ parent: `tenants/${T}`, entryTypes: ['KEY_ROTATION_STARTED', 'KEY_EPOCH_DESTROYED'], pageSize: 500 }));
    expect(entries.map((e) => JSON.parse(e.entryJson).type), 'the rotation ended once').to.deep.equal(['KEY_ROTATION_STARTED', 'KEY_EPOCH_DESTROYED']);
    const check = await call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(1249) }) });
    expect(check.decision!.verdict).to.equal(Verdict.VERDICT_ALLOW);
  });

  it('counts AES-GCM encryptions per subject key and refuses past the configured limit', async function () {
    const limited = await startTestServer(db(), { limits: { ...s.app.config.limits, maxEncryptionsPerKey: 3 } });
    try {
      const T = 'limits';
      await seedTenant(limited, T);
      // The identifier is one encryption, each event's evidence one more.
      await call(limited.consent, limited.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(7), evidence }));
      await call(limited.consent, limited.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(7), evidence }));
      const err = await expectGrpcError(call(limited.consent, limited.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(7), evidence })), status.FAILED_PRECONDITION);
      expect(err.reason).to.equal('KEY_USAGE_LIMIT_REACHED');
      const events = await call(limited.consent, limited.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(7) }));
      expect(events.consentEvents, 'the refused write stored nothing').to.have.length(2);
      // Events without evidence need no encryption and still go through.
      await call(limited.consent, limited.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(7) }));
    } finally {
      await limited.stop();
    }
  });

  it('bad names and missing resources get precise statuses', async function () {
    await seedTenant(s, 'names');
    expect((await expectGrpcError(call(keys, keys.getTenantKeyInfo, { name: 'names' }), status.INVALID_ARGUMENT)).fields).to.deep.equal(['name']);
    expect((await expectGrpcError(call(keys, keys.getKeyRotation, { name: 'tenants/names/rotations/x' }), status.INVALID_ARGUMENT)).fields).to.deep.equal(['name']);
    // A well-formed name with an id the service never assigns names nothing.
    expect((await expectGrpcError(call(keys, keys.getKeyRotation, { name: 'tenants/names/keyRotations/x' }), status.NOT_FOUND)).reason).to.equal('KEY_ROTATION_NOT_FOUND');
    expect((await expectGrpcError(call(keys, keys.getKeyRotation, { name: `tenants/names/keyRotations/${'0'.repeat(32)}` }), status.NOT_FOUND)).reason).to.equal('KEY_ROTATION_NOT_FOUND');
    expect((await expectGrpcError(call(keys, keys.rotateTenantKey, { name: 'tenants/names', requestId: '' }), status.INVALID_ARGUMENT)).fields).to.deep.equal(['request_id']);
    expect((await expectGrpcError(call(keys, keys.getPublicKeys, { name: 'tenants/nobody' }), status.NOT_FOUND)).reason).to.equal('TENANT_NOT_FOUND');
  });

  it('ShredTenant needs the tenant id repeated, and is idempotent', async function () {
    await seedTenant(s, 'shred-a');
    const wrong = await expectGrpcError(call(keys, keys.shredTenant, { name: 'tenants/shred-a', confirmTenantId: 'other', requestId: '' }), status.INVALID_ARGUMENT);
    expect(wrong.fields).to.deep.equal(['confirm_tenant_id']);
    const first = await call(keys, keys.shredTenant, { name: 'tenants/shred-a', confirmTenantId: 'shred-a', requestId: '' });
    expect(first.destroyedEpochs).to.deep.equal([1]);
    s.clock.advance(1000);
    const second = await call(keys, keys.shredTenant, { name: 'tenants/shred-a', confirmTenantId: 'shred-a', requestId: '' });
    expect(second.destroyedEpochs).to.deep.equal([]);
    expect(second.shredTime).to.deep.equal(first.shredTime);
    await expectGrpcError(call(keys, keys.shredTenant, { name: 'tenants/nobody', confirmTenantId: 'nobody', requestId: '' }), status.NOT_FOUND);
  });

  it('concurrent ShredTenant calls shred once: one audit entry, every answer with the same shred time', async function () {
    await seedTenant(s, 'shred-c');
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => {
        s.clock.advance(7 * i); // each call would otherwise take the same time from the test clock
        return call(keys, keys.shredTenant, { name: 'tenants/shred-c', confirmTenantId: 'shred-c', requestId: '' });
      }),
    );
    expect(new Set(answers.map((a) => JSON.stringify(a.shredTime))).size, 'one shred time').to.equal(1);
    expect(answers.flatMap((a) => a.destroyedEpochs)).to.deep.equal([1]);
    const entries = await s.app.services.audit.entries('shred-c', 0, 10_000);
    expect(entries.filter((e) => JSON.parse(e.entryJson).type === 'TENANT_SHREDDED')).to.have.length(1);
  });

  it('after ShredTenant every call for the tenant fails cleanly, other tenants are untouched, and a dump taken before reveals nothing', async function () {
    this.timeout(60_000);
    const T = 'shred-b';
    const OTHER = 'keep';
    await seedTenant(s, T);
    await seedTenant(s, OTHER);
    for (const tenant of [T, OTHER]) {
      await call(s.consent, s.consent.recordConsent, consentRequest(tenant, { subjectIdentifier: person(1), evidence, requestId: `${tenant}-1` }));
    }
    const backup = await dumpDatabase(db().config, s.app.dataSource, 'before_shred');

    await call(keys, keys.shredTenant, { name: `tenants/${T}`, confirmTenantId: T, requestId: 'shred-b' });
    const erased = async (p: Promise<unknown>) => expect((await expectGrpcError(p, status.FAILED_PRECONDITION)).reason).to.equal('TENANT_ERASED');
    await erased(call(s.tenants, s.tenants.getTenant, { name: `tenants/${T}` }));
    await erased(call(s.tenants, s.tenants.createTenant, { tenantId: T, displayName: '', requestId: '', settings: undefined }));
    await erased(call(s.consent, s.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(1) }) }));
    await erased(call(s.consent, s.consent.recordConsent, consentRequest(T, { subjectIdentifier: person(2) })));
    await erased(call(s.consent, s.consent.recordInboundMessage, RecordInboundMessageRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(1), channel: Channel.CHANNEL_SMS, text: 'hi', requestId: 'x' })));
    await erased(call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}` })));
    await erased(call(s.consent, s.consent.getConsentState, { parent: `tenants/${T}`, subjectIdentifier: person(1) }));
    await erased(call(s.purposes, s.purposes.listPurposes, { parent: `tenants/${T}`, pageSize: 0, pageToken: '' }));
    await erased(call(keys, keys.rotateTenantKey, { name: `tenants/${T}`, requestId: 'r' }));
    await erased(call(keys, keys.getTenantKeyInfo, { name: `tenants/${T}` }));

    const kept = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${OTHER}`, subjectIdentifier: person(1) }));
    expect(kept.consentEvents[0].evidence!.userAgent).to.equal('KeyTest/1.0');

    // The rows are purged in the background.
    let left = 1;
    for (let i = 0; i < 100 && left > 0; i++) {
      const rows = await s.app.dataSource.query('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ?', [T]);
      left = Number(rows[0].n);
      if (left > 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(left, 'purged').to.equal(0);

    // A backup of the data taken before the shred, restored next to today's key store: nothing of
    // the shredded tenant can be read, the other tenant still can.
    const restored = await backup.restore();
    const fromBackup = await startTestServer({ ...db(), config: restored });
    try {
      const err = await expectGrpcError(
        call(fromBackup.consent, fromBackup.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: person(1) })),
        status.FAILED_PRECONDITION,
      );
      expect(err.reason).to.equal('TENANT_ERASED');
      await expectGrpcError(call(fromBackup.consent, fromBackup.consent.checkConsent, { parent: `tenants/${T}`, query: query(T, { subjectIdentifier: person(1) }) }), status.FAILED_PRECONDITION);
      const other = await call(fromBackup.consent, fromBackup.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${OTHER}`, subjectIdentifier: person(1) }));
      expect(other.consentEvents[0].evidence!.userAgent).to.equal('KeyTest/1.0');
    } finally {
      await fromBackup.stop();
      await dropRestored(restored);
    }
  });
});

forEachDatabase('tenant creation after a crashed create', (db) => {
  it('replaces a leftover tenant key that cannot be unwrapped instead of leaving the tenant unusable', async function () {
    const s = await startTestServer(db());
    try {
      // A key row left by a create that crashed, wrapped under a root key that is gone.
      await s.app.keyDataSource.query(
        "INSERT INTO tenant_keys (tenant_id, epoch, state, wrapped_key, root_key_id, created_at, destroyed_at) VALUES ('orphan', 1, 'ACTIVE', 'eyJhbGciOiJBMjU2S1cifQ.garbage.garbage.garbage.garbage', 'root-gone', 1, NULL)",
      );
      await seedTenant(s, 'orphan');
      await call(s.consent, s.consent.recordConsent, consentRequest('orphan', { subjectIdentifier: person(1), evidence }));
      const list = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: 'tenants/orphan', subjectIdentifier: person(1) }));
      expect(list.consentEvents[0].evidence!.userAgent).to.equal('KeyTest/1.0');
    } finally {
      await s.stop();
    }
  });
});
