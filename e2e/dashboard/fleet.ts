// A small fleet for the dashboard's browser test and its screenshots: the real broker
// process (SQLite file, REST on port 0) and clusters simulated over real mTLS gRPC: each donor
// agent holds its own Connect stream and reports a synthetic inventory, and the origin
// places pods through PlacementService as the virtual-node shim does.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@spillway/common';
import {
  BrokerClient,
  joinCluster,
  type ClusterStream,
  type JoinedIdentity,
  type NodeCapacity,
} from '@spillway/api';
import {
  ADMIN_TOKEN,
  VIEWER_TOKEN,
  startBrokerProcess,
  type BrokerProcess,
} from '../bench/lib/broker.js';

export { ADMIN_TOKEN, VIEWER_TOKEN };

const MEMORY_MIB: Record<string, number> = {
  'NVIDIA-H100-80GB-HBM3': 81559,
  'NVIDIA-A100-SXM4-80GB': 81920,
  'NVIDIA-L4': 23034,
};

export interface SimNode {
  name: string;
  product: string;
  gpus: number;
  /** Free as the donor's kubelet sees it (its own pods and bound guests take the rest). */
  free: number;
  ready?: boolean;
  labels?: Record<string, string>;
  /** Origin pod uids running here (already subtracted from `free`). */
  offloaded?: string[];
}

function nodeCapacity(n: SimNode): NodeCapacity {
  return {
    name: n.name,
    gpus: { 'nvidia.com/gpu': { allocatable: n.gpus, free: n.free } },
    gpu_product: n.product,
    gpu_memory_mib: MEMORY_MIB[n.product] ?? 0,
    labels: {
      'kubernetes.io/hostname': n.name,
      'nvidia.com/gpu.product': n.product,
      'nvidia.com/gpu.count': String(n.gpus),
      ...n.labels,
    },
    taints: [],
    ready: n.ready ?? true,
    cordoned: false,
    cpu_allocatable_millis: 64_000,
    cpu_free_millis: 48_000,
    memory_allocatable_bytes: 512 * 1024 ** 3,
    memory_free_bytes: 384 * 1024 ** 3,
    offloaded_pod_uids: n.offloaded ?? [],
  };
}

export interface SimDonor {
  id: string;
  nodes: Map<string, SimNode>;
  client: BrokerClient;
  stream: ClusterStream;
  /** Sends one node's new state, as an agent does when a pod starts or ends. */
  update(node: Partial<SimNode> & { name: string }): Promise<void>;
  /** Reports an origin pod's status on this donor (binds its reservation). */
  podStatus(pod: PodRef, node: string, phase: string): void;
}

export interface PodRef {
  origin_cluster: string;
  namespace: string;
  name: string;
  uid: string;
}

export interface DashboardFleet {
  broker: BrokerProcess;
  url: string;
  donors: Map<string, SimDonor>;
  origin: { id: string; client: BrokerClient };
  place(pod: Omit<PodRef, 'origin_cluster'>, gpus: number, product?: string): Promise<string>;
  release(reservationId: string, reason: string): Promise<void>;
  stop(): Promise<void>;
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts the broker, joins `donors` and one origin, and peers the origin with every donor. */
export async function startDashboardFleet(
  donors: { id: string; nodes: SimNode[]; maxGpus?: number; gpuProducts?: string[] }[],
  originId = 'lab-origin',
): Promise<DashboardFleet> {
  const dir = await mkdtemp(join(tmpdir(), 'spillway-dashboard-'));
  const broker = await startBrokerProcess({ dir, store: 'sqlite' });
  const privateKeyPem = generateKeyPair().privateKeyPem;
  const join_ = async (clusterId: string, role: 'origin' | 'donor'): Promise<JoinedIdentity> => {
    const { token } = await broker.rest<{ token: string }>('POST', '/api/v1/join-tokens', {
      clusterId,
      role,
    });
    return joinCluster({
      brokerAddress: broker.grpcAddress,
      caPem: broker.caPem,
      token,
      privateKeyPem,
      serverName: 'localhost',
    });
  };
  const client = (id: JoinedIdentity): BrokerClient =>
    new BrokerClient({
      address: broker.grpcAddress,
      caPem: id.caPem,
      certPem: id.certPem,
      keyPem: id.keyPem,
      serverName: 'localhost',
    });

  const started = new Map<string, SimDonor>();
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled([...started.values()].map((d) => d.client.close()));
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const spec of donors) {
      const id = await join_(spec.id, 'donor');
      const c = client(id);
      const nodes = new Map(spec.nodes.map((n) => [n.name, { ...n }]));
      let sequence = 0;
      const stream = c.connect(
        'agent',
        {
          hello: {
            version: 'dashboard-e2e',
            kubernetes_version: 'v1.33.0',
            gpu_resources: ['nvidia.com/gpu'],
          },
          onConnected: (s) => {
            s.send({
              capacity: {
                full: true,
                nodes: [...nodes.values()].map(nodeCapacity),
                removed_nodes: [],
                sequence: ++sequence,
              },
            });
          },
        },
        { backoff: { baseMs: 200, maxMs: 2_000 } },
      );
      await stream.waitConnected(15_000);
      const donor: SimDonor = {
        id: spec.id,
        nodes,
        client: c,
        stream,
        async update(change) {
          const node = { ...nodes.get(change.name)!, ...change };
          nodes.set(node.name, node);
          if (
            !stream.send({
              capacity: {
                full: false,
                nodes: [nodeCapacity(node)],
                removed_nodes: [],
                sequence: ++sequence,
              },
            })
          )
            throw new Error(`${spec.id}: the stream refused a capacity report`);
          await Promise.resolve();
        },
        podStatus(pod, node, phase) {
          stream.send({
            pod_status: {
              pod,
              donor_cluster: spec.id,
              remote_namespace: `spillway-${pod.origin_cluster}`,
              remote_name: pod.name,
              node_name: node,
              status_json: JSON.stringify({ phase }),
              deleted: false,
              observed_unix_ms: Date.now(),
            },
          });
        },
      };
      started.set(spec.id, donor);
      // The inventory is in before the next step reads it.
      await waitFor(`${spec.id}'s inventory`, async () => {
        const c2 = await broker.rest<{ nodes: unknown[] }>('GET', `/api/v1/clusters/${spec.id}`);
        return c2.nodes.length === spec.nodes.length;
      });
    }
    const originId_ = await join_(originId, 'origin');
    const originClient = client(originId_);
    for (const spec of donors) {
      await broker.rest('POST', '/api/v1/peerings', {
        origin: originId,
        donor: spec.id,
        ...(spec.maxGpus === undefined ? {} : { maxGpus: spec.maxGpus }),
        ...(spec.gpuProducts === undefined ? {} : { gpuProducts: spec.gpuProducts }),
      });
    }
    return {
      broker,
      url: `${broker.restUrl}/ui/`,
      donors: started,
      origin: { id: originId, client: originClient },
      async place(pod, gpus, product) {
        const res = await originClient.place({
          pod: { origin_cluster: originId, ...pod },
          resource_name: 'nvidia.com/gpu',
          gpus,
          node_requirements:
            product === undefined
              ? []
              : [{ key: 'nvidia.com/gpu.product', operator: 'In', values: [product] }],
          tolerations: [],
          donors: [],
        });
        if (!res.reservation)
          throw new Error(`place ${pod.name}: ${res.reason_code} ${res.reason}`);
        return res.reservation.id;
      },
      async release(reservationId, reason) {
        await originClient.release({ reservation_id: reservationId, reason });
      },
      async stop() {
        await originClient.close();
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
