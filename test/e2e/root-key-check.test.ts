import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { RootKeySource } from '../../src/config/config';
import { RootKeysDoNotCoverStoredKeys } from '../../src/crypto/key-manager';
import { Evidence, ListConsentEventsRequest } from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { call, startTestServer } from '../support/test-server';

const keySet = (keys: Array<{ kid: string; k: string }>, active?: string): RootKeySource => ({
  kind: 'env',
  json: JSON.stringify({ keys: keys.map((k) => ({ kty: 'oct', ...k })), ...(active ? { active } : {}) }),
});
const newKey = (kid: string) => ({ kid, k: randomBytes(32).toString('base64url') });

/**
 * The service refuses to start, instead of starting and failing every call with
 * KEY_UNWRAP_FAILED, when its root keys cannot unwrap the tenant keys in the key store; the
 * refusal names the root key ids needed and configured, never key material.
 */
forEachDatabase('root keys checked at start', (db) => {
  const T = 'rootcheck';
  let devFile: string;
  let devKid: string;

  before(async function () {
    this.timeout(60_000);
    const first = await startTestServer(db());
    try {
      await seedTenant(first, T);
      await call(first.consent, first.consent.recordConsent, consentRequest(T, { subjectIdentifier: phone('+4915150000101'), evidence: Evidence.fromPartial({ sourceIp: '203.0.113.77' }) }));
    } finally {
      await first.stop();
    }
    devFile = path.join(db().dataDir, 'root-keys.dev.json');
    devKid = (JSON.parse(readFileSync(devFile, 'utf8')) as { keys: Array<{ kid: string }> }).keys[0].kid;
  });

  async function refusal(rootKeys?: RootKeySource): Promise<RootKeysDoNotCoverStoredKeys> {
    const started = await startTestServer(db(), rootKeys ? { rootKeys } : {}).then(
      async (s) => {
        await s.stop();
        return null;
      },
      (e: Error) => e,
    );
    expect(started, 'the start was refused').to.be.instanceOf(RootKeysDoNotCoverStoredKeys);
    return started as RootKeysDoNotCoverStoredKeys;
  }

  it('refuses a root key set without the key the tenant keys were wrapped under, naming what it needs and has', async function () {
    const other = newKey('root-other');
    const err = await refusal(keySet([other]));
    expect(err.message).to.include(`root key "${devKid}" is needed by 1 tenant(s) (tenants/${T})`).and.include('Configured root key ids: root-other');
    expect(err.missing).to.deep.equal([{ id: devKid, tenants: [T] }]);
    expect(err.message, 'no key material').to.not.include(other.k);
  });

  it('refuses a set whose key under the right id is another key (a development key generated again)', async function () {
    const impostor = newKey(devKid);
    const err = await refusal(keySet([impostor]));
    expect(err.wrongMaterial).to.deep.equal([{ id: devKid, tenant: `tenants/${T}` }]);
    expect(err.message).to.include(`root key "${devKid}" is configured, but it is not the key the tenant keys were wrapped with`);
    expect(err.message, 'no key material').to.not.include(impostor.k);
  });

  it('a development key generated over a store it cannot read is removed again, and the right set starts', async function () {
    const moved = `${devFile}.moved`;
    renameSync(devFile, moved);
    try {
      await refusal();
      expect(existsSync(devFile), 'the useless generated key was removed').to.equal(false);
    } finally {
      renameSync(moved, devFile);
    }
    // A set with the needed key and more (a rollout) starts, and what was written is readable.
    const s = await startTestServer(db(), { rootKeys: keySet([newKey('root-next'), JSON.parse(readFileSync(devFile, 'utf8')).keys[0]], 'root-next') });
    try {
      const events = await call(s.consent, s.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${T}`, subjectIdentifier: phone('+4915150000101') }));
      expect(events.consentEvents).to.have.length(1);
      expect(events.consentEvents[0].evidence?.sourceIp, 'the evidence decrypts').to.equal('203.0.113.0');
    } finally {
      await s.stop();
    }
  });
});
