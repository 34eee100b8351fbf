// The fault scenarios' bed: test bed clusters (an origin without GPUs, GPU donors), and
// Spillway as an operator runs it — broker replicas, an agent per cluster and the origin's
// virtual-node shim, each a child process started from its built dist/main.js, so a fault
// is a real SIGKILL and a restart is a real start from the store and the clusters. Every
// part dials the broker through its own TcpProxy, which can cut or stall that link and
// which balances over the live replicas when there are several.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect } from 'vitest';
import { LABEL_OFFLOAD } from '@spillway/common';
import { BROKER_MAIN, brokerArgs } from '../harness/broker-process.js';
import { ComponentProcess } from '../testbed/processes.js';
import {
  freePorts,
  poll,
  startTestbed,
  type ClusterSpec,
  type FakeNodeSpec,
  type TestCluster,
  type Testbed,
} from '../testbed/index.js';
import { settle, snapshot, type Snapshot } from './audit.js';
import { TcpProxy } from './proxy.js';
import { allRunning, createDeployment, printRecoveries, runningUids } from './workload.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = {
  broker: BROKER_MAIN,
  agent: join(ROOT, 'packages/agent/dist/main.js'),
  shim: join(ROOT, 'packages/virtual-node/dist/main.js'),
} as const;

export const ADMIN_TOKEN = 'spillway-chaos-admin-token-0123456789';
export const SPILLWAY_NAMESPACE = 'spillway-system';
export const WORK_NAMESPACE = 'ml';
/** How long the broker waits for a silent stream; clients take it from the Welcome. */
export const HEARTBEAT_TIMEOUT_MS = 6_000;
export const RESERVATION_TTL_MS = 20_000;
export const DONOR_LOST_TIMEOUT_MS = 5_000;

/** SPILLWAY_CHAOS_FULL=1 runs the long outages at full length. */
export const FULL = process.env.SPILLWAY_CHAOS_FULL === '1';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A Spillway daemon (or redis-server) that a test can SIGKILL and start again. */
export class Daemon {
  readonly proc: ComponentProcess;
  constructor(
    readonly name: string,
    binary: string,
    args: string[],
    readonly logFile: string,
  ) {
    this.proc = new ComponentProcess('chaos', name, binary, args, logFile);
  }

  get running(): boolean {
    return this.proc.running;
  }

  start(): void {
    this.proc.start();
  }

  /** SIGKILL to the process group; resolves once it is gone. No shutdown code runs. */
  async kill(): Promise<void> {
    this.proc.killSync();
    await this.proc.exited;
  }

  async stop(): Promise<void> {
    await this.proc.stop(5_000);
  }

  /** An error when the process exited on its own, with its log's tail. */
  died(): Error | undefined {
    return this.proc.pid !== undefined && !this.proc.running
      ? new Error(`${this.name} exited; log ${this.logFile}:\n${this.proc.tail(20)}`)
      : undefined;
  }
}

export interface BrokerReplica {
  daemon: Daemon;
  grpc: string;
  rest: string;
}

export interface ChaosOptions {
  store: 'sqlite' | 'redis';
  /** Broker replicas (Redis only). */
  replicas?: number;
  donors: Record<string, FakeNodeSpec[]>;
  /** Extra flags for the shim. */
  shimArgs?: string[];
}

export interface Redis {
  daemon: Daemon;
  port: number;
  url: string;
  dir: string;
}

/** GPUs of every donor node, by donor then node name. */
export type Capacity = Record<string, Record<string, number>>;

export class ChaosBed {
  readonly agents = new Map<string, Daemon>();
  readonly proxies = new Map<string, TcpProxy>();
  shim!: Daemon;
  redis: Redis | undefined;
  readonly capacity: Capacity = {};
  /** The origin namespace that offloads (labelled), where every scenario's pods live. */
  readonly workNamespace = WORK_NAMESPACE;
  private stopped = false;

  private constructor(
    readonly opts: ChaosOptions,
    readonly testbed: Testbed,
    readonly dir: string,
    readonly brokers: BrokerReplica[],
    readonly caFile: string,
  ) {
    for (const [donor, nodes] of Object.entries(opts.donors)) {
      this.capacity[donor] = Object.fromEntries(nodes.map((n) => [n.name, n.gpu?.count ?? 0]));
    }
  }

  get origin(): TestCluster {
    return this.testbed.cluster('origin');
  }

  donor(name: string): TestCluster {
    return this.testbed.cluster(name);
  }

  get donorNames(): string[] {
    return Object.keys(this.opts.donors);
  }

  /** gRPC addresses of replicas that are running: what the load-balancing proxies dial. */
  liveBrokers(): string[] {
    return this.brokers.filter((b) => b.daemon.running).map((b) => b.grpc);
  }

  /** REST of the first running replica. */
  restUrl(): string {
    const b = this.brokers.find((r) => r.daemon.running) ?? this.brokers[0]!;
    return b.rest;
  }

  static async start(opts: ChaosOptions): Promise<ChaosBed> {
    for (const [part, file] of Object.entries(MAIN)) {
      if (!existsSync(file))
        throw new Error(`${part}: ${file} is missing; run \`npm run build\` (tsc -b) first`);
    }
    const specs: ClusterSpec[] = [
      { name: 'origin', nodes: [{ name: 'origin-cpu-0' }] },
      ...Object.entries(opts.donors).map(([name, nodes]) => ({ name, nodes })),
    ];
    const testbed = await startTestbed({ clusters: specs });
    const dir = await mkdtemp(join(tmpdir(), 'spillway-chaos-'));
    const logs = join(dir, 'logs');
    await mkdir(logs, { recursive: true });
    const replicas = opts.store === 'redis' ? (opts.replicas ?? 1) : 1;
    const pkiDir = join(dir, 'pki');
    let bed: ChaosBed | undefined;
    try {
      let redis: Redis | undefined;
      const brokers: BrokerReplica[] = [];
      if (opts.store === 'redis') redis = await startRedis(dir, logs);
      for (let i = 0; i < replicas; i++) {
        const [grpc, http] = await freePorts(2);
        const name = `broker-${i + 1}`;
        const args = brokerArgs({
          dir: join(dir, name),
          dataDir: join(dir, name),
          pkiDir,
          grpcPort: grpc!,
          httpPort: http!,
          adminToken: ADMIN_TOKEN,
          brokerId: name,
          logLevel: 'debug',
          ...(redis ? { store: 'redis', redisUrl: redis.url, redisPrefix: 'chaos:' } : {}),
          flags: [
            `--heartbeat-timeout=${HEARTBEAT_TIMEOUT_MS}ms`,
            `--reservation-ttl=${RESERVATION_TTL_MS}ms`,
            '--shutdown-grace=1s',
          ],
        });
        const replica: BrokerReplica = {
          daemon: new Daemon(name, process.execPath, args, join(logs, `${name}.log`)),
          grpc: `127.0.0.1:${grpc}`,
          rest: `http://127.0.0.1:${http}`,
        };
        brokers.push(replica);
        // The first replica creates the CA the others share.
        await startReplica(replica);
      }
      const caFile = join(pkiDir, 'ca.crt');
      bed = new ChaosBed(opts, testbed, dir, brokers, caFile);
      bed.redis = redis;
      await bed.wire(logs);
      return bed;
    } catch (err) {
      if (bed) await bed.stop();
      else await testbed.stop();
      throw err;
    }
  }

  private async proxy(key: string): Promise<TcpProxy> {
    const p = new TcpProxy(key, () => this.liveBrokers());
    await p.listen();
    this.proxies.set(key, p);
    return p;
  }

  private async wire(logs: string): Promise<void> {
    const clusters = ['origin', ...this.donorNames];
    await Promise.all(
      clusters.map((c) =>
        this.testbed
          .cluster(c)
          .core.createNamespace({ body: { metadata: { name: SPILLWAY_NAMESPACE } } }),
      ),
    );
    await this.origin.core.createNamespace({
      body: { metadata: { name: WORK_NAMESPACE, labels: { [LABEL_OFFLOAD]: 'enabled' } } },
    });
    for (const c of clusters) {
      const token = await this.joinToken(c, c === 'origin' ? 'origin' : 'donor');
      const proxy = await this.proxy(`agent:${c}`);
      const cluster = this.testbed.cluster(c);
      const agent = new Daemon(
        `agent-${c}`,
        process.execPath,
        [
          MAIN.agent,
          `--kubeconfig=${cluster.kubeconfigPath}`,
          `--namespace=${SPILLWAY_NAMESPACE}`,
          `--broker-address=${proxy.address}`,
          '--broker-server-name=localhost',
          `--ca-file=${this.caFile}`,
          // Spent on the first start; later starts load the identity Secret it wrote.
          `--join-token=${token}`,
          '--report-debounce=50ms',
          '--log-level=debug',
        ],
        join(logs, `agent-${c}.log`),
      );
      this.agents.set(c, agent);
      agent.start();
    }
    await Promise.all(clusters.map((c) => this.waitAgentConnected(c)));
    for (const d of this.donorNames) {
      await this.api('POST', '/api/v1/peerings', { origin: 'origin', donor: d }, 201);
    }
    const proxy = await this.proxy('shim');
    this.shim = new Daemon(
      'shim',
      process.execPath,
      [
        MAIN.shim,
        `--kubeconfig=${this.origin.kubeconfigPath}`,
        `--namespace=${SPILLWAY_NAMESPACE}`,
        '--cluster-id=origin',
        `--broker-address=${proxy.address}`,
        '--broker-server-name=localhost',
        '--node-address=127.0.0.1',
        '--kubelet-bind-address=127.0.0.1',
        '--kubelet-port=0',
        '--grace-period=2s',
        // The origin has no GPU nodes; the scenarios inject faults while pods are in their grace.
        '--no-skip-grace-when-no-origin-fit',
        `--donor-lost-timeout=${DONOR_LOST_TIMEOUT_MS}ms`,
        '--place-retry-max=4s',
        '--resync-interval=30s',
        '--log-level=debug',
        ...(this.opts.shimArgs ?? []),
      ],
      join(logs, 'shim.log'),
    );
    this.shim.start();
    await this.waitVirtualNodesReady();
  }

  async joinToken(clusterId: string, role: 'origin' | 'donor'): Promise<string> {
    const res = (await this.api('POST', '/api/v1/join-tokens', { clusterId, role }, 201)) as {
      token: string;
    };
    return res.token;
  }

  /** A REST call as the admin; throws unless the status is `expect`. */
  async api(method: string, path: string, body?: unknown, expect = 200): Promise<unknown> {
    const res = await fetch(`${this.restUrl()}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (res.status !== expect)
      throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 500)}`);
    return text === '' ? undefined : (JSON.parse(text) as unknown);
  }

  /** The broker's view of a cluster's agent stream: Ready means connected and reporting. */
  async clusterState(id: string): Promise<string | undefined> {
    const c = (await this.api('GET', `/api/v1/clusters/${id}`).catch(() => undefined)) as
      { state?: string } | undefined;
    return c?.state;
  }

  async waitAgentConnected(cluster: string, timeoutMs = 60_000): Promise<void> {
    const agent = this.agents.get(cluster)!;
    await poll(async () => ((await this.clusterState(cluster)) === 'Ready' ? true : undefined), {
      timeoutMs,
      intervalMs: 200,
      what: `cluster ${cluster} Ready at the broker (agent log ${agent.logFile})`,
      abort: () => agent.died(),
    });
  }

  async virtualNodeReady(donor: string): Promise<boolean> {
    const n = await this.origin.core.readNode({ name: `spillway-${donor}` }).catch(() => undefined);
    return n?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  }

  async waitVirtualNodesReady(timeoutMs = 60_000, donors = this.donorNames): Promise<void> {
    await poll(
      async () => {
        for (const d of donors) if (!(await this.virtualNodeReady(d))) return undefined;
        return true;
      },
      {
        timeoutMs,
        intervalMs: 200,
        what: `virtual nodes of ${donors.join(', ')} Ready (shim log ${this.shim.logFile})`,
        abort: () => this.shim.died(),
      },
    );
  }

  async readyz(replica: BrokerReplica = this.brokers[0]!): Promise<number> {
    const res = await fetch(`${replica.rest}/readyz`, { signal: AbortSignal.timeout(5_000) });
    return res.status;
  }

  async startBroker(replica: BrokerReplica): Promise<void> {
    await startReplica(replica);
  }

  /** Signals our redis-server's process group: SIGSTOP freezes it, SIGCONT thaws it. */
  signalRedis(signal: NodeJS.Signals): void {
    const pid = this.redis?.daemon.proc.pid;
    if (pid === undefined) throw new Error('this bed has no redis-server');
    process.kill(-pid, signal);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // A Redis frozen by a failed scenario must not outlive it stopped.
    if (this.redis?.daemon.running) this.signalRedis('SIGCONT');
    await this.shim?.stop().catch(() => undefined);
    await Promise.all([...this.agents.values()].map((a) => a.stop().catch(() => undefined)));
    await Promise.all(this.brokers.map((b) => b.daemon.stop().catch(() => undefined)));
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
    await this.redis?.daemon.stop().catch(() => undefined);
    await this.testbed.stop();
    if (process.env.SPILLWAY_TESTBED_KEEP === '1') {
      console.log(`chaos bed kept: ${this.dir}`);
    } else {
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}

/** The Deployment that runs offloaded through every fault of a file. */
export interface SteadyWorkload {
  pods: number;
  gpus: number;
}

/** What a fault file shares: the bed, and what ran before the first fault. */
export interface ChaosFixture {
  /** The bed; up once the file's beforeAll has run. */
  readonly bed: ChaosBed;
  /** UIDs of the `steady` pods Running before the first fault. */
  readonly steady: readonly string[];
  /** Settle check: the very same `steady` pods, all still Running. */
  steadyUntouched: (s: Snapshot) => string | undefined;
  /** While a fault lasts: what ran keeps running, in the origin and on its donors. */
  assertRunningUntouched: (skipDonors?: string[]) => Promise<void>;
}

/**
 * Registers a fault file's beforeAll and afterAll: the bed started with `opts`, a
 * Deployment `steady` offloaded and settled, its pods' UIDs kept; at the end the recovery
 * times printed under `title` and the bed stopped.
 */
export function useChaosBed(
  title: string,
  opts: ChaosOptions,
  workload: SteadyWorkload,
): ChaosFixture {
  let bed: ChaosBed | undefined;
  let steady: string[] = [];
  const fixture: ChaosFixture = {
    get bed(): ChaosBed {
      if (!bed) throw new Error('the chaos bed is not up: its beforeAll failed');
      return bed;
    },
    get steady(): readonly string[] {
      return steady;
    },
    steadyUntouched: (s) => {
      const now = runningUids(s, 'steady');
      return JSON.stringify(now) === JSON.stringify(steady)
        ? undefined
        : `steady pods changed: ${now.length} Running, ${now.filter((u) => !steady.includes(u)).length} new`;
    },
    assertRunningUntouched: async (skipDonors = []) => {
      const s = await snapshot(fixture.bed, skipDonors);
      expect(runningUids(s, 'steady')).toEqual(steady);
      for (const [donor, pods] of s.remote) {
        const mine = pods.filter((p) => p.metadata?.labels?.app === 'steady');
        expect(
          mine.every((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp),
          `steady copies on ${donor} still Running`,
        ).toBe(true);
      }
    },
  };
  beforeAll(async () => {
    const t0 = Date.now();
    bed = await ChaosBed.start(opts);
    await createDeployment(bed, 'steady', workload.pods, workload.gpus);
    const { snapshot: s } = await settle(
      bed,
      'the steady Deployment offloaded',
      allRunning('steady', workload.pods),
    );
    steady = runningUids(s, 'steady');
    console.log(
      `chaos bed (${title}) up in ${((Date.now() - t0) / 1000).toFixed(1)} s; logs in ${bed.dir}/logs`,
    );
  }, 240_000);
  afterAll(async () => {
    printRecoveries(`Recovery times (${title})`);
    await bed?.stop();
  });
  return fixture;
}

async function startReplica(replica: BrokerReplica, timeoutMs = 30_000): Promise<void> {
  replica.daemon.start();
  await poll(
    async () => {
      const res = await fetch(`${replica.rest}/readyz`).catch(() => undefined);
      return res?.ok ? true : undefined;
    },
    {
      timeoutMs,
      intervalMs: 100,
      what: `${replica.daemon.name} ready (log ${replica.daemon.logFile})`,
      abort: () => replica.daemon.died(),
    },
  );
}

/** Our own redis-server (AOF on, no RDB snapshots) on a free port: never the shared one. */
async function startRedis(dir: string, logs: string): Promise<Redis> {
  const [port] = await freePorts(1);
  const data = join(dir, 'redis');
  await mkdir(data, { recursive: true });
  await writeFile(join(data, '.keep'), '');
  const daemon = new Daemon(
    'redis',
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      data,
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--save',
      '',
    ],
    join(logs, 'redis.log'),
  );
  const redis: Redis = { daemon, port: port!, url: `redis://127.0.0.1:${port}`, dir: data };
  await startRedisDaemon(redis);
  return redis;
}

export async function startRedisDaemon(redis: Redis): Promise<void> {
  redis.daemon.start();
  await poll(async () => ((await redisPing(redis.port)) ? true : undefined), {
    timeoutMs: 15_000,
    intervalMs: 100,
    what: `redis-server on port ${redis.port} (log ${redis.daemon.logFile})`,
    abort: () => redis.daemon.died(),
  });
}

/** True when redis answers PING with PONG (after loading its AOF). */
function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1_000, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}
