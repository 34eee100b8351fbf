import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpuNode, podOutcome } from '../testbed/index.js';
import {
  WORK_NAMESPACE,
  eventsOf,
  gpuPodSpec,
  seconds,
  startSpillway,
  waitFor,
  type SpillwayBed,
} from './harness.js';

// What the origin decides before it binds: a pod no origin node could ever run goes at once,
// a pod local capacity might take waits its grace, a pod no donor would run stays home.
// The grace period is long (30 s) so that "at once" cannot pass by waiting it out.
const GRACE_MS = 30_000;
const H100 = 'NVIDIA-H100-80GB-HBM3';
const onH100 = { 'nvidia.com/gpu.product': H100 };

let bed: SpillwayBed;

beforeAll(async () => {
  const t0 = Date.now();
  bed = await startSpillway({
    // One A100 GPU at home, taken by a local pod before the scenarios start.
    originNodes: [gpuNode('origin-a100-0', 1, 'A100-80GB')],
    donorNodes: {
      'donor-a': [gpuNode('donor-a-gpu-0', 8, 'A100-80GB')],
      'donor-b': [gpuNode('donor-b-gpu-0', 4, 'H100-80GB')],
    },
    shim: { gracePeriod: GRACE_MS },
  });
  console.log(`spillway bed up in ${seconds(t0)}; logs: ${bed.logFile}`);
  await create('local-filler', gpuPodSpec(1));
  await waitFor('local-filler Running on origin-a100-0', async () => {
    const p = await read('local-filler');
    return p.status?.phase === 'Running' && p.spec?.nodeName === 'origin-a100-0' ? p : undefined;
  });
}, 240_000);

afterAll(async () => {
  await bed?.stop();
});

async function create(name: string, spec: NonNullable<V1Pod['spec']>): Promise<V1Pod> {
  return bed.origin.core.createNamespacedPod({
    namespace: WORK_NAMESPACE,
    body: { metadata: { name, annotations: podOutcome('run') }, spec },
  });
}

function read(name: string): Promise<V1Pod> {
  return bed.origin.core.readNamespacedPod({ name, namespace: WORK_NAMESPACE });
}

const unschedulable = (p: V1Pod): boolean =>
  !!p.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable');

describe('deciding before binding', () => {
  it('offloads at once, without the grace period, a pod asking for a GPU product the origin lacks', async () => {
    const t0 = Date.now();
    await create('h100-now', gpuPodSpec(1, { nodeSelector: onH100 }));
    const bound = await waitFor(
      'h100-now bound',
      async () => {
        const p = await read('h100-now');
        return p.spec?.nodeName ? p : undefined;
      },
      GRACE_MS,
    );
    const boundAfterMs = Date.now() - t0;
    console.log(`h100-now bound after ${boundAfterMs} ms (grace ${GRACE_MS} ms)`);
    expect(bound.spec?.nodeName).toBe('spillway-donor-b');
    expect(boundAfterMs).toBeLessThan(GRACE_MS / 3);
    await waitFor('h100-now Running', async () => {
      const p = await read('h100-now');
      return p.status?.phase === 'Running' ? p : undefined;
    });
  });

  it('makes a pod the origin could run wait its grace, and lets local capacity take it', async () => {
    await create('a100-waits', gpuPodSpec(1));
    const pending = await waitFor('a100-waits Unschedulable', async () => {
      const p = await read('a100-waits');
      return unschedulable(p) ? p : undefined;
    });
    // Well inside the grace period, and well past the time the fast path takes.
    await new Promise((r) => setTimeout(r, GRACE_MS / 3));
    const still = await read('a100-waits');
    expect(still.spec?.nodeName).toBeUndefined();
    expect((await eventsOf(bed.origin, pending)).map((e) => e.reason)).not.toContain('Offloaded');
    // The local GPU frees up before the grace period ends: the pod runs at home.
    await bed.origin.core.deleteNamespacedPod({
      name: 'local-filler',
      namespace: WORK_NAMESPACE,
      gracePeriodSeconds: 0,
    });
    const local = await waitFor(
      'a100-waits bound',
      async () => {
        const p = await read('a100-waits');
        return p.spec?.nodeName ? p : undefined;
      },
      GRACE_MS,
    );
    expect(local.spec?.nodeName).toBe('origin-a100-0');
  }, 90_000);

  it('keeps a notebook with a PVC home directory Pending, with one Warning, never bound', async () => {
    await bed.origin.core.createNamespacedPersistentVolumeClaim({
      namespace: WORK_NAMESPACE,
      body: {
        metadata: { name: 'claim-ada' },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: '',
          resources: { requests: { storage: '10Gi' } },
        },
      },
    });
    // KubeSpawner-shaped, asking for a product only a donor has: without the check before
    // binding, the fast path would send it away at once and the donor would refuse it.
    const spec = gpuPodSpec(1, { nodeSelector: onH100 });
    spec.containers[0]!.name = 'notebook';
    spec.containers[0]!.ports = [{ name: 'notebook-port', containerPort: 8888 }];
    spec.containers[0]!.env = [{ name: 'JUPYTERHUB_USER', value: 'ada' }];
    spec.containers[0]!.volumeMounts = [{ name: 'home', mountPath: '/home/jovyan' }];
    spec.volumes = [{ name: 'home', persistentVolumeClaim: { claimName: 'claim-ada' } }];
    const created = await create('jupyter-ada', spec);
    const warning = await waitFor('a CannotOffload Warning on jupyter-ada', async () => {
      const events = await eventsOf(bed.origin, created);
      return events.find((e) => e.reason === 'CannotOffload');
    });
    expect(warning.type).toBe('Warning');
    expect(warning.message).toMatch(
      /will not offload this pod: PersistentVolumeClaim volume "home" cannot be offloaded/,
    );
    await new Promise((r) => setTimeout(r, 5_000));
    const p = await read('jupyter-ada');
    expect(p.spec?.nodeName).toBeUndefined();
    expect(p.status?.phase).toBe('Pending');
    const events = await eventsOf(bed.origin, p);
    expect(events.filter((e) => e.reason === 'CannotOffload')).toHaveLength(1);
    expect(events.map((e) => e.reason)).not.toContain('Offloaded');
  }, 90_000);
});
