import type { Config } from '../config/config';
import type { Logger } from '../logging/logger';
import { ApiClient } from './api-client';
import { RunningPrivacyCenter, startPrivacyCenter } from './server';

/**
 * Starts the privacy center of `config.privacyCenter` against the API at
 * PRIVACY_CENTER_API_ADDRESS, or against this process's own API on `apiPort` (over loopback when
 * it listens on every address).
 */
export async function startConfiguredPrivacyCenter(config: Config, logger: Logger, apiPort?: number): Promise<RunningPrivacyCenter> {
  const settings = config.privacyCenter;
  if (!settings) throw new Error('the privacy center is not configured (PRIVACY_CENTER_PORT)');
  let address = settings.apiAddress;
  if (!address) {
    if (apiPort === undefined) throw new Error('PRIVACY_CENTER_API_ADDRESS is needed to run the privacy center on its own');
    const host = ['0.0.0.0', '::', '[::]'].includes(config.bindAddress) ? '127.0.0.1' : config.bindAddress;
    address = `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${apiPort}`;
  }
  return startPrivacyCenter(settings, { api: ApiClient.fromFiles(address, settings.apiCaFile, settings.apiServerName, settings.apiTokenFile), logger });
}
