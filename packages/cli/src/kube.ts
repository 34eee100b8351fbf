import {
  CoreV1Api,
  RbacAuthorizationV1Api,
  type KubeConfig,
  type V1Node,
} from '@kubernetes/client-node';
import {
  ErrorCode,
  LABEL_OFFLOAD,
  MERGE_PATCH,
  SpillwayError,
  apiMessage,
  apiStatus,
  isAlreadyExists,
  isNotFound,
  loadKubeConfig,
  virtualNodeName,
} from '@spillway/common';
import type { JoinManifests } from './manifests.js';

/** The value of spillway.io/offload the shim looks for on namespaces. */
export const OFFLOAD_ENABLED = 'enabled';

export interface KubeTarget {
  kubeconfig?: string | undefined;
  context?: string | undefined;
}

export function kubeConfigFor(t: KubeTarget): KubeConfig {
  return loadKubeConfig({
    ...(t.kubeconfig ? { kubeconfig: t.kubeconfig } : {}),
    ...(t.context ? { context: t.context } : {}),
  });
}

/** Where a kubeconfig points, for messages. */
export function serverOf(kc: KubeConfig): string {
  return kc.getCurrentCluster()?.server ?? '(unknown server)';
}

function kubeFailure(kc: KubeConfig, what: string, err: unknown): SpillwayError {
  const status = apiStatus(err);
  const code =
    status === 401
      ? ErrorCode.UNAUTHENTICATED
      : status === 403
        ? ErrorCode.PERMISSION_DENIED
        : status === 404
          ? ErrorCode.NOT_FOUND
          : status === undefined
            ? ErrorCode.UNAVAILABLE
            : ErrorCode.INTERNAL;
  return new SpillwayError(code, `${what} in the cluster at ${serverOf(kc)}: ${apiMessage(err)}`, {
    cause: err,
  });
}

async function upsert(
  create: () => Promise<unknown>,
  replace: (() => Promise<unknown>) | undefined,
): Promise<'created' | 'updated' | 'unchanged'> {
  try {
    await create();
    return 'created';
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    if (!replace) return 'unchanged';
    await replace();
    return 'updated';
  }
}

export interface AppliedObject {
  kind: string;
  name: string;
  namespace?: string;
  result: 'created' | 'updated' | 'unchanged';
}

/** Creates what `join` installs; existing objects are updated, the Namespace left as is. */
export async function applyJoinManifests(
  kc: KubeConfig,
  m: JoinManifests,
): Promise<AppliedObject[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const ns = m.namespace.metadata!.name!;
  const out: AppliedObject[] = [];
  const step = async (
    kind: string,
    name: string,
    namespace: string | undefined,
    create: () => Promise<unknown>,
    replace?: () => Promise<unknown>,
  ): Promise<void> => {
    try {
      const result = await upsert(create, replace);
      out.push({ kind, name, ...(namespace ? { namespace } : {}), result });
    } catch (err) {
      throw kubeFailure(kc, `cannot apply ${kind} ${namespace ? `${namespace}/` : ''}${name}`, err);
    }
  };
  await step('Namespace', ns, undefined, () => core.createNamespace({ body: m.namespace }));
  for (const sa of m.serviceAccounts) {
    await step('ServiceAccount', sa.metadata!.name!, ns, () =>
      core.createNamespacedServiceAccount({ namespace: ns, body: sa }),
    );
  }
  for (const role of m.clusterRoles) {
    const name = role.metadata!.name!;
    await step(
      'ClusterRole',
      name,
      undefined,
      () => rbac.createClusterRole({ body: role }),
      () => rbac.replaceClusterRole({ name, body: role }),
    );
  }
  for (const binding of m.clusterRoleBindings) {
    const name = binding.metadata!.name!;
    await step(
      'ClusterRoleBinding',
      name,
      undefined,
      () => rbac.createClusterRoleBinding({ body: binding }),
      () => rbac.replaceClusterRoleBinding({ name, body: binding }),
    );
  }
  const secretName = m.secret.metadata!.name!;
  await step(
    'Secret',
    secretName,
    ns,
    () => core.createNamespacedSecret({ namespace: ns, body: m.secret }),
    () => core.replaceNamespacedSecret({ name: secretName, namespace: ns, body: m.secret }),
  );
  return out;
}

/** True if the cluster already holds a broker identity (the agent then ignores the token). */
export async function hasSecret(kc: KubeConfig, namespace: string, name: string): Promise<boolean> {
  try {
    await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw kubeFailure(kc, `cannot read Secret ${namespace}/${name}`, err);
  }
}

export async function deleteSecret(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name, namespace });
  } catch (err) {
    if (!isNotFound(err)) throw kubeFailure(kc, `cannot delete Secret ${namespace}/${name}`, err);
  }
}

/** Labels (or unlabels) a namespace so the shim offloads its pending GPU pods. */
export async function setNamespaceOffload(
  kc: KubeConfig,
  namespace: string,
  enabled: boolean,
): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  try {
    await core.patchNamespace(
      {
        name: namespace,
        body: { metadata: { labels: { [LABEL_OFFLOAD]: enabled ? OFFLOAD_ENABLED : null } } },
      },
      MERGE_PATCH,
    );
  } catch (err) {
    if (isNotFound(err)) {
      throw new SpillwayError(
        ErrorCode.NOT_FOUND,
        `namespace ${namespace} does not exist in the cluster at ${serverOf(kc)}`,
        { field: 'namespace' },
      );
    }
    throw kubeFailure(kc, `cannot label namespace ${namespace}`, err);
  }
}

/** The origin's virtual node for `donor`, if the shim has registered it. */
export async function readVirtualNode(kc: KubeConfig, donor: string): Promise<V1Node | undefined> {
  try {
    return await kc.makeApiClient(CoreV1Api).readNode({ name: virtualNodeName(donor) });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw kubeFailure(kc, `cannot read node ${virtualNodeName(donor)}`, err);
  }
}

export function nodeReady(node: V1Node | undefined): boolean {
  return node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

/** Pods still in the donor's tenant namespace for `origin` (for unpeer's report). */
export async function listNamespacePods(
  kc: KubeConfig,
  namespace: string,
): Promise<{ name: string; phase: string }[] | undefined> {
  try {
    const list = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace });
    return list.items.map((p) => ({
      name: p.metadata?.name ?? '',
      phase: p.status?.phase ?? 'Unknown',
    }));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw kubeFailure(kc, `cannot list pods in ${namespace}`, err);
  }
}

export async function namespaceExists(kc: KubeConfig, namespace: string): Promise<boolean> {
  try {
    await kc.makeApiClient(CoreV1Api).readNamespace({ name: namespace });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw kubeFailure(kc, `cannot read namespace ${namespace}`, err);
  }
}
