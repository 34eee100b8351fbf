#!/usr/bin/env node
import {
  configHelp,
  createLogger,
  exitOnStartupError,
  handleShutdownSignals,
} from '@spillway/common';
import { VIRTUAL_NODE_CONFIG_SCHEMA, loadVirtualNodeConfig } from './config.js';
import { startVirtualNode } from './shim.js';

try {
  const { config, help } = loadVirtualNodeConfig({ argv: process.argv.slice(2), env: process.env });
  if (help) {
    process.stdout.write(
      `spillway-virtual-node: offloads pending GPU pods of this cluster to peered donors\n\n${configHelp(VIRTUAL_NODE_CONFIG_SCHEMA)}\n`,
    );
    process.exit(0);
  }
  const logger = createLogger({
    level: config.logLevel,
    pretty: config.logPretty,
    bindings: { component: 'virtual-node' },
  });
  const shim = await startVirtualNode(config, logger);
  handleShutdownSignals(logger, () => shim.stop());
} catch (err) {
  exitOnStartupError(err, 'spillway-virtual-node');
}
