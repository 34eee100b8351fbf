import { SchedulingV1Api, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_REMOTE_POD, MERGE_PATCH } from '@spillway/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuNode, gpuNode, podOutcome, type TestCluster } from '../testbed/index.js';
import {
  WORK_NAMESPACE,
  eventsOf,
  gpuPodSpec,
  podsIn,
  remotePods,
  seconds,
  startSpillway,
  waitFor,
  type SpillwayBed,
} from './harness.js';

// Donors stay sovereign: a donor's own pod that needs the GPUs a guest holds takes them back
// through its own kube-scheduler's preemption, and the origin sees why. donor-a and donor-b
// lend under `reclaim: preempt` (the default), donor-c under `reclaim: never`.

let bed: SpillwayBed;
const GUEST_CLASS = 'spillway-guest';
const A_NODE = 'donor-a-gpu-0';

beforeAll(async () => {
  const t0 = Date.now();
  bed = await startSpillway({
    originNodes: [cpuNode('origin-cpu-0')],
    donorNodes: {
      'donor-a': [gpuNode(A_NODE, 4, 'A100-80GB')],
      'donor-b': [gpuNode('donor-b-gpu-0', 4, 'A100-80GB')],
      'donor-c': [gpuNode('donor-c-gpu-0', 4, 'A100-80GB')],
    },
    agents: {
      // A guest asking for a minute of notice gets the 5 s donor-a allows.
      'donor-a': { maxGuestGracePeriod: 5_000, reclaimHold: 5_000 },
      'donor-c': { reclaim: 'never' },
    },
  });
  console.log(`spillway bed up in ${seconds(t0)}; logs: ${bed.logFile}`);
}, 240_000);

afterAll(async () => {
  await bed?.stop();
});

async function cordon(donor: string, cordoned: boolean): Promise<void> {
  await bed.broker.core.patchCluster(donor, { cordoned });
}

/** A pod of the donor's own (no Spillway in it), asking for `gpus` GPUs. */
async function localPod(
  donor: TestCluster,
  name: string,
  gpus: number,
  priorityClassName?: string,
): Promise<void> {
  await donor.core.createNamespacedPod({
    namespace: 'default',
    body: {
      metadata: { name, annotations: podOutcome('run') },
      spec: {
        ...gpuPodSpec(gpus),
        ...(priorityClassName ? { priorityClassName } : {}),
      },
    },
  });
}

async function freeOn(donor: string, node: string): Promise<number | undefined> {
  const inv = await bed.broker.core.getInventory(donor);
  return inv?.nodes.find((n) => n.name === node)?.gpus['nvidia.com/gpu']?.free;
}

function remoteOf(donorPods: V1Pod[], origin: V1Pod): V1Pod | undefined {
  const [ns, name] = (origin.metadata?.annotations?.[ANNOTATION_REMOTE_POD] ?? '/').split('/');
  return donorPods.find((p) => p.metadata?.namespace === ns && p.metadata?.name === name);
}

describe('reclaim by native preemption', () => {
  it("gives donor-a its GPUs back: the guest is preempted, the origin pod ends Reclaimed, the Job's replacement completes on donor-b", async () => {
    const t0 = Date.now();
    const donorA = bed.donors['donor-a']!;
    const donorB = bed.donors['donor-b']!;
    // The first pod can only go to donor-a.
    await cordon('donor-b', true);
    await cordon('donor-c', true);
    const job: V1Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'train', namespace: WORK_NAMESPACE },
      spec: {
        completions: 1,
        backoffLimit: 2,
        template: {
          // Runs until the test says otherwise (below, for the replacement on donor-b).
          metadata: { annotations: podOutcome('run') },
          spec: { ...gpuPodSpec(4), terminationGracePeriodSeconds: 60 },
        },
      },
    };
    await bed.origin.batch.createNamespacedJob({ namespace: WORK_NAMESPACE, body: job });
    const first = await waitFor(
      'the first pod of job train Running on donor-a',
      async () => {
        const [p] = await podsIn(bed.origin, WORK_NAMESPACE, 'job-name=train');
        return p?.spec?.nodeName === 'spillway-donor-a' && p.status?.phase === 'Running'
          ? p
          : undefined;
      },
      90_000,
    );
    console.log(`guest running on donor-a after ${seconds(t0)}`);
    await cordon('donor-b', false);

    // The guest runs at the class the agent installed, below donor-a's own pods.
    const cls = await donorA.kubeConfig
      .makeApiClient(SchedulingV1Api)
      .readPriorityClass({ name: GUEST_CLASS });
    expect(cls.value).toBe(-1000);
    expect(cls.preemptionPolicy).toBe('Never');
    const guest = remoteOf(await remotePods(donorA), first);
    expect(guest?.spec?.nodeName).toBe(A_NODE);
    expect(guest?.spec?.priorityClassName).toBe(GUEST_CLASS);
    expect(guest?.spec?.priority).toBe(-1000);
    expect(guest?.spec?.preemptionPolicy).toBe('Never');
    expect(guest?.spec?.terminationGracePeriodSeconds).toBe(5);
    expect(await freeOn('donor-a', A_NODE)).toBe(0);

    // Watch what the broker is told about the node from now on: never a free GPU while
    // donor-a's own pod takes them back.
    const samples: (number | undefined)[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push(await freeOn('donor-a', A_NODE));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    await donorA.kubeConfig.makeApiClient(SchedulingV1Api).createPriorityClass({
      body: { metadata: { name: 'donor-serving' }, value: 100_000 },
    });
    const tReclaim = Date.now();
    await localPod(donorA, 'serve', 4, 'donor-serving');

    const failed = await waitFor(
      'the origin pod Failed with reason Reclaimed',
      async () => {
        const p = await bed.origin.core.readNamespacedPod({
          name: first.metadata!.name!,
          namespace: WORK_NAMESPACE,
        });
        return p.status?.phase === 'Failed' ? p : undefined;
      },
      60_000,
    );
    console.log(`origin pod failed ${seconds(tReclaim)} after donor-a's pod was created`);
    expect(failed.status?.reason).toBe('Reclaimed');
    expect(failed.status?.message).toContain('donor-a');
    expect(failed.status?.conditions).toContainEqual(
      expect.objectContaining({
        type: 'DisruptionTarget',
        status: 'True',
        reason: 'PreemptionByScheduler',
      }),
    );
    const reclaimed = await waitFor(
      'a Reclaimed Event on the origin pod naming donor-a and its pod',
      async () =>
        (await eventsOf(bed.origin, failed)).find((e) => e.reason === 'Reclaimed') ?? undefined,
      30_000,
    );
    expect(reclaimed.type).toBe('Warning');
    expect(reclaimed.message).toContain('donor-a');
    expect(reclaimed.message).toContain('default/serve');

    // donor-a's own pod got the GPUs.
    await waitFor('donor-a pod serve Running on the GPU node', async () => {
      const p = await donorA.core.readNamespacedPod({ name: 'serve', namespace: 'default' });
      return p.spec?.nodeName === A_NODE && p.status?.phase === 'Running' ? p : undefined;
    });
    // The guest's reservation ended.
    const offloads = await bed.broker.core.offloads({ origin: 'origin', donor: 'donor-a' });
    const rec = offloads.find((o) => o.pod.uid === first.metadata!.uid);
    expect(rec?.state).toBe('ended');
    expect(rec?.node).toBe(A_NODE);

    // The Job's replacement goes to donor-b, the only donor with room, and completes there.
    const replacement = await waitFor(
      'the replacement pod Running on donor-b',
      async () => {
        const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'job-name=train');
        const p = pods.find((x) => x.metadata?.uid !== first.metadata?.uid);
        return p?.status?.phase === 'Running' && p.metadata?.annotations?.[ANNOTATION_REMOTE_POD]
          ? p
          : undefined;
      },
      90_000,
    );
    expect(replacement.spec?.nodeName).toBe('spillway-donor-b');
    const copy = remoteOf(await remotePods(donorB), replacement);
    expect(copy).toBeDefined();
    await donorB.core.patchNamespacedPod(
      {
        name: copy!.metadata!.name!,
        namespace: copy!.metadata!.namespace!,
        body: { metadata: { annotations: podOutcome('succeed', { runFor: '1s' }) } },
      },
      MERGE_PATCH,
    );
    await waitFor(
      'job train Complete',
      async () => {
        const j = await bed.origin.batch.readNamespacedJob({
          name: 'train',
          namespace: WORK_NAMESPACE,
        });
        return j.status?.succeeded === 1 ? j : undefined;
      },
      60_000,
    );
    expect(await remotePods(donorA)).toHaveLength(0);

    // Nothing was ever reported free on the node while donor-a took it back.
    sampling = false;
    await sampler;
    expect(samples.length).toBeGreaterThan(10);
    expect(samples.filter((f) => f !== 0)).toEqual([]);

    // Once donor-a's pod is gone (and the hold after the reclaim has passed), it lends again.
    await donorA.core.deleteNamespacedPod({
      name: 'serve',
      namespace: 'default',
      gracePeriodSeconds: 0,
    });
    await waitFor('donor-a-gpu-0 free again', async () =>
      (await freeOn('donor-a', A_NODE)) === 4 ? true : undefined,
    );
    console.log(`reclaim scenario done in ${seconds(t0)}`);
  });

  it('keeps the guest under reclaim: never: a default-priority pod of donor-c waits', async () => {
    const donorC = bed.donors['donor-c']!;
    await cordon('donor-a', true);
    await cordon('donor-b', true);
    await cordon('donor-c', false);
    await bed.origin.core.createNamespacedPod({
      namespace: WORK_NAMESPACE,
      body: { metadata: { name: 'kept', annotations: podOutcome('run') }, spec: gpuPodSpec(4) },
    });
    const kept = await waitFor(
      'pod kept Running on donor-c',
      async () => {
        const p = await bed.origin.core.readNamespacedPod({
          name: 'kept',
          namespace: WORK_NAMESPACE,
        });
        return p.spec?.nodeName === 'spillway-donor-c' && p.status?.phase === 'Running'
          ? p
          : undefined;
      },
      90_000,
    );
    const cls = await donorC.kubeConfig
      .makeApiClient(SchedulingV1Api)
      .readPriorityClass({ name: GUEST_CLASS });
    expect(cls.value).toBe(0);
    const guest = remoteOf(await remotePods(donorC), kept);
    expect(guest?.spec?.priority).toBe(0);

    await localPod(donorC, 'batch', 4);
    await waitFor('donor-c pod batch Unschedulable', async () => {
      const p = await donorC.core.readNamespacedPod({ name: 'batch', namespace: 'default' });
      const c = p.status?.conditions?.find((x) => x.type === 'PodScheduled');
      return c?.status === 'False' && c.reason === 'Unschedulable' ? p : undefined;
    });
    // Give the scheduler time to retry (and to preempt, were it going to).
    await new Promise((r) => setTimeout(r, 8_000));
    const still = remoteOf(await remotePods(donorC), kept);
    expect(still?.metadata?.deletionTimestamp).toBeUndefined();
    expect(still?.status?.phase).toBe('Running');
    expect(still?.status?.conditions?.map((c) => c.type)).not.toContain('DisruptionTarget');
    const local = await donorC.core.readNamespacedPod({ name: 'batch', namespace: 'default' });
    expect(local.spec?.nodeName).toBeUndefined();
    const origin = await bed.origin.core.readNamespacedPod({
      name: 'kept',
      namespace: WORK_NAMESPACE,
    });
    expect(origin.status?.phase).toBe('Running');
  });
});
