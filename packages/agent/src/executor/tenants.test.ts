import { describe, expect, it } from 'vitest';
import { tenantNamespaceObject, tenantsFromPeerings } from './tenants.js';

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
