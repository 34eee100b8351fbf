// Boots Spillway end to end on the test bed: an origin without GPUs and two donors with
// kwok GPU nodes, a real broker (SQLite, its own PKI, mTLS gRPC), a real agent in every
// cluster and the virtual-node shim in the origin — all in this process, each part through
// its public entry point.
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node';
import {
  agentConfigSchema,
  startAgent,
  type AgentConfig,
  type RunningAgent,
} from '@spillway/agent';
import { brokerConfig, startBroker, type RunningBroker } from '@spillway/broker';
import {
  LABEL_OFFLOAD,
  createLogger,
  loadConfig,
  tenantNamespace,
  type Logger,
} from '@spillway/common';
import {
  startVirtualNode,
  virtualNodeConfig,
  type RunningVirtualNode,
  type VirtualNodeConfig,
} from '@spillway/virtual-node';
import {
  poll,
  startTestbed,
  type ClusterSpec,
  type FakeNodeSpec,
  type TestCluster,
  type Testbed,
} from '../testbed/index.js';

export const SPILLWAY_NAMESPACE = 'spillway-system';
/** The origin namespace the scenarios use; labelled for offloading. */
export const WORK_NAMESPACE = 'ml';
/** Lines every offloaded container "prints": kwok serves them from this CRI log file. */
export const LOG_LINES = [
  'epoch 1/3: loss=0.913',
  'epoch 2/3: loss=0.421',
  'epoch 3/3: loss=0.207',
];

export interface SpillwayBed {
  testbed: Testbed;
  origin: TestCluster;
  donors: Record<string, TestCluster>;
  broker: RunningBroker;
  agents: Map<string, RunningAgent>;
  shim: RunningVirtualNode;
  shimConfig: VirtualNodeConfig;
  logger: Logger;
  /** Where every Spillway part logs (JSON lines). */
  logFile: string;
  /** The CRI log file kwok serves as every donor container's log. */
  containerLog: string;
  workDir: string;
  startAgent(cluster: string): Promise<RunningAgent>;
  stopAgent(cluster: string): Promise<void>;
  restartShim(): Promise<RunningVirtualNode>;
  stop(): Promise<void>;
}

export interface BedOptions {
  originNodes: FakeNodeSpec[];
  donorNodes: Record<string, FakeNodeSpec[]>;
  /** Shim settings for the scenarios (short grace and timeouts). */
  shim?: Partial<VirtualNodeConfig>;
  /** Agent settings per cluster (e.g. a donor's reclaim policy). */
  agents?: Record<string, Partial<AgentConfig>>;
  brokerHeartbeatTimeoutMs?: number;
  /**
   * kwok keeps a followed log (`kubectl logs -f`) open and serves what is appended to
   * `containerLog`, instead of ending it after the file.
   */
  followLogs?: boolean;
}

function criLog(lines: readonly string[]): string {
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  return lines
    .map(
      (l, i) => `${new Date(t0 + i * 1000).toISOString().replace('Z', '000000Z')} stdout F ${l}\n`,
    )
    .join('');
}

/** kwok's ClusterLogs: every container of offloaded pods logs the lines above. */
function kwokLogsConfig(logFile: string, follow: boolean): string {
  return `${JSON.stringify({
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'ClusterLogs',
    metadata: { name: 'spillway-e2e-logs' },
    spec: { logs: [{ logsFile: logFile, follow }] },
  })}\n`;
}

/** One line in the CRI log format kwok serves, as a container would print it now. */
export function criLogLine(line: string): string {
  return `${new Date().toISOString().replace('Z', '000000Z')} stdout F ${line}\n`;
}

async function ensureNamespace(
  cluster: TestCluster,
  name: string,
  labels: Record<string, string> = {},
): Promise<void> {
  await cluster.core
    .createNamespace({ body: { metadata: { name, labels } } })
    .catch(() => undefined);
}

export async function startSpillway(opts: BedOptions): Promise<SpillwayBed> {
  const workDir = await mkdtemp(join(tmpdir(), 'spillway-vn-e2e-'));
  const kwokDir = join(workDir, 'kwok');
  await mkdir(kwokDir, { recursive: true });
  const containerLog = join(kwokDir, 'container.log');
  const logsConfig = join(kwokDir, 'logs.yaml');
  await writeFile(containerLog, criLog(LOG_LINES));
  await writeFile(logsConfig, kwokLogsConfig(containerLog, opts.followLogs === true));

  const specs: ClusterSpec[] = [
    {
      name: 'origin',
      nodes: opts.originNodes,
      // Pods leave a NotReady node after 5 s instead of 5 minutes: the same node lifecycle,
      // on a test's clock.
      extraArgs: {
        'kube-apiserver': [
          '--default-not-ready-toleration-seconds=5',
          '--default-unreachable-toleration-seconds=5',
        ],
      },
    },
    ...Object.entries(opts.donorNodes).map(([name, nodes]) => ({
      name,
      nodes,
      extraArgs: { kwok: [`--config=${logsConfig}`] },
    })),
  ];
  const testbed = await startTestbed({ clusters: specs });
  const logFile = join(workDir, 'spillway.log');
  const out: WriteStream = createWriteStream(logFile);
  const logger = createLogger({
    level: process.env.SPILLWAY_E2E_LOG_LEVEL ?? 'debug',
    destination: out,
  });
  const parts: { stop(): Promise<void> }[] = [];
  try {
    const broker = await startBroker(
      brokerConfig({
        dataDir: join(workDir, 'broker'),
        grpcHost: '127.0.0.1',
        grpcPort: 0,
        httpHost: '127.0.0.1',
        httpPort: 0,
        adminToken: 'spillway-e2e-admin-token-0123456789',
        heartbeatTimeout: opts.brokerHeartbeatTimeoutMs ?? 6_000,
        reservationTtl: 60_000,
        shutdownGrace: 500,
        logLevel: 'info',
      }),
      logger.child({ component: 'broker' }),
    );
    parts.push(broker);
    const caFile = join(workDir, 'broker-ca.crt');
    await writeFile(caFile, broker.caCertPem);
    const address = `127.0.0.1:${broker.grpcPort}`;

    const clusters = [
      testbed.cluster('origin'),
      ...Object.keys(opts.donorNodes).map((n) => testbed.cluster(n)),
    ];
    await Promise.all(clusters.map((c) => ensureNamespace(c, SPILLWAY_NAMESPACE)));
    await ensureNamespace(testbed.cluster('origin'), WORK_NAMESPACE, {
      [LABEL_OFFLOAD]: 'enabled',
    });

    const agents = new Map<string, RunningAgent>();
    const tokens = new Map<string, string>();
    for (const c of clusters) {
      const issued = await broker.core.createJoinToken({
        clusterId: c.name,
        role: c.name === 'origin' ? 'origin' : 'donor',
      });
      tokens.set(c.name, issued.token);
    }
    const launchAgent = async (name: string): Promise<RunningAgent> => {
      const cluster = testbed.cluster(name);
      const { config } = loadConfig(agentConfigSchema, {
        argv: ['--broker-address', address],
        env: {},
      });
      const token = tokens.get(name);
      tokens.delete(name);
      const agent = await startAgent(
        {
          ...config,
          kubeconfig: cluster.kubeconfigPath,
          namespace: SPILLWAY_NAMESPACE,
          caFile,
          brokerServerName: 'localhost',
          ...(token ? { joinToken: token } : {}),
          reportDebounce: 50,
          logLevel: 'debug',
          ...opts.agents?.[name],
        },
        logger.child({ component: 'agent', cluster: name }),
      );
      agents.set(name, agent);
      return agent;
    };
    await Promise.all(clusters.map((c) => launchAgent(c.name)));
    for (const donor of Object.keys(opts.donorNodes)) {
      await broker.core.createPeering({ origin: 'origin', donor });
    }

    const origin = testbed.cluster('origin');
    const shimConfig = virtualNodeConfig({
      brokerAddress: address,
      brokerServerName: 'localhost',
      kubeconfig: origin.kubeconfigPath,
      namespace: SPILLWAY_NAMESPACE,
      clusterId: 'origin',
      nodeAddress: '127.0.0.1',
      kubeletBindAddress: '127.0.0.1',
      kubeletPort: 0,
      kubeletClientCaFile: origin.pki.caCertFile,
      gracePeriod: 2_000,
      donorLostTimeout: 3_000,
      placeRetryMax: 5_000,
      logLevel: 'debug',
      ...opts.shim,
    });
    const shimLogger = logger.child({ component: 'virtual-node' });
    let shim = await startVirtualNode(shimConfig, shimLogger);

    const donors: Record<string, TestCluster> = {};
    for (const n of Object.keys(opts.donorNodes)) donors[n] = testbed.cluster(n);
    let stopped = false;
    const bed: SpillwayBed = {
      testbed,
      origin,
      donors,
      broker,
      agents,
      get shim() {
        return shim;
      },
      shimConfig,
      logger,
      logFile,
      containerLog,
      workDir,
      startAgent: launchAgent,
      async stopAgent(name) {
        const a = agents.get(name);
        agents.delete(name);
        await a?.stop();
      },
      async restartShim() {
        await shim.stop();
        shim = await startVirtualNode(shimConfig, shimLogger);
        return shim;
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await shim.stop().catch(() => undefined);
        await Promise.all([...agents.values()].map((a) => a.stop().catch(() => undefined)));
        await broker.stop().catch(() => undefined);
        await testbed.stop();
        await new Promise<void>((r) => out.end(r));
        if (process.env.SPILLWAY_TESTBED_KEEP !== '1')
          await rm(workDir, { recursive: true, force: true });
      },
    };
    return bed;
  } catch (err) {
    for (const p of parts.reverse()) await p.stop().catch(() => undefined);
    await testbed.stop();
    throw err;
  }
}

// ---- helpers the scenarios share ----------------------------------------------------------

export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 200,
): Promise<T> {
  return poll(check, { timeoutMs, intervalMs, what });
}

export async function podsIn(
  cluster: TestCluster,
  namespace: string,
  selector?: string,
): Promise<V1Pod[]> {
  const list = await cluster.core.listNamespacedPod({
    namespace,
    ...(selector ? { labelSelector: selector } : {}),
  });
  return list.items;
}

/** Remote pods of this origin on a donor (its tenant namespace). */
export function remotePods(donor: TestCluster): Promise<V1Pod[]> {
  return podsIn(donor, tenantNamespace('origin'));
}

export async function eventsOf(cluster: TestCluster, pod: V1Pod): Promise<CoreV1Event[]> {
  const list = await cluster.core.listNamespacedEvent({
    namespace: pod.metadata!.namespace!,
    fieldSelector: `involvedObject.uid=${pod.metadata!.uid!}`,
  });
  return list.items;
}

/** A GPU pod (or pod template) that the test bed's kwok keeps Running until deleted. */
export function gpuPodSpec(
  gpus: number,
  extra: { nodeSelector?: Record<string, string>; resource?: string } = {},
): NonNullable<V1Pod['spec']> {
  const resource = extra.resource ?? 'nvidia.com/gpu';
  return {
    restartPolicy: 'Never',
    terminationGracePeriodSeconds: 1,
    ...(extra.nodeSelector ? { nodeSelector: extra.nodeSelector } : {}),
    containers: [
      {
        name: 'train',
        image: 'example.com/spillway/train:1',
        resources: {
          requests: { cpu: '100m', memory: '128Mi', [resource]: String(gpus) },
          limits: { [resource]: String(gpus) },
        },
      },
    ],
  };
}

export function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}
