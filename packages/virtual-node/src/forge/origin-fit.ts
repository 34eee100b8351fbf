import type { V1Node, V1NodeSelectorRequirement, V1Pod } from '@kubernetes/client-node';
import { GFD_PRODUCT_LABEL, LABEL_DONOR, VIRTUAL_NODE_LABEL_TYPE } from '@spillway/common';
import { GPU_PRODUCT_LABEL_PREFIX } from './node.js';
import { gpuDemand } from './placement.js';

/**
 * Pure: whether any of the origin's own nodes could ever run a GPU pod, judged only by what
 * those nodes are (GPU resource, how many GPUs a node holds, GPU product), never by what is
 * free on them now. Cordoned and NotReady nodes count: they may come back. Virtual nodes
 * never count. A pod no origin node could run is offloaded without the grace period, since
 * waiting cannot make local capacity appear.
 */
export type OriginFit = { never: false } | { never: true; reason: string };

/** The GPU products a node has: its GFD label. */
function productOf(node: V1Node): string | undefined {
  return node.metadata?.labels?.[GFD_PRODUCT_LABEL];
}

function isVirtual(node: V1Node): boolean {
  const l = node.metadata?.labels ?? {};
  return l[VIRTUAL_NODE_LABEL_TYPE] !== undefined && l[LABEL_DONOR] !== undefined;
}

/** The pod's requirements on the GPU product, as requirements on the GFD label. */
function productRequirements(
  exprs: readonly V1NodeSelectorRequirement[],
): ((p?: string) => boolean)[] {
  const out: ((p?: string) => boolean)[] = [];
  for (const r of exprs) {
    const values = r.values ?? [];
    if (r.key === GFD_PRODUCT_LABEL) {
      if (r.operator === 'In') out.push((p) => p !== undefined && values.includes(p));
      else if (r.operator === 'NotIn') out.push((p) => p === undefined || !values.includes(p));
      else if (r.operator === 'Exists') out.push((p) => p !== undefined);
      else if (r.operator === 'DoesNotExist') out.push((p) => p === undefined);
    } else if (r.key.startsWith(GPU_PRODUCT_LABEL_PREFIX)) {
      // The per-product labels only virtual nodes carry: on an origin node they mean its product.
      const product = r.key.slice(GPU_PRODUCT_LABEL_PREFIX.length);
      const has = (p?: string): boolean => p === product;
      if (r.operator === 'DoesNotExist' || r.operator === 'NotIn') out.push((p) => !has(p));
      else out.push(has);
    }
  }
  return out;
}

/** Whether a node's product satisfies the pod's product constraints (selector and affinity). */
function productMatcher(pod: V1Pod): (product?: string) => boolean {
  const fromSelector = productRequirements(
    Object.entries(pod.spec?.nodeSelector ?? {}).map(([key, v]) => ({
      key,
      operator: 'In',
      values: [v],
    })),
  );
  const terms =
    pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
      ?.nodeSelectorTerms ?? [];
  const termReqs = terms.map((t) => productRequirements(t.matchExpressions ?? []));
  return (p) =>
    fromSelector.every((f) => f(p)) &&
    (termReqs.length === 0 || termReqs.some((reqs) => reqs.every((f) => f(p))));
}

function gpusOf(node: V1Node, resource: string): number {
  const q = node.status?.capacity?.[resource] ?? node.status?.allocatable?.[resource];
  const n = q === undefined ? 0 : Number.parseInt(q, 10);
  return Number.isFinite(n) ? n : 0;
}

export function originFit(
  pod: V1Pod,
  nodes: readonly V1Node[],
  gpuResources: readonly string[],
): OriginFit {
  const demand = gpuDemand(pod, gpuResources);
  if (!demand || 'error' in demand) return { never: false };
  const origin = nodes.filter((n) => !isVirtual(n));
  const withResource = origin.filter((n) => gpusOf(n, demand.resource) > 0);
  if (withResource.length === 0)
    return { never: true, reason: `no origin node has ${demand.resource}` };
  const big = withResource.filter((n) => gpusOf(n, demand.resource) >= demand.gpus);
  if (big.length === 0) {
    const most = Math.max(...withResource.map((n) => gpusOf(n, demand.resource)));
    return {
      never: true,
      reason: `the pod asks for ${demand.gpus} ${demand.resource} and no origin node has more than ${most}`,
    };
  }
  const matches = productMatcher(pod);
  if (!big.some((n) => matches(productOf(n)))) {
    const products = [...new Set(big.map((n) => productOf(n) ?? 'unlabelled'))].sort();
    return {
      never: true,
      reason: `no origin node with ${demand.gpus} ${demand.resource} has the GPU product the pod asks for (origin has ${products.join(', ')})`,
    };
  }
  return { never: false };
}

/** What the shim caches of an origin node: what originFit reads, nothing else. */
export function slimOriginNode(node: V1Node): V1Node {
  return {
    ...(node.apiVersion ? { apiVersion: node.apiVersion } : {}),
    ...(node.kind ? { kind: node.kind } : {}),
    metadata: {
      ...(node.metadata?.name ? { name: node.metadata.name } : {}),
      ...(node.metadata?.uid ? { uid: node.metadata.uid } : {}),
      ...(node.metadata?.resourceVersion ? { resourceVersion: node.metadata.resourceVersion } : {}),
      ...(node.metadata?.labels ? { labels: node.metadata.labels } : {}),
    },
    status: {
      ...(node.status?.capacity ? { capacity: node.status.capacity } : {}),
      ...(node.status?.allocatable ? { allocatable: node.status.allocatable } : {}),
    },
  };
}
