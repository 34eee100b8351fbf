// The charts as an operator meets them: `helm lint`, `helm template` for the value sets the
// docs show, the refusals the charts promise, and every rendered manifest accepted by a real
// kube-apiserver (server-side dry-run), which also compiles the admission policies' CEL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuNode, startTestbed, type TestCluster, type Testbed } from '../testbed/index.js';
import { join } from 'node:path';
import { DAEMON_NODE_OPTIONS } from '../bench/lib/bed.js';
import { BROKER_NODE_OPTIONS } from '../bench/lib/broker.js';
import { Helm, REPO_ROOT, findHelm, run, scratchFile, type KubeObject } from './helm.js';

let helm: Helm;
let testbed: Testbed;
let cluster: TestCluster;

function kubectl(args: readonly string[]): ReturnType<typeof run> {
  return run(testbed.binaries.kubectl, args, { KUBECONFIG: cluster.kubeconfigPath });
}

/** Server-side dry-run of rendered manifests; the objects as the API server would store them. */
function dryRun(manifests: string): KubeObject[] {
  const file = scratchFile('rendered.yaml', manifests);
  const r = kubectl(['apply', '--dry-run=server', '-o', 'json', '-f', file]);
  if (r.status !== 0) throw new Error(`server-side dry-run refused the manifests: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as KubeObject & { items?: KubeObject[] };
  return out.kind === 'List' ? (out.items ?? []) : [out];
}

function find(objs: KubeObject[], kind: string, name: string): KubeObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o)
    throw new Error(
      `no ${kind} ${name} in ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`,
    );
  return o;
}

const kinds = (objs: KubeObject[]): string[] =>
  objs.map((o) => `${o.kind}/${o.metadata.name}`).sort();

interface Container {
  name: string;
  args: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  securityContext: Record<string, unknown>;
  livenessProbe?: { httpGet: { path: string; port: string; scheme: string } };
  readinessProbe?: { httpGet: { path: string; port: string; scheme: string } };
}
interface DeploymentLike {
  spec: {
    replicas: number;
    strategy: { type: string };
    template: {
      spec: {
        containers: Container[];
        securityContext: Record<string, unknown>;
        serviceAccountName: string;
        automountServiceAccountToken?: boolean;
        volumes: {
          name: string;
          secret?: { secretName: string };
          persistentVolumeClaim?: unknown;
        }[];
      };
    };
  };
}
const container = (o: KubeObject): Container =>
  (o as unknown as DeploymentLike).spec.template.spec.containers[0]!;

const BROKER = { pki: { existingSecret: 'spillway-broker-pki' } };
const AGENT = { broker: { address: 'spillway-broker.spillway-system.svc:7443' } };

beforeAll(async () => {
  helm = new Helm(findHelm());
  testbed = await startTestbed({ clusters: [{ name: 'charts', nodes: [cpuNode('cpu-0')] }] });
  cluster = testbed.cluster('charts');
  for (const ns of ['spillway-system', 'ml']) await cluster.kubectl('create', 'namespace', ns);
  // The Prometheus Operator's CRD, reduced to its name: enough for the API server to accept
  // a ServiceMonitor in a dry-run (its fields are not validated here).
  const crd = {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'servicemonitors.monitoring.coreos.com' },
    spec: {
      group: 'monitoring.coreos.com',
      scope: 'Namespaced',
      names: { kind: 'ServiceMonitor', plural: 'servicemonitors', singular: 'servicemonitor' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
          },
        },
      ],
    },
  };
  await cluster.kubectl('apply', '-f', scratchFile('crd.json', JSON.stringify(crd)));
  await cluster.kubectl(
    'wait',
    '--for=condition=Established',
    'crd/servicemonitors.monitoring.coreos.com',
  );
}, 900_000);

afterAll(async () => {
  await testbed?.stop();
});

describe('helm lint', () => {
  it('passes for both charts with their required values, strictly', () => {
    for (const [chart, values] of [
      ['spillway-broker', BROKER],
      ['spillway-agent', AGENT],
    ] as const) {
      const r = helm.lint(chart, values);
      expect(r.stdout + r.stderr, chart).toContain('0 chart(s) failed');
      expect(r.status).toBe(0);
    }
  });

  it('reports a missing required value (helm lint prints template failures, helm template fails on them)', () => {
    const broker = helm.lint('spillway-broker', {});
    expect(broker.stdout + broker.stderr).toContain('pki.existingSecret is required');
    const agent = helm.lint('spillway-agent', {});
    expect(agent.stdout + agent.stderr).toContain('broker.address is required');
  });
});

describe('spillway-broker', () => {
  it('embedded SQLite: one replica, Recreate, a kept PVC, hardened pod, probes on /healthz and /readyz', () => {
    const objs = dryRun(helm.render('spillway-broker', BROKER));
    expect(kinds(objs)).toEqual([
      'Deployment/spillway-broker',
      'PersistentVolumeClaim/spillway-broker-data',
      'Service/spillway-broker',
      'ServiceAccount/spillway-broker',
    ]);
    const d = find(objs, 'Deployment', 'spillway-broker') as unknown as DeploymentLike;
    expect(d.spec.replicas).toBe(1);
    expect(d.spec.strategy.type).toBe('Recreate');
    const pod = d.spec.template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    const c = pod.containers[0]!;
    expect(c.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(c.livenessProbe?.httpGet).toMatchObject({
      path: '/healthz',
      port: 'http',
      scheme: 'HTTP',
    });
    expect(c.readinessProbe?.httpGet).toMatchObject({
      path: '/readyz',
      port: 'http',
      scheme: 'HTTP',
    });
    expect(c.args).toEqual(
      expect.arrayContaining([
        '--store=sqlite',
        '--pki-dir=/etc/spillway/pki',
        '--grpc-port=7443',
        '--reservation-retention=24h',
      ]),
    );
    expect(pod.volumes.find((v) => v.name === 'pki')?.secret?.secretName).toBe(
      'spillway-broker-pki',
    );
    const pvc = find(objs, 'PersistentVolumeClaim', 'spillway-broker-data');
    expect((pvc.metadata as { annotations?: Record<string, string> }).annotations).toMatchObject({
      'helm.sh/resource-policy': 'keep',
    });
    const svc = find(objs, 'Service', 'spillway-broker') as unknown as {
      spec: { ports: { name: string; port: number }[] };
    };
    expect(svc.spec.ports.map((p) => [p.name, p.port])).toEqual([
      ['grpc', 7443],
      ['http', 8080],
    ]);
  });

  it('Redis HA: three replicas rolling, a PodDisruptionBudget, the URL from a Secret, TLS probes, a ServiceMonitor', () => {
    const objs = dryRun(
      helm.render('spillway-broker', {
        ...BROKER,
        replicaCount: 3,
        store: { type: 'redis', redis: { existingSecret: 'spillway-redis' } },
        config: { httpTls: true },
        serviceMonitor: { enabled: true, labels: { release: 'prometheus' } },
        auth: { adminToken: { existingSecret: 'spillway-admin' } },
      }),
    );
    expect(kinds(objs)).toEqual([
      'Deployment/spillway-broker',
      'PodDisruptionBudget/spillway-broker',
      'Service/spillway-broker',
      'ServiceAccount/spillway-broker',
      'ServiceMonitor/spillway-broker',
    ]);
    const d = find(objs, 'Deployment', 'spillway-broker') as unknown as DeploymentLike;
    expect(d.spec.replicas).toBe(3);
    expect(d.spec.strategy.type).toBe('RollingUpdate');
    const c = d.spec.template.spec.containers[0]!;
    expect(c.args).toEqual(expect.arrayContaining(['--store=redis', '--http-tls']));
    expect(c.env?.find((e) => e.name === 'SPILLWAY_REDIS_URL')?.valueFrom).toEqual({
      secretKeyRef: { name: 'spillway-redis', key: 'url' },
    });
    expect(c.env?.find((e) => e.name === 'SPILLWAY_ADMIN_TOKEN')?.valueFrom).toEqual({
      secretKeyRef: { name: 'spillway-admin', key: 'admin-token' },
    });
    // The benchmarks run the broker with the chart's Node.js flags.
    expect(c.env?.find((e) => e.name === 'NODE_OPTIONS')?.value).toBe(BROKER_NODE_OPTIONS);
    expect(c.readinessProbe?.httpGet.scheme).toBe('HTTPS');
    expect(d.spec.template.spec.volumes.find((v) => v.name === 'data')?.persistentVolumeClaim).toBe(
      undefined,
    );
    const pdb = find(objs, 'PodDisruptionBudget', 'spillway-broker') as unknown as {
      spec: { maxUnavailable: number };
    };
    expect(pdb.spec.maxUnavailable).toBe(1);
  });

  it('NodePort with fixed ports', () => {
    const objs = dryRun(
      helm.render('spillway-broker', {
        ...BROKER,
        service: { type: 'NodePort', nodePorts: { grpc: 30743, http: 30080 } },
      }),
    );
    const svc = find(objs, 'Service', 'spillway-broker') as unknown as {
      spec: { type: string; ports: { name: string; nodePort: number }[] };
    };
    expect(svc.spec.type).toBe('NodePort');
    expect(svc.spec.ports.map((p) => p.nodePort)).toEqual([30743, 30080]);
  });

  it.each([
    [
      'several replicas on SQLite',
      { ...BROKER, replicaCount: 2 },
      'replicaCount=2 needs store.type=redis',
    ],
    ['no PKI Secret', {}, 'pki.existingSecret is required'],
    [
      'Redis without a URL',
      { ...BROKER, replicaCount: 2, store: { type: 'redis' } },
      'store.type=redis needs store.redis.existingSecret',
    ],
    ['an unknown key', { ...BROKER, replicas: 2 }, "additional properties 'replicas' not allowed"],
    [
      'an unknown placement policy',
      { ...BROKER, config: { placementPolicy: 'random' } },
      'placementPolicy',
    ],
    ['a bad duration', { ...BROKER, config: { reservationTtl: '1 minute' } }, 'reservationTtl'],
  ])('refuses %s with a clear error', (_what, values, message) => {
    const r = helm.template('spillway-broker', values);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(message);
  });
});

describe('spillway-agent', () => {
  it('a donor: agent only, its RBAC, the tenant ClusterRole and the admission policy', () => {
    const objs = dryRun(helm.render('spillway-agent', AGENT));
    expect(kinds(objs)).toEqual([
      'ClusterRole/spillway-agent',
      'ClusterRole/spillway-agent-tenant',
      'ClusterRoleBinding/spillway-agent',
      'Deployment/spillway-agent',
      'Role/spillway-agent',
      'RoleBinding/spillway-agent',
      'ServiceAccount/spillway-agent',
      'ValidatingAdmissionPolicy/spillway-agent-tenancy',
      'ValidatingAdmissionPolicyBinding/spillway-agent-tenancy',
    ]);
    const c = container(find(objs, 'Deployment', 'spillway-agent'));
    expect(c.args).toEqual(
      expect.arrayContaining([
        '--broker-address=spillway-broker.spillway-system.svc:7443',
        '--namespace=spillway-system',
        '--join-token-secret=spillway-join-token',
        '--tenant-cluster-role=spillway-agent-tenant',
        '--service-account-name=spillway-agent',
      ]),
    );
  });

  it('donor policy and GPU resource names become agent flags', () => {
    const objs = dryRun(
      helm.render('spillway-agent', {
        ...AGENT,
        gpuResources: ['nvidia.com/gpu', 'nvidia.com/mig-*'],
        donor: {
          policy: {
            nodeSelector: { 'spillway.io/lend': 'true', pool: 'gpu' },
            reservedGpusPerNode: 1,
            allowedCapabilities: ['CHOWN'],
            gpuTolerations: ['nvidia.com/gpu:NoSchedule'],
          },
        },
      }),
    );
    expect(container(find(objs, 'Deployment', 'spillway-agent')).args).toEqual(
      expect.arrayContaining([
        '--gpu-resources=nvidia.com/gpu,nvidia.com/mig-*',
        '--node-selector=pool=gpu,spillway.io/lend=true',
        '--reserved-gpus-per-node=1',
        '--allowed-capabilities=CHOWN',
        '--gpu-tolerations=nvidia.com/gpu:NoSchedule',
      ]),
    );
  });

  it('an origin: the shim with its kubelet-like RBAC, Lease Role, read grants per offload namespace', () => {
    const objs = dryRun(
      helm.render('spillway-agent', {
        ...AGENT,
        role: 'origin',
        clusterId: 'lab-a',
        virtualNode: { offloadNamespaces: ['ml'], gracePeriod: '30s' },
      }),
    );
    expect(kinds(objs)).toEqual([
      'ClusterRole/spillway-agent',
      'ClusterRole/spillway-virtual-node',
      'ClusterRole/spillway-virtual-node-config',
      'ClusterRoleBinding/spillway-agent',
      'ClusterRoleBinding/spillway-virtual-node',
      'Deployment/spillway-agent',
      'Deployment/spillway-virtual-node',
      'Role/spillway-agent',
      'Role/spillway-virtual-node',
      'Role/spillway-virtual-node',
      'RoleBinding/spillway-agent',
      'RoleBinding/spillway-virtual-node',
      'RoleBinding/spillway-virtual-node',
      'RoleBinding/spillway-virtual-node-config',
      'ServiceAccount/spillway-agent',
      'ServiceAccount/spillway-virtual-node',
      'ValidatingAdmissionPolicy/spillway-virtual-node',
      'ValidatingAdmissionPolicyBinding/spillway-virtual-node',
    ]);
    expect(
      objs
        .filter((o) => o.kind === 'Role')
        .map((o) => o.metadata.namespace)
        .sort(),
    ).toEqual(['kube-node-lease', 'spillway-system', 'spillway-system']);
    expect(find(objs, 'RoleBinding', 'spillway-virtual-node-config').metadata.namespace).toBe('ml');
    const shim = container(find(objs, 'Deployment', 'spillway-virtual-node'));
    expect(shim.args).toEqual(
      expect.arrayContaining([
        '--offload-scope=labelled',
        '--grace-period=30s',
        '--cluster-id=lab-a',
      ]),
    );
    expect(shim.env?.[0]).toMatchObject({ name: 'SPILLWAY_NODE_ADDRESS' });
    // The benchmarks run the agent and the shim with the chart's Node.js flags.
    const agent = container(find(objs, 'Deployment', 'spillway-agent'));
    for (const c of [shim, agent]) {
      expect(c.env?.find((e) => e.name === 'NODE_OPTIONS')?.value).toBe(DAEMON_NODE_OPTIONS);
    }
    // An origin-only agent gets no write verb anywhere.
    const rules = (
      find(objs, 'ClusterRole', 'spillway-agent') as unknown as {
        rules: { verbs: string[] }[];
      }
    ).rules.flatMap((r) => r.verbs);
    expect([...new Set(rules)].sort()).toEqual(['list', 'watch']);
    expect(container(find(objs, 'Deployment', 'spillway-agent')).args.join(' ')).not.toContain(
      '--tenant-cluster-role',
    );
  });

  it('rbac.create=false and serviceAccount.create=false render the Deployments only', () => {
    const objs = dryRun(
      helm.render('spillway-agent', {
        ...AGENT,
        role: 'both',
        virtualNode: { offloadScope: 'all', readConfigCluster: true },
        rbac: { create: false },
        serviceAccount: { create: false },
      }),
    );
    expect(kinds(objs)).toEqual(['Deployment/spillway-agent', 'Deployment/spillway-virtual-node']);
  });

  it.each([
    ['no broker address', {}, 'broker.address is required'],
    [
      'a broker URL instead of host:port',
      { broker: { address: 'https://b:7443' } },
      'must be host:port',
    ],
    ['an unknown role', { ...AGENT, role: 'donr' }, 'role'],
    [
      'offloadScope=all without a config read grant',
      { ...AGENT, role: 'origin', virtualNode: { offloadScope: 'all' } },
      'virtualNode.offloadScope=all needs virtualNode.offloadNamespaces',
    ],
    [
      'a malformed GPU toleration',
      { ...AGENT, donor: { policy: { gpuTolerations: ['gpu'] } } },
      'gpuTolerations',
    ],
  ])('refuses %s with a clear error', (_what, values, message) => {
    const r = helm.template('spillway-agent', values);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(message);
  });
});

describe('the flags the charts pass', () => {
  // Each daemon parses its flags strictly and validates every value, then stops at --help:
  // a flag the chart invents, or a value the daemon would refuse, fails here.
  const daemons: Record<string, string> = {
    broker: 'packages/broker/dist/main.js',
    agent: 'packages/agent/dist/main.js',
    'virtual-node': 'packages/virtual-node/dist/main.js',
  };
  it.each([
    ['spillway-broker', 'spillway-broker', BROKER],
    [
      'spillway-broker',
      'spillway-broker',
      {
        ...BROKER,
        replicaCount: 2,
        store: { type: 'redis', redis: { url: 'redis://r:6379' } },
        config: { httpTls: true },
      },
    ],
    [
      'spillway-agent',
      'spillway-agent',
      {
        ...AGENT,
        role: 'both',
        gpuResources: ['nvidia.com/gpu'],
        donor: { policy: { nodeSelector: { a: 'b' }, allowServiceAccountToken: true } },
        virtualNode: { offloadNamespaces: ['ml'] },
      },
    ],
  ])("%s: every Deployment's flags are accepted by its daemon", (chart, _release, values) => {
    const objs = dryRun(helm.render(chart, values));
    const deployments = objs.filter((o) => o.kind === 'Deployment');
    expect(deployments.length).toBeGreaterThan(0);
    for (const d of deployments) {
      const c = container(d);
      const main = daemons[c.name];
      expect(main, `a daemon for container ${c.name}`).toBeDefined();
      const r = run(process.execPath, [join(REPO_ROOT, main!), ...c.args, '--help']);
      expect(r.stderr, `${c.name} ${c.args.join(' ')}`).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('--log-level');
    }
  });
});
