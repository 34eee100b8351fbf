import { describe, expect, it } from 'vitest';
import { podRequests, isGpuResource } from './gpu.js';
import { bytesOf, cpuMillisOf, integerQuantity, parseQuantity } from './quantity.js';

describe('quantities', () => {
  it.each([
    ['500m', 0.5],
    ['2', 2],
    ['1Ki', 1024],
    ['1Gi', 2 ** 30],
    ['1.5G', 1.5e9],
    ['1e3', 1000],
    ['100k', 100_000],
    ['.5', 0.5],
  ])('%s = %d', (q, v) => expect(parseQuantity(q, 'q')).toBeCloseTo(v, 9));

  it.each(['', 'abc', '1Gb', '--1', '1 Gi', '1KiB'])('refuses %j naming the field', (q) => {
    expect(() => parseQuantity(q, 'spec.containers[0].resources.memory')).toThrow(
      /spec\.containers\[0\]/,
    );
  });

  it('rounds CPU and memory up, and requires whole GPUs', () => {
    expect(cpuMillisOf('100m', 'cpu')).toBe(100);
    expect(cpuMillisOf('0.0001', 'cpu')).toBe(1);
    expect(cpuMillisOf('1.5', 'cpu')).toBe(1500);
    expect(bytesOf('1Mi', 'memory')).toBe(1_048_576);
    expect(integerQuantity('4', 'gpu')).toBe(4);
    expect(() => integerQuantity('0.5', 'gpu')).toThrow(/whole number/);
  });
});

describe('podRequests', () => {
  it('sums containers, takes the init max, defaults requests to limits', () => {
    const r = podRequests({
      spec: {
        containers: [
          {
            resources: {
              requests: { cpu: '500m', memory: '1Gi' },
              limits: { 'nvidia.com/gpu': '2' },
            },
          },
          { resources: { requests: { cpu: '250m', 'nvidia.com/gpu': 1 } } },
        ],
        initContainers: [{ resources: { requests: { cpu: '2', 'nvidia.com/gpu': '1' } } }],
      },
    });
    expect(r).toEqual({ cpuMillis: 2000, memoryBytes: 2 ** 30, gpus: { 'nvidia.com/gpu': 3 } });
  });

  it('counts sidecar init containers with the main containers', () => {
    const r = podRequests({
      spec: {
        containers: [{ resources: { requests: { cpu: '1' } } }],
        initContainers: [{ restartPolicy: 'Always', resources: { requests: { cpu: '500m' } } }],
      },
    });
    expect(r.cpuMillis).toBe(1500);
  });

  it('matches GPU resource patterns', () => {
    expect(isGpuResource('nvidia.com/mig-1g.10gb')).toBe(true);
    expect(isGpuResource('amd.com/gpu')).toBe(true);
    expect(isGpuResource('example.com/fpga')).toBe(false);
    const r = podRequests({
      spec: {
        containers: [
          { resources: { limits: { 'nvidia.com/mig-1g.10gb': '2', 'example.com/fpga': '1' } } },
        ],
      },
    });
    expect(r.gpus).toEqual({ 'nvidia.com/mig-1g.10gb': 2 });
  });

  it('names the container whose quantity is wrong', () => {
    expect(() =>
      podRequests({
        spec: { containers: [{}, { resources: { requests: { 'nvidia.com/gpu': '1.5' } } }] },
      }),
    ).toThrow(/spec\.containers\[1\]\.resources\["nvidia\.com\/gpu"\]/);
  });
});
