// Benchmark 5: broker scale. With a fleet of simulated agents connected (each its own mTLS
// stream, a capacity report and a heartbeat every 5 s), the broker's CPU and memory are read
// from /proc, first with the agents alone, then while autocannon sends GET /api/v1/capacity
// at a fixed rate, in a few rounds so the latency percentiles come with their spread.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { VIEWER_TOKEN, type BrokerProcess } from './lib/broker.js';
import type { Fleet } from './lib/fleet.js';
import { ProcWatch, type ProcUsage } from './lib/proc.js';
import { medianRange, type Estimate } from './lib/stats.js';

const run = promisify(execFile);
const AUTOCANNON = fileURLToPath(
  new URL('../../../node_modules/autocannon/autocannon.js', import.meta.url),
);

export interface ScaleOptions {
  broker: BrokerProcess;
  fleet: Fleet;
  idleSeconds: number;
  rounds: number;
  roundSeconds: number;
  rate: number;
  connections: number;
}

export interface QueryRound {
  requests: number;
  rate: number;
  non2xx: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface ScaleRun {
  agents: number;
  connected: number;
  disconnects: number;
  reports: number;
  idle: ProcUsage;
  underQueries: ProcUsage;
  rounds: QueryRound[];
  p50: Estimate;
  p99: Estimate;
  achievedRate: Estimate;
  lifetimePeakRssBytes: number;
  capacityRows: number;
}

interface AutocannonJson {
  requests: { total: number; average: number };
  latency: { p50: number; p90: number; p99: number; max: number };
  non2xx: number;
  errors: number;
  duration: number;
}

async function autocannon(o: ScaleOptions, url: string): Promise<QueryRound> {
  const { stdout } = await run(
    process.execPath,
    [
      AUTOCANNON,
      '--json',
      '--overallRate',
      String(o.rate),
      '--connections',
      String(o.connections),
      '--duration',
      String(o.roundSeconds),
      '--headers',
      `authorization=Bearer ${VIEWER_TOKEN}`,
      url,
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const j = JSON.parse(stdout) as AutocannonJson;
  return {
    requests: j.requests.total,
    rate: j.requests.total / j.duration,
    non2xx: j.non2xx,
    errors: j.errors,
    p50: j.latency.p50,
    p90: j.latency.p90,
    p99: j.latency.p99,
    max: j.latency.max,
  };
}

export async function runScale(o: ScaleOptions): Promise<ScaleRun> {
  const pid = o.broker.pid;
  const idleWatch = new ProcWatch([pid]);
  await sleep(o.idleSeconds * 1000);
  const idle = idleWatch.stop().get(pid)!;

  const url = `${o.broker.restUrl}/api/v1/capacity`;
  const sample = await o.broker.rest<{ rows: unknown[] }>('GET', '/api/v1/capacity');
  const watch = new ProcWatch([pid]);
  const rounds: QueryRound[] = [];
  for (let i = 0; i < o.rounds; i++) rounds.push(await autocannon(o, url));
  const underQueries = watch.stop().get(pid)!;
  const stats = await o.fleet.stats();
  return {
    agents: stats.joined,
    connected: stats.connected,
    disconnects: stats.disconnects,
    reports: stats.reports,
    idle,
    underQueries,
    rounds,
    p50: medianRange(rounds.map((r) => r.p50)),
    p99: medianRange(rounds.map((r) => r.p99)),
    achievedRate: medianRange(rounds.map((r) => r.rate)),
    lifetimePeakRssBytes: underQueries.lifetimePeakRssBytes,
    capacityRows: sample.rows.length,
  };
}
