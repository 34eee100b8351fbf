import type {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  V1Namespace,
  V1Node,
  V1Pod,
} from '@kubernetes/client-node';
import type { BrokerClient, ClusterMessage } from '@spillway/api';
import {
  LABEL_DONOR,
  VIRTUAL_NODE_LABEL_TYPE,
  VIRTUAL_NODE_TYPE_VALUE,
  virtualNodeName,
  type Logger,
  type ManagedInformer,
} from '@spillway/common';
import type { VirtualNodeConfig } from '../config.js';
import type { DonorRegistry } from '../donors.js';
import type { EventRecorder } from '../events.js';
import type { VirtualNodeOptions } from '../forge/node.js';
import type { RemotePods } from '../remote.js';

/** Everything the shim's controllers share: clients, caches and what is known of donors. */
export interface ShimContext {
  originCluster: string;
  config: VirtualNodeConfig;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  broker: BrokerClient;
  /** Sends on the shim's broker stream; false while disconnected. */
  send: (msg: ClusterMessage) => boolean;
  donors: DonorRegistry;
  remote: RemotePods;
  events: EventRecorder;
  pods: ManagedInformer<V1Pod>;
  nodes: ManagedInformer<V1Node>;
  /** The origin's own nodes (not virtual), slimmed to labels and GPU capacity. */
  originNodes: ManagedInformer<V1Node>;
  /** Namespaces opted in to offloading; undefined when the scope is every namespace. */
  namespaces: ManagedInformer<V1Namespace> | undefined;
  nodeOptions: VirtualNodeOptions;
  logger: Logger;
  /** Reads the objects that say how big a gang is (JobSet, PodGroup, Job, RayCluster, ...). */
  customObjects?: CustomObjectsApi;
}

export function podKey(pod: { metadata?: { namespace?: string; name?: string } }): string {
  return `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export function isVirtualNode(node: V1Node | undefined): boolean {
  return (
    node?.metadata?.labels?.[VIRTUAL_NODE_LABEL_TYPE] === VIRTUAL_NODE_TYPE_VALUE &&
    !!node.metadata.labels[LABEL_DONOR]
  );
}

/**
 * The donor behind a virtual node name: from the Node's label when it exists, else from the
 * naming rule for donors the broker told us of.
 */
export function donorOfNode(ctx: ShimContext, nodeName: string | undefined): string | undefined {
  if (!nodeName) return undefined;
  const node = ctx.nodes.informer.get(nodeName);
  if (node && isVirtualNode(node)) {
    const donor = node.metadata!.labels![LABEL_DONOR]!;
    if (virtualNodeName(donor) === nodeName) return donor;
  }
  for (const v of ctx.donors.list()) if (virtualNodeName(v.donor) === nodeName) return v.donor;
  return undefined;
}

/** Pods bound to a node, from the cache. */
export function podsOnNode(ctx: ShimContext, nodeName: string): V1Pod[] {
  return ctx.pods.informer.list().filter((p) => p.spec?.nodeName === nodeName);
}

export function namespaceOptedIn(ctx: ShimContext, namespace: string): boolean {
  if (!ctx.namespaces) return true;
  return ctx.namespaces.informer.get(namespace) !== undefined;
}
