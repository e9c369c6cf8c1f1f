import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { rewrapTenantKeys } from '../../src/cli/rewrap-tenant-keys';
import { RootKeySource } from '../../src/config/config';
import { createLogger } from '../../src/logging/logger';
import { ListConsentEventsRequest } from '../../src/gen/consent/v1/consent';
import { forEachDatabase } from '../support/databases';
import { consentRequest, phone, seedTenant } from '../support/fixtures';
import { call, startTestServer } from '../support/test-server';
import { PassThrough } from 'node:stream';

const key = (kid: string) => ({ kty: 'oct', kid, k: randomBytes(32).toString('base64url') });
const rootKeys = (keys: object[], active: string): RootKeySource => ({ kind: 'env', json: JSON.stringify({ keys, active }) });

forEachDatabase('root key rotation', (db) => {
  it('re-wraps every tenant key under the new root key, after which the old one can go', async function () {
    this.timeout(60_000);
    const oldRoot = key('root-old');
    const newRoot = key('root-new');
    const first = await startTestServer(db(), { rootKeys: rootKeys([oldRoot], 'root-old') });
    const evidence = { sourceIp: '', userAgent: 'RootTest', pageUrl: '', inboundMessageId: '', freeText: '' };
    for (const t of ['root-a', 'root-b']) {
      await seedTenant(first, t);
      await call(first.consent, first.consent.recordConsent, consentRequest(t, { subjectIdentifier: phone('+4915160000001'), evidence }));
    }
    const config = { ...first.app.config, rootKeys: rootKeys([oldRoot, newRoot], 'root-new') };
    await first.stop();

    const logger = createLogger('error', new PassThrough());
    expect(await rewrapTenantKeys(config, logger)).to.equal(2);
    expect(await rewrapTenantKeys(config, logger), 'a second run has nothing to do').to.equal(0);

    const second = await startTestServer(db(), { rootKeys: rootKeys([newRoot], 'root-new') });
    try {
      for (const t of ['root-a', 'root-b']) {
        const list = await call(second.consent, second.consent.listConsentEvents, ListConsentEventsRequest.fromPartial({ parent: `tenants/${t}`, subjectIdentifier: phone('+4915160000001') }));
        expect(list.consentEvents[0].evidence!.userAgent).to.equal('RootTest');
      }
      const rows = await second.app.keyDataSource.query("SELECT DISTINCT root_key_id FROM tenant_keys WHERE tenant_id IN ('root-a', 'root-b')");
      expect(rows.map((r: { root_key_id: string }) => r.root_key_id)).to.deep.equal(['root-new']);
    } finally {
      await second.stop();
    }
  });
});
