import type { CoreV1Event, V1Node, V1Pod } from '@kubernetes/client-node';
import { podRequests } from '@spillway/common';
import { describe, expect, it } from 'vitest';
import { computeNode, type InventoryPolicy } from './compute.js';
import { slimEvent, slimPodForInventory } from './slim.js';

const policy: InventoryPolicy = {
  gpuResources: ['nvidia.com/gpu'],
  nodeSelector: {},
  reservedGpusPerNode: 0,
};

const pod: V1Pod = {
  metadata: {
    name: 'train-0',
    namespace: 'spillway-origin',
    uid: 'p1',
    resourceVersion: '7',
    labels: { 'spillway.io/origin-uid': 'o1', app: 'train' },
    annotations: { big: 'x'.repeat(1000) },
    managedFields: [{ manager: 'kubectl', operation: 'Update', fieldsV1: { f: 'x'.repeat(1000) } }],
  },
  spec: {
    nodeName: 'gpu-0',
    containers: [
      {
        name: 'c',
        image: 'example.com/train:1',
        env: [{ name: 'A', value: 'x'.repeat(500) }],
        resources: { requests: { cpu: '1', memory: '1Gi', 'nvidia.com/gpu': '2' } },
      },
    ],
    initContainers: [
      {
        name: 'side',
        restartPolicy: 'Always',
        resources: { requests: { cpu: '500m', 'nvidia.com/gpu': '1' } },
      },
    ],
    overhead: { cpu: '100m' },
  },
  status: {
    phase: 'Running',
    conditions: [{ type: 'Ready', status: 'True' }],
    podIP: '10.0.0.1',
  },
};

const node: V1Node = {
  metadata: { name: 'gpu-0', labels: {} },
  status: {
    allocatable: { cpu: '64', memory: '256Gi', 'nvidia.com/gpu': '8', pods: '110' },
    conditions: [{ type: 'Ready', status: 'True' }],
  },
};

describe('slim inventory pods', () => {
  it('keeps exactly what the inventory computes with', () => {
    const slim = slimPodForInventory(structuredClone(pod));
    expect(podRequests(slim, policy.gpuResources)).toEqual(podRequests(pod, policy.gpuResources));
    expect(computeNode(node, [slim], policy)).toEqual(computeNode(node, [pod], policy));
    expect(slim.metadata).toEqual({
      name: 'train-0',
      namespace: 'spillway-origin',
      uid: 'p1',
      resourceVersion: '7',
      labels: { 'spillway.io/origin-uid': 'o1' },
    });
    expect(slim.status).toEqual({ phase: 'Running' });
    expect(JSON.stringify(slim).length).toBeLessThan(JSON.stringify(pod).length / 4);
  });

  it('keeps a deletion in progress and leaves out what a pod does not have', () => {
    const slim = slimPodForInventory({
      metadata: { name: 'a', namespace: 'b', deletionTimestamp: new Date(0) },
      spec: { containers: [{ name: 'c' }] },
    });
    expect(slim).toEqual({
      metadata: { name: 'a', namespace: 'b', deletionTimestamp: new Date(0) },
      spec: { containers: [{ name: 'c' }] },
    });
  });
});

describe('slim events', () => {
  const event = (ns: string, kind = 'Pod'): CoreV1Event => ({
    metadata: { name: 'e1', namespace: ns, resourceVersion: '3', managedFields: [{}] },
    involvedObject: { kind, namespace: ns, name: 'p', uid: 'u' },
    type: 'Warning',
    reason: 'BackOff',
    message: 'Back-off pulling image',
    count: 3,
    lastTimestamp: new Date(1000),
    source: { component: 'kubelet', host: 'gpu-0' },
  });

  it('keeps what is forwarded of tenant pod events', () => {
    expect(slimEvent(event('spillway-origin'))).toEqual({
      metadata: { name: 'e1', namespace: 'spillway-origin', resourceVersion: '3' },
      involvedObject: { kind: 'Pod', namespace: 'spillway-origin', name: 'p' },
      type: 'Warning',
      reason: 'BackOff',
      message: 'Back-off pulling image',
      count: 3,
      lastTimestamp: new Date(1000),
    });
  });

  it('keeps only the identity of events that are never forwarded', () => {
    for (const e of [event('default'), event('spillway-origin', 'Node')])
      expect(slimEvent(e)).toEqual({
        metadata: { name: 'e1', namespace: e.metadata.namespace, resourceVersion: '3' },
        involvedObject: { kind: e.involvedObject.kind, namespace: e.involvedObject.namespace },
      });
  });
});
