import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { canonical, failedStatus, mirrorStatus, reasonFromCode, statusDiffers } from './status.js';

const now = new Date('2026-05-01T10:00:05.000Z');
const opts = { hostIP: '10.0.0.7', now };

function originPod(status: V1PodStatus): V1Pod {
  return {
    metadata: { name: 'train', namespace: 'ml', uid: 'u-1' },
    spec: {
      nodeName: 'spillway-donor-b',
      readinessGates: [{ conditionType: 'example.com/ready' }],
      containers: [{ name: 'train', image: 'img:1' }],
    },
    status,
  };
}

const scheduled = {
  type: 'PodScheduled',
  status: 'True',
  lastTransitionTime: new Date('2026-05-01T10:00:00Z'),
};
const gate = { type: 'example.com/ready', status: 'True' };
const running: V1PodStatus = {
  phase: 'Running',
  podIP: '10.244.3.9',
  podIPs: [{ ip: '10.244.3.9' }],
  hostIP: '192.168.9.9',
  startTime: '2026-05-01T10:00:02Z' as unknown as Date,
  qosClass: 'BestEffort',
  conditions: [
    {
      type: 'PodScheduled',
      status: 'True',
      lastTransitionTime: '2026-05-01T10:00:01Z' as unknown as Date,
    },
    { type: 'Initialized', status: 'True' },
    { type: 'ContainersReady', status: 'True' },
    { type: 'Ready', status: 'True' },
  ],
  containerStatuses: [
    {
      name: 'train',
      image: 'img:1',
      imageID: 'img@sha256:1',
      ready: true,
      restartCount: 2,
      state: { running: { startedAt: '2026-05-01T10:00:02Z' as unknown as Date } },
    },
  ],
};

describe('mirrorStatus', () => {
  it('takes phase, kubelet conditions, containers, IPs and start time from the donor; keeps what the origin owns', () => {
    const out = mirrorStatus(
      originPod({ phase: 'Pending', qosClass: 'Burstable', conditions: [scheduled, gate] }),
      { status: running, deleted: false, donor: 'donor-b' },
      opts,
    );
    expect(out.phase).toBe('Running');
    expect(out.podIP).toBe('10.244.3.9');
    expect(out.startTime).toBe(running.startTime);
    // hostIP is the virtual node's, as a kubelet posts its own node's address.
    expect(out.hostIP).toBe('10.0.0.7');
    expect(out.hostIPs).toEqual([{ ip: '10.0.0.7' }]);
    // The origin computed QoS from the origin spec; it stays.
    expect(out.qosClass).toBe('Burstable');
    expect(out.containerStatuses?.[0]).toMatchObject({ restartCount: 2, ready: true });
    expect(out.conditions?.map((c) => c.type)).toEqual([
      'PodScheduled',
      'example.com/ready',
      'Initialized',
      'ContainersReady',
      'Ready',
    ]);
    // The origin's PodScheduled, not the donor's.
    expect(out.conditions?.[0]).toBe(scheduled);
  });

  it.each([
    {
      name: 'donor Failed with a reason: origin Failed with it',
      remote: {
        phase: 'Failed',
        reason: 'Evicted',
        message: 'The node was low on resource: memory.',
        containerStatuses: [
          {
            name: 'train',
            image: 'img:1',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
          },
        ],
      },
      deleted: false,
      want: {
        phase: 'Failed',
        reason: 'Evicted',
        message: 'The node was low on resource: memory.',
      },
      exit: 137,
    },
    {
      name: 'donor Succeeded: origin Succeeded',
      remote: {
        phase: 'Succeeded',
        containerStatuses: [
          {
            name: 'train',
            image: 'img:1',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 0, reason: 'Completed' } },
          },
        ],
      },
      deleted: false,
      want: { phase: 'Succeeded' },
      exit: 0,
    },
    {
      name: 'remote pod deleted while running: origin Failed, containers lost',
      remote: running,
      deleted: true,
      want: { phase: 'Failed', reason: 'RemotePodDeleted' },
      exit: 137,
    },
    {
      name: 'unknown phase from the donor: Pending',
      remote: { phase: 'Weird' },
      deleted: false,
      want: { phase: 'Pending' },
      exit: undefined,
    },
  ])('$name', ({ remote, deleted, want, exit }) => {
    const origin = originPod({
      phase: 'Running',
      conditions: [scheduled],
      containerStatuses: running.containerStatuses!,
    });
    const out = mirrorStatus(origin, { status: remote, deleted, donor: 'donor-b' }, opts);
    expect(out).toMatchObject(want);
    expect(out.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(exit);
  });

  it('never changes a terminal origin pod, whatever the donor says later', () => {
    const done = originPod({ phase: 'Succeeded', conditions: [scheduled] });
    const out = mirrorStatus(done, { status: running, deleted: false, donor: 'donor-b' }, opts);
    expect(out).toBe(done.status);
  });

  it('a remote pod deleted after it finished keeps the finished status', () => {
    const remote = { phase: 'Succeeded' } as V1PodStatus;
    const out = mirrorStatus(
      originPod({ phase: 'Running', conditions: [scheduled] }),
      { status: remote, deleted: true, donor: 'donor-b' },
      opts,
    );
    expect(out.phase).toBe('Succeeded');
  });
});

describe('failedStatus', () => {
  it('a pod that never ran: Failed with the reason and no container statuses, like an admission refusal', () => {
    const out = failedStatus(
      originPod({ phase: 'Pending', conditions: [scheduled] }),
      'PodRefused',
      'donor donor-b refused the pod: hostNetwork is not allowed on a donor',
      now,
    );
    expect(out).toMatchObject({ phase: 'Failed', reason: 'PodRefused' });
    expect(out.message).toContain('hostNetwork');
    expect(out.containerStatuses).toBeUndefined();
    expect(out.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False' });
    expect(out.conditions?.find((c) => c.type === 'PodScheduled')).toBe(scheduled);
  });

  it('a pod that ran: its containers are reported lost (137), keeping restart counts', () => {
    const out = failedStatus(
      originPod({
        phase: 'Running',
        conditions: [scheduled],
        containerStatuses: running.containerStatuses!,
      }),
      'RemotePodLost',
      'gone',
      now,
    );
    expect(out.containerStatuses?.[0]).toMatchObject({
      ready: false,
      restartCount: 2,
      state: {
        terminated: {
          exitCode: 137,
          reason: 'ContainerStatusUnknown',
          finishedAt: '2026-05-01T10:00:05Z',
        },
      },
    });
  });
});

describe('reasonFromCode', () => {
  it.each([
    ['POD_REFUSED', 'PodRefused'],
    ['QUOTA_EXCEEDED', 'QuotaExceeded'],
    ['', 'OffloadFailed'],
  ])('%s → %s', (code, reason) => expect(reasonFromCode(code)).toBe(reason));
});

describe('statusDiffers', () => {
  it('treats a Date and its RFC 3339 string alike (informer caches hold both)', () => {
    const a: V1PodStatus = { phase: 'Running', startTime: new Date('2026-05-01T10:00:02.000Z') };
    const b: V1PodStatus = {
      phase: 'Running',
      startTime: '2026-05-01T10:00:02Z' as unknown as Date,
    };
    expect(statusDiffers(a, b)).toBe(false);
    expect(statusDiffers(a, { ...b, phase: 'Succeeded' })).toBe(true);
  });
  it('ignores fields it does not write', () => {
    const a = { phase: 'Running', resize: 'Proposed' } as V1PodStatus;
    expect(statusDiffers(a, { phase: 'Running' })).toBe(false);
  });
  it('canonical drops empty values and sorts keys', () => {
    expect(canonical({ b: 1, a: [], c: {}, d: undefined, e: null })).toBe('{"b":1}');
  });
});
