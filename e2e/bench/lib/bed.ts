// Spillway on the test bed for benchmarks 1–3: an origin without GPUs and two donors with
// kwok GPU nodes; the broker, every agent and the virtual-node shim each run as their own
// process (the binaries an operator runs), so their CPU and memory can be read from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LABEL_OFFLOAD } from '@spillway/common';
import {
  buildBinaries,
  cpuNode,
  gpuNode,
  poll,
  startTestbed,
  type TestCluster,
  type Testbed,
} from '../../testbed/index.js';
import { startBrokerProcess, type BrokerProcess } from './broker.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const AGENT_MAIN = join(ROOT, 'packages/agent/dist/main.js');
const SHIM_MAIN = join(ROOT, 'packages/virtual-node/dist/main.js');

export const SYSTEM_NS = 'spillway-system';
/** Extra Node.js flags for every daemon the bed starts, space-separated. */
export const DAEMON_NODE_ARGS_ENV = 'SPILLWAY_BENCH_NODE_ARGS';
/** The agent chart's default `agent.nodeOptions` and `virtualNode.nodeOptions`. */
export const DAEMON_NODE_OPTIONS = '--max-semi-space-size=4';
/** Origin namespace of the offloaded pods (labelled for offloading). */
export const OFFLOAD_NS = 'bench';
/** Donor namespace of the pods created directly there (the baseline). */
export const DIRECT_NS = 'bench-direct';
export const DONORS = ['donor-a', 'donor-b'] as const;

export interface BedSizes {
  /** GPU nodes per donor, and GPUs per node. */
  donorNodes: number;
  gpusPerNode: number;
}

export interface Daemon {
  name: string;
  child: ChildProcess;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

export interface Bed {
  testbed: Testbed;
  origin: TestCluster;
  donors: Record<(typeof DONORS)[number], TestCluster>;
  broker: BrokerProcess;
  agents: Daemon[];
  shim: Daemon;
  stop(): Promise<void>;
}

function daemon(
  name: string,
  main: string,
  args: string[],
  dir: string,
  cpuProfDir?: string,
): Daemon {
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(
    process.execPath,
    [
      ...(cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', join(cpuProfDir, name)] : []),
      // For memory work: e.g. --heapsnapshot-signal=SIGUSR2 with --diagnostic-dir.
      ...(process.env[DAEMON_NODE_ARGS_ENV]?.split(' ').filter(Boolean) ?? []),
      main,
      ...args,
    ],
    {
      stdio: ['ignore', fd, fd],
      // As the charts run the agent and the shim (their default `nodeOptions`).
      env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: DAEMON_NODE_OPTIONS },
    },
  );
  closeSync(fd);
  return {
    name,
    child,
    pid: child.pid!,
    logFile,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function ensureNamespace(
  c: TestCluster,
  name: string,
  labels: Record<string, string> = {},
): Promise<void> {
  await c.core.createNamespace({ body: { metadata: { name, labels } } }).catch(() => undefined);
}

export async function startBed(
  dir: string,
  sizes: BedSizes,
  opts: { cpuProfDir?: string; shimWorkers?: number; log: (l: string) => void },
): Promise<Bed> {
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  // Seconds when the binaries are cached (as after `npm test`); builds them otherwise.
  const binDir = await buildBinaries();
  const testbed = await startTestbed({
    binDir,
    workDir: join(dir, 'testbed'),
    clusters: [
      { name: 'origin', nodes: [cpuNode('origin-cpu-0'), cpuNode('origin-cpu-1')] },
      ...DONORS.map((d, k) => ({
        name: d,
        nodes: Array.from({ length: sizes.donorNodes }, (_, i) =>
          gpuNode(`${d}-gpu-${i}`, sizes.gpusPerNode, k === 0 ? 'A100-80GB' : 'H100-80GB', {
            pods: 250,
          }),
        ),
      })),
    ],
  });
  opts.log(`test bed up in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const parts: { stop(): Promise<void> }[] = [];
  try {
    const broker = await startBrokerProcess({
      dir: join(dir, 'broker'),
      store: 'sqlite',
      ...(opts.cpuProfDir ? { cpuProfDir: join(opts.cpuProfDir, 'broker') } : {}),
    });
    parts.push(broker);
    const caFile = join(dir, 'broker-ca.crt');
    await writeFile(caFile, broker.caPem);
    const origin = testbed.cluster('origin');
    const clusters = [origin, ...DONORS.map((d) => testbed.cluster(d))];
    await Promise.all(clusters.map((c) => ensureNamespace(c, SYSTEM_NS)));
    await ensureNamespace(origin, OFFLOAD_NS, { [LABEL_OFFLOAD]: 'enabled' });
    for (const d of DONORS) await ensureNamespace(testbed.cluster(d), DIRECT_NS);
    const agents: Daemon[] = [];
    for (const c of clusters) {
      const { token } = await broker.rest<{ token: string }>('POST', '/api/v1/join-tokens', {
        clusterId: c.name,
        role: c.name === 'origin' ? 'origin' : 'donor',
      });
      const a = daemon(
        `agent-${c.name}`,
        AGENT_MAIN,
        [
          '--broker-address',
          broker.grpcAddress,
          '--broker-server-name',
          'localhost',
          '--ca-file',
          caFile,
          '--kubeconfig',
          c.kubeconfigPath,
          '--namespace',
          SYSTEM_NS,
          '--join-token',
          token,
        ],
        dir,
        opts.cpuProfDir,
      );
      agents.push(a);
      parts.push(a);
    }
    await poll(
      async () => {
        const { clusters: list } = await broker.rest<{ clusters: { id: string; state: string }[] }>(
          'GET',
          '/api/v1/clusters',
        );
        return list.filter((c) => c.state === 'Ready').length === clusters.length
          ? true
          : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: 'every agent connected and Ready' },
    );
    for (const d of DONORS) {
      await broker.rest('POST', '/api/v1/peerings', { origin: 'origin', donor: d });
    }
    const shim = daemon(
      'virtual-node',
      SHIM_MAIN,
      [
        '--broker-address',
        broker.grpcAddress,
        '--broker-server-name',
        'localhost',
        '--kubeconfig',
        origin.kubeconfigPath,
        '--namespace',
        SYSTEM_NS,
        '--cluster-id',
        'origin',
        '--node-address',
        '127.0.0.1',
        '--kubelet-bind-address',
        '127.0.0.1',
        '--kubelet-port',
        '0',
        '--kubelet-client-ca-file',
        origin.pki.caCertFile,
        // Benchmark 1 is specified with grace period 0: offload as soon as unschedulable.
        '--grace-period',
        '0s',
        ...(opts.shimWorkers ? ['--workers', String(opts.shimWorkers)] : []),
      ],
      dir,
      opts.cpuProfDir,
    );
    parts.push(shim);
    await poll(
      async () => {
        for (const d of DONORS) {
          const n = await origin.core.readNode({ name: `spillway-${d}` }).catch(() => undefined);
          if (n?.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True')
            return undefined;
        }
        return true;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: 'virtual nodes Ready' },
    );
    opts.log(`Spillway up on the test bed in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    return {
      testbed,
      origin,
      donors: { 'donor-a': testbed.cluster('donor-a'), 'donor-b': testbed.cluster('donor-b') },
      broker,
      agents,
      shim,
      async stop() {
        for (const p of [...parts].reverse()) await p.stop().catch(() => undefined);
        await testbed.stop();
      },
    };
  } catch (err) {
    for (const p of [...parts].reverse()) await p.stop().catch(() => undefined);
    await testbed.stop();
    throw err;
  }
}
