import { DEFAULT_GPU_RESOURCES, type ConfigOf, type Schema } from '@spillway/common';
import { BASELINE_CAPABILITIES } from './forge/policy.js';

export const agentConfigSchema = {
  kubeconfig: {
    type: 'string',
    description: 'kubeconfig of this cluster (in-cluster config when empty)',
    env: 'KUBECONFIG',
  },
  context: { type: 'string', description: 'kubeconfig context' },
  namespace: {
    type: 'string',
    default: 'spillway-system',
    description: "the agent's own namespace (identity and join-token Secrets)",
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
  caFile: {
    type: 'string',
    description:
      'broker CA certificate (PEM) for the first join; the join-token Secret may carry it instead',
  },
  joinToken: {
    type: 'string',
    secret: true,
    description:
      'single-use join token (first start only); read from the join-token Secret when empty',
  },
  joinTokenSecret: {
    type: 'string',
    default: 'spillway-join-token',
    description: 'Secret (keys token, ca.crt) written by spillctl join',
  },
  identitySecret: {
    type: 'string',
    default: 'spillway-identity',
    description: "Secret holding this cluster's broker certificate and key",
  },
  tenantClusterRole: {
    type: 'string',
    description:
      'ClusterRole bound to --service-account-name in each tenant namespace the agent creates (the Helm chart sets it; empty: no RoleBinding)',
  },
  serviceAccountName: {
    type: 'string',
    default: 'spillway-agent',
    description: "the agent's ServiceAccount in --namespace: the subject of --tenant-cluster-role",
  },
  gpuResources: {
    type: 'list',
    default: [...DEFAULT_GPU_RESOURCES],
    description: 'GPU resource names to lend (* is a wildcard)',
  },
  nodeSelector: {
    type: 'list',
    default: [],
    description: 'only lend nodes with these labels (key=value,...)',
  },
  reservedGpusPerNode: {
    type: 'int',
    default: 0,
    min: 0,
    max: 64,
    description: 'GPUs per node kept back for local use',
  },
  allowedCapabilities: {
    type: 'list',
    default: [...BASELINE_CAPABILITIES],
    description: 'capabilities offloaded containers may add',
  },
  allowServiceAccountToken: {
    type: 'bool',
    description: 'let offloaded pods mount a tenant service-account token',
  },
  gpuTolerations: {
    type: 'list',
    default: ['nvidia.com/gpu:NoSchedule', 'amd.com/gpu:NoSchedule'],
    description: 'taints (key[=value]:effect) of GPU nodes that offloaded pods tolerate',
  },
  reportDebounce: {
    type: 'duration',
    default: '100ms',
    maxMs: 10_000,
    description: 'coalesce inventory changes for this long',
  },
  renewCheckInterval: {
    type: 'duration',
    default: '1h',
    minMs: 1000,
    description: 'how often to check whether the certificate needs renewal',
  },
  logLevel: {
    type: 'string',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'silent'],
    description: 'log level',
  },
  logPretty: { type: 'bool', description: 'human-readable logs instead of JSON' },
} satisfies Schema;

export type AgentConfig = ConfigOf<typeof agentConfigSchema>;
