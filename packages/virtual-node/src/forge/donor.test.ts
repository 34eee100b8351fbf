import type { Peering__Output } from '@spillway/api';
import { describe, expect, it } from 'vitest';
import { donorHealth, donorViewOf, type DonorView } from './donor.js';

const peering = (over: Partial<Peering__Output> = {}): Peering__Output => ({
  origin_cluster: 'origin',
  donor_cluster: 'donor-a',
  max_gpus: 0,
  gpu_products: [],
  donor_state: 'Ready',
  lendable: { 'nvidia.com/gpu': '6' },
  in_use: { 'nvidia.com/gpu': '2' },
  donor_gpu_products: ['NVIDIA-L4', 'NVIDIA-A100-SXM4-80GB'],
  tenant_namespace: 'spillway-origin',
  pod_security: 'baseline',
  deleting_since: '',
  ...over,
});

describe('donorViewOf', () => {
  it('reads counts and sorts the products', () => {
    expect(donorViewOf(peering())).toEqual({
      donor: 'donor-a',
      state: 'Ready',
      lendable: { 'nvidia.com/gpu': 6 },
      inUse: { 'nvidia.com/gpu': 2 },
      products: ['NVIDIA-A100-SXM4-80GB', 'NVIDIA-L4'],
      maxGpus: 0,
      deleting: false,
    });
  });
  it('narrows products to what the peering allows and sees a peering being removed', () => {
    const v = donorViewOf(
      peering({
        gpu_products: ['NVIDIA-L4'],
        deleting_since: '2026-05-01T10:00:00Z',
        donor_state: '',
      }),
    );
    expect(v.products).toEqual(['NVIDIA-L4']);
    expect(v.deleting).toBe(true);
    expect(v.state).toBe('Pending');
  });
});

describe('donorHealth', () => {
  const view = (state: string): DonorView => ({ ...donorViewOf(peering()), state });
  const t0 = Date.parse('2026-05-01T10:00:00Z');
  it.each([
    {
      name: 'connected',
      state: 'Ready',
      broker: true,
      since: undefined,
      at: t0,
      ready: true,
      unreachable: false,
      reason: 'DonorReady',
    },
    {
      name: 'cordoned: still Ready',
      state: 'Cordoned',
      broker: true,
      since: undefined,
      at: t0,
      ready: true,
      unreachable: false,
      reason: 'DonorCordoned',
    },
    {
      name: 'lost, within the timeout',
      state: 'NotReady',
      broker: true,
      since: t0,
      at: t0 + 39_000,
      ready: true,
      unreachable: true,
      reason: 'DonorUnreachable',
    },
    {
      name: 'lost past the timeout',
      state: 'NotReady',
      broker: true,
      since: t0,
      at: t0 + 40_000,
      ready: false,
      unreachable: true,
      reason: 'DonorNotReady',
    },
    {
      name: 'broker unreachable past the timeout',
      state: 'Ready',
      broker: false,
      since: t0,
      at: t0 + 41_000,
      ready: false,
      unreachable: true,
      reason: 'BrokerUnreachable',
    },
  ])('$name', ({ state, broker, since, at, ready, unreachable, reason }) => {
    const h = donorHealth(
      view(state),
      { brokerConnected: broker, lostSinceMs: since, lostTimeoutMs: 40_000 },
      at,
    );
    expect(h).toMatchObject({ ready, unreachable, reason });
    if (unreachable && ready) expect(h.notReadyAt).toBe(t0 + 40_000);
  });
});
