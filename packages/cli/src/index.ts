// spillctl as a library: the demo and tests drive the same code the binary runs.
export { run, buildProgram, VERSION } from './program.js';
export { Context, type CliIO, type GlobalOptions } from './context.js';
export {
  EXIT,
  EXIT_CODES_HELP,
  UsageError,
  exitCodeOf,
  errorLine,
  type ExitCode,
} from './errors.js';
export { BrokerRest, errorFromBody, type RestOptions } from './rest.js';
export {
  brokerInit,
  ADMIN_FILES,
  type BrokerInitOptions,
  type BrokerInitResult,
} from './broker-init.js';
export {
  joinManifests,
  helmCommand,
  AGENT_RULES,
  VIRTUAL_NODE_RULES,
  DEFAULT_NAMESPACE,
  type JoinManifests,
  type JoinRole,
} from './manifests.js';
export {
  componentEntry,
  defaultStateDir,
  listLocal,
  localClusters,
  stopLocal,
  type ProcessInfo,
} from './local.js';
export {
  OUTPUT_FORMATS,
  renderTable,
  renderData,
  renderSimulation,
  describeCluster,
  age,
  type OutputFormat,
} from './output.js';
export { readSettings, writeSettings, defaultConfigPath, type SettingsFile } from './settings.js';
export { createProgress, type Progress } from './progress.js';
