#!/usr/bin/env node
// Spillway's benchmarks: `npm run bench [-- --quick] [--only NAME[,NAME]] [--out FILE]
// [--cpu-prof] [--keep]`. Prints a table, writes JSON, and exits non-zero when an invariant
// breaks (a GPU promised twice, a pod that never ran) — never because a goal was missed.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FULL, QUICK, runBrokerBenches, type BrokerBenchResults } from './brokers.js';
import { startBed } from './lib/bed.js';
import { GOALS, MB, goal } from './goals.js';
import {
  deleteAll,
  offloadPods,
  runLatency,
  runStatus,
  runThroughput,
  type LatencyRun,
  type StatusRun,
  type ThroughputRun,
} from './offload.js';
import { machine, table, type Invariant, type Row } from './lib/report.js';
import { fmt, num } from './lib/stats.js';
import { BENCHES, BenchUsageError, parseBenchArgs, wants, type BenchOptions } from './options.js';

const USAGE = `Usage: npm run bench -- [flags]

  --quick          small sizes for CI (under 5 minutes); fails only on a broken invariant
  --only NAMES     comma-separated subset of: ${BENCHES.join(', ')}
  --out FILE       JSON results (default e2e/bench/results/<timestamp>.json)
  --cpu-prof       write CPU profiles of the Spillway daemons next to the JSON
                   (summarize one: node e2e/dist/bench/profile.js FILE.cpuprofile)
  --stores LIST    placement on these stores only: sqlite, redis (default both)
                   (memory is printed in MB, 10^6 bytes, the unit of the goals)
  --shim-workers N the shim's --workers (reconcile workers per controller; default its own)
  --keep           keep the work directory (logs, data) for inspection
  --help
`;

const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

interface BedBenchSizes {
  donorNodes: number;
  gpusPerNode: number;
  latencyPods: number;
  latencyIntervalMs: number;
  statusChanges: number;
  statusPods: number;
  statusIntervalMs: number;
  throughputPods: number;
  throughputConcurrency: number;
  timeoutMs: number;
}

const BED_FULL: BedBenchSizes = {
  donorNodes: 20,
  gpusPerNode: 64,
  latencyPods: 200,
  latencyIntervalMs: 250,
  statusChanges: 200,
  statusPods: 20,
  statusIntervalMs: 100,
  throughputPods: 2000,
  throughputConcurrency: 16,
  timeoutMs: 30 * 60_000,
};

const BED_QUICK: BedBenchSizes = {
  donorNodes: 2,
  gpusPerNode: 32,
  latencyPods: 20,
  latencyIntervalMs: 250,
  statusChanges: 20,
  statusPods: 10,
  statusIntervalMs: 100,
  throughputPods: 30,
  throughputConcurrency: 16,
  timeoutMs: 120_000,
};

function latencyRows(l: LatencyRun, rows: Row[], inv: Invariant[]): void {
  const b = '1 offload latency';
  rows.push(
    {
      bench: b,
      metric: `direct in a donor: time to Running p50 (${l.direct.n} pods)`,
      value: fmt(l.direct.p50, ' ms'),
    },
    {
      bench: b,
      metric: 'direct in a donor: p95 / p99',
      value: `${fmt(l.direct.p95, ' ms')} / ${fmt(l.direct.p99, ' ms')}`,
    },
    {
      bench: b,
      metric: `offloaded from the origin: p50 (${l.offloaded.n} pods)`,
      value: fmt(l.offloaded.p50, ' ms'),
    },
    {
      bench: b,
      metric: 'offloaded from the origin: p95 / p99',
      value: `${fmt(l.offloaded.p95, ' ms')} / ${fmt(l.offloaded.p99, ' ms')}`,
    },
    {
      bench: b,
      metric: 'offloaded p50 / direct p50',
      value: fmt(l.ratioP50, '×'),
      ...goal('offloadLatencyP50Ratio', l.ratioP50.value),
    },
    { bench: b, metric: 'offloaded p95 / direct p95', value: fmt(l.ratioP95, '×') },
    {
      bench: b,
      metric: 'offloaded p99 / direct p99',
      value: fmt(l.ratioP99, '×'),
      ...goal('offloadLatencyP99Ratio', l.ratioP99.value),
    },
    {
      bench: b,
      metric: 'offloaded: p50 of each stage (shim log)',
      value: Object.entries(l.stagesP50Ms)
        .map(([k, v]) => `${k} ${num(v)} ms`)
        .join(', '),
    },
  );
  inv.push({
    bench: b,
    what: 'every pod ran',
    ok: l.neverRan.direct === 0 && l.neverRan.offloaded === 0,
    detail: `never Running: ${l.neverRan.direct} direct, ${l.neverRan.offloaded} offloaded`,
  });
}

function statusRows(st: StatusRun, rows: Row[], inv: Invariant[]): void {
  const b = '2 status propagation';
  rows.push(
    {
      bench: b,
      metric: `donor status change → origin pod, p50 (${st.latencyMs.n} changes, ${st.pods} pods)`,
      value: fmt(st.latencyMs.p50, ' ms'),
    },
    {
      bench: b,
      metric: 'p99',
      value: fmt(st.latencyMs.p99, ' ms'),
      ...goal('statusP99Ms', st.latencyMs.p99.value),
    },
  );
  inv.push({
    bench: b,
    what: 'every status change reached the origin',
    ok: st.lost === 0,
    detail: `${st.lost} lost`,
  });
}

function throughputRows(t: ThroughputRun, rows: Row[], inv: Invariant[]): void {
  const b = '3 offload throughput';
  rows.push(
    {
      bench: b,
      metric: `direct in the donors: pods/s to Running (${t.direct.pods} pods; per-second median [range])`,
      value: `${num(t.direct.podsPerSecond)} (${fmt(t.direct.perSecond)})`,
    },
    {
      bench: b,
      metric: 'offloaded from the origin: pods/s to Running',
      value: `${num(t.offloaded.podsPerSecond)} (${fmt(t.offloaded.perSecond)})`,
    },
    {
      bench: b,
      metric: 'offloaded / direct',
      value: `${num(t.ratio)}×`,
      ...goal('throughputRatio', t.ratio),
    },
    {
      bench: b,
      metric: 'shim CPU (average over the offloaded run)',
      value: `${num(t.shim.cores)} cores (${num(t.shim.cpuSeconds)} CPU s in ${num(t.shim.wallSeconds)} s)`,
      ...goal('shimCores', t.shim.cores),
    },
    {
      bench: b,
      metric: 'shim peak RSS',
      value: `${num(t.shim.peakRssBytes / MB)} MB`,
      ...goal('shimPeakRssMB', t.shim.peakRssBytes / MB),
    },
    {
      bench: b,
      metric: 'agents (3) CPU / peak RSS (sum)',
      value: `${num(t.agents.cores)} cores (${num(t.agents.cpuSeconds)} CPU s) / ${num(t.agents.peakRssBytes / MB)} MB`,
    },
    {
      bench: b,
      metric: 'broker CPU / peak RSS',
      value: `${num(t.broker.cores)} cores / ${num(t.broker.peakRssBytes / MB)} MB`,
    },
  );
  inv.push({
    bench: b,
    what: 'every pod ran',
    ok: t.direct.ran === t.direct.pods && t.offloaded.ran === t.offloaded.pods,
    detail: `direct ${t.direct.ran}/${t.direct.pods}, offloaded ${t.offloaded.ran}/${t.offloaded.pods}`,
  });
}

function brokerRows(r: BrokerBenchResults, rows: Row[], inv: Invariant[]): void {
  const s = r.scale;
  if (s) {
    const b = '5 broker scale';
    const peakMB = Math.max(s.idle.peakRssBytes, s.underQueries.peakRssBytes) / MB;
    rows.push(
      {
        bench: b,
        metric: 'agents connected (own mTLS stream each)',
        value: `${s.connected}/${s.agents}, ${s.disconnects} disconnects`,
      },
      {
        bench: b,
        metric: 'broker CPU, agents reporting every 5 s',
        value: `${num(s.idle.cores)} cores`,
      },
      {
        bench: b,
        metric: `broker CPU, agents + ${num(s.achievedRate.value)} capacity queries/s`,
        value: `${num(s.underQueries.cores)} cores`,
      },
      {
        bench: b,
        metric: 'broker RSS, peak while connected',
        value: `${num(peakMB)} MB`,
        ...goal('brokerScalePeakRssMB', peakMB),
      },
      {
        bench: b,
        metric: 'broker RSS, lifetime peak (incl. joins)',
        value: `${num(s.lifetimePeakRssBytes / MB)} MB`,
      },
      {
        bench: b,
        metric: 'GET /api/v1/capacity p50 (median [range] of rounds)',
        value: fmt(s.p50, ' ms'),
      },
      {
        bench: b,
        metric: 'GET /api/v1/capacity p99 (median [range] of rounds)',
        value: fmt(s.p99, ' ms'),
        ...goal('capacityP99Ms', s.p99.value),
      },
    );
    inv.push({
      bench: b,
      what: 'every agent still connected',
      ok: s.connected === s.agents,
      detail: `${s.connected}/${s.agents}`,
    });
    const bad = s.rounds.reduce((n, q) => n + q.non2xx + q.errors, 0);
    inv.push({
      bench: b,
      what: 'capacity queries answered 2xx',
      ok: bad === 0,
      detail: `${bad} failed`,
    });
  }
  for (const p of r.placement) {
    const b = `4 placement (${p.label})`;
    const sqlite = p.label.startsWith('sqlite');
    rows.push(
      {
        bench: b,
        metric: `placements/s, ${p.callers} callers (per-second median [range])`,
        value: `${num(p.placementsPerSecond)} (${fmt(p.perSecond)})`,
        ...goal(
          sqlite ? 'placementsPerSecondSqlite' : 'placementsPerSecondRedis',
          p.placementsPerSecond,
        ),
      },
      { bench: b, metric: 'Place latency p50', value: fmt(p.latencyMs.p50, ' ms') },
      {
        bench: b,
        metric: 'Place latency p99',
        value: fmt(p.latencyMs.p99, ' ms'),
        ...(sqlite ? goal('placeP99MsSqlite', p.latencyMs.p99.value) : {}),
      },
      {
        bench: b,
        metric: 'GPUs reserved / broker CPU',
        value: `${num(p.fill * 100)}% of all in ${num(p.wallSeconds)} s; broker ${p.brokerUsage.map((u) => num(u.cores)).join(' + ')} cores${Object.entries(
          p.otherUsage,
        )
          .map(([k, u]) => `, ${k} ${num(u.cores)}`)
          .join('')}`,
      },
      {
        bench: b,
        metric: 'double-booked GPUs',
        value: String(p.invariant.overbookedNodes + p.invariant.overbookedByClients),
        ...goal('doubleBookedGpus', p.invariant.overbookedNodes + p.invariant.overbookedByClients),
      },
    );
    inv.push({
      bench: b,
      what: 'no GPU promised twice',
      ok: p.invariant.ok,
      detail: JSON.stringify({ ...p.invariant, ok: undefined }),
    });
    if (p.errors > 0) {
      inv.push({
        bench: b,
        what: 'Place calls answered',
        ok: false,
        detail: `${p.errors} errors: ${p.errorSamples.join('; ')}`,
      });
    }
  }
}

function fragmentationRows(r: BrokerBenchResults, rows: Row[], inv: Invariant[]): void {
  for (const f of r.fragmentation) {
    const b = `4 fragmentation (${f.label})`;
    rows.push(
      {
        bench: b,
        metric: `8-GPU requests that still fit after a ${num(f.fill * 100)}% fill of ${f.donors} donors`,
        value: `${num(f.share8 * 100)}% (${f.fullyFreeNodes} empty nodes, ${f.freeGpus} free GPUs)`,
      },
      {
        bench: b,
        metric: 'double-booked GPUs',
        value: String(f.invariant.overbookedNodes + f.invariant.overbookedByClients),
        ...goal('doubleBookedGpus', f.invariant.overbookedNodes + f.invariant.overbookedByClients),
      },
    );
    inv.push({
      bench: b,
      what: 'no GPU promised twice',
      ok: f.invariant.ok,
      detail: JSON.stringify({ ...f.invariant, ok: undefined }),
    });
    // An 8-GPU request must fit wherever the broker's listing shows an empty node.
    inv.push({
      bench: b,
      what: '8-GPU probe matches the empty nodes',
      ok: f.probePlaced === Math.min(f.probeTried, f.fullyFreeNodes) && f.errors === 0,
      detail: `${f.probePlaced} placed of ${f.probeTried}, ${f.fullyFreeNodes} empty, ${f.errors} errors`,
    });
  }
}

function gangRows(r: BrokerBenchResults, rows: Row[], inv: Invariant[]): void {
  for (const g of r.gangs ?? []) {
    const b = `6 gangs (${g.label})`;
    rows.push(
      {
        bench: b,
        metric: `gangs of ${g.members} × 1 GPU placed/s, ${g.gangs} at once from ${g.origins} origins on ${g.capacityGpus} GPUs`,
        value: `${num(g.gangsPerSecond)} (${g.placed} placed, refused ${JSON.stringify(g.refused)})`,
      },
      { bench: b, metric: 'PlaceGang latency p50', value: fmt(g.latencyMs.p50, ' ms') },
      { bench: b, metric: 'PlaceGang latency p99', value: fmt(g.latencyMs.p99, ' ms') },
      { bench: b, metric: 'partial gangs', value: String(g.partialGangs + g.placedNotWhole) },
      {
        bench: b,
        metric: 'double-booked GPUs',
        value: String(g.invariant.overbookedNodes + g.invariant.overbookedByClients),
        ...goal('doubleBookedGpus', g.invariant.overbookedNodes + g.invariant.overbookedByClients),
      },
    );
    inv.push({
      bench: b,
      what: 'every gang whole or absent',
      ok: g.partialGangs === 0 && g.placedNotWhole === 0,
      detail: `${g.partialGangs} partial, ${g.placedNotWhole} placed but not whole`,
    });
    inv.push({
      bench: b,
      what: 'no GPU promised twice',
      ok: g.invariant.ok,
      detail: JSON.stringify({ ...g.invariant, ok: undefined }),
    });
    // More gangs than the GPUs hold: never more placed than fit, every call answered.
    const fits = Math.floor(g.capacityGpus / g.members);
    inv.push({
      bench: b,
      what: 'no more gangs placed than the GPUs hold, PlaceGang answered',
      ok: g.errors === 0 && g.placed <= fits && g.placed > 0,
      detail: `${g.placed} placed, ${Math.min(fits, g.gangs)} fit, ${g.errors} errors ${g.errorSamples.join('; ')}`,
    });
  }
}

async function main(): Promise<number> {
  let opts: BenchOptions;
  try {
    opts = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof BenchUsageError)) throw err;
    process.stderr.write(`spillway bench: ${err.message}; see --help\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const want = (n: (typeof BENCHES)[number]): boolean => wants(opts, n);
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const out = resolve(opts.out ?? join(RESULTS_DIR, `${stamp}.json`));
  await mkdir(dirname(out), { recursive: true });
  const cpuProfDir = opts.cpuProf ? join(dirname(out), `profiles-${stamp}`) : undefined;
  const workDir = await mkdtemp(join(tmpdir(), 'spillway-bench-'));
  const mode = opts.quick ? 'quick' : 'full';
  const m0 = machine();
  log(`${mode} run; work dir ${workDir}; ${m0.nproc} cores, load ${m0.loadAvg.join(' ')}`);
  const t0 = performance.now();

  const rows: Row[] = [];
  const invariants: Invariant[] = [];
  const results: Record<string, unknown> = {};
  const failures: string[] = [];
  try {
    if (want('offload') || want('status') || want('throughput')) {
      const z = opts.quick ? BED_QUICK : BED_FULL;
      let bed: Awaited<ReturnType<typeof startBed>> | undefined;
      try {
        bed = await startBed(join(workDir, 'bed'), z, {
          ...(opts.shimWorkers === undefined ? {} : { shimWorkers: opts.shimWorkers }),
          ...(cpuProfDir ? { cpuProfDir } : {}),
          log,
        });
        const bedResults: Record<string, unknown> = {};
        results.testbed = bedResults;
        if (want('status') && !want('offload')) {
          // The status bench changes the status of Running offloaded pods; make only those.
          log(`status propagation: offloading ${z.statusPods} pods to change`);
          await offloadPods(bed, { pods: z.statusPods, timeoutMs: z.timeoutMs });
        }
        if (want('offload')) {
          log(
            `offload latency: ${z.latencyPods} pods each way, one pair every ${z.latencyIntervalMs} ms`,
          );
          const l = await runLatency(bed, {
            pods: z.latencyPods,
            intervalMs: z.latencyIntervalMs,
            timeoutMs: z.timeoutMs,
          });
          bedResults.latency = l;
          latencyRows(l, rows, invariants);
        }
        if (want('status')) {
          log(`status propagation: ${z.statusChanges} changes on ${z.statusPods} pods`);
          const st = await runStatus(bed, {
            changes: z.statusChanges,
            pods: z.statusPods,
            intervalMs: z.statusIntervalMs,
            timeoutMs: 60_000,
          });
          bedResults.status = st;
          statusRows(st, rows, invariants);
        }
        if (want('throughput')) {
          await deleteAll(bed, z.timeoutMs);
          log(`offload throughput: ${z.throughputPods} pods direct, then offloaded`);
          const t = await runThroughput(bed, {
            pods: z.throughputPods,
            concurrency: z.throughputConcurrency,
            timeoutMs: z.timeoutMs,
          });
          bedResults.throughput = t;
          throughputRows(t, rows, invariants);
        }
      } catch (err) {
        failures.push(
          `test bed benchmarks: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
        );
      } finally {
        await bed?.stop();
      }
    }
    if (want('placement') || want('scale') || want('gang')) {
      const r: BrokerBenchResults = { placement: [], fragmentation: [] };
      results.brokers = r;
      try {
        await runBrokerBenches(
          {
            sizes: opts.quick ? QUICK : FULL,
            workDir,
            scale: want('scale'),
            placement: want('placement'),
            gang: want('gang'),
            ...(opts.stores ? { stores: opts.stores } : {}),
            ...(cpuProfDir ? { cpuProfDir } : {}),
            log,
          },
          r,
        );
      } catch (err) {
        failures.push(
          `broker benchmarks: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
        );
      }
      brokerRows(r, rows, invariants);
      fragmentationRows(r, rows, invariants);
      gangRows(r, rows, invariants);
    }
  } finally {
    // Logs are kept when something failed.
    if (!opts.keep && failures.length === 0) await rm(workDir, { recursive: true, force: true });
    else log(`work dir kept: ${workDir}`);
  }

  const seconds = (performance.now() - t0) / 1000;
  const record = {
    spillwayBench: 1,
    mode,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt: started.toISOString(),
    seconds,
    machine: { ...m0, loadAvgAtEnd: machine().loadAvg },
    goals: GOALS,
    rows,
    invariants,
    failures,
    results,
  };
  await writeFile(out, JSON.stringify(record, null, 2) + '\n');
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const i of invariants) {
    process.stdout.write(`${i.ok ? 'ok    ' : 'BROKEN'} ${i.bench}: ${i.what} (${i.detail})\n`);
  }
  for (const f of failures) process.stdout.write(`FAILED ${f}\n`);
  process.stdout.write(
    `\n${mode} run in ${num(seconds)} s; load average ${m0.loadAvg.join(' ')} → ${record.machine.loadAvgAtEnd.join(' ')}; JSON: ${out}\n`,
  );
  if (cpuProfDir) process.stdout.write(`CPU profiles: ${cpuProfDir}\n`);
  return failures.length > 0 || invariants.some((i) => !i.ok) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
