import {
  DEFAULT_GPU_RESOURCES,
  loadConfig,
  type ConfigOf,
  type LoadOptions,
  type Schema,
} from '@spillway/common';

/**
 * The virtual-node shim's configuration: named defaults, SPILLWAY_* environment variables,
 * flags. Validated once in main.ts (or built with `virtualNodeConfig` in tests) and passed down.
 */
export const VIRTUAL_NODE_CONFIG_SCHEMA = {
  kubeconfig: {
    type: 'string',
    env: 'KUBECONFIG',
    description: 'kubeconfig of the origin cluster (in-cluster config when empty)',
  },
  context: { type: 'string', description: 'kubeconfig context' },
  clusterId: {
    type: 'string',
    description:
      "this origin's cluster ID; checked against the identity certificate (taken from it when empty)",
  },
  brokerAddress: {
    type: 'string',
    required: true,
    description: "host:port of the broker's gRPC endpoint",
  },
  brokerServerName: {
    type: 'string',
    description:
      "name to verify the broker's certificate against, when it differs from the address",
  },
  namespace: {
    type: 'string',
    default: 'spillway-system',
    description: "namespace of the agent's identity Secret, which the shim shares",
  },
  identitySecret: {
    type: 'string',
    default: 'spillway-identity',
    description: "Secret (tls.crt, tls.key, ca.crt) with this cluster's broker certificate",
  },
  certFile: {
    type: 'string',
    description: 'client certificate (PEM) for the broker, instead of the identity Secret',
  },
  keyFile: { type: 'string', description: 'private key (PEM) of --cert-file' },
  caFile: { type: 'string', description: 'broker CA (PEM) to go with --cert-file' },
  offloadScope: {
    type: 'string',
    default: 'labelled',
    choices: ['labelled', 'all'] as const,
    description:
      'offload pending GPU pods of namespaces labelled spillway.io/offload=enabled, or of all namespaces',
  },
  gracePeriod: {
    type: 'duration',
    default: '10s',
    minMs: 0,
    maxMs: 3_600_000,
    description:
      'how long a pod stays Unschedulable before it is offloaded, so local capacity wins',
  },
  skipGraceWhenNoOriginFit: {
    type: 'bool',
    default: true,
    description:
      'offload at once, without the grace period, pods no origin node could ever run (GPU resource, count or product it lacks); turn off if an autoscaler may add such nodes',
  },
  gpuResources: {
    type: 'list',
    default: [...DEFAULT_GPU_RESOURCES],
    description: 'GPU resource names that make a pod a candidate (* is a wildcard)',
  },
  gangTimeout: {
    type: 'duration',
    default: '5m',
    minMs: 1000,
    maxMs: 86_400_000,
    description:
      'how long a gang waits for all its pods to be Pending before the shim stops asking for it (a Warning says so; a new pod of the gang starts again)',
  },
  donorLostTimeout: {
    type: 'duration',
    default: '40s',
    minMs: 0,
    maxMs: 3_600_000,
    description: 'how long a donor may be unreachable before its virtual node turns NotReady',
  },
  placeRetryMax: {
    type: 'duration',
    default: '30s',
    minMs: 100,
    maxMs: 600_000,
    description: 'longest back-off between placement attempts of a pod no donor fits',
  },
  leaseDuration: {
    type: 'duration',
    default: '40s',
    minMs: 1000,
    maxMs: 600_000,
    description: "the virtual nodes' Lease duration; renewed every quarter of it",
  },
  nodeStatusInterval: {
    type: 'duration',
    default: '60s',
    minMs: 1000,
    maxMs: 600_000,
    description: "how often the virtual nodes' status is re-posted when nothing changed",
  },
  resyncInterval: {
    type: 'duration',
    default: '5m',
    minMs: 1000,
    maxMs: 86_400_000,
    description: "how often each donor's pod list is re-read to catch anything missed",
  },
  nodeAddress: {
    type: 'string',
    description:
      "InternalIP of the virtual nodes: where the API server reaches the shim's kubelet port (default: this host's first non-loopback IPv4)",
  },
  kubeletPort: {
    type: 'int',
    default: 10250,
    min: 0,
    max: 65535,
    description: 'port of the kubelet endpoint (logs) for the virtual nodes; 0 picks a free one',
  },
  kubeletBindAddress: {
    type: 'string',
    default: '0.0.0.0',
    description: 'listen address of the kubelet endpoint',
  },
  kubeletCertFile: {
    type: 'string',
    description:
      'serving certificate of the kubelet endpoint (a self-signed one is made when empty)',
  },
  kubeletKeyFile: { type: 'string', description: 'private key of --kubelet-cert-file' },
  kubeletClientCaFile: {
    type: 'string',
    description:
      "CA that signs the API server's kubelet client certificate; when set, the kubelet endpoint requires it",
  },
  // Reconciles wait on round trips (API server, broker, donor), not on CPU: a burst of pods
  // needs many in flight.
  workers: {
    type: 'int',
    default: 16,
    min: 1,
    max: 64,
    description: 'reconcile workers per controller',
  },
  logLevel: {
    type: 'string',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const,
    description: 'log level',
  },
  logPretty: { type: 'bool', description: 'human-readable logs instead of JSON' },
} satisfies Schema;

export type VirtualNodeConfig = ConfigOf<typeof VIRTUAL_NODE_CONFIG_SCHEMA>;

/** Parses argv and environment into the config (main.ts). */
export function loadVirtualNodeConfig(opts: LoadOptions): {
  config: VirtualNodeConfig;
  help: boolean;
} {
  const { config, help } = loadConfig(VIRTUAL_NODE_CONFIG_SCHEMA, opts);
  return { config, help };
}

/** The config from defaults plus `overrides`, for tests and embedding; validated the same way. */
export function virtualNodeConfig(
  overrides: Partial<VirtualNodeConfig> & Pick<VirtualNodeConfig, 'brokerAddress'>,
): VirtualNodeConfig {
  const { config } = loadConfig(VIRTUAL_NODE_CONFIG_SCHEMA, {
    env: {},
    argv: ['--broker-address', overrides.brokerAddress],
  });
  return { ...config, ...overrides };
}
