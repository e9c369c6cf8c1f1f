#!/usr/bin/env node
import { ConfigError, loadConfig } from './config/config';
import { openDatabase, openKeyStore, startApp } from './app';
import { createLogger } from './logging/logger';
import { verifyReceiptCommand } from './cli/verify-receipt';
import { rewrapTenantKeys } from './cli/rewrap-tenant-keys';
import { healthProbe } from './cli/health-probe';
import { startConfiguredConsole } from './console/start';
import { startConfiguredPrivacyCenter } from './privacy-center/start';

/**
 * Entry point. `consent-ledger` serves; `consent-ledger migrate` applies pending migrations and
 * exits; `consent-ledger rewrap-tenant-keys` re-wraps tenant keys under the active root key;
 * `consent-ledger verify-receipt --jwks FILE RECEIPT` checks a consent receipt offline;
 * `consent-ledger health` asks the local server's health port whether it serves (exit 0);
 * `consent-ledger console` serves the web console alone, against CONSOLE_API_ADDRESS (docs/console.md);
 * `consent-ledger privacy-center` serves the privacy center alone, against PRIVACY_CENTER_API_ADDRESS (docs/privacy-center.md). Configuration comes from the environment (docs/configuration.md).
 */
async function main(): Promise<void> {
  // Offline tools first: they need no configuration, database or keys.
  if (process.argv[2] === 'verify-receipt') {
    process.exit(await verifyReceiptCommand(process.argv.slice(3), process.stdout, process.stderr));
  }
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`consent-ledger: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const command = process.argv[2] ?? 'serve';

  if (command === 'migrate') {
    const migrating = { ...config, runMigrations: true };
    await (await openDatabase(migrating, logger)).destroy();
    await (await openKeyStore(migrating, logger)).destroy();
    logger.info('migrations complete');
    return;
  }
  if (command === 'health') {
    if (!config.health) {
      process.stderr.write('consent-ledger: health needs HEALTH_PORT (the plaintext health port of the server on this machine)\n');
      process.exit(2);
    }
    process.exit(await healthProbe(config.health.port, 3000, process.stdout));
  }
  if (command === 'rewrap-tenant-keys') {
    await rewrapTenantKeys(config, logger);
    return;
  }
  if (command === 'console') {
    if (!config.console?.apiAddress) {
      process.stderr.write('consent-ledger: console needs CONSOLE_PORT and CONSOLE_API_ADDRESS (the gRPC API it calls; docs/console.md)\n');
      process.exit(2);
    }
    const alone = await startConfiguredConsole(config, logger);
    const stop = () => void alone.close().then(() => process.exit(0), () => process.exit(1));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    return;
  }
  if (command === 'privacy-center') {
    if (!config.privacyCenter?.apiAddress) {
      process.stderr.write('consent-ledger: privacy-center needs PRIVACY_CENTER_PORT and PRIVACY_CENTER_API_ADDRESS (the gRPC API it calls; docs/privacy-center.md)\n');
      process.exit(2);
    }
    const alone = await startConfiguredPrivacyCenter(config, logger);
    const stop = () => void alone.close().then(() => process.exit(0), () => process.exit(1));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    return;
  }
  if (command !== 'serve') {
    process.stderr.write(`consent-ledger: unknown command "${command}" (use: serve | migrate | health | rewrap-tenant-keys | verify-receipt | console | privacy-center)\n`);
    process.exit(2);
  }

  // Last line of defence: a rejected promise nobody handles is a bug, but it must not end the
  // process and with it every tenant's consent checks. Every decision comes from a database
  // transaction, so nothing half-done survives in memory; the bug is logged to be fixed.
  process.on('unhandledRejection', (reason: unknown) => {
    const e = reason as { name?: string; message?: string; stack?: string };
    logger.error('unhandled promise rejection: a bug; the process keeps serving', { error: { name: e?.name, message: e?.message, stack: e?.stack } });
  });

  const app = await startApp(config, { logger });
  // The web console, when CONSOLE_PORT is set: on its own port, calling this server's API.
  const webConsole = config.console ? await startConfiguredConsole(config, logger, app.port) : null;
  // The privacy center, when PRIVACY_CENTER_PORT is set: the person's pages, on a port of their own.
  const privacyCenter = config.privacyCenter ? await startConfiguredPrivacyCenter(config, logger, app.port) : null;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    Promise.all([webConsole?.close(), privacyCenter?.close()])
      .then(() => app.stop())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          const e = err as { name?: string; code?: string; message?: string };
          logger.error('shutdown failed', { error: { name: e?.name, code: e?.code, message: e?.message } });
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err: Error) => {
  process.stderr.write(`consent-ledger: ${err.message}\n`);
  process.exit(1);
});
