import type { CoreV1Event, V1Container, V1Pod } from '@kubernetes/client-node';
import { DISRUPTION_TARGET, LABEL_ORIGIN_UID } from '@spillway/common';

/** The object without its undefined properties (the API types forbid them). */
function defined<T>(o: { [K in keyof T]?: T[K] | undefined }): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}

function slimContainer(c: V1Container): V1Container {
  return defined<V1Container>({
    name: c.name,
    resources: c.resources,
    restartPolicy: c.restartPolicy,
  });
}

/**
 * What the inventory reads of a pod, and nothing else: where it is bound, what it requests,
 * whether it still holds it, the node it is nominated to while it waits for a preemption,
 * which origin pod it copies and whether the scheduler preempted it. The inventory watches every pod
 * of the donor, so keeping whole pods (images, env, volumes, managedFields, statuses) would
 * make its memory grow with everything the cluster runs.
 */
export function slimPodForInventory(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {};
  const originUid = m.labels?.[LABEL_ORIGIN_UID];
  const spec = pod.spec;
  return defined<V1Pod>({
    metadata: defined({
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      deletionTimestamp: m.deletionTimestamp,
      labels: originUid ? { [LABEL_ORIGIN_UID]: originUid } : undefined,
    }),
    spec: spec
      ? defined({
          nodeName: spec.nodeName,
          containers: (spec.containers ?? []).map(slimContainer),
          initContainers: spec.initContainers?.map(slimContainer),
          overhead: spec.overhead,
        })
      : undefined,
    status: slimStatus(pod, !!originUid),
  });
}

function slimStatus(pod: V1Pod, offloaded: boolean): V1Pod['status'] {
  const s = pod.status;
  if (!s) return undefined;
  const disruption = offloaded
    ? (s.conditions ?? []).filter((c) => c.type === DISRUPTION_TARGET)
    : [];
  const out = defined<NonNullable<V1Pod['status']>>({
    phase: s.phase,
    nominatedNodeName: s.nominatedNodeName,
    conditions: disruption.length > 0 ? disruption : undefined,
  });
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * What the status reflector reads of an Event. Events of pods outside tenant namespaces are
 * never forwarded, so only their identity is kept (the informer still tracks them); the
 * others keep what is forwarded.
 */
export function slimEvent(e: CoreV1Event, tenantPrefix = 'spillway-'): CoreV1Event {
  const m = e.metadata ?? {};
  const metadata = defined({
    name: m.name,
    namespace: m.namespace,
    resourceVersion: m.resourceVersion,
  });
  const o = e.involvedObject ?? {};
  if (o.kind !== 'Pod' || !o.namespace?.startsWith(tenantPrefix))
    return { metadata, involvedObject: defined({ kind: o.kind, namespace: o.namespace }) };
  return defined<CoreV1Event>({
    metadata,
    involvedObject: defined({ kind: o.kind, namespace: o.namespace, name: o.name }),
    // The scheduler's Preempted event names the preemptor here.
    related: e.related
      ? defined({ kind: e.related.kind, namespace: e.related.namespace, name: e.related.name })
      : undefined,
    type: e.type,
    reason: e.reason,
    message: e.message,
    count: e.count,
    lastTimestamp: e.lastTimestamp,
    eventTime: e.eventTime,
    firstTimestamp: e.firstTimestamp,
  });
}
