// The agent's and the shim's permissions, proven on a real API server: the chart's RBAC and
// admission policies are applied for real, the real agent runs as its ServiceAccount (a
// TokenRequest token, no impersonation) and does its donor job, and then both
// ServiceAccounts are asked what they may do and made to try what they must not.
import { writeFileSync } from 'node:fs';
import { CoordinationV1Api, CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { MERGE_PATCH, apiMessage } from '@spillway/common';
import { BrokerClient, joinCluster } from '@spillway/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSpillway, type SpillwayBed } from '../harness/spillway.js';
import {
  GPU_RESOURCE,
  cpuNode,
  gpuNode,
  poll,
  startTestbed,
  type TestCluster,
  type Testbed,
} from '../testbed/index.js';
import { Helm, findHelm, run, scratchFile, type KubeObject } from './helm.js';

const NS = 'spillway-system';
const AGENT = `system:serviceaccount:${NS}:spillway-agent`;
const SHIM = `system:serviceaccount:${NS}:spillway-virtual-node`;
const TENANT = 'spillway-origin';

let testbed: Testbed;
let cluster: TestCluster;
let bed: SpillwayBed;
let originClient: BrokerClient;
let agentKubeconfig = '';
let shimKubeconfig = '';

/** poll() for checks that are synchronous (kubectl runs). */
function until<T>(check: () => T | undefined, opts: Parameters<typeof poll>[1]): Promise<T> {
  return poll(() => Promise.resolve(check()), opts);
}

function kubectl(args: readonly string[], kubeconfig = cluster.kubeconfigPath) {
  return run(testbed.binaries.kubectl, args, { KUBECONFIG: kubeconfig });
}
function ok(args: readonly string[], kubeconfig?: string): string {
  const r = kubectl(args, kubeconfig);
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}
/**
 * Runs as the ServiceAccount and expects a refusal by `by`: RBAC (the authorizer) or an
 * admission policy. Returns the API server's message.
 */
function refused(args: readonly string[], kubeconfig: string, by: 'rbac' | 'policy'): string {
  const r = kubectl(args, kubeconfig);
  expect(r.status, `expected a refusal of: kubectl ${args.join(' ')}\n${r.stdout}`).not.toBe(0);
  expect(r.stderr, `kubectl ${args.join(' ')}`).toMatch(
    by === 'rbac' ? RBAC_REFUSAL : POLICY_REFUSAL,
  );
  return r.stderr;
}
/** SubjectAccessReview through `kubectl auth can-i`; `resource` may be res/name or res:subresource. */
function canI(user: string, verb: string, resource: string, ns?: string): boolean {
  const [res, sub] = resource.split(':');
  const r = kubectl([
    'auth',
    'can-i',
    verb,
    res!,
    ...(sub ? [`--subresource=${sub}`] : []),
    `--as=${user}`,
    ...(ns ? ['-n', ns] : []),
  ]);
  return r.stdout.trim() === 'yes';
}
/** Creates as `kubeconfig` with `kubectl create` (apply would need get). */
function create(obj: object, kubeconfig?: string) {
  return kubectl(['create', '-f', scratchFile('obj.json', JSON.stringify(obj))], kubeconfig);
}
const RBAC_REFUSAL = /cannot \w+ resource/;
const POLICY_REFUSAL = /ValidatingAdmissionPolicy '[-a-z]+' .*denied request/;

/** The API clients the daemons use, authenticated as a ServiceAccount (merge patches need no get). */
function apiAs(kubeconfig: string): { core: CoreV1Api; coordination: CoordinationV1Api } {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return { core: kc.makeApiClient(CoreV1Api), coordination: kc.makeApiClient(CoordinationV1Api) };
}
/** Awaits a call that must be refused by `by`; returns the API server's message. */
async function refusedCall(call: Promise<unknown>, by: 'rbac' | 'policy'): Promise<string> {
  const outcome = await call.then(
    () => 'allowed',
    (err: unknown) => apiMessage(err),
  );
  expect(outcome).toMatch(by === 'rbac' ? RBAC_REFUSAL : POLICY_REFUSAL);
  return outcome;
}
function applyJson(obj: object, kubeconfig?: string): void {
  ok(['apply', '-f', scratchFile('obj.json', JSON.stringify(obj))], kubeconfig);
}

/** A kubeconfig that authenticates with a fresh token of the ServiceAccount. */
function serviceAccountKubeconfig(name: string): string {
  const token = ok(['create', 'token', name, '-n', NS, '--duration=1h']).trim();
  const c = cluster.kubeConfig.getCurrentCluster()!;
  const path = scratchFile(`${name}.kubeconfig`, '');
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'c', cluster: { server: c.server, 'certificate-authority-data': c.caData } },
      ],
      users: [{ name, user: { token } }],
      contexts: [{ name, context: { cluster: 'c', user: name } }],
      'current-context': name,
    }),
  );
  return path;
}

beforeAll(async () => {
  const helm = new Helm(findHelm());
  testbed = await startTestbed({
    clusters: [{ name: 'donor', nodes: [gpuNode('donor-gpu-0', 4), cpuNode('donor-cpu-0')] }],
  });
  cluster = testbed.cluster('donor');
  for (const ns of [NS, 'ml', 'victim']) ok(['create', 'namespace', ns]);
  // The chart for a cluster that lends and offloads; everything but the Deployments (the
  // agent runs here from the repository, as the chart's ServiceAccount).
  const rendered = helm.render('spillway-agent', {
    broker: { address: 'broker.example:7443' },
    role: 'both',
    virtualNode: { offloadNamespaces: ['ml'] },
  });
  const file = scratchFile('agent-chart.yaml', rendered);
  const objs = JSON.parse(ok(['apply', '--dry-run=server', '-o', 'json', '-f', file])) as {
    items: KubeObject[];
  };
  for (const o of objs.items.filter((x) => x.kind !== 'Deployment')) {
    delete (o.metadata as Record<string, unknown>).resourceVersion;
    applyJson(o);
  }
  agentKubeconfig = serviceAccountKubeconfig('spillway-agent');
  shimKubeconfig = serviceAccountKubeconfig('spillway-virtual-node');
  // Policies are enforced once the API server has loaded them: wait for the first refusal.
  await until(
    () =>
      kubectl(['create', 'namespace', 'not-a-tenant'], agentKubeconfig).stderr.includes(
        'denied request',
      ) || undefined,
    { timeoutMs: 20_000, what: 'the admission policies to be enforced' },
  );

  bed = await startSpillway();
  await bed.joinAgent(cluster, 'donor', {
    kubeconfig: agentKubeconfig,
    namespace: NS,
    tenantClusterRole: 'spillway-agent-tenant',
    serviceAccountName: 'spillway-agent',
  });
  const { token } = await bed.broker.core.createJoinToken({ clusterId: 'origin', role: 'origin' });
  const origin = await joinCluster({
    brokerAddress: bed.brokerAddress,
    caPem: bed.broker.caCertPem,
    token,
  });
  originClient = new BrokerClient({
    address: bed.brokerAddress,
    caPem: origin.caPem,
    certPem: origin.certPem,
    keyPem: origin.keyPem,
  });
}, 900_000);

afterAll(async () => {
  await originClient?.close();
  await bed?.stop();
  await testbed?.stop();
});

const gpuPod: V1Pod = {
  metadata: { name: 'train-0', namespace: 'default' },
  spec: {
    tolerations: [{ key: GPU_RESOURCE, operator: 'Exists', effect: 'NoSchedule' }],
    containers: [
      {
        name: 'main',
        image: 'trainer:1',
        envFrom: [{ configMapRef: { name: 'settings' } }],
        resources: { limits: { [GPU_RESOURCE]: '2' } },
      },
    ],
    volumes: [{ name: 'creds', secret: { secretName: 'creds' } }],
  },
};
const uid = '5b1f7c9e-0000-4000-8000-000000000001';

describe('the agent, running as its ServiceAccount, can do its job', () => {
  it('stores its identity, reports inventory, and on peering creates and binds its tenant namespace', async () => {
    const id = JSON.parse(ok(['get', 'secret', 'spillway-identity', '-n', NS, '-o', 'json'])) as {
      type: string;
    };
    expect(id.type).toBe('kubernetes.io/tls');
    await poll(
      async () =>
        (await bed.broker.core.capacity()).rows.some(
          (r) => r.cluster === 'donor' && r.free === 4,
        ) || undefined,
      { timeoutMs: 15_000, what: 'the donor to report 4 free GPUs' },
    );
    await bed.broker.core.createPeering({ origin: 'origin', donor: 'donor', maxGpus: 4 });
    const rb = await until(
      () => {
        const r = kubectl(['get', 'rolebinding', 'spillway-agent', '-n', TENANT, '-o', 'json']);
        return r.status === 0 ? (JSON.parse(r.stdout) as KubeObject) : undefined;
      },
      { timeoutMs: 15_000, what: `the RoleBinding in ${TENANT}` },
    );
    expect(rb).toMatchObject({
      roleRef: { kind: 'ClusterRole', name: 'spillway-agent-tenant' },
      subjects: [{ kind: 'ServiceAccount', name: 'spillway-agent', namespace: NS }],
    });
    // The quota follows the binding, once the authorizer honours it.
    const quota = await until(
      () => {
        const r = kubectl(['get', 'resourcequota', 'spillway-tenant', '-n', TENANT, '-o', 'json']);
        return r.status === 0
          ? (JSON.parse(r.stdout) as { spec: { hard: Record<string, string> } })
          : undefined;
      },
      { timeoutMs: 15_000, what: `the ResourceQuota in ${TENANT}` },
    );
    expect(quota.spec.hard[`requests.${GPU_RESOURCE}`]).toBe('4');
  });

  it('runs an offloaded pod with its ConfigMap and Secret, then deletes it and collects them', async () => {
    const res = await originClient.createPod({
      donor_cluster: 'donor',
      pod: { origin_cluster: 'origin', namespace: 'default', name: 'train-0', uid },
      pod_json: JSON.stringify(gpuPod),
      config_maps_json: [
        JSON.stringify({
          kind: 'ConfigMap',
          metadata: { name: 'settings', namespace: 'default' },
          data: { A: '1' },
        }),
      ],
      secrets_json: [
        JSON.stringify({
          kind: 'Secret',
          metadata: { name: 'creds', namespace: 'default' },
          data: { t: 'eA==' },
        }),
      ],
    });
    expect(res.remote_namespace).toBe(TENANT);
    await until(
      () =>
        ok(['get', 'pod', res.remote_name, '-n', TENANT, '-o', 'jsonpath={.status.phase}']) ===
          'Running' || undefined,
      { timeoutMs: 30_000, what: 'the offloaded pod to run' },
    );
    expect(
      ok([
        'get',
        'configmap,secret',
        '-n',
        TENANT,
        '-l',
        'spillway.io/reflected=true',
        '-o',
        'name',
      ]),
    ).toContain('configmap/default.settings');
    const del = await originClient.deletePod({
      donor_cluster: 'donor',
      pod: { origin_cluster: 'origin', namespace: 'default', name: 'train-0', uid },
      grace_period_seconds: '0',
    });
    expect(del.not_found).toBe(false);
    await until(
      () =>
        ok([
          'get',
          'configmap,secret',
          '-n',
          TENANT,
          '-l',
          'spillway.io/reflected=true',
          '-o',
          'name',
        ]).trim() === '' || undefined,
      { timeoutMs: 15_000, what: 'the reflected ConfigMap and Secret to be collected' },
    );
  });
});

describe('the agent is refused everything else', () => {
  it('RBAC: what the agent may and may not do (SubjectAccessReview through kubectl auth can-i)', () => {
    const allowed: [string, string, string?][] = [
      ['list', 'nodes'],
      ['watch', 'pods'],
      ['list', 'events'],
      ['create', 'namespaces'],
      ['create', 'rolebindings', 'any-namespace'],
      ['bind', 'clusterroles/spillway-agent-tenant'],
      ['get', 'secrets/spillway-identity', NS],
      ['create', 'secrets', NS],
      ['create', 'pods', TENANT],
      ['list', 'secrets', TENANT],
      ['get', 'pods:log', TENANT],
      ['create', 'priorityclasses'],
      ['delete', 'priorityclasses/spillway-guest'],
    ];
    const denied: [string, string, string?][] = [
      ['get', 'secrets', 'default'],
      ['list', 'secrets', 'kube-system'],
      ['get', 'secrets/other', NS],
      ['list', 'secrets', NS],
      ['get', 'configmaps', 'default'],
      ['create', 'pods', 'default'],
      ['create', 'pods', NS],
      ['delete', 'pods', 'default'],
      ['update', 'nodes'],
      ['get', 'nodes'],
      ['create', 'clusterrolebindings'],
      ['bind', 'clusterroles/cluster-admin'],
      ['escalate', 'clusterroles'],
      ['create', 'pods:exec', TENANT],
      ['create', 'serviceaccounts:token', NS],
      ['delete', 'priorityclasses/system-cluster-critical'],
      ['update', 'priorityclasses/spillway-guest'],
    ];
    for (const [verb, res, ns] of allowed)
      expect(canI(AGENT, verb, res, ns), `${verb} ${res} ${ns ?? ''}`).toBe(true);
    for (const [verb, res, ns] of denied)
      expect(canI(AGENT, verb, res, ns), `${verb} ${res} ${ns ?? ''}`).toBe(false);
  });

  it('cannot read or write Secrets outside its own two and its tenant namespaces', () => {
    ok(['create', 'secret', 'generic', 'db', '-n', 'victim', '--from-literal=p=x']);
    ok(['create', 'secret', 'generic', 'other', '-n', NS, '--from-literal=p=x']);
    refused(['get', 'secret', 'db', '-n', 'victim'], agentKubeconfig, 'rbac');
    refused(['get', 'secrets', '-A'], agentKubeconfig, 'rbac');
    refused(['get', 'secret', 'other', '-n', NS], agentKubeconfig, 'rbac');
    refused(
      ['create', 'secret', 'generic', 'x', '-n', 'default', '--from-literal=a=b'],
      agentKubeconfig,
      'rbac',
    );
    refused(['run', 'x', '--image=busybox', '-n', 'victim'], agentKubeconfig, 'rbac');
  });

  it('admission: namespaces it may create, change and delete are tenant namespaces only', async () => {
    expect(refused(['create', 'namespace', 'evil'], agentKubeconfig, 'policy')).toContain(
      'tenant namespaces',
    );
    refused(['create', 'namespace', 'spillway-unlabelled'], agentKubeconfig, 'policy');
    const good = {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: 'spillway-good',
        labels: { 'spillway.io/tenant': 'true', 'pod-security.kubernetes.io/enforce': 'baseline' },
      },
    };
    expect(create(good, agentKubeconfig).status).toBe(0);
    const { core } = apiAs(agentKubeconfig);
    const privileged = {
      metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } },
    };
    expect(
      await refusedCall(
        core.patchNamespace({ name: 'spillway-good', body: privileged }, MERGE_PATCH),
        'policy',
      ),
    ).toContain('Pod Security baseline or restricted');
    const adopt = {
      metadata: {
        labels: { 'spillway.io/tenant': 'true', 'pod-security.kubernetes.io/enforce': 'baseline' },
      },
    };
    await refusedCall(core.patchNamespace({ name: 'victim', body: adopt }, MERGE_PATCH), 'policy');
    await refusedCall(core.patchNamespace({ name: NS, body: adopt }, MERGE_PATCH), 'policy');
    await refusedCall(core.deleteNamespace({ name: 'victim' }), 'policy');
    await refusedCall(core.deleteNamespace({ name: NS }), 'policy');
    expect(ok(['get', 'namespace', 'victim', NS, '-o', 'name'])).toContain('victim');
    await core.deleteNamespace({ name: 'spillway-good' });
  });

  it('admission: RoleBindings only of its tenant role, to itself, in tenant namespaces', () => {
    const binding = (ns: string, role: string, sa: string) => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: `rb-${role}-${sa}`, namespace: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [{ kind: 'ServiceAccount', name: sa, namespace: NS }],
    });
    const attempt = (obj: object) =>
      kubectl(['create', '-f', scratchFile('rb.json', JSON.stringify(obj))], agentKubeconfig);
    // Into a namespace that is not a tenant: the policy refuses it.
    const outside = attempt(binding('victim', 'spillway-agent-tenant', 'spillway-agent'));
    expect(outside.status).not.toBe(0);
    expect(outside.stderr).toContain('writes only inside tenant namespaces');
    // Another role: RBAC's escalation check refuses it (no bind on cluster-admin).
    const escalate = attempt(binding(TENANT, 'cluster-admin', 'spillway-agent'));
    expect(escalate.status).not.toBe(0);
    expect(escalate.stderr).toMatch(/forbidden/i);
    // Its tenant role to someone else: the policy refuses it.
    const other = attempt(binding(TENANT, 'spillway-agent-tenant', 'default'));
    expect(other.status).not.toBe(0);
    expect(other.stderr).toContain('only bind ClusterRole spillway-agent-tenant');
  });
});

describe('the virtual-node shim: a kubelet for its own nodes only', () => {
  const virtualNode = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'spillway-donor-x', labels: { type: 'virtual-kubelet' } },
    spec: { taints: [{ key: 'spillway.io/virtual-node', value: 'true', effect: 'NoSchedule' }] },
  };

  it('RBAC: what the shim may and may not do', () => {
    const allowed: [string, string, string?][] = [
      ['create', 'nodes'],
      ['patch', 'nodes:status'],
      ['watch', 'pods'],
      ['update', 'pods:status', 'default'],
      ['create', 'pods:binding', 'default'],
      ['create', 'events', 'default'],
      ['patch', 'leases', 'kube-node-lease'],
      ['list', 'namespaces'],
      ['get', 'secrets', 'ml'],
      ['get', 'configmaps', 'ml'],
      ['watch', 'secrets', NS],
    ];
    const denied: [string, string, string?][] = [
      ['get', 'secrets', 'default'],
      ['list', 'secrets', 'ml'],
      ['create', 'pods', 'default'],
      ['create', 'leases', 'default'],
      ['update', 'nodes'],
      ['create', 'namespaces'],
      ['create', 'pods:exec', 'default'],
      ['create', 'rolebindings', 'default'],
      ['create', 'secrets', NS],
    ];
    for (const [verb, res, ns] of allowed)
      expect(canI(SHIM, verb, res, ns), `${verb} ${res} ${ns ?? ''}`).toBe(true);
    for (const [verb, res, ns] of denied)
      expect(canI(SHIM, verb, res, ns), `${verb} ${res} ${ns ?? ''}`).toBe(false);
  });

  it('registers, heartbeats and removes a virtual node, and may not touch a real one', async () => {
    const { core, coordination } = apiAs(shimKubeconfig);
    expect(create(virtualNode, shimKubeconfig).stderr).toBe('');
    const capacity = (n: string) => ({ status: { capacity: { [GPU_RESOURCE]: n } } });
    await core.patchNodeStatus({ name: 'spillway-donor-x', body: capacity('4') }, MERGE_PATCH);
    const lease = (name: string) => ({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace: 'kube-node-lease' },
      spec: { holderIdentity: name, leaseDurationSeconds: 40 },
    });
    expect(create(lease('spillway-donor-x'), shimKubeconfig).stderr).toBe('');
    await coordination.patchNamespacedLease(
      {
        name: 'spillway-donor-x',
        namespace: 'kube-node-lease',
        body: { spec: { leaseDurationSeconds: 30 } },
      },
      MERGE_PATCH,
    );

    const rogue = create(
      { ...virtualNode, metadata: { name: 'gpu-9', labels: { type: 'virtual-kubelet' } } },
      shimKubeconfig,
    );
    expect(rogue.stderr).toContain('only register and change its virtual nodes');
    const label = { metadata: { labels: { type: 'virtual-kubelet' } } };
    await refusedCall(core.patchNode({ name: 'donor-cpu-0', body: label }, MERGE_PATCH), 'policy');
    await refusedCall(
      core.patchNodeStatus({ name: 'donor-gpu-0', body: capacity('99') }, MERGE_PATCH),
      'policy',
    );
    await refusedCall(core.deleteNode({ name: 'donor-cpu-0' }), 'policy');
    expect(create(lease('donor-cpu-0'), shimKubeconfig).stderr).toContain(
      'only keep the Leases of its virtual nodes',
    );
    refused(['get', 'secret', 'db', '-n', 'victim'], shimKubeconfig, 'rbac');
    refused(['get', 'secrets', '-n', 'ml'], shimKubeconfig, 'rbac');
    expect(ok(['get', 'nodes', '-o', 'name'])).toContain('node/donor-cpu-0');
  });

  it('binds and changes only pods of its virtual nodes', async () => {
    const { core, coordination } = apiAs(shimKubeconfig);
    // Pending pods the scheduler cannot place (no node matches), and a pod on a real node.
    for (const name of ['pending-a', 'pending-b'])
      applyJson({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'default' },
        spec: { nodeSelector: { nowhere: 'true' }, containers: [{ name: 'c', image: 'x' }] },
      });
    applyJson({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'local', namespace: 'default' },
      spec: { nodeName: 'donor-cpu-0', containers: [{ name: 'c', image: 'x' }] },
    });
    const bind = (pod: string, node: string) =>
      kubectl(
        [
          'create',
          '--raw',
          `/api/v1/namespaces/default/pods/${pod}/binding`,
          '-f',
          scratchFile(
            'b.json',
            JSON.stringify({
              apiVersion: 'v1',
              kind: 'Binding',
              metadata: { name: pod },
              target: { apiVersion: 'v1', kind: 'Node', name: node },
            }),
          ),
        ],
        shimKubeconfig,
      );
    const toReal = bind('pending-a', 'donor-cpu-0');
    expect(toReal.status).not.toBe(0);
    expect(toReal.stderr).toContain('only bind pods to its virtual nodes');
    expect(bind('pending-b', 'spillway-donor-x').stderr).toBe('');
    const annotate = { metadata: { annotations: { 'spillway.io/donor': 'donor-x' } } };
    const patchPod = (name: string) =>
      core.patchNamespacedPod({ name, namespace: 'default', body: annotate }, MERGE_PATCH);
    await patchPod('pending-b');
    expect(await refusedCall(patchPod('local'), 'policy')).toContain(
      'pods bound to its virtual nodes',
    );
    await refusedCall(patchPod('pending-a'), 'policy');
    await refusedCall(core.deleteNamespacedPod({ name: 'local', namespace: 'default' }), 'policy');
    await core.deleteNamespacedPod({ name: 'pending-b', namespace: 'default' });
    await coordination.deleteNamespacedLease({
      name: 'spillway-donor-x',
      namespace: 'kube-node-lease',
    });
    await core.deleteNode({ name: 'spillway-donor-x' });
  });
});
