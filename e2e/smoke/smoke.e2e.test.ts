import { CoordinationV1Api, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cpuNode,
  GPU_RESOURCE,
  gpuNode,
  migNode,
  podOutcome,
  poll,
  startTestbed,
  stopAll,
  type TestCluster,
  type Testbed,
} from '../testbed/index.js';

// An origin without GPUs and two donors with GPU nodes (one with MIG slices),
// each a real control plane whose nodes kwok simulates.
let testbed: Testbed;
let origin: TestCluster;
let donorA: TestCluster;
let donorB: TestCluster;

beforeAll(async () => {
  const started = Date.now();
  testbed = await startTestbed({
    clusters: [
      { name: 'origin', nodes: [cpuNode('origin-cpu-0'), cpuNode('origin-cpu-1')] },
      {
        name: 'donor-a',
        nodes: [
          gpuNode('donor-a-gpu-0', 8, 'A100-80GB'),
          migNode('donor-a-mig-0', { '1g.10gb': 7 }),
          cpuNode('donor-a-cpu-0'),
        ],
      },
      {
        name: 'donor-b',
        nodes: [gpuNode('donor-b-gpu-0', 4, 'H100-80GB'), cpuNode('donor-b-cpu-0')],
      },
    ],
  });
  console.log(`test bed: 3 clusters ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  origin = testbed.cluster('origin');
  donorA = testbed.cluster('donor-a');
  donorB = testbed.cluster('donor-b');
});

afterAll(async () => {
  // Reading `testbed` is safe here: it is unset only if beforeAll failed.
  if (testbed as Testbed | undefined) console.log(`test bed: ${testbed.describeMemory()}`);
  await stopAll();
});

function gpuJob(
  name: string,
  annotations: Record<string, string>,
  resources: Record<string, string> = { [GPU_RESOURCE]: '1' },
): V1Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { annotations },
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'train',
              image: 'example.com/spillway/train:1',
              resources: { requests: { cpu: '1', ...resources }, limits: resources },
            },
          ],
        },
      },
    },
  };
}

async function jobPod(
  cluster: TestCluster,
  job: string,
  until: (pod: V1Pod) => boolean,
  what: string,
): Promise<V1Pod> {
  return poll(
    async () => {
      const pods = await cluster.core.listNamespacedPod({
        namespace: 'default',
        labelSelector: `job-name=${job}`,
      });
      return pods.items.find(until);
    },
    { timeoutMs: 60_000, intervalMs: 250, what: `${what} (cluster ${cluster.name}, job ${job})` },
  );
}

async function jobCondition(
  cluster: TestCluster,
  job: string,
  type: 'Complete' | 'Failed',
): Promise<V1Job> {
  return poll(
    async () => {
      const j = await cluster.batch.readNamespacedJob({ name: job, namespace: 'default' });
      return j.status?.conditions?.some((c) => c.type === type && c.status === 'True')
        ? j
        : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250, what: `job ${job} in ${cluster.name} to be ${type}` },
  );
}

describe('test bed', () => {
  it('runs independent clusters, each with its own CA and credentials', async () => {
    const servers = new Set(testbed.clusters.map((c) => c.server));
    expect(servers.size).toBe(3);
    const names = async (c: TestCluster): Promise<string[]> =>
      (await c.core.listNode()).items.map((n) => n.metadata?.name ?? '').sort();
    expect(await names(origin)).toEqual(['origin-cpu-0', 'origin-cpu-1']);
    expect(await names(donorA)).toEqual(['donor-a-cpu-0', 'donor-a-gpu-0', 'donor-a-mig-0']);
    expect(await names(donorB)).toEqual(['donor-b-cpu-0', 'donor-b-gpu-0']);
    // The origin's admin credentials mean nothing to a donor: another CA signed them.
    await expect(
      origin.kubectl('--server', donorA.server, '--insecure-skip-tls-verify=true', 'get', 'nodes'),
    ).rejects.toThrow(/Unauthorized|must be logged in/);
  });

  it('advertises GPUs, MIG slices and GPU Feature Discovery labels on fake nodes', async () => {
    const gpu = await donorA.core.readNode({ name: 'donor-a-gpu-0' });
    expect(gpu.status?.allocatable?.[GPU_RESOURCE]).toBe('8');
    expect(gpu.status?.capacity?.[GPU_RESOURCE]).toBe('8');
    expect(gpu.metadata?.labels).toMatchObject({
      'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB',
      'nvidia.com/gpu.memory': '81920',
      'nvidia.com/gpu.count': '8',
    });
    const mig = await donorA.core.readNode({ name: 'donor-a-mig-0' });
    expect(mig.status?.allocatable?.['nvidia.com/mig-1g.10gb']).toBe('7');
    const h100 = await donorB.core.readNode({ name: 'donor-b-gpu-0' });
    expect(h100.metadata?.labels?.['nvidia.com/gpu.product']).toBe('NVIDIA-H100-80GB-HBM3');
    const plain = await origin.core.readNode({ name: 'origin-cpu-0' });
    expect(plain.status?.allocatable?.[GPU_RESOURCE]).toBeUndefined();
    expect(plain.metadata?.labels?.['nvidia.com/gpu.present']).toBeUndefined();
    // kwok renews each node's Lease, as a kubelet does.
    const lease = await poll(
      async () => {
        const l = await donorA.kubeConfig
          .makeApiClient(CoordinationV1Api)
          .readNamespacedLease({ name: 'donor-a-gpu-0', namespace: 'kube-node-lease' });
        return l.spec?.renewTime ? l : undefined;
      },
      { timeoutMs: 30_000, what: 'the lease of donor-a-gpu-0' },
    );
    expect(lease.spec?.leaseDurationSeconds).toBe(40);
  });

  it('schedules a GPU Job in a donor onto a GPU node, where it runs and succeeds', async () => {
    await donorA.batch.createNamespacedJob({
      namespace: 'default',
      body: gpuJob('train', podOutcome('succeed', { runFor: '3s' })),
    });
    const running = await jobPod(
      donorA,
      'train',
      (p) => p.status?.phase === 'Running',
      'a Running pod',
    );
    expect(running.spec?.nodeName).toBe('donor-a-gpu-0');
    expect(running.status?.podIP).toBeTruthy();
    const done = await jobPod(
      donorA,
      'train',
      (p) => p.status?.phase === 'Succeeded',
      'a Succeeded pod',
    );
    expect(done.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(0);
    const job = await jobCondition(donorA, 'train', 'Complete');
    expect(job.status?.succeeded).toBe(1);
  });

  it('keeps the same Job Pending in the origin, which has no GPUs: Unschedulable, Insufficient nvidia.com/gpu', async () => {
    await origin.batch.createNamespacedJob({
      namespace: 'default',
      body: gpuJob('train', podOutcome('succeed', { runFor: '3s' })),
    });
    const pending = await jobPod(
      origin,
      'train',
      (p) =>
        p.status?.conditions?.some(
          (c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable',
        ) ?? false,
      'an Unschedulable pod',
    );
    const scheduled = pending.status?.conditions?.find((c) => c.type === 'PodScheduled');
    expect(pending.status?.phase).toBe('Pending');
    expect(pending.spec?.nodeName).toBeUndefined();
    expect(scheduled?.status).toBe('False');
    expect(scheduled?.message).toContain(`Insufficient ${GPU_RESOURCE}`);
    // Still pending a while later: nothing in the origin can run it.
    await new Promise((r) => setTimeout(r, 3_000));
    const again = await origin.core.readNamespacedPod({
      name: pending.metadata!.name!,
      namespace: 'default',
    });
    expect(again.status?.phase).toBe('Pending');
    const job = await origin.batch.readNamespacedJob({ name: 'train', namespace: 'default' });
    expect(job.status?.succeeded ?? 0).toBe(0);
  });

  it('places a MIG request on the node with MIG slices', async () => {
    await donorA.batch.createNamespacedJob({
      namespace: 'default',
      body: gpuJob('mig', podOutcome('succeed'), { 'nvidia.com/mig-1g.10gb': '1' }),
    });
    const done = await jobPod(
      donorA,
      'mig',
      (p) => p.status?.phase === 'Succeeded',
      'a Succeeded pod',
    );
    expect(done.spec?.nodeName).toBe('donor-a-mig-0');
    await jobCondition(donorA, 'mig', 'Complete');
  });

  it('can make a pod fail, so that its Job fails', async () => {
    await donorB.batch.createNamespacedJob({
      namespace: 'default',
      body: gpuJob('crash', podOutcome('fail', { runFor: '1s', exitCode: 3 })),
    });
    const failed = await jobPod(
      donorB,
      'crash',
      (p) => p.status?.phase === 'Failed',
      'a Failed pod',
    );
    expect(failed.spec?.nodeName).toBe('donor-b-gpu-0');
    const terminated = failed.status?.containerStatuses?.[0]?.state?.terminated;
    expect(terminated?.exitCode).toBe(3);
    expect(terminated?.reason).toBe('Error');
    await jobCondition(donorB, 'crash', 'Failed');
  });
});
