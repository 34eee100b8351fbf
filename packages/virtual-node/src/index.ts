// The virtual-node shim's public surface: wiring, config and the pure translations.
export {
  startVirtualNode,
  defaultNodeAddress,
  SHIM_VERSION,
  type RunningVirtualNode,
} from './shim.js';
export {
  VIRTUAL_NODE_CONFIG_SCHEMA,
  loadVirtualNodeConfig,
  virtualNodeConfig,
  type VirtualNodeConfig,
} from './config.js';
export { identityFromSecret, IDENTITY_SECRET_KEYS, type BrokerIdentity } from './identity.js';
export * from './forge/donor.js';
export * from './forge/node.js';
export * from './forge/placement.js';
export * from './forge/status.js';
export { parseLogRequest, type LogRequest } from './kubelet/logs.js';
export {
  REASON_NOT_OFFLOADED,
  REASON_CANNOT_OFFLOAD,
  REASON_OFFLOADED,
  REASON_OFFLOAD_FAILED,
  REASON_OFFLOAD_REFUSED,
} from './events.js';
