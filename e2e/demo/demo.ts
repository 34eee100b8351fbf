// `npm run demo`: Spillway end to end on one machine, on embedded defaults. The test bed
// boots an origin and two donors with GPU nodes of different products; a broker process
// runs on its SQLite store with the PKI `spillctl broker init` made; spillctl joins and
// peers the clusters (agents and the origin's shim as local processes); a GPU Job that
// only one donor can run goes Pending in the origin, is placed on that donor, runs and
// completes, live in the terminal; then a summary. Ctrl-C stops everything.
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { createProgress, listLocal, run as spillctlRun, type CliIO } from '@spillway/cli';
import { ANNOTATION_DONOR, ANNOTATION_REMOTE_POD, formatDuration } from '@spillway/common';
import { startBrokerProcess, type BrokerProcess } from '../cli/harness.js';
import {
  GPU_MODELS,
  buildBinaries,
  cpuNode,
  gpuNode,
  podOutcome,
  startTestbed,
  type Testbed,
} from '../testbed/index.js';
import { freePorts } from '../testbed/ports.js';
import { isFree } from './ports.js';
import { demoJob, JOB_NAME, JOB_NAMESPACE, JOB_PRODUCT } from './job.js';

const argv = process.argv.slice(2);
const unknown = argv.find((a) => a !== '--once' && a !== '--help');
if (unknown !== undefined) {
  process.stderr.write(`demo: unknown argument "${unknown}"; usage: npm run demo [-- --once]\n`);
  process.exit(2);
}
if (argv.includes('--help')) {
  process.stdout.write(
    'Usage: npm run demo [-- --once]\n\n' +
      'Boots three test bed clusters, a broker and the Spillway parts, and offloads a GPU Job.\n' +
      'With --once, or when not on a terminal (CI=true), it exits after the summary:\n' +
      '0 if the Job completed on a donor, 1 with the reason otherwise. Ctrl-C stops everything.\n',
  );
  process.exit(0);
}
const once = argv.includes('--once') || !process.stdout.isTTY || process.env.CI === 'true';
const tty = process.stdout.isTTY === true;

const controller = new AbortController();
let interrupts = 0;
/** Set once they run: what a signal must stop at once, before anything else can exit. */
const running: { stateDir?: string; broker?: BrokerProcess; dir?: string } = {};
const onSignal = (): void => {
  interrupts++;
  if (interrupts > 1) {
    process.stderr.write('\ndemo: second interrupt; exiting without cleaning up\n');
    process.exit(130);
  }
  process.stderr.write('\ndemo: stopping (Ctrl-C again to exit at once)...\n');
  // Synchronously first: the test bed's own signal hook stops the clusters and exits the
  // process right after this listener, and the agents and shim run detached.
  if (running.stateDir) {
    for (const p of listLocal(running.stateDir)) {
      if (!p.running) continue;
      try {
        process.kill(p.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
  }
  running.broker?.child.kill('SIGTERM');
  controller.abort();
};
process.on('exit', () => {
  if (running.dir && process.env.SPILLWAY_DEMO_KEEP !== '1') {
    rmSync(running.dir, { recursive: true, force: true });
  }
});
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const t0 = Date.now();
const bold = (s: string): string => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string): string => (tty ? `\x1b[2m${s}\x1b[0m` : s);
const say = (s: string): void => void process.stdout.write(`${s}\n`);
let since = t0;
const stamp = (): string => `+${((Date.now() - since) / 1000).toFixed(1).padStart(5)}s`;

class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

function checkAbort(): void {
  if (controller.signal.aborted) throw new Interrupted();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    controller.signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

let settingsEnv: Record<string, string | undefined> = {};

/** Runs spillctl in this process, showing the command and what it printed. */
async function spillctl(args: string[], opts: { quiet?: boolean } = {}): Promise<string> {
  checkAbort();
  if (!opts.quiet) say(`${dim('$')} ${bold(`spillctl ${args.map(shellQuote).join(' ')}`)}`);
  let out = '';
  let err = '';
  const io: CliIO = {
    stdout: { write: (s: string) => ((out += s), true) },
    // Progress lines go straight to the terminal, as they would from the binary.
    stderr: {
      write: (s: string) => {
        err += s;
        return opts.quiet ? true : process.stderr.write(s);
      },
      isTTY: process.stderr.isTTY,
    },
    env: { ...process.env, ...settingsEnv },
    cwd: process.cwd(),
    interrupted: controller.signal,
  };
  const code = await spillctlRun(args, io);
  if (!opts.quiet && out) process.stdout.write(indent(out));
  checkAbort();
  if (code !== 0) {
    const line = err.trim().split('\n').at(-1) ?? '';
    throw new Error(`spillctl ${args[0] ?? ''} failed (exit ${code}): ${line}`);
  }
  return out;
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `    ${l}`.trimEnd())
    .join('\n')
    .concat('\n');
}

function shellQuote(a: string): string {
  return /^[-\w./:=@,+]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

interface PodTrack {
  name: string;
  createdAt: number;
  pendingReason?: string;
  placedAt?: number;
  runningAt?: number;
  endedAt?: number;
  phase: string;
  donor?: string;
  node?: string;
  remotePod?: string;
}

async function main(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'spillway-demo-'));
  running.dir = dir;
  let testbed: Testbed | undefined;
  let broker: BrokerProcess | undefined;
  const progress = createProgress(process.stderr);
  try {
    say(bold('Spillway demo: one origin, two donors, a GPU Job that spills over'));

    progress.update('building the test bed binaries (first run only; cached afterwards)');
    const binDir = await buildBinaries();
    checkAbort();
    progress.update(
      'booting three clusters: origin (2x L4), donor-a (2x 4 A100), donor-b (8 H100)',
    );
    testbed = await startTestbed({
      binDir,
      clusters: [
        {
          name: 'origin',
          nodes: [cpuNode('origin-cpu-0'), gpuNode('origin-gpu-0', 2, 'L4')],
        },
        {
          name: 'donor-a',
          nodes: [gpuNode('a-gpu-0', 4, 'A100-80GB'), gpuNode('a-gpu-1', 4, 'A100-80GB')],
        },
        { name: 'donor-b', nodes: [gpuNode('b-gpu-0', 8, 'H100-80GB')] },
      ],
    });
    progress.done(`test bed up in ${formatDuration(Date.now() - t0)}: ${testbed.describeMemory()}`);
    checkAbort();
    const origin = testbed.cluster('origin');
    const kubeconfig = (name: string): string => testbed!.cluster(name).kubeconfigPath;

    // The usual ports when they are free, so the URL printed at the end is the familiar one.
    const [grpcPort, httpPort] =
      (await isFree(7443)) && (await isFree(8080)) ? [7443, 8080] : await freePorts(2);
    const restUrl = `http://127.0.0.1:${httpPort}`;
    settingsEnv = {
      SPILLWAY_CONFIG: join(dir, 'spillctl-config'),
      SPILLWAY_STATE_DIR: join(dir, 'local'),
    };
    running.stateDir = join(dir, 'local');
    say(bold('\n1. The broker: its CA, server certificate and an admin identity'));
    const pkiDir = join(dir, 'pki');
    await spillctl([
      'broker',
      'init',
      '--dir',
      pkiDir,
      '--server',
      restUrl,
      '--broker',
      `127.0.0.1:${grpcPort}`,
    ]);
    progress.update('starting spillway-broker (SQLite store)');
    broker = await startBrokerProcess({
      pkiDir,
      dataDir: join(dir, 'broker'),
      logFile: join(dir, 'broker.log'),
      ports: { grpc: grpcPort!, http: httpPort! },
      extraArgs: ['--heartbeat-timeout', '6s'],
    });
    running.broker = broker;
    progress.done(`broker listening: REST ${restUrl}, gRPC (mTLS) ${broker.grpcAddress}`);

    say(
      bold('\n2. Join the clusters (agents and the origin\u2019s virtual-node shim run locally)'),
    );
    for (const [name, role] of [
      ['donor-a', 'donor'],
      ['donor-b', 'donor'],
      ['origin', 'origin'],
    ] as const) {
      await spillctl([
        'join',
        name,
        '--role',
        role,
        '--kubeconfig',
        kubeconfig(name),
        '--local',
        '--log-level',
        'info',
        // A short grace so the demo shows Pending for seconds, not the default 10 s.
        ...(role === 'origin' ? ['--virtual-node-flag=--grace-period=3s'] : []),
      ]);
    }
    await spillctl(['get', 'clusters']);

    say(bold('\n3. Peer the origin with both donors'));
    await spillctl(['peer', 'origin', 'donor-a', '--wait', '--kubeconfig', kubeconfig('origin')]);
    await spillctl([
      'peer',
      'origin',
      'donor-b',
      '--max-gpus',
      '8',
      '--wait',
      '--kubeconfig',
      kubeconfig('origin'),
    ]);
    await spillctl(['get', 'capacity']);
    await spillctl(['simulate', '--origin', 'origin', '--gpus', '2', '--gpu-product', JOB_PRODUCT]);

    say(bold('\n4. A GPU Job in the origin that only donor-b can run'));
    await origin.core.createNamespace({ body: { metadata: { name: JOB_NAMESPACE } } });
    await spillctl(['offload', 'namespace', JOB_NAMESPACE, '--kubeconfig', kubeconfig('origin')]);
    const job: V1Job = demoJob(podOutcome('succeed', { runFor: '6s' }));
    say(
      `    ${JOB_NAMESPACE}/${JOB_NAME}: 2 pods, each 2x nvidia.com/gpu with nodeSelector ` +
        `nvidia.com/gpu.product=${JOB_PRODUCT}\n` +
        `    (the origin has L4 GPUs, donor-a has ${GPU_MODELS['A100-80GB'].product}; only donor-b fits)`,
    );
    const submitted = Date.now();
    since = submitted;
    await origin.batch.createNamespacedJob({ namespace: JOB_NAMESPACE, body: job });
    say(bold('\n5. Live, in the origin (times from submission)'));
    const outcome = await watchJob(origin, submitted);
    checkAbort();

    const viewer = (
      await spillctl(['token', 'create', '--role', 'viewer', '--description', 'demo'], {
        quiet: true,
      })
    ).trim();
    printSummary(outcome, restUrl, viewer, dir, await whyThere(outcome));
    if (!outcome.ok) {
      process.stderr.write(`demo: FAILED: ${outcome.reason}\n`);
      return 1;
    }
    if (once) return 0;
    say(
      `\nEverything keeps running. In another terminal:\n` +
        `    export SPILLWAY_CONFIG=${settingsEnv.SPILLWAY_CONFIG}\n` +
        `    npx spillctl get offloads -o wide\n` +
        `    kubectl --kubeconfig ${kubeconfig('origin')} get pods -n ${JOB_NAMESPACE} -o wide\n` +
        `Press Ctrl-C to stop.`,
    );
    await new Promise<void>((resolve) =>
      controller.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    return 0;
  } catch (err) {
    progress.stop();
    if (err instanceof Interrupted || controller.signal.aborted) return 130;
    process.stderr.write(`demo: FAILED: ${(err as Error).message}\n`);
    if (broker)
      process.stderr.write(
        `demo: broker log ${broker.logFile}; local logs ${join(dir, 'local')}\n`,
      );
    return 1;
  } finally {
    progress.stop();
    process.stderr.write(dim('demo: stopping the agents, the shim, the broker and the test bed\n'));
    const io: CliIO = {
      stdout: { write: () => true },
      stderr: { write: () => true },
      env: { ...process.env, ...settingsEnv },
      cwd: process.cwd(),
    };
    if (settingsEnv.SPILLWAY_STATE_DIR) await spillctlRun(['local', 'stop', '--all'], io);
    await broker?.stop().catch(() => undefined);
    await testbed?.stop().catch(() => undefined);
    if (process.env.SPILLWAY_DEMO_KEEP !== '1') await rm(dir, { recursive: true, force: true });
  }
}

interface Outcome {
  ok: boolean;
  reason: string;
  pods: PodTrack[];
  jobState: string;
}

/** Follows the Job's pods, printing each change as it happens, until the Job ends. */
async function watchJob(
  origin: Testbed['clusters'][number],
  submitted: number,
  timeoutMs = 180_000,
): Promise<Outcome> {
  const pods = new Map<string, PodTrack>();
  const line = (p: PodTrack, what: string): void =>
    say(`    ${dim(stamp())}  ${p.name.padEnd(22)} ${what}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    checkAbort();
    const list = await origin.core.listNamespacedPod({
      namespace: JOB_NAMESPACE,
      labelSelector: `job-name=${JOB_NAME}`,
    });
    for (const pod of list.items) observe(pod, pods, line);
    const j = await origin.batch.readNamespacedJob({ name: JOB_NAME, namespace: JOB_NAMESPACE });
    const cond = j.status?.conditions?.find(
      (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
    );
    if (cond) {
      const tracks = [...pods.values()];
      say(
        `    ${dim(stamp())}  job ${JOB_NAME} ${cond.type === 'Complete' ? 'completed' : 'failed'}`,
      );
      const offDonor = tracks.filter((t) => !t.donor);
      if (cond.type !== 'Complete') {
        return {
          ok: false,
          reason: `the Job failed: ${cond.message ?? cond.reason ?? ''}`,
          pods: tracks,
          jobState: 'Failed',
        };
      }
      if (offDonor.length > 0) {
        return {
          ok: false,
          reason: `pods ran without a donor: ${offDonor.map((t) => t.name).join(', ')}`,
          pods: tracks,
          jobState: 'Complete',
        };
      }
      return { ok: true, reason: '', pods: tracks, jobState: 'Complete' };
    }
    if (Date.now() > deadline) {
      return {
        ok: false,
        reason: `the Job did not finish within ${formatDuration(timeoutMs)} of being submitted (${formatDuration(Date.now() - submitted)} ago)`,
        pods: [...pods.values()],
        jobState: 'Running',
      };
    }
    await sleep(200);
  }
}

function observe(
  pod: V1Pod,
  pods: Map<string, PodTrack>,
  line: (p: PodTrack, what: string) => void,
): void {
  const name = pod.metadata?.name ?? '';
  let t = pods.get(name);
  if (!t) {
    // First seen (polled every 200 ms): creationTimestamp has whole seconds only.
    t = { name, createdAt: Date.now(), phase: '' };
    pods.set(name, t);
    line(t, 'created');
  }
  const phase = pod.status?.phase ?? 'Pending';
  const unschedulable = pod.status?.conditions?.find(
    (c) => c.type === 'PodScheduled' && c.status === 'False',
  );
  if (
    phase === 'Pending' &&
    unschedulable?.message &&
    t.pendingReason === undefined &&
    !pod.spec?.nodeName
  ) {
    // The scheduler's first sentence says it; the preemption details that follow do not.
    t.pendingReason = unschedulable.message.split(/(?<=\.) /)[0] ?? unschedulable.message;
    line(t, `Pending in the origin: ${t.pendingReason}`);
  }
  const node = pod.spec?.nodeName;
  if (node?.startsWith('spillway-') && t.placedAt === undefined) {
    t.placedAt = Date.now();
    t.donor = pod.metadata?.annotations?.[ANNOTATION_DONOR] ?? node.replace(/^spillway-/, '');
    line(t, `placed by the broker on ${bold(t.donor)} (bound to virtual node ${node})`);
  }
  const remote = pod.metadata?.annotations?.[ANNOTATION_REMOTE_POD];
  if (remote && !t.remotePod) t.remotePod = remote;
  const donorNode = pod.metadata?.annotations?.['spillway.io/donor-node'];
  if (donorNode && !t.node) t.node = donorNode;
  if (phase !== t.phase) {
    if (phase === 'Running' && t.runningAt === undefined) {
      t.runningAt = Date.now();
      line(
        t,
        `Running on ${t.donor ?? node ?? '?'}${t.node ? ` node ${t.node}` : ''}${remote ? ` as ${remote}` : ''}`,
      );
    } else if (phase === 'Succeeded' || phase === 'Failed') {
      t.endedAt = Date.now();
      line(
        t,
        phase === 'Succeeded'
          ? 'Succeeded'
          : `Failed: ${pod.status?.message ?? pod.status?.reason ?? ''}`,
      );
    }
    t.phase = phase;
  }
}

interface CapacityRow {
  cluster: string;
  gpuProduct: string;
}

/** Why the pods went where they went, from what the broker reports (not from the script). */
async function whyThere(o: Outcome): Promise<string> {
  const cap = JSON.parse(await spillctl(['get', 'capacity', '-o', 'json'], { quiet: true })) as {
    rows: CapacityRow[];
  };
  const origin = JSON.parse(
    await spillctl(['get', 'clusters', 'origin', '-o', 'json'], { quiet: true }),
  ) as { nodes: { gpuProduct: string }[] };
  const products = new Map<string, Set<string>>();
  for (const r of cap.rows) {
    if (!products.has(r.cluster)) products.set(r.cluster, new Set());
    if (r.gpuProduct) products.get(r.cluster)!.add(r.gpuProduct);
  }
  const used = [...new Set(o.pods.map((p) => p.donor).filter((d) => d !== undefined))];
  const others = [...products.entries()]
    .filter(([c]) => !used.includes(c))
    .map(([c, ps]) => `${c} has ${[...ps].join(', ') || 'no GPUs'}`);
  const local = [...new Set(origin.nodes.map((n) => n.gpuProduct).filter(Boolean))];
  return (
    `the pods ask for ${JOB_PRODUCT}; the origin has ${local.join(', ') || 'no GPUs'}` +
    `${others.length ? `, ${others.join(', ')}` : ''}; the broker placed them on ${used.join(', ') || 'no donor'}.`
  );
}

function printSummary(
  o: Outcome,
  restUrl: string,
  viewerToken: string,
  dir: string,
  why: string,
): void {
  const secs = (from: number, to: number | undefined): string =>
    to === undefined ? '-' : `${((to - from) / 1000).toFixed(1)}s`;
  say(bold('\nSummary'));
  say(
    `  Job ${JOB_NAMESPACE}/${JOB_NAME}: ${o.jobState}${o.ok ? ', every pod ran on a donor' : ''}`,
  );
  const rows = [
    ['POD', 'RAN ON', 'DONOR NODE', 'TO PLACEMENT', 'TO RUNNING', 'RESULT'],
    ...o.pods.map((p) => [
      p.name,
      p.donor ?? 'origin',
      p.node ?? '-',
      secs(p.createdAt, p.placedAt),
      secs(p.createdAt, p.runningAt),
      p.phase,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows)
    say(
      `  ${r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('   ')
        .trimEnd()}`,
    );
  say(`  Why: ${why}`);
  say(`  Broker REST API: ${restUrl}   viewer token: ${viewerToken}`);
  say(`    curl -H 'Authorization: Bearer ${viewerToken}' ${restUrl}/api/v1/offloads`);
  say(`    OpenAPI: ${restUrl}/docs/json   settings: ${join(dir, 'spillctl-config')}`);
  if (!o.ok) say(`  Result: FAILED: ${o.reason}`);
}

const code = await main();
process.exit(code);
