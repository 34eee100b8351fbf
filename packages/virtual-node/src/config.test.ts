import { describe, expect, it } from 'vitest';
import { loadVirtualNodeConfig, virtualNodeConfig } from './config.js';

describe('virtual-node config', () => {
  it('has the documented defaults', () => {
    const c = virtualNodeConfig({ brokerAddress: 'broker:7443' });
    expect(c).toMatchObject({
      offloadScope: 'labelled',
      gracePeriod: 10_000,
      donorLostTimeout: 40_000,
      kubeletPort: 10250,
      namespace: 'spillway-system',
      identitySecret: 'spillway-identity',
    });
    expect(c.gpuResources).toContain('nvidia.com/gpu');
  });
  it('takes flags over environment, and a zero grace period', () => {
    const { config } = loadVirtualNodeConfig({
      argv: ['--grace-period', '0s', '--offload-scope', 'all'],
      env: { SPILLWAY_BROKER_ADDRESS: 'b:1', SPILLWAY_GRACE_PERIOD: '30s', KUBECONFIG: '/k' },
    });
    expect(config).toMatchObject({
      brokerAddress: 'b:1',
      gracePeriod: 0,
      offloadScope: 'all',
      kubeconfig: '/k',
    });
  });
  it('names what is wrong', () => {
    expect(() => loadVirtualNodeConfig({ argv: ['--offload-scope', 'some'], env: {} })).toThrow(
      /--broker-address.*required|offload-scope/,
    );
  });
});
