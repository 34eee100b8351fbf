import { createHash } from 'node:crypto';
import type {
  V1Affinity,
  V1ConfigMap,
  V1Container,
  V1NodeSelectorRequirement,
  V1NodeSelectorTerm,
  V1ObjectMeta,
  V1Pod,
  V1Secret,
  V1Toleration,
  V1Volume,
} from '@kubernetes/client-node';
import {
  ANNOTATION_ORIGIN_NAME,
  ANNOTATION_ORIGIN_NAMESPACE,
  ANNOTATION_RESERVATION,
  GFD_COUNT_LABEL,
  GFD_MEMORY_LABEL,
  GFD_PRODUCT_LABEL,
  LABEL_MANAGED_BY,
  LABEL_ORIGIN_CLUSTER,
  LABEL_ORIGIN_UID,
  LABEL_REFLECTED,
  MANAGED_BY_VALUE,
  VIRTUAL_NODE_TAINT_KEY,
  guestGracePeriod,
  isServiceAccountTokenVolume,
} from '@spillway/common';

/**
 * Pure translations between an origin's objects and their donor copies. No I/O: every
 * function here is table-tested.
 */

export interface OriginPodIdentity {
  originCluster: string;
  namespace: string;
  name: string;
  uid: string;
}

/** Node labels a pod may keep constraining on a donor: the GPU Feature Discovery ones. */
const GPU_LABELS = new Set([GFD_PRODUCT_LABEL, GFD_MEMORY_LABEL, GFD_COUNT_LABEL]);
const HOSTNAME_LABEL = 'kubernetes.io/hostname';

function shortHash(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 8);
}

/**
 * The donor pod's name: readable, unique per origin pod (namespaces share one tenant
 * namespace; the uid hash keeps a re-created pod of the same name apart), ≤ 63 characters.
 */
export function remotePodName(id: OriginPodIdentity): string {
  const base = `${id.namespace}-${id.name}`
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 54)
    .replace(/-+$/, '');
  return `${base}-${shortHash(id.uid)}`;
}

/** A reflected ConfigMap/Secret's name in the tenant namespace (namespaces cannot contain dots). */
export function reflectedName(originNamespace: string, name: string): string {
  return `${originNamespace}.${name}`;
}

function stripMeta(meta: V1ObjectMeta | undefined): {
  labels: Record<string, string>;
  annotations: Record<string, string>;
} {
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta?.labels ?? {})) {
    // An origin cannot set Spillway's own labels on the donor.
    if (!k.startsWith('spillway.io/')) labels[k] = v;
  }
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta?.annotations ?? {})) {
    if (!k.startsWith('spillway.io/') && k !== 'kubectl.kubernetes.io/last-applied-configuration')
      annotations[k] = v;
  }
  return { labels, annotations };
}

function keepGpuRequirements(
  reqs: V1NodeSelectorRequirement[] | undefined,
): V1NodeSelectorRequirement[] {
  return (reqs ?? []).filter((r) => GPU_LABELS.has(r.key));
}

function translateAffinity(
  affinity: V1Affinity | undefined,
  node: string | undefined,
): V1Affinity | undefined {
  const terms =
    affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  const pin: V1NodeSelectorRequirement[] = node
    ? [{ key: HOSTNAME_LABEL, operator: 'In', values: [node] }]
    : [];
  let kept: V1NodeSelectorTerm[] = terms
    .map((t) => ({ matchExpressions: [...keepGpuRequirements(t.matchExpressions), ...pin] }))
    .filter((t) => t.matchExpressions.length > 0);
  if (kept.length === 0 && pin.length > 0) kept = [{ matchExpressions: pin }];
  if (kept.length === 0) return undefined;
  // Pod (anti-)affinity refers to the origin's pods and cannot hold on the donor.
  return {
    nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: kept } },
  };
}

function translateTolerations(
  tolerations: V1Toleration[] | undefined,
  extra: readonly V1Toleration[],
): V1Toleration[] {
  const out = (tolerations ?? []).filter(
    (t) => t.key !== VIRTUAL_NODE_TAINT_KEY && !t.key?.startsWith('node.kubernetes.io/'),
  );
  for (const t of extra) {
    if (!out.some((o) => o.key === t.key && o.effect === t.effect)) out.push(t);
  }
  return out;
}

function renameRefs(pod: V1Pod, ns: string): void {
  // An empty or null name references nothing (the policy skips it); renaming would invent one.
  const rn = (n: string | undefined): string | undefined => (n ? reflectedName(ns, n) : n);
  const spec = pod.spec!;
  const fixContainer = (c: V1Container): void => {
    for (const e of c.envFrom ?? []) {
      if (e.configMapRef) e.configMapRef.name = rn(e.configMapRef.name)!;
      if (e.secretRef) e.secretRef.name = rn(e.secretRef.name)!;
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.configMapKeyRef)
        e.valueFrom.configMapKeyRef.name = rn(e.valueFrom.configMapKeyRef.name)!;
      if (e.valueFrom?.secretKeyRef)
        e.valueFrom.secretKeyRef.name = rn(e.valueFrom.secretKeyRef.name)!;
    }
  };
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) fixContainer(c);
  for (const v of spec.volumes ?? []) {
    if (v.configMap) v.configMap.name = rn(v.configMap.name)!;
    if (v.secret) v.secret.secretName = rn(v.secret.secretName)!;
    for (const s of v.projected?.sources ?? []) {
      if (s.configMap) s.configMap.name = rn(s.configMap.name)!;
      if (s.secret) s.secret.name = rn(s.secret.name)!;
    }
  }
  if (spec.imagePullSecrets)
    spec.imagePullSecrets = spec.imagePullSecrets.map((s) => ({ name: rn(s.name)! }));
}

export interface TranslatePodOptions {
  tenantNamespace: string;
  /** The donor node the broker reserved; the pod is pinned to it by node affinity. */
  node?: string;
  reservationId?: string;
  /** Tolerations for the donor's GPU node taints. */
  gpuTolerations?: readonly V1Toleration[];
  allowServiceAccountToken?: boolean;
  /** The donor's PriorityClass for guests; the origin's own priority never crosses over. */
  priorityClassName?: string;
  /** The donor's cap on a guest's termination grace period, seconds. */
  maxGracePeriodSeconds?: number;
}

/**
 * Origin pod → donor pod. Keeps what the workload needs (containers, volumes it was sent,
 * restart policy, security context, GPU node constraints); drops what belongs to the origin
 * (scheduling, priority, owner references, service account, the API server's injected token
 * volume, pod affinity); runs it at the donor's guest priority, with the donor's cap on its
 * notice; records where it came from.
 */
export function translatePod(
  origin: V1Pod,
  id: OriginPodIdentity,
  opts: TranslatePodOptions,
): V1Pod {
  const src = structuredClone(origin);
  const spec = src.spec!;
  const { labels, annotations } = stripMeta(src.metadata);
  labels[LABEL_ORIGIN_CLUSTER] = id.originCluster;
  labels[LABEL_ORIGIN_UID] = id.uid;
  labels[LABEL_MANAGED_BY] = MANAGED_BY_VALUE;
  annotations[ANNOTATION_ORIGIN_NAMESPACE] = id.namespace;
  annotations[ANNOTATION_ORIGIN_NAME] = id.name;
  if (opts.reservationId) annotations[ANNOTATION_RESERVATION] = opts.reservationId;

  const dropMounts = (c: V1Container): V1Container => ({
    ...c,
    volumeMounts: (c.volumeMounts ?? []).filter((m) => !isServiceAccountTokenVolume(m.name)),
  });
  const volumes: V1Volume[] = (spec.volumes ?? []).filter(
    (v) => !isServiceAccountTokenVolume(v.name),
  );
  const nodeSelector: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {}))
    if (GPU_LABELS.has(k)) nodeSelector[k] = v;

  const out: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: remotePodName(id), namespace: opts.tenantNamespace, labels, annotations },
    spec: {
      containers: spec.containers.map(dropMounts),
      ...(spec.initContainers ? { initContainers: spec.initContainers.map(dropMounts) } : {}),
      ...(volumes.length > 0 ? { volumes } : {}),
      restartPolicy: spec.restartPolicy ?? 'Always',
      ...(opts.maxGracePeriodSeconds !== undefined
        ? {
            terminationGracePeriodSeconds: guestGracePeriod(
              spec.terminationGracePeriodSeconds,
              opts.maxGracePeriodSeconds,
            ),
          }
        : spec.terminationGracePeriodSeconds !== undefined
          ? { terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds }
          : {}),
      ...(opts.priorityClassName ? { priorityClassName: opts.priorityClassName } : {}),
      ...(spec.activeDeadlineSeconds !== undefined
        ? { activeDeadlineSeconds: spec.activeDeadlineSeconds }
        : {}),
      ...(spec.securityContext ? { securityContext: spec.securityContext } : {}),
      ...(spec.imagePullSecrets ? { imagePullSecrets: spec.imagePullSecrets } : {}),
      ...(spec.runtimeClassName ? { runtimeClassName: spec.runtimeClassName } : {}),
      ...(spec.shareProcessNamespace !== undefined
        ? { shareProcessNamespace: spec.shareProcessNamespace }
        : {}),
      ...(spec.dnsConfig ? { dnsConfig: spec.dnsConfig } : {}),
      ...(spec.hostAliases ? { hostAliases: spec.hostAliases } : {}),
      ...(Object.keys(nodeSelector).length > 0 ? { nodeSelector } : {}),
      automountServiceAccountToken: opts.allowServiceAccountToken === true,
      enableServiceLinks: false,
    },
  };
  const affinity = translateAffinity(spec.affinity, opts.node);
  if (affinity) out.spec!.affinity = affinity;
  const tolerations = translateTolerations(spec.tolerations, opts.gpuTolerations ?? []);
  if (tolerations.length > 0) out.spec!.tolerations = tolerations;
  renameRefs(out, id.namespace);
  return out;
}

/** Origin ConfigMap → its reflection in the tenant namespace. */
export function reflectConfigMap(
  cm: V1ConfigMap,
  originCluster: string,
  tenantNamespace: string,
): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: reflectedMeta(cm.metadata, originCluster, tenantNamespace),
    ...(cm.data ? { data: cm.data } : {}),
    ...(cm.binaryData ? { binaryData: cm.binaryData } : {}),
  };
}

/** Origin Secret → its reflection. Service-account token Secrets are never reflected. */
export function reflectSecret(
  secret: V1Secret,
  originCluster: string,
  tenantNamespace: string,
): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: reflectedMeta(secret.metadata, originCluster, tenantNamespace),
    type:
      secret.type === 'kubernetes.io/service-account-token' ? 'Opaque' : (secret.type ?? 'Opaque'),
    ...(secret.data ? { data: secret.data } : {}),
    ...(secret.stringData ? { stringData: secret.stringData } : {}),
  };
}

function reflectedMeta(
  meta: V1ObjectMeta | undefined,
  originCluster: string,
  tenantNamespace: string,
): V1ObjectMeta {
  const ns = meta?.namespace ?? 'default';
  const name = meta?.name ?? '';
  return {
    name: reflectedName(ns, name),
    namespace: tenantNamespace,
    labels: {
      [LABEL_ORIGIN_CLUSTER]: originCluster,
      [LABEL_REFLECTED]: 'true',
      [LABEL_MANAGED_BY]: MANAGED_BY_VALUE,
    },
    annotations: { [ANNOTATION_ORIGIN_NAMESPACE]: ns, [ANNOTATION_ORIGIN_NAME]: name },
  };
}

/** Reads the origin identity back from a donor pod's labels and annotations. */
export function originOf(pod: V1Pod): OriginPodIdentity | undefined {
  const l = pod.metadata?.labels ?? {};
  const a = pod.metadata?.annotations ?? {};
  const originCluster = l[LABEL_ORIGIN_CLUSTER];
  const uid = l[LABEL_ORIGIN_UID];
  const namespace = a[ANNOTATION_ORIGIN_NAMESPACE];
  const name = a[ANNOTATION_ORIGIN_NAME];
  if (!originCluster || !uid || !namespace || !name) return undefined;
  return { originCluster, uid, namespace, name };
}
