import { networkInterfaces } from 'node:os';
import { readFile } from 'node:fs/promises';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  VersionApi,
  type V1Namespace,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { BrokerClient, type ClusterMessage, type ClusterStream } from '@spillway/api';
import {
  LABEL_DONOR,
  LABEL_OFFLOAD,
  VIRTUAL_NODE_LABEL_TYPE,
  VIRTUAL_NODE_TYPE_VALUE,
  apiMessage,
  loadKubeConfig,
  runInformer,
  stripManagedFields,
  type Logger,
  type ManagedInformer,
} from '@spillway/common';
import type { VirtualNodeConfig } from './config.js';
import { OverflowBinder } from './controllers/binder.js';
import { slimOriginNode } from './forge/origin-fit.js';
import { donorOfNode, type ShimContext } from './controllers/context.js';
import { NodeController } from './controllers/nodes.js';
import { PodLifecycle } from './controllers/pods.js';
import { DonorRegistry } from './donors.js';
import { EventRecorder } from './events.js';
import { OFFLOAD_ENABLED } from './forge/placement.js';
import { loadIdentity, watchIdentity } from './identity.js';
import { startKubeletServer, type KubeletServer } from './kubelet/server.js';
import { RemotePods } from './remote.js';

export const SHIM_VERSION = '0.1.0';

export interface RunningVirtualNode {
  clusterId: string;
  /** The bound kubelet port (useful with --kubelet-port 0). */
  kubeletPort: number;
  stream: ClusterStream;
  /** Stops controllers, streams and servers. Running remote pods are left untouched. */
  stop(): Promise<void>;
}

/** This host's first non-internal IPv4: where the API server can reach the kubelet port. */
export function defaultNodeAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/**
 * Wires the shim: identity → origin caches (synced first) → controllers → kubelet endpoint →
 * the broker stream, whose PeeringState, pod statuses and events drive the controllers.
 */
export async function startVirtualNode(
  config: VirtualNodeConfig,
  rootLogger: Logger,
): Promise<RunningVirtualNode> {
  const undo: (() => Promise<unknown>)[] = [];
  const rollback = async (): Promise<void> => {
    for (const step of undo.splice(0).reverse()) {
      await step().catch((err: unknown) => rootLogger.warn({ err }, 'error while stopping'));
    }
  };
  const abort = new AbortController();
  undo.push(() => Promise.resolve(abort.abort()));
  try {
    const kc = loadKubeConfig({
      ...(config.kubeconfig ? { kubeconfig: config.kubeconfig } : {}),
      ...(config.context ? { context: config.context } : {}),
    });
    const identity = await loadIdentity(config, kc, rootLogger, abort.signal);
    const logger = rootLogger.child({ cluster: identity.clusterId });
    const core = kc.makeApiClient(CoreV1Api);
    const coordination = kc.makeApiClient(CoordinationV1Api);
    const version = await kc
      .makeApiClient(VersionApi)
      .getCode()
      .then((v) => v.gitVersion)
      .catch((err: unknown) => {
        // Only shown as the virtual nodes' kubelet version: not worth failing the start.
        logger.warn({ err: apiMessage(err) }, 'could not read the API server version');
        return 'v0.0.0';
      });

    const broker = new BrokerClient({
      address: config.brokerAddress,
      caPem: identity.caPem,
      certPem: identity.certPem,
      keyPem: identity.keyPem,
      logger: logger.child({ component: 'broker-client' }),
      ...(config.brokerServerName ? { serverName: config.brokerServerName } : {}),
    });
    undo.push(() => broker.close());
    const identityWatch = watchIdentity(
      kc,
      config,
      identity,
      (id) => broker.updateIdentity(id),
      logger,
    );
    if (identityWatch) undo.push(() => identityWatch.stop());

    const informerLog = logger.child({ component: 'informers' });
    const pods = runInformer<V1Pod>(
      kc,
      '/api/v1/pods',
      () => core.listPodForAllNamespaces(),
      informerLog.child({ informer: 'pods' }),
      { transform: stripManagedFields },
    );
    undo.push(() => pods.stop());
    const nodeSelector = `${VIRTUAL_NODE_LABEL_TYPE}=${VIRTUAL_NODE_TYPE_VALUE}`;
    const nodes = runInformer<V1Node>(
      kc,
      '/api/v1/nodes',
      () => core.listNode({ labelSelector: nodeSelector }),
      informerLog.child({ informer: 'nodes' }),
      { labelSelector: nodeSelector, transform: stripManagedFields },
    );
    undo.push(() => nodes.stop());
    // The origin's own nodes, as little of them as the fast path reads (originFit).
    const originNodeSelector = `!${LABEL_DONOR}`;
    const originNodes = runInformer<V1Node>(
      kc,
      '/api/v1/nodes',
      () => core.listNode({ labelSelector: originNodeSelector }),
      informerLog.child({ informer: 'origin-nodes' }),
      { labelSelector: originNodeSelector, transform: slimOriginNode },
    );
    undo.push(() => originNodes.stop());
    let namespaces: ManagedInformer<V1Namespace> | undefined;
    if (config.offloadScope === 'labelled') {
      const nsSelector = `${LABEL_OFFLOAD}=${OFFLOAD_ENABLED}`;
      const inf = runInformer<V1Namespace>(
        kc,
        '/api/v1/namespaces',
        () => core.listNamespace({ labelSelector: nsSelector }),
        informerLog.child({ informer: 'namespaces' }),
        { labelSelector: nsSelector, transform: stripManagedFields },
      );
      namespaces = inf;
      undo.push(() => inf.stop());
    }
    // Nothing acts before the caches hold the cluster as it is.
    await Promise.all([pods.synced, nodes.synced, originNodes.synced, namespaces?.synced]);

    const nodeAddress = config.nodeAddress ?? defaultNodeAddress();
    const donors = new DonorRegistry(config.donorLostTimeout);
    const remote = new RemotePods();
    const events = new EventRecorder(core, `${identity.clusterId}/virtual-node`, logger);

    const ctxRef: { ctx?: ShimContext } = {};
    const readPem = async (f: string | undefined): Promise<string | undefined> =>
      f ? readFile(f, 'utf8') : undefined;
    const [certPem, keyPem, clientCaPem] = await Promise.all([
      readPem(config.kubeletCertFile),
      readPem(config.kubeletKeyFile),
      readPem(config.kubeletClientCaFile),
    ]);
    const kubelet: KubeletServer = await startKubeletServer({
      host: config.kubeletBindAddress,
      port: config.kubeletPort,
      ...(certPem && keyPem ? { certPem, keyPem } : {}),
      ...(clientCaPem ? { clientCaPem } : {}),
      address: nodeAddress,
      originCluster: identity.clusterId,
      broker,
      logger,
      lookup: (namespace, name) => {
        const pod = pods.informer.get(name, namespace);
        const donor = ctxRef.ctx ? donorOfNode(ctxRef.ctx, pod?.spec?.nodeName) : undefined;
        return pod && donor ? { pod, donor } : undefined;
      },
    });
    undo.push(() => kubelet.close());

    const holder: { stream?: ClusterStream } = {};
    const send = (msg: ClusterMessage): boolean => holder.stream?.send(msg) ?? false;
    const ctx: ShimContext = {
      originCluster: identity.clusterId,
      config,
      core,
      coordination,
      broker,
      send,
      donors,
      remote,
      events,
      pods,
      nodes,
      originNodes,
      namespaces,
      nodeOptions: {
        nodeAddress,
        kubeletPort: kubelet.port,
        kubeletVersion: version,
        shimVersion: SHIM_VERSION,
      },
      logger,
      customObjects: kc.makeApiClient(CustomObjectsApi),
    };
    ctxRef.ctx = ctx;

    const lifecycle = new PodLifecycle(ctx);
    const nodeController = new NodeController(ctx, (keys) => lifecycle.requeue(keys));
    const binder = new OverflowBinder(ctx);
    lifecycle.start();
    nodeController.start();
    binder.start();
    undo.push(() => binder.stop());
    undo.push(() => nodeController.stop());
    undo.push(() => lifecycle.stop());

    const stream = broker.connect('virtual-node', {
      // Wildcard patterns are ours to match; the broker takes concrete resource names only.
      hello: {
        version: SHIM_VERSION,
        gpu_resources: config.gpuResources.filter((r) => !r.includes('*')),
      },
      onConnected: () => {
        donors.setBrokerConnected(true);
        lifecycle.resyncAll();
        binder.retryWaiting();
      },
      onDisconnected: () => donors.setBrokerConnected(false),
      onPeerings: (state) => donors.update(state),
      onPodStatus: (e) => lifecycle.onPodStatus(e),
      onPodEvent: (e) => lifecycle.onPodEvent(e),
    });
    holder.stream = stream;
    // Closed before the controllers stop, so nothing new arrives while they drain.
    undo.push(() => stream.close());

    logger.info(
      {
        scope: config.offloadScope,
        gracePeriodMs: config.gracePeriod,
        nodeAddress,
        kubeletPort: kubelet.port,
        kubeletVersion: version,
      },
      'virtual-node shim started',
    );
    let stopping: Promise<void> | undefined;
    return {
      clusterId: identity.clusterId,
      kubeletPort: kubelet.port,
      stream,
      stop: () => (stopping ??= rollback()),
    };
  } catch (err) {
    await rollback();
    throw err;
  }
}
