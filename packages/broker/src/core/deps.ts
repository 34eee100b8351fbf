import { EventEmitter } from 'node:events';
import type { CertificateAuthority, Logger } from '@spillway/common';
import type { ConnectionRecord, PlacementPolicy } from '../model.js';
import type { Store } from '../store/store.js';
import type { CoreEvents } from './api.js';
import type { StoreView } from './view.js';

/** Placement outcomes and durations (the broker's Metrics fits). */
export interface PlacementMetrics {
  observePlacement(result: string, seconds: number): void;
}

/** The core's tunables, with their defaults filled in (see CoreOptions). */
export interface CoreSettings {
  heartbeatTimeoutMs: number;
  reservationTtlMs: number;
  certValidityMs: number;
  joinTokenTtlMs: number;
  policy: PlacementPolicy;
  reaperIntervalMs: number;
  revocationRefreshMs: number;
  lendingDebounceMs: number;
  maxPlacements: number;
  /** Finished reservations are deleted this long after they finished; 0 keeps them. */
  reservationRetentionMs: number;
  /** How often the reaper prunes finished reservations. */
  pruneIntervalMs: number;
  /**
   * The store serves this process alone (SQLite): a connection record of another broker
   * id is a dead process's leftover, not a stream anyone holds.
   */
  soleReplica: boolean;
}

/** The events the core emits, guarded so a listener's bug never fails an operation. */
export class CoreBus {
  readonly events = new EventEmitter<CoreEvents>();

  constructor(private readonly log: Logger) {}

  emit<K extends keyof CoreEvents>(event: K, ...args: CoreEvents[K]): void {
    try {
      (this.events.emit as (e: K, ...a: CoreEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, 'core event listener failed');
    }
  }

  /** peeringsChanged for these clusters, sorted and once each; nothing when empty. */
  peeringsChanged(ids: Iterable<string>): void {
    const list = [...new Set(ids)].sort();
    if (list.length > 0) this.emit('peeringsChanged', list);
  }
}

/**
 * What every service of the core shares. `store` is the ViewedStore: each write through it
 * also brings `view` up to date, so no service notes the view by hand.
 */
export interface CoreDeps {
  readonly brokerId: string;
  readonly store: Store;
  readonly view: StoreView;
  readonly ca: CertificateAuthority;
  readonly log: Logger;
  readonly bus: CoreBus;
  readonly metrics: PlacementMetrics | undefined;
  readonly settings: CoreSettings;
  now(): Date;
  /** Whether a connection record stands for a stream that a live broker holds. */
  held(c: ConnectionRecord): boolean;
}

/**
 * The rule behind CoreDeps.held. A sole replica holds only streams it connected itself
 * since `startedAtMs`: a record of an earlier process is a leftover, even under the same
 * --broker-id.
 */
export function heldBy(
  brokerId: string,
  soleReplica: boolean,
  startedAtMs = Number.NEGATIVE_INFINITY,
): (c: ConnectionRecord) => boolean {
  return soleReplica
    ? (c) => c.brokerId === brokerId && !(Date.parse(c.connectedAt) < startedAtMs)
    : () => true;
}
