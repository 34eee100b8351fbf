import type { V1Job } from '@kubernetes/client-node';
import { GPU_MODELS } from '../testbed/index.js';

export const JOB_NAMESPACE = 'ml';
export const JOB_NAME = 'train-resnet';
/** Only donor-b has this product: the Job's placement is a real choice. */
export const JOB_PRODUCT = GPU_MODELS['H100-80GB'].product;

/**
 * The demo's sample Job: two pods of 2 GPUs each, pinned to one GPU product with a plain
 * nodeSelector, in a namespace labelled for offloading. Nothing in it mentions Spillway.
 * `annotations` steer the test bed's simulated kubelet (how long the pods run).
 */
export function demoJob(annotations: Record<string, string>): V1Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: JOB_NAME, namespace: JOB_NAMESPACE },
    spec: {
      completions: 2,
      parallelism: 2,
      backoffLimit: 0,
      template: {
        metadata: { annotations },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 5,
          nodeSelector: { 'nvidia.com/gpu.product': JOB_PRODUCT },
          containers: [
            {
              name: 'train',
              image: 'registry.example.com/ml/resnet-train:1.0',
              args: ['--epochs', '3'],
              resources: {
                requests: { cpu: '500m', memory: '1Gi', 'nvidia.com/gpu': '2' },
                limits: { 'nvidia.com/gpu': '2' },
              },
            },
          ],
        },
      },
    },
  };
}
