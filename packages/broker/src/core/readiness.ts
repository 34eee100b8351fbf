import type { ClusterRecord, ConnectionRecord } from '../model.js';
import { clusterReadiness, type Readiness as Verdict } from '../placement/engine.js';
import type { ClusterState } from './api.js';
import type { CoreDeps } from './deps.js';
import { peersOf } from './lookup.js';

/** Why a cluster reads Unknown, as placement refusals and logs say it. */
export const UNKNOWN_AFTER_RESTART =
  'Unknown (the broker restarted; waiting for the agent to reconnect)';

/**
 * The one home of cluster readiness: what state a cluster is in (from its agent's
 * connection and whether it ever reported), and the flips this replica has seen, which
 * become peeringsChanged for the cluster and its peers.
 */
export class Readiness {
  /** Last state seen per cluster. */
  private readonly last = new Map<string, ClusterState>();
  /**
   * Until then (sole replica only: a heartbeat timeout after this process started), a
   * cluster that connected before and holds no stream here may still be reconnecting.
   */
  private readonly unknownUntil: number;

  constructor(private readonly deps: CoreDeps) {
    this.unknownUntil = deps.settings.soleReplica
      ? deps.now().getTime() + deps.settings.heartbeatTimeoutMs
      : Number.NEGATIVE_INFINITY;
  }

  /**
   * The cluster's readiness now. An agent record no live broker holds counts as none; right
   * after a restart on SQLite, a cluster without a stream here is Unknown, not NotReady (its
   * agent is likely reconnecting) and not Ready (the dead process's record says nothing).
   */
  of(
    cluster: ClusterRecord,
    agent: ConnectionRecord | undefined,
    hasInventory: boolean,
    now: Date = this.deps.now(),
  ): Verdict {
    const held = agent && this.deps.held(agent) ? agent : undefined;
    const verdict = clusterReadiness(
      cluster,
      held,
      now,
      this.deps.settings.heartbeatTimeoutMs,
      hasInventory,
    );
    const unheard = verdict.state === 'NotReady' || verdict.state === 'Pending';
    if (held === undefined && unheard && now.getTime() < this.unknownUntil) {
      return { state: 'Unknown', reason: UNKNOWN_AFTER_RESTART };
    }
    return verdict;
  }

  stateOf(
    cluster: ClusterRecord,
    agent: ConnectionRecord | undefined,
    hasInventory: boolean,
    now?: Date,
  ): ClusterState {
    return this.of(cluster, agent, hasInventory, now).state;
  }

  /** The cluster's state as the view has it. */
  fromView(cluster: ClusterRecord, now?: Date): ClusterState {
    const { view } = this.deps;
    return this.stateOf(
      cluster,
      view.connection(cluster.id, 'agent'),
      view.inventory(cluster.id) !== undefined,
      now,
    );
  }

  /** Whether the last state seen for the cluster was Ready. */
  wasReady(clusterId: string): boolean {
    return this.last.get(clusterId) === 'Ready';
  }

  /** Records a state decided elsewhere (removal). */
  set(clusterId: string, state: ClusterState): void {
    this.last.set(clusterId, state);
  }

  /**
   * Re-evaluates clusters (`ids`, or all of them after re-reading connections) and emits
   * peeringsChanged for each that flipped, with its peers. A cluster seen for the first
   * time counts as flipped only for a stream event (`firstSight`); with `always` the
   * listed clusters are announced even unchanged (a new stream wants its state).
   */
  async refresh(
    ids: readonly string[] | undefined,
    opts: { always?: boolean; firstSight?: boolean; now?: Date } = {},
  ): Promise<void> {
    const { view, log } = this.deps;
    await view.ready();
    // Heartbeats land on whichever replica holds the stream: re-read who was seen when.
    if (ids === undefined) await view.refreshConnections();
    const now = opts.now ?? this.deps.now();
    const clusters =
      ids === undefined
        ? [...view.allClusters()]
        : ids.map((id) => view.cluster(id)).filter((c) => c !== undefined);
    const flipped: string[] = [];
    for (const c of clusters) {
      const state = this.fromView(c, now);
      const before = this.last.get(c.id);
      this.last.set(c.id, state);
      if (before !== undefined && before !== state) {
        log.info({ clusterId: c.id, from: before, to: state }, 'cluster readiness changed');
      }
      const changed = before === undefined ? opts.firstSight === true : before !== state;
      if (changed || opts.always === true) flipped.push(c.id);
    }
    if (flipped.length === 0) return;
    const affected = new Set(flipped);
    for (const id of flipped) for (const p of await peersOf(view, id)) affected.add(p);
    this.deps.bus.peeringsChanged(affected);
  }
}
