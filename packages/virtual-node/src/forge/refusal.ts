import type { V1Pod } from '@kubernetes/client-node';
import { donorPolicyRefusal } from '@spillway/common';

/**
 * Pure: why Spillway will not offload a pod, when the origin can already tell — so the pod
 * stays Pending at home, waiting for local capacity, instead of being bound to a virtual
 * node, refused by the donor and failed.
 */

/**
 * Scheduler verdicts about storage: a donor never has the origin's claims or volumes, so a
 * pod Unschedulable for them would not run elsewhere either, whatever GPUs are free.
 */
const STORAGE_VERDICT =
  /unbound immediate PersistentVolumeClaims|persistentvolumeclaim "[^"]*" not found|volume node affinity conflict|node\(s\) exceed max volume count/i;

export function offloadRefusal(pod: V1Pod): string | undefined {
  const refusal = donorPolicyRefusal(pod);
  if (refusal) return `${refusal.message} (${refusal.field})`;
  const verdict = pod.status?.conditions?.find(
    (c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable',
  )?.message;
  const storage = verdict?.match(STORAGE_VERDICT);
  if (storage)
    return `the scheduler cannot place it for its storage ("${storage[0]}"), which no donor provides`;
  return undefined;
}
