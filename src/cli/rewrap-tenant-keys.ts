import { Config } from '../config/config';
import { openKeyStore } from '../app';
import { KeyManager } from '../crypto/key-manager';
import { loadRootKeys } from '../crypto/root-key-provider';
import { Logger } from '../logging/logger';
import { TypeormKeyStore } from '../storage/keystore/typeorm-key-store';

/**
 * `consent-ledger rewrap-tenant-keys`: after a new root key was added to the set and made
 * `active`, re-wraps every tenant key epoch still wrapped under an older root key. Afterwards the
 * old root key can be removed from the set. Safe to run while servers run and to run again.
 */
export async function rewrapTenantKeys(config: Config, logger: Logger): Promise<number> {
  const { provider } = await loadRootKeys(config.rootKeys);
  const keyStore = await openKeyStore(config, logger);
  try {
    const keys = new KeyManager(provider, new TypeormKeyStore(keyStore), config.limits);
    const changed = await keys.rewrapAllUnderActiveRoot();
    logger.info('tenant keys re-wrapped under the active root key', { root_key_id: provider.activeKeyId, epochs: changed });
    return changed;
  } finally {
    await keyStore.destroy();
  }
}
