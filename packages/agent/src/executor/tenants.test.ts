import type { KubeConfig } from '@kubernetes/client-node';
import type { Peering__Output } from '@spillway/api';
import type { Logger } from '@spillway/common';
import { describe, expect, it } from 'vitest';
import { TenantManager, tenantNamespaceObject, tenantsFromPeerings } from './tenants.js';

describe('tenant namespaces', () => {
  it('labels the namespace with Pod Security enforcement and quotas GPUs to the peering limit', () => {
    const { ns, quota } = tenantNamespaceObject(
      {
        origin: 'origin',
        namespace: 'spillway-origin',
        maxGpus: 8,
        podSecurity: 'restricted',
        draining: false,
      },
      ['nvidia.com/gpu', 'nvidia.com/mig-*', 'amd.com/gpu'],
    );
    expect(ns.metadata?.labels).toMatchObject({
      'spillway.io/tenant': 'true',
      'spillway.io/origin-cluster': 'origin',
      'pod-security.kubernetes.io/enforce': 'restricted',
    });
    expect(quota?.spec?.hard).toEqual({
      'requests.nvidia.com/gpu': '8',
      'requests.amd.com/gpu': '8',
    });
  });

  it('has no quota without a limit', () => {
    expect(
      tenantNamespaceObject(
        {
          origin: 'o',
          namespace: 'spillway-o',
          maxGpus: 0,
          podSecurity: 'baseline',
          draining: false,
        },
        ['nvidia.com/gpu'],
      ).quota,
    ).toBeUndefined();
  });

  it('reads tenants from the peerings where this cluster is the donor', () => {
    const t = tenantsFromPeerings([
      {
        origin_cluster: 'a',
        donor_cluster: 'me',
        max_gpus: 4,
        gpu_products: [],
        donor_state: 'Ready',
        lendable: {},
        in_use: {},
        donor_gpu_products: [],
        tenant_namespace: '',
        pod_security: 'restricted',
        deleting_since: '2026-01-01T00:00:00Z',
      },
    ]);
    expect(t).toEqual([
      {
        origin: 'a',
        namespace: 'spillway-a',
        maxGpus: 4,
        podSecurity: 'restricted',
        draining: true,
      },
    ]);
  });
});

describe('TenantManager passes', () => {
  type Call = string;
  const peering = (origin: string, maxGpus = 0): Peering__Output =>
    ({
      origin_cluster: origin,
      tenant_namespace: '',
      max_gpus: maxGpus,
      pod_security: 'baseline',
      deleting_since: '',
    }) as unknown as Peering__Output;

  function fake(): { kc: KubeConfig; calls: Call[]; release: () => void; hold: () => void } {
    const calls: Call[] = [];
    let gate: Promise<void> | undefined;
    let open: (() => void) | undefined;
    const step = async (name: string): Promise<unknown> => {
      calls.push(name);
      if (gate) await gate;
      return {};
    };
    const api = {
      createNamespace: ({ body }: { body: { metadata: { name: string } } }) =>
        step(`create ${body.metadata.name}`),
      patchNamespace: () => step('patch'),
      deleteNamespacedResourceQuota: () => step('quota'),
      createNamespacedResourceQuota: () => step('quota'),
      listNamespace: async () => {
        await step('list');
        return { items: [] };
      },
      deleteNamespace: () => step('delete'),
    };
    const kc = { makeApiClient: () => api } as unknown as KubeConfig;
    return {
      kc,
      calls,
      hold: () => {
        gate = new Promise((r) => (open = r));
      },
      release: () => {
        gate = undefined;
        open?.();
      },
    };
  }
  const log = { info: () => undefined } as unknown as Logger;

  it('writes a tenant once while its peering does not change, and again after a while', async () => {
    let now = 0;
    const f = fake();
    const m = new TenantManager(f.kc, ['nvidia.com/gpu'], log, undefined, () => now);
    await m.sync([peering('o1')]);
    const first = f.calls.length;
    expect(f.calls).toContain('create spillway-o1');
    for (let i = 0; i < 5; i++) await m.sync([peering('o1')]);
    expect(f.calls.length).toBe(first);
    await m.sync([peering('o1', 4)]);
    expect(f.calls.filter((c) => c === 'create spillway-o1')).toHaveLength(2);
    now += 61_000;
    await m.sync([peering('o1', 4)]);
    expect(f.calls.filter((c) => c === 'create spillway-o1')).toHaveLength(3);
  });

  it('coalesces pushes that arrive during a pass, and lets ready tenants go ahead', async () => {
    const f = fake();
    const m = new TenantManager(f.kc, ['nvidia.com/gpu'], log);
    await m.sync([peering('o1')]);
    expect(m.isReady('o1')).toBe(true);
    f.hold();
    const a = m.sync([peering('o1'), peering('o2')]);
    const b = m.sync([peering('o1'), peering('o2'), peering('o3')]);
    const c = m.sync([peering('o1'), peering('o2'), peering('o3')]);
    // o1's namespace is as wanted already: its commands do not wait for o2's and o3's.
    expect(m.isReady('o1')).toBe(true);
    expect(m.isReady('o3')).toBe(false);
    let o3Ready = false;
    const waiting = m.whenReady('o3').then(() => (o3Ready = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(o3Ready).toBe(false);
    f.release();
    await Promise.all([a, b, c, waiting]);
    expect(m.isReady('o3')).toBe(true);
    // One pass for the first push, one for the two that came during it.
    expect(f.calls.filter((x) => x === 'create spillway-o2')).toHaveLength(1);
    expect(f.calls.filter((x) => x === 'create spillway-o3')).toHaveLength(1);
  });

  it('sweeps namespaces of removed peerings, and an unknown origin never waits', async () => {
    const f = fake();
    const m = new TenantManager(f.kc, ['nvidia.com/gpu'], log);
    await m.sync([peering('o1'), peering('o2')]);
    const lists = f.calls.filter((c) => c === 'list').length;
    await m.sync([peering('o1')]);
    expect(f.calls.filter((c) => c === 'list').length).toBe(lists + 1);
    expect(m.isReady('o2')).toBe(true);
    await m.whenReady('nobody');
  });
});
