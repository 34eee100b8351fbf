import { validateClusterId } from '@spillway/common';
import type { PeeringRecord, ReservationRecord } from '../model.js';
import type { DonorSummary } from '../placement/fast.js';
import { compareNames, peeringLends, quotaHeadroom } from '../placement/engine.js';
import type { CapacityFilter, CapacityRow, CapacitySummary, OffloadFilter } from './api.js';
import type { CoreDeps } from './deps.js';
import type { Readiness } from './readiness.js';
import { validateCapacityFilter } from './validate.js';

/** What donors have free (from the view) and the offloads on record (from the store). */
export class Capacity {
  constructor(
    private readonly deps: CoreDeps,
    private readonly readiness: Readiness,
  ) {}

  async capacity(filter: CapacityFilter = {}): Promise<CapacitySummary> {
    const { view } = this.deps;
    const f = validateCapacityFilter(filter);
    await view.ready();
    const ids: string[] = [];
    for (const c of view.allClusters()) {
      if (c.role === 'origin' || c.revokedAt !== undefined || c.id === f.origin) continue;
      if (f.origin !== undefined) {
        const p = view.peering(f.origin, c.id);
        if (!p || p.deletingSince !== undefined) continue;
      }
      ids.push(c.id);
    }
    ids.sort(compareNames);
    const now = this.deps.now();
    const rows: CapacityRow[] = [];
    for (const id of ids) {
      const cluster = view.cluster(id)!;
      const summary = view.summary(id);
      if (!summary) continue;
      const peering = f.origin === undefined ? undefined : view.peering(f.origin, id);
      let headroom = Infinity;
      if (f.origin !== undefined) {
        // An origin sees only what it could be given now.
        if (this.readiness.fromView(cluster, now) !== 'Ready' || cluster.policy.cordoned) continue;
        headroom = quotaHeadroom(cluster.policy, peering, f.origin, summary.usage);
      }
      for (const row of capacityRows(id, summary, f, peering)) {
        // Each row is clipped to the shared headroom on its own; see the report's notes.
        rows.push({
          ...row,
          free: Math.min(row.free, headroom),
          largestFreeOnNode: Math.min(row.largestFreeOnNode, headroom),
        });
      }
    }
    const totals = rows.reduce(
      (t, r) => ({ allocatable: t.allocatable + r.allocatable, free: t.free + r.free }),
      { allocatable: 0, free: 0 },
    );
    return { rows, totals };
  }

  offloads(filter: OffloadFilter = {}): Promise<ReservationRecord[]> {
    if (filter.origin !== undefined) validateClusterId(filter.origin, 'origin');
    if (filter.donor !== undefined) validateClusterId(filter.donor, 'donor');
    return this.deps.store.listReservations({
      ...(filter.origin === undefined ? {} : { origin: filter.origin }),
      ...(filter.donor === undefined ? {} : { donor: filter.donor }),
      ...(filter.states === undefined ? {} : { states: filter.states }),
    });
  }
}

/**
 * A donor's capacity rows for a filter and peering, from its summary. Kept on the summary:
 * recomputed only after the donor changed, so a query over a thousand donors is cheap.
 */
function capacityRows(
  id: string,
  summary: DonorSummary,
  f: ReturnType<typeof validateCapacityFilter>,
  peering: PeeringRecord | undefined,
): readonly CapacityRow[] {
  const key = JSON.stringify([
    'capacity',
    f.gpuProduct ?? null,
    f.minGpuMemoryMiB ?? null,
    f.resource ?? null,
    peering?.gpuProducts ?? null,
  ]);
  const cached = summary.derived.get(key) as CapacityRow[] | undefined;
  if (cached) return cached;
  const byKey = new Map<string, CapacityRow>();
  for (const { node, lendable, free: freeOf } of summary.nodes) {
    if (!lendable) continue;
    if (peering && !peeringLends(peering, node.gpuProduct)) continue;
    if (f.gpuProduct !== undefined && node.gpuProduct !== f.gpuProduct) continue;
    if (f.minGpuMemoryMiB !== undefined && node.gpuMemoryMiB < f.minGpuMemoryMiB) continue;
    for (const [resource, amount] of Object.entries(node.gpus)) {
      if (f.resource !== undefined && resource !== f.resource) continue;
      const rowKey = `${node.gpuProduct}\u0000${resource}`;
      let row = byKey.get(rowKey);
      if (!row) {
        row = {
          cluster: id,
          gpuProduct: node.gpuProduct,
          gpuMemoryMiB: node.gpuMemoryMiB,
          resource,
          allocatable: 0,
          free: 0,
          largestFreeOnNode: 0,
          nodes: 0,
        };
        byKey.set(rowKey, row);
      }
      const free = freeOf[resource] ?? 0;
      row.allocatable += amount.allocatable;
      row.free += free;
      row.largestFreeOnNode = Math.max(row.largestFreeOnNode, free);
      row.gpuMemoryMiB = Math.max(row.gpuMemoryMiB, node.gpuMemoryMiB);
      row.nodes++;
    }
  }
  const rows = [...byKey.values()].sort(
    (a, b) =>
      a.gpuProduct.localeCompare(b.gpuProduct, 'en') || a.resource.localeCompare(b.resource, 'en'),
  );
  summary.derived.set(key, rows);
  return rows;
}
