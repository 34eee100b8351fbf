import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { offloadRefusal } from './refusal.js';

function pod(
  spec: Partial<V1PodSpec> = {},
  verdict = '0/2 nodes are available: 2 Insufficient nvidia.com/gpu.',
): V1Pod {
  return {
    metadata: { name: 'jupyter-ada', namespace: 'ml', uid: 'u-1' },
    spec: {
      containers: [
        {
          name: 'notebook',
          image: 'jupyter/base',
          resources: { limits: { 'nvidia.com/gpu': '1' } },
        },
      ],
      ...spec,
    },
    status: {
      phase: 'Pending',
      conditions: [
        { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: verdict },
      ],
    },
  };
}

const withContainer = (extra: object): Partial<V1PodSpec> => ({
  containers: [
    {
      name: 'notebook',
      image: 'jupyter/base',
      resources: { limits: { 'nvidia.com/gpu': '1' } },
      ...extra,
    },
  ],
});

describe('offloadRefusal', () => {
  const cases: { name: string; pod: V1Pod; refusal: RegExp | undefined }[] = [
    { name: 'a plain GPU pod short of GPUs', pod: pod(), refusal: undefined },
    {
      name: 'a KubeSpawner notebook with a PVC home',
      pod: pod(
        { volumes: [{ name: 'home', persistentVolumeClaim: { claimName: 'claim-ada' } }] },
        '0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.',
      ),
      refusal:
        /PersistentVolumeClaim volume "home" cannot be offloaded.*spec\.volumes\[0\]\.persistentVolumeClaim/,
    },
    {
      name: 'hostPath',
      pod: pod({ volumes: [{ name: 'dev', hostPath: { path: '/dev' } }] }),
      refusal: /hostPath volume "dev"/,
    },
    {
      name: 'a CSI volume',
      pod: pod({ volumes: [{ name: 'data', csi: { driver: 'x' } }] }),
      refusal: /csi volume "data"/,
    },
    {
      name: 'an emptyDir is fine',
      pod: pod({ volumes: [{ name: 'scratch', emptyDir: {} }] }),
      refusal: undefined,
    },
    { name: 'hostNetwork', pod: pod({ hostNetwork: true }), refusal: /hostNetwork/ },
    { name: 'hostPID', pod: pod({ hostPID: true }), refusal: /hostPID/ },
    { name: 'hostIPC', pod: pod({ hostIPC: true }), refusal: /hostIPC/ },
    {
      name: 'privileged',
      pod: pod(withContainer({ securityContext: { privileged: true } })),
      refusal: /"notebook" is privileged/,
    },
    {
      name: 'hostPort',
      pod: pod(withContainer({ ports: [{ containerPort: 8888, hostPort: 8888 }] })),
      refusal: /hostPort 8888/,
    },
    {
      name: 'procMount',
      pod: pod(withContainer({ securityContext: { procMount: 'Unmasked' } })),
      refusal: /procMount Unmasked/,
    },
    {
      // The donor's own policy says which capabilities it allows; the origin cannot know it.
      name: 'a capability beyond baseline is left to the donor',
      pod: pod(withContainer({ securityContext: { capabilities: { add: ['NET_ADMIN'] } } })),
      refusal: undefined,
    },
    {
      name: 'a missing claim',
      pod: pod({}, '0/2 nodes are available: persistentvolumeclaim "data" not found.'),
      refusal: /storage \("persistentvolumeclaim "data" not found"\)/,
    },
    {
      name: 'a volume node affinity conflict',
      pod: pod({}, '0/3 nodes are available: 3 node(s) had volume node affinity conflict.'),
      refusal: /volume node affinity conflict/,
    },
    {
      // A product only donors have: the broker decides, not this check.
      name: 'a selector no origin node matches is for the broker',
      pod: pod({}, "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."),
      refusal: undefined,
    },
  ];
  it.each(cases)('$name', (c) => {
    const r = offloadRefusal(c.pod);
    if (c.refusal === undefined) expect(r).toBeUndefined();
    else expect(r).toMatch(c.refusal);
  });
});
