import type { V1Pod } from '@kubernetes/client-node';
import { BrokerClient } from '@spillway/api';
import { IdentityStore } from '@spillway/agent';
import { isSpillwayError, silentLogger } from '@spillway/common';
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

// A donor with two 8-GPU nodes, an origin without GPUs, a real broker, two real agents.
let testbed: Testbed;
let bed: SpillwayBed;
let donor: TestCluster;
let origin: TestCluster;
let originClient: BrokerClient;

const PRODUCT = 'NVIDIA-A100-SXM4-80GB';

async function donorFree(): Promise<number> {
  const cap = await bed.broker.core.capacity();
  return cap.rows
    .filter((r) => r.cluster === 'donor' && r.resource === GPU_RESOURCE)
    .reduce((a, r) => a + r.free, 0);
}

async function waitFree(n: number, what: string): Promise<number> {
  const t0 = Date.now();
  await poll(async () => ((await donorFree()) === n ? true : undefined), {
    timeoutMs: 15_000,
    intervalMs: 25,
    what,
  });
  return Date.now() - t0;
}

beforeAll(async () => {
  testbed = await startTestbed({
    clusters: [
      { name: 'origin', nodes: [cpuNode('origin-cpu-0')] },
      {
        name: 'donor',
        nodes: [
          gpuNode('donor-gpu-0', 8, 'A100-80GB'),
          gpuNode('donor-gpu-1', 8, 'A100-80GB'),
          cpuNode('donor-cpu-0'),
        ],
      },
    ],
  });
  donor = testbed.cluster('donor');
  origin = testbed.cluster('origin');
  bed = await startSpillway();
  await bed.joinAgent(donor, 'donor');
  await bed.joinAgent(origin, 'origin');
  const id = await new IdentityStore(
    origin.kubeConfig,
    'kube-system',
    'spillway-identity',
    silentLogger(),
  ).load();
  if (!id) throw new Error('origin identity Secret missing after join');
  originClient = new BrokerClient({
    address: bed.brokerAddress,
    caPem: id.caPem,
    certPem: id.certPem,
    keyPem: id.keyPem,
  });
});

afterAll(async () => {
  await originClient?.close();
  await bed?.stop();
  await testbed?.stop();
});

function gpuPod(name: string, gpus: number, node?: string): V1Pod {
  return {
    metadata: { name, namespace: 'default' },
    spec: {
      ...(node ? { nodeName: node } : {}),
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

describe('agent inventory', () => {
  it("reports the donor's free GPUs per node after joining", async () => {
    await waitFree(16, 'the donor to report 16 free GPUs');
    const detail = await bed.broker.core.getCluster('donor');
    expect(detail.nodes.map((n) => n.name).sort()).toEqual(['donor-gpu-0', 'donor-gpu-1']);
    expect(detail.nodes[0]?.gpuProduct).toBe(PRODUCT);
  });

  it('follows GPUs consumed and freed by pods within a second', async () => {
    await donor.core.createNamespacedPod({
      namespace: 'default',
      body: gpuPod('local-user', 3, 'donor-gpu-0'),
    });
    const consumed = await waitFree(13, '3 GPUs to be consumed');
    await donor.core.deleteNamespacedPod({
      name: 'local-user',
      namespace: 'default',
      gracePeriodSeconds: 0,
    });
    const freed = await waitFree(16, 'the 3 GPUs to be freed');
    console.log(`GPU consumed -> broker: ${consumed} ms; GPU freed -> broker: ${freed} ms`);
    expect(freed).toBeLessThan(1000);
  });

  it('follows nodes added and cordoned', async () => {
    await donor.addNodes([gpuNode('donor-gpu-2', 4, 'A100-80GB')]);
    await waitFree(20, 'the new node to be reported');
    await donor.core.patchNode(
      { name: 'donor-gpu-1', body: { spec: { unschedulable: true } } },
      (await import('@spillway/common')).MERGE_PATCH,
    );
    await waitFree(12, 'the cordoned node to leave the inventory');
    await donor.core.patchNode(
      { name: 'donor-gpu-1', body: { spec: { unschedulable: false } } },
      (await import('@spillway/common')).MERGE_PATCH,
    );
    await waitFree(20, 'the uncordoned node to return');
  });
});

describe('donor executor', () => {
  const uid = '0f3c8a2e-0000-4000-8000-000000000001';
  let remoteName = '';

  it('creates the pod in the tenant namespace with its ConfigMap and Secret, on the reserved node', async () => {
    await bed.broker.core.createPeering({ origin: 'origin', donor: 'donor', maxGpus: 8 });
    await poll(
      async () =>
        (await donor.core.readNamespace({ name: 'spillway-origin' }).catch(() => undefined)) ??
        undefined,
      {
        timeoutMs: 15_000,
        what: 'the tenant namespace spillway-origin',
      },
    );
    const pod = gpuPod('train-0', 2);
    pod.spec!.containers[0]!.envFrom = [{ configMapRef: { name: 'settings' } }];
    pod.spec!.volumes = [{ name: 'creds', secret: { secretName: 'creds' } }];
    pod.spec!.containers[0]!.volumeMounts = [{ name: 'creds', mountPath: '/creds' }];
    const res = await originClient.createPod({
      donor_cluster: 'donor',
      pod: { origin_cluster: 'origin', namespace: 'default', name: 'train-0', uid },
      pod_json: JSON.stringify(pod),
      config_maps_json: [
        JSON.stringify({
          kind: 'ConfigMap',
          metadata: { name: 'settings', namespace: 'default' },
          data: { EPOCHS: '3' },
        }),
      ],
      secrets_json: [
        JSON.stringify({
          kind: 'Secret',
          metadata: { name: 'creds', namespace: 'default' },
          data: { token: Buffer.from('s3cret').toString('base64') },
        }),
      ],
      node_name: 'donor-gpu-2',
    });
    expect(res.remote_namespace).toBe('spillway-origin');
    expect(res.already_existed).toBe(false);
    remoteName = res.remote_name;
    const running = await poll(
      async () => {
        const p = await donor.core.readNamespacedPod({
          name: remoteName,
          namespace: 'spillway-origin',
        });
        return p.status?.phase === 'Running' ? p : undefined;
      },
      { timeoutMs: 30_000, what: 'the offloaded pod to run' },
    );
    expect(running.spec?.nodeName).toBe('donor-gpu-2');
    expect(running.metadata?.labels?.['spillway.io/origin-uid']).toBe(uid);
    const cm = await donor.core.readNamespacedConfigMap({
      name: 'default.settings',
      namespace: 'spillway-origin',
    });
    expect(cm.data).toEqual({ EPOCHS: '3' });
    const secret = await donor.core.readNamespacedSecret({
      name: 'default.creds',
      namespace: 'spillway-origin',
    });
    expect(Buffer.from(secret.data!.token!, 'base64').toString()).toBe('s3cret');
    const again = await originClient.createPod({
      donor_cluster: 'donor',
      pod: { origin_cluster: 'origin', namespace: 'default', name: 'train-0', uid },
      pod_json: JSON.stringify(pod),
      config_maps_json: [
        JSON.stringify({
          kind: 'ConfigMap',
          metadata: { name: 'settings', namespace: 'default' },
          data: { EPOCHS: '3' },
        }),
      ],
      secrets_json: [
        JSON.stringify({
          kind: 'Secret',
          metadata: { name: 'creds', namespace: 'default' },
          data: {},
        }),
      ],
    });
    expect(again.already_existed).toBe(true);
  });

  it('refuses a hostile pod spec with the reason, and creates nothing', async () => {
    const hostile = gpuPod('evil', 1);
    hostile.spec!.containers[0]!.securityContext = { privileged: true };
    hostile.spec!.volumes = [{ name: 'root', hostPath: { path: '/' } }];
    let err: unknown;
    try {
      await originClient.createPod({
        donor_cluster: 'donor',
        pod: {
          origin_cluster: 'origin',
          namespace: 'default',
          name: 'evil',
          uid: '0f3c8a2e-0000-4000-8000-00000000dead',
        },
        pod_json: JSON.stringify(hostile),
      });
    } catch (e) {
      err = e;
    }
    expect(isSpillwayError(err, 'POD_REFUSED')).toBe(true);
    expect((err as Error).message).toMatch(/hostPath|privileged/);
    const pods = await donor.core.listNamespacedPod({ namespace: 'spillway-origin' });
    expect(pods.items.map((p) => p.metadata?.name)).toEqual([remoteName]);
  });

  it('refuses a pod that would pass the peering quota', async () => {
    let err: unknown;
    try {
      await originClient.createPod({
        donor_cluster: 'donor',
        pod: {
          origin_cluster: 'origin',
          namespace: 'default',
          name: 'big',
          uid: '0f3c8a2e-0000-4000-8000-0000000000b1',
        },
        pod_json: JSON.stringify(gpuPod('big', 7)),
      });
    } catch (e) {
      err = e;
    }
    expect(isSpillwayError(err, 'QUOTA_EXCEEDED')).toBe(true);
  });

  it('leaves the running pod untouched when the agent restarts', async () => {
    const before = await donor.core.readNamespacedPod({
      name: remoteName,
      namespace: 'spillway-origin',
    });
    await bed.restartAgent(donor);
    await waitFree(18, 'the restarted agent to report again');
    // Give the restarted agent time to act on its first peering state.
    await new Promise((r) => setTimeout(r, 1500));
    const after = await donor.core.readNamespacedPod({
      name: remoteName,
      namespace: 'spillway-origin',
    });
    expect(after.metadata?.uid).toBe(before.metadata?.uid);
    expect(after.status?.phase).toBe('Running');
    expect(after.metadata?.deletionTimestamp).toBeUndefined();
    const list = await originClient.listPods({ donor_cluster: 'donor' });
    expect(list.pods.map((p) => p.pod?.uid)).toEqual([uid]);
  });

  it('deletes the pod and its reflected objects on command', async () => {
    const res = await originClient.deletePod({
      donor_cluster: 'donor',
      pod: { origin_cluster: 'origin', namespace: 'default', name: 'train-0', uid },
      grace_period_seconds: '0',
    });
    expect(res.not_found).toBe(false);
    await poll(
      async () =>
        (await donor.core.listNamespacedPod({ namespace: 'spillway-origin' })).items.length === 0
          ? true
          : undefined,
      { timeoutMs: 20_000, what: 'the remote pod to be gone' },
    );
    await poll(
      async () =>
        (
          await donor.core.listNamespacedConfigMap({
            namespace: 'spillway-origin',
            labelSelector: 'spillway.io/reflected=true',
          })
        ).items.length === 0
          ? true
          : undefined,
      { timeoutMs: 10_000, what: 'the reflected ConfigMap to be collected' },
    );
  });
});
