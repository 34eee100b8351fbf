#!/usr/bin/env node
import {
  configHelp,
  createLogger,
  exitOnStartupError,
  handleShutdownSignals,
  redactConfig,
} from '@spillway/common';
import { startBroker } from './broker.js';
import { BROKER_CONFIG_SCHEMA, loadBrokerConfig, type LoadedBrokerConfig } from './config.js';

// The broker daemon: flags and SPILLWAY_* variables -> config -> logger -> startBroker.
const NAME = 'spillway-broker';

const USAGE = `Usage: ${NAME} [flags]

The Spillway broker: mTLS gRPC for clusters, REST API for admins, GPU placement.
Every flag can also be set with the environment variable shown in brackets.

Flags:
${configHelp(BROKER_CONFIG_SCHEMA)}
${'  --help'.padEnd(36)} Print this help
`;

async function main(): Promise<void> {
  let loaded: LoadedBrokerConfig;
  try {
    loaded = loadBrokerConfig({ argv: process.argv.slice(2), env: process.env });
  } catch (err) {
    exitOnStartupError(err, NAME);
  }
  if (loaded.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (loaded.positionals.length > 0) {
    exitOnStartupError(
      new Error(`unexpected argument "${loaded.positionals[0]}"; see --help`),
      NAME,
    );
  }
  const { config } = loaded;
  const logger = createLogger({
    level: config.logLevel,
    pretty: config.logPretty,
    bindings: { component: 'broker', brokerId: config.brokerId },
  });
  logger.info({ config: redactConfig(BROKER_CONFIG_SCHEMA, config) }, 'starting');
  let broker: Awaited<ReturnType<typeof startBroker>>;
  try {
    broker = await startBroker(config, logger);
  } catch (err) {
    logger.flush();
    exitOnStartupError(err, NAME);
  }
  handleShutdownSignals(logger, () => broker.stop(), config.shutdownGrace + 5_000);
}

void main();
