// Benchmarks 1–3 on the test bed (real kube-apiservers, schedulers and kwok nodes):
//  1. offload latency: time to Running of a one-GPU pod created in the origin (offloaded)
//     against the same pod created directly in a donor, interleaved pod by pod;
//  2. status propagation: a donor pod's status change until the origin pod shows it;
//  3. offload throughput: pods per second reaching Running, offloaded against direct, with
//     the shim's and agents' CPU and memory over the offloaded run.
import { readFile } from 'node:fs/promises';
import { Watch, type V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_REMOTE_POD, STRATEGIC_MERGE_PATCH, tenantNamespace } from '@spillway/common';
import type { TestCluster } from '../testbed/index.js';
import { DIRECT_NS, DONORS, OFFLOAD_NS, type Bed } from './lib/bed.js';
import { pool } from './lib/fleet.js';
import { ProcWatch, sumUsage, type ProcUsage } from './lib/proc.js';
import { medianRange, ratioCI, summarize, type Estimate, type Summary } from './lib/stats.js';

/** A one-GPU pod the test bed's kwok runs until it is deleted. */
function gpuPod(name: string): V1Pod {
  return {
    metadata: { name, labels: { 'app.kubernetes.io/name': 'spillway-bench' } },
    spec: {
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'train',
          image: 'example.com/spillway/train:1',
          resources: {
            requests: { cpu: '100m', memory: '128Mi', 'nvidia.com/gpu': '1' },
            limits: { 'nvidia.com/gpu': '1' },
          },
        },
      ],
    },
  };
}

/**
 * Watches one namespace and notes when each pod is first seen Running and when each Ready
 * condition message is first seen: both sides are observed the same way, by this process.
 */
class PodWatch {
  readonly running = new Map<string, number>();
  readonly messages = new Map<string, number>();
  /** Wall-clock ms when each pod was first seen Unschedulable (to line up with the shim's log). */
  readonly unschedulableWall = new Map<string, number>();
  readonly pods = new Map<string, V1Pod>();
  private abort: AbortController | undefined;
  private stopped = false;

  constructor(
    private readonly cluster: TestCluster,
    private readonly namespace: string,
  ) {}

  async start(): Promise<void> {
    const w = new Watch(this.cluster.kubeConfig);
    this.abort = await w.watch(
      `/api/v1/namespaces/${this.namespace}/pods`,
      {},
      (_type: string, pod: V1Pod) => this.seen(pod),
      () => {
        // The API server ends watches now and then: watch again.
        if (!this.stopped) void this.start().catch(() => undefined);
      },
    );
  }

  private seen(pod: V1Pod): void {
    const now = performance.now();
    const name = pod.metadata?.name ?? '';
    this.pods.set(name, pod);
    if (pod.status?.phase === 'Running' && !this.running.has(name)) this.running.set(name, now);
    const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    if (
      scheduled?.status === 'False' &&
      scheduled.reason === 'Unschedulable' &&
      !this.unschedulableWall.has(name)
    ) {
      this.unschedulableWall.set(name, Date.now());
    }
    const msg = pod.status?.conditions?.find((c) => c.type === 'Ready')?.message;
    if (msg && !this.messages.has(`${name}|${msg}`)) this.messages.set(`${name}|${msg}`, now);
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

async function waitUntil(what: string, check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  void what;
  return check();
}

async function deleteAll(bed: Bed, timeoutMs: number): Promise<void> {
  await bed.origin.core.deleteCollectionNamespacedPod({
    namespace: OFFLOAD_NS,
    gracePeriodSeconds: 0,
  });
  for (const d of DONORS) {
    await bed.donors[d].core.deleteCollectionNamespacedPod({
      namespace: DIRECT_NS,
      gracePeriodSeconds: 0,
    });
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const counts = await Promise.all([
      bed.origin.core.listNamespacedPod({ namespace: OFFLOAD_NS }).then((l) => l.items.length),
      ...DONORS.flatMap((d) => [
        bed.donors[d].core.listNamespacedPod({ namespace: DIRECT_NS }).then((l) => l.items.length),
        bed.donors[d].core
          .listNamespacedPod({ namespace: tenantNamespace('origin') })
          .then((l) => l.items.length)
          .catch(() => 0),
      ]),
    ]);
    if (counts.every((n) => n === 0)) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`pods still present ${timeoutMs} ms after deleting them`);
}

/** Offloads `pods` GPU pods from the origin and waits until they run (no measurement). */
export async function offloadPods(bed: Bed, o: { pods: number; timeoutMs: number }): Promise<void> {
  const watch = new PodWatch(bed.origin, OFFLOAD_NS);
  await watch.start();
  try {
    await Promise.all(
      Array.from({ length: o.pods }, (_, i) =>
        bed.origin.core.createNamespacedPod({ namespace: OFFLOAD_NS, body: gpuPod(`status-${i}`) }),
      ),
    );
    if (
      !(await waitUntil('offloaded pods Running', () => watch.running.size >= o.pods, o.timeoutMs))
    )
      throw new Error(`${o.pods - watch.running.size} of ${o.pods} offloaded pods never ran`);
  } finally {
    watch.stop();
  }
}

export interface LatencyRun {
  pods: number;
  intervalMs: number;
  direct: Summary;
  offloaded: Summary;
  ratioP50: Estimate;
  ratioP95: Estimate;
  ratioP99: Estimate;
  neverRan: { direct: number; offloaded: number };
  /** Where an offloaded pod's time goes, from the shim's log: p50 of each stage, ms. */
  stagesP50Ms: Record<string, number>;
}

/** Shim log milestones of each pod, as wall-clock ms. */
async function shimMilestones(logFile: string): Promise<Map<string, Record<string, number>>> {
  const wanted: Record<string, string> = {
    'bound pod to virtual node': 'bound',
    'created remote pod': 'remoteCreated',
    offloaded: 'remoteScheduled',
  };
  const out = new Map<string, Record<string, number>>();
  const text = await readFile(logFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { msg?: string; pod?: string; time?: string; phase?: string };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue;
    }
    const stage =
      rec.msg === 'pod phase changed' && rec.phase === 'Running'
        ? 'running'
        : wanted[rec.msg ?? ''];
    if (!stage || !rec.pod || !rec.time) continue;
    const m = out.get(rec.pod) ?? {};
    m[stage] ??= Date.parse(rec.time);
    out.set(rec.pod, m);
  }
  return out;
}

function stageBreakdown(
  created: Map<string, number>,
  unschedulable: Map<string, number>,
  milestones: Map<string, Record<string, number>>,
): Record<string, number> {
  const order = [
    'created',
    'unschedulable',
    'bound',
    'remoteCreated',
    'remoteScheduled',
    'running',
  ];
  const spans: Record<string, number[]> = {};
  for (const [name, at] of created) {
    const m = {
      created: at,
      ...(unschedulable.has(name) ? { unschedulable: unschedulable.get(name)! } : {}),
      ...milestones.get(`${OFFLOAD_NS}/${name}`),
    } as Record<string, number>;
    for (let i = 1; i < order.length; i++) {
      const a = m[order[i - 1]!];
      const b = m[order[i]!];
      if (a === undefined || b === undefined) continue;
      (spans[`${order[i - 1]}→${order[i]}`] ??= []).push(b - a);
    }
  }
  return Object.fromEntries(
    Object.entries(spans).map(([k, v]) => [k, v.sort((x, y) => x - y)[Math.floor(v.length / 2)]!]),
  );
}

/** Benchmark 1: pairs of pods, one direct in a donor and one in the origin, at a steady pace. */
export async function runLatency(
  bed: Bed,
  o: { pods: number; intervalMs: number; timeoutMs: number },
): Promise<LatencyRun> {
  const originWatch = new PodWatch(bed.origin, OFFLOAD_NS);
  const donorWatches = DONORS.map((d) => new PodWatch(bed.donors[d], DIRECT_NS));
  await Promise.all([originWatch.start(), ...donorWatches.map((w) => w.start())]);
  const createdDirect = new Map<string, number>();
  const createdOffload = new Map<string, number>();
  const createdWall = new Map<string, number>();
  const t0 = performance.now();
  const creations: Promise<unknown>[] = [];
  for (let i = 0; i < o.pods; i++) {
    const wait = t0 + i * o.intervalMs - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const d = DONORS[i % DONORS.length]!;
    const dn = `direct-${i}`;
    const on = `offload-${i}`;
    // Alternate which goes first, so neither always has the quieter moment.
    const direct = (): Promise<unknown> => {
      createdDirect.set(dn, performance.now());
      return bed.donors[d].core.createNamespacedPod({ namespace: DIRECT_NS, body: gpuPod(dn) });
    };
    const offload = (): Promise<unknown> => {
      createdOffload.set(on, performance.now());
      createdWall.set(on, Date.now());
      return bed.origin.core.createNamespacedPod({ namespace: OFFLOAD_NS, body: gpuPod(on) });
    };
    creations.push(...(i % 2 === 0 ? [direct(), offload()] : [offload(), direct()]));
  }
  await Promise.all(creations);
  const directRunning = (): Map<string, number> =>
    new Map(donorWatches.flatMap((w) => [...w.running]));
  await waitUntil(
    'all pods Running',
    () => originWatch.running.size >= o.pods && directRunning().size >= o.pods,
    o.timeoutMs,
  );
  originWatch.stop();
  donorWatches.forEach((w) => w.stop());
  const dr = directRunning();
  const direct = [...createdDirect].flatMap(([n, t]) => (dr.has(n) ? [dr.get(n)! - t] : []));
  const offloaded = [...createdOffload].flatMap(([n, t]) =>
    originWatch.running.has(n) ? [originWatch.running.get(n)! - t] : [],
  );
  return {
    pods: o.pods,
    intervalMs: o.intervalMs,
    direct: summarize(direct),
    offloaded: summarize(offloaded),
    ratioP50: ratioCI(offloaded, direct, 50),
    ratioP95: ratioCI(offloaded, direct, 95),
    ratioP99: ratioCI(offloaded, direct, 99),
    neverRan: { direct: o.pods - direct.length, offloaded: o.pods - offloaded.length },
    stagesP50Ms: stageBreakdown(
      createdWall,
      originWatch.unschedulableWall,
      await shimMilestones(bed.shim.logFile),
    ),
  };
}

export interface StatusRun {
  changes: number;
  pods: number;
  latencyMs: Summary;
  lost: number;
}

/**
 * Benchmark 2: changes the Ready condition's message of offloaded pods on their donors (the
 * pods stay Ready, so kwok leaves them alone) and times each until the origin pod shows it.
 */
export async function runStatus(
  bed: Bed,
  o: { changes: number; pods: number; intervalMs: number; timeoutMs: number },
): Promise<StatusRun> {
  const originWatch = new PodWatch(bed.origin, OFFLOAD_NS);
  await originWatch.start();
  const ns = tenantNamespace('origin');
  const donorWatches = new Map(DONORS.map((d) => [d, new PodWatch(bed.donors[d], ns)]));
  await Promise.all([...donorWatches.values()].map((w) => w.start()));
  // Offloaded pods that are Running, with where they run.
  const list = await bed.origin.core.listNamespacedPod({ namespace: OFFLOAD_NS });
  const targets = list.items
    .filter(
      (p) => p.status?.phase === 'Running' && p.metadata?.annotations?.[ANNOTATION_REMOTE_POD],
    )
    .slice(0, o.pods)
    .map((p) => {
      const ref = p.metadata!.annotations![ANNOTATION_REMOTE_POD]!;
      const remote = ref.includes('/') ? ref.slice(ref.indexOf('/') + 1) : ref;
      const donor = (p.spec?.nodeName ?? '').replace(/^spillway-/, '') as (typeof DONORS)[number];
      return { name: p.metadata!.name!, remote, donor };
    });
  if (targets.length === 0) throw new Error('no Running offloaded pod to change the status of');
  const sent: { key: string; at: number; donorKey: string; donor: (typeof DONORS)[number] }[] = [];
  const t0 = performance.now();
  for (let i = 0; i < o.changes; i++) {
    const wait = t0 + i * o.intervalMs - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t = targets[i % targets.length]!;
    const message = `spillway-bench tick ${i}`;
    const at = performance.now();
    await bed.donors[t.donor].core.patchNamespacedPodStatus(
      {
        name: t.remote,
        namespace: ns,
        body: {
          status: {
            conditions: [{ type: 'Ready', status: 'True', reason: 'BenchTick', message }],
          },
        },
      },
      STRATEGIC_MERGE_PATCH,
    );
    sent.push({
      key: `${t.name}|${message}`,
      at,
      donorKey: `${t.remote}|${message}`,
      donor: t.donor,
    });
  }
  await waitUntil(
    'every change in the origin',
    () => sent.every((s) => originWatch.messages.has(s.key)),
    o.timeoutMs,
  );
  originWatch.stop();
  for (const w of donorWatches.values()) w.stop();
  const latencies = sent.flatMap((s) => {
    const seen = originWatch.messages.get(s.key);
    // From when this process saw the change on the donor (as it sees the origin's), or
    // from the patch when the donor watch missed it.
    const from = donorWatches.get(s.donor)?.messages.get(s.donorKey) ?? s.at;
    return seen === undefined ? [] : [seen - from];
  });
  return {
    changes: o.changes,
    pods: targets.length,
    latencyMs: summarize(latencies),
    lost: o.changes - latencies.length,
  };
}

export interface ThroughputArm {
  pods: number;
  ran: number;
  seconds: number;
  podsPerSecond: number;
  /** Pods reaching Running in each whole second: median [range]. */
  perSecond: Estimate;
}

export interface ThroughputRun {
  direct: ThroughputArm;
  offloaded: ThroughputArm;
  ratio: number;
  shim: ProcUsage;
  agents: ProcUsage;
  broker: ProcUsage;
}

async function arm(
  create: (i: number) => Promise<unknown>,
  watches: PodWatch[],
  pods: number,
  concurrency: number,
  timeoutMs: number,
): Promise<ThroughputArm> {
  await Promise.all(watches.map((w) => w.start()));
  const ran = (): number => watches.reduce((s, w) => s + w.running.size, 0);
  const t0 = performance.now();
  await pool(
    Array.from({ length: pods }, (_, i) => i),
    concurrency,
    (i) => create(i),
  );
  await waitUntil('all Running', () => ran() >= pods, timeoutMs);
  const times = watches.flatMap((w) => [...w.running.values()]).sort((a, b) => a - b);
  watches.forEach((w) => w.stop());
  const last = times[times.length - 1] ?? performance.now();
  const seconds = (last - t0) / 1000;
  const buckets = new Array<number>(Math.max(1, Math.ceil(seconds))).fill(0);
  for (const t of times) buckets[Math.min(buckets.length - 1, Math.floor((t - t0) / 1000))]!++;
  return {
    pods,
    ran: times.length,
    seconds,
    podsPerSecond: times.length / seconds,
    perSecond: medianRange(buckets),
  };
}

/** Benchmark 3: the same number of pods created directly in the donors, then in the origin. */
export async function runThroughput(
  bed: Bed,
  o: { pods: number; concurrency: number; timeoutMs: number },
): Promise<ThroughputRun> {
  const direct = await arm(
    (i) => {
      const d = DONORS[i % DONORS.length]!;
      return bed.donors[d].core.createNamespacedPod({
        namespace: DIRECT_NS,
        body: gpuPod(`tput-direct-${i}`),
      });
    },
    DONORS.map((d) => new PodWatch(bed.donors[d], DIRECT_NS)),
    o.pods,
    o.concurrency,
    o.timeoutMs,
  );
  await deleteAll(bed, o.timeoutMs);
  const watch = new ProcWatch([bed.shim.pid, ...bed.agents.map((a) => a.pid), bed.broker.pid]);
  const offloaded = await arm(
    (i) =>
      bed.origin.core.createNamespacedPod({
        namespace: OFFLOAD_NS,
        body: gpuPod(`tput-offload-${i}`),
      }),
    [new PodWatch(bed.origin, OFFLOAD_NS)],
    o.pods,
    o.concurrency,
    o.timeoutMs,
  );
  const usage = watch.stop();
  return {
    direct,
    offloaded,
    ratio: offloaded.podsPerSecond / direct.podsPerSecond,
    shim: usage.get(bed.shim.pid)!,
    agents: sumUsage(bed.agents.flatMap((a) => (usage.has(a.pid) ? [usage.get(a.pid)!] : []))),
    broker: usage.get(bed.broker.pid)!,
  };
}

export { deleteAll };
