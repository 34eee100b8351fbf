import type { V1Node, V1Pod } from '@kubernetes/client-node';
import type { PlaceResponse__Output } from '@spillway/api';
import { silentLogger } from '@spillway/common';
import { describe, expect, it, vi } from 'vitest';
import { virtualNodeConfig } from '../config.js';
import { DonorRegistry } from '../donors.js';
import { OverflowBinder } from './binder.js';
import type { ShimContext } from './context.js';

// The binder's decisions around the Binding call, with the Kubernetes and broker clients
// faked: what a real API server answers is covered by the e2e suite.

const node: V1Node = {
  metadata: {
    name: 'spillway-donor-b',
    labels: { type: 'virtual-kubelet', 'spillway.io/donor': 'donor-b' },
  },
};

function pendingPod(nodeName?: string): V1Pod {
  return {
    metadata: { name: 'train', namespace: 'ml', uid: 'u-1' },
    spec: {
      ...(nodeName ? { nodeName } : {}),
      containers: [{ name: 'c', image: 'img', resources: { limits: { 'nvidia.com/gpu': '1' } } }],
    },
    status: {
      phase: 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'False',
          reason: 'Unschedulable',
          lastTransitionTime: new Date(Date.now() - 60_000),
        },
      ],
    },
  };
}

const placed: PlaceResponse__Output = {
  reservation: {
    id: 'r-1',
    origin_cluster: 'origin',
    donor_cluster: 'donor-b',
    node: 'donor-b-gpu-0',
    resource_name: 'nvidia.com/gpu',
    gpus: 1,
    pod: null,
    expires_at: '',
  },
  reason: '',
  reason_code: '',
  verdicts: [],
};

function setup(opts: {
  /** Successive cache reads of the pod. */
  reads: (V1Pod | undefined)[];
  place?: PlaceResponse__Output;
  bind?: () => Promise<unknown>;
  fresh?: V1Pod;
  /** The origin's own nodes, beside the virtual node. */
  originNodes?: V1Node[];
}) {
  const reads = [...opts.reads];
  const informer = (get: () => unknown, list: () => unknown[] = () => []) => ({
    informer: { get, list, on: () => undefined },
  });
  const donors = new DonorRegistry(40_000);
  donors.setBrokerConnected(true);
  donors.update({
    as_origin: [
      {
        origin_cluster: 'origin',
        donor_cluster: 'donor-b',
        max_gpus: 0,
        gpu_products: [],
        donor_state: 'Ready',
        lendable: { 'nvidia.com/gpu': '4' },
        in_use: {},
        donor_gpu_products: [],
        tenant_namespace: 'spillway-origin',
        pod_security: 'baseline',
        deleting_since: '',
      },
    ],
    as_donor: [],
  });
  const broker = {
    place: vi.fn(() => Promise.resolve(opts.place ?? placed)),
    release: vi.fn(() => Promise.resolve({ released: true })),
  };
  const core = {
    createNamespacedPodBinding: vi.fn(opts.bind ?? (() => Promise.resolve({}))),
    readNamespacedPod: vi.fn(() => Promise.resolve(opts.fresh)),
  };
  const events = { record: vi.fn(() => Promise.resolve()) };
  const ctx = {
    originCluster: 'origin',
    config: virtualNodeConfig({ brokerAddress: 'b:1', gracePeriod: 10_000 }),
    core,
    broker,
    donors,
    events,
    pods: informer(() => (reads.length > 1 ? reads.shift() : reads[0])),
    nodes: informer(() => node),
    originNodes: informer(
      () => undefined,
      () => opts.originNodes ?? [],
    ),
    namespaces: undefined,
    logger: silentLogger(),
  } as unknown as ShimContext;
  return { binder: new OverflowBinder(ctx), broker, core, events, ctx };
}

const conflict = (): Promise<never> =>
  Promise.reject(Object.assign(new Error('pod train is already assigned to node'), { code: 409 }));

describe('OverflowBinder', () => {
  it('binds with the reservation and keeps it', async () => {
    const { binder, broker, core } = setup({ reads: [pendingPod(), pendingPod()] });
    await binder.reconcile('ml/train');
    const [call] = core.createNamespacedPodBinding.mock.calls as unknown as [
      { name: string; body: { target: { name: string } } },
    ][];
    expect(call?.[0].name).toBe('train');
    expect(call?.[0].body.target.name).toBe('spillway-donor-b');
    expect(broker.release).not.toHaveBeenCalled();
  });

  it('keeps the reservation of a pod the cache shows unbound but that is already on our node', async () => {
    // Place is idempotent per pod: a stale cache brings back the reservation we bound with.
    const { binder, broker, core } = setup({
      reads: [pendingPod(), pendingPod('spillway-donor-b')],
    });
    await binder.reconcile('ml/train');
    expect(core.createNamespacedPodBinding).not.toHaveBeenCalled();
    expect(broker.release).not.toHaveBeenCalled();
  });

  it('keeps it when the Binding conflicts because the pod is already ours', async () => {
    const { binder, broker } = setup({
      reads: [pendingPod(), pendingPod()],
      bind: conflict,
      fresh: pendingPod('spillway-donor-b'),
    });
    await binder.reconcile('ml/train');
    expect(broker.release).not.toHaveBeenCalled();
  });

  it('releases it when the scheduler bound the pod first', async () => {
    const { binder, broker } = setup({
      reads: [pendingPod(), pendingPod()],
      bind: conflict,
      fresh: pendingPod('gpu-node-7'),
    });
    await binder.reconcile('ml/train');
    expect(broker.release).toHaveBeenCalledWith(expect.objectContaining({ reservation_id: 'r-1' }));
  });

  const gpuNode: V1Node = {
    metadata: { name: 'gpu-node-7', labels: { 'nvidia.com/gpu.product': 'NVIDIA-A100' } },
    spec: { unschedulable: true },
    status: { capacity: { 'nvidia.com/gpu': '8' } },
  };
  const young = (): V1Pod => {
    const p = pendingPod();
    p.status!.conditions![0]!.lastTransitionTime = new Date();
    return p;
  };

  it('waits out the grace period before asking the broker when an origin node could run the pod', async () => {
    const { binder, broker } = setup({ reads: [young()], originNodes: [gpuNode] });
    await binder.reconcile('ml/train');
    expect(broker.place).not.toHaveBeenCalled();
    expect(binder.queue.pendingDelayed).toBe(1);
    await binder.stop();
  });

  it('offloads at once a pod no origin node could ever run', async () => {
    const { binder, broker, core } = setup({ reads: [young(), young()] });
    await binder.reconcile('ml/train');
    expect(broker.place).toHaveBeenCalledTimes(1);
    expect(core.createNamespacedPodBinding).toHaveBeenCalledTimes(1);
  });

  it('keeps home a pod with a PVC, with one Warning, and never asks the broker', async () => {
    const notebook = (): V1Pod => {
      const p = pendingPod();
      p.spec!.volumes = [{ name: 'home', persistentVolumeClaim: { claimName: 'claim-ada' } }];
      return p;
    };
    const { binder, broker, core, events } = setup({ reads: [notebook()] });
    await binder.reconcile('ml/train');
    await binder.reconcile('ml/train');
    expect(broker.place).not.toHaveBeenCalled();
    expect(core.createNamespacedPodBinding).not.toHaveBeenCalled();
    expect(events.record).toHaveBeenCalledTimes(1);
    expect(events.record).toHaveBeenCalledWith(
      expect.anything(),
      expect.objectContaining({
        type: 'Warning',
        reason: 'CannotOffload',
        message: expect.stringMatching(
          /will not offload this pod: PersistentVolumeClaim volume "home"/,
        ) as unknown,
      }),
    );
    expect(binder.queue.pendingDelayed).toBe(0);
  });

  it('waits its grace anyway when the fast path is turned off', async () => {
    const { binder, broker, ctx } = setup({ reads: [young()] });
    ctx.config.skipGraceWhenNoOriginFit = false;
    await binder.reconcile('ml/train');
    expect(broker.place).not.toHaveBeenCalled();
    await binder.stop();
  });

  it("leaves an unplaceable pod Pending with the broker's reason, and retries later", async () => {
    const { binder, events } = setup({
      reads: [pendingPod()],
      place: {
        reservation: null,
        reason: 'no node fits 1 nvidia.com/gpu',
        reason_code: 'NO_FIT',
        verdicts: [],
      },
    });
    await binder.reconcile('ml/train');
    expect(events.record).toHaveBeenCalledWith(
      expect.anything(),
      expect.objectContaining({
        type: 'Warning',
        reason: 'NotOffloaded',
        message: expect.stringContaining('(NO_FIT): no node fits 1 nvidia.com/gpu') as unknown,
      }),
    );
    expect(binder.queue.pendingDelayed).toBe(1);
    await binder.stop();
  });
});
