import type { V1Pod } from '@kubernetes/client-node';
import { LABEL_ORIGIN_UID, isTerminalPhase, preemptedByScheduler } from '@spillway/common';

interface Held {
  node: string;
  pod: V1Pod;
  until: number;
}

/**
 * Keeps a preempted guest's GPUs counted on its node for a while after it ends. The
 * scheduler deletes its victims before the pod that preempted them is bound (or even
 * nominated): without the hold, the next report would show those GPUs free and the broker
 * could promise them to another guest that can never run there.
 */
export class ReclaimHold {
  private readonly held = new Map<string, Held>();

  constructor(
    private readonly holdMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Looks at a pod that changed: a guest the scheduler preempted that has ended (or is
   * gone) is held from now on. Returns the time its hold ends, when it is newly held.
   */
  observe(key: string, pod: V1Pod, deleted: boolean): number | undefined {
    if (this.holdMs <= 0 || this.held.has(key)) return undefined;
    const node = pod.spec?.nodeName;
    if (!node || !pod.metadata?.labels?.[LABEL_ORIGIN_UID]) return undefined;
    if (!preemptedByScheduler(pod.status)) return undefined;
    if (!deleted && !isTerminalPhase(pod.status?.phase)) return undefined;
    const until = this.now() + this.holdMs;
    // Held GPUs are in use by no offloaded pod: the copy does not name its origin pod.
    const copy: V1Pod = { ...pod, metadata: { ...pod.metadata, labels: {} } };
    this.held.set(key, { node, pod: copy, until });
    return until;
  }

  /** The held pods on a node whose hold has not ended; ended holds are forgotten. */
  onNode(node: string): V1Pod[] {
    const t = this.now();
    const out: V1Pod[] = [];
    for (const [key, h] of this.held) {
      if (h.until <= t) {
        this.held.delete(key);
        continue;
      }
      if (h.node === node) out.push(h.pod);
    }
    return out;
  }

  /** The node a held pod is on (for marking it dirty when its hold ends). */
  nodeOf(key: string): string | undefined {
    return this.held.get(key)?.node;
  }
}
