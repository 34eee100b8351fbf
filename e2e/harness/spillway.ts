// Runs Spillway itself on the test bed: a broker (SQLite in a temp dir, real mTLS on
// loopback ports), and per cluster an agent, joined with real single-use tokens.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startAgent,
  agentConfigSchema,
  type AgentConfig,
  type RunningAgent,
} from '@spillway/agent';
import {
  brokerConfig,
  startBroker,
  type BrokerConfig,
  type ClusterRole,
  type RunningBroker,
} from '@spillway/broker';
import { createLogger, loadConfig, type Logger } from '@spillway/common';
import type { TestCluster } from '../testbed/index.js';

export interface SpillwayOptions {
  /** Broker settings to override (e.g. heartbeatTimeout). */
  broker?: Partial<BrokerConfig>;
  logLevel?: string;
}

export interface SpillwayBed {
  broker: RunningBroker;
  dir: string;
  caFile: string;
  brokerAddress: string;
  logger: Logger;
  agents: Map<string, RunningAgent>;
  /** Mints a join token and starts the cluster's agent with it (first start joins). */
  joinAgent(
    cluster: TestCluster,
    role: ClusterRole,
    overrides?: Partial<AgentConfig>,
  ): Promise<RunningAgent>;
  /** Starts the agent again from its identity Secret (no token needed). */
  restartAgent(cluster: TestCluster, overrides?: Partial<AgentConfig>): Promise<RunningAgent>;
  stopAgent(name: string): Promise<void>;
  agentConfig(cluster: TestCluster, overrides?: Partial<AgentConfig>): AgentConfig;
  stop(): Promise<void>;
}

export async function startSpillway(opts: SpillwayOptions = {}): Promise<SpillwayBed> {
  const dir = await mkdtemp(join(tmpdir(), 'spillway-e2e-'));
  const logger = createLogger({ level: opts.logLevel ?? process.env.SPILLWAY_E2E_LOG ?? 'warn' });
  const broker = await startBroker(
    brokerConfig({
      dataDir: join(dir, 'broker'),
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      httpHost: '127.0.0.1',
      httpPort: 0,
      ...opts.broker,
    }),
    logger.child({ component: 'broker' }),
  );
  const caFile = join(dir, 'ca.crt');
  await writeFile(caFile, broker.caCertPem);
  const brokerAddress = `127.0.0.1:${broker.grpcPort}`;
  const agents = new Map<string, RunningAgent>();

  const agentConfig = (cluster: TestCluster, overrides: Partial<AgentConfig> = {}): AgentConfig => {
    const { config } = loadConfig(agentConfigSchema, {
      argv: [
        '--broker-address',
        brokerAddress,
        '--kubeconfig',
        cluster.kubeconfigPath,
        '--ca-file',
        caFile,
      ],
      env: {},
    });
    return { ...config, namespace: 'kube-system', logLevel: 'warn', ...overrides };
  };

  const bed: SpillwayBed = {
    broker,
    dir,
    caFile,
    brokerAddress,
    logger,
    agents,
    agentConfig,
    async joinAgent(cluster, role, overrides = {}) {
      const { token } = await broker.core.createJoinToken({ clusterId: cluster.name, role });
      const agent = await startAgent(
        agentConfig(cluster, { joinToken: token, ...overrides }),
        logger.child({ agent: cluster.name }),
      );
      agents.set(cluster.name, agent);
      await agent.stream.waitConnected(30_000);
      return agent;
    },
    async restartAgent(cluster, overrides = {}) {
      await bed.stopAgent(cluster.name);
      const agent = await startAgent(
        agentConfig(cluster, overrides),
        logger.child({ agent: cluster.name }),
      );
      agents.set(cluster.name, agent);
      await agent.stream.waitConnected(30_000);
      return agent;
    },
    async stopAgent(name) {
      const a = agents.get(name);
      agents.delete(name);
      await a?.stop();
    },
    async stop() {
      for (const name of [...agents.keys()]) await bed.stopAgent(name).catch(() => undefined);
      await broker.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return bed;
}
