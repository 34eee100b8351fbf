import type { Peering__Output, PeeringState__Output } from '@spillway/api';
import { describe, expect, it } from 'vitest';
import { DonorRegistry, type DonorChange } from './donors.js';

const peering = (donor: string, state = 'Ready', free = 4): Peering__Output => ({
  origin_cluster: 'origin',
  donor_cluster: donor,
  max_gpus: 0,
  gpu_products: [],
  donor_state: state,
  lendable: { 'nvidia.com/gpu': String(free) },
  in_use: {},
  donor_gpu_products: [],
  tenant_namespace: 'spillway-origin',
  pod_security: 'baseline',
  deleting_since: '',
});
const state = (...as_origin: Peering__Output[]): PeeringState__Output => ({
  as_origin,
  as_donor: [],
});

function registry(timeoutMs = 10_000): {
  reg: DonorRegistry;
  clock: { t: number };
  changes: DonorChange[][];
} {
  const clock = { t: 1_000_000 };
  const reg = new DonorRegistry(timeoutMs, () => clock.t);
  const changes: DonorChange[][] = [];
  reg.on('changed', (c) => changes.push(c));
  return { reg, clock, changes };
}

describe('DonorRegistry', () => {
  it('knows nothing until the first PeeringState, then reports only what changed', () => {
    const { reg, changes } = registry();
    expect(reg.hasState).toBe(false);
    expect(reg.knownDown('donor-a')).toBe(false);
    reg.setBrokerConnected(true);
    reg.update(state(peering('donor-a'), peering('donor-b')));
    expect(reg.hasState).toBe(true);
    expect(changes.at(-1)?.map((c) => c.donor)).toEqual(['donor-a', 'donor-b']);
    reg.update(state(peering('donor-a'), peering('donor-b', 'Ready', 3)));
    expect(
      changes.at(-1)?.map((c) => [c.donor, c.before?.lendable, c.after?.lendable, c.reachability]),
    ).toEqual([['donor-b', { 'nvidia.com/gpu': 4 }, { 'nvidia.com/gpu': 3 }, false]]);
    reg.update(state(peering('donor-a'), peering('donor-b', 'NotReady', 3)));
    expect(changes.at(-1)?.map((c) => [c.donor, c.reachability])).toEqual([['donor-b', true]]);
    reg.update(state(peering('donor-a'), peering('donor-b', 'Ready', 3)));
    const n = changes.length;
    reg.update(state(peering('donor-a'), peering('donor-b', 'Ready', 3)));
    expect(changes).toHaveLength(n);
    // An unpeered donor is known to be gone.
    reg.update(state(peering('donor-a')));
    expect(reg.get('donor-b')).toBeUndefined();
    expect(reg.knownDown('donor-b')).toBe(true);
  });

  it('turns a lost donor NotReady only after the timeout, and Ready again when it returns', () => {
    const { reg, clock } = registry(10_000);
    reg.setBrokerConnected(true);
    reg.update(state(peering('donor-a')));
    expect(reg.reachable('donor-a')).toBe(true);
    reg.update(state(peering('donor-a', 'NotReady')));
    expect(reg.reachable('donor-a')).toBe(false);
    expect(reg.knownDown('donor-a')).toBe(true);
    clock.t += 9_999;
    expect(reg.health('donor-a')).toMatchObject({ ready: true, unreachable: true });
    clock.t += 1;
    expect(reg.health('donor-a')).toMatchObject({ ready: false, reason: 'DonorNotReady' });
    reg.update(state(peering('donor-a')));
    expect(reg.health('donor-a')).toMatchObject({ ready: true, reason: 'DonorReady' });
  });

  it('counts a lost broker against every donor, without claiming they are down', () => {
    const { reg, clock } = registry(5_000);
    reg.setBrokerConnected(true);
    reg.update(state(peering('donor-a'), peering('donor-b')));
    reg.setBrokerConnected(false);
    expect(reg.knownDown('donor-a')).toBe(false);
    expect(reg.reachable('donor-a')).toBe(false);
    clock.t += 5_000;
    expect(reg.health('donor-b')).toMatchObject({ ready: false, reason: 'BrokerUnreachable' });
    reg.setBrokerConnected(true);
    expect(reg.health('donor-b')).toMatchObject({ ready: true });
  });
});
