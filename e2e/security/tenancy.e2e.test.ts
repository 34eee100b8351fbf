import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { startAgent, agentConfigSchema, type RunningAgent } from '@spillway/agent';
import { BrokerClient, joinCluster, type JoinedIdentity } from '@spillway/api';
import { SpillwayError, createLogger, loadConfig, podReferences } from '@spillway/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GPU_RESOURCE,
  cpuNode,
  gpuNode,
  poll,
  startTestbed,
  type TestCluster,
  type Testbed,
} from '../testbed/index.js';
import { mintJoinToken, startBrokerProcess, type BrokerProcess } from './broker-process.js';

// Tenancy on a real donor: a broker process, the donor's real agent on a test bed cluster,
// and origins that try to step outside what their peering gave them. origin-a is peered
// with donor-d (2 GPUs); origin-b is peered with no one; donor-e is a donor origin-a is not
// peered with.

const TENANT = 'spillway-origin-a';
const MARKER = 'donor-secret-value-7f3a9c';
const MARKER_B64 = Buffer.from(MARKER).toString('base64');

let testbed: Testbed;
let donor: TestCluster;
let b: BrokerProcess;
let agent: RunningAgent;
let originA: BrokerClient;
let originB: BrokerClient;
const seenByOrigin: string[] = [];

function client(id: JoinedIdentity): BrokerClient {
  return new BrokerClient({
    address: b.grpcAddress,
    caPem: b.caPem,
    certPem: id.certPem,
    keyPem: id.keyPem,
    callTimeoutMs: 20_000,
  });
}

async function joinAs(id: string, role: 'origin' | 'donor'): Promise<JoinedIdentity> {
  return joinCluster({
    brokerAddress: b.grpcAddress,
    caPem: b.caPem,
    token: await mintJoinToken(b, id, role),
  });
}

async function refusal(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

function gpuPod(name: string, gpus: number): V1Pod {
  return {
    metadata: { name, namespace: 'ml' },
    spec: {
      tolerations: [{ key: GPU_RESOURCE, operator: 'Exists', effect: 'NoSchedule' }],
      containers: [
        {
          name: 'main',
          image: 'trainer:1',
          resources: { limits: { [GPU_RESOURCE]: String(gpus) } },
        },
      ],
    },
  };
}

const sentSecret = JSON.stringify({
  kind: 'Secret',
  metadata: { name: 'creds', namespace: 'ml' },
  data: { token: Buffer.from('origin-a-own').toString('base64') },
});

function create(
  c: BrokerClient,
  pod: V1Pod,
  opts: { origin?: string; donor?: string; uid?: string; secrets?: string[] } = {},
) {
  const name = pod.metadata!.name!;
  return c.createPod({
    donor_cluster: opts.donor ?? 'donor-d',
    pod: {
      origin_cluster: opts.origin ?? 'origin-a',
      namespace: 'ml',
      name,
      uid: opts.uid ?? `uid-${name}`,
    },
    pod_json: JSON.stringify(pod),
    secrets_json: opts.secrets ?? [],
  });
}

async function donorPods(namespace?: string): Promise<V1Pod[]> {
  return namespace
    ? (await donor.core.listNamespacedPod({ namespace })).items
    : (await donor.core.listPodForAllNamespaces()).items.filter((p) =>
        p.metadata?.namespace?.startsWith('spillway-'),
      );
}

beforeAll(async () => {
  testbed = await startTestbed({
    clusters: [
      {
        name: 'donor-d',
        nodes: [gpuNode('d-gpu-0', 4, 'A100-80GB'), cpuNode('d-cpu-0')],
      },
    ],
  });
  donor = testbed.cluster('donor-d');
  b = await startBrokerProcess();
  const caFile = join(b.dataDir, 'ca-for-agents.crt');
  await writeFile(caFile, b.caPem);
  const { config } = loadConfig(agentConfigSchema, {
    argv: [
      '--broker-address',
      b.grpcAddress,
      '--kubeconfig',
      donor.kubeconfigPath,
      '--ca-file',
      caFile,
    ],
    env: {},
  });
  agent = await startAgent(
    {
      ...config,
      namespace: 'kube-system',
      logLevel: 'warn',
      joinToken: await mintJoinToken(b, 'donor-d', 'donor'),
    },
    createLogger({ level: process.env.SPILLWAY_E2E_LOG ?? 'warn' }),
  );
  await agent.stream.waitConnected(30_000);
  originA = client(await joinAs('origin-a', 'origin'));
  originB = client(await joinAs('origin-b', 'origin'));
  await joinAs('donor-e', 'donor');
  const peering = await b.rest('POST', '/api/v1/peerings', {
    body: { origin: 'origin-a', donor: 'donor-d', maxGpus: 2 },
  });
  expect(peering.status).toBe(201);
  await poll(
    async () =>
      (await donor.core.readNamespace({ name: TENANT }).catch(() => undefined)) ?? undefined,
    { timeoutMs: 20_000, what: `the tenant namespace ${TENANT}` },
  );
  // Donor Secrets an origin must never see: the agent's neighbours, and one planted in the
  // tenant namespace itself by something on the donor.
  for (const namespace of ['kube-system', 'default', TENANT]) {
    await donor.core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'donor-creds' }, stringData: { password: MARKER } },
    });
  }
  // Everything the broker relays to origin-a's shim.
  originA.connect(
    'virtual-node',
    {
      onMessage: (m) => {
        if (m.pod_status || m.pod_event) seenByOrigin.push(JSON.stringify(m));
      },
    },
    { heartbeatIntervalMs: 2_000 },
  );
});

afterAll(async () => {
  await originA?.close();
  await originB?.close();
  await agent?.stop();
  await b?.stop();
  await testbed?.stop();
});

describe('tenancy on a donor', () => {
  it('creates an origin’s pod only in its own tenant namespace, with only its own Secret', async () => {
    const pod = gpuPod('train-0', 1);
    pod.spec!.containers[0]!.envFrom = [{ secretRef: { name: 'creds' } }];
    const res = await create(originA, pod, { secrets: [sentSecret] });
    expect(res.remote_namespace).toBe(TENANT);
    const remote = await donor.core.readNamespacedPod({ name: res.remote_name, namespace: TENANT });
    expect(remote.metadata?.labels?.['spillway.io/origin-cluster']).toBe('origin-a');
    expect(remote.spec?.serviceAccountName ?? 'default').toBe('default');
    expect(remote.spec?.automountServiceAccountToken).toBe(false);
    expect(podReferences(remote).secrets.map((s) => s.name)).toEqual(['ml.creds']);
    expect((await donorPods()).map((p) => p.metadata?.namespace)).toEqual([TENANT]);
  });

  it('lets no origin create for another, or on a donor it is not peered with', async () => {
    const forB = await refusal(create(originA, gpuPod('for-b', 1), { origin: 'origin-b' }));
    expect(forB.code).toBe('PERMISSION_DENIED');
    const bOnD = await refusal(create(originB, gpuPod('b-on-d', 1), { origin: 'origin-b' }));
    expect(bOnD.code).toBe('NO_PEERING');
    const aOnE = await refusal(create(originA, gpuPod('a-on-e', 1), { donor: 'donor-e' }));
    expect(aOnE.code).toBe('NO_PEERING');
    expect((await refusal(originB.listPods({ donor_cluster: 'donor-d' }))).code).toBe('NO_PEERING');
    expect(
      await donor.core.readNamespace({ name: 'spillway-origin-b' }).catch(() => 'absent'),
    ).toBe('absent');
    expect((await donorPods()).map((p) => p.metadata?.name)).toHaveLength(1);
  });

  it('holds an origin to its quota, at placement and on the donor', async () => {
    const placed = await originA.place({
      pod: { origin_cluster: 'origin-a', namespace: 'ml', name: 'big', uid: 'uid-big' },
      resource_name: GPU_RESOURCE,
      gpus: 3,
    });
    expect(placed.reservation ?? undefined).toBeUndefined();
    expect(placed.reason_code).toBe('QUOTA_EXCEEDED');
    const over = await refusal(create(originA, gpuPod('over', 2)));
    expect(over.code).toBe('QUOTA_EXCEEDED');
    expect(await donorPods(TENANT)).toHaveLength(1);
  });

  const escapes: [string, (p: V1Pod) => void, RegExp][] = [
    [
      'privileged',
      (p) => (p.spec!.containers[0]!.securityContext = { privileged: true }),
      /privileged/,
    ],
    [
      'hostPath',
      (p) => (p.spec!.volumes = [{ name: 'root', hostPath: { path: '/' } }]),
      /hostPath/,
    ],
    ['hostNetwork', (p) => (p.spec!.hostNetwork = true), /hostNetwork/],
    [
      'a donor system service account',
      (p) => (p.spec!.serviceAccountName = 'system:serviceaccount:kube-system:spillway-agent'),
      /serviceAccountName/,
    ],
    [
      'a Secret it did not send',
      (p) => (p.spec!.volumes = [{ name: 's', secret: { secretName: 'donor-creds' } }]),
      /Secret "donor-creds", which the origin did not send/,
    ],
  ];

  it.each(escapes)('refuses a pod spec with %s, saying why', async (_what, escape, reason) => {
    const pod = gpuPod('escape', 1);
    escape(pod);
    const err = await refusal(create(originA, pod, { uid: `uid-escape-${_what}` }));
    expect(err.code).toBe('POD_REFUSED');
    expect(err.message).toMatch(reason);
    expect(await donorPods(TENANT)).toHaveLength(1);
  });

  it('never lets a donor Secret reach an origin', async () => {
    // An optional reference passes the policy, but can only name a reflection of its own.
    const pod = gpuPod('peek', 1);
    pod.spec!.containers[0]!.env = [
      {
        name: 'P',
        valueFrom: { secretKeyRef: { name: 'donor-creds', key: 'password', optional: true } },
      },
    ];
    const res = await create(originA, pod, { uid: 'uid-peek' });
    const remote = await donor.core.readNamespacedPod({ name: res.remote_name, namespace: TENANT });
    expect(podReferences(remote).secrets).toEqual([{ name: 'ml.donor-creds', optional: true }]);
    await poll(
      () => Promise.resolve(seenByOrigin.some((m) => m.includes('uid-peek')) || undefined),
      {
        timeoutMs: 20_000,
        what: 'the peek pod’s status to reach the origin',
      },
    );
    // Everything origin-a can read: relayed status and events, ListPods, logs.
    const listed = JSON.stringify(await originA.listPods({ donor_cluster: 'donor-d' }));
    let logs = '';
    try {
      for await (const chunk of originA.streamLogs({
        donor_cluster: 'donor-d',
        pod: { origin_cluster: 'origin-a', namespace: 'ml', name: 'peek', uid: 'uid-peek' },
      }))
        logs += chunk.toString();
    } catch (err) {
      logs += String(err);
    }
    for (const seen of [...seenByOrigin, listed, logs]) {
      expect(seen).not.toContain(MARKER);
      expect(seen).not.toContain(MARKER_B64);
    }
    // The only Secrets Spillway put in the tenant namespace are origin-a's own reflections.
    const reflected = await donor.core.listNamespacedSecret({
      namespace: TENANT,
      labelSelector: 'spillway.io/reflected=true',
    });
    expect(reflected.items.map((s) => s.metadata?.name)).toEqual(['ml.creds']);
    expect(reflected.items[0]?.metadata?.labels?.['spillway.io/origin-cluster']).toBe('origin-a');
    // And the donor's own Secret in that namespace is untouched.
    const planted = await donor.core.readNamespacedSecret({
      name: 'donor-creds',
      namespace: TENANT,
    });
    expect(Buffer.from(planted.data!.password!, 'base64').toString()).toBe(MARKER);
  });
});
