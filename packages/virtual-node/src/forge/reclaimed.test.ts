import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { mirrorStatus } from './status.js';

const now = new Date('2026-05-01T10:00:05.000Z');
const opts = { hostIP: '10.0.0.7', now };

const origin: V1Pod = {
  metadata: { name: 'train', namespace: 'ml', uid: 'u-1' },
  spec: { nodeName: 'spillway-donor-a', containers: [{ name: 'train', image: 'img:1' }] },
  status: {
    phase: 'Running',
    conditions: [{ type: 'PodScheduled', status: 'True' }],
    containerStatuses: [
      {
        name: 'train',
        image: 'img:1',
        imageID: '',
        ready: true,
        restartCount: 0,
        state: { running: { startedAt: '2026-05-01T10:00:01Z' as unknown as Date } },
      },
    ],
  },
};

const disruption = {
  type: 'DisruptionTarget',
  status: 'True',
  reason: 'PreemptionByScheduler',
  message: 'default-scheduler: preempting to accommodate a higher priority pod',
};
const preemptedRunning: V1PodStatus = { phase: 'Running', conditions: [disruption] };

describe('mirrorStatus: a guest its donor preempted', () => {
  it('fails the origin pod as Reclaimed once the copy is gone, with a DisruptionTarget', () => {
    const s = mirrorStatus(
      origin,
      { status: preemptedRunning, deleted: true, donor: 'donor-a' },
      opts,
    );
    expect(s.phase).toBe('Failed');
    expect(s.reason).toBe('Reclaimed');
    expect(s.message).toContain('donor donor-a reclaimed its GPUs');
    expect(s.conditions).toContainEqual(
      expect.objectContaining({
        type: 'DisruptionTarget',
        status: 'True',
        reason: 'PreemptionByScheduler',
      }),
    );
    expect(s.conditions).toContainEqual(expect.objectContaining({ type: 'PodScheduled' }));
    expect(s.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(137);
  });

  it('fails it as Reclaimed when the copy ended Failed before it was deleted', () => {
    const s = mirrorStatus(
      origin,
      { status: { ...preemptedRunning, phase: 'Failed' }, deleted: false, donor: 'donor-a' },
      opts,
    );
    expect(s.reason).toBe('Reclaimed');
  });

  it('keeps mirroring while the copy is still terminating (its notice)', () => {
    const s = mirrorStatus(
      origin,
      { status: preemptedRunning, deleted: false, donor: 'donor-a' },
      opts,
    );
    expect(s.phase).toBe('Running');
  });

  it('a copy deleted without preemption is still RemotePodDeleted', () => {
    const s = mirrorStatus(
      origin,
      { status: { phase: 'Running' }, deleted: true, donor: 'donor-a' },
      opts,
    );
    expect(s.reason).toBe('RemotePodDeleted');
  });
});
