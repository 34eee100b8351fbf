import {
  AuthorizationV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  type KubeConfig,
  type V1Namespace,
  type V1ResourceQuota,
  type V1RoleBinding,
} from '@kubernetes/client-node';
import type { Peering__Output } from '@spillway/api';
import {
  LABEL_MANAGED_BY,
  LABEL_ORIGIN_CLUSTER,
  LABEL_TENANT,
  MANAGED_BY_VALUE,
  MERGE_PATCH,
  apiMessage,
  isAlreadyExists,
  isNotFound,
  tenantNamespace,
  type Logger,
} from '@spillway/common';

export const QUOTA_NAME = 'spillway-tenant';
export const TENANT_ROLE_BINDING_NAME = 'spillway-agent';

/**
 * How the agent gets its rights inside a tenant namespace when it runs with least privilege
 * (the Helm chart): it binds one ClusterRole to its own ServiceAccount there, right after
 * creating the namespace. An admission policy keeps it to exactly that binding.
 */
export interface TenantAccess {
  clusterRole: string;
  serviceAccount: { namespace: string; name: string };
}

/** Pure: the RoleBinding that gives the agent its rights in one tenant namespace. */
export function tenantRoleBinding(namespace: string, access: TenantAccess): V1RoleBinding {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: {
      name: TENANT_ROLE_BINDING_NAME,
      namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE },
    },
    roleRef: {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: access.clusterRole,
    },
    subjects: [{ kind: 'ServiceAccount', ...access.serviceAccount }],
  };
}

export interface Tenant {
  origin: string;
  namespace: string;
  maxGpus: number;
  podSecurity: 'restricted' | 'baseline';
  /** Set while the peering drains: no new pods. */
  draining: boolean;
}

/** The desired tenant namespace of one peering: pure, tested. */
export function tenantNamespaceObject(
  t: Tenant,
  gpuResources: readonly string[],
): { ns: V1Namespace; quota: V1ResourceQuota | undefined } {
  const ns: V1Namespace = {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: t.namespace,
      labels: {
        [LABEL_TENANT]: 'true',
        [LABEL_ORIGIN_CLUSTER]: t.origin,
        [LABEL_MANAGED_BY]: MANAGED_BY_VALUE,
        'pod-security.kubernetes.io/enforce': t.podSecurity,
        'pod-security.kubernetes.io/enforce-version': 'latest',
        'pod-security.kubernetes.io/warn': t.podSecurity,
      },
    },
  };
  if (t.maxGpus <= 0) return { ns, quota: undefined };
  const hard: Record<string, string> = {};
  // Only concrete resource names can be quoted; wildcard patterns (MIG) are left to the broker.
  for (const r of gpuResources) if (!r.includes('*')) hard[`requests.${r}`] = String(t.maxGpus);
  const quota: V1ResourceQuota = {
    apiVersion: 'v1',
    kind: 'ResourceQuota',
    metadata: {
      name: QUOTA_NAME,
      namespace: t.namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE },
    },
    spec: { hard },
  };
  return { ns, quota };
}

export function tenantsFromPeerings(asDonor: readonly Peering__Output[]): Tenant[] {
  return asDonor.map((p) => ({
    origin: p.origin_cluster,
    namespace: p.tenant_namespace || tenantNamespace(p.origin_cluster),
    maxGpus: p.max_gpus,
    podSecurity: p.pod_security === 'restricted' ? 'restricted' : 'baseline',
    draining: p.deleting_since !== '',
  }));
}

/** What `ensure` writes for a tenant: when it is unchanged, there is nothing to write again. */
function tenantFingerprint(t: Tenant): string {
  return JSON.stringify([t.namespace, t.maxGpus, t.podSecurity, t.draining]);
}

/** How often every tenant namespace is written again even when the peering did not change. */
const FULL_SYNC_MS = 60_000;

/**
 * Keeps one tenant namespace per peered origin, with its quota and Pod Security level, and
 * removes the namespaces of origins no longer peered (which deletes their pods).
 *
 * The broker pushes the peering state every time what a donor lends changes, often several
 * times a second under load, while the peerings themselves rarely change. So passes are
 * coalesced (one runs at a time, the next one takes the latest state), and a pass writes only
 * the tenants whose desired namespace changed since it was last written — every one of them
 * again after FULL_SYNC_MS or a failure, so the namespaces still converge level-triggered.
 */
export class TenantManager {
  private readonly core: CoreV1Api;
  private tenants = new Map<string, Tenant>();
  private known = false;
  /** Origin → fingerprint of the tenant as last written to the API server. */
  private readonly applied = new Map<string, string>();
  private lastFull = 0;
  private sweepNeeded = true;
  private running: Promise<void> | undefined;
  private again = false;
  /** Settles the callers waiting for the pass after the running one. */
  private next: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } =
    TenantManager.deferred();

  private readonly rbac: RbacAuthorizationV1Api;
  private readonly authz: AuthorizationV1Api;

  constructor(
    kc: KubeConfig,
    private readonly gpuResources: readonly string[],
    private readonly logger: Logger,
    private readonly access?: TenantAccess,
    private readonly now: () => number = Date.now,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    this.authz = kc.makeApiClient(AuthorizationV1Api);
  }

  private static deferred(): {
    promise: Promise<void>;
    resolve: () => void;
    reject: (e: unknown) => void;
  } {
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A failed pass is also reported by the pass that follows; waiters see it, not the process.
    promise.catch(() => undefined);
    return { promise, resolve, reject };
  }

  /** The tenant for an origin, if peered (undefined before the broker has said). */
  get(origin: string): Tenant | undefined {
    return this.tenants.get(origin);
  }

  /** True once the broker has sent at least one PeeringState. */
  get hasPeerings(): boolean {
    return this.known;
  }

  list(): Tenant[] {
    return [...this.tenants.values()];
  }

  /**
   * True when the origin's tenant namespace is written as the latest peering state wants it
   * (or the origin is not peered, so a command for it is refused anyway): its commands need
   * not wait for a pass.
   */
  isReady(origin: string): boolean {
    const t = this.tenants.get(origin);
    return !t || this.applied.get(origin) === tenantFingerprint(t);
  }

  /**
   * Resolves once the origin's tenant namespace is ready for its commands (see isReady), or
   * once the passes under way have ended without making it so (their error is logged by the
   * caller of sync; the command then goes ahead and fails if its namespace is missing).
   */
  async whenReady(origin: string): Promise<void> {
    if (this.isReady(origin)) return;
    // After a failed pass nothing may be running: write it now rather than wait for a push.
    this.running ??= this.loop();
    await this.running;
  }

  /**
   * Takes the latest peering state and resolves once a pass that started after this call has
   * written it. Passes never overlap: calls made while one runs share the pass after it.
   */
  sync(asDonor: readonly Peering__Output[]): Promise<void> {
    const desired = tenantsFromPeerings(asDonor);
    const before = this.tenants;
    this.tenants = new Map(desired.map((t) => [t.origin, t]));
    this.known = true;
    for (const origin of before.keys()) if (!this.tenants.has(origin)) this.sweepNeeded = true;
    const waiter = this.next.promise;
    if (this.running) {
      this.again = true;
    } else {
      this.running = this.loop();
    }
    return waiter;
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        const current = this.next;
        this.next = TenantManager.deferred();
        try {
          await this.pass();
          current.resolve();
        } catch (err) {
          current.reject(err);
        }
      } while (this.again);
    } finally {
      this.running = undefined;
    }
  }

  private async pass(): Promise<void> {
    const full = this.now() - this.lastFull >= FULL_SYNC_MS;
    const sweep = full || this.sweepNeeded;
    this.sweepNeeded = false;
    for (const t of this.tenants.values()) {
      const fp = tenantFingerprint(t);
      if (!full && this.applied.get(t.origin) === fp) continue;
      this.applied.delete(t.origin);
      await this.ensure(t);
      // Only if the peering did not change meanwhile; otherwise the next pass writes it.
      const now = this.tenants.get(t.origin);
      if (now && tenantFingerprint(now) === fp) this.applied.set(t.origin, fp);
    }
    for (const origin of [...this.applied.keys()])
      if (!this.tenants.has(origin)) this.applied.delete(origin);
    if (full) this.lastFull = this.now();
    if (!sweep) return;
    try {
      const existing = await this.core.listNamespace({ labelSelector: `${LABEL_TENANT}=true` });
      for (const ns of existing.items) {
        const origin = ns.metadata?.labels?.[LABEL_ORIGIN_CLUSTER];
        if (origin && !this.tenants.has(origin) && !ns.metadata?.deletionTimestamp) {
          this.logger.info(
            { namespace: ns.metadata?.name, origin },
            'peering removed; deleting tenant namespace',
          );
          await this.core.deleteNamespace({ name: ns.metadata!.name! }).catch((err: unknown) => {
            if (!isNotFound(err)) throw err;
          });
        }
      }
    } catch (err) {
      this.sweepNeeded = true;
      throw err;
    }
  }

  private async ensure(t: Tenant): Promise<void> {
    const { ns, quota } = tenantNamespaceObject(t, this.gpuResources);
    try {
      await this.core.createNamespace({ body: ns });
      this.logger.info({ namespace: t.namespace, origin: t.origin }, 'created tenant namespace');
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      await this.core.patchNamespace(
        { name: t.namespace, body: { metadata: { labels: ns.metadata!.labels } } },
        MERGE_PATCH,
      );
    }
    if (this.access) await this.ensureAccess(t.namespace, this.access);
    if (quota) {
      try {
        await this.core.createNamespacedResourceQuota({ namespace: t.namespace, body: quota });
      } catch (err) {
        if (!isAlreadyExists(err))
          throw new Error(`resource quota for ${t.namespace}: ${apiMessage(err)}`, { cause: err });
        await this.core.patchNamespacedResourceQuota(
          { name: QUOTA_NAME, namespace: t.namespace, body: { spec: quota.spec } },
          MERGE_PATCH,
        );
      }
    } else {
      await this.core
        .deleteNamespacedResourceQuota({ name: QUOTA_NAME, namespace: t.namespace })
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    }
  }

  /** Binds the tenant role, then waits until the API server's authorizer honours it. */
  private async ensureAccess(namespace: string, access: TenantAccess): Promise<void> {
    try {
      await this.rbac.createNamespacedRoleBinding({
        namespace,
        body: tenantRoleBinding(namespace, access),
      });
    } catch (err) {
      if (!isAlreadyExists(err))
        throw new Error(`role binding in ${namespace}: ${apiMessage(err)}`, { cause: err });
    }
    const deadline = Date.now() + 10_000;
    for (;;) {
      const review = await this.authz.createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes: { namespace, verb: 'create', resource: 'pods' } } },
      });
      if (review.status?.allowed) return;
      if (Date.now() > deadline)
        throw new Error(
          `the agent still cannot create pods in ${namespace} after binding ${access.clusterRole}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
