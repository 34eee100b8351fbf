import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BatchV1Api, CoreV1Api, KubeConfig, type V1Node } from '@kubernetes/client-node';
import type { Binaries } from './binaries.js';
import { TestbedError } from './errors.js';
import { fakeNodeObject, KWOK_NODE_SELECTOR, type FakeNodeSpec } from './nodes.js';
import {
  createClusterPki,
  kubeconfigJson,
  SERVICE_CLUSTER_IP_RANGE,
  type ClusterPki,
  type KeyPair,
} from './pki.js';
import { freePorts } from './ports.js';
import { ComponentProcess } from './processes.js';
import { kwokConfigFile } from './stages.js';
import { get, poll } from './wait.js';

const execFileAsync = promisify(execFile);

export const COMPONENTS = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kwok',
] as const;
export type ComponentName = (typeof COMPONENTS)[number];

/** What one cluster of the test bed looks like. */
export interface ClusterSpec {
  /** Unique within the test bed: "origin", "donor-a", ... */
  name: string;
  /** Fake nodes created (and awaited Ready) during start-up. */
  nodes?: FakeNodeSpec[];
  /** Port of kwok's server (the fake nodes' kubelet endpoint: logs, exec); default a free port. */
  kwokServerPort?: number;
  /** Extra command-line flags per component, appended after the test bed's own. */
  extraArgs?: Partial<Record<ComponentName, string[]>>;
}

export interface ClusterPorts {
  etcdClient: number;
  etcdPeer: number;
  apiserver: number;
  controllerManager: number;
  scheduler: number;
  kwokServer: number;
}

export interface StartOptions {
  binaries: Binaries;
  /** The cluster's own directory (PKI, kubeconfigs, etcd data, logs). */
  dir: string;
  /** Per-component start-up timeout. */
  timeoutMs: number;
}

// Loopback-only, generous limits: the test bed runs thousands of pods per cluster.
const CLIENT_QPS = '200';
const CLIENT_BURST = '400';

/**
 * One Kubernetes cluster of the test bed: its own etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler and kwok, on free loopback ports,
 * with its own CA and admin kubeconfig.
 */
export class TestCluster {
  readonly name: string;
  readonly dir: string;
  /** Admin (system:masters) kubeconfig for kubectl and clients. */
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  readonly server: string;
  readonly ports: ClusterPorts;
  /** https://127.0.0.1:<port> of kwok's server, which plays every fake node's kubelet. */
  readonly kwokServer: string;
  /** Loaded admin kubeconfig: `cluster.kubeConfig.makeApiClient(AppsV1Api)`. */
  readonly kubeConfig: KubeConfig;
  readonly core: CoreV1Api;
  readonly batch: BatchV1Api;
  readonly pki: ClusterPki;
  private readonly components: Record<ComponentName, ComponentProcess>;
  private readonly binaries: Binaries;
  private readonly timeoutMs: number;
  private stopped = false;

  private constructor(
    spec: ClusterSpec,
    opts: StartOptions,
    pki: ClusterPki,
    ports: ClusterPorts,
    components: Record<ComponentName, ComponentProcess>,
    kubeconfigPath: string,
  ) {
    this.name = spec.name;
    this.dir = opts.dir;
    this.binaries = opts.binaries;
    this.timeoutMs = opts.timeoutMs;
    this.pki = pki;
    this.ports = ports;
    this.components = components;
    this.kubeconfigPath = kubeconfigPath;
    this.server = `https://127.0.0.1:${ports.apiserver}`;
    this.kwokServer = `https://127.0.0.1:${ports.kwokServer}`;
    this.kubeConfig = new KubeConfig();
    this.kubeConfig.loadFromFile(kubeconfigPath);
    this.core = this.kubeConfig.makeApiClient(CoreV1Api);
    this.batch = this.kubeConfig.makeApiClient(BatchV1Api);
  }

  /** Creates the cluster's files and processes and waits until it takes pods. */
  static async start(spec: ClusterSpec, opts: StartOptions): Promise<TestCluster> {
    const { dir, binaries } = opts;
    const logDir = join(dir, 'logs');
    const pkiDir = join(dir, 'pki');
    await Promise.all([mkdir(logDir, { recursive: true }), mkdir(pkiDir, { recursive: true })]);
    const [pki, portList] = await Promise.all([
      createClusterPki(spec.name, pkiDir),
      freePorts(spec.kwokServerPort === undefined ? 6 : 5),
    ]);
    const [etcdClient, etcdPeer, apiserver, controllerManager, scheduler, kwokPort] = portList;
    if (
      etcdClient === undefined ||
      etcdPeer === undefined ||
      apiserver === undefined ||
      controllerManager === undefined ||
      scheduler === undefined
    ) {
      throw new TestbedError('TESTBED_BAD_OPTIONS', 'could not allocate loopback ports');
    }
    const kwokServer = spec.kwokServerPort ?? kwokPort;
    if (kwokServer === undefined) {
      throw new TestbedError('TESTBED_BAD_OPTIONS', 'could not allocate a port for kwok');
    }
    const ports: ClusterPorts = {
      etcdClient,
      etcdPeer,
      apiserver,
      controllerManager,
      scheduler,
      kwokServer,
    };
    const server = `https://127.0.0.1:${apiserver}`;

    const writeKubeconfig = async (
      file: string,
      user: string,
      client: KeyPair,
    ): Promise<string> => {
      const path = join(dir, file);
      await writeFile(
        path,
        kubeconfigJson({ clusterName: spec.name, server, caPem: pki.ca.certPem, user, client }),
        { mode: 0o600 },
      );
      return path;
    };
    const [adminKubeconfig, kcmKubeconfig, schedulerKubeconfig, kwokKubeconfig] = await Promise.all(
      [
        writeKubeconfig('kubeconfig', 'admin', pki.admin),
        writeKubeconfig(
          'kube-controller-manager.kubeconfig',
          'kube-controller-manager',
          pki.controllerManager,
        ),
        writeKubeconfig('kube-scheduler.kubeconfig', 'kube-scheduler', pki.scheduler),
        writeKubeconfig('kwok.kubeconfig', 'kwok', pki.kwok),
      ],
    );

    const schedulerConfig = join(dir, 'kube-scheduler.yaml');
    const kwokConfig = join(dir, 'kwok.yaml');
    await Promise.all([
      writeFile(
        schedulerConfig,
        JSON.stringify(
          {
            apiVersion: 'kubescheduler.config.k8s.io/v1',
            kind: 'KubeSchedulerConfiguration',
            clientConnection: {
              kubeconfig: schedulerKubeconfig,
              qps: Number(CLIENT_QPS),
              burst: Number(CLIENT_BURST),
            },
            leaderElection: { leaderElect: false },
          },
          null,
          2,
        ),
      ),
      writeFile(
        kwokConfig,
        kwokConfigFile({
          cidr: '10.244.0.1/16',
          nodeIP: '127.0.0.1',
          nodePort: kwokServer,
          serverAddress: `127.0.0.1:${kwokServer}`,
          tlsCertFile: pki.kwokServingCertFile,
          tlsPrivateKeyFile: pki.kwokServingKeyFile,
          manageNodesWithAnnotationSelector: KWOK_NODE_SELECTOR,
          nodeLeaseDurationSeconds: 40,
          // A config file given, kwok fills in no defaults for these.
          nodeLeaseParallelism: 4,
          podPlayStageParallelism: 16,
          nodePlayStageParallelism: 4,
          podsOnNodeSyncParallelism: 2,
          enablePodsOnNodeSyncListPager: true,
          enableDebuggingHandlers: true,
        }),
      ),
    ]);

    const extra = (c: ComponentName): string[] => spec.extraArgs?.[c] ?? [];
    const loop = (p: number): string => `http://127.0.0.1:${p}`;
    const component = (name: ComponentName, args: string[]): ComponentProcess =>
      new ComponentProcess(
        spec.name,
        name,
        binaries[name],
        [...args, ...extra(name)],
        join(logDir, `${name}.log`),
      );

    const components: Record<ComponentName, ComponentProcess> = {
      etcd: component('etcd', [
        `--name=${spec.name}`,
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${loop(etcdClient)}`,
        `--advertise-client-urls=${loop(etcdClient)}`,
        `--listen-peer-urls=${loop(etcdPeer)}`,
        `--initial-advertise-peer-urls=${loop(etcdPeer)}`,
        `--initial-cluster=${spec.name}=${loop(etcdPeer)}`,
        '--initial-cluster-state=new',
        // Test data: durability is not worth an fsync per write.
        '--unsafe-no-fsync=true',
        `--quota-backend-bytes=${1024 * 1024 * 1024}`,
        '--snapshot-count=10000',
        '--log-level=warn',
      ]),
      'kube-apiserver': component('kube-apiserver', [
        `--etcd-servers=${loop(etcdClient)}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiserver}`,
        `--tls-cert-file=${pki.apiserverCertFile}`,
        `--tls-private-key-file=${pki.apiserverKeyFile}`,
        `--client-ca-file=${pki.caCertFile}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${pki.serviceAccountPubFile}`,
        `--service-account-signing-key-file=${pki.serviceAccountKeyFile}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        '--authorization-mode=Node,RBAC',
        '--allow-privileged=true',
        `--kubelet-client-certificate=${pki.kubeletClientCertFile}`,
        `--kubelet-client-key=${pki.kubeletClientKeyFile}`,
        '--kubelet-preferred-address-types=InternalIP,Hostname',
        // The aggregation layer, so that components can verify delegated requests.
        `--requestheader-client-ca-file=${pki.caCertFile}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
        `--proxy-client-cert-file=${pki.proxyClientCertFile}`,
        `--proxy-client-key-file=${pki.proxyClientKeyFile}`,
        // The "kubernetes" Service cannot have a loopback endpoint, and nothing
        // in the test bed reaches the API server through it.
        '--endpoint-reconciler-type=none',
        // One client per cluster on loopback: fairness queues only add latency here.
        '--enable-priority-and-fairness=false',
        '--max-requests-inflight=1000',
        '--max-mutating-requests-inflight=500',
        '--profiling=false',
        `--cert-dir=${join(dir, 'apiserver')}`,
      ]),
      'kube-controller-manager': component('kube-controller-manager', [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${controllerManager}`,
        `--cert-dir=${join(dir, 'kube-controller-manager')}`,
        '--leader-elect=false',
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${pki.serviceAccountKeyFile}`,
        `--root-ca-file=${pki.caCertFile}`,
        `--cluster-signing-cert-file=${pki.caCertFile}`,
        `--cluster-signing-key-file=${pki.caKeyFile}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        `--kube-api-qps=${CLIENT_QPS}`,
        `--kube-api-burst=${CLIENT_BURST}`,
        '--concurrent-job-syncs=10',
        '--profiling=false',
      ]),
      'kube-scheduler': component('kube-scheduler', [
        `--config=${schedulerConfig}`,
        `--authentication-kubeconfig=${schedulerKubeconfig}`,
        `--authorization-kubeconfig=${schedulerKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${scheduler}`,
        `--cert-dir=${join(dir, 'kube-scheduler')}`,
        '--profiling=false',
      ]),
      kwok: component('kwok', [`--kubeconfig=${kwokKubeconfig}`, `--config=${kwokConfig}`]),
    };

    const cluster = new TestCluster(spec, opts, pki, ports, components, adminKubeconfig);
    try {
      await cluster.startComponent('etcd');
      await cluster.startComponent('kube-apiserver');
      await Promise.all([
        cluster.startComponent('kube-controller-manager'),
        cluster.startComponent('kube-scheduler'),
        cluster.startComponent('kwok'),
      ]);
      await Promise.all([
        cluster.addNodes(spec.nodes ?? []),
        // Pods are refused until the service account controller has made "default".
        poll(
          async () =>
            (await cluster.core.readNamespacedServiceAccount({
              name: 'default',
              namespace: 'default',
            }))
              ? true
              : undefined,
          {
            timeoutMs: opts.timeoutMs,
            what: `the default service account in cluster ${spec.name}`,
            abort: () => cluster.deadComponent(),
          },
        ),
      ]);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** The component process, e.g. to read its `logFile`. */
  component(name: ComponentName): ComponentProcess {
    return this.components[name];
  }

  /** Log file of a component. */
  logFile(name: ComponentName): string {
    return this.components[name].logFile;
  }

  /** Starts a stopped component again (same flags, ports and data) and waits until it is healthy. */
  async startComponent(name: ComponentName): Promise<void> {
    const proc = this.components[name];
    proc.start();
    await poll(() => this.healthy(name), {
      timeoutMs: this.timeoutMs,
      intervalMs: 100,
      what: `${name} of cluster ${this.name} to become healthy (log: ${proc.logFile})`,
      abort: () => this.exitedError(proc),
    });
  }

  /** Stops one component (SIGTERM, then SIGKILL), e.g. to test what happens while the API server is down. */
  async stopComponent(name: ComponentName): Promise<void> {
    await this.components[name].stop();
  }

  stopApiServer(): Promise<void> {
    return this.stopComponent('kube-apiserver');
  }

  startApiServer(): Promise<void> {
    return this.startComponent('kube-apiserver');
  }

  /** Creates fake nodes for kwok to simulate and waits until all are Ready. */
  async addNodes(specs: FakeNodeSpec[]): Promise<V1Node[]> {
    if (specs.length === 0) return [];
    await Promise.all(specs.map((spec) => this.core.createNode({ body: fakeNodeObject(spec) })));
    const names = new Set(specs.map((s) => s.name));
    return poll(
      async () => {
        const list = await this.core.listNode();
        const ready = list.items.filter(
          (n) =>
            names.has(n.metadata?.name ?? '') &&
            n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ready.length === names.size ? ready : undefined;
      },
      {
        timeoutMs: this.timeoutMs,
        intervalMs: 200,
        what: `nodes ${[...names].join(', ')} of cluster ${this.name} to be Ready`,
        abort: () => this.deadComponent(),
      },
    );
  }

  /** Runs the test bed's kubectl against this cluster; resolves with its stdout. */
  async kubectl(...args: string[]): Promise<string> {
    const { stdout } = await execFileAsync(this.binaries.kubectl, args, {
      env: { ...process.env, KUBECONFIG: this.kubeconfigPath },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  }

  /** Starts the test bed's kubectl against this cluster and leaves it running (logs -f). */
  spawnKubectl(...args: string[]): ChildProcessWithoutNullStreams {
    return spawn(this.binaries.kubectl, args, {
      env: { ...process.env, KUBECONFIG: this.kubeconfigPath },
    });
  }

  /** Resident memory per running component, in bytes. */
  memory(): Record<ComponentName, number> {
    const out = {} as Record<ComponentName, number>;
    for (const c of COMPONENTS) out[c] = this.components[c].rssBytes();
    return out;
  }

  /** PIDs of the running components, for measuring the test bed. */
  pids(): number[] {
    return COMPONENTS.flatMap((c) => {
      const pid = this.components[c].pid;
      return pid !== undefined && this.components[c].running ? [pid] : [];
    });
  }

  /** Stops every component, kwok and the control plane first, etcd last. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all([
      this.components.kwok.stop(),
      this.components['kube-scheduler'].stop(),
      this.components['kube-controller-manager'].stop(),
    ]);
    await this.components['kube-apiserver'].stop();
    await this.components.etcd.stop();
  }

  private async healthy(name: ComponentName): Promise<true | undefined> {
    const client = {
      ca: this.pki.ca.certPem,
      cert: this.pki.admin.certPem,
      key: this.pki.admin.keyPem,
    };
    let res: { status: number; body: string };
    switch (name) {
      case 'etcd':
        res = await get(`http://127.0.0.1:${this.ports.etcdClient}/health`);
        return res.status === 200 && res.body.includes('"health":"true"') ? true : undefined;
      case 'kube-apiserver':
        res = await get(`${this.server}/readyz`, client);
        return res.status === 200 ? true : undefined;
      case 'kube-controller-manager':
        res = await get(`https://127.0.0.1:${this.ports.controllerManager}/healthz`, {
          insecure: true,
        });
        return res.status === 200 ? true : undefined;
      case 'kube-scheduler':
        res = await get(`https://127.0.0.1:${this.ports.scheduler}/healthz`, { insecure: true });
        return res.status === 200 ? true : undefined;
      case 'kwok':
        res = await get(`${this.kwokServer}/healthz`, { ca: this.pki.ca.certPem });
        return res.status === 200 ? true : undefined;
    }
  }

  private exitedError(proc: ComponentProcess): TestbedError | undefined {
    if (proc.running) return undefined;
    return new TestbedError(
      'TESTBED_COMPONENT_EXITED',
      `${proc.name} of cluster ${this.name} exited during start-up; see ${proc.logFile}:\n${proc.tail()}`,
    );
  }

  /** An error if a component that was started has died since. */
  private deadComponent(): TestbedError | undefined {
    for (const name of COMPONENTS) {
      const proc = this.components[name];
      if (proc.pid !== undefined && !proc.running) {
        return new TestbedError(
          'TESTBED_COMPONENT_EXITED',
          `${name} of cluster ${this.name} exited; see ${proc.logFile}:\n${proc.tail()}`,
        );
      }
    }
    return undefined;
  }
}
