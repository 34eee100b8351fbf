import { describe, expect, it } from 'vitest';
import { helmCommand, joinManifests } from './manifests.js';

const input = {
  clusterId: 'gpu-east',
  namespace: 'spillway-system',
  token: 'abcdef0123456789.secret',
  caPem: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n',
  broker: '10.0.0.5:7443',
  joinTokenSecret: 'spillway-join-token',
};

const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

describe('joinManifests', () => {
  it('gives a donor the agent only, with the token Secret the agent reads', () => {
    const m = joinManifests({ ...input, role: 'donor' });
    expect(m.namespace.metadata?.name).toBe('spillway-system');
    expect(m.serviceAccounts.map((s) => s.metadata?.name)).toEqual(['spillway-agent']);
    expect(m.clusterRoleBindings[0]?.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'spillway-agent', namespace: 'spillway-system' },
    ]);
    expect(m.secret.metadata?.name).toBe('spillway-join-token');
    expect(unb64(m.secret.data?.token)).toBe(input.token);
    expect(unb64(m.secret.data?.['ca.crt'])).toBe(input.caPem);
    expect(unb64(m.secret.data?.broker)).toBe(input.broker);
  });

  it.each(['origin', 'both'] as const)('adds the virtual-node shim for %s', (role) => {
    const m = joinManifests({ ...input, role });
    expect(m.serviceAccounts.map((s) => s.metadata?.name)).toEqual([
      'spillway-agent',
      'spillway-virtual-node',
    ]);
    const shim = m.clusterRoles.find((r) => r.metadata?.name === 'spillway-virtual-node');
    const can = (resource: string, verb: string): boolean =>
      shim?.rules?.some((r) => r.resources?.includes(resource) && r.verbs.includes(verb)) ?? false;
    expect(can('pods/binding', 'create')).toBe(true);
    expect(can('nodes/status', 'patch')).toBe(true);
    expect(can('leases', 'update')).toBe(true);
    // The shim never creates pods in the origin: only the agent does, on donors.
    expect(can('pods', 'create')).toBe(false);
  });
});

describe('helmCommand', () => {
  it('names the cluster, role, broker and token Secret', () => {
    const cmd = helmCommand({ ...input, role: 'origin', context: 'lab' });
    expect(cmd).toMatch(/^helm upgrade --install spillway-gpu-east charts\/spillway-agent /);
    expect(cmd).toContain('--set clusterId=gpu-east');
    expect(cmd).toContain('--set rbac.create=false');
    expect(cmd).toContain('--kube-context lab');
    expect(cmd).toContain('--set role=origin');
    expect(cmd).toContain('--set broker.address=10.0.0.5:7443');
    expect(cmd).not.toContain(input.token);
  });
});
