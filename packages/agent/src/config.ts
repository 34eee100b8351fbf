import {
  DEFAULT_GPU_RESOURCES,
  DEFAULT_GUEST_PRIORITY_CLASS,
  RECLAIM_MODES,
  type ConfigOf,
  type Schema,
} from '@spillway/common';
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
  reclaim: {
    type: 'string',
    default: 'preempt',
    choices: RECLAIM_MODES,
    description:
      "preempt: guests run below this cluster's own pods and its scheduler preempts them when a local pod needs their GPUs; never: pods without a PriorityClass do not preempt them",
  },
  guestPriorityClass: {
    type: 'string',
    default: DEFAULT_GUEST_PRIORITY_CLASS,
    description: 'the PriorityClass the agent installs and sets on every offloaded pod',
  },
  guestPriority: {
    type: 'int',
    min: -1_000_000_000,
    max: 1_000_000_000,
    description:
      "the guests' priority (default -1000 with --reclaim preempt, 0 with --reclaim never)",
  },
  maxGuestGracePeriod: {
    type: 'duration',
    default: '30s',
    maxMs: 3_600_000,
    description:
      "the longest notice (termination grace period) a guest gets when it is preempted or deleted; its origin's own setting is capped to it",
  },
  reclaimHold: {
    type: 'duration',
    default: '30s',
    maxMs: 600_000,
    description:
      "how long a preempted guest's GPUs stay reported in use after it ends, so nothing is placed there before the pod that preempted it is bound",
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
