import { randomBytes } from 'node:crypto';
import type { CoreV1Api, CoreV1Event, V1Pod } from '@kubernetes/client-node';
import { MERGE_PATCH, apiMessage, isNotFound, type Logger } from '@spillway/common';

export const EVENT_COMPONENT = 'spillway-virtual-node';

/** Event reasons the shim's controllers write on origin pods. */
export const REASON_OFFLOADED = 'Offloaded';
export const REASON_OFFLOAD_FAILED = 'OffloadFailed';
export const REASON_OFFLOAD_REFUSED = 'OffloadRefused';
/** A pod no donor (or the broker) can take now; retried. */
export const REASON_NOT_OFFLOADED = 'NotOffloaded';
/** A pod of a gang waits for the rest of its gang before the gang is placed. */
export const REASON_GANG_WAITING = 'GangWaiting';
/** A gang's pods were placed together on one donor. */
export const REASON_GANG_PLACED = 'GangPlaced';
/** A gang gave up waiting for its pods (--gang-timeout). */
export const REASON_GANG_INCOMPLETE = 'GangIncomplete';
/** A pod Spillway can never offload as it is. */
export const REASON_CANNOT_OFFLOAD = 'CannotOffload';

export interface EventInput {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** The node the event is about (source.host), e.g. the virtual node. */
  host?: string;
  /** For copied donor events: their own count. */
  count?: number;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  first: string;
}

const MAX_MESSAGE = 1024;
const MAX_SEEN = 4096;

/**
 * Writes core/v1 Events about origin pods. Repeats of the same (pod, type, reason, message)
 * bump one Event's count, as client-go's recorder does, so a pod retried with back-off does
 * not flood the namespace. Failures are logged, never thrown: events are best effort.
 */
export class EventRecorder {
  private readonly seen = new Map<string, Seen>();
  /** Per pod uid, the tail of the events being written for it by `emit`. */
  private readonly pending = new Map<string, Promise<void>>();

  constructor(
    private readonly core: CoreV1Api,
    private readonly instance: string,
    private readonly logger: Logger,
  ) {}

  /**
   * Records without waiting: for events on a pod's hot path. Events of one pod are still
   * written in order, so repeats are counted on one Event.
   */
  emit(pod: V1Pod, e: EventInput): void {
    const uid = pod.metadata?.uid ?? '';
    const tail = (this.pending.get(uid) ?? Promise.resolve()).then(() => this.record(pod, e));
    this.pending.set(uid, tail);
    void tail.then(() => {
      if (this.pending.get(uid) === tail) this.pending.delete(uid);
    });
  }

  /** Resolves once every event passed to `emit` so far is written (or given up on). */
  async flush(): Promise<void> {
    await Promise.all(this.pending.values());
  }

  async record(pod: V1Pod, e: EventInput): Promise<void> {
    const uid = pod.metadata?.uid ?? '';
    const namespace = pod.metadata?.namespace ?? 'default';
    const podName = pod.metadata?.name ?? '';
    const message =
      e.message.length > MAX_MESSAGE ? `${e.message.slice(0, MAX_MESSAGE - 1)}…` : e.message;
    const key = `${uid}\u0000${e.type}\u0000${e.reason}\u0000${message}`;
    const now = new Date().toISOString();
    const prev = this.seen.get(key);
    try {
      if (prev) {
        const count = e.count !== undefined ? Math.max(e.count, prev.count) : prev.count + 1;
        if (count === prev.count && e.count !== undefined) return;
        try {
          await this.core.patchNamespacedEvent(
            { name: prev.name, namespace, body: { count, lastTimestamp: now } },
            MERGE_PATCH,
          );
          prev.count = count;
          this.touch(key, prev);
          return;
        } catch (err) {
          if (!isNotFound(err)) throw err;
          this.seen.delete(key);
        }
      }
      const name = `${podName}.${randomBytes(8).toString('hex')}`.slice(0, 253);
      const body: CoreV1Event = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace, name: podName, uid },
        type: e.type,
        reason: e.reason,
        message,
        count: e.count ?? 1,
        firstTimestamp: now as unknown as Date,
        lastTimestamp: now as unknown as Date,
        source: { component: EVENT_COMPONENT, ...(e.host ? { host: e.host } : {}) },
        reportingComponent: `spillway.io/${EVENT_COMPONENT}`,
        reportingInstance: this.instance,
      };
      await this.core.createNamespacedEvent({ namespace, body });
      this.touch(key, { name, namespace, count: e.count ?? 1, first: now });
    } catch (err) {
      this.logger.debug(
        { err: apiMessage(err), pod: `${namespace}/${podName}`, reason: e.reason },
        'could not record event',
      );
    }
  }

  private touch(key: string, s: Seen): void {
    this.seen.delete(key);
    this.seen.set(key, s);
    if (this.seen.size > MAX_SEEN) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  /** Forgets a deleted pod's events. */
  forgetPod(uid: string): void {
    for (const k of this.seen.keys()) if (k.startsWith(`${uid}\u0000`)) this.seen.delete(k);
  }
}
