import type { Config } from '../config/config';
import type { Logger } from '../logging/logger';
import { ApiClient } from './api-client';
import { RunningConsole, startConsole } from './server';

/**
 * Starts the console of `config.console` against the API at CONSOLE_API_ADDRESS, or against this
 * process's own API on `apiPort` (reached over loopback when it listens on every address).
 */
export async function startConfiguredConsole(config: Config, logger: Logger, apiPort?: number): Promise<RunningConsole> {
  const settings = config.console;
  if (!settings) throw new Error('the console is not configured (CONSOLE_PORT)');
  let address = settings.apiAddress;
  if (!address) {
    if (apiPort === undefined) throw new Error('CONSOLE_API_ADDRESS is needed to run the console on its own');
    const host = ['0.0.0.0', '::', '[::]'].includes(config.bindAddress) ? '127.0.0.1' : config.bindAddress;
    address = `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${apiPort}`;
  }
  return startConsole(settings, { api: ApiClient.fromFiles(address, settings.apiCaFile, settings.apiServerName), logger });
}
