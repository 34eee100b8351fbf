import { EventEmitter } from 'node:events';
import type { PeeringState__Output } from '@spillway/api';
import {
  donorHealth,
  donorUsable,
  donorViewOf,
  type DonorHealth,
  type DonorView,
} from './forge/donor.js';

export interface DonorChange {
  donor: string;
  before: DonorView | undefined;
  after: DonorView | undefined;
  /** Whether the donor could be reached (or existed) changed, not only what it lends. */
  reachability: boolean;
}

interface RegistryEvents {
  /** Donors whose view or reachability changed. */
  changed: [changes: DonorChange[]];
}

/**
 * This origin's donors as the broker last described them, plus how long each has been
 * unreachable. Fed by the broker stream; read by every controller.
 */
export class DonorRegistry extends EventEmitter<RegistryEvents> {
  private views = new Map<string, DonorView>();
  private readonly lostSince = new Map<string, number>();
  private brokerConnected = false;
  private known = false;

  constructor(
    private readonly lostTimeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
  }

  /** True once a PeeringState has arrived: only then may an absent donor mean "unpeered". */
  get hasState(): boolean {
    return this.known;
  }

  get connected(): boolean {
    return this.brokerConnected;
  }

  update(state: PeeringState__Output): void {
    const next = new Map<string, DonorView>();
    for (const p of state.as_origin ?? []) {
      if (p.donor_cluster) next.set(p.donor_cluster, donorViewOf(p));
    }
    const changes: DonorChange[] = [];
    for (const donor of new Set([...this.views.keys(), ...next.keys()])) {
      const before = this.views.get(donor);
      const after = next.get(donor);
      if (JSON.stringify(before) !== JSON.stringify(after))
        changes.push({ donor, before, after, reachability: before?.state !== after?.state });
    }
    this.views = next;
    this.known = true;
    this.refreshLost();
    if (changes.length > 0) this.emit('changed', changes);
  }

  setBrokerConnected(connected: boolean): void {
    if (this.brokerConnected === connected) return;
    this.brokerConnected = connected;
    this.refreshLost();
    const all = [...this.views.values()].map((v) => ({
      donor: v.donor,
      before: v,
      after: v,
      reachability: true,
    }));
    if (all.length > 0) this.emit('changed', all);
  }

  private refreshLost(): void {
    const t = this.now();
    for (const [donor, v] of this.views) {
      const reachable = this.brokerConnected && donorUsable(v.state);
      if (reachable) this.lostSince.delete(donor);
      else if (!this.lostSince.has(donor)) this.lostSince.set(donor, t);
    }
    for (const donor of this.lostSince.keys())
      if (!this.views.has(donor)) this.lostSince.delete(donor);
  }

  get(donor: string): DonorView | undefined {
    return this.views.get(donor);
  }

  list(): DonorView[] {
    return [...this.views.values()];
  }

  health(donor: string): DonorHealth | undefined {
    const v = this.views.get(donor);
    if (!v) return undefined;
    return donorHealth(
      v,
      {
        brokerConnected: this.brokerConnected,
        lostSinceMs: this.lostSince.get(donor),
        lostTimeoutMs: this.lostTimeoutMs,
      },
      this.now(),
    );
  }

  /** Reachable and taking commands right now. */
  reachable(donor: string): boolean {
    const v = this.views.get(donor);
    return v !== undefined && this.brokerConnected && donorUsable(v.state);
  }

  /**
   * The broker says the donor is down (not merely that we cannot reach the broker): its pods
   * cannot be asked to stop, and OffloadSync cleans them up when it returns.
   */
  knownDown(donor: string): boolean {
    const v = this.views.get(donor);
    if (!this.known) return false;
    if (!v) return true;
    return this.brokerConnected && !donorUsable(v.state);
  }
}
