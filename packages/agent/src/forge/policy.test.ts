import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { isSpillwayError } from '@spillway/common';
import { assertPodAllowed } from './policy.js';

function base(): V1Pod {
  return {
    metadata: { name: 'p', namespace: 'ml' },
    spec: {
      containers: [
        {
          name: 'main',
          image: 'i',
          env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 'creds', key: 'k' } } }],
        },
      ],
      volumes: [
        {
          name: 'kube-api-access-x',
          projected: {
            sources: [
              { serviceAccountToken: { path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt' } },
            ],
          },
        },
      ],
    },
  };
}

const sent = { configMaps: [], secrets: ['creds'] };

function refusal(
  mutate: (p: V1Pod) => void,
  s: { configMaps: string[]; secrets: string[] } = sent,
): { code: string; field?: string; message: string } | undefined {
  const p = base();
  mutate(p);
  try {
    assertPodAllowed(p, s);
    return undefined;
  } catch (err) {
    if (!isSpillwayError(err)) throw err;
    return { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) };
  }
}

describe('assertPodAllowed', () => {
  it('allows an ordinary GPU pod, ignoring the injected token volume', () => {
    expect(refusal(() => undefined)).toBeUndefined();
  });

  it.each([
    ['hostNetwork', (p: V1Pod) => (p.spec!.hostNetwork = true), 'spec.hostNetwork'],
    ['hostPID', (p: V1Pod) => (p.spec!.hostPID = true), 'spec.hostPID'],
    ['hostIPC', (p: V1Pod) => (p.spec!.hostIPC = true), 'spec.hostIPC'],
    [
      'a privileged container',
      (p: V1Pod) => (p.spec!.containers[0]!.securityContext = { privileged: true }),
      'spec.containers[0].securityContext.privileged',
    ],
    [
      'a privileged init container',
      (p: V1Pod) =>
        (p.spec!.initContainers = [{ name: 'i', securityContext: { privileged: true } }]),
      'spec.initContainers[0].securityContext.privileged',
    ],
    [
      'SYS_ADMIN',
      (p: V1Pod) =>
        (p.spec!.containers[0]!.securityContext = { capabilities: { add: ['SYS_ADMIN'] } }),
      'spec.containers[0].securityContext.capabilities.add',
    ],
    [
      'CAP_NET_ADMIN',
      (p: V1Pod) =>
        (p.spec!.containers[0]!.securityContext = { capabilities: { add: ['CAP_NET_ADMIN'] } }),
      'spec.containers[0].securityContext.capabilities.add',
    ],
    [
      'hostPath',
      (p: V1Pod) => p.spec!.volumes!.push({ name: 'h', hostPath: { path: '/' } }),
      'spec.volumes[1].hostPath',
    ],
    [
      'a PVC',
      (p: V1Pod) => p.spec!.volumes!.push({ name: 'c', persistentVolumeClaim: { claimName: 'x' } }),
      'spec.volumes[1].persistentVolumeClaim',
    ],
    [
      'a hostPort',
      (p: V1Pod) => (p.spec!.containers[0]!.ports = [{ containerPort: 80, hostPort: 80 }]),
      'spec.containers[0].ports[0].hostPort',
    ],
    [
      'a donor system service account',
      (p: V1Pod) => (p.spec!.serviceAccountName = 'system:serviceaccount:kube-system:admin'),
      'spec.serviceAccountName',
    ],
    ['no containers', (p: V1Pod) => (p.spec!.containers = []), 'spec.containers'],
  ])('refuses %s, naming the field', (_what, mutate, field) => {
    const r = refusal(mutate);
    expect(r?.code).toBe('POD_REFUSED');
    expect(r?.field).toBe(field);
  });

  it('allows baseline capabilities', () => {
    expect(
      refusal(
        (p) =>
          (p.spec!.containers[0]!.securityContext = {
            capabilities: { add: ['NET_BIND_SERVICE', 'CHOWN'] },
          }),
      ),
    ).toBeUndefined();
  });

  it('refuses a Secret or ConfigMap the origin did not send', () => {
    expect(refusal(() => undefined, { configMaps: [], secrets: [] })?.message).toBe(
      'pod references Secret "creds", which the origin did not send',
    );
    const r = refusal((p) => p.spec!.volumes!.push({ name: 'v', configMap: { name: 'settings' } }));
    expect(r?.message).toContain('ConfigMap "settings"');
    expect(
      refusal((p) =>
        p.spec!.volumes!.push({ name: 'v', secret: { secretName: 'opt', optional: true } }),
      ),
    ).toBeUndefined();
  });
});
