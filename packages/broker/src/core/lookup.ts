import { ErrorCode, SpillwayError, validateClusterId } from '@spillway/common';
import type { ClusterRecord } from '../model.js';
import type { Store } from '../store/store.js';
import type { StoreView } from './view.js';

/** The cluster, or NOT_FOUND naming `field`. Removed clusters are returned too. */
export async function knownCluster(
  store: Store,
  id: string,
  field: string,
): Promise<ClusterRecord> {
  validateClusterId(id, field);
  const cluster = await store.getCluster(id);
  if (!cluster) {
    throw new SpillwayError(ErrorCode.NOT_FOUND, `${field}: cluster ${id} is not known`, {
      field,
    });
  }
  return cluster;
}

/** The cluster, or NOT_FOUND / PERMISSION_DENIED (removed) naming `field`. */
export async function activeCluster(
  store: Store,
  id: string,
  field: string,
): Promise<ClusterRecord> {
  const cluster = await knownCluster(store, id, field);
  if (cluster.revokedAt !== undefined) {
    throw new SpillwayError(
      ErrorCode.PERMISSION_DENIED,
      `${field}: cluster ${id} was removed at ${cluster.revokedAt}; it must join again with a new token`,
      { field },
    );
  }
  return cluster;
}

/** Clusters on the other side of this cluster's peerings. */
export async function peersOf(view: StoreView, id: string): Promise<string[]> {
  await view.ready();
  const asOrigin = view.peeringsOf({ origin: id });
  const asDonor = view.peeringsOf({ donor: id });
  return [...new Set([...asOrigin.map((p) => p.donor), ...asDonor.map((p) => p.origin)])];
}

/** The cluster and every peer of it: whose PeeringState a change of it touches. */
export async function withPeers(view: StoreView, id: string): Promise<string[]> {
  return [id, ...(await peersOf(view, id))];
}
