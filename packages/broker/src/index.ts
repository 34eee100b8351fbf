// The broker's public surface: what spillctl, the e2e bed and other packages import.
export { startBroker, type RunningBroker } from './broker.js';
export {
  BROKER_CONFIG_SCHEMA,
  SQLITE_FILE_NAME,
  brokerConfig,
  defaultBrokerId,
  loadBrokerConfig,
  resolveBrokerConfig,
  type BrokerConfig,
  type BrokerConfigInput,
  type LoadedBrokerConfig,
} from './config.js';
export { PKI_FILES, ensureBrokerPki, pkiPaths, type BrokerPki } from './pki-files.js';
export { Metrics, type MetricsOptions, type PlacementResultLabel } from './metrics.js';
export { buildRestApp, DEFAULT_BODY_LIMIT, type RestAppOptions } from './rest/app.js';
export { RestAuth, type Principal, type RestAuthOptions } from './rest/auth.js';
export { newApiToken, parseApiToken, sha256Hex, type ApiRole } from './rest/tokens.js';
export { createStore } from './store/index.js';
export type { Store } from './store/store.js';
export type * from './model.js';
export { DEFAULT_DONOR_POLICY } from './model.js';
export type * from './core/api.js';
