import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_DONOR, ANNOTATION_REMOTE_POD } from '@spillway/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuNode, gpuNode, podOutcome } from '../testbed/index.js';
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

// One origin without GPUs, two donors with different GPU products: a user's GPU work that
// cannot run at home runs on a donor, and looks in the origin as if it ran there.
const H100 = 'NVIDIA-H100-80GB-HBM3';

let bed: SpillwayBed;

beforeAll(async () => {
  const t0 = Date.now();
  bed = await startSpillway({
    originNodes: [cpuNode('origin-cpu-0'), cpuNode('origin-cpu-1')],
    donorNodes: {
      'donor-a': [0, 1, 2, 3].map((i) => gpuNode(`donor-a-gpu-${i}`, 8, 'A100-80GB')),
      'donor-b': [
        gpuNode('donor-b-gpu-0', 4, 'H100-80GB'),
        gpuNode('donor-b-gpu-1', 4, 'H100-80GB'),
      ],
    },
  });
  console.log(`spillway bed up in ${seconds(t0)}; logs: ${bed.logFile}`);
}, 240_000);

afterAll(async () => {
  await bed?.stop();
});

describe('transparent offloading', () => {
  it('runs a 2-completion Job asking for 4 H100s on donor-b, the only donor that has them', async () => {
    const t0 = Date.now();
    // The virtual nodes are there, labelled with what each donor lends.
    const nodeB = await waitFor('virtual node spillway-donor-b Ready with 8 GPUs', async () => {
      const n = await bed.origin.core.readNode({ name: 'spillway-donor-b' }).catch(() => undefined);
      const ready = n?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      return ready && n?.status?.allocatable?.['nvidia.com/gpu'] === '8' ? n : undefined;
    });
    expect(nodeB.metadata?.labels).toMatchObject({
      type: 'virtual-kubelet',
      'nvidia.com/gpu.product': H100,
    });
    expect(nodeB.spec?.taints).toContainEqual(
      expect.objectContaining({ key: 'spillway.io/virtual-node', effect: 'NoSchedule' }),
    );
    const job: V1Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'train-h100', namespace: WORK_NAMESPACE },
      spec: {
        completions: 2,
        backoffLimit: 0,
        template: {
          metadata: { annotations: podOutcome('succeed', { runFor: '2s' }) },
          spec: gpuPodSpec(4, { nodeSelector: { 'nvidia.com/gpu.product': H100 } }),
        },
      },
    };
    await bed.origin.batch.createNamespacedJob({ namespace: WORK_NAMESPACE, body: job });
    await waitFor(
      'job train-h100 to complete in the origin',
      async () => {
        const j = await bed.origin.batch.readNamespacedJob({
          name: 'train-h100',
          namespace: WORK_NAMESPACE,
        });
        return j.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')
          ? j
          : undefined;
      },
      90_000,
    );
    console.log(`job completed in ${seconds(t0)}`);
    const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'job-name=train-h100');
    expect(pods).toHaveLength(2);
    const remote = await remotePods(bed.donors['donor-b']!);
    for (const p of pods) {
      expect(p.spec?.nodeName).toBe('spillway-donor-b');
      expect(p.status?.phase).toBe('Succeeded');
      expect(p.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(0);
      expect(p.metadata?.annotations?.[ANNOTATION_DONOR]).toBe('donor-b');
      const [ns, name] = p.metadata!.annotations![ANNOTATION_REMOTE_POD]!.split('/');
      const copy = remote.find((r) => r.metadata?.name === name && r.metadata?.namespace === ns);
      expect(copy?.spec?.nodeName).toMatch(/^donor-b-gpu-/);
      expect(copy?.status?.phase).toBe('Succeeded');
      const events = await eventsOf(bed.origin, p);
      expect(events.map((e) => e.reason)).toContain('Offloaded');
      expect(events.find((e) => e.reason === 'Offloaded')?.message).toContain(
        'Offloaded to donor-b',
      );
    }
    expect(await remotePods(bed.donors['donor-a']!)).toHaveLength(0);
    const wide = await bed.origin.kubectl('get', 'pods', '-n', WORK_NAMESPACE, '-o', 'wide');
    const rows = wide.split('\n').filter((l) => l.startsWith('train-h100-'));
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatch(/\bCompleted\b.*\bspillway-donor-b\b/);
  });

  it('runs exactly as many 1-GPU pods as there are free remote GPUs, and the rest as soon as GPUs free up', async () => {
    const t0 = Date.now();
    const names = Array.from({ length: 50 }, (_, i) => `burst-${i}`);
    await Promise.all(
      names.map((name) =>
        bed.origin.core.createNamespacedPod({
          namespace: WORK_NAMESPACE,
          body: {
            metadata: { name, labels: { app: 'burst' }, annotations: podOutcome('run') },
            spec: gpuPodSpec(1),
          },
        }),
      ),
    );
    const phases = async (): Promise<{ running: V1Pod[]; pending: V1Pod[] }> => {
      const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'app=burst');
      return {
        running: pods.filter(
          (p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp,
        ),
        pending: pods.filter((p) => p.status?.phase === 'Pending'),
      };
    };
    await waitFor('40 burst pods Running and 10 Pending', async () => {
      const { running, pending } = await phases();
      return running.length === 40 && pending.length === 10 ? true : undefined;
    });
    console.log(`40 of 50 running in ${seconds(t0)}`);
    // Nothing is promised twice: a while later, still exactly 40, and 40 remote copies.
    await new Promise((r) => setTimeout(r, 4_000));
    const { running, pending } = await phases();
    expect(running).toHaveLength(40);
    expect(pending).toHaveLength(10);
    const remoteRunning = [
      ...(await remotePods(bed.donors['donor-a']!)),
      ...(await remotePods(bed.donors['donor-b']!)),
    ].filter((p) => p.metadata?.labels?.app === 'burst' && p.status?.phase === 'Running');
    expect(remoteRunning).toHaveLength(40);
    for (const p of pending) {
      expect(p.spec?.nodeName).toBeUndefined();
      const events = await eventsOf(bed.origin, p);
      const why = events.find((e) => e.reason === 'NotOffloaded');
      expect(why?.type).toBe('Warning');
      expect(why?.message).toMatch(/no donor can run this pod now \(NO_FIT\)/);
    }

    // Deleting an origin pod deletes its remote copy; the freed GPUs go to the pending pods.
    const t1 = Date.now();
    const victims = running.slice(0, 10);
    const victimRemote = victims.map((p) => p.metadata!.annotations![ANNOTATION_REMOTE_POD]!);
    await Promise.all(
      victims.map((p) =>
        bed.origin.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: WORK_NAMESPACE }),
      ),
    );
    await waitFor('the deleted pods gone from the origin and their donors', async () => {
      const origin = await podsIn(bed.origin, WORK_NAMESPACE, 'app=burst');
      const remote = [
        ...(await remotePods(bed.donors['donor-a']!)),
        ...(await remotePods(bed.donors['donor-b']!)),
      ].map((p) => `${p.metadata!.namespace!}/${p.metadata!.name!}`);
      const left = victims.filter((v) => origin.some((o) => o.metadata?.uid === v.metadata?.uid));
      return left.length === 0 && !victimRemote.some((r) => remote.includes(r)) ? true : undefined;
    });
    console.log(`10 deleted pods gone here and there in ${seconds(t1)}`);
    await waitFor('the 10 pending pods Running', async () => {
      const now = await phases();
      const started = pending.filter((p) =>
        now.running.some((r) => r.metadata?.uid === p.metadata?.uid),
      );
      return started.length === 10 && now.running.length === 40 ? true : undefined;
    });
    console.log(`pending pods running ${seconds(t1)} after GPUs were freed`);

    await bed.origin.core.deleteCollectionNamespacedPod({
      namespace: WORK_NAMESPACE,
      labelSelector: 'app=burst',
    });
    await waitFor('every burst pod gone on both sides', async () => {
      const origin = await podsIn(bed.origin, WORK_NAMESPACE, 'app=burst');
      const remote = [
        ...(await remotePods(bed.donors['donor-a']!)),
        ...(await remotePods(bed.donors['donor-b']!)),
      ].filter((p) => p.metadata?.labels?.app === 'burst');
      return origin.length === 0 && remote.length === 0 ? true : undefined;
    });
  });
});
