// Benchmarks 4 and 5 on real broker processes: scale (agents connected, capacity queries)
// and placement (SQLite bin-pack and spread, Redis with one and three replicas).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startBrokerProcess, type BrokerOptions, type BrokerProcess } from './lib/broker.js';
import { startFleet, waitAllReady, type Fleet } from './lib/fleet.js';
import { joinOrigin, type Origin } from './lib/origin.js';
import {
  releaseAll,
  runFragmentation,
  runPlacement,
  type FragmentationRun,
  type PlacementRun,
} from './placement.js';
import { runScale, type ScaleRun } from './scale.js';
import { GANG_SIZES, runGangs, type GangRun } from './gang.js';

const exec = promisify(execFile);

export interface BrokerBenchSizes {
  donors: number;
  nodes: number;
  gpusPerNode: number;
  workers: number;
  callers: number;
  channels: number;
  fillShare: number;
  maxSeconds: number;
  probe8: number;
  /** Donors filled for the fragmentation reading. */
  fragmentationDonors: number;
  scaleIdleSeconds: number;
  scaleRounds: number;
  scaleRoundSeconds: number;
  queryRate: number;
}

export const FULL: BrokerBenchSizes = {
  donors: 1000,
  nodes: 8,
  gpusPerNode: 8,
  workers: 2,
  callers: 64,
  channels: 8,
  fillShare: 0.6,
  maxSeconds: 60,
  probe8: 100,
  fragmentationDonors: 64,
  scaleIdleSeconds: 30,
  scaleRounds: 3,
  scaleRoundSeconds: 20,
  queryRate: 200,
};

export const QUICK: BrokerBenchSizes = {
  donors: 50,
  nodes: 8,
  gpusPerNode: 8,
  workers: 2,
  callers: 64,
  channels: 8,
  fillShare: 0.6,
  maxSeconds: 8,
  probe8: 10,
  fragmentationDonors: 12,
  scaleIdleSeconds: 3,
  scaleRounds: 2,
  scaleRoundSeconds: 4,
  queryRate: 200,
};

export interface BrokerBenchOptions {
  sizes: BrokerBenchSizes;
  workDir: string;
  scale: boolean;
  placement: boolean;
  /** Benchmark 6: gangs racing from several origins. */
  gang?: boolean;
  /** Stores to run placement on (default both). */
  stores?: ('sqlite' | 'redis')[];
  cpuProfDir?: string;
  log: (line: string) => void;
}

export interface BrokerBenchResults {
  scale?: ScaleRun & { setupSeconds: number; joinP50Ms: number };
  placement: PlacementRun[];
  fragmentation: FragmentationRun[];
  gangs?: GangRun[];
}

interface Deployment {
  brokers: BrokerProcess[];
  fleet: Fleet;
}

async function deploy(
  o: BrokerBenchOptions,
  name: string,
  opts: Omit<BrokerOptions, 'dir'>,
): Promise<Deployment> {
  const t0 = performance.now();
  const broker = await startBrokerProcess({
    ...opts,
    dir: join(o.workDir, name),
    ...(o.cpuProfDir ? { cpuProfDir: join(o.cpuProfDir, name) } : {}),
  });
  o.log(`${name}: broker pid ${broker.pid}; joining ${o.sizes.donors} simulated agents`);
  let fleet: Fleet | undefined;
  try {
    fleet = await startFleet({
      brokers: [broker],
      donors: o.sizes.donors,
      nodes: o.sizes.nodes,
      gpusPerNode: o.sizes.gpusPerNode,
      reportEveryMs: 5_000,
      workers: o.sizes.workers,
      log: o.log,
    });
    await waitAllReady(broker, fleet.ids, 120_000);
  } catch (err) {
    await fleet?.stop();
    await broker.stop();
    throw err;
  }
  o.log(
    `${name}: ${o.sizes.donors} agents Ready in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  return { brokers: [broker], fleet };
}

/** Throughput run over all donors, then (optionally) the fragmentation fill; each checked. */
async function placementRun(
  o: BrokerBenchOptions,
  label: string,
  d: Deployment,
  origin: Origin,
  out: BrokerBenchResults,
  fragmentation: boolean,
  alsoWatch: { name: string; pid: number }[] = [],
): Promise<void> {
  const s = o.sizes;
  const common = {
    alsoWatch,
    brokers: d.brokers,
    origin,
    callers: s.callers,
    fillShare: s.fillShare,
    maxSeconds: s.maxSeconds,
    gpusPerNode: s.gpusPerNode,
    seed: 11,
    probe8: s.probe8,
  };
  o.log(
    `placement ${label}: ${s.callers} callers, up to ${s.maxSeconds} s or ${s.fillShare * 100}% of GPUs`,
  );
  const run = await runPlacement({
    ...common,
    label,
    totalGpus: s.donors * s.nodes * s.gpusPerNode,
  });
  delete run.promised;
  out.placement.push(run);
  o.log(
    `placement ${label}: ${run.placed} placed in ${run.wallSeconds.toFixed(1)} s (${run.placementsPerSecond.toFixed(0)}/s), p99 ${run.latencyMs.p99.value.toFixed(1)} ms, invariant ${run.invariant.ok ? 'ok' : 'BROKEN'}`,
  );
  await releaseAll(d.brokers[0]!, origin);
  if (!fragmentation) return;
  const donors = d.fleet.ids.slice(0, s.fragmentationDonors);
  const frag = await runFragmentation({
    ...common,
    label,
    totalGpus: donors.length * s.nodes * s.gpusPerNode,
    donors,
    nodesPerDonor: s.nodes,
    promisedBefore: [],
    // The fill must finish: it is what is measured.
    maxSeconds: 30 * 60,
  });
  out.fragmentation.push(frag);
  o.log(
    `fragmentation ${label}: ${frag.donors} donors filled to ${(frag.fill * 100).toFixed(0)}%; 8-GPU share ${(frag.share8 * 100).toFixed(1)}%, invariant ${frag.invariant.ok ? 'ok' : 'BROKEN'}`,
  );
  await releaseAll(d.brokers[0]!, origin);
}

/** Benchmark 6 on this deployment, its result kept in `out`. */
async function gangRun(
  o: BrokerBenchOptions,
  label: string,
  d: Deployment,
  out: BrokerBenchResults,
): Promise<void> {
  const s = o.sizes;
  const donors = d.fleet.ids.slice(0, GANG_SIZES.donors);
  o.log(
    `gangs ${label}: ${GANG_SIZES.gangs} gangs of ${GANG_SIZES.members} from ${GANG_SIZES.origins} origins on ${donors.length} donors`,
  );
  const g = await runGangs(label, d.brokers, donors, s.nodes, s.gpusPerNode);
  (out.gangs ??= []).push(g);
  o.log(
    `gangs ${label}: ${g.placed} placed in ${g.wallSeconds.toFixed(2)} s, p99 ${g.latencyMs.p99.value.toFixed(1)} ms, ${g.partialGangs} partial, invariant ${g.invariant.ok ? 'ok' : 'BROKEN'}`,
  );
}

/** The local Redis server's pid, to read its CPU next to the brokers'. */
async function redisPid(): Promise<{ name: string; pid: number }[]> {
  try {
    const { stdout } = await exec('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'INFO', 'server']);
    const m = /^process_id:(\d+)/m.exec(stdout);
    return m ? [{ name: 'redis-server', pid: Number(m[1]) }] : [];
  } catch {
    return [];
  }
}

async function redisCleanup(prefix: string): Promise<void> {
  const script =
    "local n=0 for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n=n+1 end return n";
  await exec('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'EVAL', script, '0', `${prefix}*`]);
}

/** Fills `out` as it goes, so what was measured survives a later failure. */
export async function runBrokerBenches(
  o: BrokerBenchOptions,
  out: BrokerBenchResults = { placement: [], fragmentation: [] },
): Promise<BrokerBenchResults> {
  const s = o.sizes;
  // SQLite: scale first (an empty broker with every agent connected), then placement.
  const sqlitePlacement = o.placement && (!o.stores || o.stores.includes('sqlite'));
  const sqliteGang = !!o.gang && (!o.stores || o.stores.includes('sqlite'));
  let d: Deployment | undefined;
  let origin: Origin | undefined;
  if (o.scale || sqlitePlacement || sqliteGang) d = await deploy(o, 'sqlite', { store: 'sqlite' });
  if (d)
    try {
      if (o.scale) {
        o.log(
          `scale: ${s.scaleIdleSeconds} s idle, then ${s.scaleRounds} × ${s.scaleRoundSeconds} s of capacity queries at ${s.queryRate}/s`,
        );
        const scale = await runScale({
          broker: d.brokers[0]!,
          fleet: d.fleet,
          idleSeconds: s.scaleIdleSeconds,
          rounds: s.scaleRounds,
          roundSeconds: s.scaleRoundSeconds,
          rate: s.queryRate,
          connections: 10,
        });
        const joins = [...d.fleet.joinMs].sort((a, b) => a - b);
        out.scale = {
          ...scale,
          setupSeconds: d.fleet.setupSeconds,
          joinP50Ms: joins[Math.floor(joins.length / 2)] ?? Number.NaN,
        };
      }
      if (sqlitePlacement) {
        const tp = performance.now();
        origin = await joinOrigin(d.brokers, 'bench-origin', d.fleet.ids, s.channels);
        o.log(
          `origin joined and peered with ${d.fleet.ids.length} donors in ${((performance.now() - tp) / 1000).toFixed(0)} s`,
        );
        await placementRun(o, 'sqlite, bin-pack', d, origin, out, true);
        // The same data on a broker restarted with the spread policy.
        await d.brokers[0]!.stop();
        const restarted = await startBrokerProcess({
          ...d.brokers[0]!.options,
          placementPolicy: 'spread',
          ...(o.cpuProfDir ? { cpuProfDir: join(o.cpuProfDir, 'sqlite-spread') } : {}),
        });
        d = { ...d, brokers: [restarted] };
        await d.fleet.retarget([restarted.grpcAddress]);
        await waitAllReady(restarted, d.fleet.ids, 600_000);
        await origin.reconnect(d.brokers, s.channels);
        await placementRun(o, 'sqlite, spread', d, origin, out, true);
      }
      if (sqliteGang) await gangRun(o, 'sqlite', d, out);
    } finally {
      await origin?.close();
      await d.fleet.stop();
      for (const b of d.brokers) await b.stop();
    }
  if ((!o.placement && !o.gang) || (o.stores && !o.stores.includes('redis'))) return out;

  // Redis: one replica, then three sharing the store and the CA.
  const prefix = `spillway-bench-${process.pid}-${Date.now()}:`;
  try {
    d = await deploy(o, 'redis-1', { store: 'redis', redisPrefix: prefix });
    origin = undefined;
    try {
      origin = await joinOrigin(d.brokers, 'bench-origin', d.fleet.ids, s.channels);
      if (o.placement) {
        await placementRun(o, 'redis, 1 replica', d, origin, out, false, await redisPid());
      }
      const first = d.brokers[0]!;
      for (const i of [2, 3]) {
        d.brokers.push(
          await startBrokerProcess({
            store: 'redis',
            redisPrefix: prefix,
            dir: join(o.workDir, `redis-${i}`),
            pkiDir: first.pkiDir,
            ...(o.cpuProfDir ? { cpuProfDir: join(o.cpuProfDir, `redis-${i}`) } : {}),
          }),
        );
      }
      await d.fleet.retarget(d.brokers.map((b) => b.grpcAddress));
      await waitAllReady(first, d.fleet.ids, 600_000);
      await origin.reconnect(d.brokers, s.channels);
      if (o.placement) {
        await placementRun(o, 'redis, 3 replicas', d, origin, out, false, await redisPid());
      }
      // Gangs racing through three replicas at once: the Lua step alone keeps them whole.
      if (o.gang) await gangRun(o, 'redis, 3 replicas', d, out);
    } finally {
      await origin?.close();
      await d.fleet.stop();
      for (const b of d.brokers) await b.stop();
    }
  } finally {
    await redisCleanup(prefix).catch((err: unknown) =>
      o.log(`redis cleanup failed: ${String(err)}`),
    );
  }
  return out;
}
