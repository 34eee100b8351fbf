import { HttpMethod, KubeConfig, RequestContext, type V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { poolConnections, stripManagedFields } from './kube.js';

function kubeConfig(cert: string): KubeConfig {
  const kc = new KubeConfig();
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: b64('ca') }],
    users: [{ name: 'u', certData: b64(cert), keyData: b64('key') }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

async function dispatcherOf(kc: KubeConfig): Promise<unknown> {
  const ctx = new RequestContext('https://127.0.0.1:6443/api/v1/pods', HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  return ctx.getDispatcher();
}

describe('poolConnections', () => {
  it('gives every request of a KubeConfig the same connection pool', async () => {
    const plain = kubeConfig('cert');
    // What it fixes: without it, each request gets a pool (and a TLS connection) of its own.
    expect(await dispatcherOf(plain)).not.toBe(await dispatcherOf(plain));
    const kc = poolConnections(kubeConfig('cert'));
    const a = await dispatcherOf(kc);
    expect(a).toBeDefined();
    expect(await dispatcherOf(kc)).toBe(a);
  });

  it('opens a new pool when the client certificate changes', async () => {
    const kc = poolConnections(kubeConfig('cert-1'));
    const a = await dispatcherOf(kc);
    kc.users[0] = { ...kc.users[0]!, certData: Buffer.from('cert-2').toString('base64') };
    const b = await dispatcherOf(kc);
    expect(b).not.toBe(a);
    expect(await dispatcherOf(kc)).toBe(b);
  });
});

describe('stripManagedFields', () => {
  it('drops managedFields and keeps the rest', () => {
    const pod: V1Pod = {
      metadata: {
        name: 'p',
        namespace: 'n',
        resourceVersion: '5',
        managedFields: [{ manager: 'kubectl', operation: 'Update' }],
      },
      spec: { containers: [{ name: 'c' }] },
    };
    expect(stripManagedFields(pod)).toEqual({
      metadata: { name: 'p', namespace: 'n', resourceVersion: '5' },
      spec: { containers: [{ name: 'c' }] },
    });
  });
});
