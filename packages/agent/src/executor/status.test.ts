import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { podStatusEvent, statusFingerprint } from './status.js';

const pod = (phase: string, extra: Partial<V1Pod['status']> = {}): V1Pod => ({
  metadata: {
    name: 'ml-train-0-abcd1234',
    namespace: 'spillway-origin',
    labels: { 'spillway.io/origin-cluster': 'origin', 'spillway.io/origin-uid': 'u1' },
    annotations: { 'spillway.io/origin-namespace': 'ml', 'spillway.io/origin-name': 'train-0' },
    resourceVersion: '1',
  },
  spec: { nodeName: 'gpu-1', containers: [{ name: 'c' }] },
  status: { phase, ...extra },
});

describe('status reflection', () => {
  it('changes fingerprint on phase, IP or container state, not on resourceVersion', () => {
    const a = pod('Pending');
    const b = { ...pod('Pending'), metadata: { ...pod('Pending').metadata, resourceVersion: '2' } };
    expect(statusFingerprint(a)).toBe(statusFingerprint(b));
    expect(statusFingerprint(pod('Running'))).not.toBe(statusFingerprint(a));
    expect(statusFingerprint(pod('Running', { podIP: '10.0.0.1' }))).not.toBe(
      statusFingerprint(pod('Running')),
    );
  });

  it('addresses the event to the origin pod', () => {
    const e = podStatusEvent(pod('Running'), 'donor-a', false, 1000);
    expect(e).toMatchObject({
      pod: { origin_cluster: 'origin', namespace: 'ml', name: 'train-0', uid: 'u1' },
      donor_cluster: 'donor-a',
      remote_namespace: 'spillway-origin',
      node_name: 'gpu-1',
      deleted: false,
      observed_unix_ms: '1000',
    });
    expect(JSON.parse(e!.status_json!)).toEqual({ phase: 'Running' });
    expect(podStatusEvent({ metadata: { name: 'x' } }, 'd', false)).toBeUndefined();
  });
});
