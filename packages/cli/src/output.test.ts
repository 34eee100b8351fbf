import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { ClusterDetail, ClusterView, PlacementResult } from '@spillway/api/rest';
import {
  CLUSTER_COLUMNS,
  age,
  describeCluster,
  render,
  renderSimulation,
  renderTable,
} from './output.js';

const policy = {
  maxGpus: 0,
  maxGpusPerOrigin: 0,
  nodeSelector: {},
  cordoned: false,
  costPerGpuHour: 1,
  podSecurity: 'baseline' as const,
};

function cluster(over: Partial<ClusterView> = {}): ClusterView {
  return {
    id: 'gpu-east',
    role: 'donor',
    state: 'Ready',
    createdAt: new Date(Date.now() - 300_000).toISOString(),
    connections: {},
    policy,
    gpus: { 'nvidia.com/gpu': { allocatable: 16, free: 12 } },
    nodeCount: 2,
    ...over,
  };
}

describe('renderTable', () => {
  it('aligns columns three spaces apart and hides wide columns unless asked', () => {
    const rows = [cluster(), cluster({ id: 'lab', role: 'origin', gpus: {}, nodeCount: 1 })];
    const text = renderTable(rows, CLUSTER_COLUMNS, false);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('NAME       ROLE     STATE   GPUS(FREE/ALL)   NODES   AGE');
    expect(lines[1]).toBe(
      'gpu-east   donor    Ready   12/16            2       300s'.replace('300s', '5m'),
    );
    expect(lines[2]).toMatch(/^lab {8}origin {3}Ready {3}0\/0 {14}1 {7}5m$/);
    const wide = renderTable(rows, CLUSTER_COLUMNS, true);
    expect(wide.split('\n')[0]).toContain('VIRTUAL-NODE');
    expect(wide).toMatch(/gpu-east .* - +-/);
  });

  it('shows a cordoned cluster the way kubectl shows a cordoned node', () => {
    const text = renderTable(
      [cluster({ policy: { ...policy, cordoned: true } })],
      CLUSTER_COLUMNS,
      false,
    );
    expect(text).toContain('Ready,Cordoned');
  });

  it('prints <none> for empty cells', () => {
    expect(renderTable([{ a: '' }], [{ header: 'A', value: (r) => r.a }], false)).toBe(
      'A\n<none>\n',
    );
  });
});

describe('render', () => {
  it('prints json and yaml of the same data', () => {
    const data = { clusters: [cluster()] };
    const fromJson = JSON.parse(render('json', data, data.clusters, CLUSTER_COLUMNS)) as unknown;
    const fromYaml = parse(render('yaml', data, data.clusters, CLUSTER_COLUMNS)) as unknown;
    expect(fromJson).toEqual(data);
    expect(fromYaml).toEqual(data);
  });

  it('says so when there is nothing', () => {
    expect(render('table', {}, [], CLUSTER_COLUMNS, 'No clusters.')).toBe('No clusters.\n');
    expect(render('json', { clusters: [] }, [], CLUSTER_COLUMNS)).toBe('{\n  "clusters": []\n}\n');
  });
});

describe('age', () => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  it.each([
    ['2026-01-01T11:59:15Z', '45s'],
    ['2026-01-01T11:48:00Z', '12m'],
    ['2026-01-01T09:00:00Z', '3h'],
    ['2025-12-27T12:00:00Z', '5d'],
    ['not a date', ''],
  ])('%s -> %s', (since, want) => {
    expect(age(since, now)).toBe(want);
  });
});

describe('renderSimulation', () => {
  const placed: PlacementResult = {
    placed: true,
    simulated: true,
    reservation: {
      id: '',
      origin: 'lab',
      donor: 'gpu-east',
      node: 'n1',
      resource: 'nvidia.com/gpu',
      gpus: 2,
      pod: { originCluster: 'lab', namespace: 'default', name: 'simulated', uid: 'u' },
      state: 'open',
      createdAt: '',
      expiresAt: '',
    },
    verdicts: [
      { donor: 'gpu-east', node: 'n1', reason: '', score: 0.75 },
      { donor: 'gpu-east', node: 'n2', reason: '', score: 0.5 },
      {
        donor: 'gpu-west',
        node: 'w1',
        reason: 'node has 1 free nvidia.com/gpu, pod needs 2',
        score: 0,
      },
    ],
  };

  it('names the choice, then every candidate with its verdict', () => {
    const text = renderSimulation(placed, 'table');
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('would place on gpu-east, node n1 (2 nvidia.com/gpu)');
    expect(lines[2]).toMatch(/^DONOR\s+NODE\s+SCORE\s+VERDICT$/);
    expect(lines[3]).toMatch(/^gpu-east\s+n1\s+0\.75\s+chosen$/);
    expect(lines[4]).toMatch(/^gpu-east\s+n2\s+0\.50\s+fits, lower score$/);
    expect(lines[5]).toMatch(/^gpu-west\s+w1\s+-\s+node has 1 free/);
  });

  it('explains a refusal', () => {
    const text = renderSimulation(
      { placed: false, code: 'NO_PEERING', reason: 'lab is peered with no donor', verdicts: [] },
      'table',
    );
    expect(text).toBe('no placement: lab is peered with no donor (NO_PEERING)\n');
  });
});

describe('describeCluster', () => {
  it('shows state, policy, nodes and peerings', () => {
    const detail: ClusterDetail = {
      ...cluster({
        connections: {
          agent: {
            brokerId: 'b1',
            connectedAt: '2026-01-01T00:00:00Z',
            lastSeenAt: '2026-01-01T00:00:01Z',
          },
        },
      }),
      nodes: [
        {
          name: 'n1',
          gpus: { 'nvidia.com/gpu': { allocatable: 8, free: 6 } },
          gpuProduct: 'NVIDIA-L4',
          gpuMemoryMiB: 23034,
          labels: {},
          taints: [],
          ready: true,
          cordoned: false,
          cpuAllocatableMillis: 1000,
          cpuFreeMillis: 1000,
          memoryAllocatableBytes: 1,
          memoryFreeBytes: 1,
          offloadedPodUids: [],
          eligible: true,
        },
      ],
      peerings: [{ origin: 'lab', donor: 'gpu-east', maxGpus: 4, gpuProducts: [], createdAt: '' }],
    };
    const text = describeCluster(detail);
    expect(text).toMatch(/^Name:\s+gpu-east$/m);
    expect(text).toMatch(/^ {2}agent:\s+broker b1, since 2026-01-01T00:00:00Z$/m);
    expect(text).toMatch(/^ {2}Max GPUs:\s+unlimited$/m);
    expect(text).toMatch(/^ {2}n1\s+NVIDIA-L4\s+6\/8\s+true\s+yes$/m);
    expect(text).toMatch(/^ {2}lab -> gpu-east, max 4 GPUs$/m);
  });
});
