import type { V1PodStatus } from '@kubernetes/client-node';
import type { PodStatusEvent__Output, RemotePod__Output } from '@spillway/api';

/** What the shim knows of one origin pod's copy on a donor. */
export interface RemotePodRecord {
  uid: string;
  donor: string;
  /** The origin pod's namespace and name. */
  namespace: string;
  name: string;
  remoteNamespace: string;
  remoteName: string;
  nodeName: string;
  status: V1PodStatus;
  deleted: boolean;
  /** When the donor observed this, on its clock; -1 for snapshots and our own records. */
  observedMs: number;
  /** When this shim learned it, on our clock: orders snapshots against everything else. */
  receivedMs: number;
  /** Written by this shim on creating the copy, before the donor said anything of it. */
  assumed?: boolean;
}

function parseStatus(json: string): V1PodStatus {
  if (!json) return {};
  try {
    const v = JSON.parse(json) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

export function recordFromEvent(e: PodStatusEvent__Output): RemotePodRecord | undefined {
  if (!e.pod?.uid) return undefined;
  const observed = Number(e.observed_unix_ms);
  return {
    uid: e.pod.uid,
    donor: e.donor_cluster,
    namespace: e.pod.namespace,
    name: e.pod.name,
    remoteNamespace: e.remote_namespace,
    remoteName: e.remote_name,
    nodeName: e.node_name,
    status: parseStatus(e.status_json),
    deleted: e.deleted,
    observedMs: Number.isFinite(observed) && observed > 0 ? observed : -1,
    receivedMs: Date.now(),
  };
}

export function recordFromList(
  donor: string,
  p: RemotePod__Output,
  receivedMs: number,
): RemotePodRecord | undefined {
  if (!p.pod?.uid) return undefined;
  return {
    uid: p.pod.uid,
    donor,
    namespace: p.pod.namespace,
    name: p.pod.name,
    remoteNamespace: p.remote_namespace,
    remoteName: p.remote_name,
    nodeName: p.node_name,
    status: parseStatus(p.status_json),
    deleted: false,
    observedMs: -1,
    receivedMs,
  };
}

/**
 * The remote pods of every donor by origin pod uid, from pushed status events and from
 * ListPods snapshots. A donor counts as "synced" once a snapshot of it has been applied:
 * only then does a missing record mean the remote pod does not exist.
 */
export class RemotePods {
  private readonly byUid = new Map<string, RemotePodRecord>();
  private readonly synced = new Set<string>();

  get(uid: string): RemotePodRecord | undefined {
    return this.byUid.get(uid);
  }

  isSynced(donor: string): boolean {
    return this.synced.has(donor);
  }

  /**
   * Applies a pushed report unless the donor already told us something newer of the same
   * pod (its reports are ordered by the donor's clock).
   */
  upsert(rec: RemotePodRecord): boolean {
    const prev = this.byUid.get(rec.uid);
    if (prev && prev.observedMs >= 0 && rec.observedMs >= 0 && prev.observedMs > rec.observedMs)
      return false;
    this.byUid.set(rec.uid, rec);
    return true;
  }

  /** Records a pod we just created, unless the donor's report of it arrived first. */
  created(rec: RemotePodRecord): void {
    if (!this.byUid.has(rec.uid)) this.byUid.set(rec.uid, rec);
  }

  /**
   * Applies a ListPods snapshot requested at `asOfMs` (our clock). What we learned after the
   * request started wins over the snapshot; known pods of that donor it does not list, and
   * that nothing since mentioned, are marked deleted. Returns the uids whose record changed.
   */
  applySnapshot(donor: string, records: RemotePodRecord[], asOfMs: number): string[] {
    const changed: string[] = [];
    const listed = new Set<string>();
    for (const r of records) {
      listed.add(r.uid);
      const prev = this.byUid.get(r.uid);
      if (prev && prev.receivedMs >= asOfMs) continue;
      this.byUid.set(r.uid, r);
      if (!prev || prev.deleted || JSON.stringify(prev.status) !== JSON.stringify(r.status))
        changed.push(r.uid);
    }
    for (const r of this.byUid.values()) {
      if (r.donor !== donor || listed.has(r.uid) || r.deleted || r.receivedMs >= asOfMs) continue;
      this.byUid.set(r.uid, { ...r, deleted: true, receivedMs: asOfMs });
      changed.push(r.uid);
    }
    this.synced.add(donor);
    return changed;
  }

  /** Records of one donor. */
  ofDonor(donor: string): RemotePodRecord[] {
    return [...this.byUid.values()].filter((r) => r.donor === donor);
  }

  forget(uid: string): void {
    this.byUid.delete(uid);
  }
}
