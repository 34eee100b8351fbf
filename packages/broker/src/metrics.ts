import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '@spillway/common';
import type { Store } from './store/store.js';
import { aggregateUsage } from './core/usage.js';

/** Outcome label of spillway_placements_total: `placed`, or the refusal code (NO_FIT ...). */
export type PlacementResultLabel = string;

export interface MetricsOptions {
  /** Node.js process metrics (memory, event loop lag); off in tests to keep scrapes small. */
  processMetrics?: boolean;
  /** Connections silent longer than this are not counted as connected. */
  heartbeatTimeoutMs?: number;
  logger?: Logger;
}

/**
 * The broker's Prometheus metrics. One instance per broker, with its own registry, so tests
 * and several brokers in one process never share counters. The core and the gRPC layer call
 * the observe*() methods; gauges that describe stored state read the store on each scrape.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;

  private readonly placements: Counter<'result'>;
  private readonly placementDuration: Histogram<'result'>;
  private readonly authFailures: Counter<'reason'>;
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly streams: Gauge<'component'>;
  private readonly scrapeErrors: Counter;
  private readonly connected: Gauge;
  private readonly freeGpus: Gauge<'product' | 'resource'>;
  private readonly reservationsOpen: Gauge;
  private readonly offloads: Gauge<'state' | 'phase'>;
  private readonly offloadedGpus: Gauge<'state'>;
  private readonly gpuSeconds: Counter<'origin' | 'donor' | 'product'>;
  private readonly storeUp: Gauge;
  private readonly storeReadSeconds: Gauge;
  private store: Store | undefined;
  private sessions: (() => readonly { component: string }[]) | undefined;
  private readonly heartbeatTimeoutMs: number;
  private readonly logger: Logger | undefined;

  constructor(opts: MetricsOptions = {}) {
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 15_000;
    this.logger = opts.logger;
    const registers = [this.registry];
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });

    this.placements = new Counter({
      name: 'spillway_placements_total',
      help: 'Placement requests by result (placed, or the refusal code such as NO_FIT)',
      labelNames: ['result'],
      registers,
    });
    this.placementDuration = new Histogram({
      name: 'spillway_placement_duration_seconds',
      help: 'Time to decide and reserve a placement',
      labelNames: ['result'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.authFailures = new Counter({
      name: 'spillway_auth_failures_total',
      help: 'Rejected REST authentications by reason',
      labelNames: ['reason'],
      registers,
    });
    this.httpRequests = new Counter({
      name: 'spillway_http_requests_total',
      help: 'REST requests by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.streams = new Gauge({
      name: 'spillway_streams_open',
      help: 'Cluster streams held by this broker replica, by component',
      labelNames: ['component'],
      registers,
    });
    this.scrapeErrors = new Counter({
      name: 'spillway_metrics_store_errors_total',
      help: 'Scrapes where the store could not be read (store-backed gauges kept their last value)',
      registers,
    });

    this.connected = new Gauge({
      name: 'spillway_connected_clusters',
      help: 'Clusters with at least one live stream to any broker replica',
      registers,
    });
    this.freeGpus = new Gauge({
      name: 'spillway_free_gpus',
      help: 'Free GPUs on ready, uncordoned nodes of all clusters, by product and resource',
      labelNames: ['product', 'resource'],
      registers,
    });
    this.reservationsOpen = new Gauge({
      name: 'spillway_reservations_open',
      help: 'GPU reservations promised but not yet seen bound on the donor',
      registers,
    });
    this.offloads = new Gauge({
      name: 'spillway_offloads',
      help: 'Live offloads by state (open: GPUs reserved, pod not yet seen; bound) and the donor pod phase last reported',
      labelNames: ['state', 'phase'],
      registers,
    });
    this.offloadedGpus = new Gauge({
      name: 'spillway_offloaded_gpus',
      help: 'GPUs held by live offloads, by state (open or bound): what donors lend right now',
      labelNames: ['state'],
      registers,
    });
    this.gpuSeconds = new Counter({
      name: 'spillway_gpu_seconds_total',
      help: 'GPU-seconds lent, from the usage ledger (running pods up to the scrape), by origin, donor and GPU product',
      labelNames: ['origin', 'donor', 'product'],
      registers,
    });
    this.storeUp = new Gauge({
      name: 'spillway_store_up',
      help: '1 if the last scrape could read the store, 0 if not',
      registers,
    });
    this.storeReadSeconds = new Gauge({
      name: 'spillway_store_read_seconds',
      help: 'How long the last scrape took to read the store',
      registers,
    });
  }

  /** Lets the store-backed gauges read `store` on each render(). */
  bindStore(store: Store): void {
    this.store = store;
  }

  observePlacement(result: PlacementResultLabel, seconds: number): void {
    this.placements.inc({ result });
    this.placementDuration.observe({ result }, seconds);
  }

  authFailure(reason: string): void {
    this.authFailures.inc({ reason });
  }

  httpRequest(method: string, route: string, status: number): void {
    this.httpRequests.inc({ method, route, status: String(status) });
  }

  /** Lets spillway_streams_open read this replica's live streams on each render(). */
  bindSessions(sessions: () => readonly { component: string }[]): void {
    this.sessions = sessions;
  }

  /**
   * The text exposition format, for GET /metrics. Store-backed gauges are refreshed first, in
   * one pass, so a scrape is consistent and a store failure shows in the same scrape.
   */
  async render(): Promise<string> {
    if (this.sessions) {
      const byComponent = new Map<string, number>();
      for (const s of this.sessions())
        byComponent.set(s.component, (byComponent.get(s.component) ?? 0) + 1);
      this.streams.reset();
      for (const component of ['agent', 'virtual-node'])
        byComponent.set(component, byComponent.get(component) ?? 0);
      for (const [component, n] of byComponent) this.streams.set({ component }, n);
    }
    await this.refreshFromStore();
    return this.registry.metrics();
  }

  /** Reads the store (the truth shared by all replicas); on failure gauges keep their values. */
  private async refreshFromStore(): Promise<void> {
    const store = this.store;
    if (!store) return;
    const started = performance.now();
    try {
      const now = new Date();
      const [conns, inventories, clusters, liveOffloads, usage] = await Promise.all([
        store.listConnections(),
        store.listInventories(),
        store.listClusters(),
        store.listReservations({ states: ['open', 'bound'] }),
        store.listUsage(new Date(0), now),
      ]);
      this.storeReadSeconds.set((performance.now() - started) / 1000);
      this.storeUp.set(1);
      const cutoff = Date.now() - this.heartbeatTimeoutMs;
      const live = new Set(
        conns.filter((c) => Date.parse(c.lastSeenAt) >= cutoff).map((c) => c.clusterId),
      );
      this.connected.set(live.size);

      const excluded = new Set(
        clusters.filter((c) => c.revokedAt !== undefined || c.policy.cordoned).map((c) => c.id),
      );
      const sums = new Map<string, { product: string; resource: string; free: number }>();
      for (const inv of inventories) {
        if (excluded.has(inv.clusterId)) continue;
        for (const node of inv.nodes) {
          if (!node.ready || node.cordoned) continue;
          for (const [resource, amount] of Object.entries(node.gpus)) {
            const product = node.gpuProduct || 'unknown';
            const key = `${product}\u0000${resource}`;
            const row = sums.get(key) ?? { product, resource, free: 0 };
            row.free += amount.free;
            sums.set(key, row);
          }
        }
      }
      // reset() drops label sets of GPUs that went away since the last scrape.
      this.freeGpus.reset();
      for (const row of sums.values())
        this.freeGpus.set({ product: row.product, resource: row.resource }, row.free);

      const open = liveOffloads.filter((r) => r.state === 'open');
      this.reservationsOpen.set(open.length);
      this.offloads.reset();
      this.offloadedGpus.reset();
      for (const state of ['open', 'bound'] as const) this.offloadedGpus.set({ state }, 0);
      for (const r of liveOffloads) {
        const phase = r.state === 'open' ? 'Reserved' : r.remotePhase || 'Pending';
        this.offloads.inc({ state: r.state, phase });
        this.offloadedGpus.inc({ state: r.state }, r.gpus);
      }

      // The ledger only grows, so its sums are a counter; every replica reports the same.
      this.gpuSeconds.reset();
      const byPeering = aggregateUsage(usage, new Date(0), now, ['origin', 'donor', 'product']);
      for (const row of byPeering.rows) {
        this.gpuSeconds.inc(
          { origin: row.origin ?? '', donor: row.donor ?? '', product: row.product || 'unknown' },
          row.gpuSeconds,
        );
      }
    } catch (err) {
      this.storeUp.set(0);
      this.scrapeErrors.inc();
      this.logger?.warn({ err }, 'metrics: store read failed');
    }
  }
}
