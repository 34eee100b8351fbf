// Benchmark 6: gangs over real gRPC + mTLS. 4 origins place 64 gangs of 8 one-GPU pods at
// once (PlaceGang: every member on one donor, or none) on fewer GPUs than all of them need,
// so gangs race; then every gang is checked whole or absent, and every node within its GPUs.
import type { PlaceGangRequest } from '@spillway/api';
import type { BrokerProcess } from './lib/broker.js';
import { pool } from './lib/fleet.js';
import { joinOrigin, type Origin } from './lib/origin.js';
import {
  checkNoDoubleBooking,
  releaseAll,
  type InvariantCheck,
  type Reservation,
} from './placement.js';
import { summarize, type Summary } from './lib/stats.js';

export interface GangBenchSizes {
  origins: number;
  gangs: number;
  members: number;
  /** Donors the gangs may use: fewer GPUs than all gangs need, so some are refused. */
  donors: number;
}

export const GANG_SIZES: GangBenchSizes = { origins: 4, gangs: 64, members: 8, donors: 6 };

export interface GangRun {
  label: string;
  origins: number;
  gangs: number;
  members: number;
  capacityGpus: number;
  placed: number;
  refused: Record<string, number>;
  errors: number;
  errorSamples: string[];
  wallSeconds: number;
  gangsPerSecond: number;
  latencyMs: Summary;
  /** Gangs with some but not all members holding a live reservation, or on several donors. */
  partialGangs: number;
  /** Placed gangs the broker's listing does not show whole. */
  placedNotWhole: number;
  invariant: InvariantCheck;
}

interface OffloadRow {
  donor: string;
  pod: { uid: string };
}

/** Joins the origins (peered with `donors`), races the gangs, checks, releases, closes. */
export async function runGangs(
  label: string,
  brokers: BrokerProcess[],
  donors: readonly string[],
  nodesPerDonor: number,
  gpusPerNode: number,
  sizes: GangBenchSizes = GANG_SIZES,
): Promise<GangRun> {
  const run = `${Date.now().toString(36)}`;
  const origins: Origin[] = [];
  try {
    for (let i = 0; i < sizes.origins; i++) {
      origins.push(await joinOrigin(brokers, `gang-origin-${run}-${i}`, donors, 2));
    }
    const requests: { origin: Origin; req: PlaceGangRequest }[] = Array.from(
      { length: sizes.gangs },
      (_, g) => {
        const origin = origins[g % origins.length]!;
        return {
          origin,
          req: {
            gang: `bench/gang-${g}`,
            donors: [...donors],
            members: Array.from({ length: sizes.members }, (_, m) => ({
              pod: {
                origin_cluster: origin.id,
                namespace: 'bench',
                name: `gang-${g}-${m}`,
                uid: `${run}-g${g}-m${m}`,
              },
              resource_name: 'nvidia.com/gpu',
              gpus: 1,
            })),
          },
        };
      },
    );
    const latencies: number[] = [];
    const promised: Reservation[] = [];
    const placedGangs: PlaceGangRequest[] = [];
    const refused: Record<string, number> = {};
    const errorSamples: string[] = [];
    let errors = 0;
    const t0 = performance.now();
    await Promise.all(
      requests.map(async ({ origin, req }, g) => {
        const client = origin.clients[g % origin.clients.length]!;
        const s = performance.now();
        try {
          const res = await client.placeGang(req);
          latencies.push(performance.now() - s);
          if (res.placed) {
            placedGangs.push(req);
            for (const r of res.reservations) {
              promised.push({
                id: r.id,
                donor: r.donor_cluster,
                node: r.node,
                gpus: r.gpus,
                podUid: r.pod?.uid ?? '',
              });
            }
          } else {
            const code = res.reason_code || 'UNKNOWN';
            refused[code] = (refused[code] ?? 0) + 1;
          }
        } catch (err) {
          errors++;
          if (errorSamples.length < 5) errorSamples.push(String(err));
        }
      }),
    );
    const wallSeconds = (performance.now() - t0) / 1000;
    const invariant = await checkNoDoubleBooking(brokers[0]!, promised, gpusPerNode);
    // Whole or absent, per the broker's own listing.
    const rows: OffloadRow[] = [];
    for (const o of origins) {
      const { offloads } = await brokers[0]!.rest<{ offloads: OffloadRow[] }>(
        'GET',
        `/api/v1/offloads?origin=${o.id}&state=open,bound`,
      );
      rows.push(...offloads);
    }
    const byUid = new Map(rows.map((r) => [r.pod.uid, r.donor]));
    let partialGangs = 0;
    let placedNotWhole = 0;
    const placedSet = new Set(placedGangs);
    for (const { req } of requests) {
      const held = (req.members ?? []).map((m) => byUid.get(m.pod?.uid ?? ''));
      const present = held.filter((d) => d !== undefined);
      const whole = present.length === held.length && new Set(present).size === 1;
      if (present.length > 0 && !whole) partialGangs++;
      if (placedSet.has(req) && !whole) placedNotWhole++;
    }
    for (const o of origins) await releaseAll(brokers[0]!, o);
    return {
      label,
      origins: sizes.origins,
      gangs: sizes.gangs,
      members: sizes.members,
      capacityGpus: donors.length * nodesPerDonor * gpusPerNode,
      placed: placedGangs.length,
      refused,
      errors,
      errorSamples,
      wallSeconds,
      gangsPerSecond: placedGangs.length / wallSeconds,
      latencyMs: summarize(latencies),
      partialGangs,
      placedNotWhole,
      invariant,
    };
  } finally {
    await pool(origins, 4, (o) => o.close());
  }
}
