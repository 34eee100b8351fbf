import { describe, expect, it } from 'vitest';
import { podReferences } from './podrefs.js';

describe('podReferences', () => {
  it('finds env, envFrom, volumes, projected sources and pull secrets', () => {
    const refs = podReferences({
      spec: {
        containers: [
          {
            envFrom: [
              { configMapRef: { name: 'cm-a' } },
              { secretRef: { name: 'sec-a', optional: true } },
            ],
            env: [
              { valueFrom: { secretKeyRef: { name: 'sec-b' } } },
              { valueFrom: { configMapKeyRef: { name: 'cm-b', optional: true } } },
            ],
          },
        ],
        initContainers: [{ envFrom: [{ configMapRef: { name: 'cm-a', optional: true } }] }],
        volumes: [
          { configMap: { name: 'cm-c' } },
          { secret: { secretName: 'sec-c' } },
          {
            projected: {
              sources: [
                { configMap: { name: 'cm-d' } },
                { secret: { name: 'sec-d', optional: true } },
              ],
            },
          },
        ],
        imagePullSecrets: [{ name: 'regcred' }],
      },
    });
    expect(refs.configMaps).toEqual([
      { name: 'cm-a', optional: false },
      { name: 'cm-b', optional: true },
      { name: 'cm-c', optional: false },
      { name: 'cm-d', optional: false },
    ]);
    expect(refs.secrets).toEqual([
      { name: 'regcred', optional: false },
      { name: 'sec-a', optional: true },
      { name: 'sec-b', optional: false },
      { name: 'sec-c', optional: false },
      { name: 'sec-d', optional: true },
    ]);
  });

  it('is empty for a pod with no references', () => {
    expect(podReferences({ spec: { containers: [{}] } })).toEqual({ configMaps: [], secrets: [] });
  });
});
