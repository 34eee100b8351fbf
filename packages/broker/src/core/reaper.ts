import type { CoreDeps } from './deps.js';
import type { Identity } from './identity.js';
import type { UsageLedger } from './ledger.js';
import type { Lending } from './lending.js';
import type { Readiness } from './readiness.js';

/**
 * The core's clock work, one pass per interval: expire reservations, notice readiness
 * flips, refresh the revocation list, bring the usage ledger level, and delete finished
 * reservations past retention.
 */
export class Reaper {
  private timer: NodeJS.Timeout | undefined;
  private run: Promise<void> | undefined;
  /** performance.now() of the last prune; the first pass prunes. */
  private prunedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly deps: CoreDeps,
    private readonly readiness: Readiness,
    private readonly identity: Identity,
    private readonly lending: Lending,
    private readonly ledger: UsageLedger,
  ) {}

  start(): void {
    if (this.timer) return;
    const run = (): void => {
      if (this.run) return;
      this.run = this.tick().finally(() => {
        this.run = undefined;
      });
    };
    this.timer = setInterval(run, this.deps.settings.reaperIntervalMs);
    this.timer.unref();
    if (this.deps.settings.soleReplica) {
      void this.forgetLeftovers().catch((err: unknown) =>
        this.deps.log.warn({ err }, 'could not delete stream records of an earlier process'),
      );
    }
    run();
  }

  /** Stream records of earlier processes on a store only this one uses: nobody holds them. */
  private async forgetLeftovers(): Promise<void> {
    const { store, brokerId, log } = this.deps;
    for (const c of await store.listConnections()) {
      if (c.brokerId === brokerId) continue;
      await store.deleteConnection(c.clusterId, c.component, c.brokerId);
      log.info(
        { clusterId: c.clusterId, streamComponent: c.component, heldBy: c.brokerId },
        'deleted the stream record of an earlier broker process',
      );
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.run;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  /** One pass; a failure is logged and the next pass tries again. */
  async tick(): Promise<void> {
    const { store, log } = this.deps;
    const now = this.deps.now();
    try {
      for (const r of await store.expire(now)) {
        log.info({ reservation: r.id, donor: r.donor, node: r.node }, 'reservation expired');
        this.lending.schedule(r.donor);
      }
      await this.readiness.refresh(undefined, { now });
      await this.identity.refreshIfDue();
      if (this.ledger.needsReconcile) await this.ledger.reconcile();
      await this.pruneIfDue(now);
    } catch (err) {
      log.warn({ err }, 'reaper pass failed; retrying next tick');
    }
  }

  /** Deletes reservations that finished more than the retention ago (history is bounded). */
  private async pruneIfDue(now: Date): Promise<void> {
    const { store, log, settings } = this.deps;
    if (settings.reservationRetentionMs <= 0 || !store.pruneFinished) return;
    if (performance.now() - this.prunedAt < settings.pruneIntervalMs) return;
    this.prunedAt = performance.now();
    // The ledger holds every pruned reservation's use before the reservation goes.
    await this.ledger.reconcile();
    const cutoff = new Date(now.getTime() - settings.reservationRetentionMs);
    const pruned = await store.pruneFinished(cutoff);
    if (pruned > 0) {
      log.info({ pruned, finishedBefore: cutoff.toISOString() }, 'finished reservations pruned');
    }
  }
}
