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
  /** Other processes to measure alongside the brokers (the Redis server). */
  alsoWatch?: { name: string; pid: number }[];
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
  /** CPU and memory of `alsoWatch` processes, by name. */
  otherUsage: Record<string, ProcUsage>;
  invariant: InvariantCheck;
  /** What the callers were promised (kept for later invariant checks; not in the JSON). */
  promised?: Reservation[];
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

export interface FragmentationRun {
  label: string;
  donors: number;
  gpus: number;
  placed: number;
  fill: number;
  wallSeconds: number;
  errors: number;
  invariant: InvariantCheck;
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

interface FillResult {
  latencies: number[];
  doneAt: number[];
  promised: Reservation[];
  refused: Record<string, number>;
  errors: number;
  errorSamples: string[];
  reservedGpus: number;
  wallSeconds: number;
  usage: Map<number, ProcUsage>;
}

/** `callers` concurrent loops placing the request mix until `targetGpus` or `maxSeconds`. */
async function fill(
  o: PlacementOptions,
  targetGpus: number,
  donors: string[],
  seed: number,
): Promise<FillResult> {
  const next = requestMix(o.origin.id, seed, donors);
  const r: FillResult = {
    latencies: [],
    doneAt: [],
    promised: [],
    refused: {},
    errors: 0,
    errorSamples: [],
    reservedGpus: 0,
    wallSeconds: 0,
    usage: new Map(),
  };
  let issued = 0;
  let issuedGpus = 0;
  const watch = new ProcWatch([
    ...o.brokers.map((b) => b.pid),
    ...(o.alsoWatch ?? []).map((w) => w.pid),
  ]);
  const t0 = performance.now();
  const stopAt = t0 + o.maxSeconds * 1000;
  await Promise.all(
    Array.from({ length: o.callers }, async (_, c) => {
      const client = o.origin.clients[c % o.origin.clients.length]!;
      while (issuedGpus < targetGpus && performance.now() < stopAt) {
        const req = next(issued++);
        const gpus = req.gpus ?? 0;
        issuedGpus += gpus;
        const s = performance.now();
        try {
          const res = await client.place(req);
          const e = performance.now();
          r.latencies.push(e - s);
          const got = reservationOf(res);
          if (got) {
            r.promised.push(got);
            r.reservedGpus += got.gpus;
            r.doneAt.push(e - t0);
          } else {
            // Refused: nothing was reserved, so it does not count toward the fill.
            issuedGpus -= gpus;
            const code = res.reason_code || 'UNKNOWN';
            r.refused[code] = (r.refused[code] ?? 0) + 1;
          }
        } catch (err) {
          issuedGpus -= gpus;
          r.errors++;
          if (r.errorSamples.length < 5) r.errorSamples.push(String(err));
        }
      }
    }),
  );
  r.wallSeconds = (performance.now() - t0) / 1000;
  r.usage = watch.stop();
  return r;
}

/** Throughput and latency over every donor; then the no-double-booking check. */
export async function runPlacement(o: PlacementOptions): Promise<PlacementRun> {
  const f = await fill(o, o.totalGpus * o.fillShare, [], o.seed);
  // Whole seconds only; the first is a ramp.
  const buckets = new Array<number>(Math.floor(f.wallSeconds)).fill(0);
  for (const t of f.doneAt) {
    const b = Math.floor(t / 1000);
    if (b < buckets.length) buckets[b]!++;
  }
  const invariant = await checkNoDoubleBooking(o.brokers[0]!, f.promised, o.gpusPerNode);
  return {
    label: o.label,
    callers: o.callers,
    calls: f.latencies.length + f.errors,
    placed: f.doneAt.length,
    refused: f.refused,
    errors: f.errors,
    errorSamples: f.errorSamples,
    wallSeconds: f.wallSeconds,
    placementsPerSecond: f.doneAt.length / f.wallSeconds,
    perSecond: medianRange(buckets.length > 2 ? buckets.slice(1) : buckets),
    latencyMs: summarize(f.latencies),
    reservedGpus: f.reservedGpus,
    fill: f.reservedGpus / o.totalGpus,
    brokerUsage: o.brokers.map((b) => f.usage.get(b.pid)).filter((u): u is ProcUsage => !!u),
    otherUsage: Object.fromEntries(
      (o.alsoWatch ?? []).flatMap((w) => {
        const u = f.usage.get(w.pid);
        return u ? [[w.name, u]] : [];
      }),
    ),
    invariant,
    promised: f.promised,
  };
}

export interface FragmentationOptions extends PlacementOptions {
  /** The donors filled (each request names them), so the fill finishes at any scale. */
  donors: string[];
  nodesPerDonor: number;
  /** Reservations already live (from an earlier run), for the invariant check. */
  promisedBefore: Reservation[];
}

/**
 * Fills `donors` to `fillShare` with the request mix, then reads what is left for 8-GPU
 * pods: the share of free GPUs on wholly empty nodes, confirmed with real 8-GPU requests.
 */
export async function runFragmentation(o: FragmentationOptions): Promise<FragmentationRun> {
  const gpus = o.donors.length * o.nodesPerDonor * o.gpusPerNode;
  const f = await fill(o, gpus * o.fillShare, o.donors, o.seed + 100);
  const inSet = new Set(o.donors);
  const { offloads } = await o.brokers[0]!.rest<{ offloads: OffloadRow[] }>(
    'GET',
    '/api/v1/offloads?state=open,bound',
  );
  const mine = offloads.filter((r) => inSet.has(r.donor));
  const usedNodes = new Set(mine.map((r) => `${r.donor}/${r.node}`));
  const freeGpus = gpus - mine.reduce((s, r) => s + r.gpus, 0);
  const fullyFreeNodes = o.donors.length * o.nodesPerDonor - usedNodes.size;
  const probeTried = Math.min(o.probe8, fullyFreeNodes + 1);
  const probe = requestMix(o.origin.id, o.seed + 200, o.donors);
  const probed = (
    await pool(
      Array.from({ length: probeTried }, (_, i) => i),
      16,
      async (i) =>
        reservationOf(
          await o.origin.clients[i % o.origin.clients.length]!.place(probe(1e9 + i, 8)),
        ),
    )
  ).filter((r): r is Reservation => r !== undefined);
  const invariant = await checkNoDoubleBooking(
    o.brokers[0]!,
    [...o.promisedBefore, ...f.promised, ...probed],
    o.gpusPerNode,
  );
  return {
    label: o.label,
    donors: o.donors.length,
    gpus,
    placed: f.doneAt.length,
    fill: f.reservedGpus / gpus,
    wallSeconds: f.wallSeconds,
    freeGpus,
    fullyFreeNodes,
    share8: freeGpus > 0 ? (8 * fullyFreeNodes) / freeGpus : 0,
    probePlaced: probed.length,
    probeTried,
    errors: f.errors,
    invariant,
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
