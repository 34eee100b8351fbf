import { ErrorCode, SpillwayError, tenantNamespace, validateClusterId } from '@spillway/common';
import { DEFAULT_DONOR_POLICY, type PeeringRecord } from '../model.js';
import { freeOn } from '../placement/fast.js';
import { lendingOf, type DonorSnapshot } from '../placement/engine.js';
import type { PeeringInput, PeeringState, PeeringView } from './api.js';
import type { CoreDeps } from './deps.js';
import { activeCluster } from './lookup.js';
import type { Readiness } from './readiness.js';
import { invalid, validatePeeringInput } from './validate.js';

function notPeered(code: ErrorCode, origin: string, donor: string): SpillwayError {
  return new SpillwayError(code, `origin ${origin} is not peered with donor ${donor}`, {
    field: 'donor',
  });
}

/** Peerings, and what each donor lends each origin (the PeeringState streams are sent). */
export class Peerings {
  /** Called when a peering is deleted, so its lending is announced afresh if re-created. */
  onDeleted: (origin: string, donor: string) => void = () => undefined;

  constructor(
    private readonly deps: CoreDeps,
    private readonly readiness: Readiness,
  ) {}

  async create(input: PeeringInput): Promise<PeeringView> {
    const { store, log, bus } = this.deps;
    const { origin, donor, maxGpus, gpuProducts } = validatePeeringInput(input);
    const o = await activeCluster(store, origin, 'origin');
    const d = await activeCluster(store, donor, 'donor');
    if (o.role === 'donor')
      throw invalid('origin', `cluster ${origin} joined as a donor and cannot borrow GPUs`);
    if (d.role === 'origin')
      throw invalid('donor', `cluster ${donor} joined as an origin and does not lend GPUs`);
    // Creating an existing peering updates its limits and keeps its creation time.
    const existing = await store.getPeering(origin, donor);
    const peering: PeeringRecord = {
      origin,
      donor,
      maxGpus,
      gpuProducts,
      createdAt: existing?.createdAt ?? this.deps.now().toISOString(),
    };
    await store.putPeering(peering);
    log.info(
      { origin, donor, maxGpus, gpuProducts },
      existing ? 'peering updated' : 'peering created',
    );
    bus.peeringsChanged([origin, donor]);
    const [view] = await this.views([peering]);
    return view!;
  }

  async list(filter: { origin?: string; donor?: string } = {}): Promise<PeeringView[]> {
    if (filter.origin !== undefined) validateClusterId(filter.origin, 'origin');
    if (filter.donor !== undefined) validateClusterId(filter.donor, 'donor');
    return this.views(await this.deps.store.listPeerings(filter));
  }

  async delete(origin: string, donor: string): Promise<void> {
    const { store, log, bus } = this.deps;
    validateClusterId(origin, 'origin');
    validateClusterId(donor, 'donor');
    if (!(await store.deletePeering(origin, donor))) {
      throw notPeered(ErrorCode.NOT_FOUND, origin, donor);
    }
    // Promised GPUs go back; bound pods keep running until the origin deletes them.
    const now = this.deps.now();
    for (const r of await store.listReservations({ origin, donor, states: ['open'] })) {
      await store.release(r.id, 'peering removed', now);
    }
    this.onDeleted(origin, donor);
    log.info({ origin, donor }, 'peering deleted');
    bus.peeringsChanged([origin, donor]);
  }

  async drain(origin: string, donor: string): Promise<PeeringView> {
    const { store, log, bus } = this.deps;
    validateClusterId(origin, 'origin');
    validateClusterId(donor, 'donor');
    const p = await store.getPeering(origin, donor);
    if (!p) throw notPeered(ErrorCode.NOT_FOUND, origin, donor);
    let record = p;
    if (p.deletingSince === undefined) {
      record = { ...p, deletingSince: this.deps.now().toISOString() };
      await store.putPeering(record);
      log.info({ origin, donor }, 'peering draining');
      bus.peeringsChanged([origin, donor]);
    }
    const [view] = await this.views([record]);
    return view!;
  }

  async stateOf(clusterId: string): Promise<PeeringState> {
    const { store } = this.deps;
    validateClusterId(clusterId, 'clusterId');
    const [asOrigin, asDonor] = await Promise.all([
      store.listPeerings({ origin: clusterId }),
      store.listPeerings({ donor: clusterId }),
    ]);
    const views = await this.views([...asOrigin, ...asDonor]);
    return { asOrigin: views.slice(0, asOrigin.length), asDonor: views.slice(asOrigin.length) };
  }

  async assertPeered(
    origin: string,
    donor: string,
    opts: { allowDraining?: boolean } = {},
  ): Promise<PeeringRecord> {
    const p = await this.deps.store.getPeering(origin, donor);
    if (!p || (p.deletingSince !== undefined && opts.allowDraining !== true)) {
      throw notPeered(ErrorCode.NO_PEERING, origin, donor);
    }
    return p;
  }

  /** What each peering lends now, from the view. */
  async views(peerings: readonly PeeringRecord[]): Promise<PeeringView[]> {
    const { view } = this.deps;
    await view.ready();
    const donors = new Map<string, DonorSnapshot>();
    for (const id of new Set(peerings.map((p) => p.donor))) {
      const d = view.donorSnapshot(id);
      if (d) donors.set(id, d);
    }
    const now = this.deps.now();
    return peerings.map((p) => this.viewOf(p, donors.get(p.donor), now));
  }

  private viewOf(p: PeeringRecord, d: DonorSnapshot | undefined, now: Date): PeeringView {
    if (!d) {
      return {
        ...p,
        donorState: 'Revoked',
        lendable: {},
        inUse: {},
        donorGpuProducts: [],
        tenantNamespace: tenantNamespace(p.origin),
        podSecurity: DEFAULT_DONOR_POLICY.podSecurity,
      };
    }
    const summary = this.deps.view.summary(d.cluster.id);
    const lending = lendingOf(
      { ...d, peering: p },
      p.origin,
      now,
      this.deps.settings.heartbeatTimeoutMs,
      summary && ((node, resource) => freeOn(summary, node, resource)),
    );
    const state = this.readiness.stateOf(d.cluster, d.agent, d.inventory !== undefined, now);
    return {
      ...p,
      donorState: state !== 'Revoked' && d.cluster.policy.cordoned ? 'Cordoned' : state,
      lendable: lending.lendable,
      inUse: lending.inUse,
      donorGpuProducts: lending.products,
      tenantNamespace: tenantNamespace(p.origin),
      podSecurity: d.cluster.policy.podSecurity,
    };
  }
}
