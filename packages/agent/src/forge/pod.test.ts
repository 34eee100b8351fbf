import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  originOf,
  reflectConfigMap,
  reflectSecret,
  reflectedName,
  remotePodName,
  translatePod,
} from './pod.js';

const id = {
  originCluster: 'origin',
  namespace: 'ml',
  name: 'train-0',
  uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
};

function originPod(): V1Pod {
  return {
    metadata: {
      name: 'train-0',
      namespace: 'ml',
      uid: id.uid,
      resourceVersion: '42',
      labels: { app: 'train', 'spillway.io/origin-cluster': 'spoofed' },
      annotations: { note: 'x', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: 'train', uid: 'u' }],
    },
    spec: {
      nodeName: 'spillway-donor-a',
      schedulerName: 'custom',
      priorityClassName: 'high',
      serviceAccountName: 'trainer',
      restartPolicy: 'Never',
      nodeSelector: {
        'nvidia.com/gpu.product': 'NVIDIA-A100',
        'topology.kubernetes.io/zone': 'eu-1',
      },
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              {
                matchExpressions: [
                  { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] },
                  { key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] },
                ],
              },
            ],
          },
        },
        podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'x' }] },
      },
      tolerations: [
        { key: 'spillway.io/virtual-node', operator: 'Exists', effect: 'NoSchedule' },
        {
          key: 'node.kubernetes.io/not-ready',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
        { key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'NoSchedule' },
      ],
      containers: [
        {
          name: 'main',
          image: 'trainer:1',
          envFrom: [{ configMapRef: { name: 'settings' } }],
          env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } }],
          resources: { limits: { 'nvidia.com/gpu': '4' } },
          volumeMounts: [
            { name: 'data', mountPath: '/data' },
            {
              name: 'kube-api-access-abcde',
              mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
            },
          ],
        },
      ],
      volumes: [
        { name: 'data', configMap: { name: 'dataset' } },
        {
          name: 'kube-api-access-abcde',
          projected: {
            sources: [
              { serviceAccountToken: { path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt' } },
            ],
          },
        },
      ],
    },
    status: { phase: 'Pending' },
  };
}

describe('translatePod', () => {
  const gpuTolerations = [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }];
  const out = translatePod(originPod(), id, {
    tenantNamespace: 'spillway-origin',
    node: 'gpu-node-3',
    reservationId: 'r-1',
    gpuTolerations,
  });

  it('maps the namespace and names the pod uniquely per origin pod', () => {
    expect(out.metadata?.namespace).toBe('spillway-origin');
    expect(out.metadata?.name).toBe(remotePodName(id));
    expect(out.metadata?.name).toMatch(/^ml-train-0-[0-9a-f]{8}$/);
    expect(remotePodName({ ...id, uid: 'other' })).not.toBe(out.metadata?.name);
    expect(remotePodName({ ...id, name: 'x'.repeat(200) }).length).toBeLessThanOrEqual(63);
  });

  it('records the origin and refuses origin-set Spillway labels', () => {
    expect(out.metadata?.labels).toEqual({
      app: 'train',
      'spillway.io/origin-cluster': 'origin',
      'spillway.io/origin-uid': id.uid,
      'app.kubernetes.io/managed-by': 'spillway',
    });
    expect(out.metadata?.annotations).toMatchObject({
      note: 'x',
      'spillway.io/origin-namespace': 'ml',
      'spillway.io/origin-name': 'train-0',
      'spillway.io/reservation': 'r-1',
    });
    expect(
      out.metadata?.annotations?.['kubectl.kubernetes.io/last-applied-configuration'],
    ).toBeUndefined();
    expect(originOf(out)).toEqual(id);
  });

  it('strips owner references, uid, resourceVersion and status', () => {
    expect(out.metadata?.ownerReferences).toBeUndefined();
    expect(out.metadata?.uid).toBeUndefined();
    expect(out.metadata?.resourceVersion).toBeUndefined();
    expect(out.status).toBeUndefined();
  });

  it("removes the origin's scheduling and keeps GPU node constraints, pinned to the reserved node", () => {
    const s = out.spec!;
    expect(s.nodeName).toBeUndefined();
    expect(s.schedulerName).toBeUndefined();
    expect(s.priorityClassName).toBeUndefined();
    expect(s.nodeSelector).toEqual({ 'nvidia.com/gpu.product': 'NVIDIA-A100' });
    expect(s.affinity).toEqual({
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            {
              matchExpressions: [
                { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] },
                { key: 'kubernetes.io/hostname', operator: 'In', values: ['gpu-node-3'] },
              ],
            },
          ],
        },
      },
    });
  });

  it("drops the virtual-node toleration and adds the donor's GPU tolerations", () => {
    expect(out.spec!.tolerations).toEqual([
      { key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'NoSchedule' },
      { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
    ]);
  });

  it('does not mount a service account and drops the injected token volume', () => {
    expect(out.spec!.serviceAccountName).toBeUndefined();
    expect(out.spec!.automountServiceAccountToken).toBe(false);
    expect(out.spec!.volumes?.map((v) => v.name)).toEqual(['data']);
    expect(out.spec!.containers[0]!.volumeMounts?.map((m) => m.name)).toEqual(['data']);
  });

  it('points references at the reflected objects', () => {
    const c = out.spec!.containers[0]!;
    expect(c.envFrom?.[0]?.configMapRef?.name).toBe('ml.settings');
    expect(c.env?.[0]?.valueFrom?.secretKeyRef?.name).toBe('ml.creds');
    expect(out.spec!.volumes?.[0]?.configMap?.name).toBe('ml.dataset');
    expect(c.resources?.limits).toEqual({ 'nvidia.com/gpu': '4' });
    expect(out.spec!.restartPolicy).toBe('Never');
  });

  it('does not modify its input', () => {
    const p = originPod();
    const before = JSON.stringify(p);
    translatePod(p, id, { tenantNamespace: 't' });
    expect(JSON.stringify(p)).toBe(before);
  });
});

describe('reflection', () => {
  it('copies data under a namespaced name with origin labels', () => {
    const cm = reflectConfigMap(
      {
        metadata: { name: 'settings', namespace: 'ml', uid: 'u', labels: { a: 'b' } },
        data: { k: 'v' },
      },
      'origin',
      'spillway-origin',
    );
    expect(cm).toEqual({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: reflectedName('ml', 'settings'),
        namespace: 'spillway-origin',
        labels: {
          'spillway.io/origin-cluster': 'origin',
          'spillway.io/reflected': 'true',
          'app.kubernetes.io/managed-by': 'spillway',
        },
        annotations: {
          'spillway.io/origin-namespace': 'ml',
          'spillway.io/origin-name': 'settings',
        },
      },
      data: { k: 'v' },
    });
    const s = reflectSecret(
      {
        metadata: { name: 'tok', namespace: 'ml' },
        type: 'kubernetes.io/service-account-token',
        data: { a: 'Yg==' },
      },
      'origin',
      't',
    );
    expect(s.type).toBe('Opaque');
    expect(s.data).toEqual({ a: 'Yg==' });
  });
});
