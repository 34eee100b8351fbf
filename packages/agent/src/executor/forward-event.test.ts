import { describe, expect, it } from 'vitest';
import { slimEvent } from '../inventory/slim.js';
import { forwardedEvent } from './status.js';

const preempted = {
  metadata: { name: 'e1', namespace: 'spillway-origin' },
  involvedObject: { kind: 'Pod', namespace: 'spillway-origin', name: 'ml-train-abc' },
  related: { kind: 'Pod', namespace: 'default', name: 'serve', uid: 'u-9' },
  type: 'Normal',
  reason: 'Preempted',
  message: 'Preempted by pod u-9 on node gpu-0',
};

describe('forwardedEvent', () => {
  it('tells the origin its GPUs were reclaimed, naming the pod that took them', () => {
    expect(forwardedEvent(slimEvent(preempted))).toEqual({
      type: 'Warning',
      reason: 'Reclaimed',
      message: "GPUs reclaimed for the donor's pod default/serve: preempted on node gpu-0",
    });
  });

  it('says so when the preemptor is not named', () => {
    const { related: _r, ...bare } = preempted;
    expect(forwardedEvent(bare).message).toBe(
      "GPUs reclaimed for the donor's pod (not named): preempted on node gpu-0",
    );
  });

  it('forwards other events as they are', () => {
    const { related: _r, ...bare } = preempted;
    expect(forwardedEvent({ ...bare, reason: 'Pulled', message: 'pulled img' })).toEqual({
      type: 'Normal',
      reason: 'Pulled',
      message: 'pulled img',
    });
  });
});
