import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { computeNode, nodeHeldBy, podsHoldingResources } from './compute.js';
import { ReclaimHold } from './reclaim-hold.js';
import { slimPodForInventory } from './slim.js';

const node: V1Node = {
  metadata: { name: 'gpu-0', labels: {} },
  status: {
    allocatable: { cpu: '32', memory: '256Gi', 'nvidia.com/gpu': '4' },
    conditions: [{ type: 'Ready', status: 'True' }],
  },
};
const policy = { gpuResources: ['nvidia.com/gpu'], nodeSelector: {}, reservedGpusPerNode: 0 };

function pod(name: string, extra: { origin?: boolean; status?: V1Pod['status']; node?: string }) {
  return {
    metadata: {
      name,
      namespace: 'spillway-origin',
      labels: extra.origin ? { 'spillway.io/origin-uid': `uid-${name}` } : {},
    },
    spec: {
      ...(extra.node !== undefined ? { nodeName: extra.node } : {}),
      containers: [{ name: 'c', resources: { requests: { 'nvidia.com/gpu': '4' } } }],
    },
    ...(extra.status ? { status: extra.status } : {}),
  } satisfies V1Pod;
}

const preempted = {
  phase: 'Running',
  conditions: [{ type: 'DisruptionTarget', status: 'True', reason: 'PreemptionByScheduler' }],
};

function free(pods: V1Pod[]): string | undefined {
  const v = computeNode(node, pods, policy);
  return v.eligible ? String(v.capacity.gpus?.['nvidia.com/gpu']?.free) : undefined;
}

describe('ReclaimHold', () => {
  it('holds a preempted guest once it is gone, until the hold ends', () => {
    let t = 1000;
    const hold = new ReclaimHold(5000, () => t);
    const victim = pod('guest', { origin: true, node: 'gpu-0', status: preempted });
    expect(hold.observe('k', victim, false)).toBeUndefined(); // still terminating: counted anyway
    expect(hold.observe('k', victim, true)).toBe(6000);
    expect(hold.observe('k', victim, true)).toBeUndefined(); // once
    expect(hold.nodeOf('k')).toBe('gpu-0');
    const held = hold.onNode('gpu-0');
    expect(held).toHaveLength(1);
    expect(held[0]?.metadata?.labels).toEqual({}); // not reported as an offloaded pod
    expect(free(held)).toBe('0');
    expect(hold.onNode('gpu-1')).toEqual([]);
    t = 6000;
    expect(hold.onNode('gpu-0')).toEqual([]);
    expect(hold.nodeOf('k')).toBeUndefined();
  });

  it('holds a preempted guest that ended Failed before it was deleted', () => {
    const hold = new ReclaimHold(5000, () => 0);
    const victim = pod('guest', {
      origin: true,
      node: 'gpu-0',
      status: { ...preempted, phase: 'Failed' },
    });
    expect(hold.observe('k', victim, false)).toBe(5000);
  });

  it('ignores pods that were not preempted, not guests, or with the hold off', () => {
    const hold = new ReclaimHold(5000, () => 0);
    expect(hold.observe('a', pod('a', { origin: true, node: 'gpu-0' }), true)).toBeUndefined();
    expect(hold.observe('b', pod('b', { node: 'gpu-0', status: preempted }), true)).toBeUndefined();
    expect(
      new ReclaimHold(0).observe(
        'c',
        pod('c', { origin: true, node: 'gpu-0', status: preempted }),
        true,
      ),
    ).toBeUndefined();
  });
});

describe('pods nominated to a node', () => {
  it('hold its GPUs while they wait for their victims to go', () => {
    const waiting = pod('serve', { status: { phase: 'Pending', nominatedNodeName: 'gpu-0' } });
    expect(nodeHeldBy(waiting)).toBe('gpu-0');
    expect(podsHoldingResources([waiting], 'gpu-0')).toHaveLength(1);
    expect(free(podsHoldingResources([waiting], 'gpu-0'))).toBe('0');
    const bound = pod('serve', { node: 'gpu-1', status: { nominatedNodeName: 'gpu-0' } });
    expect(nodeHeldBy(bound)).toBe('gpu-1');
  });

  it('keep their nomination, and guests their DisruptionTarget, through the slim cache', () => {
    const slim = slimPodForInventory(
      pod('serve', {
        status: {
          phase: 'Pending',
          nominatedNodeName: 'gpu-0',
          conditions: [{ type: 'PodScheduled', status: 'False' }],
        },
      }),
    );
    expect(slim.status).toEqual({ phase: 'Pending', nominatedNodeName: 'gpu-0' });
    const guest = slimPodForInventory(pod('g', { origin: true, node: 'gpu-0', status: preempted }));
    expect(guest.status?.conditions).toEqual(preempted.conditions);
  });
});
