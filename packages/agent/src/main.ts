#!/usr/bin/env node
import {
  configHelp,
  createLogger,
  exitOnStartupError,
  handleShutdownSignals,
  loadConfig,
} from '@spillway/common';
import { startAgent } from './agent.js';
import { agentConfigSchema } from './config.js';

try {
  const { config, help } = loadConfig(agentConfigSchema, {
    argv: process.argv.slice(2),
    env: process.env,
  });
  if (help) {
    process.stdout.write(
      `spillway-agent: advertises this cluster's free GPUs and runs offloaded pods\n\n${configHelp(agentConfigSchema)}\n`,
    );
    process.exit(0);
  }
  const logger = createLogger({
    level: config.logLevel,
    pretty: config.logPretty,
    bindings: { component: 'agent' },
  });
  const agent = await startAgent(config, logger);
  handleShutdownSignals(logger, () => agent.stop());
} catch (err) {
  exitOnStartupError(err, 'spillway-agent');
}
