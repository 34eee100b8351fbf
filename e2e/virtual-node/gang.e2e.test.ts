import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
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

// Gangs: pods that only work together go to one donor whole, or stay home with the reason.
// donor-a has 6 GPUs over 3 nodes, donor-b 8 over 2: 4 pods of 2 GPUs fit only donor-b
// (one at a time, they would fit donor-a too).
let bed: SpillwayBed;

beforeAll(async () => {
  const t0 = Date.now();
  bed = await startSpillway({
    originNodes: [cpuNode('origin-cpu-0')],
    donorNodes: {
      'donor-a': [0, 1, 2].map((i) => gpuNode(`donor-a-gpu-${i}`, 2, 'A100-80GB')),
      'donor-b': [0, 1].map((i) => gpuNode(`donor-b-gpu-${i}`, 4, 'A100-80GB')),
    },
  });
  console.log(`spillway bed up in ${seconds(t0)}; logs: ${bed.logFile}`);
  await waitFor('both virtual nodes Ready', async () => {
    const nodes = await bed.origin.core.listNode({ labelSelector: 'type=virtual-kubelet' });
    const ready = nodes.items.filter(
      (n) => n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True',
    );
    return ready.length === 2 ? ready : undefined;
  });
}, 240_000);

afterAll(async () => {
  await bed?.stop();
});

async function reasons(pod: V1Pod): Promise<string[]> {
  return (await eventsOf(bed.origin, pod)).map((e) => `${e.reason}: ${e.message}`);
}

describe('gangs', () => {
  it('offloads an Indexed Job of 4 × 2 GPUs whole to the one donor that can hold it', async () => {
    const t0 = Date.now();
    const job: V1Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'ddp', namespace: WORK_NAMESPACE },
      spec: {
        completions: 4,
        parallelism: 4,
        completionMode: 'Indexed',
        backoffLimit: 0,
        template: {
          metadata: { annotations: podOutcome('succeed', { runFor: '3s' }) },
          spec: gpuPodSpec(2),
        },
      },
    };
    await bed.origin.batch.createNamespacedJob({ namespace: WORK_NAMESPACE, body: job });
    await waitFor(
      'job ddp to complete in the origin',
      async () => {
        const j = await bed.origin.batch.readNamespacedJob({
          name: 'ddp',
          namespace: WORK_NAMESPACE,
        });
        return j.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')
          ? j
          : undefined;
      },
      120_000,
    );
    console.log(`gang job completed in ${seconds(t0)}`);
    const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'job-name=ddp');
    expect(pods).toHaveLength(4);
    for (const p of pods) {
      expect(p.spec?.nodeName).toBe('spillway-donor-b');
      expect(p.status?.phase).toBe('Succeeded');
      const r = await reasons(p);
      expect(r).toContainEqual(
        expect.stringMatching(
          /^GangPlaced: placed with its gang ml\/ddp \(4 pods\) on donor donor-b/,
        ),
      );
    }
    const copies = await remotePods(bed.donors['donor-b']!);
    expect(copies.filter((c) => c.metadata?.name?.includes('ddp'))).toHaveLength(4);
    expect(await remotePods(bed.donors['donor-a']!)).toHaveLength(0);
    // Finished members stay finished: nothing of the gang is placed again.
    await new Promise((r) => setTimeout(r, 3_000));
    for (const p of await podsIn(bed.origin, WORK_NAMESPACE, 'job-name=ddp')) {
      expect(p.status?.phase).toBe('Succeeded');
    }
    const live = await bed.broker.core.offloads({ states: ['open', 'bound'] });
    expect(live.filter((r) => r.pod.name.startsWith('ddp-'))).toHaveLength(0);
    await bed.origin.batch.deleteNamespacedJob({
      name: 'ddp',
      namespace: WORK_NAMESPACE,
      propagationPolicy: 'Background',
    });
  });

  it('keeps a gang no donor can hold Pending, each pod told why, nothing reserved', async () => {
    const names = [0, 1, 2].map((i) => `huge-${i}`);
    for (const name of names) {
      await bed.origin.core.createNamespacedPod({
        namespace: WORK_NAMESPACE,
        body: {
          metadata: {
            name,
            labels: { 'spillway.io/gang': 'huge', 'spillway.io/gang-size': '3' },
          },
          spec: gpuPodSpec(4),
        },
      });
    }
    for (const name of names) {
      await waitFor(`${name} told no donor can hold its gang`, async () => {
        const p = await bed.origin.core.readNamespacedPod({ name, namespace: WORK_NAMESPACE });
        const r = await reasons(p);
        return r.find((m) =>
          /^NotOffloaded: no donor can run gang ml\/huge \(3 pods\) whole now \(NO_FIT\): no peered donor can hold all of gang ml\/huge \(3 members, 12 nvidia.com\/gpu\); the largest free donor, donor-b, has 8 nvidia.com\/gpu free/.test(
            m,
          ),
        );
      });
    }
    for (const name of names) {
      const p = await bed.origin.core.readNamespacedPod({ name, namespace: WORK_NAMESPACE });
      expect(p.spec?.nodeName).toBeUndefined();
      expect(p.status?.phase).toBe('Pending');
    }
    const live = await bed.broker.core.offloads({ states: ['open', 'bound'] });
    expect(live.filter((r) => r.pod.name.startsWith('huge-'))).toEqual([]);
    for (const name of names) {
      await bed.origin.core.deleteNamespacedPod({
        name,
        namespace: WORK_NAMESPACE,
        gracePeriodSeconds: 0,
      });
    }
  });

  it('places a JobSet’s pods together once all of them are there, sized by the JobSet', async () => {
    // The JobSet API (its CRD, as the JobSet controller installs it, schema left open) and a
    // JobSet of 2 replicated Jobs × parallelism 2: a gang of 4.
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'jobsets.jobset.x-k8s.io' },
      spec: {
        group: 'jobset.x-k8s.io',
        scope: 'Namespaced',
        names: { plural: 'jobsets', singular: 'jobset', kind: 'JobSet', listKind: 'JobSetList' },
        versions: [
          {
            name: 'v1alpha2',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
            },
          },
        ],
      },
    };
    const jobset = {
      apiVersion: 'jobset.x-k8s.io/v1alpha2',
      kind: 'JobSet',
      metadata: { name: 'llm', namespace: WORK_NAMESPACE },
      spec: {
        replicatedJobs: [
          {
            name: 'workers',
            replicas: 2,
            template: {
              spec: { parallelism: 2, completions: 2, template: { spec: gpuPodSpec(2) } },
            },
          },
        ],
      },
    };
    const file = join(bed.workDir, 'jobset-crd.json');
    await writeFile(file, JSON.stringify(crd));
    await bed.origin.kubectl('apply', '-f', file);
    await waitFor('the JobSet API served', async () => {
      const out = await bed.origin
        .kubectl('get', 'jobsets', '-n', WORK_NAMESPACE)
        .catch(() => undefined);
      return out !== undefined ? true : undefined;
    });
    const jsFile = join(bed.workDir, 'jobset.json');
    await writeFile(jsFile, JSON.stringify(jobset));
    await bed.origin.kubectl('apply', '-f', jsFile);

    // The pods as the JobSet controller's Jobs make them: Job llm-workers-<j>, index <i>.
    const pod = (j: number, i: number): V1Pod => ({
      metadata: {
        name: `llm-workers-${j}-${i}-x${j}${i}`,
        labels: {
          'jobset.sigs.k8s.io/jobset-name': 'llm',
          'jobset.sigs.k8s.io/replicatedjob-name': 'workers',
          'jobset.sigs.k8s.io/replicatedjob-replicas': '2',
          'jobset.sigs.k8s.io/job-index': String(j),
          'jobset.sigs.k8s.io/job-global-index': String(j),
          'batch.kubernetes.io/job-name': `llm-workers-${j}`,
          'batch.kubernetes.io/job-completion-index': String(i),
        },
        annotations: {
          'batch.kubernetes.io/job-completion-index': String(i),
          'jobset.sigs.k8s.io/jobset-name': 'llm',
          ...podOutcome('succeed', { runFor: '60s' }),
        },
      },
      spec: { ...gpuPodSpec(2), hostname: `llm-workers-${j}-${i}`, subdomain: 'llm' },
    });
    const all = [pod(0, 0), pod(0, 1), pod(1, 0), pod(1, 1)];
    for (const p of all.slice(0, 3)) {
      await bed.origin.core.createNamespacedPod({ namespace: WORK_NAMESPACE, body: p });
    }
    const first = all[0]!.metadata!.name!;
    await waitFor('the first pod told it waits for the fourth', async () => {
      const p = await bed.origin.core.readNamespacedPod({ name: first, namespace: WORK_NAMESPACE });
      return (await reasons(p)).find((m) =>
        m.startsWith('GangWaiting: waiting for 1 of 4 pods of gang ml/llm (3 there)'),
      );
    });
    // Nothing of it went anywhere while it waited.
    for (const p of await podsIn(
      bed.origin,
      WORK_NAMESPACE,
      'jobset.sigs.k8s.io/jobset-name=llm',
    )) {
      expect(p.spec?.nodeName).toBeUndefined();
    }
    await bed.origin.core.createNamespacedPod({ namespace: WORK_NAMESPACE, body: all[3]! });
    const placed = await waitFor(
      'all 4 JobSet pods bound to one virtual node',
      async () => {
        const pods = await podsIn(bed.origin, WORK_NAMESPACE, 'jobset.sigs.k8s.io/jobset-name=llm');
        return pods.length === 4 && pods.every((p) => p.spec?.nodeName) ? pods : undefined;
      },
      90_000,
    );
    expect(new Set(placed.map((p) => p.spec?.nodeName))).toEqual(new Set(['spillway-donor-b']));
    await waitFor('the 4 copies on donor-b', async () => {
      const copies = (await remotePods(bed.donors['donor-b']!)).filter((c) =>
        c.metadata?.name?.includes('llm-workers'),
      );
      return copies.length === 4 ? copies : undefined;
    });
    for (const p of all) {
      await bed.origin.core.deleteNamespacedPod({
        name: p.metadata!.name!,
        namespace: WORK_NAMESPACE,
        gracePeriodSeconds: 0,
      });
    }
  });
});
