// Benchmark 4: the placement engine over real gRPC + mTLS. Many concurrent callers of one
// origin place a mixed stream of 1/2/4/8-GPU pods (some constrained to a GPU product) on
// simulated donors until a target share of all GPUs is reserved; then every reservation is
// checked against node capacity (no GPU promised twice), and the fragmentation left is read:
// the share of free GPUs that 8-GPU pods can still use.
import type { PlaceResponse__Output } from '@spillway/api';
import type { BrokerProcess } from './lib/broker.js';
import type { Origin } from './lib/origin.js';
import { requestMix } from './lib/origin.js';
import { pool } from './lib/fleet.js';
import { ProcWatch, type ProcUsage } from './lib/proc.js';
import { medianRange, summarize, type Estimate, type Summary } from './lib/stats.js';

export interface PlacementOptions {
  label: string;
  brokers: BrokerProcess[];
  origin: Origin;
  callers: number;
  /** Stop issuing once this share of all GPUs is reserved... */
  fillShare: number;
  /** ...or after this long. */
  maxSeconds: number;
  totalGpus: number;
  gpusPerNode: number;
  seed: number;
  /** 8-GPU placements made after the fill to confirm the computed count. */
  probe8: number;
}

export interface Reservation {
  id: string;
  donor: string;
  node: string;
  gpus: number;
  podUid: string;
}

export interface PlacementRun {
  label: string;
  callers: number;
  calls: number;
  placed: number;
  refused: Record<string, number>;
  errors: number;
  errorSamples: string[];
  wallSeconds: number;
  /** placed / wall. */
  placementsPerSecond: number;
  /** Completed placements in each whole second of the run: median [min–max]. */
  perSecond: Estimate;
  latencyMs: Summary;
  reservedGpus: number;
  fill: number;
  brokerUsage: ProcUsage[];
  invariant: InvariantCheck;
  fragmentation: Fragmentation;
}

export interface InvariantCheck {
  /** Nodes whose live reservations exceed their GPUs, per the broker's own listing. */
  overbookedNodes: number;
  /** ...per what the callers were promised (independent of the broker's listing). */
  overbookedByClients: number;
  /** Pod uids with more than one live reservation. */
  duplicatePods: number;
  /** Promised reservations missing from the broker's listing. */
  missing: number;
  liveReservations: number;
  ok: boolean;
}

export interface Fragmentation {
  freeGpus: number;
  /** Nodes with all their GPUs free: where an 8-GPU pod still fits. */
  fullyFreeNodes: number;
  /** 8 × fullyFreeNodes / freeGpus: of the 8-GPU requests the free GPUs could hold, the share that fits. */
  share8: number;
  probePlaced: number;
  probeTried: number;
}

interface OffloadRow {
  id: string;
  donor: string;
  node: string;
  gpus: number;
  state: string;
  pod: { uid: string };
}

function reservationOf(res: PlaceResponse__Output): Reservation | undefined {
  const r = res.reservation;
  if (!r || r.id === '') return undefined;
  return { id: r.id, donor: r.donor_cluster, node: r.node, gpus: r.gpus, podUid: r.pod?.uid ?? '' };
}

/** Checks live reservations against node capacity, from the broker's listing and ours. */
export async function checkNoDoubleBooking(
  broker: BrokerProcess,
  promised: readonly Reservation[],
  gpusPerNode: number,
): Promise<InvariantCheck> {
  const { offloads } = await broker.rest<{ offloads: OffloadRow[] }>(
    'GET',
    '/api/v1/offloads?state=open,bound',
  );
  const sum = (rows: readonly { donor: string; node: string; gpus: number }[]): number => {
    const byNode = new Map<string, number>();
    for (const r of rows) {
      const k = `${r.donor}/${r.node}`;
      byNode.set(k, (byNode.get(k) ?? 0) + r.gpus);
    }
    return [...byNode.values()].filter((g) => g > gpusPerNode).length;
  };
  const uids = new Map<string, number>();
  for (const r of offloads) uids.set(r.pod.uid, (uids.get(r.pod.uid) ?? 0) + 1);
  const listed = new Set(offloads.map((r) => r.id));
  const check = {
    overbookedNodes: sum(offloads),
    overbookedByClients: sum(promised),
    duplicatePods: [...uids.values()].filter((n) => n > 1).length,
    missing: promised.filter((r) => !listed.has(r.id)).length,
    liveReservations: offloads.length,
  };
  return {
    ...check,
    ok:
      check.overbookedNodes === 0 &&
      check.overbookedByClients === 0 &&
      check.duplicatePods === 0 &&
      check.missing === 0,
  };
}

export async function runPlacement(o: PlacementOptions): Promise<PlacementRun> {
  const next = requestMix(o.origin.id, o.seed);
  const target = o.totalGpus * o.fillShare;
  const latencies: number[] = [];
  const doneAt: number[] = [];
  const promised: Reservation[] = [];
  const refused: Record<string, number> = {};
  const errorSamples: string[] = [];
  let errors = 0;
  let issued = 0;
  let issuedGpus = 0;
  let reservedGpus = 0;
  const watch = new ProcWatch(o.brokers.map((b) => b.pid));
  const t0 = performance.now();
  const stopAt = t0 + o.maxSeconds * 1000;
  await Promise.all(
    Array.from({ length: o.callers }, async (_, c) => {
      const client = o.origin.clients[c % o.origin.clients.length]!;
      while (issuedGpus < target && performance.now() < stopAt) {
        const req = next(issued++);
        issuedGpus += req.gpus ?? 0;
        const s = performance.now();
        try {
          const res = await client.place(req);
          const e = performance.now();
          latencies.push(e - s);
          const r = reservationOf(res);
          if (r) {
            promised.push(r);
            reservedGpus += r.gpus;
            doneAt.push(e - t0);
          } else {
            // Refused: the GPUs were never reserved, so they do not count toward the fill.
            issuedGpus -= req.gpus ?? 0;
            refused[res.reason_code || 'UNKNOWN'] =
              (refused[res.reason_code || 'UNKNOWN'] ?? 0) + 1;
          }
        } catch (err) {
          issuedGpus -= req.gpus ?? 0;
          errors++;
          if (errorSamples.length < 5) errorSamples.push(String(err));
        }
      }
    }),
  );
  const wallSeconds = (performance.now() - t0) / 1000;
  const usage = watch.stop();
  // Whole seconds only: the first and last are ramps.
  const buckets = new Array<number>(Math.floor(wallSeconds)).fill(0);
  for (const t of doneAt) {
    const b = Math.floor(t / 1000);
    if (b < buckets.length) buckets[b]!++;
  }
  const perSecond = medianRange(buckets.length > 2 ? buckets.slice(1) : buckets);

  const invariant = await checkNoDoubleBooking(o.brokers[0]!, promised, o.gpusPerNode);

  // Fragmentation: from the broker's own listing, then confirmed with real 8-GPU requests.
  const { offloads } = await o.brokers[0]!.rest<{ offloads: OffloadRow[] }>(
    'GET',
    '/api/v1/offloads?state=open,bound',
  );
  const usedNodes = new Set(offloads.map((r) => `${r.donor}/${r.node}`));
  const nodes = o.totalGpus / o.gpusPerNode;
  const used = offloads.reduce((s, r) => s + r.gpus, 0);
  const freeGpus = o.totalGpus - used;
  const fullyFreeNodes = nodes - usedNodes.size;
  const probeTried = Math.min(o.probe8, fullyFreeNodes + 1);
  const probe8 = requestMix(o.origin.id, o.seed + 1);
  const probeResults = await pool(
    Array.from({ length: probeTried }, (_, i) => i),
    Math.min(o.callers, 16),
    async (i) =>
      reservationOf(await o.origin.clients[i % o.origin.clients.length]!.place(probe8(1e9 + i, 8))),
  );
  const probed = probeResults.filter((r): r is Reservation => r !== undefined);
  promised.push(...probed);
  const afterProbe = await checkNoDoubleBooking(o.brokers[0]!, promised, o.gpusPerNode);
  return {
    label: o.label,
    callers: o.callers,
    calls: latencies.length + errors,
    placed: doneAt.length,
    refused,
    errors,
    errorSamples,
    wallSeconds,
    placementsPerSecond: doneAt.length / wallSeconds,
    perSecond,
    latencyMs: summarize(latencies),
    reservedGpus,
    fill: reservedGpus / o.totalGpus,
    brokerUsage: o.brokers.map((b) => usage.get(b.pid)!).filter(Boolean),
    invariant: {
      ...invariant,
      ok: invariant.ok && afterProbe.ok,
      overbookedNodes: Math.max(invariant.overbookedNodes, afterProbe.overbookedNodes),
      overbookedByClients: Math.max(invariant.overbookedByClients, afterProbe.overbookedByClients),
    },
    fragmentation: {
      freeGpus,
      fullyFreeNodes,
      share8: freeGpus > 0 ? (8 * fullyFreeNodes) / freeGpus : 0,
      probePlaced: probed.length,
      probeTried,
    },
  };
}

/** Releases every live reservation of the origin (so the next run starts empty). */
export async function releaseAll(broker: BrokerProcess, origin: Origin): Promise<number> {
  const { offloads } = await broker.rest<{ offloads: OffloadRow[] }>(
    'GET',
    `/api/v1/offloads?origin=${origin.id}&state=open,bound`,
  );
  await pool(offloads, 32, async (r, i) => {
    await origin.clients[i % origin.clients.length]!.release({
      reservation_id: r.id,
      reason: 'benchmark reset',
    });
  });
  return offloads.length;
}
