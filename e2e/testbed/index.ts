// Spillway's test bed: N independent Kubernetes clusters on one machine, each
// with its own etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kwok (which simulates the nodes, GPU nodes among them), built from their
// Go modules by build-binaries.sh.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinaries, type Binaries } from './binaries.js';
import { TestCluster, type ClusterSpec } from './cluster.js';
import { TestbedError } from './errors.js';

export { BIN_DIR_ENV, BINARIES, BUILD_SCRIPT, buildBinaries, findBinaries } from './binaries.js';
export type { Binaries, BinaryName } from './binaries.js';
export { COMPONENTS, TestCluster } from './cluster.js';
export type { ClusterPorts, ClusterSpec, ComponentName } from './cluster.js';
export { TestbedError } from './errors.js';
export type { TestbedErrorCode } from './errors.js';
export {
  cpuNode,
  fakeNodeObject,
  GPU_MODELS,
  GPU_RESOURCE,
  gpuNode,
  KWOK_NODE_ANNOTATION,
  KWOK_NODE_SELECTOR,
  migNode,
} from './nodes.js';
export type { FakeNodeSpec, GpuModel } from './nodes.js';
export {
  EXIT_CODE_ANNOTATION,
  OUTCOME_ANNOTATION,
  podOutcome,
  REASON_ANNOTATION,
  RUN_FOR_ANNOTATION,
} from './stages.js';
export type { PodOutcome } from './stages.js';
export { killAllComponentsSync } from './processes.js';
export { freePorts } from './ports.js';
export { get, poll } from './wait.js';
export type { PollOptions, TlsOptions } from './wait.js';

export interface TestbedOptions {
  clusters: ClusterSpec[];
  /** Directory with the binaries; default $SPILLWAY_TESTBED_BIN or the build cache. */
  binDir?: string;
  /** Parent of the clusters' directories; default a new directory under the OS temp dir. */
  workDir?: string;
  /** Keep the work directory (logs, etcd data) after stop(); also with SPILLWAY_TESTBED_KEEP=1. */
  keep?: boolean;
  /** Per-component start-up timeout, default 60 s. */
  timeoutMs?: number;
}

export interface Testbed {
  readonly clusters: readonly TestCluster[];
  readonly workDir: string;
  readonly binaries: Binaries;
  /** The cluster of that name; throws if there is none. */
  cluster(name: string): TestCluster;
  /** Resident memory of all components of all clusters, in bytes. */
  rssBytes(): number;
  /** One line for logs: "3 clusters, 15 processes, 1234 MiB RSS (origin 400, ...)". */
  describeMemory(): string;
  /** Stops every cluster and removes the work directory (unless kept). Safe to call twice. */
  stop(): Promise<void>;
}

const running = new Set<Testbed>();

/**
 * Starts the clusters in parallel and resolves once every one has its nodes
 * Ready and takes pods. If any cluster fails to start, all are stopped and
 * the error says which component failed and where its log is.
 */
export async function startTestbed(options: TestbedOptions): Promise<Testbed> {
  const names = options.clusters.map((c) => c.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate !== undefined) {
    throw new TestbedError('TESTBED_BAD_OPTIONS', `cluster name "${duplicate}" is used twice`);
  }
  const bad = names.find((n) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n));
  if (bad !== undefined) {
    throw new TestbedError('TESTBED_BAD_OPTIONS', `cluster name "${bad}" is not a DNS label`);
  }
  const binaries = findBinaries(options.binDir);
  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), 'spillway-testbed-')));
  const keep = options.keep ?? process.env.SPILLWAY_TESTBED_KEEP === '1';
  const timeoutMs = options.timeoutMs ?? 60_000;

  const results = await Promise.allSettled(
    options.clusters.map((spec) =>
      TestCluster.start(spec, { binaries, dir: join(workDir, spec.name), timeoutMs }),
    ),
  );
  const clusters = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(clusters.map((c) => c.stop()));
    throw failed.reason;
  }

  let stopped = false;
  const testbed: Testbed = {
    clusters,
    workDir,
    binaries,
    cluster(name) {
      const found = clusters.find((c) => c.name === name);
      if (!found) {
        throw new TestbedError(
          'TESTBED_BAD_OPTIONS',
          `the test bed has no cluster "${name}" (has: ${names.join(', ')})`,
        );
      }
      return found;
    },
    rssBytes() {
      return clusters.reduce(
        (sum, c) => sum + Object.values(c.memory()).reduce((a, b) => a + b, 0),
        0,
      );
    },
    describeMemory() {
      const mib = (b: number): number => Math.round(b / 2 ** 20);
      const per = clusters.map((c) => {
        const m = c.memory();
        const parts = Object.entries(m).map(([k, v]) => `${k} ${mib(v)}`);
        return `${c.name}: ${mib(Object.values(m).reduce((a, b) => a + b, 0))} (${parts.join(', ')})`;
      });
      const procs = clusters.reduce((n, c) => n + c.pids().length, 0);
      return `${clusters.length} clusters, ${procs} processes, ${mib(this.rssBytes())} MiB RSS; ${per.join('; ')}`;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      running.delete(testbed);
      await Promise.all(clusters.map((c) => c.stop()));
      if (!keep && options.workDir === undefined)
        await rm(workDir, { recursive: true, force: true });
    },
  };
  running.add(testbed);
  return testbed;
}

/** Stops every test bed this process started. For afterAll hooks and signal handlers. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((t) => t.stop()));
}
