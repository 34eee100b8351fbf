// A load process: many simulated donor agents, each a real cluster identity (its own join
// token, its own certificate) holding its own mTLS Connect stream to the broker. They report
// a synthetic inventory (N nodes × M GPUs) without Kubernetes. Driven over IPC by
// lib/fleet.ts; one such process per slice of the fleet.
import { generateKeyPair } from '@spillway/common';
import { BrokerClient, joinCluster, type ClusterStream, type NodeCapacity } from '@spillway/api';

export interface SimAgentSpec {
  /** Position in the whole fleet. */
  index: number;
  id: string;
  token: string;
  address: string;
  product: string;
}

export type ToWorker =
  | {
      type: 'start';
      caPem: string;
      agents: SimAgentSpec[];
      nodes: number;
      gpusPerNode: number;
      reportEveryMs: number;
      joinConcurrency: number;
    }
  /** Joins more agents (retries with fresh tokens) with the settings of `start`. */
  | { type: 'join'; agents: SimAgentSpec[] }
  | { type: 'stats' }
  /** Moves each agent's stream to addresses[agent.index % n] (a restarted or added replica). */
  | { type: 'retarget'; addresses: string[] }
  | { type: 'stop' };

export interface WorkerStats {
  joined: number;
  connected: number;
  disconnects: number;
  reports: number;
  failures: string[];
}

export type FromWorker =
  | { type: 'progress'; joined: number }
  | ({ type: 'ready'; joinMs: number[]; failed: string[] } & WorkerStats)
  | ({ type: 'stats' } & WorkerStats)
  | { type: 'stopped' }
  | { type: 'retargeted' }
  | { type: 'error'; message: string };

const MEMORY_MIB: Record<string, number> = {
  'NVIDIA-H100-80GB-HBM3': 81559,
  'NVIDIA-A100-SXM4-80GB': 81920,
  'NVIDIA-L4': 23034,
};

export function nodeCapacity(
  name: string,
  product: string,
  gpus: number,
  cpuFreeMillis: number,
): NodeCapacity {
  return {
    name,
    gpus: { 'nvidia.com/gpu': { allocatable: gpus, free: gpus } },
    gpu_product: product,
    gpu_memory_mib: MEMORY_MIB[product] ?? 0,
    labels: {
      'kubernetes.io/hostname': name,
      'nvidia.com/gpu.product': product,
      'nvidia.com/gpu.count': String(gpus),
    },
    taints: [],
    ready: true,
    cordoned: false,
    cpu_allocatable_millis: 128_000,
    cpu_free_millis: cpuFreeMillis,
    memory_allocatable_bytes: 1024 * 1024 * 1024 * 1024,
    memory_free_bytes: 1024 * 1024 * 1024 * 1024,
    offloaded_pod_uids: [],
  };
}

const send = (m: FromWorker): void => {
  process.send?.(m);
};

interface Agent {
  spec: SimAgentSpec;
  client: BrokerClient;
  stream: ClusterStream;
  /** (Re)connects the stream to `address` with this agent's certificate. */
  connect(address: string): void;
  timer?: NodeJS.Timeout;
  sequence: number;
}

const agents: Agent[] = [];
const failures: string[] = [];
let disconnects = 0;
let reports = 0;

function stats(): WorkerStats {
  return {
    joined: agents.length,
    connected: agents.filter((a) => a.stream.connected).length,
    disconnects,
    reports,
    failures: failures.slice(0, 5),
  };
}

let settings: Extract<ToWorker, { type: 'start' }> | undefined;
let privateKeyPem = '';

async function start(
  m: Extract<ToWorker, { type: 'start' }>,
  specs: SimAgentSpec[] = m.agents,
): Promise<void> {
  settings = m;
  // One key per load process: each agent still gets its own certificate (key generation
  // is not what is measured, the broker's work is).
  privateKeyPem ||= generateKeyPair().privateKeyPem;
  const joinMs: number[] = [];
  const failed: string[] = [];
  failures.length = 0;
  let next = 0;
  const one = async (spec: SimAgentSpec): Promise<void> => {
    const t0 = performance.now();
    const id = await joinCluster({
      brokerAddress: spec.address,
      caPem: m.caPem,
      token: spec.token,
      privateKeyPem,
      // The broker's own certificate names localhost; TLS SNI refuses an IP address.
      serverName: 'localhost',
      timeoutMs: 120_000,
    });
    joinMs.push(performance.now() - t0);
    const nodeNames = Array.from({ length: m.nodes }, (_, i) => `${spec.id}-gpu-${i}`);
    const agent = { spec, sequence: 0 } as Agent;
    const full = (stream: ClusterStream): void => {
      agent.sequence++;
      stream.send({
        capacity: {
          full: true,
          nodes: nodeNames.map((n) => nodeCapacity(n, spec.product, m.gpusPerNode, 64_000)),
          removed_nodes: [],
          sequence: agent.sequence,
        },
      });
      reports++;
    };
    agent.connect = (address) => {
      agent.client = new BrokerClient({
        address,
        caPem: id.caPem,
        certPem: id.certPem,
        keyPem: id.keyPem,
        serverName: 'localhost',
      });
      agent.stream = agent.client.connect(
        'agent',
        {
          hello: {
            version: 'bench',
            kubernetes_version: 'v1.33.0',
            gpu_resources: ['nvidia.com/gpu'],
          },
          onConnected: (stream) => full(stream),
          onDisconnected: () => {
            disconnects++;
          },
        },
        { backoff: { baseMs: 500, maxMs: 5_000 } },
      );
    };
    agent.connect(spec.address);
    agents.push(agent);
    // Every agent reports one node's change each period, at its own phase.
    const phase = Math.random() * m.reportEveryMs;
    setTimeout(() => {
      agent.timer = setInterval(() => {
        if (!agent.stream.connected) return;
        agent.sequence++;
        const name = nodeNames[agent.sequence % nodeNames.length]!;
        const ok = agent.stream.send({
          capacity: {
            full: false,
            nodes: [
              nodeCapacity(name, spec.product, m.gpusPerNode, 60_000 + (agent.sequence % 4_000)),
            ],
            removed_nodes: [],
            sequence: agent.sequence,
          },
        });
        if (ok) reports++;
      }, m.reportEveryMs);
    }, phase).unref();
  };
  const lane = async (): Promise<void> => {
    while (next < specs.length) {
      const spec = specs[next++]!;
      try {
        await one(spec);
      } catch (err) {
        failed.push(spec.id);
        failures.push(`${spec.id}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (agents.length % 25 === 0) send({ type: 'progress', joined: agents.length });
    }
  };
  await Promise.all(Array.from({ length: m.joinConcurrency }, () => lane()));
  // Wait (bounded) for every stream's Welcome.
  await Promise.allSettled(agents.map((a) => a.stream.waitConnected(120_000)));
  send({ type: 'ready', joinMs, failed, ...stats() });
}

async function retarget(addresses: string[]): Promise<void> {
  await Promise.all(
    agents.map(async (a) => {
      const address = addresses[a.spec.index % addresses.length]!;
      const old = a.client;
      a.connect(address);
      await old.close();
    }),
  );
  // Moved streams are expected to end once; only later ends count as disconnects.
  disconnects = 0;
  await Promise.allSettled(agents.map((a) => a.stream.waitConnected(120_000)));
  send({ type: 'retargeted' });
}

async function stop(): Promise<void> {
  for (const a of agents) if (a.timer) clearInterval(a.timer);
  await Promise.allSettled(agents.map((a) => a.client.close()));
  send({ type: 'stopped' });
  process.disconnect?.();
  setTimeout(() => process.exit(0), 200).unref();
}

process.on('message', (m: ToWorker) => {
  if (m.type === 'start') {
    start(m).catch((err: unknown) =>
      send({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
    );
  } else if (m.type === 'join') {
    if (!settings) return;
    start(settings, m.agents).catch((err: unknown) =>
      send({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
    );
  } else if (m.type === 'retarget') {
    retarget(m.addresses).catch((err: unknown) =>
      send({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
    );
  } else if (m.type === 'stats') {
    send({ type: 'stats', ...stats() });
  } else {
    void stop();
  }
});
process.on('disconnect', () => process.exit(0));
