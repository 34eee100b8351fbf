import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Namespace,
  V1PolicyRule,
  V1Secret,
  V1ServiceAccount,
} from '@kubernetes/client-node';
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE } from '@spillway/common';

/**
 * What `spillctl join` installs into a cluster before the agent (and, on origins, the
 * virtual-node shim) starts: pure functions from the join's inputs to Kubernetes objects.
 */

export type JoinRole = 'origin' | 'donor' | 'both';

export interface JoinManifestInput {
  clusterId: string;
  role: JoinRole;
  namespace: string;
  /** Join token `<id>.<secret>`. */
  token: string;
  caPem: string;
  /** host:port of the broker's gRPC endpoint. */
  broker: string;
  joinTokenSecret: string;
}

export const AGENT_NAME = 'spillway-agent';
export const VIRTUAL_NODE_NAME = 'spillway-virtual-node';
export const DEFAULT_NAMESPACE = 'spillway-system';
export const DEFAULT_JOIN_TOKEN_SECRET = 'spillway-join-token';
export const DEFAULT_IDENTITY_SECRET = 'spillway-identity';

export interface JoinManifests {
  namespace: V1Namespace;
  serviceAccounts: V1ServiceAccount[];
  clusterRoles: V1ClusterRole[];
  clusterRoleBindings: V1ClusterRoleBinding[];
  secret: V1Secret;
}

const READ = ['get', 'list', 'watch'];

/** The agent inventories nodes and pods and, on donors, runs pods in tenant namespaces. */
export const AGENT_RULES: V1PolicyRule[] = [
  { apiGroups: [''], resources: ['nodes'], verbs: READ },
  { apiGroups: [''], resources: ['pods'], verbs: [...READ, 'create', 'update', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['namespaces'], verbs: [...READ, 'create', 'patch', 'delete'] },
  {
    apiGroups: [''],
    resources: ['resourcequotas'],
    verbs: [...READ, 'create', 'patch', 'delete'],
  },
  {
    apiGroups: [''],
    resources: ['configmaps', 'secrets'],
    verbs: [...READ, 'create', 'update', 'delete'],
  },
  { apiGroups: [''], resources: ['events'], verbs: [...READ, 'create', 'patch'] },
  // The guests' PriorityClass (the donor's reclaim policy), installed on the first offload.
  {
    apiGroups: ['scheduling.k8s.io'],
    resources: ['priorityclasses'],
    verbs: ['get', 'create', 'delete'],
  },
];

/** The shim keeps virtual Nodes and their Leases, binds pods to them and mirrors status. */
export const VIRTUAL_NODE_RULES: V1PolicyRule[] = [
  {
    apiGroups: [''],
    resources: ['nodes'],
    verbs: [...READ, 'create', 'update', 'patch', 'delete'],
  },
  { apiGroups: [''], resources: ['nodes/status'], verbs: ['update', 'patch'] },
  {
    apiGroups: ['coordination.k8s.io'],
    resources: ['leases'],
    verbs: [...READ, 'create', 'update', 'patch', 'delete'],
  },
  { apiGroups: [''], resources: ['pods'], verbs: [...READ, 'update', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['pods/status'], verbs: ['update', 'patch'] },
  { apiGroups: [''], resources: ['pods/binding', 'bindings'], verbs: ['create'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  { apiGroups: [''], resources: ['configmaps', 'secrets', 'namespaces'], verbs: READ },
  // Gangs: the objects that say how many pods a gang has (docs/gangs.md).
  { apiGroups: ['batch'], resources: ['jobs'], verbs: ['get'] },
  { apiGroups: ['jobset.x-k8s.io'], resources: ['jobsets'], verbs: ['get'] },
  {
    apiGroups: ['kubeflow.org'],
    resources: ['pytorchjobs', 'tfjobs', 'mpijobs', 'xgboostjobs', 'paddlejobs', 'jaxjobs'],
    verbs: ['get'],
  },
  { apiGroups: ['ray.io'], resources: ['rayclusters'], verbs: ['get'] },
  {
    apiGroups: ['scheduling.x-k8s.io', 'scheduling.volcano.sh', 'scheduling.run.ai'],
    resources: ['podgroups'],
    verbs: ['get'],
  },
];

function labels(component: string): Record<string, string> {
  return {
    [LABEL_MANAGED_BY]: MANAGED_BY_VALUE,
    'app.kubernetes.io/name': component,
    'app.kubernetes.io/part-of': 'spillway',
  };
}

export function runsVirtualNode(role: JoinRole): boolean {
  return role === 'origin' || role === 'both';
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

export function joinManifests(input: JoinManifestInput): JoinManifests {
  const components = runsVirtualNode(input.role)
    ? [
        { name: AGENT_NAME, rules: AGENT_RULES },
        { name: VIRTUAL_NODE_NAME, rules: VIRTUAL_NODE_RULES },
      ]
    : [{ name: AGENT_NAME, rules: AGENT_RULES }];
  return {
    namespace: {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: input.namespace, labels: labels('spillway') },
    },
    serviceAccounts: components.map(({ name }) => ({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name, namespace: input.namespace, labels: labels(name) },
    })),
    clusterRoles: components.map(({ name, rules }) => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name, labels: labels(name) },
      rules,
    })),
    clusterRoleBindings: components.map(({ name }) => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name, labels: labels(name) },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: input.namespace }],
    })),
    // The keys the agent reads (packages/agent credentials.ts): token, ca.crt, broker.
    secret: {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: input.joinTokenSecret,
        namespace: input.namespace,
        labels: labels(AGENT_NAME),
        annotations: { 'spillway.io/cluster-id': input.clusterId, 'spillway.io/role': input.role },
      },
      data: { token: b64(input.token), 'ca.crt': b64(input.caPem), broker: b64(input.broker) },
    },
  };
}

export interface HelmCommandInput {
  clusterId: string;
  role: JoinRole;
  namespace: string;
  broker: string;
  joinTokenSecret: string;
  kubeconfig?: string;
  context?: string;
}

/**
 * The Helm command that installs the agent (and shim) with charts/spillway-agent, using
 * what `join` put in place: the chart must not create the ServiceAccounts and RBAC again.
 */
export function helmCommand(input: HelmCommandInput): string {
  const parts = [
    // One release per cluster; join already made the ServiceAccounts and RBAC.
    `helm upgrade --install spillway-${input.clusterId} charts/spillway-agent`,
    `--namespace ${input.namespace}`,
    ...(input.kubeconfig ? [`--kubeconfig ${input.kubeconfig}`] : []),
    ...(input.context ? [`--kube-context ${input.context}`] : []),
    `--set clusterId=${input.clusterId}`,
    `--set role=${input.role}`,
    `--set broker.address=${input.broker}`,
    `--set joinTokenSecret=${input.joinTokenSecret}`,
    '--set rbac.create=false',
    '--set serviceAccount.create=false',
  ];
  return parts.join(' \\\n    ');
}
