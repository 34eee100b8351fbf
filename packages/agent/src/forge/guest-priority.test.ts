import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { translatePod } from './pod.js';

const id = { originCluster: 'lab', namespace: 'ml', name: 'train', uid: 'u-1' };

function origin(spec: Partial<NonNullable<V1Pod['spec']>>): V1Pod {
  return {
    metadata: { name: 'train', namespace: 'ml', uid: 'u-1' },
    spec: { containers: [{ name: 'c', image: 'img:1' }], ...spec },
  };
}

describe('translatePod: the guest runs at the donor priority, with the donor notice', () => {
  const opts = {
    tenantNamespace: 'spillway-lab',
    priorityClassName: 'spillway-guest',
    maxGracePeriodSeconds: 10,
  };

  it.each([
    ['no grace asked: Kubernetes 30 s, capped', undefined, 10],
    ['more than the cap', 120, 10],
    ['less than the cap', 3, 3],
  ])('%s', (_what, asked, want) => {
    const out = translatePod(
      origin(asked === undefined ? {} : { terminationGracePeriodSeconds: asked }),
      id,
      opts,
    );
    expect(out.spec?.terminationGracePeriodSeconds).toBe(want);
    expect(out.spec?.priorityClassName).toBe('spillway-guest');
  });

  it("never carries the origin's own priority across", () => {
    const out = translatePod(
      origin({
        priorityClassName: 'origin-critical',
        priority: 1_000_000,
        preemptionPolicy: 'PreemptLowerPriority',
      }),
      id,
      opts,
    );
    expect(out.spec?.priorityClassName).toBe('spillway-guest');
    expect(out.spec?.priority).toBeUndefined();
    expect(out.spec?.preemptionPolicy).toBeUndefined();
  });

  it("keeps the origin's grace and sets no class without a donor reclaim policy", () => {
    const out = translatePod(origin({ terminationGracePeriodSeconds: 120 }), id, {
      tenantNamespace: 'spillway-lab',
    });
    expect(out.spec?.terminationGracePeriodSeconds).toBe(120);
    expect(out.spec?.priorityClassName).toBeUndefined();
  });
});
