import { CoreV1Api, type CoreV1Event, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { PodEventReport, PodStatusEvent } from '@spillway/api';
import {
  LABEL_MANAGED_BY,
  MANAGED_BY_VALUE,
  PREEMPTED_EVENT_REASON,
  REASON_RECLAIMED,
  preemptorOf,
  runInformer,
  stripManagedFields,
  type Logger,
  type ManagedInformer,
} from '@spillway/common';
import { originOf } from '../forge/pod.js';
import { slimEvent } from '../inventory/slim.js';

export interface StatusReflectorOptions {
  kc: KubeConfig;
  clusterId: string;
  logger: Logger;
  sendStatus: (e: PodStatusEvent) => void;
  sendEvent: (e: PodEventReport) => void;
}

/** Events about pods: the only ones an origin is told of. */
const EVENT_SELECTOR = 'involvedObject.kind=Pod';

/** The status fields an origin mirrors; anything else changing is not worth a message. */
export function statusFingerprint(pod: V1Pod): string {
  const s = pod.status ?? {};
  return JSON.stringify([
    pod.spec?.nodeName,
    s.phase,
    s.reason,
    s.message,
    s.podIP,
    s.startTime,
    s.conditions?.map((c) => [c.type, c.status, c.reason, c.message]),
    [...(s.initContainerStatuses ?? []), ...(s.containerStatuses ?? [])].map((c) => [
      c.name,
      c.ready,
      c.restartCount,
      c.state,
      c.started,
    ]),
    pod.metadata?.deletionTimestamp,
  ]);
}

export function podStatusEvent(
  pod: V1Pod,
  donor: string,
  deleted: boolean,
  now = Date.now(),
): PodStatusEvent | undefined {
  const id = originOf(pod);
  if (!id) return undefined;
  return {
    pod: { origin_cluster: id.originCluster, namespace: id.namespace, name: id.name, uid: id.uid },
    donor_cluster: donor,
    remote_namespace: pod.metadata?.namespace ?? '',
    remote_name: pod.metadata?.name ?? '',
    node_name: pod.spec?.nodeName ?? '',
    status_json: JSON.stringify(pod.status ?? {}),
    deleted,
    observed_unix_ms: String(now),
  };
}

/** What an origin is told of a donor Event: the scheduler's preemption becomes a reclaim naming the preemptor. */
export function forwardedEvent(e: CoreV1Event): { type: string; reason: string; message: string } {
  if (e.reason === PREEMPTED_EVENT_REASON) {
    const by = preemptorOf(e);
    const node = /on node (\S+)/.exec(e.message ?? '')?.[1];
    return {
      type: 'Warning',
      reason: REASON_RECLAIMED,
      message: `GPUs reclaimed for the donor's pod ${by ?? '(not named)'}: preempted${node ? ` on node ${node}` : ''}`,
    };
  }
  return { type: e.type ?? 'Normal', reason: e.reason ?? '', message: e.message ?? '' };
}

/** How long a deleted pod's identity is kept for its late Events (the scheduler records Preempted after the delete). */
const GONE_TTL_MS = 120_000;
const MAX_GONE = 1024;

/**
 * Pushes every status change and Event of offloaded pods to the broker as it happens,
 * so origins mirror them without polling.
 */
export class StatusReflector {
  private pods?: ManagedInformer<V1Pod>;
  private events?: ManagedInformer<CoreV1Event>;
  private readonly sent = new Map<string, string>();
  /** Recently deleted pods, by namespace/name: their Events may still arrive. */
  private readonly gone = new Map<string, { pod: V1Pod; at: number }>();
  private synced = false;

  constructor(private readonly opts: StatusReflectorOptions) {}

  async start(): Promise<void> {
    const core = this.opts.kc.makeApiClient(CoreV1Api);
    const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY_VALUE}`;
    this.pods = runInformer<V1Pod>(
      this.opts.kc,
      '/api/v1/pods',
      () => core.listPodForAllNamespaces({ labelSelector: selector }),
      this.opts.logger.child({ informer: 'offloaded-pods' }),
      { labelSelector: selector, transform: stripManagedFields },
    );
    this.pods.informer.on('add', (p) => this.onPod(p, false));
    this.pods.informer.on('update', (p) => this.onPod(p, false));
    this.pods.informer.on('delete', (p) => this.onPod(p, true));
    this.events = runInformer<CoreV1Event>(
      this.opts.kc,
      '/api/v1/events',
      () => core.listEventForAllNamespaces({ fieldSelector: EVENT_SELECTOR }),
      this.opts.logger.child({ informer: 'events' }),
      // Only pod events are forwarded, and only of tenant pods: cache no more than that.
      { fieldSelector: EVENT_SELECTOR, transform: (e) => slimEvent(e) },
    );
    this.events.informer.on('add', (e) => this.onEvent(e));
    this.events.informer.on('update', (e) => this.onEvent(e));
    await Promise.all([this.pods.synced, this.events.synced]);
    this.synced = true;
  }

  private onPod(pod: V1Pod, deleted: boolean): void {
    const key = `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
    const fp = deleted ? 'deleted' : statusFingerprint(pod);
    if (this.sent.get(key) === fp) return;
    const ev = podStatusEvent(pod, this.opts.clusterId, deleted);
    if (!ev) return;
    if (deleted) {
      this.sent.delete(key);
      this.remember(key, pod);
    } else this.sent.set(key, fp);
    this.opts.sendStatus(ev);
  }

  private onEvent(e: CoreV1Event): void {
    const obj = e.involvedObject;
    if (obj.kind !== 'Pod' || !obj.namespace?.startsWith('spillway-') || !obj.name) return;
    const pod =
      this.pods?.informer.get(obj.name, obj.namespace) ??
      this.gone.get(`${obj.namespace}/${obj.name}`)?.pod;
    if (!pod) return;
    const id = originOf(pod);
    if (!id) return;
    const last = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp;
    const fwd = forwardedEvent(e);
    this.opts.sendEvent({
      pod: {
        origin_cluster: id.originCluster,
        namespace: id.namespace,
        name: id.name,
        uid: id.uid,
      },
      donor_cluster: this.opts.clusterId,
      type: fwd.type,
      reason: fwd.reason,
      message: fwd.message,
      count: e.count ?? 1,
      last_unix_ms: String(last ? new Date(last).getTime() : Date.now()),
    });
  }

  private remember(key: string, pod: V1Pod): void {
    const now = Date.now();
    for (const [k, g] of this.gone) {
      if (g.at > now - GONE_TTL_MS && this.gone.size < MAX_GONE) break;
      this.gone.delete(k);
    }
    this.gone.set(key, { pod, at: now });
  }

  /** The cache of offloaded pods, once it holds the cluster as it is. */
  cache(): ManagedInformer<V1Pod>['informer'] | undefined {
    return this.synced ? this.pods?.informer : undefined;
  }

  /** Re-sends every offloaded pod's status (after a reconnect, the broker may have missed some). */
  resendAll(): void {
    this.sent.clear();
    for (const p of this.pods?.informer.list() ?? []) this.onPod(p, false);
  }

  async stop(): Promise<void> {
    await Promise.all([this.pods?.stop(), this.events?.stop()]);
  }
}
