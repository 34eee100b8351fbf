import { SchedulingV1Api, type KubeConfig, type V1PriorityClass } from '@kubernetes/client-node';
import {
  LABEL_MANAGED_BY,
  MANAGED_BY_VALUE,
  isAlreadyExists,
  isNotFound,
  type GuestPriorityPolicy,
  type Logger,
} from '@spillway/common';

/**
 * The PriorityClass offloaded pods run at. Guests never preempt anything (preemptionPolicy
 * Never): they only take GPUs that are free. Under `reclaim: preempt` the class sits below
 * the donor's own pods, so its scheduler takes the GPUs back by native preemption.
 */
export function guestPriorityClass(policy: GuestPriorityPolicy): V1PriorityClass {
  return {
    apiVersion: 'scheduling.k8s.io/v1',
    kind: 'PriorityClass',
    metadata: {
      name: policy.priorityClassName,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE },
    },
    value: policy.priority,
    preemptionPolicy: 'Never',
    globalDefault: false,
    description:
      policy.reclaim === 'preempt'
        ? 'Spillway guests: pods offloaded by other clusters, preempted when this cluster needs the GPUs'
        : 'Spillway guests: pods offloaded by other clusters, not preempted by pods without a PriorityClass',
  };
}

/** The class in the cluster matches what the policy wants (value and preemption policy are immutable). */
export function priorityClassMatches(have: V1PriorityClass, want: V1PriorityClass): boolean {
  return (
    have.value === want.value &&
    (have.preemptionPolicy ?? 'PreemptLowerPriority') === want.preemptionPolicy
  );
}

/**
 * Installs the guests' PriorityClass once, lazily (an origin-only cluster never needs it);
 * a class left by another policy is replaced. Pods already running keep the priority they
 * were admitted with.
 */
export class GuestPriorityClass {
  private ready: Promise<void> | undefined;
  private readonly api: SchedulingV1Api;

  constructor(
    kc: KubeConfig,
    readonly policy: GuestPriorityPolicy,
    private readonly logger: Logger,
  ) {
    this.api = kc.makeApiClient(SchedulingV1Api);
  }

  /** Resolves once the class is in place; a failure is retried on the next call. */
  ensure(): Promise<void> {
    this.ready ??= this.install().catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  /** Forgets that the class was installed (someone deleted it): the next ensure() looks again. */
  invalidate(): void {
    this.ready = undefined;
  }

  private async install(): Promise<void> {
    const want = guestPriorityClass(this.policy);
    const name = this.policy.priorityClassName;
    const have = await this.api.readPriorityClass({ name }).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (have && priorityClassMatches(have, want)) return;
    if (have) {
      this.logger.info(
        { priorityClass: name, had: have.value, wants: want.value },
        'replacing the guest PriorityClass',
      );
      await this.api.deletePriorityClass({ name }).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    }
    try {
      await this.api.createPriorityClass({ body: want });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    this.logger.info(
      { priorityClass: name, value: want.value, reclaim: this.policy.reclaim },
      'guest PriorityClass installed',
    );
  }
}
