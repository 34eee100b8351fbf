import type { V1Node, V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_DONOR,
  ANNOTATION_REMOTE_POD,
  ANNOTATION_RESERVATION,
  ErrorCode,
  SpillwayError,
  createLogger,
} from '@spillway/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { virtualNodeConfig } from '../config.js';
import { DonorRegistry } from '../donors.js';
import { ANNOTATION_DONOR_NODE } from '../forge/placement.js';
import { RemotePods, type RemotePodRecord } from '../remote.js';
import type { ShimContext } from './context.js';
import { PodLifecycle } from './pods.js';

// The steps each decision runs, with the Kubernetes and broker clients faked: which action
// is decided is pod-decision.test.ts's; what a real API server answers is the e2e suite's.

const node: V1Node = {
  metadata: {
    name: 'spillway-donor-b',
    labels: { type: 'virtual-kubelet', 'spillway.io/donor': 'donor-b' },
  },
};

const reserved = { [ANNOTATION_RESERVATION]: 'r-1', [ANNOTATION_DONOR_NODE]: 'donor-b-gpu-0' };

function pod(
  over: {
    phase?: string;
    annotations?: Record<string, string>;
    grace?: number;
    deleting?: boolean;
  } = {},
): V1Pod {
  return {
    metadata: {
      name: 'train',
      namespace: 'ml',
      uid: 'u-1',
      resourceVersion: '7',
      ...(over.annotations ? { annotations: over.annotations } : {}),
      ...(over.deleting ? { deletionTimestamp: new Date() } : {}),
      ...(over.grace !== undefined ? { deletionGracePeriodSeconds: over.grace } : {}),
    },
    spec: {
      nodeName: 'spillway-donor-b',
      containers: [{ name: 'c', image: 'img', resources: { limits: { 'nvidia.com/gpu': '1' } } }],
    },
    status: { phase: over.phase ?? 'Pending' },
  };
}

function remoteRecord(over: Partial<RemotePodRecord> = {}): RemotePodRecord {
  return {
    uid: 'u-1',
    donor: 'donor-b',
    namespace: 'ml',
    name: 'train',
    remoteNamespace: 'spillway-origin-ml',
    remoteName: 'train',
    nodeName: 'donor-b-gpu-0',
    status: { phase: 'Running' },
    deleted: false,
    observedMs: 5,
    receivedMs: Date.now(),
    ...over,
  };
}

let running: PodLifecycle | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

function setup(opts: { pod: V1Pod; records?: RemotePodRecord[] }) {
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
  const remote = new RemotePods();
  remote.applySnapshot('donor-b', opts.records ?? [], Date.now() - 1_000);
  const broker = {
    place: vi.fn(),
    release: vi.fn(() => Promise.resolve({ released: true })),
    createPod: vi.fn(() =>
      Promise.resolve({
        remote_namespace: 'spillway-origin-ml',
        remote_name: 'train',
        already_existed: false,
      }),
    ),
    deletePod: vi.fn(() => Promise.resolve({ not_found: false })),
  };
  const core = {
    patchNamespacedPod: vi.fn(() =>
      Promise.resolve({ ...opts.pod, metadata: { ...opts.pod.metadata, resourceVersion: '8' } }),
    ),
    replaceNamespacedPodStatus: vi.fn(() => Promise.resolve({})),
    deleteNamespacedPod: vi.fn(() => Promise.resolve({})),
    readNamespacedPod: vi.fn(() => Promise.resolve(opts.pod)),
  };
  const events = {
    record: vi.fn(() => Promise.resolve()),
    emit: vi.fn(),
    forgetPod: vi.fn(),
  };
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) },
  });
  const informer = (get: () => unknown) => ({
    informer: { get, list: () => [], on: () => undefined },
  });
  const ctx = {
    originCluster: 'origin',
    config: virtualNodeConfig({ brokerAddress: 'b:1' }),
    core,
    broker,
    donors,
    remote,
    events,
    pods: informer(() => opts.pod),
    nodes: informer(() => node),
    namespaces: undefined,
    nodeOptions: { nodeAddress: '10.0.0.7' },
    logger,
  } as unknown as ShimContext;
  running = new PodLifecycle(ctx);
  return { pods: running, broker, core, events, logs, remote };
}

const brokerDown = (): Promise<never> =>
  Promise.reject(new SpillwayError(ErrorCode.UNAVAILABLE, 'broker unavailable'));

describe('PodLifecycle steps', () => {
  it('logs a failed release of a pod deleted before it was offloaded, and still removes the pod', async () => {
    const { pods, broker, core, logs } = setup({
      pod: pod({ deleting: true, annotations: reserved }),
    });
    broker.release.mockImplementation(brokerDown);
    await pods.reconcile('ml/train');
    expect(broker.release).toHaveBeenCalledWith({
      reservation_id: 'r-1',
      reason: 'origin pod deleted before it was offloaded',
    });
    expect(core.deleteNamespacedPod).toHaveBeenCalledOnce();
    const warn = logs.find((l) => l.level === 'warn');
    expect(warn).toMatchObject({
      pod: 'ml/train',
      reservation: 'r-1',
      msg: 'could not release the reservation; it lapses at its TTL',
      err: expect.objectContaining({ message: 'broker unavailable' }) as unknown,
    });
  });

  it('fails a refused pod with the donor’s reason, releasing its reservation (a failed release is logged)', async () => {
    const { pods, broker, core, events, logs } = setup({
      pod: pod({ annotations: reserved }),
    });
    broker.createPod.mockImplementation(() =>
      Promise.reject(new SpillwayError(ErrorCode.POD_REFUSED, 'hostPath volumes are not allowed')),
    );
    broker.release.mockImplementation(brokerDown);
    await pods.reconcile('ml/train');
    expect(broker.release).toHaveBeenCalledWith(expect.objectContaining({ reservation_id: 'r-1' }));
    expect(logs.some((l) => l.level === 'warn' && l.reservation === 'r-1')).toBe(true);
    expect(events.record).toHaveBeenCalledWith(
      expect.anything(),
      expect.objectContaining({ reason: 'OffloadRefused' }),
    );
    const [written] = core.replaceNamespacedPodStatus.mock.calls as unknown as [{ body: V1Pod }][];
    expect(written?.[0].body.status?.phase).toBe('Failed');
    expect(written?.[0].body.status?.message).toContain('hostPath volumes are not allowed');
  });

  it('creates the remote pod with the held reservation, then names it on the origin pod', async () => {
    const { pods, broker, core, events, remote } = setup({ pod: pod({ annotations: reserved }) });
    await pods.reconcile('ml/train');
    expect(broker.place).not.toHaveBeenCalled();
    expect(broker.createPod).toHaveBeenCalledWith(
      expect.objectContaining({
        donor_cluster: 'donor-b',
        reservation_id: 'r-1',
        node_name: 'donor-b-gpu-0',
      }),
    );
    expect(remote.get('u-1')).toMatchObject({ assumed: true, status: { phase: 'Pending' } });
    expect(core.patchNamespacedPod).toHaveBeenCalledWith(
      expect.objectContaining({
        body: {
          metadata: {
            annotations: {
              [ANNOTATION_DONOR]: 'donor-b',
              [ANNOTATION_REMOTE_POD]: 'spillway-origin-ml/train',
            },
          },
        },
      }),
      expect.anything(),
    );
    expect(events.emit).toHaveBeenCalledWith(
      expect.anything(),
      expect.objectContaining({ reason: 'Offloaded' }),
    );
    // Nothing to post before the donor's first report.
    expect(core.replaceNamespacedPodStatus).not.toHaveBeenCalled();
  });

  it('places a pod bound by others first and records the reservation on it', async () => {
    const { pods, broker, core } = setup({ pod: pod() });
    broker.place.mockImplementation(() =>
      Promise.resolve({
        reservation: { id: 'r-9', node: 'donor-b-gpu-3', donor_cluster: 'donor-b' },
        reason: '',
        reason_code: '',
        verdicts: [],
      }),
    );
    await pods.reconcile('ml/train');
    expect(core.patchNamespacedPod).toHaveBeenNthCalledWith(
      1,
      expect.objectContaining({
        body: {
          metadata: {
            annotations: {
              [ANNOTATION_RESERVATION]: 'r-9',
              [ANNOTATION_DONOR_NODE]: 'donor-b-gpu-3',
            },
          },
        },
      }),
      expect.anything(),
    );
    expect(broker.createPod).toHaveBeenCalledWith(
      expect.objectContaining({ reservation_id: 'r-9', node_name: 'donor-b-gpu-3' }),
    );
  });

  it('waits with back-off, saying why, when the donor has no room', async () => {
    const { pods, broker, events } = setup({ pod: pod() });
    broker.place.mockImplementation(() =>
      Promise.resolve({
        reservation: null,
        reason: 'no node fits',
        reason_code: 'NO_FIT',
        verdicts: [],
      }),
    );
    await pods.reconcile('ml/train');
    expect(broker.createPod).not.toHaveBeenCalled();
    expect(events.record).toHaveBeenCalledWith(
      expect.anything(),
      expect.objectContaining({ reason: 'NotOffloaded' }),
    );
    expect(pods.queue.pendingDelayed).toBe(1);
  });

  it('gives up a lapsed reservation and places the pod again', async () => {
    const { pods, broker, core } = setup({ pod: pod({ annotations: reserved }) });
    broker.createPod.mockImplementation(() =>
      Promise.reject(
        new SpillwayError(ErrorCode.CONFLICT, 'reservation r-1 is not live', {
          field: 'reservation_id',
        }),
      ),
    );
    await pods.reconcile('ml/train');
    expect(core.patchNamespacedPod).toHaveBeenCalledWith(
      expect.objectContaining({
        body: {
          metadata: {
            annotations: { [ANNOTATION_RESERVATION]: null, [ANNOTATION_DONOR_NODE]: null },
          },
        },
      }),
      expect.anything(),
    );
    expect(broker.release).not.toHaveBeenCalled();
    expect(core.replaceNamespacedPodStatus).not.toHaveBeenCalled();
    expect(pods.queue.length).toBe(1);
  });

  it('deletes the remote copy with the pod’s grace period and looks again after it', async () => {
    const { pods, broker, core } = setup({
      pod: pod({ phase: 'Running', deleting: true, grace: 5 }),
      records: [remoteRecord()],
    });
    await pods.reconcile('ml/train');
    expect(broker.deletePod).toHaveBeenCalledWith(
      expect.objectContaining({ grace_period_seconds: 5 }),
    );
    expect(core.deleteNamespacedPod).not.toHaveBeenCalled();
    expect(pods.queue.pendingDelayed).toBe(1);
  });

  it('removes the origin pod once the donor says the copy is gone', async () => {
    const { pods, broker, core } = setup({
      pod: pod({ phase: 'Running', deleting: true }),
      records: [remoteRecord()],
    });
    broker.deletePod.mockImplementation(() => Promise.resolve({ not_found: true }));
    await pods.reconcile('ml/train');
    expect(broker.deletePod).toHaveBeenCalledWith(
      expect.objectContaining({ grace_period_seconds: -1 }),
    );
    expect(core.deleteNamespacedPod).toHaveBeenCalledOnce();
  });

  it('stops the copy of a pod that ended here, and writes nothing on the pod', async () => {
    const { pods, broker, core } = setup({
      pod: pod({ phase: 'Failed' }),
      records: [remoteRecord()],
    });
    await pods.reconcile('ml/train');
    expect(broker.deletePod).toHaveBeenCalledWith(
      expect.objectContaining({ grace_period_seconds: 0 }),
    );
    expect(core.replaceNamespacedPodStatus).not.toHaveBeenCalled();
    expect(core.patchNamespacedPod).not.toHaveBeenCalled();
  });

  it('mirrors a reported copy onto the origin pod', async () => {
    const { pods, core } = setup({
      pod: pod({
        annotations: {
          [ANNOTATION_DONOR]: 'donor-b',
          [ANNOTATION_REMOTE_POD]: 'spillway-origin-ml/train',
        },
      }),
      records: [remoteRecord()],
    });
    await pods.reconcile('ml/train');
    const [written] = core.replaceNamespacedPodStatus.mock.calls as unknown as [{ body: V1Pod }][];
    expect(written?.[0].body.status?.phase).toBe('Running');
    expect(written?.[0].body.status?.hostIP).toBe('10.0.0.7');
  });
});
