import type { V1OwnerReference, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { gangKeyOf, gangSize, gangVerdict, type GangMember, type MemberState } from './gang.js';

function pod(
  name: string,
  o: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    owner?: Partial<V1OwnerReference>;
  } = {},
): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'ml',
      uid: `uid-${name}`,
      labels: o.labels ?? {},
      annotations: o.annotations ?? {},
      ...(o.owner
        ? {
            ownerReferences: [
              {
                apiVersion: 'batch/v1',
                kind: 'Job',
                name: 'x',
                uid: 'o',
                controller: true,
                ...o.owner,
              },
            ],
          }
        : {}),
    },
  };
}

// Labels as the JobSet controller puts them on the pods of its Jobs.
const jobsetPod = pod('train-workers-0-1-abcde', {
  labels: {
    'jobset.sigs.k8s.io/jobset-name': 'train',
    'jobset.sigs.k8s.io/replicatedjob-name': 'workers',
    'jobset.sigs.k8s.io/replicatedjob-replicas': '2',
    'jobset.sigs.k8s.io/job-index': '0',
    'jobset.sigs.k8s.io/job-key': '3f1c',
    'jobset.sigs.k8s.io/job-global-index': '0',
    'batch.kubernetes.io/job-name': 'train-workers-0',
    'batch.kubernetes.io/job-completion-index': '1',
  },
  annotations: { 'batch.kubernetes.io/job-completion-index': '1' },
  owner: { name: 'train-workers-0' },
});

describe('gangKeyOf', () => {
  const cases: { name: string; pod: V1Pod; want: unknown }[] = [
    {
      name: 'explicit spillway.io/gang with a size',
      pod: pod('a', { labels: { 'spillway.io/gang': 'g', 'spillway.io/gang-size': '4' } }),
      want: { source: 'spillway', name: 'g', key: 'ml/spillway/g', sizeLabel: 4 },
    },
    {
      name: 'a JobSet pod (its Indexed Job is not the gang: the JobSet is)',
      pod: jobsetPod,
      want: {
        source: 'jobset',
        key: 'ml/jobset/train',
        owner: { group: 'jobset.x-k8s.io', plural: 'jobsets', name: 'train' },
      },
    },
    {
      name: 'a Kubeflow TrainJob pod runs in its JobSet',
      pod: pod('t', {
        labels: {
          'trainer.kubeflow.org/trainjob-name': 'tj',
          'jobset.sigs.k8s.io/jobset-name': 'tj',
        },
      }),
      want: { source: 'trainer', key: 'ml/trainer/tj', owner: { kind: 'JobSet', name: 'tj' } },
    },
    {
      name: 'a PyTorchJob pod: its owner in kubeflow.org',
      pod: pod('pt-worker-0', {
        labels: {
          'training.kubeflow.org/job-name': 'pt',
          'training.kubeflow.org/replica-type': 'worker',
        },
        owner: { apiVersion: 'kubeflow.org/v1', kind: 'PyTorchJob', name: 'pt' },
      }),
      want: {
        source: 'kubeflow',
        owner: { group: 'kubeflow.org', version: 'v1', plural: 'pytorchjobs', name: 'pt' },
      },
    },
    {
      name: 'a RayCluster pod',
      pod: pod('rc-head', { labels: { 'ray.io/cluster': 'rc', 'ray.io/node-type': 'head' } }),
      want: { source: 'ray', key: 'ml/ray/rc', owner: { plural: 'rayclusters' } },
    },
    {
      name: 'coscheduling PodGroup label',
      pod: pod('p', { labels: { 'scheduling.x-k8s.io/pod-group': 'pg' } }),
      want: { source: 'coscheduling', owner: { group: 'scheduling.x-k8s.io', name: 'pg' } },
    },
    {
      name: 'Volcano group annotation',
      pod: pod('p', { annotations: { 'scheduling.k8s.io/group-name': 'vg' } }),
      want: {
        source: 'volcano',
        label: 'scheduling.k8s.io/group-name',
        owner: { group: 'scheduling.volcano.sh' },
      },
    },
    {
      name: 'Volcano annotation in its own group',
      pod: pod('p', { annotations: { 'scheduling.volcano.sh/group-name': 'vg2' } }),
      want: { source: 'volcano', name: 'vg2' },
    },
    {
      name: 'KAI pod-group-name annotation',
      pod: pod('p', { annotations: { 'pod-group-name': 'kg' } }),
      want: { source: 'kai', owner: { group: 'scheduling.run.ai', name: 'kg' } },
    },
    {
      name: 'an Indexed Job pod',
      pod: pod('j-0', {
        annotations: { 'batch.kubernetes.io/job-completion-index': '0' },
        owner: { name: 'j' },
      }),
      want: {
        source: 'indexed-job',
        key: 'ml/indexed-job/j',
        owner: { group: 'batch', plural: 'jobs', name: 'j' },
      },
    },
  ];
  for (const c of cases) {
    it(c.name, () => expect(gangKeyOf(c.pod)).toMatchObject(c.want as object));
  }

  it('a plain pod, or a non-indexed Job pod, is no gang', () => {
    expect(gangKeyOf(pod('x'))).toBeUndefined();
    expect(gangKeyOf(pod('x', { owner: { name: 'j' } }))).toBeUndefined();
  });

  it.each(['0', '-2', 'four', '1.5', ''])('gang-size %j is refused, naming the label', (v) => {
    expect(
      gangKeyOf(pod('x', { labels: { 'spillway.io/gang': 'g', 'spillway.io/gang-size': v } })),
    ).toEqual({
      error: {
        label: 'spillway.io/gang-size',
        message: expect.stringContaining('positive integer') as string,
      },
    });
  });
});

describe('gangSize', () => {
  const key = (p: V1Pod) => {
    const k = gangKeyOf(p);
    if (!k || 'error' in k) throw new Error('no key');
    return k;
  };
  it('JobSet: replicas × parallelism over its replicated jobs', () => {
    const js = {
      spec: {
        replicatedJobs: [
          { name: 'driver', replicas: 1, template: { spec: { parallelism: 1 } } },
          { name: 'workers', replicas: 2, template: { spec: { parallelism: 4 } } },
        ],
      },
    };
    expect(gangSize(key(jobsetPod), js)).toEqual({
      size: 9,
      from: 'JobSet train replicas × parallelism',
    });
  });
  it('PodGroup: minMember; a size label that disagrees is a problem naming it', () => {
    const p = pod('p', { labels: { 'scheduling.x-k8s.io/pod-group': 'pg' } });
    expect(gangSize(key(p), { spec: { minMember: 3 } })).toMatchObject({ size: 3 });
    const q = pod('q', {
      labels: { 'scheduling.x-k8s.io/pod-group': 'pg', 'spillway.io/gang-size': '4' },
    });
    expect(gangSize(key(q), { spec: { minMember: 3 } })).toEqual({
      error: {
        label: 'spillway.io/gang-size',
        message: 'spillway.io/gang-size is 4 but PodGroup pg minMember is 3',
      },
    });
  });
  it('Kubeflow job: the replicas of every replica spec', () => {
    const p = pod('pt-0', {
      labels: { 'training.kubeflow.org/job-name': 'pt' },
      owner: { apiVersion: 'kubeflow.org/v1', kind: 'PyTorchJob', name: 'pt' },
    });
    const job = {
      spec: { pytorchReplicaSpecs: { Master: { replicas: 1 }, Worker: { replicas: 3 } } },
    };
    expect(gangSize(key(p), job)).toMatchObject({ size: 4 });
  });
  it('RayCluster: the head and every worker', () => {
    const p = pod('rc-head', { labels: { 'ray.io/cluster': 'rc' } });
    const rc = { spec: { workerGroupSpecs: [{ replicas: 2 }, { replicas: 1, numOfHosts: 2 }] } };
    expect(gangSize(key(p), rc)).toMatchObject({ size: 5 });
  });
  it('Indexed Job: parallelism > 1 makes a gang; parallelism 1 does not', () => {
    const p = pod('j-0', {
      annotations: { 'batch.kubernetes.io/job-completion-index': '0' },
      owner: { name: 'j' },
    });
    expect(gangSize(key(p), { spec: { completionMode: 'Indexed', parallelism: 4 } })).toMatchObject(
      { size: 4 },
    );
    expect(gangSize(key(p), { spec: { completionMode: 'Indexed', parallelism: 1 } })).toEqual({
      notGang: true,
    });
  });
  it('an owner that cannot be read: the size label, else a problem saying what to set', () => {
    const p = pod('p', { labels: { 'scheduling.x-k8s.io/pod-group': 'pg' } });
    expect(gangSize(key(p), undefined, 'forbidden')).toEqual({
      error: {
        label: 'scheduling.x-k8s.io/pod-group',
        message:
          'cannot read PodGroup pg to learn the size of gang pg (forbidden); set spillway.io/gang-size on its pods',
      },
    });
    const q = pod('q', {
      labels: { 'scheduling.x-k8s.io/pod-group': 'pg', 'spillway.io/gang-size': '2' },
    });
    expect(gangSize(key(q), undefined)).toEqual({ size: 2, from: 'spillway.io/gang-size' });
  });
  it('explicit gang without a size is a problem naming spillway.io/gang-size', () => {
    const p = pod('p', { labels: { 'spillway.io/gang': 'g' } });
    expect(gangSize(key(p), undefined)).toMatchObject({
      error: { label: 'spillway.io/gang-size' },
    });
  });
});

describe('gangVerdict', () => {
  const m = (name: string, state: MemberState, sizeLabel?: number): GangMember => ({
    pod: pod(name),
    state,
    sizeLabel,
  });
  const ready: MemberState = { kind: 'ready' };
  const cases: { name: string; size: number; members: GangMember[]; want: object }[] = [
    {
      name: 'every member there and offloadable: place them all',
      size: 3,
      members: [m('a', ready), m('b', ready), m('c', ready)],
      want: { kind: 'place', donors: [] },
    },
    {
      name: 'fewer members than the size: wait, saying for how many',
      size: 8,
      members: [m('a', ready), m('b', ready), m('c', ready), m('d', ready), m('e', ready)],
      want: { kind: 'wait', message: 'waiting for 3 of 8 pods of gang g (5 there)' },
    },
    {
      name: 'a member the scheduler has not given up on: wait',
      size: 2,
      members: [m('a', ready), m('b', { kind: 'not-yet', why: 'grace period', retryMs: 4000 })],
      want: { kind: 'wait', retryMs: 4000 },
    },
    {
      name: 'members on a donor pin the rest there',
      size: 3,
      members: [m('a', { kind: 'on-donor', donor: 'd1' }), m('b', ready), m('c', ready)],
      want: { kind: 'place', donors: ['d1'] },
    },
    {
      name: 'a GPU member running at home keeps the gang home',
      size: 2,
      members: [m('a', { kind: 'on-origin', node: 'gpu-1', asksGpu: true }), m('b', ready)],
      want: { kind: 'keep-home', message: expect.stringContaining('never split') as string },
    },
    {
      name: 'a 0-GPU member running at home does not',
      size: 2,
      members: [m('head', { kind: 'on-origin', node: 'cpu-1', asksGpu: false }), m('w', ready)],
      want: { kind: 'place' },
    },
    {
      name: 'a member no donor would run keeps the gang home, naming it',
      size: 2,
      members: [m('a', ready), m('b', { kind: 'refused', why: 'hostPath volume' })],
      want: {
        kind: 'keep-home',
        message: expect.stringContaining('pod b: hostPath volume') as string,
      },
    },
    {
      name: 'sizes disagreeing across pods',
      size: 2,
      members: [m('a', ready, 2), m('b', ready, 3)],
      want: { kind: 'keep-home', label: 'spillway.io/gang-size' },
    },
    {
      name: 'succeeded members are not waited for; a replacement goes where the rest run',
      size: 4,
      members: [
        m('a', { kind: 'succeeded' }),
        m('b', { kind: 'succeeded' }),
        m('c', { kind: 'on-donor', donor: 'd1' }),
        m('d', ready),
      ],
      want: { kind: 'place', donors: ['d1'] },
    },
    {
      name: 'everything bound or finished: done',
      size: 2,
      members: [m('a', { kind: 'succeeded' }), m('b', { kind: 'on-donor', donor: 'd1' })],
      want: { kind: 'done' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => expect(gangVerdict('g', c.size, c.members)).toMatchObject(c.want));
  }
  it('places exactly the unbound members', () => {
    const v = gangVerdict('g', 3, [
      m('a', { kind: 'on-donor', donor: 'd' }),
      m('b', ready),
      m('c', ready),
    ]);
    expect(v.kind === 'place' && v.members.map((p) => p.metadata?.name)).toEqual(['b', 'c']);
  });
});
