import type { PeeringRecord } from '../model.js';
import type { PeeringView } from './api.js';
import type { CoreDeps } from './deps.js';

/**
 * What donors lend, re-evaluated after a short pause once something changed (a report, a
 * reservation), so a burst of changes becomes one peeringsChanged; only what changed is
 * announced.
 */
export class Lending {
  /** Last lending signature per "origin/donor", to emit only on change. */
  private readonly sig = new Map<string, string>();
  private readonly pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private run: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly deps: CoreDeps,
    private readonly views: (peerings: readonly PeeringRecord[]) => Promise<PeeringView[]>,
  ) {}

  /** Re-evaluates what `donor` lends after a short pause; emits only what changed. */
  schedule(donor: string): void {
    if (this.stopped) return;
    this.pending.add(donor);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushNow();
    }, this.deps.settings.lendingDebounceMs);
    this.timer.unref();
  }

  /** Forgets what was announced for a peering (deleted): a new one is announced afresh. */
  forget(origin: string, donor: string): void {
    this.sig.delete(`${origin}/${donor}`);
  }

  private flushNow(): void {
    this.run = this.flush().finally(() => {
      this.run = undefined;
    });
  }

  private async flush(): Promise<void> {
    const { store, bus, log } = this.deps;
    const donors = [...this.pending];
    this.pending.clear();
    try {
      const peerings = (
        await Promise.all(donors.map((d) => store.listPeerings({ donor: d })))
      ).flat();
      const views = await this.views(peerings);
      const changed = new Set<string>();
      for (const v of views) {
        const key = `${v.origin}/${v.donor}`;
        const sig = JSON.stringify([v.donorState, v.lendable, v.inUse, v.donorGpuProducts]);
        if (this.sig.get(key) !== sig) {
          this.sig.set(key, sig);
          // Only the origin uses what a donor lends it (its virtual node's capacity); the
          // donor hears of its own state changes when they happen (Readiness).
          changed.add(v.origin);
        }
      }
      bus.peeringsChanged(changed);
    } catch (err) {
      log.warn({ err, donors }, 'could not re-evaluate lending');
    }
  }

  /** Resolves once pending lending updates went out (tests, graceful shutdown). */
  async idle(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.flushNow();
    }
    await this.run;
  }

  resume(): void {
    this.stopped = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
    await this.run;
  }
}
